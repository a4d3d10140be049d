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

/// A fresh keyspace of the node named by `SDFBS_TEST_SCYLLA` (spec options appended), and the
/// guard that drops it; `None` (after the skip line) without a node, as `scylla_factory`.
async fn fresh_keyspace(options: &str) -> Option<(ScyllaConfig, KeyspaceGuard)> {
    let Ok(host) = std::env::var("SDFBS_TEST_SCYLLA") else {
        // Prints the skip line, or fails under SDFBS_REQUIRE_E2E.
        assert!(scylla_factory().await.is_none());
        return None;
    };
    let keyspace = format!("sdfbs_test_{}", uuid::Uuid::new_v4().simple());
    let config = ScyllaConfig::from_spec(&format!("{host}/{keyspace}{options}")).unwrap();
    Some((config.clone(), KeyspaceGuard(config)))
}

/// What only the Cassandra backend has: several gateways creating the schema of one fresh
/// keyspace at the same moment, then serving it together.
#[tokio::test(flavor = "multi_thread")]
async fn gateways_starting_together_share_one_schema() {
    use conformance::util::{bucket, object};
    use sdfbs_metadata::*;
    let Some((config, _guard)) = fresh_keyspace("").await else {
        return;
    };
    // Three stores create the keyspace at once; a fourth connects after them (finding every
    // table, it sends no DDL).
    let stores = futures::future::join_all((0..3).map(|_| ScyllaStore::connect(config.clone())))
        .await
        .into_iter()
        .map(|s| s.expect("every gateway starts"))
        .collect::<Vec<_>>();
    let late = ScyllaStore::connect(config.clone()).await.unwrap();
    let bucket = bucket("shared");
    stores[0].create_bucket(bucket.clone()).await.unwrap();
    let object = object("k", 0, "d41d8cd98f00b204e9800998ecf8427e");
    stores[1]
        .commit_object(&bucket, object.clone(), vec![], vec![], PutCondition::None)
        .await
        .unwrap();
    for store in stores.iter().chain([&late]) {
        assert_eq!(
            store.get_object(&bucket, "k").await.unwrap(),
            Some(object.clone())
        );
        let page = store
            .list_objects(
                &bucket,
                &ListQuery {
                    max_keys: 10,
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        assert_eq!(page.objects, vec![object.clone()]);
    }
}

/// The production options of a spec reach the cluster: datacenter-aware load balancing to the
/// node's datacenter (SimpleSnitch names it `datacenter1`) and the keyspace's replication.
#[tokio::test(flavor = "multi_thread")]
async fn spec_options_reach_the_cluster() {
    use sdfbs_metadata::MetadataStore;
    let options = "?replication=datacenter1:1&local_dc=datacenter1";
    let Some((config, _guard)) = fresh_keyspace(options).await else {
        return;
    };
    let store = ScyllaStore::connect(config).await.unwrap();
    let bucket = conformance::util::bucket("dc");
    store.create_bucket(bucket.clone()).await.unwrap();
    assert_eq!(store.get_bucket("dc").await.unwrap(), Some(bucket));
}

/// A commit whose lightweight transaction applied but whose answer was lost (a timeout) must be
/// reported as done, and one that did not apply as failed: never an acknowledged write that is
/// not there, nor a failed one that is. The client-side LWT timeout is set so short that most
/// answers are lost; a serial read settles each.
#[tokio::test(flavor = "multi_thread")]
async fn commits_whose_answer_is_lost_are_settled_by_a_read() {
    use conformance::util::{bucket, object};
    use sdfbs_metadata::*;
    use std::time::Duration;
    let Some((config, _guard)) = fresh_keyspace("").await else {
        return;
    };
    // Schema and bucket through a store with normal timeouts.
    let setup = ScyllaStore::connect(config.clone()).await.unwrap();
    let bucket = bucket("lost");
    setup.create_bucket(bucket.clone()).await.unwrap();
    let mut hurried = config.clone();
    hurried.lwt_timeout = Some(Duration::from_millis(1));
    let store = ScyllaStore::connect(hurried).await.unwrap();
    let (mut done, mut failed) = (0, 0);
    for i in 0..40u32 {
        // Half new keys, half overwrites of one key (the compare-and-set of a current version).
        let key = if i % 2 == 0 {
            format!("k{i}")
        } else {
            "same".to_owned()
        };
        let object = object(&key, 0, &format!("etag-{i}"));
        let before = setup.get_object(&bucket, &key).await.unwrap();
        let result = store
            .commit_object(&bucket, object.clone(), vec![], vec![], PutCondition::None)
            .await;
        let now = setup.get_object(&bucket, &key).await.unwrap();
        match result {
            Ok(outcome) => {
                done += 1;
                assert_eq!(now, Some(object), "acknowledged commit {i} is not current");
                assert_eq!(
                    outcome.replaced, before,
                    "commit {i} replaced what was current"
                );
            }
            Err(e) => {
                failed += 1;
                assert_eq!(now, before, "failed commit {i} ({e}) changed the key");
            }
        }
    }
    let settled = store.commits_settled_by_read();
    eprintln!("{done} commits done ({settled} of them settled by a read), {failed} failed");
    assert!(
        settled > 0,
        "no LWT answer was lost: the test did not exercise what it is for"
    );
}
