//! Shared by the `cluster_*` tests: a real cluster in-process (the gateway's servers with the
//! admin port receiving real heartbeats, real chunkd nodes on 127.0.0.1 ephemeral ports in
//! temporary directories, the embedded metadata store in a temporary file), and test data.
#![allow(dead_code)] // each test file uses a different part of it

use bytes::Bytes;
use futures::TryStreamExt;
use md5::{Digest, Md5};
use sdfbs_gateway::cluster::membership::{MembershipConfig, NodeState};
use sdfbs_gateway::credentials::Given;
use sdfbs_gateway::pipeline::{BodyHasher, PipelineError, WrittenData};
use sdfbs_gateway::server::{self, GatewayOptions, RunningGateway};
use sdfbs_metadata::{
    now_millis, BucketRecord, ChunkId, MetadataStore, ObjectRecord, PutCondition, VersioningState,
};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

pub const SECRET: &str = "test-cluster-secret";
pub const ADMIN_TOKEN: &str = "test-admin-token";
pub const MIB: usize = 1024 * 1024;

pub struct TestCluster {
    pub dir: tempfile::TempDir,
    pub meta: Arc<dyn MetadataStore>,
    pub gateway: Option<RunningGateway>,
    pub nodes: Vec<Option<chunkd::RunningNode>>,
    pub bucket: BucketRecord,
}

impl TestCluster {
    pub async fn start(nodes: usize, replication: usize) -> TestCluster {
        TestCluster::start_with(&vec![NodeSpec::default(); nodes], replication).await
    }

    pub async fn start_with(specs: &[NodeSpec], replication: usize) -> TestCluster {
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
            s3_domains: Vec::new(),
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
            // These tests check where the pipeline puts chunks; the background workers (which
            // would repair and rebalance them) are tested by compat-tests/tests/drills*.rs.
            workers: sdfbs_gateway::cluster::workers::WorkerConfig {
                enabled: false,
                ..Default::default()
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

    pub fn gw(&self) -> &RunningGateway {
        self.gateway.as_ref().expect("gateway running")
    }

    pub fn admin_url(&self) -> String {
        format!("http://{}", self.gw().admin_addr)
    }

    pub fn node_dir(&self, i: usize) -> PathBuf {
        self.dir.path().join(format!("node-{i}"))
    }

    /// Starts one more node and waits until the gateway sees it Up.
    pub async fn add_node(&mut self, spec: &NodeSpec) -> String {
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
    pub async fn wait_up(&self, n: usize) {
        let gw = self.gw();
        poll_until(&format!("{n} nodes Up"), || nodes_up(gw) == n).await;
    }

    pub async fn stop_node(&mut self, i: usize) -> String {
        let node = self.nodes[i].take().expect("node running");
        let id = node.node_id().to_string();
        node.shutdown().await.expect("node shutdown");
        id
    }

    pub async fn write(&self, data: &[u8]) -> Result<(WrittenData, Md5Hasher), PipelineError> {
        self.gw()
            .gateway
            .chunks
            .write_body(body_stream(data), Md5Hasher(Md5::new()))
            .await
    }

    /// Writes and commits an object, as the S3 layer does.
    pub async fn put(&self, key: &str, data: &[u8]) -> WrittenData {
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

    pub async fn read(
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

    pub async fn stop(mut self) {
        if let Some(gw) = self.gateway.take() {
            gw.shutdown().await;
        }
        for node in self.nodes.drain(..).flatten() {
            node.shutdown().await.expect("node shutdown");
        }
    }
}

#[derive(Clone)]
pub struct NodeSpec {
    pub zone: &'static str,
    pub capacity: Option<u64>,
}

impl Default for NodeSpec {
    fn default() -> Self {
        NodeSpec {
            zone: "default",
            capacity: None,
        }
    }
}

pub struct Md5Hasher(pub Md5);

impl BodyHasher for Md5Hasher {
    fn update(&mut self, data: &[u8]) {
        self.0.update(data);
    }
}

/// Deterministic, incompressible-looking bytes (xorshift), different per `seed`.
pub fn data(len: usize, seed: u64) -> Vec<u8> {
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
pub fn body_stream(
    data: &[u8],
) -> impl futures::Stream<Item = Result<Bytes, std::io::Error>> + Send + Unpin + 'static {
    let pieces: Vec<Result<Bytes, std::io::Error>> = data
        .chunks(61_440 + 17)
        .map(|c| Ok(Bytes::copy_from_slice(c)))
        .collect();
    futures::stream::iter(pieces)
}

pub fn assert_placements(written: &WrittenData, replication: usize) {
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

/// The file chunkd keeps a chunk in (`chunks/ab/cd/<id>`), found by walking the directory so
/// the test does not depend on more of chunkd's layout than "one file named by the id".
pub fn chunk_file(dir: &std::path::Path, id: &ChunkId) -> PathBuf {
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

/// How many nodes a gateway sees Up.
pub fn nodes_up(gw: &RunningGateway) -> usize {
    gw.gateway
        .chunks
        .membership()
        .nodes()
        .iter()
        .filter(|v| v.state == NodeState::Up)
        .count()
}

/// Polls `done` every 50 ms until it holds; fails the test after 20 s.
pub async fn poll_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
