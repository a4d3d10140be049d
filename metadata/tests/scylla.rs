//! The conformance suite against a ScyllaDB/Cassandra node named by `SDFBS_TEST_SCYLLA`
//! (`host:port`). Each case gets a fresh keyspace with a random name, dropped afterwards by
//! nobody (test clusters are throwaway); without the variable every case returns at once and
//! one `skipped:` line is printed. No CQL server can run on the project's CI machines, so
//! `SDFBS_REQUIRE_E2E` does not turn the skip into a failure.

mod conformance;

use conformance::TestStore;
use sdfbs_metadata::scylla::{ScyllaConfig, ScyllaStore};
use std::io::Write;
use std::sync::{Arc, Once};

static SKIPPED: Once = Once::new();

async fn scylla_factory() -> Option<TestStore> {
    let Ok(host) = std::env::var("SDFBS_TEST_SCYLLA") else {
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
    match ScyllaStore::connect(config).await {
        Ok(store) => Some(TestStore {
            store: Arc::new(store),
            keep_alive: Box::new(()),
        }),
        Err(e) => panic!("cannot connect to SDFBS_TEST_SCYLLA=`{host}`: {e}"),
    }
}

conformance_tests!(scylla_factory);
