//! Object commits and deletes (write side), shared by PutObject, CopyObject and
//! CompleteMultipartUpload.
//!
//! Order inside the one write transaction, as DESIGN.md requires: replica records and chunk refs
//! first, then the manifest, then the object row (the commit point), then the release of the
//! refs of the version that was replaced. The transaction makes all of it visible at once, so a
//! reader sees the old version or the new one, never a mix.

use super::codec::*;
use super::tables::{get, put, Tables, C_OBJECTS, C_OBJECT_BYTES};
use super::writer::{refuse, OpResult};
use crate::{BucketRecord, ManifestEntry, MetaError, ObjectRecord, PutCondition};

/// Refuses unless the bucket row still exists with this id (a bucket deleted and re-created
/// meanwhile must not receive the old one's objects).
pub(crate) fn check_bucket(t: &Tables<'_>, bucket: &BucketRecord) -> OpResult<()> {
    let row: Option<BucketRecord> = get(&t.buckets, bucket.name.as_bytes(), "bucket")?;
    match row {
        Some(b) if b.id == bucket.id => Ok(()),
        _ => refuse(MetaError::NoSuchBucket(bucket.name.clone())),
    }
}

/// Checks the bucket and the put condition against the current version, before anything is
/// written; returns the current version (the one the commit will replace).
pub(crate) fn check_commit(
    t: &Tables<'_>,
    bucket: &BucketRecord,
    key: &str,
    condition: &PutCondition,
) -> OpResult<Option<ObjectRecord>> {
    check_bucket(t, bucket)?;
    let current: Option<ObjectRecord> = get(&t.objects, &object_key(&bucket.id, key), "object")?;
    let live = current.as_ref().filter(|c| !c.delete_marker);
    let holds = match condition {
        PutCondition::None => true,
        PutCondition::IfNoneMatchStar => live.is_none(),
        PutCondition::IfMatch(etag) => {
            live.is_some_and(|c| c.etag.trim_matches('"') == etag.trim_matches('"'))
        }
    };
    if !holds {
        return refuse(MetaError::PreconditionFailed);
    }
    Ok(current)
}

/// Installs `object` as the current version with `manifest` (whose refs the caller has already
/// added), and releases the version it replaces. Only called after every check passed.
pub(crate) fn install(
    t: &mut Tables<'_>,
    bucket_id: &str,
    object: &ObjectRecord,
    manifest: &[ManifestEntry],
    replaced: Option<&ObjectRecord>,
) -> OpResult<()> {
    // Read the replaced manifest first: a caller reusing a version id must not lose the new one.
    let old_entries = match replaced {
        Some(old) => t.take_manifest(&old.version_id)?,
        None => Vec::new(),
    };
    t.write_manifest(&object.version_id, manifest)?;
    // The commit point: the object row.
    put(&mut t.objects, &object_key(bucket_id, &object.key), object)?;
    if !object.delete_marker {
        t.count(C_OBJECTS, 1)?;
        t.count(C_OBJECT_BYTES, i128::from(object.size))?;
    }
    if let Some(old) = replaced {
        if !old.delete_marker {
            t.count(C_OBJECTS, -1)?;
            t.count(C_OBJECT_BYTES, -i128::from(old.size))?;
        }
        t.release_refs(&old_entries)?;
    }
    Ok(())
}

/// Removes the current version of a key and releases its refs.
pub(crate) fn delete(
    t: &mut Tables<'_>,
    bucket: &BucketRecord,
    key: &str,
) -> OpResult<Option<ObjectRecord>> {
    let row_key = object_key(&bucket.id, key);
    let Some(current) = get::<ObjectRecord>(&t.objects, &row_key, "object")? else {
        return Ok(None);
    };
    t.objects.remove(row_key.as_slice()).map_err(backend)?;
    if !current.delete_marker {
        t.count(C_OBJECTS, -1)?;
        t.count(C_OBJECT_BYTES, -i128::from(current.size))?;
    }
    let entries = t.take_manifest(&current.version_id)?;
    t.release_refs(&entries)?;
    Ok(Some(current))
}

/// Refuses a manifest that names a chunk with no record and no placement in this commit.
pub(crate) fn check_chunks_known(
    t: &Tables<'_>,
    manifest: &[ManifestEntry],
    placements: &[crate::ChunkPlacement],
) -> OpResult<()> {
    if let Some(id) = t.missing_chunk(manifest, placements)? {
        return refuse(MetaError::Backend(format!(
            "chunk {id} has no replica record and no placement was given for it"
        )));
    }
    Ok(())
}
