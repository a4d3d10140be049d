//! Single objects: PutObject, GetObject, HeadObject, DeleteObject, DeleteObjects.
//!
//! A PUT follows the ordering rule of the module (`mod.rs`): validate, write the body through
//! the pipeline, verify Content-MD5 and the x-amz-checksum-* values against what the body really
//! was, then commit. A GET streams the chunks of the selected bytes straight from the pipeline.
//! CopyObject lives in `copy.rs`.

use crate::pipeline::{ChunkStore, WrittenData};
use crate::s3::auth;
use crate::s3::body;
use crate::s3::checksum::{self, BodyDigests, Finished, Requested};
use crate::s3::conditions::{self, ReadConditions};
use crate::s3::error::{self, BodyErrorSlot};
use crate::s3::range::{self, Selection};
use crate::s3::versioning::check_version_id;
use crate::s3::{load_bucket, names, new_id, timestamp};
use crate::state::Gateway;
use bytes::Bytes;
use futures::Stream;
use s3s::dto::*;
use s3s::{S3Error, S3ErrorCode, S3Request, S3Response, S3Result};
use sdfbs_metadata::{now_millis, BucketRecord, MetaError, ObjectRecord};
use std::collections::BTreeMap;

/// Header names of the stored headers other than Content-Type (ObjectRecord::headers).
const CACHE_CONTROL: &str = "cache-control";
const CONTENT_DISPOSITION: &str = "content-disposition";
const CONTENT_ENCODING: &str = "content-encoding";
const CONTENT_LANGUAGE: &str = "content-language";
const EXPIRES: &str = "expires";

/// AWS limits the user metadata of an object (names and values of x-amz-meta-*) to 2 KiB.
const MAX_USER_METADATA_BYTES: usize = 2048;

/// What S3 answers as Content-Type for an object stored without one.
const DEFAULT_CONTENT_TYPE: &str = "binary/octet-stream";

/// The headers an object carries, as stored.
pub struct StoredHeaders {
    pub content_type: Option<String>,
    pub headers: BTreeMap<String, String>,
    pub user_metadata: BTreeMap<String, String>,
}

impl StoredHeaders {
    pub fn new(
        content_type: Option<String>,
        cache_control: Option<String>,
        content_disposition: Option<String>,
        content_encoding: Option<String>,
        content_language: Option<String>,
        expires: Option<&Timestamp>,
        metadata: Option<Metadata>,
    ) -> S3Result<StoredHeaders> {
        let user_metadata: BTreeMap<String, String> = metadata
            .unwrap_or_default()
            .into_iter()
            .map(|(k, v)| (k.to_ascii_lowercase(), v))
            .collect();
        let metadata_bytes: usize = user_metadata.iter().map(|(k, v)| k.len() + v.len()).sum();
        if metadata_bytes > MAX_USER_METADATA_BYTES {
            return Err(S3Error::with_message(
                S3ErrorCode::MetadataTooLarge,
                format!(
                    "Your metadata headers exceed the maximum allowed metadata size: {metadata_bytes} bytes of x-amz-meta-* names and values, the limit is {MAX_USER_METADATA_BYTES}"
                ),
            ));
        }
        let mut headers = BTreeMap::new();
        let mut put = |name: &str, v: Option<String>| {
            if let Some(v) = v {
                headers.insert(name.to_string(), v);
            }
        };
        put(CACHE_CONTROL, cache_control);
        put(CONTENT_DISPOSITION, content_disposition);
        put(CONTENT_ENCODING, content_encoding);
        put(CONTENT_LANGUAGE, content_language);
        put(EXPIRES, expires.and_then(http_date));
        Ok(StoredHeaders {
            content_type,
            headers,
            user_metadata,
        })
    }
}

fn http_date(ts: &Timestamp) -> Option<String> {
    let mut out = Vec::new();
    ts.format(TimestampFormat::HttpDate, &mut out).ok()?;
    String::from_utf8(out).ok()
}

fn parse_http_date(s: &str) -> Option<Timestamp> {
    Timestamp::parse(TimestampFormat::HttpDate, s).ok()
}

/// The largest body one PutObject or UploadPart may declare (5 GiB), as in S3; more is
/// `EntityTooLarge` before a byte is read.
pub const MAX_UPLOAD_SIZE: i64 = 5 * 1024 * 1024 * 1024;

/// Writes a body through the pipeline and verifies it: the one path by which client bytes
/// become chunks (PutObject, UploadPart, UploadPartCopy). Returns the written chunks and the
/// digests; the caller commits. Nothing is committed here, so an error leaves nothing visible.
pub async fn store_body<S, E>(
    gw: &Gateway,
    body: S,
    slot: &BodyErrorSlot,
    requested: &Requested,
    declared_len: Option<i64>,
    content_md5: Option<&str>,
    trailers: Option<&s3s::TrailingHeaders>,
) -> S3Result<(WrittenData, Finished)>
where
    S: Stream<Item = Result<Bytes, E>> + Send + Unpin + 'static,
    E: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    if let Some(len) = declared_len.filter(|len| *len > MAX_UPLOAD_SIZE) {
        return Err(S3Error::with_message(
            S3ErrorCode::EntityTooLarge,
            format!(
                "Your proposed upload exceeds the maximum allowed size: {len} bytes declared, at most {MAX_UPLOAD_SIZE} in one PutObject or UploadPart (use a multipart upload)"
            ),
        ));
    }
    let digests = BodyDigests::new(requested.compute.iter().copied());
    let (written, digests) = gw
        .chunks
        .write_body(body, digests)
        .await
        .map_err(|e| error::pipeline(e, Some(slot)))?;
    if let Some(len) = declared_len {
        if u64::try_from(len).ok() != Some(written.size) {
            return Err(S3Error::with_message(
                S3ErrorCode::IncompleteBody,
                format!(
                    "You did not provide the number of bytes specified by the Content-Length HTTP header ({len} declared, {} received)",
                    written.size
                ),
            ));
        }
    }
    let finished = digests.finish();
    let expected = requested.expected(trailers)?;
    checksum::verify(&finished, content_md5, &expected)?;
    Ok((written, finished))
}

/// The checksum values of a write, in the order of the `x-amz-checksum-*` output fields.
pub fn checksum_fields(checksums: &BTreeMap<String, String>) -> [Option<String>; 5] {
    checksum::ALL.map(|a| checksums.get(a.name()).cloned())
}

/// The `x-amz-trailer` header of a write: which checksum arrives after an aws-chunked body.
pub fn trailer_header<T>(req: &S3Request<T>) -> Option<String> {
    req.headers
        .get("x-amz-trailer")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

/// The checksums a write asks for, from the fields PutObjectInput and UploadPartInput share
/// (a macro: they are distinct types). `$upload` is the algorithm of a multipart upload.
macro_rules! requested_checksums {
    ($input:expr, $trailer:expr, $upload:expr) => {
        $crate::s3::checksum::Requested::new(
            $input.checksum_algorithm.as_ref().map(|a| a.as_str()),
            [
                (
                    $crate::s3::checksum::Algorithm::Crc32,
                    $input.checksum_crc32.as_ref(),
                ),
                (
                    $crate::s3::checksum::Algorithm::Crc32c,
                    $input.checksum_crc32c.as_ref(),
                ),
                (
                    $crate::s3::checksum::Algorithm::Crc64Nvme,
                    $input.checksum_crc64nvme.as_ref(),
                ),
                (
                    $crate::s3::checksum::Algorithm::Sha1,
                    $input.checksum_sha1.as_ref(),
                ),
                (
                    $crate::s3::checksum::Algorithm::Sha256,
                    $input.checksum_sha256.as_ref(),
                ),
            ],
            $trailer,
            $upload,
        )
    };
}
pub(crate) use requested_checksums;

/// [`store_body`] for the body of a client request (PutObject, UploadPart): records what a
/// failure of the body means for the client.
pub async fn store_request_body(
    gw: &Gateway,
    body: Option<StreamingBlob>,
    requested: &Requested,
    declared_len: Option<i64>,
    content_md5: Option<&str>,
    trailers: Option<&s3s::TrailingHeaders>,
) -> S3Result<(WrittenData, Finished)> {
    let slot = BodyErrorSlot::default();
    let body = body.unwrap_or_else(|| {
        StreamingBlob::wrap(futures::stream::empty::<Result<Bytes, std::io::Error>>())
    });
    store_body(
        gw,
        body::watch(body, slot.clone()),
        &slot,
        requested,
        declared_len,
        content_md5,
        trailers,
    )
    .await
}

pub async fn put(
    gw: &Gateway,
    req: S3Request<PutObjectInput>,
) -> S3Result<S3Response<PutObjectOutput>> {
    let caller = auth::caller(&req)?;
    let trailer_header = trailer_header(&req);
    let trailers = req.trailing_headers.clone();
    let input = req.input;

    // 1. Validate, before reading the body.
    let bucket = load_bucket(gw, &input.bucket).await?;
    names::check_key(&input.key)?;
    let condition = conditions::checked_put_condition(
        gw,
        &bucket,
        &input.key,
        input.if_match.as_ref(),
        input.if_none_match.as_ref(),
    )
    .await?;
    let requested = requested_checksums!(input, trailer_header.as_deref(), None)?;
    let stored = stored_headers!(input)?;

    // 2. Write the chunks and 3. verify what was received.
    let (written, finished) = store_request_body(
        gw,
        input.body,
        &requested,
        input.content_length,
        input.content_md5.as_deref(),
        trailers.as_ref(),
    )
    .await?;

    // 4. Commit: the only step that makes the object visible.
    let checksums = finished.stored();
    let record = ObjectRecord {
        key: input.key,
        version_id: new_id(),
        size: written.size,
        etag: finished.etag(),
        last_modified: now_millis(),
        content_type: stored.content_type,
        headers: stored.headers,
        user_metadata: stored.user_metadata,
        checksum_type: (!checksums.is_empty()).then(|| checksum::FULL_OBJECT.to_string()),
        checksums,
        parts: Vec::new(),
        delete_marker: false,
        owner: caller.access_key_id().to_string(),
    };
    let etag = record.etag.clone();
    let [crc32, crc32c, crc64nvme, sha1, sha256] = checksum_fields(&record.checksums);
    let checksum_type = record.checksum_type.clone().map(ChecksumType::from);
    gw.meta
        .commit_object(
            &bucket,
            record,
            written.manifest,
            written.placements,
            condition,
        )
        .await
        .map_err(error::meta)?;
    Ok(S3Response::new(PutObjectOutput {
        e_tag: Some(ETag::Strong(etag)),
        checksum_crc32: crc32,
        checksum_crc32c: crc32c,
        checksum_crc64nvme: crc64nvme,
        checksum_sha1: sha1,
        checksum_sha256: sha256,
        checksum_type,
        ..Default::default()
    }))
}

/// The current object under a key, or `NoSuchKey`.
pub async fn load_object(gw: &Gateway, bucket: &BucketRecord, key: &str) -> S3Result<ObjectRecord> {
    live(gw.meta.get_object(bucket, key).await.map_err(error::meta)?)
}

/// The current version of a key if it is an object, else `NoSuchKey`.
fn live(found: Option<ObjectRecord>) -> S3Result<ObjectRecord> {
    match found {
        Some(o) if !o.delete_marker => Ok(o),
        _ => Err(S3Error::with_message(
            S3ErrorCode::NoSuchKey,
            "The specified key does not exist.",
        )),
    }
}

/// The bucket and object a GET or HEAD names, read together: `NoSuchBucket`, `NoSuchKey`.
async fn load_target(gw: &Gateway, bucket: &str, key: &str) -> S3Result<ObjectRecord> {
    match gw
        .meta
        .get_bucket_and_object(bucket, key)
        .await
        .map_err(error::meta)?
    {
        None => Err(super::no_such_bucket(bucket)),
        Some((_, found)) => live(found),
    }
}

/// The headers common to GET and HEAD answers.
struct ObjectView {
    cache_control: Option<String>,
    content_disposition: Option<String>,
    content_encoding: Option<String>,
    content_language: Option<String>,
    content_type: Option<String>,
    expires: Option<Timestamp>,
    metadata: Option<Metadata>,
    e_tag: Option<ETag>,
    last_modified: Option<Timestamp>,
    checksums: [Option<String>; 5],
    checksum_type: Option<ChecksumType>,
}

fn view(
    object: &ObjectRecord,
    selection: &Selection,
    checksum_mode: Option<&ChecksumMode>,
) -> ObjectView {
    let h = |name: &str| object.headers.get(name).cloned();
    // Checksums describe the whole object: returned only when asked for, never for a range.
    let with_checksums = checksum_mode
        .is_some_and(|m| m.as_str().eq_ignore_ascii_case(ChecksumMode::ENABLED))
        && selection.is_whole();
    let (checksums, checksum_type) = if with_checksums {
        (
            checksum_fields(&object.checksums),
            object.checksum_type.clone().map(ChecksumType::from),
        )
    } else {
        (Default::default(), None)
    };
    ObjectView {
        cache_control: h(CACHE_CONTROL),
        content_disposition: h(CONTENT_DISPOSITION),
        content_encoding: h(CONTENT_ENCODING),
        content_language: h(CONTENT_LANGUAGE),
        content_type: Some(
            object
                .content_type
                .clone()
                .unwrap_or_else(|| DEFAULT_CONTENT_TYPE.to_string()),
        ),
        expires: object.headers.get(EXPIRES).and_then(|s| parse_http_date(s)),
        metadata: (!object.user_metadata.is_empty()).then(|| {
            object
                .user_metadata
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect()
        }),
        e_tag: Some(ETag::Strong(object.etag.clone())),
        last_modified: Some(timestamp(object.last_modified)),
        checksums,
        checksum_type,
    }
}

fn content_length(selection: &Selection) -> Option<i64> {
    i64::try_from(selection.len()).ok()
}

/// Loads the object a GET or HEAD names (only its `null` version exists), checks its conditions
/// (412/304) and resolves the bytes asked for. A macro because `GetObjectInput` and `HeadObjectInput` are distinct types with the
/// same fields.
/// Checks a GET's or HEAD's conditions against the object it read and resolves its range or
/// part number: the selection to answer with, or the S3 error.
macro_rules! check_read {
    ($input:expr, $object:expr) => {{
        ReadConditions {
            if_match: $input.if_match.as_ref(),
            if_none_match: $input.if_none_match.as_ref(),
            if_modified_since: $input.if_modified_since.as_ref(),
            if_unmodified_since: $input.if_unmodified_since.as_ref(),
        }
        .check_read(&$object)?;
        range::resolve($input.range.as_ref(), $input.part_number, &$object)?
    }};
}

/// The stored headers of a write (PutObject, CreateMultipartUpload, CopyObject with REPLACE),
/// from the request fields all three inputs share.
macro_rules! stored_headers {
    ($input:expr) => {
        $crate::s3::objects::StoredHeaders::new(
            $input.content_type,
            $input.cache_control,
            $input.content_disposition,
            $input.content_encoding,
            $input.content_language,
            $input.expires.as_ref(),
            $input.metadata,
        )
    };
}
pub(crate) use stored_headers;

pub async fn get(
    gw: &Gateway,
    req: S3Request<GetObjectInput>,
) -> S3Result<S3Response<GetObjectOutput>> {
    let input = req.input;
    check_version_id(input.version_id.as_deref())?;
    // Bucket, object, manifest and the first chunk records: one read of the store.
    let (_, object, manifest) = gw
        .meta
        .get_object_for_read(&input.bucket, &input.key, ChunkStore::RECORDS_AHEAD)
        .await
        .map_err(error::meta)?
        .ok_or_else(|| super::no_such_bucket(&input.bucket))?;
    let object = live(object)?;
    let selection = check_read!(input, object);
    let body = if selection.len() == 0 {
        StreamingBlob::wrap(futures::stream::empty::<Result<Bytes, std::io::Error>>())
    } else {
        let (manifest, records) = manifest.ok_or_else(|| error::meta(MetaError::NoSuchKey))?;
        body::response_after_first(gw.chunks.read_range_with_records(
            manifest,
            records,
            selection.start,
            selection.end,
        ))
        .await
        .map_err(|e| error::pipeline(e, None))?
    };
    let v = view(&object, &selection, input.checksum_mode.as_ref());
    let [crc32, crc32c, crc64nvme, sha1, sha256] = v.checksums;
    Ok(S3Response::new(GetObjectOutput {
        body: Some(body),
        accept_ranges: Some("bytes".into()),
        content_length: content_length(&selection),
        content_range: selection.content_range,
        parts_count: selection.parts_count,
        cache_control: v.cache_control,
        content_disposition: v.content_disposition,
        content_encoding: v.content_encoding,
        content_language: v.content_language,
        content_type: v.content_type,
        expires: v.expires,
        metadata: v.metadata,
        e_tag: v.e_tag,
        last_modified: v.last_modified,
        checksum_crc32: crc32,
        checksum_crc32c: crc32c,
        checksum_crc64nvme: crc64nvme,
        checksum_sha1: sha1,
        checksum_sha256: sha256,
        checksum_type: v.checksum_type,
        ..Default::default()
    }))
}

pub async fn head(
    gw: &Gateway,
    req: S3Request<HeadObjectInput>,
) -> S3Result<S3Response<HeadObjectOutput>> {
    let input = req.input;
    check_version_id(input.version_id.as_deref())?;
    let object = load_target(gw, &input.bucket, &input.key).await?;
    let selection = check_read!(input, object);
    let v = view(&object, &selection, input.checksum_mode.as_ref());
    let [crc32, crc32c, crc64nvme, sha1, sha256] = v.checksums;
    let mut resp = S3Response::new(HeadObjectOutput {
        accept_ranges: Some("bytes".into()),
        content_length: content_length(&selection),
        parts_count: selection.parts_count,
        cache_control: v.cache_control,
        content_disposition: v.content_disposition,
        content_encoding: v.content_encoding,
        content_language: v.content_language,
        content_type: v.content_type,
        expires: v.expires,
        metadata: v.metadata,
        e_tag: v.e_tag,
        last_modified: v.last_modified,
        checksum_crc32: crc32,
        checksum_crc32c: crc32c,
        checksum_crc64nvme: crc64nvme,
        checksum_sha1: sha1,
        checksum_sha256: sha256,
        checksum_type: v.checksum_type,
        content_range: selection.content_range.clone(),
        ..Default::default()
    });
    if selection.content_range.is_some() {
        resp.status = Some(http::StatusCode::PARTIAL_CONTENT);
    }
    Ok(resp)
}

pub async fn delete(
    gw: &Gateway,
    req: S3Request<DeleteObjectInput>,
) -> S3Result<S3Response<DeleteObjectOutput>> {
    let input = req.input;
    let bucket = load_bucket(gw, &input.bucket).await?;
    // Deleting the `null` version is deleting the object: there is no other version.
    check_version_id(input.version_id.as_deref())?;
    // S3 answers 204 whether or not there was an object.
    gw.meta
        .delete_object(&bucket, &input.key)
        .await
        .map_err(error::meta)?;
    Ok(S3Response::new(DeleteObjectOutput::default()))
}

/// DeleteObjects accepts at most this many keys per request (as AWS does).
const MAX_DELETE_KEYS: usize = 1000;

pub async fn delete_many(
    gw: &Gateway,
    req: S3Request<DeleteObjectsInput>,
) -> S3Result<S3Response<DeleteObjectsOutput>> {
    let input = req.input;
    let bucket = load_bucket(gw, &input.bucket).await?;
    let objects = input.delete.objects;
    if objects.is_empty() || objects.len() > MAX_DELETE_KEYS {
        return Err(S3Error::with_message(
            S3ErrorCode::MalformedXML,
            format!("a DeleteObjects request names between 1 and {MAX_DELETE_KEYS} keys"),
        ));
    }
    let quiet = input.delete.quiet.unwrap_or(false);
    let mut deleted = Vec::new();
    let mut errors = Vec::new();
    for object in objects {
        let valid = names::check_key(&object.key)
            .and_then(|()| check_version_id(object.version_id.as_deref()));
        let result = match valid {
            Ok(()) => gw
                .meta
                .delete_object(&bucket, &object.key)
                .await
                .map_err(error::meta),
            Err(e) => Err(e),
        };
        match result {
            Ok(_) => {
                if !quiet {
                    deleted.push(DeletedObject {
                        key: Some(object.key),
                        version_id: object.version_id,
                        ..Default::default()
                    });
                }
            }
            Err(e) => errors.push(s3s::dto::Error {
                code: Some(e.code().as_str().to_string()),
                message: e.message().map(str::to_string),
                key: Some(object.key),
                version_id: object.version_id,
            }),
        }
    }
    Ok(S3Response::new(DeleteObjectsOutput {
        deleted: Some(deleted),
        errors: (!errors.is_empty()).then_some(errors),
        ..Default::default()
    }))
}
