//! The chunk pipeline against a real cluster in-process: the gateway's servers (admin port
//! receiving real heartbeats), real chunkd nodes on 127.0.0.1 ephemeral ports in temporary
//! directories, and the embedded metadata store in a temporary file.

use bytes::Bytes;
use futures::TryStreamExt;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use md5::{Digest, Md5};
use sdfbs_gateway::credentials::Given;
use sdfbs_gateway::membership::{MembershipConfig, NodeState};
use sdfbs_gateway::pipeline::{BodyHasher, PipelineError, WrittenData, CHUNK_SIZE};
use sdfbs_gateway::server::{self, GatewayOptions, RunningGateway};
use sdfbs_metadata::{
    now_millis, BucketRecord, ChunkId, MetadataStore, ObjectRecord, PutCondition, VersioningState,
};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

const SECRET: &str = "test-cluster-secret";
const ADMIN_TOKEN: &str = "test-admin-token";
const MIB: usize = 1024 * 1024;

struct TestCluster {
    dir: tempfile::TempDir,
    meta: Arc<dyn MetadataStore>,
    gateway: Option<RunningGateway>,
    nodes: Vec<Option<chunkd::RunningNode>>,
    bucket: BucketRecord,
}

impl TestCluster {
    async fn start(nodes: usize, replication: usize) -> TestCluster {
        TestCluster::start_with(&vec![NodeSpec::default(); nodes], replication).await
    }

    async fn start_with(specs: &[NodeSpec], replication: usize) -> TestCluster {
        let dir = tempfile::tempdir().expect("temp dir");
        let meta = server::open_metadata(&format!(
            "embedded:{}",
            dir.path().join("meta.redb").display()
        ))
        .await
        .expect("open embedded metadata");
        let gateway = server::start(GatewayOptions {
            meta: Arc::clone(&meta),
            s3_listen: "127.0.0.1:0".parse().unwrap(),
            admin_listen: "127.0.0.1:0".parse().unwrap(),
            replication,
            region: "us-east-1".into(),
            membership: MembershipConfig {
                heartbeat_interval: Duration::from_millis(200),
                node_down_after: Duration::from_secs(2),
            },
            credentials: Given {
                root_access_key: Some("ROOTKEYFORTESTS00001".into()),
                root_secret_key: Some("root-secret-for-tests".into()),
                admin_token: Some(ADMIN_TOKEN.into()),
                cluster_secret: Some(SECRET.into()),
            },
        })
        .await
        .expect("start gateway");
        let bucket = BucketRecord {
            name: "test".into(),
            id: uuid::Uuid::new_v4().to_string(),
            created: now_millis(),
            owner: "ROOTKEYFORTESTS00001".into(),
            versioning: VersioningState::Unversioned,
            shard_count: 1,
        };
        meta.create_bucket(bucket.clone())
            .await
            .expect("create bucket");
        let mut cluster = TestCluster {
            dir,
            meta,
            gateway: Some(gateway),
            nodes: Vec::new(),
            bucket,
        };
        for spec in specs {
            cluster.add_node(spec).await;
        }
        cluster
    }

    fn gw(&self) -> &RunningGateway {
        self.gateway.as_ref().expect("gateway running")
    }

    fn admin_url(&self) -> String {
        format!("http://{}", self.gw().admin_addr)
    }

    fn node_dir(&self, i: usize) -> PathBuf {
        self.dir.path().join(format!("node-{i}"))
    }

    /// Starts one more node and waits until the gateway sees it Up.
    async fn add_node(&mut self, spec: &NodeSpec) -> String {
        let i = self.nodes.len();
        let mut config =
            chunkd::NodeConfig::new(self.node_dir(i), "127.0.0.1:0".parse().unwrap(), SECRET);
        config.gateways = vec![self.admin_url()];
        config.heartbeat_interval = Duration::from_millis(200);
        config.scrub_rate = 0;
        config.zone = spec.zone.to_string();
        config.capacity = spec.capacity;
        let node = chunkd::start(config).await.expect("start chunkd");
        let id = node.node_id().to_string();
        self.nodes.push(Some(node));
        let running = self.nodes.iter().flatten().count();
        self.wait_up(running).await;
        id
    }

    /// Polls the gateway's view until `n` nodes are Up.
    async fn wait_up(&self, n: usize) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let up = self
                .gw()
                .gateway
                .chunks
                .membership()
                .nodes()
                .iter()
                .filter(|v| v.state == NodeState::Up)
                .count();
            if up == n {
                return;
            }
            assert!(Instant::now() < deadline, "only {up} of {n} nodes came up");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn stop_node(&mut self, i: usize) -> String {
        let node = self.nodes[i].take().expect("node running");
        let id = node.node_id().to_string();
        node.shutdown().await.expect("node shutdown");
        id
    }

    async fn write(&self, data: &[u8]) -> Result<(WrittenData, Md5Hasher), PipelineError> {
        self.gw()
            .gateway
            .chunks
            .write_body(body_stream(data), Md5Hasher(Md5::new()))
            .await
    }

    /// Writes and commits an object, as the S3 layer does.
    async fn put(&self, key: &str, data: &[u8]) -> WrittenData {
        let (written, md5) = self.write(data).await.expect("write body");
        assert_eq!(written.size, data.len() as u64);
        assert_eq!(md5.0.finalize().as_slice(), Md5::digest(data).as_slice());
        let object = ObjectRecord {
            key: key.into(),
            version_id: uuid::Uuid::new_v4().to_string(),
            size: written.size,
            etag: hex::encode(Md5::digest(data)),
            last_modified: now_millis(),
            content_type: None,
            headers: Default::default(),
            user_metadata: Default::default(),
            checksums: Default::default(),
            checksum_type: None,
            parts: Vec::new(),
            delete_marker: false,
            owner: "ROOTKEYFORTESTS00001".into(),
        };
        self.meta
            .commit_object(
                &self.bucket,
                object,
                written.manifest.clone(),
                written.placements.clone(),
                PutCondition::None,
            )
            .await
            .expect("commit");
        written
    }

    async fn read(
        &self,
        written: &WrittenData,
        start: u64,
        end: u64,
    ) -> Result<Vec<u8>, PipelineError> {
        let chunks: Vec<Bytes> = self
            .gw()
            .gateway
            .chunks
            .read_range(written.manifest.clone(), start, end)
            .try_collect()
            .await?;
        Ok(chunks.concat())
    }

    async fn stop(mut self) {
        if let Some(gw) = self.gateway.take() {
            gw.shutdown().await;
        }
        for node in self.nodes.drain(..).flatten() {
            node.shutdown().await.expect("node shutdown");
        }
    }
}

#[derive(Clone)]
struct NodeSpec {
    zone: &'static str,
    capacity: Option<u64>,
}

impl Default for NodeSpec {
    fn default() -> Self {
        NodeSpec {
            zone: "default",
            capacity: None,
        }
    }
}

struct Md5Hasher(Md5);

impl BodyHasher for Md5Hasher {
    fn update(&mut self, data: &[u8]) {
        self.0.update(data);
    }
}

/// Deterministic, incompressible-looking bytes (xorshift), different per `seed`.
fn data(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// A body as hyper delivers it: pieces of uneven size.
fn body_stream(
    data: &[u8],
) -> impl futures::Stream<Item = Result<Bytes, std::io::Error>> + Send + Unpin + 'static {
    let pieces: Vec<Result<Bytes, std::io::Error>> = data
        .chunks(61_440 + 17)
        .map(|c| Ok(Bytes::copy_from_slice(c)))
        .collect();
    futures::stream::iter(pieces)
}

fn assert_placements(written: &WrittenData, replication: usize) {
    assert_eq!(written.placements.len(), written.manifest.len());
    for p in &written.placements {
        let mut nodes = p.nodes.clone();
        nodes.sort();
        nodes.dedup();
        assert_eq!(
            nodes.len(),
            replication,
            "replicas on distinct nodes: {p:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn objects_of_every_boundary_size_round_trip() {
    let cluster = TestCluster::start(3, 2).await;
    let sizes = [0, 1, MIB - 1, MIB, MIB + 1, 5 * MIB + MIB / 2];
    for (i, &size) in sizes.iter().enumerate() {
        let bytes = data(size, i as u64 + 1);
        let written = cluster.put(&format!("obj-{size}"), &bytes).await;
        assert_eq!(
            written.manifest.len(),
            size.div_ceil(CHUNK_SIZE),
            "size {size}"
        );
        for (j, e) in written.manifest.iter().enumerate() {
            let expected = CHUNK_SIZE.min(size - j * CHUNK_SIZE) as u64;
            assert_eq!(e.size, expected, "chunk {j} of size {size}");
        }
        assert_placements(&written, 2);
        let back = cluster
            .read(&written, 0, size as u64)
            .await
            .expect("read back");
        assert!(back == bytes, "size {size}: bytes differ");
    }
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ranges_return_exactly_the_requested_bytes() {
    let cluster = TestCluster::start(3, 2).await;
    let size = 5 * MIB + MIB / 2;
    let bytes = data(size, 42);
    let written = cluster.put("ranged", &bytes).await;
    let m = MIB as u64;
    let s = size as u64;
    for (start, end) in [
        (0, 1),
        (m - 1, m + 1),
        (m, 2 * m),
        (2 * m + 5, s),
        (s - 1, s),
        (3, 3 * m + 7),
        (0, s),
        (7, 7),
    ] {
        let back = cluster
            .read(&written, start, end)
            .await
            .expect("read range");
        assert!(
            back == bytes[start as usize..end as usize],
            "range {start}..{end} differs"
        );
    }
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identical_chunks_stay_where_they_are() {
    let gib = 1u64 << 30;
    let small = NodeSpec {
        zone: "default",
        capacity: Some(gib),
    };
    let mut cluster = TestCluster::start_with(&[small.clone(), small.clone(), small], 2).await;
    let bytes = data(4 * MIB, 9);
    let first = cluster.put("a", &bytes).await;

    // A node with a million times the capacity now wins nearly every HRW draw...
    let big = cluster
        .add_node(&NodeSpec {
            zone: "default",
            capacity: Some(gib << 20),
        })
        .await;
    let fresh = cluster.put("fresh", &data(4 * MIB, 10)).await;
    assert!(
        fresh.placements.iter().all(|p| p.nodes.contains(&big)),
        "new chunks go to the heavy node: {:?}",
        fresh.placements
    );
    // ...but chunks the cluster already holds are touched where they are, not sent again.
    let second = cluster.put("b", &bytes).await;
    for (a, b) in first.placements.iter().zip(&second.placements) {
        let (mut x, mut y) = (a.nodes.clone(), b.nodes.clone());
        x.sort();
        y.sort();
        assert_eq!(x, y, "a deduplicated chunk stays on the nodes that hold it");
    }
    let back = cluster
        .read(&second, 0, bytes.len() as u64)
        .await
        .expect("read");
    assert!(back == bytes);
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_land_in_distinct_zones() {
    let zone = |z| NodeSpec {
        zone: z,
        capacity: None,
    };
    let cluster = TestCluster::start_with(&[zone("a"), zone("a"), zone("a"), zone("b")], 2).await;
    let zone_b = cluster.nodes[3]
        .as_ref()
        .expect("node")
        .node_id()
        .to_string();
    let written = cluster.put("zoned", &data(8 * MIB, 11)).await;
    assert_placements(&written, 2);
    for p in &written.placements {
        assert!(p.nodes.contains(&zone_b), "one replica in each zone: {p:?}");
    }
    cluster.stop().await;
}

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
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let state = cluster
            .gw()
            .gateway
            .chunks
            .membership()
            .node(&stopped)
            .map(|n| n.state);
        if state == Some(NodeState::Down) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "stopped node never became Down: {state:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
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
    // read met a corrupt copy, that replica is dropped from the chunk's record (for repair).
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
            if record.replicas.contains(&node0) {
                remaining += 1;
            }
        }
        if remaining == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{remaining} corrupt replicas never detected"
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
async fn a_failing_body_aborts_the_write() {
    let cluster = TestCluster::start(2, 2).await;
    let mut pieces: Vec<Result<Bytes, std::io::Error>> = vec![
        Ok(Bytes::from(data(MIB + 5, 1))),
        Ok(Bytes::from(data(1000, 2))),
    ];
    pieces.push(Err(std::io::Error::other("signature mismatch")));
    let result = cluster
        .gw()
        .gateway
        .chunks
        .write_body(futures::stream::iter(pieces), ())
        .await;
    assert!(
        matches!(result, Err(PipelineError::Body(ref m)) if m.contains("signature mismatch")),
        "{:?}",
        result.map(|(w, _)| w)
    );
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

/// The file chunkd keeps a chunk in (`chunks/ab/cd/<id>`), found by walking the directory so
/// the test does not depend on more of chunkd's layout than "one file named by the id".
fn chunk_file(dir: &std::path::Path, id: &ChunkId) -> PathBuf {
    let name = id.to_hex();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).expect("read dir").flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if path.file_name().is_some_and(|n| n == name.as_str())
                && !path.to_string_lossy().contains("quarantine")
            {
                return path;
            }
        }
    }
    panic!("chunk {name} not found under {}", dir.display());
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
        membership: MembershipConfig {
            heartbeat_interval: Duration::from_millis(200),
            node_down_after: Duration::from_secs(2),
        },
        credentials: Given {
            cluster_secret: Some(SECRET.into()),
            ..Given::default()
        },
    })
    .await
    .expect("start second gateway");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let up = other
            .gateway
            .chunks
            .membership()
            .nodes()
            .iter()
            .filter(|n| n.state == NodeState::Up)
            .count();
        if up == 2 {
            break;
        }
        assert!(Instant::now() < deadline, "gateway B sees {up} nodes Up");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
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
