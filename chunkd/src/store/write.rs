//! Receiving one chunk: a temporary file that is hashed while it is written and becomes the
//! chunk only once its bytes match the id and are on disk.
//!
//! The async PUT handler forwards the request body, piece by piece, through a small bounded
//! channel to [`receive`], which runs on a blocking thread: file writes and SHA-256 stay off the
//! reactor, and at most a few pieces (well under one chunk) are in memory at once.
//!
//! Invariant (fsync before ack): [`TempChunk::commit`] returns only after the file's data is
//! fsynced, the file is renamed to its final name and the directory holding that name is
//! fsynced. Until the rename the bytes live in `tmp/` only, which is emptied at every start, so
//! an interrupted or failed write (hash mismatch, full disk, client gone, process killed) never
//! leaves a visible partial chunk. [`TempChunk`]'s `Drop` removes the temporary file at once
//! when a write does not complete.

use std::fs::{self, File, OpenOptions};
use std::io::{self, IoSlice, Write};
use std::path::PathBuf;
use std::sync::atomic::Ordering;

use bytes::Bytes;
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;

use super::{fsync_dir, io_err, ChunkId, Store, StoreError};

/// Where a committed chunk came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PutResult {
    /// The node did not hold the chunk before.
    Created,
    /// It did; the file was replaced by the freshly verified copy, so its modification time
    /// (the GC grace clock) is now.
    AlreadyPresent,
}

/// One message from the PUT handler to [`receive`].
#[derive(Debug)]
pub enum Piece {
    /// The next bytes of the body (consecutive request frames, in order).
    Data(Vec<Bytes>),
    /// The body is complete: commit. A channel closed without `End` means the upload was
    /// abandoned (client gone, body too large, shutdown) and nothing is kept.
    End,
}

/// Receives a chunk from `pieces` into a temporary file and commits it on [`Piece::End`].
/// Blocking: run with `spawn_blocking`.
pub fn receive(
    store: &Store,
    id: &ChunkId,
    mut pieces: mpsc::Receiver<Piece>,
) -> Result<PutResult, StoreError> {
    let mut temp = store.begin_write(id)?;
    while let Some(piece) = pieces.blocking_recv() {
        match piece {
            Piece::Data(frames) => temp.write_frames(&frames)?,
            Piece::End => return temp.commit(),
        }
    }
    Err(StoreError::Aborted)
}

/// A chunk being received in `tmp/`. Removed on drop unless committed.
pub struct TempChunk<'a> {
    store: &'a Store,
    id: ChunkId,
    path: PathBuf,
    file: Option<File>,
    hasher: Sha256,
    len: u64,
    committed: bool,
}

impl<'a> TempChunk<'a> {
    pub(super) fn create(store: &'a Store, id: &ChunkId) -> Result<TempChunk<'a>, StoreError> {
        let path = store
            .tmp_dir
            .join(format!("{id}.{}", uuid::Uuid::new_v4().simple()));
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(io_err("creating temporary file", &path))?;
        Ok(TempChunk {
            store,
            id: *id,
            path,
            file: Some(file),
            hasher: Sha256::new(),
            len: 0,
            committed: false,
        })
    }

    /// Appends `data` to the file and to the running hash.
    pub fn write(&mut self, data: &[u8]) -> Result<(), StoreError> {
        let Some(file) = self.file.as_mut() else {
            return Err(StoreError::Aborted);
        };
        file.write_all(data)
            .map_err(io_err("writing temporary file", &self.path))?;
        self.hasher.update(data);
        self.len += data.len() as u64;
        Ok(())
    }

    /// Appends several buffers with as few system calls as the kernel allows (`writev`).
    pub fn write_frames(&mut self, frames: &[Bytes]) -> Result<(), StoreError> {
        let Some(file) = self.file.as_mut() else {
            return Err(StoreError::Aborted);
        };
        let mut slices: Vec<IoSlice<'_>> = frames.iter().map(|f| IoSlice::new(f)).collect();
        let mut rest = &mut slices[..];
        while !rest.is_empty() {
            match file.write_vectored(rest) {
                Ok(0) => {
                    let e = io::Error::new(io::ErrorKind::WriteZero, "file accepted no bytes");
                    return Err(io_err("writing temporary file", &self.path)(e));
                }
                Ok(n) => IoSlice::advance_slices(&mut rest, n),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(io_err("writing temporary file", &self.path)(e)),
            }
        }
        for frame in frames {
            self.hasher.update(frame);
            self.len += frame.len() as u64;
        }
        Ok(())
    }

    /// Bytes received so far.
    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Verifies the hash, fsyncs, and renames the chunk into place (see the module doc).
    pub fn commit(mut self) -> Result<PutResult, StoreError> {
        let actual: [u8; 32] = std::mem::take(&mut self.hasher).finalize().into();
        if actual != self.id.0 {
            return Err(StoreError::BadDigest {
                actual: hex::encode(actual),
            });
        }
        let Some(file) = self.file.take() else {
            return Err(StoreError::Aborted);
        };
        // Data first: the rename below must never publish bytes that are not on disk.
        file.sync_data()
            .map_err(io_err("fsyncing temporary file", &self.path))?;
        drop(file);

        let store = self.store;
        let target = store.chunk_path(&self.id);
        let level2 = target.parent().ok_or_else(|| no_parent(&target))?;
        let fresh_dir = store.prepare_fanout_dir(&self.id, level2)?;

        let outcome = {
            // Same lock as delete and touch: see the GC invariant in store.rs.
            let _guard = store.lock(&self.id);
            let previous = match fs::symlink_metadata(&target) {
                Ok(meta) => Some(meta.len()),
                Err(e) if e.kind() == io::ErrorKind::NotFound => None,
                Err(e) => return Err(io_err("reading metadata of", &target)(e)),
            };
            if previous.is_none() && store.used_bytes().saturating_add(self.len) > store.capacity()
            {
                return Err(StoreError::Full);
            }
            fs::rename(&self.path, &target)
                .map_err(io_err("renaming chunk into place", &target))?;
            self.committed = true;
            match previous {
                Some(old_len) => {
                    store.used_bytes.fetch_sub(old_len, Ordering::Relaxed);
                    store.used_bytes.fetch_add(self.len, Ordering::Relaxed);
                    PutResult::AlreadyPresent
                }
                None => {
                    store.used_bytes.fetch_add(self.len, Ordering::Relaxed);
                    store.chunk_count.fetch_add(1, Ordering::Relaxed);
                    PutResult::Created
                }
            }
        };
        // The new name is durable only once its directory is fsynced; only then may the
        // caller acknowledge the write.
        fsync_dir(level2)?;
        if fresh_dir {
            store.make_fanout_dir_durable(&self.id, level2)?;
        }
        // Clean pages now: keep them cached only while the chunk is among the recent ones.
        store.record_use(&self.id, self.len);
        Ok(outcome)
    }
}

fn no_parent(path: &std::path::Path) -> StoreError {
    StoreError::Io {
        context: "no parent directory for",
        path: path.to_owned(),
        source: io::Error::new(io::ErrorKind::InvalidInput, "bad chunk path"),
    }
}

impl Drop for TempChunk<'_> {
    fn drop(&mut self) {
        if self.committed {
            return;
        }
        self.file = None;
        if let Err(e) = fs::remove_file(&self.path) {
            if e.kind() != io::ErrorKind::NotFound {
                tracing::warn!(path = %self.path.display(), error = %e,
                    "could not remove an interrupted chunk write; it will be removed at the next start");
            }
        }
    }
}
