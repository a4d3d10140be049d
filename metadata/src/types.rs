//! The records kept by the metadata store.
//!
//! These are the logical tables of DESIGN.md ("Metadata model"). Both backends store the same
//! records; only how they are keyed differs. Every record that is persisted is serialized with a
//! format version (see `codec.rs` in each backend) so a later release can read files written by
//! this one.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Milliseconds since the Unix epoch. All timestamps in metadata use this unit.
pub type UnixMillis = i64;

/// A node's stable id, as chunkd creates it once in its data directory.
pub type NodeId = String;

/// The SHA-256 of a chunk's bytes. Displayed and parsed as 64 lowercase hex characters. One
/// type for the whole workspace, defined with the chunkd protocol (its serde form, the one
/// records are stored with, is pinned by a test there).
pub use chunkd::wire::ChunkId;

/// Versioning state of a bucket, as S3 names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum VersioningState {
    #[default]
    Unversioned,
    Enabled,
    Suspended,
}

/// A row of the `buckets` table.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BucketRecord {
    pub name: String,
    /// Opaque, unique, never reused: a re-created bucket of the same name gets a new id, so
    /// rows left from the old one can never show through.
    pub id: String,
    pub created: UnixMillis,
    /// Access key id of the creator.
    pub owner: String,
    pub versioning: VersioningState,
    /// Number of shards of the objects table for this bucket (Scylla partitions by
    /// (bucket id, hash(key) mod shard_count)). Fixed at creation.
    pub shard_count: u32,
}

/// One entry of a manifest: a chunk and its length, in object order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestEntry {
    pub chunk: ChunkId,
    pub size: u64,
}

/// Where the replicas of one chunk were written. Passed with every commit so the `chunks` table
/// records where each replica actually is.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChunkPlacement {
    pub chunk: ChunkId,
    pub size: u64,
    pub nodes: Vec<NodeId>,
}

/// Size (and ETag/checksum) of one part of a multipart object, kept on the object so that
/// `GET ?partNumber=N` can find the byte range of a part.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartSummary {
    pub number: u32,
    pub size: u64,
    pub etag: String,
}

/// A row of the `objects` table: the current version of a key.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectRecord {
    pub key: String,
    /// Unique per commit (the manifest and the chunk refs are keyed by it).
    pub version_id: String,
    pub size: u64,
    /// The ETag without surrounding quotes (hex MD5, or `<hex>-<N>` for multipart).
    pub etag: String,
    pub last_modified: UnixMillis,
    pub content_type: Option<String>,
    /// Other stored HTTP headers, lower-case names: content-encoding, content-disposition,
    /// cache-control, expires, content-language.
    pub headers: BTreeMap<String, String>,
    /// `x-amz-meta-*` values, keyed by the name without the prefix, lower-case.
    pub user_metadata: BTreeMap<String, String>,
    /// Checksums as S3 returns them: algorithm name upper-case (`CRC32`, `CRC32C`,
    /// `CRC64NVME`, `SHA1`, `SHA256`) to base64 value.
    pub checksums: BTreeMap<String, String>,
    /// `COMPOSITE` or `FULL_OBJECT` when a checksum is stored.
    pub checksum_type: Option<String>,
    /// Empty for a single-part object.
    pub parts: Vec<PartSummary>,
    pub delete_marker: bool,
    /// Access key id of the writer.
    pub owner: String,
}

/// Condition of a conditional write. Checked atomically with the commit.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub enum PutCondition {
    #[default]
    None,
    /// `If-None-Match: *`: only if the key has no current object.
    IfNoneMatchStar,
    /// `If-Match: <etag>` (without quotes): only if the current object has this ETag.
    IfMatch(String),
}

/// What a successful commit replaced.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct CommitOutcome {
    /// The version that was current before, whose chunk refs have now been released.
    pub replaced: Option<ObjectRecord>,
}

/// A listing request. Keys are compared as UTF-8 bytes.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct ListQuery {
    pub prefix: String,
    /// When set, keys with this string after the prefix are folded into common prefixes.
    pub delimiter: Option<String>,
    /// Exclusive lower bound: only keys (and common prefixes) strictly greater are returned.
    /// This is S3's start-after, marker, and the decoded continuation token.
    pub start_after: Option<String>,
    /// At most this many entries (objects plus common prefixes). 0 returns nothing.
    pub max_keys: usize,
}

/// One page of a listing.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct ListPage {
    /// Objects in key order (delete markers are not listed).
    pub objects: Vec<ObjectRecord>,
    /// Common prefixes in order, each ending with the delimiter.
    pub common_prefixes: Vec<String>,
    /// True when more entries follow this page.
    pub is_truncated: bool,
    /// When truncated: the last key or common prefix of this page; pass it as `start_after`
    /// to continue. (A folded common prefix must be skipped whole by the next page.)
    pub next_start_after: Option<String>,
}

/// A row of the `uploads` table: one multipart upload in progress.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UploadRecord {
    pub upload_id: String,
    pub key: String,
    pub initiated: UnixMillis,
    pub owner: String,
    /// The headers and metadata the final object will carry.
    pub content_type: Option<String>,
    pub headers: BTreeMap<String, String>,
    pub user_metadata: BTreeMap<String, String>,
    /// Checksum algorithm announced at creation (upper-case), and `COMPOSITE`/`FULL_OBJECT`.
    pub checksum_algorithm: Option<String>,
    pub checksum_type: Option<String>,
}

/// A row of the `parts` table.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartRecord {
    pub number: u32,
    pub size: u64,
    /// Hex MD5 of the part, without quotes.
    pub etag: String,
    pub last_modified: UnixMillis,
    pub checksums: BTreeMap<String, String>,
    pub chunks: Vec<ManifestEntry>,
}

/// A listing of uploads in progress (ListMultipartUploads).
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct UploadListQuery {
    pub prefix: String,
    pub delimiter: Option<String>,
    /// Exclusive lower bound on (key, upload id) as S3's key-marker / upload-id-marker.
    pub key_marker: Option<String>,
    pub upload_id_marker: Option<String>,
    pub max_uploads: usize,
}

#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct UploadListPage {
    pub uploads: Vec<UploadRecord>,
    pub common_prefixes: Vec<String>,
    pub is_truncated: bool,
    pub next_key_marker: Option<String>,
    pub next_upload_id_marker: Option<String>,
}

/// A row of the `chunks` table.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChunkRecord {
    pub id: ChunkId,
    pub size: u64,
    pub replicas: Vec<NodeId>,
    pub created: UnixMillis,
    pub last_verified: UnixMillis,
    /// Number of chunk_refs rows (uses by object versions and multipart parts).
    pub ref_count: u64,
    /// When the last ref was dropped (0 while referenced); garbage collection waits a grace
    /// period after this.
    pub unreferenced_since: UnixMillis,
}

/// What a chunkd heartbeat reports; recorded as-is.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Heartbeat {
    pub node_id: NodeId,
    /// Base URL the gateway uses to reach the node, e.g. `http://127.0.0.1:7070`.
    pub address: String,
    pub zone: String,
    pub capacity_bytes: u64,
    pub used_bytes: u64,
    pub chunk_count: u64,
    pub corrupt_chunks: u64,
    pub at: UnixMillis,
}

/// State set by an administrator. Up / Suspect / Down are derived from the heartbeat age by
/// the gateway and are not stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum AdminState {
    #[default]
    Active,
    Draining,
    Removed,
}

/// A row of the `nodes` table.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeRecord {
    pub last: Heartbeat,
    pub first_seen: UnixMillis,
    pub admin_state: AdminState,
}

/// Per-bucket permission of an access key. Ordered: Owner implies Write implies Read.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Permission {
    Read,
    Write,
    Owner,
}

/// A row of the `access_keys` table.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessKeyRecord {
    pub access_key_id: String,
    pub secret_key: String,
    pub name: String,
    pub created: UnixMillis,
    /// A root key may do everything, on every bucket.
    pub is_root: bool,
    /// Bucket name to permission.
    pub permissions: BTreeMap<String, Permission>,
    /// Whether the key may create buckets (it becomes Owner of those it creates).
    pub can_create_buckets: bool,
}

/// Counts for `/status`.
#[derive(Clone, Debug, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct StoreStats {
    pub buckets: u64,
    pub objects: u64,
    pub object_bytes: u64,
    pub chunks: u64,
    pub chunk_bytes: u64,
}
