//! Multipart uploads: CreateMultipartUpload, UploadPart, UploadPartCopy,
//! CompleteMultipartUpload, AbortMultipartUpload, ListParts, ListMultipartUploads.
//!
//! A part is written like a PutObject body (write, verify, then record the part). Completing
//! an upload copies no data: the metadata store concatenates the parts' chunk lists into the
//! object's manifest. Before that, the part list is validated as AWS does: ascending part
//! numbers (`InvalidPartOrder`), parts that exist with the given ETags (`InvalidPart`), every
//! part but the last at least 5 MiB (`EntityTooSmall`). The object's ETag is the MD5 of the
//! concatenated binary part MD5s plus `-N`; its checksum, if the upload declared an algorithm,
//! is COMPOSITE (checksum of the part checksums, `-N`) or FULL_OBJECT (the part CRCs combined).

use crate::s3::assemble::{assemble, ListedPart};
use crate::s3::auth;
use crate::s3::body;
use crate::s3::checksum::{self, Algorithm, Requested};
use crate::s3::conditions::{self, ReadConditions};
use crate::s3::copy;
use crate::s3::error::{self, BodyErrorSlot};
use crate::s3::listing::Encoding;
use crate::s3::objects::{self, checksum_fields};
use crate::s3::range;
use crate::s3::{load_bucket, names, new_id, timestamp};
use crate::state::Gateway;
use bytes::Bytes;
use futures::stream::BoxStream;
use futures::StreamExt;
use s3s::dto::*;
use s3s::{S3Error, S3ErrorCode, S3Request, S3Response, S3Result};
use sdfbs_metadata::{
    now_millis, MetaError, ObjectRecord, PartRecord, UploadListQuery, UploadRecord,
};
use std::collections::BTreeMap;

/// Part numbers run from 1 to this.
pub const MAX_PART_NUMBER: i32 = 10_000;

fn check_part_number(n: i32) -> S3Result<u32> {
    if (1..=MAX_PART_NUMBER).contains(&n) {
        Ok(n as u32)
    } else {
        Err(S3Error::with_message(
            S3ErrorCode::InvalidArgument,
            format!("Part number must be an integer between 1 and {MAX_PART_NUMBER}, inclusive"),
        ))
    }
}

/// The checksum algorithm and type of a new upload, as the client asked.
fn upload_checksum(
    algorithm: Option<&ChecksumAlgorithm>,
    checksum_type: Option<&ChecksumType>,
) -> S3Result<(Option<Algorithm>, Option<&'static str>)> {
    let algorithm = algorithm
        .map(|a| Algorithm::parse(a.as_str()))
        .transpose()?;
    let requested_type = match checksum_type.map(|t| t.as_str().to_ascii_uppercase()) {
        None => None,
        Some(t) if t == checksum::COMPOSITE => Some(checksum::COMPOSITE),
        Some(t) if t == checksum::FULL_OBJECT => Some(checksum::FULL_OBJECT),
        Some(t) => {
            return Err(S3Error::with_message(
                S3ErrorCode::InvalidRequest,
                format!("Value for x-amz-checksum-type header is invalid: `{t}`"),
            ))
        }
    };
    match (algorithm, requested_type) {
        (None, None) => Ok((None, None)),
        (None, Some(_)) => Err(S3Error::with_message(
            S3ErrorCode::InvalidRequest,
            "The x-amz-checksum-type header can only be used with the x-amz-checksum-algorithm header",
        )),
        (Some(a), t) => {
            let t = t.unwrap_or_else(|| a.default_type());
            if !a.supports_type(t) {
                return Err(S3Error::with_message(
                    S3ErrorCode::InvalidRequest,
                    format!("The {} checksum type cannot be used with the {} algorithm", t, a.name()),
                ));
            }
            Ok((Some(a), Some(t)))
        }
    }
}

fn upload_algorithm(upload: &UploadRecord) -> Option<Algorithm> {
    upload
        .checksum_algorithm
        .as_deref()
        .and_then(Algorithm::from_name)
}

pub async fn create(
    gw: &Gateway,
    req: S3Request<CreateMultipartUploadInput>,
) -> S3Result<S3Response<CreateMultipartUploadOutput>> {
    let caller = auth::caller(&req)?;
    let input = req.input;
    let bucket = load_bucket(gw, &input.bucket).await?;
    names::check_key(&input.key)?;
    let (algorithm, checksum_type) = upload_checksum(
        input.checksum_algorithm.as_ref(),
        input.checksum_type.as_ref(),
    )?;
    let stored = objects::stored_headers!(input)?;
    let upload = UploadRecord {
        upload_id: new_id(),
        key: input.key.clone(),
        initiated: now_millis(),
        owner: caller.access_key_id().to_string(),
        content_type: stored.content_type,
        headers: stored.headers,
        user_metadata: stored.user_metadata,
        checksum_algorithm: algorithm.map(|a| a.name().to_string()),
        checksum_type: checksum_type.map(str::to_string),
    };
    let upload_id = upload.upload_id.clone();
    gw.meta
        .create_upload(&bucket, upload)
        .await
        .map_err(error::meta)?;
    Ok(S3Response::new(CreateMultipartUploadOutput {
        bucket: Some(input.bucket),
        key: Some(input.key),
        upload_id: Some(upload_id),
        checksum_algorithm: algorithm.map(|a| ChecksumAlgorithm::from(a.name().to_string())),
        checksum_type: checksum_type.map(ChecksumType::from_static),
        ..Default::default()
    }))
}

/// Records a written and verified part (the commit point of UploadPart and UploadPartCopy).
/// Returns its ETag, time and checksum values for the answer.
async fn record_part(
    gw: &Gateway,
    bucket: &sdfbs_metadata::BucketRecord,
    key: &str,
    upload_id: &str,
    number: u32,
    written: crate::pipeline::WrittenData,
    finished: checksum::Finished,
) -> S3Result<(String, i64, [Option<String>; 5])> {
    let part = PartRecord {
        number,
        size: written.size,
        etag: finished.etag(),
        last_modified: now_millis(),
        checksums: finished.stored(),
        chunks: written.manifest,
    };
    let answer = (
        part.etag.clone(),
        part.last_modified,
        checksum_fields(&part.checksums),
    );
    gw.meta
        .put_part(bucket, key, upload_id, part, written.placements)
        .await
        .map_err(error::meta)?;
    Ok(answer)
}

pub async fn upload_part(
    gw: &Gateway,
    req: S3Request<UploadPartInput>,
) -> S3Result<S3Response<UploadPartOutput>> {
    let trailer_header = objects::trailer_header(&req);
    let trailers = req.trailing_headers.clone();
    let input = req.input;
    let number = check_part_number(input.part_number)?;
    let bucket = load_bucket(gw, &input.bucket).await?;
    let upload = gw
        .meta
        .get_upload(&bucket, &input.key, &input.upload_id)
        .await
        .map_err(error::meta)?;
    let requested =
        objects::requested_checksums!(input, trailer_header.as_deref(), upload_algorithm(&upload))?;
    let (written, finished) = objects::store_request_body(
        gw,
        input.body,
        &requested,
        input.content_length,
        input.content_md5.as_deref(),
        trailers.as_ref(),
    )
    .await?;
    let (etag, _, checksums) = record_part(
        gw,
        &bucket,
        &input.key,
        &input.upload_id,
        number,
        written,
        finished,
    )
    .await?;
    let [crc32, crc32c, crc64nvme, sha1, sha256] = checksums;
    Ok(S3Response::new(UploadPartOutput {
        e_tag: Some(ETag::Strong(etag)),
        checksum_crc32: crc32,
        checksum_crc32c: crc32c,
        checksum_crc64nvme: crc64nvme,
        checksum_sha1: sha1,
        checksum_sha256: sha256,
        ..Default::default()
    }))
}

pub async fn upload_part_copy(
    gw: &Gateway,
    req: S3Request<UploadPartCopyInput>,
) -> S3Result<S3Response<UploadPartCopyOutput>> {
    let caller = auth::caller(&req)?;
    let input = req.input;
    let number = check_part_number(input.part_number)?;
    let bucket = load_bucket(gw, &input.bucket).await?;
    let upload = gw
        .meta
        .get_upload(&bucket, &input.key, &input.upload_id)
        .await
        .map_err(error::meta)?;
    let (_, source) = copy::load_copy_source(
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
    let (start, end) = range::copy_source_range(input.copy_source_range.as_deref(), source.size)?;
    // The part's bytes are read from the pipeline and written again as a new body: the range
    // rarely falls on chunk boundaries, so the chunks of a part cannot be shared with the source.
    let stream: BoxStream<'static, Result<Bytes, crate::pipeline::PipelineError>> = if end > start {
        let manifest = copy::manifest_of(gw, &source).await?;
        gw.chunks.read_range(manifest, start, end)
    } else {
        futures::stream::empty().boxed()
    };
    let requested = Requested::new(None, checksum::no_values(), None, upload_algorithm(&upload))?;
    let slot = BodyErrorSlot::default();
    let (written, finished) = objects::store_body(
        gw,
        body::watch_copy(stream, slot.clone()),
        &slot,
        &requested,
        i64::try_from(end - start).ok(),
        None,
        None,
    )
    .await?;
    let (etag, last_modified, checksums) = record_part(
        gw,
        &bucket,
        &input.key,
        &input.upload_id,
        number,
        written,
        finished,
    )
    .await?;
    let [crc32, crc32c, crc64nvme, sha1, sha256] = checksums;
    Ok(S3Response::new(UploadPartCopyOutput {
        copy_part_result: Some(CopyPartResult {
            e_tag: Some(ETag::Strong(etag)),
            last_modified: Some(timestamp(last_modified)),
            checksum_crc32: crc32,
            checksum_crc32c: crc32c,
            checksum_crc64nvme: crc64nvme,
            checksum_sha1: sha1,
            checksum_sha256: sha256,
        }),
        ..Default::default()
    }))
}

fn part_checksum(p: &CompletedPart) -> Option<(Algorithm, String)> {
    [
        (Algorithm::Crc32, &p.checksum_crc32),
        (Algorithm::Crc32c, &p.checksum_crc32c),
        (Algorithm::Crc64Nvme, &p.checksum_crc64nvme),
        (Algorithm::Sha1, &p.checksum_sha1),
        (Algorithm::Sha256, &p.checksum_sha256),
    ]
    .into_iter()
    .find_map(|(a, v)| v.clone().map(|v| (a, v)))
}

pub async fn complete(
    gw: &Gateway,
    req: S3Request<CompleteMultipartUploadInput>,
) -> S3Result<S3Response<CompleteMultipartUploadOutput>> {
    let caller = auth::caller(&req)?;
    let input = req.input;
    let bucket = load_bucket(gw, &input.bucket).await?;
    let mut listed = Vec::new();
    for p in input
        .multipart_upload
        .and_then(|m| m.parts)
        .unwrap_or_default()
    {
        let number = p.part_number.ok_or_else(|| {
            S3Error::with_message(S3ErrorCode::MalformedXML, "a Part without a PartNumber")
        })?;
        listed.push(ListedPart {
            number: check_part_number(number)?,
            etag: p.e_tag.as_ref().map(|e| e.value().to_string()),
            checksum: part_checksum(&p),
        });
    }
    let upload = match gw
        .meta
        .get_upload(&bucket, &input.key, &input.upload_id)
        .await
    {
        Ok(upload) => upload,
        Err(MetaError::NoSuchUpload(id)) => {
            // A retry of a completion whose answer was lost: answer it again, as AWS does.
            if let Some(done) = already_completed(gw, &bucket, &input.key, &listed).await? {
                return Ok(S3Response::new(CompleteMultipartUploadOutput {
                    location: Some(format!("/{}/{}", input.bucket, input.key)),
                    bucket: Some(input.bucket),
                    key: Some(input.key),
                    e_tag: Some(ETag::Strong(done.etag)),
                    ..Default::default()
                }));
            }
            return Err(error::meta(MetaError::NoSuchUpload(id)));
        }
        Err(e) => return Err(error::meta(e)),
    };
    let condition = conditions::checked_put_condition(
        gw,
        &bucket,
        &input.key,
        input.if_match.as_ref(),
        input.if_none_match.as_ref(),
    )
    .await?;
    let stored: BTreeMap<u32, PartRecord> = gw
        .meta
        .list_parts(
            &bucket,
            &input.key,
            &input.upload_id,
            0,
            MAX_PART_NUMBER as usize,
        )
        .await
        .map_err(error::meta)?
        .into_iter()
        .map(|p| (p.number, p))
        .collect();
    let algorithm = upload_algorithm(&upload);
    let assembled = assemble(&listed, &stored, algorithm, upload.checksum_type.as_deref())?;
    if let Some(size) = input.mpu_object_size {
        if u64::try_from(size).ok() != Some(assembled.size) {
            return Err(S3Error::with_message(
                S3ErrorCode::InvalidRequest,
                format!(
                    "x-amz-mp-object-size is {size} but the parts add up to {} bytes",
                    assembled.size
                ),
            ));
        }
    }
    // A whole-object checksum given by the client must match the one computed from the parts.
    let given = [
        (Algorithm::Crc32, &input.checksum_crc32),
        (Algorithm::Crc32c, &input.checksum_crc32c),
        (Algorithm::Crc64Nvme, &input.checksum_crc64nvme),
        (Algorithm::Sha1, &input.checksum_sha1),
        (Algorithm::Sha256, &input.checksum_sha256),
    ];
    for (a, v) in given {
        if let (Some(v), Some((ours_a, ours))) = (v, &assembled.checksum) {
            if a == *ours_a
                && v.trim() != ours
                && v.trim() != ours.split('-').next().unwrap_or_default()
            {
                return Err(error::bad_digest(&format!(
                    "x-amz-checksum-{}",
                    a.name().to_ascii_lowercase()
                )));
            }
        }
    }
    let mut checksums = BTreeMap::new();
    if let Some((a, v)) = &assembled.checksum {
        checksums.insert(a.name().to_string(), v.clone());
    }
    let numbers: Vec<u32> = assembled.parts.iter().map(|p| p.number).collect();
    let record = ObjectRecord {
        key: input.key.clone(),
        version_id: new_id(),
        size: assembled.size,
        etag: assembled.etag.clone(),
        last_modified: now_millis(),
        content_type: upload.content_type.clone(),
        headers: upload.headers.clone(),
        user_metadata: upload.user_metadata.clone(),
        checksum_type: (!checksums.is_empty())
            .then(|| upload.checksum_type.clone())
            .flatten(),
        checksums,
        parts: assembled.parts,
        delete_marker: false,
        owner: caller.access_key_id().to_string(),
    };
    let checksum_type = record.checksum_type.clone().map(ChecksumType::from);
    let [crc32, crc32c, crc64nvme, sha1, sha256] = checksum_fields(&record.checksums);
    gw.meta
        .complete_upload(&bucket, &input.upload_id, record, &numbers, condition)
        .await
        .map_err(error::meta)?;
    Ok(S3Response::new(CompleteMultipartUploadOutput {
        location: Some(format!("/{}/{}", input.bucket, input.key)),
        bucket: Some(input.bucket),
        key: Some(input.key),
        e_tag: Some(ETag::Strong(assembled.etag)),
        checksum_crc32: crc32,
        checksum_crc32c: crc32c,
        checksum_crc64nvme: crc64nvme,
        checksum_sha1: sha1,
        checksum_sha256: sha256,
        checksum_type,
        ..Default::default()
    }))
}

/// The current object at `key` if it is what completing `listed` produced: same multipart ETag
/// (computed from the ETags the client lists) and same part numbers.
async fn already_completed(
    gw: &Gateway,
    bucket: &sdfbs_metadata::BucketRecord,
    key: &str,
    listed: &[ListedPart],
) -> S3Result<Option<ObjectRecord>> {
    let etags: Option<Vec<String>> = listed
        .iter()
        .map(|p| {
            p.etag
                .as_deref()
                .map(|e| e.trim().trim_matches('"').to_string())
        })
        .collect();
    let Some(etags) = etags else { return Ok(None) };
    let refs: Vec<&str> = etags.iter().map(String::as_str).collect();
    let Some(etag) = checksum::multipart_etag(&refs) else {
        return Ok(None);
    };
    let current = gw.meta.get_object(bucket, key).await.map_err(error::meta)?;
    Ok(current.filter(|o| {
        !o.delete_marker
            && o.etag == etag
            && o.parts
                .iter()
                .map(|p| p.number)
                .eq(listed.iter().map(|p| p.number))
    }))
}

pub async fn abort(
    gw: &Gateway,
    req: S3Request<AbortMultipartUploadInput>,
) -> S3Result<S3Response<AbortMultipartUploadOutput>> {
    let input = req.input;
    let bucket = load_bucket(gw, &input.bucket).await?;
    gw.meta
        .abort_upload(&bucket, &input.key, &input.upload_id)
        .await
        .map_err(error::meta)?;
    Ok(S3Response::new(AbortMultipartUploadOutput::default()))
}

pub async fn list_parts(
    gw: &Gateway,
    req: S3Request<ListPartsInput>,
) -> S3Result<S3Response<ListPartsOutput>> {
    let input = req.input;
    let bucket = load_bucket(gw, &input.bucket).await?;
    let upload = gw
        .meta
        .get_upload(&bucket, &input.key, &input.upload_id)
        .await
        .map_err(error::meta)?;
    let max = input.max_parts.unwrap_or(1000).clamp(0, 1000) as usize;
    let marker = input.part_number_marker.unwrap_or(0).max(0) as u32;
    let mut parts = gw
        .meta
        .list_parts(&bucket, &input.key, &input.upload_id, marker, max + 1)
        .await
        .map_err(error::meta)?;
    let truncated = parts.len() > max;
    parts.truncate(max);
    let next = parts.last().map(|p| p.number as i32);
    let owner = Owner {
        id: Some(upload.owner.clone()),
        display_name: Some(upload.owner.clone()),
    };
    Ok(S3Response::new(ListPartsOutput {
        bucket: Some(input.bucket),
        key: Some(input.key),
        upload_id: Some(input.upload_id),
        initiator: Some(Initiator {
            id: owner.id.clone(),
            display_name: owner.display_name.clone(),
        }),
        owner: Some(owner),
        checksum_algorithm: upload
            .checksum_algorithm
            .clone()
            .map(ChecksumAlgorithm::from),
        checksum_type: upload.checksum_type.clone().map(ChecksumType::from),
        max_parts: Some(max as i32),
        part_number_marker: input.part_number_marker,
        next_part_number_marker: if truncated { next } else { None },
        is_truncated: Some(truncated),
        storage_class: Some(StorageClass::from_static(StorageClass::STANDARD)),
        parts: Some(
            parts
                .into_iter()
                .map(|p| {
                    let [crc32, crc32c, crc64nvme, sha1, sha256] = checksum_fields(&p.checksums);
                    Part {
                        part_number: Some(p.number as i32),
                        size: i64::try_from(p.size).ok(),
                        e_tag: Some(ETag::Strong(p.etag)),
                        last_modified: Some(timestamp(p.last_modified)),
                        checksum_crc32: crc32,
                        checksum_crc32c: crc32c,
                        checksum_crc64nvme: crc64nvme,
                        checksum_sha1: sha1,
                        checksum_sha256: sha256,
                    }
                })
                .collect(),
        ),
        ..Default::default()
    }))
}

pub async fn list_uploads(
    gw: &Gateway,
    req: S3Request<ListMultipartUploadsInput>,
) -> S3Result<S3Response<ListMultipartUploadsOutput>> {
    let input = req.input;
    let enc = Encoding::parse(input.encoding_type.as_ref())?;
    let bucket = load_bucket(gw, &input.bucket).await?;
    let max = input.max_uploads.unwrap_or(1000).clamp(0, 1000) as usize;
    let query = UploadListQuery {
        prefix: input.prefix.clone().unwrap_or_default(),
        delimiter: input.delimiter.clone().filter(|d| !d.is_empty()),
        key_marker: input.key_marker.clone().filter(|m| !m.is_empty()),
        upload_id_marker: input.upload_id_marker.clone().filter(|m| !m.is_empty()),
        max_uploads: max,
    };
    let page = gw
        .meta
        .list_uploads(&bucket, &query)
        .await
        .map_err(error::meta)?;
    let uploads = page
        .uploads
        .into_iter()
        .map(|u| {
            let who = Some(u.owner.clone());
            MultipartUpload {
                key: Some(enc.apply(u.key)),
                upload_id: Some(u.upload_id),
                initiated: Some(timestamp(u.initiated)),
                initiator: Some(Initiator {
                    id: who.clone(),
                    display_name: who.clone(),
                }),
                owner: Some(Owner {
                    id: who.clone(),
                    display_name: who,
                }),
                checksum_algorithm: u.checksum_algorithm.map(ChecksumAlgorithm::from),
                checksum_type: u.checksum_type.map(ChecksumType::from),
                storage_class: Some(StorageClass::from_static(StorageClass::STANDARD)),
            }
        })
        .collect();
    let common_prefixes: Vec<CommonPrefix> = page
        .common_prefixes
        .into_iter()
        .map(|p| CommonPrefix {
            prefix: Some(enc.apply(p)),
        })
        .collect();
    Ok(S3Response::new(ListMultipartUploadsOutput {
        bucket: Some(input.bucket),
        prefix: Some(enc.apply(input.prefix.unwrap_or_default())),
        delimiter: enc.opt(input.delimiter),
        key_marker: Some(enc.apply(input.key_marker.unwrap_or_default())),
        upload_id_marker: Some(input.upload_id_marker.unwrap_or_default()),
        next_key_marker: enc.opt(page.next_key_marker),
        next_upload_id_marker: page.next_upload_id_marker,
        encoding_type: enc.echo(),
        max_uploads: Some(max as i32),
        is_truncated: Some(page.is_truncated),
        uploads: Some(uploads),
        common_prefixes: (!common_prefixes.is_empty()).then_some(common_prefixes),
        request_charged: None,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upload_checksum_settings() {
        let a = |s: &'static str| ChecksumAlgorithm::from_static(s);
        let t = |s: &'static str| ChecksumType::from_static(s);
        assert_eq!(upload_checksum(None, None).unwrap(), (None, None));
        assert_eq!(
            upload_checksum(Some(&a("CRC32")), None).unwrap(),
            (Some(Algorithm::Crc32), Some(checksum::COMPOSITE))
        );
        assert_eq!(
            upload_checksum(Some(&a("CRC64NVME")), None).unwrap(),
            (Some(Algorithm::Crc64Nvme), Some(checksum::FULL_OBJECT))
        );
        assert!(upload_checksum(Some(&a("SHA256")), Some(&t("FULL_OBJECT"))).is_err());
        assert!(upload_checksum(None, Some(&t("COMPOSITE"))).is_err());
        assert!(upload_checksum(Some(&a("CRC32")), Some(&t("BOGUS"))).is_err());
    }
}
