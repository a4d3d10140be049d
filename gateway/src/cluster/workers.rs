//! The background workers of the cluster and what they share: configuration, the signals that
//! wake them, and the status the admin API reports (`GET /cluster/repair`).
//!
//! All of them run only in the gateway holding the workers' lease (`lease.rs`):
//! * `monitor`: logs every node state change, wakes repair when a node goes Down, Draining or
//!   Removed, and queues an audit when a node comes back or its scrubber found corrupt chunks;
//! * `repair`: gives every chunk `replication` healthy replicas again, and empties Draining and
//!   Removed nodes;
//! * `audit`: checks one node's files against the chunk records (drops replicas that are
//!   gone, collects orphaned chunk files);
//! * `gc`: deletes chunks unreferenced for longer than the grace period, and aborts multipart
//!   uploads left untouched for too long;
//! * `rebalance`: moves chunks toward their placement when a node joins, at a low rate.
//!
//! Nothing here keeps a queue that a restart would lose: every pass starts from the metadata
//! store (chunk records, node states), so a new leader picks up where the old one stopped.

use super::lease::Leadership;
use super::membership::Membership;
use crate::pipeline::ChunkStore;
use sdfbs_metadata::{MetadataStore, NodeId};
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{watch, Notify};
use tokio::time::Instant;

/// Settings of the workers (`sdfbs gateway` flags).
#[derive(Clone, Debug)]
pub struct WorkerConfig {
    /// Whether this gateway competes for the workers' lease at all. Always on for `sdfbs
    /// gateway` and `sdfbs dev`; off in the in-process tests of the chunk pipeline, which check
    /// where chunks land and must not see repair or rebalance move them.
    pub enabled: bool,
    /// Bytes per second repair and drain may copy at most (`--repair-rate`, in MiB/s).
    pub repair_rate: u64,
    /// Chunks repaired at once.
    pub repair_concurrency: usize,
    /// Full repair pass at least this often, besides the passes events trigger.
    pub repair_scan_interval: Duration,
    /// How long a chunk stays unreferenced (and a chunk file unrecorded) before it is
    /// collected (`--gc-grace`).
    pub gc_grace: Duration,
    /// How often garbage collection runs (`--gc-interval`).
    pub gc_interval: Duration,
    /// Every node is audited at least this often (`--audit-interval`).
    pub audit_interval: Duration,
    /// Multipart uploads without activity for longer are aborted (`--multipart-max-age`).
    pub multipart_max_age: Duration,
}

impl Default for WorkerConfig {
    fn default() -> Self {
        WorkerConfig {
            enabled: true,
            repair_rate: 64 * 1024 * 1024,
            repair_concurrency: 4,
            repair_scan_interval: Duration::from_secs(600),
            gc_grace: Duration::from_secs(600),
            gc_interval: Duration::from_secs(60),
            audit_interval: Duration::from_secs(3600),
            multipart_max_age: Duration::from_secs(7 * 24 * 3600),
        }
    }
}

/// A chunk with no healthy replica left that could be read.
#[derive(Clone, Debug, Serialize)]
pub struct LostChunk {
    pub chunk: String,
    pub size: u64,
    /// The nodes its record names (none of them returned it).
    pub replicas: Vec<NodeId>,
    /// The last failure reading it.
    pub error: String,
    /// Milliseconds since the Unix epoch when it was first found lost.
    pub since: i64,
    /// Objects whose current version uses the chunk, as `bucket/key` (found by a bounded scan
    /// of the listings; `objects_scan_complete` says whether it covered every object).
    pub objects: Vec<String>,
    pub objects_scan_complete: bool,
}

/// Counters and findings of the workers since this gateway started leading.
#[derive(Clone, Debug, Default, Serialize)]
pub struct WorkerStatus {
    pub leader: bool,
    pub repair_passes: u64,
    pub repair_running: bool,
    /// Under-replicated chunks the last complete pass found.
    pub under_replicated_last_pass: u64,
    pub chunks_repaired: u64,
    pub replicas_written: u64,
    pub bytes_copied: u64,
    /// Replica records dropped because the copy was missing or corrupt, or moved off a node.
    pub replicas_dropped: u64,
    pub repair_failures: u64,
    pub lost: BTreeMap<String, LostChunk>,
    /// Draining or Removed nodes and how many chunk replicas they still held at the end of
    /// the last pass.
    pub evacuating: BTreeMap<NodeId, u64>,
    pub gc_passes: u64,
    pub chunks_collected: u64,
    pub orphans_collected: u64,
    pub uploads_aborted: u64,
    pub audits: u64,
    pub last_repair_pass_ms: Option<u64>,
    pub last_gc_pass_ms: Option<u64>,
}

/// What every worker holds.
pub struct WorkerContext {
    pub meta: Arc<dyn MetadataStore>,
    pub membership: Arc<Membership>,
    pub chunks: Arc<ChunkStore>,
    pub leadership: Leadership,
    pub config: WorkerConfig,
    pub replication: usize,
    pub status: Mutex<WorkerStatus>,
    /// Wakes a repair pass at once (shared with the read path, which notifies it when it
    /// finds a replica missing or corrupt).
    pub repair_now: Arc<Notify>,
    /// Nodes to audit next, and the signal that there are some.
    pub audit_queue: Mutex<BTreeSet<NodeId>>,
    pub audit_now: Notify,
    /// Wakes a rebalance pass (a node joined).
    pub rebalance_now: Notify,
    /// Shared by every copy repair and drain make.
    pub limiter: RateLimiter,
}

impl WorkerContext {
    pub fn new(
        meta: Arc<dyn MetadataStore>,
        membership: Arc<Membership>,
        chunks: Arc<ChunkStore>,
        leadership: Leadership,
        config: WorkerConfig,
    ) -> Arc<WorkerContext> {
        let replication = chunks.replication();
        let repair_now = chunks.repair_wanted();
        let limiter = RateLimiter::new(config.repair_rate);
        Arc::new(WorkerContext {
            meta,
            membership,
            chunks,
            leadership,
            config,
            replication,
            status: Mutex::new(WorkerStatus::default()),
            repair_now,
            audit_queue: Mutex::new(BTreeSet::new()),
            audit_now: Notify::new(),
            rebalance_now: Notify::new(),
            limiter,
        })
    }

    /// Changes the status under its lock.
    pub fn update(&self, f: impl FnOnce(&mut WorkerStatus)) {
        let mut status = self.status.lock().unwrap_or_else(|e| e.into_inner());
        f(&mut status);
    }

    /// A copy of the status.
    pub fn status(&self) -> WorkerStatus {
        let mut status = self
            .status
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        status.leader = self.leadership.is_leader();
        status
    }

    /// Queues an audit of `node`.
    pub fn queue_audit(&self, node: &str) {
        self.audit_queue
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(node.to_string());
        self.audit_now.notify_one();
    }

    /// Starts every worker; they stop when `stop` turns true.
    pub fn spawn(
        self: &Arc<Self>,
        stop: watch::Receiver<bool>,
    ) -> Vec<tokio::task::JoinHandle<()>> {
        vec![
            tokio::spawn(super::monitor::run(Arc::clone(self), stop.clone())),
            tokio::spawn(super::repair::run(Arc::clone(self), stop.clone())),
            tokio::spawn(super::audit::run(Arc::clone(self), stop.clone())),
            tokio::spawn(super::gc::run(Arc::clone(self), stop.clone())),
            tokio::spawn(super::rebalance::run(Arc::clone(self), stop)),
        ]
    }
}

/// Sleeps until `wake` is notified, `every` has passed, or `stop` turns true (then `false`).
pub(crate) async fn wait(wake: &Notify, every: Duration, stop: &mut watch::Receiver<bool>) -> bool {
    tokio::select! {
        _ = wake.notified() => true,
        _ = tokio::time::sleep(every) => true,
        _ = stop.wait_for(|s| *s) => false,
    }
}

/// A bound on bytes per second, shared by concurrent copies: each copy reserves its bytes and
/// sleeps until the budget allows them.
pub struct RateLimiter {
    bytes_per_s: u64,
    next_free: tokio::sync::Mutex<Instant>,
}

impl RateLimiter {
    pub fn new(bytes_per_s: u64) -> RateLimiter {
        RateLimiter {
            bytes_per_s: bytes_per_s.max(1),
            next_free: tokio::sync::Mutex::new(Instant::now()),
        }
    }

    /// Waits until `bytes` more may be copied.
    pub async fn take(&self, bytes: u64) {
        let cost = Duration::from_secs_f64(bytes as f64 / self.bytes_per_s as f64);
        let start = {
            let mut next = self.next_free.lock().await;
            let now = Instant::now();
            let start = (*next).max(now);
            *next = start + cost;
            start
        };
        tokio::time::sleep_until(start).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn the_rate_limiter_spaces_copies_by_their_size() {
        let limiter = RateLimiter::new(1024 * 1024);
        let begin = Instant::now();
        limiter.take(1024 * 1024).await; // the first one goes at once
        assert!(begin.elapsed() < Duration::from_millis(10));
        limiter.take(512 * 1024).await; // waits for the first MiB's second
        let waited = begin.elapsed();
        assert!(waited >= Duration::from_millis(999), "{waited:?}");
        limiter.take(1).await; // and for the half MiB's half second
        assert!(begin.elapsed() >= Duration::from_millis(1499));
    }
}
