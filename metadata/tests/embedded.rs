//! The embedded (redb) backend: the conformance suite, plus what only a file-backed store has:
//! reopening after an abrupt end of the process, and the stored format version.

mod conformance;

use conformance::TestStore;
use sdfbs_metadata::embedded::EmbeddedStore;
use std::sync::Arc;

async fn embedded_factory() -> Option<TestStore> {
    let dir = tempfile::tempdir().unwrap();
    let store = EmbeddedStore::open(dir.path().join("meta.redb"))
        .await
        .unwrap();
    Some(TestStore {
        store: Arc::new(store),
        keep_alive: Box::new(dir),
    })
}

conformance_tests!(embedded_factory);
