//! Conditional requests: If-Match, If-None-Match, If-Modified-Since, If-Unmodified-Since on
//! reads (and their `x-amz-copy-source-if-*` forms on copies), and the conditions of
//! conditional writes.
//!
//! Reads follow RFC 9110 as S3 applies it: the 412 conditions (If-Match, else
//! If-Unmodified-Since) are evaluated first, then the 304 ones (If-None-Match, else
//! If-Modified-Since). Copies answer 412 for every failed source condition. Writes turn
//! `If-None-Match: *` / `If-Match: "etag"` into a `PutCondition` that the metadata store checks
//! atomically with the commit, so two racing writers cannot both win.

use crate::state::Gateway;
use s3s::dto::{ETagCondition, Timestamp};
use s3s::{S3Error, S3ErrorCode, S3Result};
use sdfbs_metadata::{BucketRecord, ObjectRecord, PutCondition, UnixMillis};

/// The conditions of a read.
#[derive(Default)]
pub struct ReadConditions<'a> {
    pub if_match: Option<&'a ETagCondition>,
    pub if_none_match: Option<&'a ETagCondition>,
    pub if_modified_since: Option<&'a Timestamp>,
    pub if_unmodified_since: Option<&'a Timestamp>,
}

/// What a failed read condition answers.
#[derive(Debug, PartialEq, Eq)]
pub enum Failed {
    /// 412 Precondition Failed.
    Precondition,
    /// 304 Not Modified.
    NotModified,
}

fn matches(condition: &ETagCondition, etag: &str) -> bool {
    match condition {
        ETagCondition::Any => true,
        ETagCondition::ETag(e) => e.value().trim_matches('"') == etag,
    }
}

fn millis(ts: &Timestamp) -> UnixMillis {
    let t: time::OffsetDateTime = ts.clone().into();
    (t.unix_timestamp_nanos() / 1_000_000) as UnixMillis
}

/// HTTP dates have one-second precision: compare whole seconds.
fn modified_after(object: &ObjectRecord, since: &Timestamp) -> bool {
    object.last_modified.div_euclid(1000) > millis(since).div_euclid(1000)
}

impl ReadConditions<'_> {
    pub fn evaluate(&self, object: &ObjectRecord) -> Result<(), Failed> {
        if let Some(c) = self.if_match {
            if !matches(c, &object.etag) {
                return Err(Failed::Precondition);
            }
        } else if let Some(since) = self.if_unmodified_since {
            if modified_after(object, since) {
                return Err(Failed::Precondition);
            }
        }
        if let Some(c) = self.if_none_match {
            if matches(c, &object.etag) {
                return Err(Failed::NotModified);
            }
        } else if let Some(since) = self.if_modified_since {
            if !modified_after(object, since) {
                return Err(Failed::NotModified);
            }
        }
        Ok(())
    }

    /// For GET and HEAD: 412 or 304 as the failed condition says.
    pub fn check_read(&self, object: &ObjectRecord) -> S3Result<()> {
        self.evaluate(object).map_err(|f| match f {
            Failed::Precondition => precondition_failed(),
            Failed::NotModified => S3Error::new(S3ErrorCode::NotModified),
        })
    }

    /// For a copy source: every failed condition is 412.
    pub fn check_copy_source(&self, object: &ObjectRecord) -> S3Result<()> {
        self.evaluate(object).map_err(|_| precondition_failed())
    }
}

pub fn precondition_failed() -> S3Error {
    S3Error::with_message(
        S3ErrorCode::PreconditionFailed,
        "At least one of the pre-conditions you specified did not hold",
    )
}

/// The condition of a conditional write (PutObject, CompleteMultipartUpload).
pub fn put_condition(
    if_match: Option<&ETagCondition>,
    if_none_match: Option<&ETagCondition>,
) -> S3Result<PutCondition> {
    match (if_match, if_none_match) {
        (None, None) => Ok(PutCondition::None),
        (None, Some(ETagCondition::Any)) => Ok(PutCondition::IfNoneMatchStar),
        (None, Some(ETagCondition::ETag(_))) => Err(S3Error::with_message(
            S3ErrorCode::NotImplemented,
            "If-None-Match on a write only supports `*`",
        )),
        (Some(ETagCondition::ETag(e)), None) => Ok(PutCondition::IfMatch(
            e.value().trim_matches('"').to_string(),
        )),
        (Some(ETagCondition::Any), None) => Err(S3Error::with_message(
            S3ErrorCode::NotImplemented,
            "If-Match on a write needs an ETag, not `*`",
        )),
        (Some(_), Some(_)) => Err(S3Error::with_message(
            S3ErrorCode::NotImplemented,
            "a write may carry If-Match or If-None-Match, not both",
        )),
    }
}

/// Fails fast, before any data is sent to the storage nodes, when a write condition already
/// does not hold. The store checks it again, atomically, at the commit.
pub fn precheck_put(condition: &PutCondition, current: Option<&ObjectRecord>) -> S3Result<()> {
    let current = current.filter(|o| !o.delete_marker);
    match (condition, current) {
        (PutCondition::None, _) => Ok(()),
        (PutCondition::IfNoneMatchStar, None) => Ok(()),
        (PutCondition::IfNoneMatchStar, Some(_)) => Err(precondition_failed()),
        (PutCondition::IfMatch(_), None) => Err(S3Error::with_message(
            S3ErrorCode::NoSuchKey,
            "If-Match was given but the key has no object",
        )),
        (PutCondition::IfMatch(etag), Some(o)) if o.etag == *etag => Ok(()),
        (PutCondition::IfMatch(_), Some(_)) => Err(precondition_failed()),
    }
}

/// The condition of a conditional write, checked at once against the current object so that a
/// write bound to fail sends no data to the storage nodes ([`precheck_put`]). The store checks it
/// again, atomically, at the commit.
pub async fn checked_put_condition(
    gw: &Gateway,
    bucket: &BucketRecord,
    key: &str,
    if_match: Option<&ETagCondition>,
    if_none_match: Option<&ETagCondition>,
) -> S3Result<PutCondition> {
    let condition = put_condition(if_match, if_none_match)?;
    if condition != PutCondition::None {
        let current = gw
            .meta
            .get_object(bucket, key)
            .await
            .map_err(super::error::meta)?;
        precheck_put(&condition, current.as_ref())?;
    }
    Ok(condition)
}

#[cfg(test)]
mod tests {
    use super::*;
    use s3s::dto::ETag;
    use std::collections::BTreeMap;

    fn object(etag: &str, last_modified: UnixMillis) -> ObjectRecord {
        ObjectRecord {
            key: "k".into(),
            version_id: "v".into(),
            size: 1,
            etag: etag.into(),
            last_modified,
            content_type: None,
            headers: BTreeMap::new(),
            user_metadata: BTreeMap::new(),
            checksums: BTreeMap::new(),
            checksum_type: None,
            parts: vec![],
            delete_marker: false,
            owner: "o".into(),
        }
    }

    fn ts(ms: i64) -> Timestamp {
        time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
            .unwrap()
            .into()
    }

    #[test]
    fn read_conditions_follow_rfc_9110() {
        let o = object("abc", 10_000);
        let yes = ETagCondition::ETag(ETag::Strong("abc".into()));
        let no = ETagCondition::ETag(ETag::Strong("zzz".into()));
        let c = |m, n, ms, us| ReadConditions {
            if_match: m,
            if_none_match: n,
            if_modified_since: ms,
            if_unmodified_since: us,
        };
        assert_eq!(c(Some(&yes), None, None, None).evaluate(&o), Ok(()));
        assert_eq!(
            c(Some(&no), None, None, None).evaluate(&o),
            Err(Failed::Precondition)
        );
        assert_eq!(
            c(None, Some(&yes), None, None).evaluate(&o),
            Err(Failed::NotModified)
        );
        assert_eq!(
            c(None, Some(&ETagCondition::Any), None, None).evaluate(&o),
            Err(Failed::NotModified)
        );
        let before = ts(5_000);
        let after = ts(20_000);
        let same_second = ts(10_999);
        assert_eq!(c(None, None, Some(&before), None).evaluate(&o), Ok(()));
        assert_eq!(
            c(None, None, Some(&after), None).evaluate(&o),
            Err(Failed::NotModified)
        );
        assert_eq!(
            c(None, None, Some(&same_second), None).evaluate(&o),
            Err(Failed::NotModified)
        );
        assert_eq!(
            c(None, None, None, Some(&before)).evaluate(&o),
            Err(Failed::Precondition)
        );
        // If-Match true wins over a failing If-Unmodified-Since (S3 documents this case).
        assert_eq!(
            c(Some(&yes), None, None, Some(&before)).evaluate(&o),
            Ok(())
        );
        // If-None-Match false and If-Modified-Since false: If-None-Match decides (200).
        assert_eq!(c(None, Some(&no), Some(&after), None).evaluate(&o), Ok(()));
        let e = c(Some(&no), None, None, None).check_read(&o).unwrap_err();
        assert_eq!(e.status_code(), Some(http::StatusCode::PRECONDITION_FAILED));
        let e = c(None, Some(&yes), None, None).check_read(&o).unwrap_err();
        assert_eq!(e.status_code(), Some(http::StatusCode::NOT_MODIFIED));
        let e = c(None, Some(&yes), None, None)
            .check_copy_source(&o)
            .unwrap_err();
        assert_eq!(e.status_code(), Some(http::StatusCode::PRECONDITION_FAILED));
    }

    #[test]
    fn write_conditions() {
        let etag = ETagCondition::ETag(ETag::Strong("abc".into()));
        assert_eq!(
            put_condition(None, Some(&ETagCondition::Any)).unwrap(),
            PutCondition::IfNoneMatchStar
        );
        assert_eq!(
            put_condition(Some(&etag), None).unwrap(),
            PutCondition::IfMatch("abc".into())
        );
        assert!(put_condition(None, Some(&etag)).is_err());
        let o = object("abc", 0);
        assert!(precheck_put(&PutCondition::IfNoneMatchStar, Some(&o)).is_err());
        assert!(precheck_put(&PutCondition::IfNoneMatchStar, None).is_ok());
        assert!(precheck_put(&PutCondition::IfMatch("abc".into()), Some(&o)).is_ok());
        let e = precheck_put(&PutCondition::IfMatch("x".into()), Some(&o)).unwrap_err();
        assert_eq!(*e.code(), S3ErrorCode::PreconditionFailed);
        let e = precheck_put(&PutCondition::IfMatch("x".into()), None).unwrap_err();
        assert_eq!(*e.code(), S3ErrorCode::NoSuchKey);
    }
}
