//! Which metadata store a test cluster's gateways use: the embedded redb file (the default), or
//! a throwaway keyspace on the Cassandra/ScyllaDB node named by `SDFBS_TEST_SCYLLA`.
//!
//! Every S3 behaviour must hold on both backends, so the suites run their test bodies once per
//! backend (see `tests/common/mod.rs`). A Cassandra cluster gets a keyspace of its own,
//! `sdfbs_e2e_<uuid>`, created by its first gateway at start; the cluster drops it when it is
//! dropped, after its gateways are killed, including when the test panicked: a long suite must
//! not pile up hundreds of tables on the test node.
//!
//! Without `SDFBS_TEST_SCYLLA`, [`Metadata::cassandra_from_env`] prints one `skipped:` line on
//! stderr (once per test binary) and the Cassandra variants return at once; under
//! `SDFBS_REQUIRE_E2E=1` (CI, which starts a node) the variable is required and its absence is
//! a failure.

use std::io::Write;
use std::path::Path;
use std::sync::Once;

use anyhow::{anyhow, Context, Result};
use sdfbs_metadata::scylla::ScyllaConfig;

use crate::tools::e2e_required;

/// The variable naming the Cassandra/ScyllaDB node of the tests, as `host:port`.
pub const TEST_NODE_VAR: &str = "SDFBS_TEST_SCYLLA";

/// The metadata store of a test cluster.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Metadata {
    /// `embedded:DIR/meta.redb` in the cluster's temporary directory; one gateway only.
    #[default]
    Embedded,
    /// `scylla:NODE/sdfbs_e2e_<uuid>`: a fresh keyspace on the node `host:port`, dropped with
    /// the cluster. Several gateways can share it.
    Cassandra {
        /// `host:port` of the node.
        node: String,
    },
}

impl Metadata {
    /// The Cassandra node of `SDFBS_TEST_SCYLLA`, or None after one `skipped:` line when it is
    /// not set (a panic instead under `SDFBS_REQUIRE_E2E=1`).
    pub fn cassandra_from_env() -> Option<Metadata> {
        static SKIPPED: Once = Once::new();
        match std::env::var(TEST_NODE_VAR) {
            Ok(node) if !node.trim().is_empty() => Some(Metadata::Cassandra {
                node: node.trim().to_string(),
            }),
            _ if e2e_required() => panic!(
                "SDFBS_REQUIRE_E2E=1 but {TEST_NODE_VAR} is not set: start a node with \
                 `scripts/cassandra.sh start` and set {TEST_NODE_VAR}=127.0.0.1:9042"
            ),
            _ => {
                // Straight to stderr: libtest captures the print macros of passing tests.
                SKIPPED.call_once(|| {
                    let _ = writeln!(
                        std::io::stderr(),
                        "skipped: the Cassandra variants, {TEST_NODE_VAR} is not set \
                         (host:port of a Cassandra/ScyllaDB node, e.g. 127.0.0.1:9042 after \
                         `scripts/cassandra.sh start`)"
                    );
                });
                None
            }
        }
    }

    /// A short name for test output: `embedded` or `cassandra`.
    pub fn name(&self) -> &'static str {
        match self {
            Metadata::Embedded => "embedded",
            Metadata::Cassandra { .. } => "cassandra",
        }
    }

    /// Whether several gateways can share this store.
    pub fn is_shared(&self) -> bool {
        matches!(self, Metadata::Cassandra { .. })
    }
}

/// The `--metadata` value a cluster's gateways run with, and the keyspace to drop afterwards.
pub(crate) struct MetadataStore {
    /// `embedded:PATH` or `scylla:HOST:PORT/KEYSPACE`.
    pub spec: String,
    /// The Cassandra keyspace of this cluster; dropped when this is dropped.
    pub keyspace: Option<Keyspace>,
}

impl MetadataStore {
    /// The store of a new cluster whose temporary directory is `dir`; for Cassandra, a new
    /// keyspace name (the first gateway creates the keyspace).
    pub fn new(metadata: &Metadata, dir: &Path) -> Result<MetadataStore> {
        match metadata {
            Metadata::Embedded => Ok(MetadataStore {
                spec: format!("embedded:{}", dir.join("meta.redb").display()),
                keyspace: None,
            }),
            Metadata::Cassandra { node } => {
                let name = format!("sdfbs_e2e_{}", uuid::Uuid::new_v4().simple());
                let target = format!("{node}/{name}");
                let config = ScyllaConfig::from_spec(&target).map_err(|e| {
                    anyhow!("{TEST_NODE_VAR}=`{node}` is not a usable host:port: {e}")
                })?;
                Ok(MetadataStore {
                    spec: format!("scylla:{target}"),
                    keyspace: Some(Keyspace { config }),
                })
            }
        }
    }
}

/// A test keyspace, dropped (with every table in it) when this value is dropped.
pub(crate) struct Keyspace {
    config: ScyllaConfig,
}

impl Keyspace {
    /// Drops the keyspace now. `Drop` cannot await and may run inside a test's runtime, so the
    /// drop runs on a runtime of its own in a thread of its own.
    fn drop_now(&self) -> Result<()> {
        let config = self.config.clone();
        std::thread::spawn(move || -> Result<()> {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            runtime
                .block_on(sdfbs_metadata::scylla::drop_keyspace(&config))
                .with_context(|| format!("dropping the test keyspace {}", config.keyspace))
        })
        .join()
        .map_err(|_| anyhow!("the thread dropping the keyspace panicked"))?
    }
}

impl Drop for Keyspace {
    fn drop(&mut self) {
        if let Err(e) = self.drop_now() {
            let _ = writeln!(std::io::stderr(), "warning: {e:#}");
        }
    }
}

/// Runs test bodies on each metadata backend: for every `name` listed, where `name` is an
/// `async fn name(metadata: Metadata)` (or a plain `fn` after `sync:`) in the same module,
/// defines a module `name` with two tests, `name::embedded` and `name::cassandra`. The
/// Cassandra one returns at once without `SDFBS_TEST_SCYLLA` (see
/// [`Metadata::cassandra_from_env`]). `cargo test cassandra` runs only those.
///
/// ```ignore
/// async fn round_trip(metadata: Metadata) {
///     let cluster = Cluster::start(ClusterOptions::with_metadata(metadata));
///     // ...
/// }
/// on_each_backend!(round_trip);
/// ```
#[macro_export]
macro_rules! on_each_backend {
    (sync: $($name:ident),+ $(,)?) => {$(
        mod $name {
            #[test]
            fn embedded() {
                super::$name($crate::Metadata::Embedded);
            }

            #[test]
            fn cassandra() {
                if let Some(metadata) = $crate::Metadata::cassandra_from_env() {
                    super::$name(metadata);
                }
            }
        }
    )+};
    ($($name:ident),+ $(,)?) => {$(
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn embedded() {
                super::$name($crate::Metadata::Embedded).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn cassandra() {
                if let Some(metadata) = $crate::Metadata::cassandra_from_env() {
                    super::$name(metadata).await;
                }
            }
        }
    )+};
}
