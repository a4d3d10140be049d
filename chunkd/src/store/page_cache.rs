//! How much chunk data chunkd leaves in the kernel's page cache.
//!
//! Left alone, the page cache keeps every chunk ever written or read until memory runs out.
//! On this project's machines (virtual machines whose host lends memory lazily and takes free
//! pages back through the balloon's free-page reporting) that is expensive: each write of a
//! new chunk lands in page-cache pages the guest has not touched recently, and the first touch
//! of such a page costs a fault in the host. Measured with 8 writers of 1 MiB files +
//! `fdatasync` on the benchmark machine: 1.2-2.7 ms of CPU per MiB with the cache left to grow,
//! 0.4-0.5 ms per MiB when pages are dropped once they are no longer wanted, so that new
//! writes reuse pages the guest already holds (docs/bench-chunkd.md). A backup store's chunks
//! are mostly written once and read rarely, so caching all of them buys little.
//!
//! So the store keeps the most recently used chunks (written, or read for a GET) cached up to
//! a byte budget (`--cache-size`), least recently used first out, and asks the kernel to drop
//! the pages of the chunks that fall out (`posix_fadvise(POSIX_FADV_DONTNEED)`). This is
//! advice about clean pages only: it never loses data (the chunk was fsynced before it entered
//! the list) and a dropped chunk is simply read from the disk again.
//!
//! The budget counts whole pages, and it covers the chunks this process wrote or read: pages
//! a previous process left cached are not tracked after a restart, and a GET whose client
//! goes away mid-chunk counts the chunk as used all the same.
//!
//! The scrubber uses [`drop_pages`] too, before and after it re-reads a chunk, so that it
//! normally hashes the bytes on the disk rather than a cached copy, and does not push the
//! chunks clients use out of the cache.

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::os::unix::io::AsRawFd;
use std::path::Path;
use std::sync::Mutex;

use super::ChunkId;

/// Default `--cache-size`: chunk bytes left in the page cache after a write or a read.
pub const DEFAULT_CACHE_SIZE: u64 = 1 << 30;
/// At most this many chunks are tracked, whatever their size, so the list itself stays small
/// (about 20 MiB: each entry holds its id twice, in the map and in the order) even with tiny
/// chunks.
const MAX_ENTRIES: usize = 1 << 16;
/// Pages are what the kernel caches; a chunk of 10 bytes still takes one.
const PAGE: u64 = 4096;

/// The recently used chunks that may stay in the page cache.
pub(crate) struct CacheList {
    limit: u64,
    inner: Mutex<Lru>,
}

#[derive(Default)]
struct Lru {
    /// id -> (position in `order`, bytes)
    entries: HashMap<ChunkId, (u64, u64)>,
    /// position -> id; the smallest position is the least recently used.
    order: BTreeMap<u64, ChunkId>,
    next: u64,
    bytes: u64,
}

impl CacheList {
    pub(crate) fn new(limit: u64) -> CacheList {
        CacheList {
            limit,
            inner: Mutex::new(Lru::default()),
        }
    }

    /// Records that `id` (`len` bytes) was just written or read. Returns the chunks whose pages
    /// should now be dropped, least recently used first; `id` itself when it alone is larger
    /// than the budget.
    pub(crate) fn used(&self, id: &ChunkId, len: u64) -> Vec<ChunkId> {
        let len = len.div_ceil(PAGE) * PAGE;
        let mut lru = self.lock();
        lru.remove(id);
        let position = lru.next;
        lru.next += 1;
        lru.entries.insert(*id, (position, len));
        lru.order.insert(position, *id);
        lru.bytes += len;
        let mut evicted = Vec::new();
        while lru.bytes > self.limit || lru.entries.len() > MAX_ENTRIES {
            let Some((_, oldest)) = lru.order.pop_first() else {
                break;
            };
            if let Some((_, bytes)) = lru.entries.remove(&oldest) {
                lru.bytes -= bytes;
            }
            evicted.push(oldest);
        }
        evicted
    }

    /// Whether `id` is among the chunks allowed to stay cached.
    pub(crate) fn contains(&self, id: &ChunkId) -> bool {
        self.lock().entries.contains_key(id)
    }

    /// The chunk is gone from the store (deleted, or quarantined after its pages were dropped).
    pub(crate) fn forget(&self, id: &ChunkId) {
        self.lock().remove(id);
    }

    /// Bytes of the chunks currently allowed to stay cached.
    #[cfg(test)]
    pub(crate) fn bytes(&self) -> u64 {
        self.lock().bytes
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Lru> {
        // The list is only advice about the page cache; a panic elsewhere cannot make it unsafe.
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl Lru {
    fn remove(&mut self, id: &ChunkId) {
        if let Some((position, bytes)) = self.entries.remove(id) {
            self.order.remove(&position);
            self.bytes -= bytes;
        }
    }
}

/// Asks the kernel to drop the cached pages of `file` (clean pages only; dirty ones are left
/// to writeback). Advice: a failure changes nothing but memory use, so it is not an error.
pub fn drop_pages(file: &File) {
    // SAFETY: posix_fadvise only reads its arguments; the descriptor is open for the call.
    let rc = unsafe { libc::posix_fadvise(file.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
    if rc != 0 {
        tracing::debug!(error = rc, "posix_fadvise(DONTNEED) failed");
    }
}

/// [`drop_pages`] for the file at `path`; a file that is already gone has no pages left.
pub(crate) fn drop_pages_at(path: &Path) {
    if let Ok(file) = File::open(path) {
        drop_pages(&file);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u8) -> ChunkId {
        ChunkId::from_hex(&format!("{n:02x}").repeat(32)).unwrap()
    }

    #[test]
    fn evicts_least_recently_used_beyond_the_budget() {
        let list = CacheList::new(3 << 20);
        for n in 1..=3 {
            assert!(list.used(&id(n), 1 << 20).is_empty());
        }
        // Reading chunk 1 again makes chunk 2 the oldest.
        assert!(list.used(&id(1), 1 << 20).is_empty());
        assert_eq!(list.used(&id(4), 1 << 20), vec![id(2)]);
        assert_eq!(list.bytes(), 3 << 20);
        assert!(list.contains(&id(1)) && list.contains(&id(3)) && list.contains(&id(4)));
        assert!(!list.contains(&id(2)));
        // A chunk larger than the whole budget pushes everything out, itself included.
        let evicted = list.used(&id(5), 4 << 20);
        assert_eq!(evicted, vec![id(3), id(1), id(4), id(5)]);
        assert_eq!(list.bytes(), 0);
    }

    #[test]
    fn forgotten_chunks_free_their_share_of_the_budget() {
        let list = CacheList::new(2 << 20);
        list.used(&id(1), 1 << 20);
        list.used(&id(2), 1 << 20);
        list.forget(&id(1));
        assert_eq!(list.bytes(), 1 << 20);
        assert!(list.used(&id(3), 1 << 20).is_empty());
        // Re-using a chunk with a new size replaces its old size; sizes count whole pages.
        list.used(&id(2), 512 << 10);
        assert_eq!(list.bytes(), (1 << 20) + (512 << 10));
        list.used(&id(2), 10);
        assert_eq!(list.bytes(), (1 << 20) + 4096);
    }

    #[test]
    fn a_zero_budget_drops_every_chunk_at_once() {
        let list = CacheList::new(0);
        assert_eq!(list.used(&id(7), 1 << 20), vec![id(7)]);
        assert_eq!(list.bytes(), 0);
    }
}
