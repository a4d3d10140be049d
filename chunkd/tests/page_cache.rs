//! chunkd's page-cache budget (`--cache-size`, see `store/page_cache.rs`): the most recently written
//! or read chunks stay in the kernel's page cache, older ones are dropped, and the scrubber's
//! reads do not push anything in. Checked with mincore(2) on the real chunk files.
//!
//! The data directories live under Cargo's target directory rather than the system temp
//! directory, which may be a tmpfs, where pages cannot be dropped at all.

mod common;

use std::fs::File;
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use chunkd::store::{chunk_path_in, drop_pages, Store, Verdict};
use chunkd::wire::ChunkId;
use common::*;

const MIB: usize = 1 << 20;

fn test_dir() -> tempfile::TempDir {
    tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap()
}

/// How many of the file's pages are in the page cache, out of how many.
fn resident_pages(path: &Path) -> (usize, usize) {
    let file = File::open(path).unwrap();
    let len = file.metadata().unwrap().len() as usize;
    // SAFETY: sysconf only reads its argument.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) } as usize;
    let pages = len.div_ceil(page);
    let mut vec = vec![0u8; pages];
    // SAFETY: a read-only shared mapping of an open file, unmapped before returning; mincore
    // writes one byte per page into `vec`, which holds exactly that many.
    unsafe {
        let addr = libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ,
            libc::MAP_SHARED,
            file.as_raw_fd(),
            0,
        );
        assert_ne!(addr, libc::MAP_FAILED, "mmap of {}", path.display());
        let rc = libc::mincore(addr, len, vec.as_mut_ptr());
        libc::munmap(addr, len);
        assert_eq!(rc, 0, "mincore of {}", path.display());
    }
    (vec.iter().filter(|b| **b & 1 == 1).count(), pages)
}

fn is_cached(path: &Path) -> bool {
    let (resident, pages) = resident_pages(path);
    resident == pages
}

fn is_dropped(path: &Path) -> bool {
    resident_pages(path).0 == 0
}

/// The file system under the target directory must cache written pages and let clean ones
/// be dropped, or nothing below could be observed; say so plainly instead of failing
/// obscurely.
fn assert_pages_can_be_dropped(dir: &Path) {
    let path = dir.join("probe");
    std::fs::write(&path, vec![7u8; MIB]).unwrap();
    let file = File::open(&path).unwrap();
    file.sync_all().unwrap();
    assert!(
        is_cached(&path),
        "the file system holding {} does not keep written pages in the page cache",
        dir.display()
    );
    drop_pages(&file);
    assert!(
        is_dropped(&path),
        "the file system holding {} keeps pages that POSIX_FADV_DONTNEED should drop (tmpfs?)",
        dir.display()
    );
    std::fs::remove_file(path).unwrap();
}

fn chunk_file(data_dir: &Path, id: &ChunkId) -> PathBuf {
    chunk_path_in(data_dir, id)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn written_and_read_chunks_stay_cached_within_the_budget_and_older_ones_are_dropped() {
    let dir = test_dir();
    assert_pages_can_be_dropped(dir.path());
    let node = Chunkd::start(dir.path(), &["--cache-size", "2MiB", "--scrub-rate", "0"]);
    let client = node.client();
    let chunks: Vec<Bytes> = (1..=3).map(|n| Bytes::from(data(n, MIB))).collect();
    let ids: Vec<ChunkId> = chunks.iter().map(|c| id_of(c)).collect();
    let file = |i: usize| chunk_file(dir.path(), &ids[i]);

    for (id, chunk) in ids.iter().zip(&chunks) {
        client.put(id, chunk.clone()).await.unwrap();
    }
    // A budget of two chunks: the first one written is out, the last two are in.
    assert!(is_dropped(&file(0)), "{:?}", resident_pages(&file(0)));
    assert!(is_cached(&file(1)), "{:?}", resident_pages(&file(1)));
    assert!(is_cached(&file(2)), "{:?}", resident_pages(&file(2)));

    // Reading the first chunk brings it back and makes the second the least recently used.
    assert_eq!(client.get(&ids[0]).await.unwrap(), chunks[0]);
    assert!(is_cached(&file(0)), "{:?}", resident_pages(&file(0)));
    assert!(is_dropped(&file(1)), "{:?}", resident_pages(&file(1)));
    assert!(is_cached(&file(2)), "{:?}", resident_pages(&file(2)));

    // A dropped chunk is only gone from memory: it reads back whole.
    assert_eq!(client.get(&ids[1]).await.unwrap(), chunks[1]);
    assert!(is_cached(&file(1)) && is_dropped(&file(2)));

    // A chunk over 1 MiB is streamed piece by piece and counts the same: a 1.5 MiB chunk
    // pushes out both others.
    let large = Bytes::from(data(4, MIB + MIB / 2));
    let large_id = id_of(&large);
    client.put(&large_id, large.clone()).await.unwrap();
    assert!(is_dropped(&file(0)) && is_dropped(&file(1)));
    assert_eq!(client.get(&ids[0]).await.unwrap(), chunks[0]);
    let large_file = chunk_file(dir.path(), &large_id);
    assert!(is_dropped(&large_file), "{:?}", resident_pages(&large_file));
    assert_eq!(client.get(&large_id).await.unwrap(), large);
    assert!(is_cached(&large_file), "{:?}", resident_pages(&large_file));
    assert!(is_dropped(&file(0)), "{:?}", resident_pages(&file(0)));
}

#[test]
fn the_scrubber_reads_without_filling_the_cache() {
    let dir = test_dir();
    assert_pages_can_be_dropped(dir.path());
    let store = Store::open(dir.path(), None)
        .unwrap()
        .with_cache_size(MIB as u64);
    let mut ids = Vec::new();
    for n in 1..=2 {
        let bytes = data(n, MIB);
        let id = id_of(&bytes);
        let mut temp = store.begin_write(&id).unwrap();
        temp.write(&bytes).unwrap();
        temp.commit().unwrap();
        ids.push(id);
    }
    let (old, recent) = (store.chunk_path(&ids[0]), store.chunk_path(&ids[1]));
    assert!(is_dropped(&old) && is_cached(&recent));

    // Re-reading the old chunk checks it without leaving it in memory; the recent one, which
    // is within the budget, stays cached after its check.
    for id in &ids {
        assert_eq!(
            store.verify(id).unwrap(),
            Verdict::Good { size: MIB as u64 }
        );
    }
    assert!(is_dropped(&old), "{:?}", resident_pages(&old));
    assert!(is_cached(&recent), "{:?}", resident_pages(&recent));
}

#[test]
fn the_cache_size_flag_is_validated() {
    let dir = test_dir();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_chunkd"))
        .args(["--data-dir"])
        .arg(dir.path())
        .args(["--cluster-secret", SECRET, "--cache-size", "lots"])
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("--cache-size"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_zero_cache_size_from_the_environment_drops_every_chunk_after_its_write() {
    let dir = test_dir();
    assert_pages_can_be_dropped(dir.path());
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_chunkd"));
    command
        .env("CHUNKD_DATA_DIR", dir.path())
        .env("CHUNKD_LISTEN", "127.0.0.1:0")
        .env("CHUNKD_CLUSTER_SECRET", SECRET)
        .env("CHUNKD_SCRUB_RATE", "0")
        .env("CHUNKD_CACHE_SIZE", "0");
    let node = Chunkd::spawn(command, dir.path());
    let client = node.client();
    // A chunk of 1 MiB is read in one piece; one over 1 MiB is streamed piece by piece. Both
    // are dropped once written and again once read.
    for (seed, len) in [(9, MIB), (10, 3 * MIB + 5)] {
        let chunk = Bytes::from(data(seed, len));
        let id = id_of(&chunk);
        client.put(&id, chunk.clone()).await.unwrap();
        let file = chunk_file(dir.path(), &id);
        assert!(
            is_dropped(&file),
            "{len} bytes: {:?}",
            resident_pages(&file)
        );
        assert_eq!(client.get(&id).await.unwrap(), chunk);
        assert!(
            is_dropped(&file),
            "{len} bytes: {:?}",
            resident_pages(&file)
        );
    }
}
