//! Buckets: CreateBucket, HeadBucket, DeleteBucket, ListBuckets, GetBucketLocation.
//!
//! s3s has already checked the bucket name against the AWS naming rules (`InvalidBucketName`).
//! A bucket's creator becomes its Owner. Deleting a bucket also removes every key's permission
//! on it, so that a later bucket of the same name does not inherit them.
//!
//! ListBuckets pages as S3 does since 2024 (`max-buckets`, `continuation-token`, `prefix`): the
//! names a key may read, in lexicographic order; the token is the last name of a page, opaque
//! (the same encoding as ListObjectsV2's). Without `max-buckets` every bucket is listed at once,
//! as clients written before paging expect.

use crate::s3::auth::{self, Caller};
use crate::s3::error;
use crate::s3::listing::{decode_token, encode_token};
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

/// The range of `max-buckets` S3 accepts.
const MAX_BUCKETS: std::ops::RangeInclusive<i32> = 1..=10_000;

/// The page size of a ListBuckets: `None` (everything) when the client did not ask for one.
fn page_size(max_buckets: Option<i32>) -> S3Result<Option<usize>> {
    match max_buckets {
        None => Ok(None),
        Some(n) if MAX_BUCKETS.contains(&n) => Ok(usize::try_from(n).ok()),
        Some(n) => Err(S3Error::with_message(
            S3ErrorCode::InvalidArgument,
            format!(
                "max-buckets must be between {} and {} (got {n})",
                MAX_BUCKETS.start(),
                MAX_BUCKETS.end()
            ),
        )),
    }
}

/// One page of a bucket listing: the buckets of `all` (in any order) that match `visible`, after
/// `start_after`, sorted by name, at most `limit`; and whether more remain after the page.
fn page_of<'a>(
    all: impl IntoIterator<Item = &'a BucketRecord>,
    visible: impl Fn(&BucketRecord) -> bool,
    start_after: Option<&str>,
    limit: Option<usize>,
) -> (Vec<&'a BucketRecord>, bool) {
    let mut matching: Vec<&BucketRecord> = all
        .into_iter()
        .filter(|b| start_after.is_none_or(|after| b.name.as_str() > after) && visible(b))
        .collect();
    matching.sort_by(|a, b| a.name.cmp(&b.name));
    let more = limit.is_some_and(|n| matching.len() > n);
    if let Some(n) = limit {
        matching.truncate(n);
    }
    (matching, more)
}

pub async fn list(
    gw: &Gateway,
    req: S3Request<ListBucketsInput>,
) -> S3Result<S3Response<ListBucketsOutput>> {
    let caller = auth::caller(&req)?;
    let input = req.input;
    let limit = page_size(input.max_buckets)?;
    let start_after = input
        .continuation_token
        .as_deref()
        .map(decode_token)
        .transpose()?;
    let prefix = input.prefix.unwrap_or_default();
    let all = gw.meta.list_buckets().await.map_err(error::meta)?;
    let (page, more) = page_of(
        &all,
        |b| b.name.starts_with(&prefix) && caller.may(&b.name, Permission::Read),
        start_after.as_deref(),
        limit,
    );
    let continuation_token = if more {
        page.last().map(|b| encode_token(&b.name))
    } else {
        None
    };
    let buckets = page
        .into_iter()
        .map(|b| Bucket {
            name: Some(b.name.clone()),
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
        continuation_token,
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

#[cfg(test)]
mod tests {
    use super::*;

    fn bucket(name: &str) -> BucketRecord {
        BucketRecord {
            name: name.into(),
            id: name.into(),
            created: 0,
            owner: "AK".into(),
            versioning: VersioningState::Unversioned,
            shard_count: 1,
        }
    }

    fn names(page: &[&BucketRecord]) -> Vec<String> {
        page.iter().map(|b| b.name.clone()).collect()
    }

    #[test]
    fn max_buckets_is_checked() {
        assert_eq!(page_size(None).unwrap(), None);
        assert_eq!(page_size(Some(1)).unwrap(), Some(1));
        assert_eq!(page_size(Some(10_000)).unwrap(), Some(10_000));
        for bad in [0, -1, 10_001] {
            let e = page_size(Some(bad)).unwrap_err();
            assert_eq!(*e.code(), S3ErrorCode::InvalidArgument, "{bad}");
        }
    }

    #[test]
    fn pages_are_sorted_filtered_and_resume_after_the_token() {
        let all: Vec<BucketRecord> = ["zeta", "alpha", "beta", "hidden", "gamma"]
            .into_iter()
            .map(bucket)
            .collect();
        let visible = |b: &BucketRecord| b.name != "hidden";
        let (page, more) = page_of(&all, visible, None, Some(2));
        assert_eq!(
            (names(&page), more),
            (vec!["alpha".into(), "beta".into()], true)
        );
        let (page, more) = page_of(&all, visible, Some("beta"), Some(2));
        assert_eq!(
            (names(&page), more),
            (vec!["gamma".into(), "zeta".into()], false)
        );
        let (page, more) = page_of(&all, visible, None, None);
        assert_eq!((page.len(), more), (4, false));
        // Exactly a full page left: no further page is announced.
        let (page, more) = page_of(&all, visible, Some("alpha"), Some(3));
        assert_eq!((page.len(), more), (3, false));
    }
}
