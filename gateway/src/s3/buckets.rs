//! Buckets: CreateBucket, HeadBucket, DeleteBucket, ListBuckets, GetBucketLocation.
//!
//! s3s has already checked the bucket name against the AWS naming rules (`InvalidBucketName`).
//! A bucket's creator becomes its Owner. Deleting a bucket also removes every key's permission
//! on it, so that a later bucket of the same name does not inherit them.

use crate::s3::auth::{self, Caller};
use crate::s3::error;
use crate::s3::{load_bucket, new_id, timestamp};
use crate::state::Gateway;
use s3s::dto::*;
use s3s::{S3Error, S3ErrorCode, S3Request, S3Response, S3Result};
use sdfbs_metadata::{now_millis, BucketRecord, MetaError, Permission, VersioningState};

/// Shards of the objects table per bucket (Scylla partitions by bucket id and shard).
const SHARD_COUNT: u32 = 16;

pub async fn create(
    gw: &Gateway,
    req: S3Request<CreateBucketInput>,
) -> S3Result<S3Response<CreateBucketOutput>> {
    let caller = auth::caller(&req)?;
    let input = req.input;
    if let Some(location) = input
        .create_bucket_configuration
        .as_ref()
        .and_then(|c| c.location_constraint.as_ref())
    {
        let location = location.as_str();
        if !location.is_empty() && location != gw.region {
            return Err(S3Error::with_message(
                S3ErrorCode::IllegalLocationConstraintException,
                format!(
                    "The {location} location constraint is incompatible with the region of this endpoint ({})",
                    gw.region
                ),
            ));
        }
    }
    let record = BucketRecord {
        name: input.bucket.clone(),
        id: new_id(),
        created: now_millis(),
        owner: caller.access_key_id().to_string(),
        versioning: VersioningState::Unversioned,
        shard_count: SHARD_COUNT,
    };
    match gw.meta.create_bucket(record).await {
        Ok(()) => {}
        Err(MetaError::BucketAlreadyExists(_)) => {
            return Err(already_exists(gw, &caller, &input.bucket).await)
        }
        Err(e) => return Err(error::meta(e)),
    }
    if !caller.0.is_root {
        gw.meta
            .set_permission(
                caller.access_key_id(),
                &input.bucket,
                Some(Permission::Owner),
            )
            .await
            .map_err(error::meta)?;
    }
    Ok(S3Response::new(CreateBucketOutput {
        location: Some(format!("/{}", input.bucket)),
    }))
}

async fn already_exists(gw: &Gateway, caller: &Caller, name: &str) -> S3Error {
    let owner = gw
        .meta
        .get_bucket(name)
        .await
        .ok()
        .flatten()
        .map(|b| b.owner);
    if owner.as_deref() == Some(caller.access_key_id()) {
        S3Error::with_message(
            S3ErrorCode::BucketAlreadyOwnedByYou,
            "Your previous request to create the named bucket succeeded and you already own it.",
        )
    } else {
        S3Error::with_message(
            S3ErrorCode::BucketAlreadyExists,
            "The requested bucket name is not available. Please select a different name and try again.",
        )
    }
}

pub async fn head(
    gw: &Gateway,
    req: S3Request<HeadBucketInput>,
) -> S3Result<S3Response<HeadBucketOutput>> {
    load_bucket(gw, &req.input.bucket).await?;
    Ok(S3Response::new(HeadBucketOutput {
        bucket_region: Some(gw.region.clone()),
        ..Default::default()
    }))
}

pub async fn delete(
    gw: &Gateway,
    req: S3Request<DeleteBucketInput>,
) -> S3Result<S3Response<DeleteBucketOutput>> {
    let name = req.input.bucket;
    gw.meta.delete_bucket(&name).await.map_err(error::meta)?;
    // Forget every key's permission on the old bucket: a new bucket of the same name must
    // start with none.
    match gw.meta.list_access_keys().await {
        Ok(keys) => {
            for key in keys.iter().filter(|k| k.permissions.contains_key(&name)) {
                if let Err(e) = gw
                    .meta
                    .set_permission(&key.access_key_id, &name, None)
                    .await
                {
                    tracing::warn!(bucket = %name, key = %key.access_key_id, error = %e, "could not drop a permission of a deleted bucket");
                }
            }
        }
        Err(e) => {
            tracing::warn!(bucket = %name, error = %e, "could not list keys to drop permissions of a deleted bucket")
        }
    }
    Ok(S3Response::new(DeleteBucketOutput {}))
}

pub async fn list(
    gw: &Gateway,
    req: S3Request<ListBucketsInput>,
) -> S3Result<S3Response<ListBucketsOutput>> {
    let caller = auth::caller(&req)?;
    let prefix = req.input.prefix.unwrap_or_default();
    let buckets = gw.meta.list_buckets().await.map_err(error::meta)?;
    let buckets = buckets
        .into_iter()
        .filter(|b| b.name.starts_with(&prefix) && caller.may(&b.name, Permission::Read))
        .map(|b| Bucket {
            name: Some(b.name),
            creation_date: Some(timestamp(b.created)),
            bucket_region: Some(gw.region.clone()),
        })
        .collect();
    Ok(S3Response::new(ListBucketsOutput {
        buckets: Some(buckets),
        owner: Some(Owner {
            id: Some(caller.access_key_id().to_string()),
            display_name: Some(caller.0.name.clone()),
        }),
        prefix: (!prefix.is_empty()).then_some(prefix),
        continuation_token: None,
    }))
}

pub async fn location(
    gw: &Gateway,
    req: S3Request<GetBucketLocationInput>,
) -> S3Result<S3Response<GetBucketLocationOutput>> {
    load_bucket(gw, &req.input.bucket).await?;
    // AWS answers an empty constraint for us-east-1.
    let constraint =
        (gw.region != "us-east-1").then(|| BucketLocationConstraint::from(gw.region.clone()));
    Ok(S3Response::new(GetBucketLocationOutput {
        location_constraint: constraint,
    }))
}
