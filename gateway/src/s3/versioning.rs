//! Versions on a store that never versions: GetBucketVersioning, PutBucketVersioning, and the
//! `versionId` of object requests.
//!
//! SDFBS buckets are never versioned, so in S3's terms every object has exactly one version,
//! whose id is the literal `null` (the object row's internal version id is a storage detail,
//! never shown to clients). S3 answers an unversioned bucket this way:
//!
//! * a request naming `versionId=null` (GetObject, HeadObject, DeleteObject, DeleteObjects, the
//!   `x-amz-copy-source` of CopyObject and UploadPartCopy) addresses the current object;
//! * any other version id is `400 InvalidArgument` "Invalid version id specified" (there is no
//!   version it could name, so it is never `NoSuchVersion`);
//! * GetBucketVersioning answers an empty `VersioningConfiguration` (never enabled);
//! * PutBucketVersioning with `Enabled` is refused with `NotImplemented`, and `Suspended` is
//!   accepted and changes nothing: a never-versioned bucket already behaves as a suspended one
//!   does for every new write (each write replaces the `null` version).

use crate::s3::load_bucket;
use crate::state::Gateway;
use s3s::dto::*;
use s3s::{S3Error, S3ErrorCode, S3Request, S3Response, S3Result};
use sdfbs_metadata::VersioningState;

/// The id of the one version every object has in a bucket that was never versioned.
pub const NULL_VERSION: &str = "null";

/// Accepts the `versionId` of a request on an object of an unversioned bucket: none, or `null`
/// (the current object). Anything else is S3's `InvalidArgument`.
pub fn check_version_id(version_id: Option<&str>) -> S3Result<()> {
    match version_id {
        None | Some(NULL_VERSION) => Ok(()),
        Some(_) => Err(invalid_version_id()),
    }
}

fn invalid_version_id() -> S3Error {
    S3Error::with_message(
        S3ErrorCode::InvalidArgument,
        "Invalid version id specified (buckets are not versioned: the only version of an object is `null`)",
    )
}

pub async fn get(
    gw: &Gateway,
    req: S3Request<GetBucketVersioningInput>,
) -> S3Result<S3Response<GetBucketVersioningOutput>> {
    let bucket = load_bucket(gw, &req.input.bucket).await?;
    // S3 leaves Status out for a bucket whose versioning was never enabled.
    let status = match bucket.versioning {
        VersioningState::Unversioned => None,
        VersioningState::Enabled => Some(BucketVersioningStatus::ENABLED),
        VersioningState::Suspended => Some(BucketVersioningStatus::SUSPENDED),
    };
    Ok(S3Response::new(GetBucketVersioningOutput {
        status: status.map(BucketVersioningStatus::from_static),
        mfa_delete: None,
    }))
}

pub async fn put(
    gw: &Gateway,
    req: S3Request<PutBucketVersioningInput>,
) -> S3Result<S3Response<PutBucketVersioningOutput>> {
    let input = req.input;
    load_bucket(gw, &input.bucket).await?;
    let config = input.versioning_configuration;
    if config
        .mfa_delete
        .as_ref()
        .is_some_and(|m| m.as_str() == MFADelete::ENABLED)
    {
        return Err(S3Error::with_message(
            S3ErrorCode::NotImplemented,
            "MFA delete is not supported (SDFBS buckets are not versioned)",
        ));
    }
    match config.status.as_ref().map(|s| s.as_str()) {
        // Nothing to change: an unversioned bucket already acts as a suspended one.
        None | Some(BucketVersioningStatus::SUSPENDED) => {
            Ok(S3Response::new(PutBucketVersioningOutput {}))
        }
        Some(BucketVersioningStatus::ENABLED) => Err(S3Error::with_message(
            S3ErrorCode::NotImplemented,
            "Bucket versioning is not supported by SDFBS: buckets keep only the current version of each object (Suspended is accepted and changes nothing)",
        )),
        Some(other) => Err(S3Error::with_message(
            S3ErrorCode::MalformedXML,
            format!("Unknown versioning status `{other}` (Enabled or Suspended)"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_null_version_exists() {
        assert!(check_version_id(None).is_ok());
        assert!(check_version_id(Some("null")).is_ok());
        for bad in ["", "NULL", "3HL4kqtJlcpXroDTDmJ+rmSpXd3dIbrHY", "1"] {
            let e = check_version_id(Some(bad)).unwrap_err();
            assert_eq!(*e.code(), S3ErrorCode::InvalidArgument, "{bad:?}");
            assert_eq!(e.status_code(), Some(http::StatusCode::BAD_REQUEST));
            assert!(e
                .message()
                .unwrap_or_default()
                .starts_with("Invalid version id specified"));
        }
    }
}
