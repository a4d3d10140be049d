//! The chunk pipeline and membership under faults, against a real cluster in-process: a node
//! stopped, a corrupt replica, no readable replica, too few nodes, heartbeats without the
//! secret, and a second gateway sharing the metadata store.

mod cluster_support;

use bytes::Bytes;
use cluster_support::*;
use futures::TryStreamExt;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use sdfbs_gateway::cluster::membership::{MembershipConfig, NodeState};
use sdfbs_gateway::credentials::Given;
use sdfbs_gateway::pipeline::PipelineError;
use sdfbs_gateway::server::{self, GatewayOptions};
use sdfbs_metadata::ChunkId;
use sha2::{Digest, Sha256};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_go_to_the_remaining_nodes_when_one_is_down() {
    let mut cluster = TestCluster::start(3, 2).await;
    let stopped = cluster.stop_node(0).await;
    // Immediately: the gateway still thinks the node is Up, so this exercises failover to the
    // next node in HRW order.
    let bytes = data(4 * MIB + 3, 5);
    let written = cluster.put("after-stop", &bytes).await;
    assert_placements(&written, 2);
    for p in &written.placements {
        assert!(
            !p.nodes.contains(&stopped),
            "chunk placed on the stopped node: {p:?}"
        );
    }
    let back = cluster
        .read(&written, 0, bytes.len() as u64)
        .await
        .expect("read");
    assert!(back == bytes);

    // Later the node is Down in the gateway's view and is not even tried.
    let membership = cluster.gw().gateway.chunks.membership();
    poll_until("the stopped node is Down", || {
        membership.node(&stopped).map(|n| n.state) == Some(NodeState::Down)
    })
    .await;
    let written = cluster.put("while-down", &data(2 * MIB, 6)).await;
    assert!(written
        .placements
        .iter()
        .all(|p| !p.nodes.contains(&stopped)));
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_replica_is_detected_and_the_other_one_is_read() {
    let cluster = TestCluster::start(2, 2).await;
    let bytes = data(3 * MIB + 100, 77);
    let written = cluster.put("corrupt-me", &bytes).await;

    // Flip a byte in node 0's copy of every chunk, keeping the length.
    let node0 = cluster.nodes[0]
        .as_ref()
        .expect("node 0")
        .node_id()
        .to_string();
    for entry in &written.manifest {
        let path = chunk_file(&cluster.node_dir(0), &entry.chunk);
        let mut content = std::fs::read(&path).expect("read chunk file");
        content[10] ^= 0xff;
        let mut perms = std::fs::metadata(&path).expect("stat").permissions();
        #[allow(clippy::permissions_set_readonly_false)]
        perms.set_readonly(false);
        std::fs::set_permissions(&path, perms).expect("chmod");
        std::fs::write(&path, &content).expect("corrupt chunk file");
    }

    // Reads pick a random Up replica first; every read must return the right bytes, and once a
    // read met a corrupt copy, that replica is dropped from the chunk's record, which wakes
    // repair: it writes a good copy again (here the only other node is node 0 itself). So in
    // the end the record names node 0 only where node 0 holds the right bytes.
    let good_on_node0 = |id: &ChunkId| {
        std::fs::read(chunk_file(&cluster.node_dir(0), id))
            .map(|b| ChunkId(Sha256::digest(&b).into()) == *id)
            .unwrap_or(false)
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let back = cluster
            .read(&written, 0, bytes.len() as u64)
            .await
            .expect("read");
        assert!(back == bytes, "corrupt bytes reached the reader");
        let mut remaining = 0;
        for entry in &written.manifest {
            let record = cluster
                .meta
                .get_chunk(&entry.chunk)
                .await
                .expect("meta")
                .expect("record");
            if record.replicas.contains(&node0) && !good_on_node0(&entry.chunk) {
                remaining += 1;
            }
        }
        if remaining == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{remaining} corrupt replicas still counted"
        );
    }
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_readable_replica_is_an_error_not_a_short_body() {
    let mut cluster = TestCluster::start(2, 2).await;
    let bytes = data(2 * MIB, 3);
    let written = cluster.put("lost", &bytes).await;
    cluster.stop_node(0).await;
    cluster.stop_node(1).await;
    let result = cluster.read(&written, 0, bytes.len() as u64).await;
    assert!(
        matches!(result, Err(PipelineError::ChunkUnavailable(_))),
        "{result:?}"
    );
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fewer_nodes_than_replicas_is_insufficient_nodes() {
    let cluster = TestCluster::start(1, 2).await;
    let result = cluster.write(&data(MIB + 1, 1)).await;
    match result {
        Err(PipelineError::InsufficientNodes { needed, available }) => {
            assert_eq!((needed, available), (2, 1));
        }
        other => panic!(
            "expected InsufficientNodes, got {:?}",
            other.map(|(w, _)| w)
        ),
    }
    // An empty body needs no node at all.
    let (written, _) = cluster.write(b"").await.expect("empty body");
    assert_eq!(written.size, 0);
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heartbeats_need_the_cluster_secret_and_health_counts_nodes() {
    let cluster = TestCluster::start(2, 2).await;
    let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let hb = serde_json::json!({
        "node_id": "intruder", "zone": "z", "version": "0", "capacity_bytes": 1u64 << 40,
        "used_bytes": 0, "chunk_count": 0, "corrupt_chunks": 0, "uptime_s": 1,
        "address": "http://127.0.0.1:9"
    });
    for (auth, expected) in [
        (None, 401),
        (Some("Bearer wrong"), 401),
        (Some(ADMIN_TOKEN), 401),
    ] {
        let mut req = http::Request::post(format!("{}/cluster/heartbeat", cluster.admin_url()));
        if let Some(a) = auth {
            req = req.header("authorization", a);
        }
        let resp = client
            .request(req.body(Full::new(Bytes::from(hb.to_string()))).unwrap())
            .await
            .expect("request");
        assert_eq!(resp.status().as_u16(), expected, "auth {auth:?}");
    }
    assert!(cluster
        .gw()
        .gateway
        .chunks
        .membership()
        .node("intruder")
        .is_none());

    let resp = client
        .request(
            http::Request::get(format!("{}/health", cluster.admin_url()))
                .body(Full::new(Bytes::new()))
                .unwrap(),
        )
        .await
        .expect("health");
    assert_eq!(resp.status().as_u16(), 200);
    let body = resp.into_body().collect().await.expect("body").to_bytes();
    let health: serde_json::Value = serde_json::from_slice(&body).expect("json");
    assert_eq!(health["status"], "ok");
    assert_eq!(health["nodes_up"], 2);

    // With the secret, a new node registers itself.
    let resp = client
        .request(
            http::Request::post(format!("{}/cluster/heartbeat", cluster.admin_url()))
                .header("authorization", format!("Bearer {SECRET}"))
                .body(Full::new(Bytes::from(hb.to_string())))
                .unwrap(),
        )
        .await
        .expect("request");
    assert_eq!(resp.status().as_u16(), 204);
    let view = cluster
        .gw()
        .gateway
        .chunks
        .membership()
        .node("intruder")
        .expect("registered");
    assert_eq!(view.state, NodeState::Up);
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_gateway_on_the_same_metadata_sees_the_nodes() {
    let cluster = TestCluster::start(2, 2).await;
    // Gateway B shares the metadata store but receives no heartbeat itself.
    let other = server::start(GatewayOptions {
        meta: Arc::clone(&cluster.meta),
        s3_listen: "127.0.0.1:0".parse().unwrap(),
        admin_listen: "127.0.0.1:0".parse().unwrap(),
        replication: 2,
        region: "us-east-1".into(),
        s3_domains: Vec::new(),
        membership: MembershipConfig {
            heartbeat_interval: Duration::from_millis(200),
            node_down_after: Duration::from_secs(2),
        },
        credentials: Given {
            cluster_secret: Some(SECRET.into()),
            ..Given::default()
        },
        workers: Default::default(),
    })
    .await
    .expect("start second gateway");
    poll_until("gateway B sees 2 nodes Up", || nodes_up(&other) == 2).await;
    // What A wrote, B reads.
    let bytes = data(MIB + 10, 12);
    let written = cluster.put("shared", &bytes).await;
    let back: Vec<Bytes> = other
        .gateway
        .chunks
        .read_range(written.manifest.clone(), 0, bytes.len() as u64)
        .try_collect()
        .await
        .expect("read through gateway B");
    assert!(back.concat() == bytes);
    other.shutdown().await;
    cluster.stop().await;
}
