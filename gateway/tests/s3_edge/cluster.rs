//! The in-process cluster the tests run against: three chunkd nodes, the embedded metadata
//! store, the chunk pipeline, and the S3 service on an ephemeral port, plus small assertions.

use crate::client::{self, Client, Request, Response};
use sdfbs_gateway::cluster::membership::{Membership, MembershipConfig};
use sdfbs_gateway::pipeline::ChunkStore;
use sdfbs_gateway::state::Gateway;
use sdfbs_metadata::{now_millis, AccessKeyRecord, Heartbeat, MetadataStore};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::watch;

pub const SECRET: &str = "s3-edge-test-cluster-secret";
pub const ROOT_KEY: &str = "ROOTKEYFORTESTS";
pub const ROOT_SECRET: &str = "root-secret-for-tests";
pub const LIMITED_KEY: &str = "LIMITEDKEY";
pub const LIMITED_SECRET: &str = "limited-secret";
pub const CREATOR_KEY: &str = "CREATORKEY";
pub const CREATOR_SECRET: &str = "creator-secret";

/// A running cluster; `stop` shuts everything down (tests call it at the end).
pub struct Cluster {
    pub client: Client,
    pub meta: Arc<dyn MetadataStore>,
    nodes: Vec<chunkd::RunningNode>,
    stop: watch::Sender<bool>,
    server: tokio::task::JoinHandle<()>,
    _dir: tempfile::TempDir,
}

impl Cluster {
    /// Three nodes, replication 2.
    pub async fn start() -> Cluster {
        Cluster::start_with(3).await
    }

    /// `nodes` storage nodes, replication 2.
    pub async fn start_with(node_count: usize) -> Cluster {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut nodes = Vec::new();
        for i in 0..node_count {
            let mut config = chunkd::NodeConfig::new(
                dir.path().join(format!("node-{i}")),
                "127.0.0.1:0".parse().expect("address"),
                SECRET,
            );
            config.scrub_rate = 0;
            config.capacity = Some(1 << 34);
            nodes.push(chunkd::start(config).await.expect("start chunkd"));
        }
        let meta: Arc<dyn MetadataStore> = Arc::new(
            sdfbs_metadata::embedded::EmbeddedStore::open(dir.path().join("meta.redb"))
                .await
                .expect("open the embedded store"),
        );
        // Nodes register through the same call the admin port makes for a heartbeat. They stay
        // eligible for new chunks for the whole test (no Down timeout in practice).
        let membership = Arc::new(Membership::new(
            meta.clone(),
            MembershipConfig {
                heartbeat_interval: Duration::from_secs(3600),
                node_down_after: Duration::from_secs(24 * 3600),
            },
        ));
        for node in &nodes {
            membership
                .record_heartbeat(Heartbeat {
                    node_id: node.node_id().to_string(),
                    address: node.advertised_url().to_string(),
                    zone: "default".into(),
                    capacity_bytes: 1 << 34,
                    used_bytes: 0,
                    chunk_count: 0,
                    corrupt_chunks: 0,
                    at: now_millis(),
                })
                .await
                .expect("register node");
        }
        let chunks = Arc::new(ChunkStore::new(meta.clone(), membership, 2, SECRET));
        let gw = Arc::new(Gateway {
            meta: meta.clone(),
            chunks,
            region: client::REGION.into(),
        });
        for (id, secret, root) in [
            (ROOT_KEY, ROOT_SECRET, true),
            (LIMITED_KEY, LIMITED_SECRET, false),
            (CREATOR_KEY, CREATOR_SECRET, false),
        ] {
            meta.create_access_key(AccessKeyRecord {
                access_key_id: id.into(),
                secret_key: secret.into(),
                name: id.to_lowercase(),
                created: now_millis(),
                is_root: root,
                permissions: BTreeMap::new(),
                can_create_buckets: id == CREATOR_KEY,
            })
            .await
            .expect("create key");
        }

        let service = sdfbs_gateway::s3::build_service(gw, Default::default());
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("local addr");
        let (stop, stopped) = watch::channel(false);
        // The gateway's own S3 server loop (TCP_NODELAY, keep-alive, graceful shutdown).
        let server = tokio::spawn(sdfbs_gateway::server::serve(
            listener, service, "s3", stopped,
        ));
        Cluster {
            client: Client {
                addr,
                creds: Some((ROOT_KEY.into(), ROOT_SECRET.into())),
            },
            meta,
            nodes,
            stop,
            server,
            _dir: dir,
        }
    }

    pub async fn stop(self) {
        let _ = self.stop.send(true);
        let _ = self.server.await;
        for node in self.nodes {
            node.shutdown().await.expect("stop chunkd");
        }
    }

    pub async fn create_bucket(&self, name: &str) {
        let r = self
            .client
            .send(Request::new("PUT", &format!("/{name}")))
            .await;
        assert_eq!(r.status, 200, "create bucket {name}: {}", r.text());
    }

    pub async fn put(&self, bucket: &str, key: &str, body: &[u8]) -> Response {
        let path = format!("/{bucket}/{key}");
        self.client
            .send(Request::new("PUT", &path).body(body.to_vec()))
            .await
    }

    pub async fn get(&self, bucket: &str, key: &str) -> Response {
        let path = format!("/{bucket}/{key}");
        self.client.send(Request::new("GET", &path)).await
    }

    pub async fn exists(&self, bucket: &str, key: &str) -> bool {
        let path = format!("/{bucket}/{key}");
        let r = self.client.send(Request::new("HEAD", &path)).await;
        assert!(
            r.status == 200 || r.status == 404,
            "HEAD {path}: {}",
            r.status
        );
        r.status == 200
    }
}

pub fn expect_error(r: &Response, status: u16, code: &str) {
    assert_eq!(
        (r.status, r.code().as_str()),
        (status, code),
        "{}",
        r.text()
    );
}

pub fn b64(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// CRC-32 (IEEE), bit by bit: an independent check of the gateway's value.
pub fn crc32(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}
