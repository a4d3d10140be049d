//! Unit tests of the on-disk store: atomic writes, hash checks, idempotent puts, the GC grace
//! rule, path safety, listing, quarantine.

use std::fs;
use std::time::{Duration, SystemTime};

use sha2::{Digest, Sha256};

use super::*;

fn id_of(data: &[u8]) -> ChunkId {
    ChunkId::from_hex(&hex::encode(Sha256::digest(data))).expect("a SHA-256 hex is a valid id")
}

fn put(store: &Store, data: &[u8]) -> Result<PutResult, StoreError> {
    let mut temp = store.begin_write(&id_of(data))?;
    for piece in data.chunks(1000) {
        temp.write(piece)?;
    }
    temp.commit()
}

fn files_in(dir: &Path) -> Vec<String> {
    sorted_names(dir).unwrap()
}

fn set_mtime(store: &Store, id: &ChunkId, when: SystemTime) {
    let file = OpenOptions::new()
        .write(true)
        .open(store.chunk_path(id))
        .unwrap();
    file.set_modified(when).unwrap();
}

#[test]
fn chunk_is_invisible_until_committed_and_then_named_by_its_id() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), None).unwrap();
    let data = vec![7u8; 300_000];
    let id = id_of(&data);
    let mut temp = store.begin_write(&id).unwrap();
    temp.write(&data[..100_000]).unwrap();
    // Mid-write: nothing under chunks/, one file in tmp/.
    assert_eq!(store.stat(&id).unwrap(), None);
    assert_eq!(store.list(None, 10).unwrap(), vec![]);
    assert_eq!(files_in(&dir.path().join("tmp")).len(), 1);
    temp.write(&data[100_000..]).unwrap();
    assert_eq!(temp.commit().unwrap(), PutResult::Created);

    let path = dir
        .path()
        .join("chunks")
        .join(&id.to_hex()[0..2])
        .join(&id.to_hex()[2..4])
        .join(id.to_hex());
    assert_eq!(fs::read(&path).unwrap(), data);
    assert!(files_in(&dir.path().join("tmp")).is_empty());
    assert_eq!(store.chunk_count(), 1);
    assert_eq!(store.used_bytes(), 300_000);
}

#[test]
fn interrupted_write_leaves_nothing_and_restart_empties_tmp() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = Store::open(dir.path(), None).unwrap();
        let data = b"half a chunk";
        let mut temp = store.begin_write(&id_of(data)).unwrap();
        temp.write(&data[..4]).unwrap();
        drop(temp); // client gone
        assert!(files_in(&dir.path().join("tmp")).is_empty());
    }
    // A crash leaves a file in tmp/ (simulated): the next start removes it.
    fs::write(dir.path().join("tmp").join("leftover"), b"partial").unwrap();
    let store = Store::open(dir.path(), None).unwrap();
    assert!(files_in(&dir.path().join("tmp")).is_empty());
    assert_eq!(store.chunk_count(), 0);
}

#[test]
fn hash_mismatch_is_bad_digest_and_keeps_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), None).unwrap();
    let claimed = id_of(b"the real bytes");
    let mut temp = store.begin_write(&claimed).unwrap();
    temp.write(b"other bytes").unwrap();
    let err = temp.commit().unwrap_err();
    assert!(matches!(err, StoreError::BadDigest { .. }), "{err}");
    assert_eq!(store.stat(&claimed).unwrap(), None);
    assert!(files_in(&dir.path().join("tmp")).is_empty());
    assert_eq!(store.chunk_count(), 0);
}

#[test]
fn second_put_is_already_present_and_refreshes_mtime() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), None).unwrap();
    let data = b"idempotent";
    let id = id_of(data);
    assert_eq!(put(&store, data).unwrap(), PutResult::Created);
    let old = SystemTime::now() - Duration::from_secs(3600);
    set_mtime(&store, &id, old);
    assert_eq!(put(&store, data).unwrap(), PutResult::AlreadyPresent);
    let mtime = fs::metadata(store.chunk_path(&id))
        .unwrap()
        .modified()
        .unwrap();
    assert!(mtime > old + Duration::from_secs(3000));
    assert_eq!(store.chunk_count(), 1);
    assert_eq!(store.used_bytes(), data.len() as u64);
}

#[test]
fn delete_respects_the_grace_period() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), None).unwrap();
    let data = b"garbage candidate";
    let id = id_of(data);
    put(&store, data).unwrap();
    // Just written: too young for a 60 s grace.
    assert_eq!(
        store.delete(&id, Duration::from_secs(60)).unwrap(),
        DeleteResult::TooYoung
    );
    assert_eq!(store.stat(&id).unwrap(), Some(data.len() as u64));
    // Written two minutes ago: deletable.
    set_mtime(&store, &id, SystemTime::now() - Duration::from_secs(120));
    // ...but a touch restarts the clock.
    assert_eq!(store.touch(&id).unwrap(), Some(data.len() as u64));
    assert_eq!(
        store.delete(&id, Duration::from_secs(60)).unwrap(),
        DeleteResult::TooYoung
    );
    set_mtime(&store, &id, SystemTime::now() - Duration::from_secs(120));
    assert_eq!(
        store.delete(&id, Duration::from_secs(60)).unwrap(),
        DeleteResult::Deleted
    );
    assert_eq!(store.stat(&id).unwrap(), None);
    assert_eq!(
        store.delete(&id, Duration::from_secs(60)).unwrap(),
        DeleteResult::Absent
    );
    assert_eq!(store.touch(&id).unwrap(), None);
    assert_eq!(store.chunk_count(), 0);
    assert_eq!(store.used_bytes(), 0);
}

#[test]
fn mtime_in_the_future_counts_as_young() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), None).unwrap();
    let id = id_of(b"clock skew");
    put(&store, b"clock skew").unwrap();
    set_mtime(&store, &id, SystemTime::now() + Duration::from_secs(600));
    assert_eq!(
        store.delete(&id, Duration::from_secs(1)).unwrap(),
        DeleteResult::TooYoung
    );
}

#[test]
fn only_64_lowercase_hex_characters_make_an_id() {
    let good = "a".repeat(64);
    assert!(ChunkId::from_hex(&good).is_some());
    for bad in [
        "".to_owned(),
        "a".repeat(63),
        "a".repeat(65),
        "A".repeat(64),
        "g".repeat(64),
        format!("../{}", "a".repeat(61)),
        format!("{}/..", "a".repeat(61)),
        format!("%2e%2e{}", "a".repeat(58)),
        format!("/{}", "a".repeat(63)),
        format!("{}\0", "a".repeat(63)),
    ] {
        assert!(ChunkId::from_hex(&bad).is_none(), "{bad:?} accepted");
    }
}

#[test]
fn chunk_paths_stay_under_the_chunks_directory() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), None).unwrap();
    let id = ChunkId::from_hex(&"0f".repeat(32)).unwrap();
    let path = store.chunk_path(&id);
    assert_eq!(
        path,
        dir.path()
            .join("chunks")
            .join("0f")
            .join("0f")
            .join("0f".repeat(32))
    );
}

#[test]
fn listing_is_in_id_order_and_pages_with_after() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), None).unwrap();
    let mut ids: Vec<String> = (0..20u8)
        .map(|i| {
            let data = vec![i; 10 + i as usize];
            put(&store, &data).unwrap();
            id_of(&data).to_hex()
        })
        .collect();
    ids.sort();
    // Files that are not chunks are ignored.
    fs::write(dir.path().join("chunks").join("stray"), b"x").unwrap();
    let all = store.list(None, 100).unwrap();
    assert_eq!(all.iter().map(|c| c.id.to_hex()).collect::<Vec<_>>(), ids);
    let mut seen = Vec::new();
    let mut after = None;
    loop {
        let page = store.list(after.as_ref(), 7).unwrap();
        if page.is_empty() {
            break;
        }
        after = Some(page.last().unwrap().id);
        seen.extend(page.into_iter().map(|c| c.id.to_hex()));
    }
    assert_eq!(seen, ids);
}

#[test]
fn capacity_limit_is_insufficient_storage_and_keeps_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), Some(1000)).unwrap();
    put(&store, &[1u8; 600]).unwrap();
    let err = put(&store, &[2u8; 600]).unwrap_err();
    assert!(matches!(err, StoreError::Full), "{err}");
    assert_eq!(store.chunk_count(), 1);
    assert!(files_in(&dir.path().join("tmp")).is_empty());
    // Re-putting a chunk it already holds still works on a full node.
    assert_eq!(put(&store, &[1u8; 600]).unwrap(), PutResult::AlreadyPresent);
}

#[test]
fn out_of_space_errors_are_recognised() {
    use std::io::Write;
    // /dev/full fails every write with ENOSPC, like a full disk.
    let mut full = OpenOptions::new().write(true).open("/dev/full").unwrap();
    let e = full
        .write_all(&[0u8; 4096])
        .and_then(|()| full.flush())
        .unwrap_err();
    assert!(is_out_of_space(&e));
    assert!(matches!(
        io_err("writing", Path::new("/dev/full"))(e),
        StoreError::Full
    ));
}

#[test]
fn node_id_is_created_once_and_kept() {
    let dir = tempfile::tempdir().unwrap();
    let first = Store::open(dir.path(), None).unwrap().node_id().to_owned();
    let second = Store::open(dir.path(), None).unwrap().node_id().to_owned();
    assert!(!first.is_empty());
    assert_eq!(first, second);
}

#[test]
fn a_data_directory_is_used_by_one_store_at_a_time() {
    let dir = tempfile::tempdir().unwrap();
    let _store = Store::open(dir.path(), None).unwrap();
    assert!(matches!(
        Store::open(dir.path(), None),
        Err(StoreError::Locked { .. })
    ));
}

#[test]
fn corrupt_chunk_is_quarantined_counted_and_unlisted() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), None).unwrap();
    let good = b"good chunk";
    let bad = b"soon rotten";
    put(&store, good).unwrap();
    put(&store, bad).unwrap();
    let bad_id = id_of(bad);
    assert_eq!(
        store.verify(&bad_id).unwrap(),
        Verdict::Good {
            size: bad.len() as u64
        }
    );
    fs::write(store.chunk_path(&bad_id), b"soon rottem").unwrap();
    let Verdict::Corrupt { identity, .. } = store.verify(&bad_id).unwrap() else {
        panic!("corruption not detected");
    };
    assert!(store.quarantine(&bad_id, identity).unwrap());
    assert_eq!(store.stat(&bad_id).unwrap(), None);
    assert_eq!(store.corrupt_chunks(), 1);
    assert_eq!(store.chunk_count(), 1);
    assert_eq!(files_in(&dir.path().join("quarantine")).len(), 1);
    assert_eq!(
        store.verify(&id_of(good)).unwrap(),
        Verdict::Good {
            size: good.len() as u64
        }
    );
    drop(store);
    // The count survives a restart.
    assert_eq!(Store::open(dir.path(), None).unwrap().corrupt_chunks(), 1);
}

#[test]
fn quarantine_spares_a_chunk_replaced_since_the_check() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), None).unwrap();
    let data = b"healed by a re-put";
    let id = id_of(data);
    put(&store, data).unwrap();
    fs::write(store.chunk_path(&id), b"garbage").unwrap();
    let Verdict::Corrupt { identity, .. } = store.verify(&id).unwrap() else {
        panic!("corruption not detected");
    };
    // A PUT of the good bytes lands between the check and the quarantine.
    assert_eq!(put(&store, data).unwrap(), PutResult::AlreadyPresent);
    assert!(!store.quarantine(&id, identity).unwrap());
    assert_eq!(fs::read(store.chunk_path(&id)).unwrap(), data);
    assert_eq!(store.corrupt_chunks(), 0);
}

#[test]
fn a_put_racing_a_delete_is_never_lost() {
    // GC safety under concurrency: once a PUT has answered, a delete with a grace period must
    // not remove the chunk, whichever way the two interleave.
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), None).unwrap();
    let data = vec![42u8; 64 * 1024];
    let id = id_of(&data);
    put(&store, &data).unwrap();
    for round in 0..200 {
        set_mtime(&store, &id, SystemTime::now() - Duration::from_secs(3600));
        let barrier = std::sync::Barrier::new(2);
        let (put_result, _) = std::thread::scope(|s| {
            let putter = s.spawn(|| {
                barrier.wait();
                put(&store, &data)
            });
            let deleter = s.spawn(|| {
                barrier.wait();
                store.delete(&id, Duration::from_secs(60))
            });
            (putter.join().unwrap(), deleter.join().unwrap())
        });
        put_result.unwrap();
        assert_eq!(
            store.stat(&id).unwrap(),
            Some(data.len() as u64),
            "round {round}: an acknowledged PUT was deleted"
        );
        // Keep the counters honest too.
        assert_eq!(store.chunk_count(), 1, "round {round}");
        assert_eq!(store.used_bytes(), data.len() as u64, "round {round}");
    }
}

#[test]
fn a_read_only_file_system_is_its_own_error() {
    // EROFS (a disk remounted read-only after errors) is answered 507 ReadOnly, so the gateway
    // writes the chunk to the next node; ENOSPC stays Full.
    let path = std::path::Path::new("/data/chunks/aa/bb/x");
    let rofs =
        crate::store::io_err("creating", path)(std::io::Error::from_raw_os_error(libc::EROFS));
    assert!(matches!(rofs, StoreError::ReadOnly), "{rofs}");
    let full =
        crate::store::io_err("writing", path)(std::io::Error::from_raw_os_error(libc::ENOSPC));
    assert!(matches!(full, StoreError::Full), "{full}");
}
