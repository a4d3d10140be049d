//! SDFBS metadata: one async trait, [`MetadataStore`], and two backends.
//!
//! The gateway keeps every piece of cluster state (buckets, objects, manifests, chunks and their
//! replicas, chunk refs, multipart uploads, nodes, access keys, leases and a few settings) through
//! this trait, so a single gateway can run on the embedded [redb](embedded) file and many
//! stateless gateways can share a [ScyllaDB/Cassandra](scylla) cluster, with the same behaviour
//! (held to by one conformance suite, `tests/conformance/`).
//!
//! Invariants every backend keeps (DESIGN.md, "Metadata model"):
//! * A commit of an object version is one unit: a reader sees the old version or the new one,
//!   never a manifest without its object row or an object row without its manifest.
//! * Chunk refs are written before the object row (the commit point), so a committed object
//!   never points at an unreferenced chunk; the refs of the replaced version are released after.
//! * Bucket creation, conditional commits and leases are atomic: of two racing callers exactly
//!   one wins.

pub mod embedded;
mod nodes;
pub mod scylla;
mod types;

pub use nodes::*;
pub use types::*;

use async_trait::async_trait;
use std::time::Duration;

/// Errors of the metadata layer. The gateway maps them to S3 error codes in one place.
#[derive(Debug, thiserror::Error)]
pub enum MetaError {
    #[error("bucket `{0}` already exists")]
    BucketAlreadyExists(String),
    #[error("bucket `{0}` does not exist")]
    NoSuchBucket(String),
    #[error("bucket `{0}` is not empty (it holds objects or unfinished multipart uploads)")]
    BucketNotEmpty(String),
    #[error("no object under that key")]
    NoSuchKey,
    #[error("multipart upload `{0}` does not exist (aborted, completed, or never created)")]
    NoSuchUpload(String),
    #[error("part {0} was not uploaded to this multipart upload")]
    InvalidPart(u32),
    #[error("the precondition of the conditional request did not hold")]
    PreconditionFailed,
    #[error("access key `{0}` already exists")]
    KeyAlreadyExists(String),
    #[error("access key `{0}` does not exist")]
    NoSuchAccessKey(String),
    #[error("node `{0}` is not known")]
    NoSuchNode(String),
    /// A stored record could not be decoded (unknown format version, or damaged).
    #[error("metadata record is unreadable: {0}")]
    Corrupt(String),
    /// The backend failed (I/O, database unavailable, timeout). Retrying may help.
    #[error("metadata backend error: {0}")]
    Backend(String),
}

pub type Result<T> = std::result::Result<T, MetaError>;

/// A manifest and the records of its first chunks (`None` for a chunk without one), as
/// `get_manifest_for_read` answers.
pub type ReadManifest = (Vec<ManifestEntry>, Vec<Option<ChunkRecord>>);

/// What `get_object_for_read` answers for an existing bucket: the bucket, the key's current
/// version if any, and that version's [`ReadManifest`] when it is an object.
pub type ObjectForRead = (BucketRecord, Option<ObjectRecord>, Option<ReadManifest>);

/// All cluster state, behind one async trait. Implementations are cheap to share
/// (`Arc<dyn MetadataStore>`), and every method is safe to call concurrently.
#[async_trait]
pub trait MetadataStore: Send + Sync + 'static {
    // ----- buckets -----

    /// Creates a bucket. Of two concurrent creates of one name exactly one returns `Ok`; the
    /// other gets `BucketAlreadyExists`. `record.id` must be fresh (the caller makes a UUID).
    async fn create_bucket(&self, record: BucketRecord) -> Result<()>;
    async fn get_bucket(&self, name: &str) -> Result<Option<BucketRecord>>;
    /// All buckets, ordered by name.
    async fn list_buckets(&self) -> Result<Vec<BucketRecord>>;
    /// Deletes an empty bucket; `BucketNotEmpty` while it holds objects or uploads.
    async fn delete_bucket(&self, name: &str) -> Result<()>;
    async fn set_bucket_versioning(&self, name: &str, state: VersioningState) -> Result<()>;

    // ----- objects -----

    /// Commits a new current version of `object.key` in `bucket`, as one unit: records the
    /// replicas of every chunk (`placements`, merged into existing chunk records), writes the
    /// manifest and one chunk ref per manifest entry, then the object row (the commit point),
    /// then releases the refs of the version it replaced. `condition` is checked atomically
    /// with the commit (`PreconditionFailed` otherwise, and nothing is written).
    async fn commit_object(
        &self,
        bucket: &BucketRecord,
        object: ObjectRecord,
        manifest: Vec<ManifestEntry>,
        placements: Vec<ChunkPlacement>,
        condition: PutCondition,
    ) -> Result<CommitOutcome>;
    /// The current version of a key (delete markers included, for the caller to interpret).
    async fn get_object(&self, bucket: &BucketRecord, key: &str) -> Result<Option<ObjectRecord>>;
    /// The chunks of a version, in object order.
    async fn get_manifest(&self, version_id: &str) -> Result<Vec<ManifestEntry>>;
    /// What a GET or HEAD looks up first: the bucket named `bucket` and the current version of
    /// `key` in it (delete markers included), in one trip to the store where the backend can.
    /// `None` when the bucket does not exist.
    async fn get_bucket_and_object(
        &self,
        bucket: &str,
        key: &str,
    ) -> Result<Option<(BucketRecord, Option<ObjectRecord>)>> {
        let Some(record) = self.get_bucket(bucket).await? else {
            return Ok(None);
        };
        let object = self.get_object(&record, key).await?;
        Ok(Some((record, object)))
    }
    /// What a read of a version needs next: its manifest (as `get_manifest`, `NoSuchKey` when
    /// there is none) and the records of its first `records` chunks (`None` for a chunk without
    /// one), in one trip to the store where the backend can. A read needs a record's replicas
    /// only: a backend that keeps refs apart from the record (Cassandra) may leave `ref_count`
    /// 0 here rather than count refs on the request path; `get_chunk` always counts.
    async fn get_manifest_for_read(
        &self,
        version_id: &str,
        records: usize,
    ) -> Result<ReadManifest> {
        let manifest = self.get_manifest(version_id).await?;
        let mut found = Vec::new();
        for entry in manifest.iter().take(records) {
            found.push(self.get_chunk(&entry.chunk).await?);
        }
        Ok((manifest, found))
    }
    /// Everything a GET reads before its first chunk, in one trip to the store where the
    /// backend can: `get_bucket_and_object`'s answer (`None`: no such bucket) and, when the
    /// key's current version is an object (not a delete marker), `get_manifest_for_read`'s
    /// answer for it.
    async fn get_object_for_read(
        &self,
        bucket: &str,
        key: &str,
        records: usize,
    ) -> Result<Option<ObjectForRead>> {
        let Some((bucket, object)) = self.get_bucket_and_object(bucket, key).await? else {
            return Ok(None);
        };
        let manifest = match &object {
            Some(o) if !o.delete_marker => {
                Some(self.get_manifest_for_read(&o.version_id, records).await?)
            }
            _ => None,
        };
        Ok(Some((bucket, object, manifest)))
    }
    /// Removes the current version of a key and releases its refs. Returns the removed
    /// record, or `None` when there was none (S3 DeleteObject succeeds either way).
    async fn delete_object(&self, bucket: &BucketRecord, key: &str)
        -> Result<Option<ObjectRecord>>;
    /// One page of a listing; common prefixes are folded by the store (it skips past a folded
    /// prefix instead of reading every key under it).
    async fn list_objects(&self, bucket: &BucketRecord, query: &ListQuery) -> Result<ListPage>;

    // ----- multipart uploads -----

    async fn create_upload(&self, bucket: &BucketRecord, upload: UploadRecord) -> Result<()>;
    /// `NoSuchUpload` when the upload is not in progress under this bucket and key.
    async fn get_upload(
        &self,
        bucket: &BucketRecord,
        key: &str,
        upload_id: &str,
    ) -> Result<UploadRecord>;
    /// Records a part (replacing an earlier upload of the same number, whose refs are
    /// released), with chunk refs and replica records, as one unit.
    async fn put_part(
        &self,
        bucket: &BucketRecord,
        key: &str,
        upload_id: &str,
        part: PartRecord,
        placements: Vec<ChunkPlacement>,
    ) -> Result<()>;
    /// Parts in number order, strictly after `after_part`, at most `max` of them.
    async fn list_parts(
        &self,
        bucket: &BucketRecord,
        key: &str,
        upload_id: &str,
        after_part: u32,
        max: usize,
    ) -> Result<Vec<PartRecord>>;
    async fn list_uploads(
        &self,
        bucket: &BucketRecord,
        query: &UploadListQuery,
    ) -> Result<UploadListPage>;
    /// Completes an upload: the object's manifest is the concatenation of the chunks of
    /// `part_numbers` in the order given (no data copied), its refs replace the parts' refs,
    /// parts not listed are released, and the upload disappears, all as one unit with the
    /// commit of `object` (same rules as `commit_object`, `condition` included). The caller
    /// has validated the part list and computed the ETag and sizes.
    async fn complete_upload(
        &self,
        bucket: &BucketRecord,
        upload_id: &str,
        object: ObjectRecord,
        part_numbers: &[u32],
        condition: PutCondition,
    ) -> Result<CommitOutcome>;
    /// Drops an upload and releases the refs of all its parts.
    async fn abort_upload(&self, bucket: &BucketRecord, key: &str, upload_id: &str) -> Result<()>;

    // ----- chunks -----

    async fn get_chunk(&self, id: &ChunkId) -> Result<Option<ChunkRecord>>;
    /// A chunk's record for moving its bytes (reads, and the dedup check of a write): size and
    /// replicas. Like `get_chunk`, except that a backend keeping refs apart from the record may
    /// leave `ref_count` 0 rather than count refs on the request path (the all-zero chunk of a
    /// backup set can have millions).
    async fn get_chunk_location(&self, id: &ChunkId) -> Result<Option<ChunkRecord>> {
        self.get_chunk(id).await
    }
    /// Records one more replica of a chunk (after repair copied it). Idempotent.
    async fn add_replica(&self, id: &ChunkId, node: &str) -> Result<()>;
    /// Forgets one replica (lost, corrupt, or moved away). Idempotent.
    async fn drop_replica(&self, id: &ChunkId, node: &str) -> Result<()>;
    /// Referenced chunks, in id order strictly after `after`, whose replicas on `healthy`
    /// nodes number fewer than `replication`.
    async fn under_replicated_chunks(
        &self,
        replication: usize,
        healthy: &[NodeId],
        after: Option<ChunkId>,
        limit: usize,
    ) -> Result<Vec<ChunkRecord>>;
    /// Chunks with no refs since before `unreferenced_before`, in id order after `after`.
    async fn unreferenced_chunks(
        &self,
        unreferenced_before: UnixMillis,
        after: Option<ChunkId>,
        limit: usize,
    ) -> Result<Vec<ChunkRecord>>;
    /// Removes a chunk record, only if it is still unreferenced (a concurrent upload may have
    /// reused it). Returns whether it was removed.
    async fn delete_chunk_if_unreferenced(&self, id: &ChunkId) -> Result<bool>;
    /// Chunks with a replica on `node`, in id order after `after` (for draining).
    async fn chunks_on_node(
        &self,
        node: &str,
        after: Option<ChunkId>,
        limit: usize,
    ) -> Result<Vec<ChunkRecord>>;

    // ----- nodes -----

    /// Registers the node on its first heartbeat; updates it after. Returns the record.
    async fn record_heartbeat(&self, heartbeat: Heartbeat) -> Result<NodeRecord>;
    async fn list_nodes(&self) -> Result<Vec<NodeRecord>>;
    async fn set_node_state(&self, node: &str, state: AdminState) -> Result<()>;
    /// Appends one state change to a node's history (`NoSuchNode` is not checked: the history
    /// of a node is kept even after its record is gone).
    async fn record_node_event(&self, event: NodeEvent) -> Result<()>;
    /// State changes, newest first, at most `limit`: of one node, or of every node (`None`).
    async fn node_events(&self, node: Option<&str>, limit: usize) -> Result<Vec<NodeEvent>>;

    // ----- access keys -----

    /// `KeyAlreadyExists` if the id is taken.
    async fn create_access_key(&self, key: AccessKeyRecord) -> Result<()>;
    async fn get_access_key(&self, access_key_id: &str) -> Result<Option<AccessKeyRecord>>;
    async fn list_access_keys(&self) -> Result<Vec<AccessKeyRecord>>;
    async fn delete_access_key(&self, access_key_id: &str) -> Result<()>;
    /// Sets (`Some`) or removes (`None`) a key's permission on a bucket.
    async fn set_permission(
        &self,
        access_key_id: &str,
        bucket: &str,
        permission: Option<Permission>,
    ) -> Result<()>;

    // ----- leases -----

    /// Takes the lease if it is free or expired (or already ours, which renews it). Atomic.
    async fn acquire_lease(&self, name: &str, holder: &str, ttl: Duration) -> Result<bool>;
    /// Extends a lease we hold; `false` if it was lost.
    async fn renew_lease(&self, name: &str, holder: &str, ttl: Duration) -> Result<bool>;
    /// Gives the lease up if we hold it.
    async fn release_lease(&self, name: &str, holder: &str) -> Result<()>;

    // ----- settings -----

    /// Stores `value` under `name` unless a value is there already; returns the stored value
    /// (ours, or the one that won). Used for generated credentials kept across restarts.
    async fn setting_get_or_init(&self, name: &str, value: &str) -> Result<String>;
    async fn get_setting(&self, name: &str) -> Result<Option<String>>;

    // ----- statistics -----

    async fn stats(&self) -> Result<StoreStats>;
}

/// Milliseconds since the Unix epoch, now.
pub fn now_millis() -> UnixMillis {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}
