//! The S3 API of the gateway: the `s3s::S3` trait implemented over the metadata store and the
//! chunk pipeline, with SigV4 auth and per-bucket permissions.
//!
//! s3s parses HTTP into typed inputs (and verifies signatures, aws-chunked bodies and their
//! trailers); this module maps those inputs to storage calls and storage results back to S3
//! outputs, as the s3s-fs sample backend does. One file per family of operations:
//!
//! * `buckets.rs`: CreateBucket, HeadBucket, DeleteBucket, ListBuckets, GetBucketLocation;
//! * `objects.rs`: PutObject, GetObject, HeadObject, DeleteObject(s);
//! * `attributes.rs`: GetObjectAttributes (ETag, checksum, parts, storage class, size);
//! * `copy.rs`: CopyObject (and the copy source of UploadPartCopy), moving no data;
//! * `listing.rs`: ListObjects v1 and v2 (encoding-type=url);
//! * `host.rs`: virtual-hosted-style addressing (`BUCKET.DOMAIN` hosts, `--s3-domain`);
//! * `versioning.rs`: Get/PutBucketVersioning and the `versionId` of object requests (buckets
//!   are never versioned: the one version of every object is `null`);
//! * `multipart.rs`: the multipart upload operations, `assemble.rs` the validation of a
//!   completed part list;
//! * `auth.rs` (who may do what), `checksum.rs` (MD5, x-amz-checksum-*), `conditions.rs`,
//!   `range.rs`, `names.rs`, `body.rs` (streams) and `error.rs` (the one mapping of lower-layer
//!   errors to S3 errors).
//!
//! The data-safety rule every write follows (PutObject, UploadPart, UploadPartCopy): validate
//! the request, write the body through `ChunkStore::write_body` (every replica fsynced), verify
//! the digests of what was really received, and only then commit metadata. The commit is the
//! only thing that makes data visible, so a body that ended early or failed its signature or
//! checksum leaves no object behind (its chunks are unreferenced garbage for the collector).

mod assemble;
mod attributes;
mod auth;
mod body;
mod buckets;
mod checksum;
mod conditions;
mod copy;
mod error;
mod host;
mod listing;
mod multipart;
mod names;
mod objects;
mod range;
mod versioning;

use crate::state::Gateway;
use futures::future::BoxFuture;
use s3s::dto::*;
use s3s::service::{S3Service, S3ServiceBuilder};
use s3s::{HttpError, HttpResponse, S3Request, S3Response, S3Result, S3};
use sdfbs_metadata::{BucketRecord, UnixMillis};
use std::sync::Arc;

pub use host::{BucketDomains, InvalidDomain};

/// Builds the S3 service: the handlers, SigV4 auth from the `access_keys` table, per-bucket
/// permissions, and virtual-hosted-style addressing under `domains` (none: path-style only).
/// Serve it with hyper (it implements `hyper::service::Service`).
pub fn build_service(gw: Arc<Gateway>, domains: BucketDomains) -> Service {
    let meta = gw.meta.clone();
    let mut builder = S3ServiceBuilder::new(SdfbsS3 { gw });
    if !domains.is_empty() {
        builder.set_host(domains);
    }
    let handoff = auth::KeyHandoff::default();
    builder.set_auth(auth::KeyStore {
        meta: meta.clone(),
        handoff: handoff.clone(),
    });
    builder.set_access(auth::Permissions { meta, handoff });
    Service(builder.build())
}

/// The s3s service, with the one change to a serialized answer that s3s cannot be asked for:
/// the unquoted ETag of GetObjectAttributes (`attributes::unquote_etag`).
#[derive(Clone)]
pub struct Service(S3Service);

impl hyper::service::Service<http::Request<hyper::body::Incoming>> for Service {
    type Response = HttpResponse;
    type Error = HttpError;
    type Future = BoxFuture<'static, Result<HttpResponse, HttpError>>;

    fn call(&self, req: http::Request<hyper::body::Incoming>) -> Self::Future {
        let answer = hyper::service::Service::call(&self.0, req);
        Box::pin(async move {
            let mut resp = answer.await?;
            attributes::unquote_etag(&mut resp);
            Ok(resp)
        })
    }
}

/// The `S3` implementation. Each method hands its request to the module of its family.
struct SdfbsS3 {
    gw: Arc<Gateway>,
}

/// The bucket of a request, or `NoSuchBucket`.
async fn load_bucket(gw: &Gateway, name: &str) -> S3Result<BucketRecord> {
    gw.meta
        .get_bucket(name)
        .await
        .map_err(error::meta)?
        .ok_or_else(|| no_such_bucket(name))
}

fn no_such_bucket(name: &str) -> s3s::S3Error {
    s3s::S3Error::with_message(
        s3s::S3ErrorCode::NoSuchBucket,
        format!("The specified bucket `{name}` does not exist"),
    )
}

/// A metadata timestamp as s3s carries it.
fn timestamp(ms: UnixMillis) -> Timestamp {
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH)
        .into()
}

/// A fresh, unique id (object versions, uploads, buckets).
fn new_id() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

#[async_trait::async_trait]
impl S3 for SdfbsS3 {
    async fn create_bucket(
        &self,
        req: S3Request<CreateBucketInput>,
    ) -> S3Result<S3Response<CreateBucketOutput>> {
        buckets::create(&self.gw, req).await
    }

    async fn head_bucket(
        &self,
        req: S3Request<HeadBucketInput>,
    ) -> S3Result<S3Response<HeadBucketOutput>> {
        buckets::head(&self.gw, req).await
    }

    async fn delete_bucket(
        &self,
        req: S3Request<DeleteBucketInput>,
    ) -> S3Result<S3Response<DeleteBucketOutput>> {
        buckets::delete(&self.gw, req).await
    }

    async fn list_buckets(
        &self,
        req: S3Request<ListBucketsInput>,
    ) -> S3Result<S3Response<ListBucketsOutput>> {
        buckets::list(&self.gw, req).await
    }

    async fn get_bucket_location(
        &self,
        req: S3Request<GetBucketLocationInput>,
    ) -> S3Result<S3Response<GetBucketLocationOutput>> {
        buckets::location(&self.gw, req).await
    }

    async fn put_object(
        &self,
        req: S3Request<PutObjectInput>,
    ) -> S3Result<S3Response<PutObjectOutput>> {
        objects::put(&self.gw, req).await
    }

    async fn get_object(
        &self,
        req: S3Request<GetObjectInput>,
    ) -> S3Result<S3Response<GetObjectOutput>> {
        objects::get(&self.gw, req).await
    }

    async fn head_object(
        &self,
        req: S3Request<HeadObjectInput>,
    ) -> S3Result<S3Response<HeadObjectOutput>> {
        objects::head(&self.gw, req).await
    }

    async fn get_object_attributes(
        &self,
        req: S3Request<GetObjectAttributesInput>,
    ) -> S3Result<S3Response<GetObjectAttributesOutput>> {
        attributes::get(&self.gw, req).await
    }

    async fn delete_object(
        &self,
        req: S3Request<DeleteObjectInput>,
    ) -> S3Result<S3Response<DeleteObjectOutput>> {
        objects::delete(&self.gw, req).await
    }

    async fn delete_objects(
        &self,
        req: S3Request<DeleteObjectsInput>,
    ) -> S3Result<S3Response<DeleteObjectsOutput>> {
        objects::delete_many(&self.gw, req).await
    }

    async fn copy_object(
        &self,
        req: S3Request<CopyObjectInput>,
    ) -> S3Result<S3Response<CopyObjectOutput>> {
        copy::copy(&self.gw, req).await
    }

    async fn list_objects(
        &self,
        req: S3Request<ListObjectsInput>,
    ) -> S3Result<S3Response<ListObjectsOutput>> {
        listing::list_v1(&self.gw, req).await
    }

    async fn list_objects_v2(
        &self,
        req: S3Request<ListObjectsV2Input>,
    ) -> S3Result<S3Response<ListObjectsV2Output>> {
        listing::list_v2(&self.gw, req).await
    }

    async fn create_multipart_upload(
        &self,
        req: S3Request<CreateMultipartUploadInput>,
    ) -> S3Result<S3Response<CreateMultipartUploadOutput>> {
        multipart::create(&self.gw, req).await
    }

    async fn upload_part(
        &self,
        req: S3Request<UploadPartInput>,
    ) -> S3Result<S3Response<UploadPartOutput>> {
        multipart::upload_part(&self.gw, req).await
    }

    async fn upload_part_copy(
        &self,
        req: S3Request<UploadPartCopyInput>,
    ) -> S3Result<S3Response<UploadPartCopyOutput>> {
        multipart::upload_part_copy(&self.gw, req).await
    }

    async fn complete_multipart_upload(
        &self,
        req: S3Request<CompleteMultipartUploadInput>,
    ) -> S3Result<S3Response<CompleteMultipartUploadOutput>> {
        multipart::complete(&self.gw, req).await
    }

    async fn abort_multipart_upload(
        &self,
        req: S3Request<AbortMultipartUploadInput>,
    ) -> S3Result<S3Response<AbortMultipartUploadOutput>> {
        multipart::abort(&self.gw, req).await
    }

    async fn list_parts(
        &self,
        req: S3Request<ListPartsInput>,
    ) -> S3Result<S3Response<ListPartsOutput>> {
        multipart::list_parts(&self.gw, req).await
    }

    async fn list_multipart_uploads(
        &self,
        req: S3Request<ListMultipartUploadsInput>,
    ) -> S3Result<S3Response<ListMultipartUploadsOutput>> {
        multipart::list_uploads(&self.gw, req).await
    }

    async fn get_bucket_versioning(
        &self,
        req: S3Request<GetBucketVersioningInput>,
    ) -> S3Result<S3Response<GetBucketVersioningOutput>> {
        versioning::get(&self.gw, req).await
    }

    async fn put_bucket_versioning(
        &self,
        req: S3Request<PutBucketVersioningInput>,
    ) -> S3Result<S3Response<PutBucketVersioningOutput>> {
        versioning::put(&self.gw, req).await
    }
}
