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

use redb::ReadableTable;
use sdfbs_metadata::*;
use std::io::{BufRead, BufReader};
use std::time::{Duration, Instant};

/// Set (to a file path) in the child process of `reopen_after_killed_writer`.
const CRASH_CHILD_ENV: &str = "SDFBS_META_CRASH_CHILD";

fn crash_bucket() -> BucketRecord {
    BucketRecord {
        name: "crash".into(),
        id: "bucket-id-crash".into(),
        created: 1,
        owner: "AK".into(),
        versioning: VersioningState::Unversioned,
        shard_count: 1,
    }
}

fn crash_chunk(i: u64) -> ChunkId {
    let mut id = [0x5Au8; 32];
    id[..8].copy_from_slice(&i.to_be_bytes());
    ChunkId(id)
}

fn crash_object(i: u64) -> ObjectRecord {
    ObjectRecord {
        key: format!("k{i:08}"),
        version_id: format!("v{i:08}"),
        size: 4096,
        etag: format!("etag{i}"),
        last_modified: 1,
        content_type: None,
        headers: Default::default(),
        user_metadata: Default::default(),
        checksums: Default::default(),
        checksum_type: None,
        parts: Vec::new(),
        delete_marker: false,
        owner: "AK".into(),
    }
}

/// The child half of `reopen_after_killed_writer`: commits objects from 16 concurrent writers
/// and prints `acked <i>` for each commit that returned, until it is killed. Without the
/// environment variable (a normal test run) it does nothing.
#[tokio::test(flavor = "multi_thread")]
async fn crash_child_writer() {
    let Ok(path) = std::env::var(CRASH_CHILD_ENV) else {
        return;
    };
    let store = EmbeddedStore::open(&path).await.unwrap();
    store.create_bucket(crash_bucket()).await.unwrap();
    let next = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let deadline = Instant::now() + Duration::from_secs(120);
    let writers: Vec<_> = (0..16)
        .map(|_| {
            let (store, next) = (store.clone(), next.clone());
            tokio::spawn(async move {
                while Instant::now() < deadline {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    let c = crash_chunk(i);
                    let placement = ChunkPlacement {
                        chunk: c,
                        size: 4096,
                        nodes: vec!["n1".into()],
                    };
                    let entry = ManifestEntry {
                        chunk: c,
                        size: 4096,
                    };
                    store
                        .commit_object(
                            &crash_bucket(),
                            crash_object(i),
                            vec![entry],
                            vec![placement],
                            PutCondition::None,
                        )
                        .await
                        .unwrap();
                    println!("acked {i}");
                }
            })
        })
        .collect();
    for w in writers {
        w.await.unwrap();
    }
}

/// Kills (SIGKILL) a process in the middle of a stream of commits, reopens the file, and checks
/// that every acknowledged commit is there, whole (object row, manifest, chunk record with its
/// ref), and that nothing half-written is visible.
#[tokio::test(flavor = "multi_thread")]
async fn reopen_after_killed_writer() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("meta.redb");
    let mut child = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "crash_child_writer",
            "--exact",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CRASH_CHILD_ENV, &path)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    // Read acks on a thread; kill the child once enough have arrived (or at the deadline).
    let (tx, rx) = std::sync::mpsc::channel::<u64>();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if let Some(i) = line
                .strip_prefix("acked ")
                .and_then(|n| n.trim().parse().ok())
            {
                if tx.send(i).is_err() {
                    break;
                }
            }
        }
    });
    let mut acked = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while acked.len() < 2000 && Instant::now() < deadline {
        if let Ok(i) = rx.recv_timeout(Duration::from_millis(100)) {
            acked.push(i);
        }
    }
    child.kill().unwrap();
    child.wait().unwrap();
    // Acks printed before the kill were for durable commits too.
    while let Ok(i) = rx.try_recv() {
        acked.push(i);
    }
    reader.join().unwrap();
    assert!(
        acked.len() >= 100,
        "the child acknowledged only {} commits",
        acked.len()
    );

    let store = EmbeddedStore::open(&path).await.unwrap();
    let b = store
        .get_bucket("crash")
        .await
        .unwrap()
        .expect("bucket survived");
    for &i in &acked {
        let o = store
            .get_object(&b, &format!("k{i:08}"))
            .await
            .unwrap()
            .unwrap_or_else(|| panic!("acknowledged commit {i} lost"));
        assert_eq!(o, crash_object(i));
    }
    // Every object that is there (acknowledged or not) is whole.
    let mut after = None;
    let mut listed = 0u64;
    loop {
        let page = store
            .list_objects(
                &b,
                &ListQuery {
                    start_after: after.clone(),
                    max_keys: 1000,
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        for o in &page.objects {
            let m = store.get_manifest(&o.version_id).await.unwrap();
            assert_eq!(m.len(), 1);
            let c = store
                .get_chunk(&m[0].chunk)
                .await
                .unwrap()
                .expect("chunk record");
            assert_eq!(c.ref_count, 1);
            assert_eq!(c.replicas, ["n1"]);
        }
        listed += page.objects.len() as u64;
        if !page.is_truncated {
            break;
        }
        after = page.next_start_after;
    }
    assert!(listed >= acked.len() as u64);
    let stats = store.stats().await.unwrap();
    assert_eq!(stats.objects, listed, "counters committed with the objects");
    // The reopened store takes writes again.
    store
        .commit_object(
            &b,
            crash_object(u64::MAX),
            vec![],
            vec![],
            PutCondition::None,
        )
        .await
        .unwrap();
}

/// Dropping every handle closes the file: it can be reopened at once, with its contents.
#[tokio::test(flavor = "multi_thread")]
async fn reopen_after_drop_keeps_state() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("meta.redb");
    let store = EmbeddedStore::open(&path).await.unwrap();
    store.create_bucket(crash_bucket()).await.unwrap();
    store
        .commit_object(
            &crash_bucket(),
            crash_object(1),
            vec![],
            vec![],
            PutCondition::None,
        )
        .await
        .unwrap();
    let clone = store.clone();
    drop(store);
    assert!(clone
        .get_object(&crash_bucket(), "k00000001")
        .await
        .unwrap()
        .is_some());
    drop(clone);
    let store = EmbeddedStore::open(&path).await.unwrap();
    assert_eq!(
        store
            .get_object(&crash_bucket(), "k00000001")
            .await
            .unwrap(),
        Some(crash_object(1))
    );
}

/// A record written with a format version this release does not know is reported as Corrupt,
/// not misread; a record of the current version (1) is read.
#[tokio::test(flavor = "multi_thread")]
async fn unknown_format_version_is_corrupt() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("meta.redb");
    let store = EmbeddedStore::open(&path).await.unwrap();
    store.create_bucket(crash_bucket()).await.unwrap();
    drop(store);
    let table: redb::TableDefinition<&[u8], &[u8]> = redb::TableDefinition::new("buckets");
    {
        let db = redb::Database::create(&path).unwrap();
        let txn = db.begin_write().unwrap();
        {
            let mut t = txn.open_table(table).unwrap();
            let current = t.get(&b"crash"[..]).unwrap().unwrap().value().to_vec();
            assert_eq!(current[0], 1, "records are written with format version 1");
            let mut future = current.clone();
            future[0] = 2;
            t.insert(&b"future"[..], future.as_slice()).unwrap();
        }
        txn.commit().unwrap();
    }
    let store = EmbeddedStore::open(&path).await.unwrap();
    assert!(store.get_bucket("crash").await.unwrap().is_some());
    let r = store.get_bucket("future").await;
    assert!(matches!(r, Err(MetaError::Corrupt(_))), "{r:?}");
}

/// Two handles on one file would break the single-writer guarantee: the second open fails.
#[tokio::test(flavor = "multi_thread")]
async fn second_open_of_a_live_file_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("meta.redb");
    let _store = EmbeddedStore::open(&path).await.unwrap();
    let second = EmbeddedStore::open(&path).await;
    assert!(matches!(second, Err(MetaError::Backend(_))));
}
