//! The conformance suite against a ScyllaDB/Cassandra node named by `SDFBS_TEST_SCYLLA`
//! (`host:port`; `scripts/cassandra.sh start` runs one on 127.0.0.1:9042). Each case gets a
//! fresh keyspace with a random name, dropped when the case ends (passed or failed). Without the
//! variable every case returns at once and one `skipped:` line is printed; under
//! `SDFBS_REQUIRE_E2E=1` (CI, which starts the node) a missing variable fails every case.

mod conformance;

use conformance::TestStore;
use sdfbs_metadata::scylla::{ScyllaConfig, ScyllaStore};
use std::io::Write;
use std::sync::{Arc, Once};

static SKIPPED: Once = Once::new();

/// Drops the case's keyspace when the case ends, also when it panicked. `Drop` cannot await,
/// so the drop runs on a runtime of its own in a thread of its own.
struct KeyspaceGuard(ScyllaConfig);

impl Drop for KeyspaceGuard {
    fn drop(&mut self) {
        let config = self.0.clone();
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| e.to_string())?;
            runtime
                .block_on(sdfbs_metadata::scylla::drop_keyspace(&config))
                .map_err(|e| e.to_string())
        })
        .join();
        if let Ok(Err(e)) = dropped {
            let _ = writeln!(std::io::stderr(), "could not drop the test keyspace: {e}");
        }
    }
}

async fn scylla_factory() -> Option<TestStore> {
    let Ok(host) = std::env::var("SDFBS_TEST_SCYLLA") else {
        if std::env::var("SDFBS_REQUIRE_E2E").is_ok_and(|v| v == "1") {
            panic!(
                "SDFBS_REQUIRE_E2E=1 but SDFBS_TEST_SCYLLA is not set: start a node with \
                 `scripts/cassandra.sh start` and set SDFBS_TEST_SCYLLA=127.0.0.1:9042"
            );
        }
        // Written to stderr directly: libtest captures `println!` of passing tests.
        SKIPPED.call_once(|| {
            let _ = writeln!(
                std::io::stderr(),
                "skipped: SDFBS_TEST_SCYLLA is not set (host:port of a ScyllaDB/Cassandra node)"
            );
        });
        return None;
    };
    let keyspace = format!("sdfbs_test_{}", uuid::Uuid::new_v4().simple());
    let config = match ScyllaConfig::from_spec(&format!("{host}/{keyspace}")) {
        Ok(config) => config,
        Err(e) => panic!("SDFBS_TEST_SCYLLA=`{host}` is not a usable host:port: {e}"),
    };
    let guard = KeyspaceGuard(config.clone());
    match ScyllaStore::connect(config).await {
        Ok(store) => Some(TestStore {
            store: Arc::new(store),
            keep_alive: Box::new(guard),
        }),
        Err(e) => panic!("cannot connect to SDFBS_TEST_SCYLLA=`{host}`: {e}"),
    }
}

conformance_tests!(scylla_factory);
