//! CopyObject, and the copy-source handling it shares with UploadPartCopy.
//!
//! A copy writes no data: the new object row points at the source's manifest (the commit adds
//! one chunk ref per entry for the new version). The caller needs Write on the destination
//! (checked by `auth.rs`) and Read on the source (checked here), and the source's
//! `x-amz-copy-source-if-*` conditions must hold (412 otherwise).
//!
//! A copy that asks for a checksum algorithm its source does not have (`x-amz-checksum-algorithm`)
//! must read the data once to compute it: the source's chunks are streamed through the read path
//! (each chunk verified against its id, a few in flight, so memory stays bounded whatever the
//! size) into the checksum, and the copy is then committed with the same manifest and only the
//! new FULL_OBJECT checksum, as S3 stores one checksum per object. Every other copy reads no data.

use crate::s3::auth::{self, Caller};
use crate::s3::checksum::{self, Algorithm, ObjectChecksum};
use crate::s3::conditions::ReadConditions;
use crate::s3::error;
use crate::s3::objects::{checksum_fields, load_object, StoredHeaders};
use crate::s3::versioning::check_version_id;
use crate::s3::{load_bucket, names, new_id, timestamp};
use crate::state::Gateway;
use bytes::Bytes;
use futures::StreamExt;
use s3s::dto::*;
use s3s::{S3Error, S3ErrorCode, S3Request, S3Response, S3Result};
use sdfbs_metadata::{
    now_millis, BucketRecord, ManifestEntry, ObjectRecord, Permission, PutCondition,
};
use std::collections::BTreeMap;

/// The bucket and key of an `x-amz-copy-source`; its `versionId`, if any, must be `null` (the
/// only version of an object: buckets are not versioned).
pub fn copy_source(source: &CopySource) -> S3Result<(String, String)> {
    match source {
        CopySource::Bucket {
            bucket,
            key,
            version_id,
        } => {
            check_version_id(version_id.as_deref())?;
            names::check_bucket_name(bucket)?;
            names::check_key(key)?;
            Ok((bucket.to_string(), key.to_string()))
        }
        _ => Err(S3Error::with_message(
            S3ErrorCode::NotImplemented,
            "copy sources must be bucket/key (access points and outposts are not supported)",
        )),
    }
}

/// Loads a copy source the caller may read, checking its `x-amz-copy-source-if-*` conditions.
pub async fn load_copy_source(
    gw: &Gateway,
    caller: &Caller,
    source: &CopySource,
    conditions: ReadConditions<'_>,
) -> S3Result<(BucketRecord, ObjectRecord)> {
    let (bucket_name, key) = copy_source(source)?;
    caller.require(&bucket_name, Permission::Read)?;
    let bucket = load_bucket(gw, &bucket_name).await?;
    let object = load_object(gw, &bucket, &key).await?;
    conditions.check_copy_source(&object)?;
    Ok((bucket, object))
}

/// The manifest of `object`, checked to cover exactly its size (a concurrent overwrite of the
/// source may have released it between the two reads: then the copy fails rather than commit a
/// manifest that does not match the object row).
pub async fn manifest_of(gw: &Gateway, object: &ObjectRecord) -> S3Result<Vec<ManifestEntry>> {
    let manifest = gw
        .meta
        .get_manifest(&object.version_id)
        .await
        .map_err(error::meta)?;
    let total: u64 = manifest.iter().map(|e| e.size).sum();
    if total != object.size {
        return Err(S3Error::with_message(
            S3ErrorCode::NoSuchKey,
            "The copy source was replaced or deleted while it was being copied; retry",
        ));
    }
    Ok(manifest)
}

/// The full-object `algorithm` checksum of the `size` bytes `manifest` describes, read through
/// the pipeline. Only the chunks in flight are in memory; each is hashed off the reactor while
/// the read path fetches the next ones.
async fn checksum_of(
    gw: &Gateway,
    manifest: &[ManifestEntry],
    size: u64,
    algorithm: Algorithm,
) -> S3Result<String> {
    let mut checksum = ObjectChecksum::new(algorithm);
    if size == 0 {
        return Ok(checksum.finish());
    }
    let mut bytes = gw.chunks.read_range(manifest.to_vec(), 0, size);
    // The read path yields a chunk as the frames it arrived in; they are hashed about a chunk
    // at a time, so a copy makes one trip to the blocking pool per chunk, not per frame.
    let mut batch: Vec<Bytes> = Vec::new();
    let mut batched = 0usize;
    while let Some(piece) = bytes.next().await {
        let piece = piece.map_err(|e| error::pipeline(e, None))?;
        batched += piece.len();
        batch.push(piece);
        if batched >= HASH_BATCH {
            checksum = hash_pieces(checksum, std::mem::take(&mut batch)).await?;
            batched = 0;
        }
    }
    if !batch.is_empty() {
        checksum = hash_pieces(checksum, batch).await?;
    }
    Ok(checksum.finish())
}

/// Adds `pieces` to `checksum` on the blocking pool.
async fn hash_pieces(mut checksum: ObjectChecksum, pieces: Vec<Bytes>) -> S3Result<ObjectChecksum> {
    tokio::task::spawn_blocking(move || {
        for piece in &pieces {
            checksum.update(piece);
        }
        checksum
    })
    .await
    .map_err(|e| {
        tracing::error!(error = %e, "checksum task failed");
        S3Error::with_message(
            S3ErrorCode::InternalError,
            "computing the checksum of the copy failed",
        )
    })
}

/// Bytes hashed per trip to the blocking pool when a copy computes a new checksum.
const HASH_BATCH: usize = 1 << 20;

pub async fn copy(
    gw: &Gateway,
    req: S3Request<CopyObjectInput>,
) -> S3Result<S3Response<CopyObjectOutput>> {
    let caller = auth::caller(&req)?;
    let input = req.input;
    let dst_bucket = load_bucket(gw, &input.bucket).await?;
    names::check_key(&input.key)?;
    let (src_bucket, source) = load_copy_source(
        gw,
        &caller,
        &input.copy_source,
        ReadConditions {
            if_match: input.copy_source_if_match.as_ref(),
            if_none_match: input.copy_source_if_none_match.as_ref(),
            if_modified_since: input.copy_source_if_modified_since.as_ref(),
            if_unmodified_since: input.copy_source_if_unmodified_since.as_ref(),
        },
    )
    .await?;
    let replace = match input.metadata_directive.as_ref().map(|d| d.as_str()) {
        None | Some(MetadataDirective::COPY) => false,
        Some(MetadataDirective::REPLACE) => true,
        Some(other) => {
            return Err(S3Error::with_message(
                S3ErrorCode::InvalidArgument,
                format!("Unknown metadata directive `{other}`"),
            ))
        }
    };
    if !replace && src_bucket.id == dst_bucket.id && source.key == input.key {
        return Err(S3Error::with_message(
            S3ErrorCode::InvalidRequest,
            "This copy request is illegal because it is trying to copy an object to itself without changing the object's metadata, storage class, website redirect location or encryption attributes.",
        ));
    }
    // An algorithm the source already has keeps the source's checksums; another one is computed.
    let new_algorithm = match input.checksum_algorithm.as_ref() {
        Some(a) => {
            let a = Algorithm::parse(a.as_str())?;
            (!source.checksums.contains_key(a.name())).then_some(a)
        }
        None => None,
    };
    let stored = if replace {
        crate::s3::objects::stored_headers!(input)?
    } else {
        StoredHeaders {
            content_type: source.content_type.clone(),
            headers: source.headers.clone(),
            user_metadata: source.user_metadata.clone(),
        }
    };
    let manifest = manifest_of(gw, &source).await?;
    let (checksums, checksum_type) = match new_algorithm {
        None => (source.checksums.clone(), source.checksum_type.clone()),
        Some(a) => {
            let value = checksum_of(gw, &manifest, source.size, a).await?;
            (
                BTreeMap::from([(a.name().to_string(), value)]),
                Some(checksum::FULL_OBJECT.to_string()),
            )
        }
    };
    let record = ObjectRecord {
        key: input.key,
        version_id: new_id(),
        size: source.size,
        etag: source.etag.clone(),
        last_modified: now_millis(),
        content_type: stored.content_type,
        headers: stored.headers,
        user_metadata: stored.user_metadata,
        checksums: checksums.clone(),
        checksum_type: checksum_type.clone(),
        parts: source.parts.clone(),
        delete_marker: false,
        owner: caller.access_key_id().to_string(),
    };
    let last_modified = record.last_modified;
    // No placements: the chunks are already recorded with their replicas; the commit adds one
    // ref per manifest entry for the new version.
    gw.meta
        .commit_object(
            &dst_bucket,
            record,
            manifest,
            Vec::new(),
            PutCondition::None,
        )
        .await
        .map_err(error::meta)?;
    let [crc32, crc32c, crc64nvme, sha1, sha256] = checksum_fields(&checksums);
    Ok(S3Response::new(CopyObjectOutput {
        copy_object_result: Some(CopyObjectResult {
            e_tag: Some(ETag::Strong(source.etag)),
            last_modified: Some(timestamp(last_modified)),
            checksum_crc32: crc32,
            checksum_crc32c: crc32c,
            checksum_crc64nvme: crc64nvme,
            checksum_sha1: sha1,
            checksum_sha256: sha256,
            checksum_type: checksum_type.map(ChecksumType::from),
        }),
        ..Default::default()
    }))
}
