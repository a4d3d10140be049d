//! Multipart uploads (write side): create, record a part, complete, abort.
//!
//! A part holds refs on its chunks exactly like an object version does. Completing an upload
//! releases the refs of every part and adds one ref per entry of the stitched manifest in the
//! same transaction as the object row, so the chunks of the listed parts never pass through an
//! unreferenced state that garbage collection could observe, and no data is copied.

use super::codec::*;
use super::listing::get_upload;
use super::objects::{check_bucket, check_chunks_known, check_commit, install};
use super::tables::{get, put, Tables};
use super::writer::{refuse, OpResult};
use crate::{
    BucketRecord, ChunkPlacement, CommitOutcome, ManifestEntry, MetaError, ObjectRecord,
    PartRecord, PutCondition, UploadRecord,
};
use redb::ReadableTable;

pub(crate) fn create(t: &mut Tables<'_>, bucket: &BucketRecord, up: &UploadRecord) -> OpResult<()> {
    check_bucket(t, bucket)?;
    put(
        &mut t.uploads,
        &upload_key(&bucket.id, &up.key, &up.upload_id),
        up,
    )?;
    Ok(())
}

fn check_upload(t: &Tables<'_>, bucket: &BucketRecord, key: &str, upload_id: &str) -> OpResult<()> {
    if get_upload(&t.uploads, &bucket.id, key, upload_id)?.is_none() {
        return refuse(MetaError::NoSuchUpload(upload_id.to_string()));
    }
    Ok(())
}

/// Every part of an upload, in number order.
pub(crate) fn all_parts(
    parts: &impl ReadableTable<&'static [u8], &'static [u8]>,
    upload_id: &str,
    after: u32,
    max: usize,
) -> crate::Result<Vec<PartRecord>> {
    let mut out = Vec::new();
    let Some(first) = after.checked_add(1) else {
        return Ok(out);
    };
    let start = part_key(upload_id, first);
    let end = part_key(upload_id, u32::MAX);
    for row in parts
        .range::<&[u8]>(start.as_slice()..=end.as_slice())
        .map_err(backend)?
    {
        if out.len() >= max {
            break;
        }
        let (_, v) = row.map_err(backend)?;
        out.push(decode(v.value(), "part")?);
    }
    Ok(out)
}

pub(crate) fn put_part(
    t: &mut Tables<'_>,
    bucket: &BucketRecord,
    key: &str,
    upload_id: &str,
    part: &PartRecord,
    placements: &[ChunkPlacement],
) -> OpResult<()> {
    check_upload(t, bucket, key, upload_id)?;
    check_chunks_known(t, &part.chunks, placements)?;
    let row = part_key(upload_id, part.number);
    let old: Option<PartRecord> = get(&t.parts, &row, "part")?;
    // Replicas and refs of the new part in the same step as the release of the replaced
    // part's refs, and the part row with them.
    let released = old.map(|o| o.chunks).unwrap_or_default();
    t.update_chunks(placements, &part.chunks, &released)?;
    put(&mut t.parts, &row, part)?;
    Ok(())
}

/// Removes the upload and all its parts; returns the chunk entries of all parts, whose refs
/// the caller releases.
fn drop_upload(
    t: &mut Tables<'_>,
    bucket_id: &str,
    key: &str,
    upload_id: &str,
) -> OpResult<Vec<ManifestEntry>> {
    let parts = all_parts(&t.parts, upload_id, 0, usize::MAX)?;
    let mut entries = Vec::new();
    for p in parts {
        t.parts
            .remove(part_key(upload_id, p.number).as_slice())
            .map_err(backend)?;
        entries.extend(p.chunks);
    }
    t.uploads
        .remove(upload_key(bucket_id, key, upload_id).as_slice())
        .map_err(backend)?;
    Ok(entries)
}

pub(crate) fn abort(
    t: &mut Tables<'_>,
    bucket: &BucketRecord,
    key: &str,
    upload_id: &str,
) -> OpResult<()> {
    check_upload(t, bucket, key, upload_id)?;
    let released = drop_upload(t, &bucket.id, key, upload_id)?;
    t.release_refs(&released)?;
    Ok(())
}

pub(crate) fn complete(
    t: &mut Tables<'_>,
    bucket: &BucketRecord,
    upload_id: &str,
    object: &ObjectRecord,
    part_numbers: &[u32],
    condition: &PutCondition,
) -> OpResult<CommitOutcome> {
    // Every check before the first write.
    check_upload(t, bucket, &object.key, upload_id)?;
    let replaced = check_commit(t, bucket, &object.key, condition)?;
    let mut manifest: Vec<ManifestEntry> = Vec::new();
    for &n in part_numbers {
        match get::<PartRecord>(&t.parts, &part_key(upload_id, n), "part")? {
            Some(p) => manifest.extend_from_slice(&p.chunks),
            None => return refuse(MetaError::InvalidPart(n)),
        }
    }
    // The object's refs come and the parts' refs go in one step (net: the chunks of unlisted
    // parts are released; those of listed parts never pass through zero).
    let released = drop_upload(t, &bucket.id, &object.key, upload_id)?;
    t.update_chunks(&[], &manifest, &released)?;
    install(t, &bucket.id, object, &manifest, replaced.as_ref())?;
    Ok(CommitOutcome { replaced })
}
