//! The single writer thread of the embedded store, with group commit.
//!
//! redb allows one write transaction at a time and a durable commit costs an fsync. Instead of
//! making every request wait for its own fsync, all write requests go through a bounded channel
//! to one `std::thread`. The thread takes every request that is queued (up to [`MAX_BATCH`]),
//! runs them in order inside ONE write transaction, commits once, and only then answers each
//! request. So many concurrent uploads share one fsync, and no request is answered before its
//! writes are durable.
//!
//! Invariant (data safety): a request's reply is sent only after `commit()` returned `Ok` with
//! `Durability::Immediate` (redb's default: the commit is fsynced before it returns).
//!
//! A request that is refused (a failed condition, a missing bucket, ...) must not poison the
//! others in its batch: every operation checks all of its conditions before it writes anything,
//! and reports a refusal as [`OpError::Refused`]; the batch then commits without it. Only an
//! unexpected failure in the middle of writing ([`OpError::Fatal`]: a storage error or an
//! unreadable record) can leave the transaction half-written; then the whole batch is aborted
//! and every request in it gets an error (nothing of it was committed).

use super::tables::Tables;
use crate::{MetaError, Result};
use redb::Database;
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot};

/// At most this many requests share one transaction (bounds the latency of the first one).
pub(crate) const MAX_BATCH: usize = 512;
/// How long the writer may wait for the writers of the previous batch to come back.
const GATHER_WAIT: std::time::Duration = std::time::Duration::from_micros(300);
/// Requests waiting for the writer; senders wait when it is full (back-pressure).
pub(crate) const QUEUE_DEPTH: usize = 4096;

/// Why a write operation did not complete.
#[derive(Debug)]
pub(crate) enum OpError {
    /// Refused before anything was written; the rest of the batch is unaffected.
    Refused(MetaError),
    /// Failed while writing; the transaction must be aborted.
    Fatal(MetaError),
}

pub(crate) type OpResult<T> = std::result::Result<T, OpError>;

impl From<MetaError> for OpError {
    /// Errors passed on with `?` are treated as fatal: only an explicit `OpError::Refused`
    /// promises that nothing was written.
    fn from(e: MetaError) -> Self {
        OpError::Fatal(e)
    }
}

impl From<redb::StorageError> for OpError {
    fn from(e: redb::StorageError) -> Self {
        OpError::Fatal(MetaError::Backend(e.to_string()))
    }
}

/// Shorthand for a refusal.
pub(crate) fn refuse<T>(e: MetaError) -> OpResult<T> {
    Err(OpError::Refused(e))
}

/// Called after the batch ends: `Ok` when the commit is durable, `Err(reason)` otherwise.
type Finish = Box<dyn FnOnce(std::result::Result<(), String>) + Send>;
/// Runs one request inside the batch's transaction; returns whether it failed fatally, and
/// how to answer it once the batch's fate is known.
type Job = Box<dyn for<'a, 'b> FnOnce(&'a mut Tables<'b>) -> (Option<String>, Finish) + Send>;

/// The sending side, held by every clone of the store. Dropping the last one stops the thread.
pub(crate) struct Writer {
    jobs: mpsc::Sender<Job>,
}

impl Writer {
    /// Starts the writer thread; returns the sender and the thread's handle.
    pub(crate) fn start(db: Arc<Database>) -> Result<(Writer, std::thread::JoinHandle<()>)> {
        let (tx, rx) = mpsc::channel::<Job>(QUEUE_DEPTH);
        let handle = std::thread::Builder::new()
            .name("sdfbs-meta-writer".into())
            .spawn(move || run(db, rx))
            .map_err(|e| MetaError::Backend(format!("cannot start the metadata writer: {e}")))?;
        Ok((Writer { jobs: tx }, handle))
    }

    /// Runs `op` in the next group commit and returns its result once the commit is durable.
    pub(crate) async fn write<R, F>(&self, op: F) -> Result<R>
    where
        R: Send + 'static,
        F: for<'a, 'b> FnOnce(&'a mut Tables<'b>) -> OpResult<R> + Send + 'static,
    {
        let (job, rx) = job(op);
        self.jobs
            .send(job)
            .await
            .map_err(|_| MetaError::Backend("the metadata writer thread has stopped".into()))?;
        rx.await.map_err(|_| {
            MetaError::Backend("the metadata writer dropped the request (see its log)".into())
        })?
    }
}

/// Wraps `op` into a job for the writer, and the receiver of its answer.
fn job<R, F>(op: F) -> (Job, oneshot::Receiver<Result<R>>)
where
    R: Send + 'static,
    F: for<'a, 'b> FnOnce(&'a mut Tables<'b>) -> OpResult<R> + Send + 'static,
{
    let (tx, rx) = oneshot::channel();
    let job: Job = Box::new(move |tables| {
        let res = op(tables);
        let fatal = match &res {
            Err(OpError::Fatal(e)) => Some(e.to_string()),
            _ => None,
        };
        let finish: Finish = Box::new(move |committed| {
            let out = match (res, committed) {
                (Err(OpError::Refused(e)), _) | (Err(OpError::Fatal(e)), _) => Err(e),
                (Ok(r), Ok(())) => Ok(r),
                (Ok(_), Err(reason)) => Err(MetaError::Backend(reason)),
            };
            // The caller may have gone away (request cancelled); the write stands anyway.
            let _ = tx.send(out);
        });
        (fatal, finish)
    });
    (job, rx)
}

fn run(db: Arc<Database>, mut rx: mpsc::Receiver<Job>) {
    let mut batch: Vec<Job> = Vec::with_capacity(MAX_BATCH);
    let mut last_len = 0usize;
    while let Some(first) = rx.blocking_recv() {
        batch.push(first);
        // Writers that were answered by the last commit come back one by one. If the last batch
        // was larger than what is queued now, wait a moment (at most GATHER_WAIT) for them, so
        // that N steady writers share one fsync instead of splitting into a small and a large
        // batch. A lone writer (last batch of 1) never waits.
        let deadline = std::time::Instant::now() + GATHER_WAIT;
        loop {
            match rx.try_recv() {
                Ok(job) => {
                    batch.push(job);
                    if batch.len() >= MAX_BATCH {
                        break;
                    }
                }
                Err(_) => {
                    if batch.len() >= last_len || std::time::Instant::now() >= deadline {
                        break;
                    }
                    std::thread::sleep(std::time::Duration::from_micros(20));
                }
            }
        }
        last_len = batch.len();
        run_batch(&db, &mut batch);
    }
}

fn run_batch(db: &Database, batch: &mut Vec<Job>) {
    let txn = match db.begin_write() {
        Ok(t) => t,
        Err(e) => {
            // Dropping the jobs answers their callers with "dropped"; say why here.
            tracing::error!(error = %e, "metadata: cannot begin a write transaction");
            batch.clear();
            return;
        }
    };
    let mut finishes = Vec::with_capacity(batch.len());
    let mut fatal: Option<String> = None;
    match Tables::open(&txn) {
        Ok(mut tables) => {
            for job in batch.drain(..) {
                let (f, finish) = job(&mut tables);
                if fatal.is_none() {
                    fatal = f;
                }
                finishes.push(finish);
            }
            if fatal.is_none() {
                if let Err(e) = tables.flush_counters() {
                    fatal = Some(e.to_string());
                }
            }
        }
        Err(e) => {
            tracing::error!(error = %e, "metadata: cannot open tables");
            batch.clear();
            return;
        }
    }
    let outcome = match fatal {
        Some(reason) => {
            if let Err(e) = txn.abort() {
                tracing::error!(error = %e, "metadata: abort failed");
            }
            tracing::error!(%reason, "metadata: write batch aborted");
            Err(format!(
                "the write was rolled back because a request in the same batch failed: {reason}"
            ))
        }
        None => txn.commit().map_err(|e| {
            tracing::error!(error = %e, "metadata: commit failed");
            format!("metadata commit failed: {e}")
        }),
    };
    for finish in finishes {
        finish(outcome.clone());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::embedded::tables::{get, put};

    fn db() -> (tempfile::TempDir, Database) {
        let dir = tempfile::tempdir().unwrap();
        let db = crate::embedded::open_db(&dir.path().join("w.redb")).unwrap();
        (dir, db)
    }

    fn set(name: &'static str) -> impl FnOnce(&mut Tables<'_>) -> OpResult<()> + Send {
        move |t| Ok(put(&mut t.settings, name.as_bytes(), &name.to_string())?)
    }

    fn stored(db: &Database, name: &str) -> Option<String> {
        use redb::ReadableDatabase;
        let txn = db.begin_read().unwrap();
        let t = txn.open_table(crate::embedded::codec::SETTINGS).unwrap();
        get(&t, name.as_bytes(), "setting").unwrap()
    }

    /// A refusal in a batch leaves the others committed.
    #[test]
    fn refusal_does_not_poison_the_batch() {
        let (_dir, db) = db();
        let (a, mut ra) = job(set("a"));
        let (b, mut rb) = job(|_t: &mut Tables<'_>| refuse::<()>(MetaError::PreconditionFailed));
        let (c, mut rc) = job(set("c"));
        run_batch(&db, &mut vec![a, b, c]);
        assert!(ra.try_recv().unwrap().is_ok());
        assert!(matches!(
            rb.try_recv().unwrap(),
            Err(MetaError::PreconditionFailed)
        ));
        assert!(rc.try_recv().unwrap().is_ok());
        assert_eq!(stored(&db, "a").as_deref(), Some("a"));
        assert_eq!(stored(&db, "c").as_deref(), Some("c"));
    }

    /// A fatal failure mid-write rolls the whole batch back, and nobody is told "ok".
    #[test]
    fn fatal_error_rolls_back_the_whole_batch() {
        let (_dir, db) = db();
        let (a, mut ra) = job(set("a"));
        let (b, mut rb) = job(|t: &mut Tables<'_>| {
            put(&mut t.settings, b"half", &"written".to_string())?;
            Err::<(), _>(OpError::Fatal(MetaError::Corrupt("boom".into())))
        });
        run_batch(&db, &mut vec![a, b]);
        assert!(matches!(ra.try_recv().unwrap(), Err(MetaError::Backend(_))));
        assert!(matches!(rb.try_recv().unwrap(), Err(MetaError::Corrupt(_))));
        assert_eq!(stored(&db, "a"), None);
        assert_eq!(stored(&db, "half"), None);
        // The writer goes on: the next batch commits.
        let (c, mut rc) = job(set("c"));
        run_batch(&db, &mut vec![c]);
        assert!(rc.try_recv().unwrap().is_ok());
        assert_eq!(stored(&db, "c").as_deref(), Some("c"));
    }
}
