//! The chunk pipeline: object bodies in and out of the chunkd nodes (DESIGN.md, "Chunks").
//!
//! A body is cut into chunks of exactly 1 MiB; each chunk's id is the SHA-256 of its bytes and
//! it is stored on `replication` distinct nodes chosen by weighted rendezvous hashing
//! (`placement.rs`). The write path is in `pipeline/write.rs`, the read path in
//! `pipeline/read.rs`; this file holds the types they share and the `ChunkStore` handle the S3
//! layer calls.
//!
//! The pipeline never touches object metadata: it returns what it wrote (`WrittenData`), and the
//! caller commits it. That ordering is the data-safety rule of every write: every replica is
//! fsynced on its node (chunkd answers a PUT only after fsync) before `write_body` returns, and
//! only then may the caller commit, so a committed object never points at a chunk that is not
//! durably stored on `replication` nodes.

mod read;
mod replicas;
mod write;

pub use replicas::Fetched;

use crate::cluster::membership::{Membership, NodeState, NodeView};
use bytes::Bytes;
use chunkd::ChunkClient;
use futures::stream::BoxStream;
use futures::Stream;
use sdfbs_metadata::{
    ChunkId, ChunkPlacement, ChunkRecord, ManifestEntry, MetaError, MetadataStore,
};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::Notify;

/// How long a node that failed a request is tried last (by writes and reads).
const FAILING_NODE_PENALTY: Duration = Duration::from_secs(5);

/// Default of `--gc-grace`.
pub const DEFAULT_GC_GRACE: Duration = Duration::from_secs(600);

/// Chunks are exactly this long (the last chunk of an object may be shorter).
pub const CHUNK_SIZE: usize = 1024 * 1024;

/// Extra digests computed over the whole body while the pipeline reads it (MD5 for the ETag, the
/// x-amz-checksum-* algorithms). Updated off the reactor, chunk by chunk, in object order.
pub trait BodyHasher: Send + 'static {
    fn update(&mut self, data: &[u8]);
}

/// A hasher that computes nothing, for callers that need no digest of the body.
impl BodyHasher for () {
    fn update(&mut self, _data: &[u8]) {}
}

/// What a written body became: its chunks in order, where their replicas are, its length.
#[derive(Clone, Debug, Default)]
pub struct WrittenData {
    pub manifest: Vec<ManifestEntry>,
    pub placements: Vec<ChunkPlacement>,
    pub size: u64,
}

/// Errors of the pipeline. The S3 layer maps them to S3 error codes.
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    /// Fewer than `replication` nodes could take a chunk (S3 503 ServiceUnavailable).
    #[error("not enough storage nodes to store a chunk: {needed} replicas needed, only {available} node(s) could take it; start more chunkd nodes or check that they heartbeat to this gateway")]
    InsufficientNodes { needed: usize, available: usize },
    /// The client's body failed (aborted, bad aws-chunked signature or checksum).
    #[error("request body failed: {0}")]
    Body(String),
    /// No replica of a chunk could be read.
    #[error("chunk unavailable: {0}")]
    ChunkUnavailable(String),
    #[error(transparent)]
    Metadata(#[from] MetaError),
    #[error("internal error: {0}")]
    Internal(String),
}

/// Writes bodies as replicated chunks and reads them back. Cheap to share (`Arc`).
pub struct ChunkStore {
    inner: Arc<Inner>,
}

/// What the write and read paths share; cloned (as an `Arc`) into the streams they return.
struct Inner {
    meta: Arc<dyn MetadataStore>,
    membership: Arc<Membership>,
    replication: usize,
    cluster_secret: String,
    /// One client (connection pool) per node address.
    clients: Mutex<HashMap<String, ChunkClient>>,
    /// Nodes that just failed a request, and until when they go to the back of the line. A node
    /// that died is only declared Down after `node_down_after`; meanwhile this keeps every
    /// chunk from trying it first (and waiting for a timeout if it hangs rather than refuses).
    failing: Mutex<HashMap<String, Instant>>,
    /// Notified when a read found a replica missing or corrupt (the repair worker waits on it).
    repair_wanted: Arc<Notify>,
    /// How long garbage collection leaves an unreferenced chunk alone: a write in progress
    /// touches its chunks every third of it, so none is collected before the commit refers to
    /// it however long the upload takes.
    gc_grace: Duration,
}

impl ChunkStore {
    pub fn new(
        meta: Arc<dyn MetadataStore>,
        membership: Arc<Membership>,
        replication: usize,
        cluster_secret: &str,
    ) -> ChunkStore {
        ChunkStore {
            inner: Arc::new(Inner {
                meta,
                membership,
                replication: replication.max(1),
                cluster_secret: cluster_secret.to_string(),
                clients: Mutex::new(HashMap::new()),
                failing: Mutex::new(HashMap::new()),
                repair_wanted: Arc::new(Notify::new()),
                gc_grace: DEFAULT_GC_GRACE,
            }),
        }
    }

    /// The same store with another garbage-collection grace period (the gateway's
    /// `--gc-grace`; writes keep their chunks touched within it).
    pub fn with_gc_grace(self, grace: Duration) -> ChunkStore {
        let mut inner = match Arc::try_unwrap(self.inner) {
            Ok(inner) => inner,
            Err(shared) => return ChunkStore { inner: shared },
        };
        inner.gc_grace = grace;
        ChunkStore {
            inner: Arc::new(inner),
        }
    }

    /// Notified whenever a read finds a replica missing or corrupt.
    pub fn repair_wanted(&self) -> Arc<Notify> {
        Arc::clone(&self.inner.repair_wanted)
    }

    /// The client of the node at `address` (shared connection pool).
    pub fn client(&self, address: &str) -> ChunkClient {
        self.inner.client(address)
    }

    /// `nodes` in the order a read tries them: Up first (shuffled), then Suspect, then Down;
    /// nodes that just failed last within each.
    pub fn read_order(&self, nodes: Vec<NodeView>) -> Vec<NodeView> {
        replicas::read_order(&self.inner, nodes)
    }

    /// Reads chunk `id` from the first of `nodes` (in that order) that returns `size` bytes
    /// hashing to `id`; reports the nodes whose copy was missing or corrupt.
    pub async fn fetch_verified(
        &self,
        id: &ChunkId,
        size: u64,
        nodes: &[NodeView],
    ) -> Result<Fetched, PipelineError> {
        replicas::fetch_verified(&self.inner, id, size, nodes).await
    }

    /// Writes chunk `id` to more nodes until `holders` has `need` of them, in placement order,
    /// never to a node in `exclude`; the nodes written to are appended to `holders` (each
    /// acknowledged after fsync), also when it then fails with `InsufficientNodes`.
    pub async fn place_replicas(
        &self,
        id: &ChunkId,
        data: &Bytes,
        holders: &mut Vec<NodeView>,
        exclude: &[String],
        need: usize,
    ) -> Result<(), PipelineError> {
        replicas::place(&self.inner, id, data, holders, exclude, need).await
    }

    /// How many replicas of each chunk a write makes.
    pub fn replication(&self) -> usize {
        self.inner.replication
    }

    /// The cluster membership this store places chunks with.
    pub fn membership(&self) -> &Arc<Membership> {
        &self.inner.membership
    }

    /// Cuts `body` into exact 1 MiB chunks, hashes each (SHA-256 id + hasher.update) off the reactor,
    /// writes every chunk to `replication` distinct Up nodes (HRW order, next node on failure, distinct zones
    /// when several), pipelined with a small bound on chunks in flight. Returns when every replica is fsynced.
    /// An error of `body` (client abort, failed aws-chunked signature/checksum from s3s) aborts the write:
    /// nothing is committed by the pipeline, ever (the caller commits metadata afterwards).
    pub async fn write_body<S, E, H>(
        &self,
        body: S,
        hasher: H,
    ) -> Result<(WrittenData, H), PipelineError>
    where
        S: Stream<Item = Result<Bytes, E>> + Send + Unpin + 'static,
        E: Into<Box<dyn std::error::Error + Send + Sync>>,
        H: BodyHasher,
    {
        write::write_body(&self.inner, body, hasher).await
    }

    /// Streams bytes [start, end) of the object whose manifest is given, fetching only the chunks the range
    /// needs, prefetching a few ahead, verifying each chunk's SHA-256, failing over to another replica on
    /// error or mismatch (logging it for repair). If no replica can be read, the stream yields Err (the
    /// HTTP layer must then abort the connection, never end it as if complete).
    pub fn read_range(
        &self,
        manifest: Vec<ManifestEntry>,
        start: u64,
        end: u64,
    ) -> BoxStream<'static, Result<Bytes, PipelineError>> {
        read::read_range(Arc::clone(&self.inner), manifest, Vec::new(), start, end)
    }

    /// [`read_range`](Self::read_range) with the chunk records of the first manifest entries
    /// already read (`MetadataStore::get_manifest_for_read`), so those chunks are fetched
    /// without another metadata lookup: for a small object, the whole read costs one.
    pub fn read_range_with_records(
        &self,
        manifest: Vec<ManifestEntry>,
        records: Vec<Option<ChunkRecord>>,
        start: u64,
        end: u64,
    ) -> BoxStream<'static, Result<Bytes, PipelineError>> {
        read::read_range(Arc::clone(&self.inner), manifest, records, start, end)
    }

    /// How many chunk records a read should ask for along with the manifest: the chunks it
    /// fetches at once.
    pub const RECORDS_AHEAD: usize = read::PREFETCH_CHUNKS;
}

impl Inner {
    /// The client for a node address (created on first use, then shared).
    fn client(&self, address: &str) -> ChunkClient {
        let mut clients = self.clients.lock().unwrap_or_else(|e| e.into_inner());
        clients
            .entry(address.to_string())
            .or_insert_with(|| ChunkClient::new(address, &self.cluster_secret))
            .clone()
    }

    /// Records that a request to `node_id` failed (not merely "chunk not found").
    fn mark_failing(&self, node_id: &str) {
        let mut failing = self.failing.lock().unwrap_or_else(|e| e.into_inner());
        failing.insert(node_id.to_string(), Instant::now() + FAILING_NODE_PENALTY);
    }

    /// Whether `node_id` failed a request within the last `FAILING_NODE_PENALTY`.
    fn is_failing(&self, node_id: &str) -> bool {
        let mut failing = self.failing.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        failing.retain(|_, until| *until > now);
        failing.contains_key(node_id)
    }

    /// The nodes that may take a new chunk: Up ones first, then Suspect ones (tried only when
    /// the Up ones are not enough). Down, Draining and Removed nodes never receive new chunks.
    fn writable_nodes(&self) -> (Vec<NodeView>, Vec<NodeView>) {
        let (up, suspect): (Vec<NodeView>, Vec<NodeView>) = self
            .membership
            .nodes()
            .into_iter()
            .filter(NodeView::accepts_new_chunks)
            .partition(|n| n.state == NodeState::Up);
        (up, suspect)
    }
}

/// SHA-256 of a chunk in one buffer (see [`frames_id`]).
async fn chunk_id(data: Bytes) -> Result<ChunkId, PipelineError> {
    frames_id(vec![data]).await
}

/// SHA-256 of a chunk held as consecutive frames, computed off the reactor (a 1 MiB hash takes
/// milliseconds) unless it is small: hashing a small chunk takes a few microseconds, less than the
/// two thread switches a trip to the blocking pool costs.
async fn frames_id(frames: Vec<Bytes>) -> Result<ChunkId, PipelineError> {
    let small = frames.iter().map(Bytes::len).sum::<usize>() <= INLINE_HASH_MAX;
    let hash = move || {
        let mut hasher = Sha256::new();
        for frame in &frames {
            hasher.update(frame);
        }
        ChunkId(hasher.finalize().into())
    };
    if small {
        return Ok(hash());
    }
    tokio::task::spawn_blocking(hash)
        .await
        .map_err(|e| PipelineError::Internal(format!("hashing task failed: {e}")))
}

/// Chunks up to this size are hashed on the calling task (about 40 µs of SHA-256 at most).
const INLINE_HASH_MAX: usize = 64 * 1024;
