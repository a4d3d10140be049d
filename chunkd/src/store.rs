//! The on-disk chunk store: the only module that touches files in the data directory.
//!
//! Layout of `--data-dir`:
//!
//! ```text
//! node_id            the node's stable id, created once (atomically) and never changed
//! lock               held with flock(2) while a chunkd runs, so two never share a directory
//! corrupt_count      how many chunks the scrubber has quarantined since the directory was made
//! chunks/ab/cd/<id>  each chunk in a file named exactly by its id, fanned out by id prefix
//! tmp/               chunks being received; emptied at every start
//! quarantine/        corrupt chunks moved aside by the scrubber, as <id>.<unix time>
//! ```
//!
//! Every function here is blocking and must run off the async reactor (`spawn_blocking`).
//! Paths are only ever built from a [`ChunkId`], whose text form is always 64 lowercase hex
//! characters, so no request can name a file outside the data directory.
//!
//! Data-safety invariants enforced here:
//! * A chunk becomes visible under its id only after its bytes were hashed to that id and
//!   fsynced, by a rename from `tmp/`, followed by an fsync of the directory ([`write`]).
//!   A crash at any point leaves either no chunk or the whole chunk; leftovers in `tmp/` are
//!   removed at the next start.
//! * Garbage-collection grace: a delete checks the chunk's modification time and unlinks it
//!   under the same per-id lock under which a PUT renames a chunk into place and a touch
//!   refreshes the time, so a chunk written or refreshed within the grace period is never
//!   deleted, however the requests interleave.

mod data_dir;
mod page_cache;
pub mod write;

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sha2::{Digest, Sha256};

use crate::wire::{ChunkId, ChunkInfo};

pub(crate) use data_dir::{create_dir_durably, fsync_dir};
use data_dir::{
    create_dir_if_missing, empty_dir, filesystem_size, is_fanout_name, load_or_create_node_id,
    lock_data_dir, sorted_names, write_file_atomically,
};
pub use page_cache::{drop_pages, DEFAULT_CACHE_SIZE};
use page_cache::{drop_pages_at, CacheList};
pub use write::{PutResult, TempChunk};

/// Where the chunk `id` lives in the data directory `root`: `chunks/ab/cd/<id>` (for tools
/// and tests that look at a node's files from outside).
pub fn chunk_path_in(root: &Path, id: &ChunkId) -> PathBuf {
    let s = id.to_hex();
    root.join("chunks").join(&s[0..2]).join(&s[2..4]).join(&s)
}

/// Errors of the store. `Full` and `BadDigest` are the client-visible ones.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("the chunk's bytes hash to {actual}, not to its id")]
    BadDigest { actual: String },
    #[error("no space left for the chunk")]
    Full,
    #[error("the data directory is on a read-only file system")]
    ReadOnly,
    #[error("the upload was interrupted before the whole chunk arrived")]
    Aborted,
    #[error("data directory {path} is in use by another chunkd process")]
    Locked { path: PathBuf },
    #[error("{context} {path}: {source}")]
    Io {
        context: &'static str,
        path: PathBuf,
        source: io::Error,
    },
}

/// Wraps an I/O error with what was being done to which file; a full disk or quota becomes
/// [`StoreError::Full`] and a read-only file system [`StoreError::ReadOnly`], so both can be
/// answered with 507 (the gateway then writes to the next node).
pub(crate) fn io_err(context: &'static str, path: &Path) -> impl FnOnce(io::Error) -> StoreError {
    let path = path.to_owned();
    move |source| {
        if is_out_of_space(&source) {
            StoreError::Full
        } else if source.raw_os_error() == Some(libc::EROFS) {
            StoreError::ReadOnly
        } else {
            StoreError::Io {
                context,
                path,
                source,
            }
        }
    }
}

pub(crate) fn is_out_of_space(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::ENOSPC) | Some(libc::EDQUOT))
}

/// Answer to a delete.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeleteResult {
    Deleted,
    Absent,
    TooYoung,
}

/// Which file a check looked at, so a later action can make sure it acts on the same file and
/// not on one a concurrent PUT renamed into its place.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FileIdentity {
    dev: u64,
    ino: u64,
}

impl FileIdentity {
    fn of(meta: &fs::Metadata) -> FileIdentity {
        FileIdentity {
            dev: meta.dev(),
            ino: meta.ino(),
        }
    }
}

/// Result of re-hashing one chunk (scrubber).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// The bytes hash to the id; `size` bytes were read.
    Good { size: u64 },
    /// They do not; the file read is `identity`.
    Corrupt { size: u64, identity: FileIdentity },
    /// The chunk was deleted meanwhile.
    Gone,
}

const LOCK_STRIPES: usize = 256;
/// Number of `chunks/ab/cd` directories: one per 16-bit id prefix.
const FANOUT_DIRS: usize = 1 << 16;
const COPY_BUFFER: usize = 256 * 1024;

/// The chunk store of one data directory.
pub struct Store {
    root: PathBuf,
    chunks_dir: PathBuf,
    tmp_dir: PathBuf,
    quarantine_dir: PathBuf,
    node_id: String,
    capacity: u64,
    /// Per-id locks (striped by the id's first byte): rename-into-place, touch, delete and
    /// quarantine of one id are serialized; see the module doc.
    stripes: Vec<Mutex<()>>,
    /// One flag per fan-out directory `chunks/ab/cd` (indexed by the id's first 16 bits): set
    /// once the directory and its entries in `chunks/ab` and `chunks/` are known to be on disk,
    /// so later PUTs into it skip the mkdir calls and the parents' fsyncs.
    durable_dirs: Vec<AtomicBool>,
    used_bytes: AtomicU64,
    chunk_count: AtomicU64,
    corrupt_chunks: AtomicU64,
    /// The recently used chunks left in the page cache; see [`page_cache`].
    cache: CacheList,
    /// Holds the flock on `lock` for as long as the store lives.
    _lock: File,
}

impl Store {
    /// Opens (or creates) the data directory: takes its lock, creates the node id if needed,
    /// empties `tmp/`, and counts the chunks present. `capacity` defaults to the size of the
    /// file system holding the directory.
    pub fn open(root: &Path, capacity: Option<u64>) -> Result<Store, StoreError> {
        fs::create_dir_all(root).map_err(io_err("creating data directory", root))?;
        let lock = lock_data_dir(root)?;
        let chunks_dir = root.join("chunks");
        let tmp_dir = root.join("tmp");
        let quarantine_dir = root.join("quarantine");
        for dir in [&chunks_dir, &tmp_dir, &quarantine_dir] {
            create_dir_durably(dir)?;
        }
        empty_dir(&tmp_dir)?;
        let node_id = load_or_create_node_id(root)?;
        let capacity = match capacity {
            Some(c) => c,
            None => filesystem_size(root)?,
        };
        let store = Store {
            root: root.to_owned(),
            chunks_dir,
            tmp_dir,
            quarantine_dir,
            node_id,
            capacity,
            stripes: (0..LOCK_STRIPES).map(|_| Mutex::new(())).collect(),
            durable_dirs: (0..FANOUT_DIRS).map(|_| AtomicBool::new(false)).collect(),
            used_bytes: AtomicU64::new(0),
            chunk_count: AtomicU64::new(0),
            corrupt_chunks: AtomicU64::new(0),
            cache: CacheList::new(DEFAULT_CACHE_SIZE),
            _lock: lock,
        };
        // Fan-out directories present at start are made durable once (a previous run may have
        // created one and failed before its fsync), then flagged so PUTs skip that work.
        for level1 in sorted_names(&store.chunks_dir)? {
            if !is_fanout_name(&level1) {
                continue;
            }
            let dir1 = store.chunks_dir.join(&level1);
            for level2 in sorted_names(&dir1)? {
                if is_fanout_name(&level2) {
                    if let Ok(index) = usize::from_str_radix(&format!("{level1}{level2}"), 16) {
                        store.durable_dirs[index].store(true, Ordering::Relaxed);
                    }
                }
            }
            fsync_dir(&dir1)?;
        }
        fsync_dir(&store.chunks_dir)?;
        let (mut count, mut used) = (0u64, 0u64);
        store.for_each_chunk(None, |_, meta| {
            count += 1;
            used += meta.len();
            true
        })?;
        store.chunk_count.store(count, Ordering::Relaxed);
        store.used_bytes.store(used, Ordering::Relaxed);
        store
            .corrupt_chunks
            .store(store.load_corrupt_count()?, Ordering::Relaxed);
        Ok(store)
    }

    /// Sets how many bytes of recently written or read chunks may stay in the page cache
    /// (default [`DEFAULT_CACHE_SIZE`]; 0 drops every chunk's pages as soon as it is written
    /// or read). See [`page_cache`].
    pub fn with_cache_size(mut self, bytes: u64) -> Store {
        self.cache = CacheList::new(bytes);
        self
    }

    /// Records that the chunk was just written or read (its pages are in the page cache), and
    /// drops from the page cache the chunks that no longer fit in the budget (see
    /// [`page_cache`]).
    pub fn record_use(&self, id: &ChunkId, len: u64) {
        for evicted in self.cache.used(id, len) {
            drop_pages_at(&self.chunk_path(&evicted));
        }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn node_id(&self) -> &str {
        &self.node_id
    }

    pub fn capacity(&self) -> u64 {
        self.capacity
    }

    pub fn used_bytes(&self) -> u64 {
        self.used_bytes.load(Ordering::Relaxed)
    }

    pub fn chunk_count(&self) -> u64 {
        self.chunk_count.load(Ordering::Relaxed)
    }

    pub fn corrupt_chunks(&self) -> u64 {
        self.corrupt_chunks.load(Ordering::Relaxed)
    }

    /// Where the chunk `id` lives: `chunks/ab/cd/<id>`.
    pub fn chunk_path(&self, id: &ChunkId) -> PathBuf {
        chunk_path_in(&self.root, id)
    }

    /// The id's first 16 bits: the `abcd` of `chunks/ab/cd`.
    fn fanout_index(id: &ChunkId) -> usize {
        usize::from(u16::from_be_bytes([id.0[0], id.0[1]])) % FANOUT_DIRS
    }

    /// Makes sure `chunks/ab/cd` for `id` exists, before a rename into it. Returns whether the
    /// caller must fsync the parents after its own fsync of the directory (see `write`).
    fn prepare_fanout_dir(&self, id: &ChunkId, level2: &Path) -> Result<bool, StoreError> {
        if self.durable_dirs[Self::fanout_index(id)].load(Ordering::Acquire) {
            return Ok(false);
        }
        if let Some(level1) = level2.parent() {
            create_dir_if_missing(level1)?;
        }
        create_dir_if_missing(level2)?;
        Ok(true)
    }

    /// After the rename into a freshly prepared `chunks/ab/cd`: fsyncs `chunks/ab` and
    /// `chunks/` so the directory itself survives a crash, then remembers that it does. (Done
    /// after the rename so that, on journaling file systems, one commit covers the mkdir and the
    /// rename.) Every PUT that saw the flag unset does this, so none is acknowledged before the
    /// directory holding its chunk is durable, even while another PUT is still creating it.
    fn make_fanout_dir_durable(&self, id: &ChunkId, level2: &Path) -> Result<(), StoreError> {
        if let Some(level1) = level2.parent() {
            fsync_dir(level1)?;
        }
        fsync_dir(&self.chunks_dir)?;
        self.durable_dirs[Self::fanout_index(id)].store(true, Ordering::Release);
        Ok(())
    }

    fn lock(&self, id: &ChunkId) -> MutexGuard<'_, ()> {
        let stripe = usize::from(id.0[0]) % LOCK_STRIPES;
        // A poisoned stripe only means another thread panicked while holding it; the
        // filesystem state it guards is still consistent, so keep going.
        self.stripes[stripe]
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Opens the chunk for reading: the file and its length, or `None` if absent.
    pub fn open_chunk(&self, id: &ChunkId) -> Result<Option<(File, u64)>, StoreError> {
        let path = self.chunk_path(id);
        match File::open(&path) {
            Ok(file) => {
                let len = file
                    .metadata()
                    .map_err(io_err("reading metadata of", &path))?
                    .len();
                Ok(Some((file, len)))
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io_err("opening", &path)(e)),
        }
    }

    /// The chunk's size, or `None` if absent.
    pub fn stat(&self, id: &ChunkId) -> Result<Option<u64>, StoreError> {
        let path = self.chunk_path(id);
        match fs::metadata(&path) {
            Ok(meta) => Ok(Some(meta.len())),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io_err("reading metadata of", &path)(e)),
        }
    }

    /// Refreshes the chunk's modification time (restarting its GC grace period) and returns its
    /// size, or `None` if absent. The new time is fsynced before returning: a touch that a
    /// crash could undo would let GC delete a chunk the gateway was told is safe.
    pub fn touch(&self, id: &ChunkId) -> Result<Option<u64>, StoreError> {
        let path = self.chunk_path(id);
        let _guard = self.lock(id);
        let file = match OpenOptions::new().write(true).open(&path) {
            Ok(file) => file,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io_err("opening", &path)(e)),
        };
        file.set_modified(SystemTime::now())
            .map_err(io_err("setting modification time of", &path))?;
        file.sync_all().map_err(io_err("fsyncing", &path))?;
        let len = file
            .metadata()
            .map_err(io_err("reading metadata of", &path))?
            .len();
        Ok(Some(len))
    }

    /// Deletes the chunk unless it was written or refreshed less than `grace` ago.
    ///
    /// GC safety rule (DESIGN.md): the age check and the unlink happen under the id's lock,
    /// the same lock under which PUT renames and touch refreshes, so a concurrent re-put or
    /// touch either lands before the check (and the chunk is kept) or after the unlink (and
    /// the chunk is written again).  A modification time in the future counts as young.
    pub fn delete(&self, id: &ChunkId, grace: Duration) -> Result<DeleteResult, StoreError> {
        let path = self.chunk_path(id);
        let _guard = self.lock(id);
        let meta = match fs::symlink_metadata(&path) {
            Ok(meta) => meta,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(DeleteResult::Absent),
            Err(e) => return Err(io_err("reading metadata of", &path)(e)),
        };
        let mtime = meta
            .modified()
            .map_err(io_err("reading modification time of", &path))?;
        let old_enough = match SystemTime::now().duration_since(mtime) {
            Ok(age) => age >= grace,
            Err(_) => false, // modified in the future: treat as just written
        };
        if !old_enough {
            return Ok(DeleteResult::TooYoung);
        }
        fs::remove_file(&path).map_err(io_err("deleting", &path))?;
        self.cache.forget(id);
        self.chunk_count.fetch_sub(1, Ordering::Relaxed);
        self.used_bytes.fetch_sub(meta.len(), Ordering::Relaxed);
        if let Some(dir) = path.parent() {
            fsync_dir(dir)?;
        }
        Ok(DeleteResult::Deleted)
    }

    /// Up to `limit` chunks in id order, strictly after `after`.
    pub fn list(
        &self,
        after: Option<&ChunkId>,
        limit: usize,
    ) -> Result<Vec<ChunkInfo>, StoreError> {
        let mut out = Vec::with_capacity(limit.min(4096));
        if limit == 0 {
            return Ok(out);
        }
        self.for_each_chunk(after, |id, meta| {
            let mtime = meta
                .modified()
                .ok()
                .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
                .map_or(0, |d| d.as_secs());
            out.push(ChunkInfo {
                id: *id,
                size: meta.len(),
                mtime,
            });
            out.len() < limit
        })?;
        Ok(out)
    }

    /// Calls `f` for every chunk after `after`, in id order, until it returns false. Files
    /// that are not named by a valid id are skipped.
    fn for_each_chunk(
        &self,
        after: Option<&ChunkId>,
        mut f: impl FnMut(&ChunkId, &fs::Metadata) -> bool,
    ) -> Result<(), StoreError> {
        let after = after.map(ChunkId::to_hex);
        let after = after.as_deref();
        for level1 in sorted_names(&self.chunks_dir)? {
            if !is_fanout_name(&level1) || after.is_some_and(|a| level1.as_str() < &a[0..2]) {
                continue;
            }
            let dir1 = self.chunks_dir.join(&level1);
            for level2 in sorted_names(&dir1)? {
                if !is_fanout_name(&level2) {
                    continue;
                }
                let prefix = format!("{level1}{level2}");
                if after.is_some_and(|a| prefix.as_str() < &a[0..4]) {
                    continue;
                }
                let dir2 = dir1.join(&level2);
                for name in sorted_names(&dir2)? {
                    let Some(id) = ChunkId::from_hex(&name) else {
                        continue;
                    };
                    if after.is_some_and(|a| name.as_str() <= a) || !name.starts_with(&prefix) {
                        continue;
                    }
                    let path = dir2.join(&name);
                    let meta = match fs::symlink_metadata(&path) {
                        Ok(meta) if meta.is_file() => meta,
                        Ok(_) => continue,
                        // Deleted between the directory read and now.
                        Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                        Err(e) => return Err(io_err("reading metadata of", &path)(e)),
                    };
                    if !f(&id, &meta) {
                        return Ok(());
                    }
                }
            }
        }
        Ok(())
    }

    /// Re-reads the chunk and checks that it hashes to its id (the scrubber's check). The
    /// chunk's cached pages are dropped first, so the bytes hashed normally come from the disk
    /// (a GET of the same chunk in between may bring them back), and dropped again afterwards
    /// unless the chunk is among the recently used ones that may stay cached (see
    /// [`page_cache`]); a corrupt chunk's pages are always dropped.
    pub fn verify(&self, id: &ChunkId) -> Result<Verdict, StoreError> {
        let Some((mut file, _)) = self.open_chunk(id)? else {
            return Ok(Verdict::Gone);
        };
        drop_pages(&file);
        let verdict = self.hash_file(id, &mut file);
        if !self.cache.contains(id) || !matches!(verdict, Ok(Verdict::Good { .. })) {
            drop_pages(&file);
        }
        verdict
    }

    fn hash_file(&self, id: &ChunkId, file: &mut File) -> Result<Verdict, StoreError> {
        let path = self.chunk_path(id);
        let identity = FileIdentity::of(
            &file
                .metadata()
                .map_err(io_err("reading metadata of", &path))?,
        );
        let mut hasher = Sha256::new();
        let mut buf = vec![0u8; COPY_BUFFER];
        let mut size = 0u64;
        loop {
            let n = match file.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                // An unreadable chunk (I/O error on a bad sector) is as corrupt as a wrong one.
                Err(e) if e.raw_os_error() == Some(libc::EIO) => {
                    return Ok(Verdict::Corrupt { size, identity })
                }
                Err(e) => return Err(io_err("reading", &path)(e)),
            };
            hasher.update(&buf[..n]);
            size += n as u64;
        }
        if hasher.finalize()[..] == id.0[..] {
            Ok(Verdict::Good { size })
        } else {
            Ok(Verdict::Corrupt { size, identity })
        }
    }

    /// Moves a corrupt chunk to `quarantine/`, provided the file at its path is still the one
    /// that was found corrupt (a PUT may have replaced it with good bytes meanwhile). Returns
    /// whether it was moved.
    pub fn quarantine(&self, id: &ChunkId, identity: FileIdentity) -> Result<bool, StoreError> {
        let path = self.chunk_path(id);
        let _guard = self.lock(id);
        let meta = match fs::symlink_metadata(&path) {
            Ok(meta) => meta,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(io_err("reading metadata of", &path)(e)),
        };
        if FileIdentity::of(&meta) != identity {
            return Ok(false);
        }
        let stamp = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let target = self.quarantine_dir.join(format!("{id}.{stamp}"));
        fs::rename(&path, &target).map_err(io_err("moving to quarantine", &path))?;
        self.cache.forget(id);
        fsync_dir(&self.quarantine_dir)?;
        if let Some(dir) = path.parent() {
            fsync_dir(dir)?;
        }
        self.chunk_count.fetch_sub(1, Ordering::Relaxed);
        self.used_bytes.fetch_sub(meta.len(), Ordering::Relaxed);
        let corrupt = self.corrupt_chunks.fetch_add(1, Ordering::Relaxed) + 1;
        self.save_corrupt_count(corrupt)?;
        Ok(true)
    }

    /// The persisted count of quarantined chunks; never less than what `quarantine/` holds.
    fn load_corrupt_count(&self) -> Result<u64, StoreError> {
        let path = self.root.join("corrupt_count");
        let saved = match fs::read_to_string(&path) {
            Ok(s) => s.trim().parse::<u64>().unwrap_or(0),
            Err(e) if e.kind() == io::ErrorKind::NotFound => 0,
            Err(e) => return Err(io_err("reading", &path)(e)),
        };
        let present = sorted_names(&self.quarantine_dir)?.len() as u64;
        Ok(saved.max(present))
    }

    fn save_corrupt_count(&self, count: u64) -> Result<(), StoreError> {
        write_file_atomically(&self.root, "corrupt_count", count.to_string().as_bytes())
    }

    /// Creates a temporary file for a chunk being received.
    pub fn begin_write(&self, id: &ChunkId) -> Result<TempChunk<'_>, StoreError> {
        TempChunk::create(self, id)
    }
}

#[cfg(test)]
mod tests;
