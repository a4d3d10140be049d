//! Rows of the Scylla tables and their conversion to and from the metadata records.

use super::cql::{permission_from_text, versioning_from_text};
use crate::{AccessKeyRecord, BucketRecord, ChunkId, ChunkRecord, MetaError, Result};
use std::collections::BTreeMap;

/// The partition of a chunk in the `chunks` table: the first 12 bits of its id (4,096
/// partitions), so a walk in id order is a walk over partitions in order.
pub(super) fn chunk_prefix(id: &ChunkId) -> i32 {
    (i32::from(id.0[0]) << 4) | (i32::from(id.0[1]) >> 4)
}

/// Number of chunk partitions.
pub(super) const CHUNK_PREFIXES: i32 = 4096;

pub(super) fn chunk_id_from_bytes(bytes: &[u8]) -> Result<ChunkId> {
    let id: [u8; 32] = bytes.try_into().map_err(|_| {
        MetaError::Corrupt(format!("chunk id of {} bytes, expected 32", bytes.len()))
    })?;
    Ok(ChunkId(id))
}

/// Sizes are `u64` in the records and `bigint` in CQL; real sizes are far below 2^63.
pub(super) fn to_i64(v: u64) -> Result<i64> {
    i64::try_from(v).map_err(|_| MetaError::Backend(format!("size {v} does not fit a CQL bigint")))
}

fn to_u64(v: Option<i64>) -> u64 {
    v.unwrap_or(0).max(0) as u64
}

/// `name, id, created, owner, versioning, shard_count`
pub(super) type BucketRow = (
    String,
    Option<String>,
    Option<i64>,
    Option<String>,
    Option<String>,
    Option<i32>,
);

pub(super) fn bucket_from_row(row: BucketRow) -> Result<BucketRecord> {
    let (name, id, created, owner, versioning, shard_count) = row;
    Ok(BucketRecord {
        id: id.ok_or_else(|| MetaError::Corrupt(format!("bucket `{name}` has no id")))?,
        name,
        created: created.unwrap_or(0),
        owner: owner.unwrap_or_default(),
        versioning: versioning_from_text(versioning.as_deref().unwrap_or(""))?,
        shard_count: shard_count.unwrap_or(1).max(1) as u32,
    })
}

/// `chunk_id, size, replicas, created, last_verified, unreferenced_since`
pub(super) type ChunkRow = (
    Vec<u8>,
    Option<i64>,
    Option<Vec<String>>,
    Option<i64>,
    Option<i64>,
    Option<i64>,
);

/// A chunk row; `ref_count` is filled in by the caller (it lives in `chunk_refs`).
pub(super) fn chunk_from_row(row: ChunkRow) -> Result<ChunkRecord> {
    let (id, size, replicas, created, last_verified, unreferenced_since) = row;
    Ok(ChunkRecord {
        id: chunk_id_from_bytes(&id)?,
        size: to_u64(size),
        replicas: replicas.unwrap_or_default(),
        created: created.unwrap_or(0),
        last_verified: last_verified.unwrap_or(0),
        ref_count: 0,
        unreferenced_since: unreferenced_since.unwrap_or(0),
    })
}

/// `access_key_id, secret_key, name, created, is_root, can_create_buckets, permissions`
pub(super) type KeyRow = (
    String,
    Option<String>,
    Option<String>,
    Option<i64>,
    Option<bool>,
    Option<bool>,
    Option<BTreeMap<String, String>>,
);

pub(super) fn key_from_row(row: KeyRow) -> Result<AccessKeyRecord> {
    let (access_key_id, secret_key, name, created, is_root, can_create_buckets, permissions) = row;
    let mut perms = BTreeMap::new();
    for (bucket, p) in permissions.unwrap_or_default() {
        perms.insert(bucket, permission_from_text(&p)?);
    }
    Ok(AccessKeyRecord {
        secret_key: secret_key.ok_or_else(|| {
            MetaError::Corrupt(format!("access key `{access_key_id}` has no secret"))
        })?,
        access_key_id,
        name: name.unwrap_or_default(),
        created: created.unwrap_or(0),
        is_root: is_root.unwrap_or(false),
        permissions: perms,
        can_create_buckets: can_create_buckets.unwrap_or(false),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunk_prefixes_follow_id_order() {
        let mut a = [0u8; 32];
        assert_eq!(chunk_prefix(&ChunkId(a)), 0);
        a[0] = 0xff;
        a[1] = 0xff;
        assert_eq!(chunk_prefix(&ChunkId(a)), CHUNK_PREFIXES - 1);
        a[0] = 0x12;
        a[1] = 0x3f;
        assert_eq!(chunk_prefix(&ChunkId(a)), 0x123);
        assert!(chunk_id_from_bytes(&[1, 2, 3]).is_err());
    }
}
