//! Heartbeats against a small test gateway, and a node run in-process with `chunkd::start`.

mod common;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use chunkd::wire::Heartbeat;
use chunkd::{ChunkClient, NodeConfig, PutOutcome};
use common::*;
use http_body_util::{BodyExt, Full};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

/// What the test gateway received: path, Authorization header, body.
type Received = Arc<Mutex<Vec<(String, String, Vec<u8>)>>>;

/// A minimal gateway that records every request and answers 500 to the first one (so the
/// sender has to survive a failure) and 204 to the rest. Stops when the returned task is
/// aborted.
async fn test_gateway() -> (SocketAddr, Received, tokio::task::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let received: Received = Arc::default();
    let log = Arc::clone(&received);
    let task = tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let log = Arc::clone(&log);
            tokio::spawn(async move {
                let service = service_fn(move |req: Request<hyper::body::Incoming>| {
                    let log = Arc::clone(&log);
                    async move {
                        let path = req.uri().path().to_owned();
                        let auth = req
                            .headers()
                            .get("authorization")
                            .and_then(|v| v.to_str().ok())
                            .unwrap_or_default()
                            .to_owned();
                        let body = req.into_body().collect().await.map(|b| b.to_bytes());
                        let body = body.unwrap_or_default().to_vec();
                        let first = {
                            let mut log = log.lock().unwrap();
                            log.push((path, auth, body));
                            log.len() == 1
                        };
                        let status = if first {
                            StatusCode::INTERNAL_SERVER_ERROR
                        } else {
                            StatusCode::NO_CONTENT
                        };
                        let mut response = Response::new(Full::new(Bytes::new()));
                        *response.status_mut() = status;
                        Ok::<_, Infallible>(response)
                    }
                });
                let _ = http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    (addr, received, task)
}

async fn wait_for_beats(received: &Received, n: usize) -> Vec<(String, String, Vec<u8>)> {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let beats = received.lock().unwrap().clone();
        if beats.len() >= n {
            return beats;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "only {} heartbeats arrived",
            beats.len()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A port nobody listens on.
fn dead_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binary_sends_heartbeats_and_survives_failing_gateways() {
    let (gateway, received, server) = test_gateway().await;
    let dir = tempfile::tempdir().unwrap();
    let live = format!("http://{gateway}");
    let dead = format!("http://127.0.0.1:{}", dead_port());
    let node = Chunkd::start(
        dir.path(),
        &[
            "--gateway",
            &dead,
            "--gateway",
            &live,
            "--heartbeat-interval",
            "100ms",
            "--advertise",
            "http://10.1.2.3:7070",
            "--zone",
            "rack-7",
        ],
    );
    // The first answer is a 500 and one gateway is unreachable: heartbeats keep coming.
    let beats = wait_for_beats(&received, 3).await;
    for (path, auth, body) in &beats {
        assert_eq!(path, "/cluster/heartbeat");
        assert_eq!(auth, &bearer());
        let beat: Heartbeat = serde_json::from_slice(body).unwrap();
        assert_eq!(beat.address, "http://10.1.2.3:7070");
        assert_eq!(beat.health.node_id, node.node_id);
        assert_eq!(beat.health.zone, "rack-7");
    }
    // A stored chunk shows up in later heartbeats.
    let chunk = Bytes::from(data(30, 4096));
    node.client().put(&id_of(&chunk), chunk).await.unwrap();
    let seen = beats.len();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let beats = wait_for_beats(&received, seen + 1).await;
        let last: Heartbeat = serde_json::from_slice(&beats.last().unwrap().2).unwrap();
        if last.health.chunk_count == 1 {
            assert_eq!(last.health.used_bytes, 4096);
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "heartbeats never showed the chunk"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    drop(node);
    server.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_process_node_serves_heartbeats_and_shuts_down() {
    let (gateway, received, server) = test_gateway().await;
    let dir = tempfile::tempdir().unwrap();
    let mut config = NodeConfig::new(
        dir.path().to_owned(),
        "127.0.0.1:0".parse().unwrap(),
        SECRET,
    );
    config.gateways = vec![format!("http://{gateway}/")];
    config.heartbeat_interval = Duration::from_millis(100);
    let node = chunkd::start(config.clone()).await.unwrap();
    let url = format!("http://{}", node.local_addr());
    assert_eq!(node.advertised_url(), url);
    let node_id = node.node_id().to_owned();

    let client = ChunkClient::new(&url, SECRET);
    let chunk = Bytes::from(data(31, 100_000));
    let id = id_of(&chunk);
    assert_eq!(
        client.put(&id, chunk.clone()).await.unwrap(),
        PutOutcome::Created
    );
    let beats = wait_for_beats(&received, 2).await;
    let beat: Heartbeat = serde_json::from_slice(&beats[1].2).unwrap();
    assert_eq!(beat.address, url);
    assert_eq!(beat.health.node_id, node_id);

    node.shutdown().await.unwrap();
    // Stopped: no longer reachable, and heartbeats stop.
    assert!(client.health().await.is_err());
    let count = received.lock().unwrap().len();
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(
        received.lock().unwrap().len(),
        count,
        "heartbeats continued after shutdown"
    );

    // The data directory is free again, with the same identity and the chunk.
    let node = chunkd::start(config).await.unwrap();
    assert_eq!(node.node_id(), node_id);
    let client = ChunkClient::new(&format!("http://{}", node.local_addr()), SECRET);
    assert_eq!(client.get(&id).await.unwrap(), chunk);
    node.shutdown().await.unwrap();
    server.abort();
}
