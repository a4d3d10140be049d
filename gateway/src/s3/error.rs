//! The one place where errors of the layers below (metadata, chunk pipeline, request body) become
//! S3 errors, with the codes and HTTP statuses AWS documents.
//!
//! Handlers never build an S3 error out of a `MetaError` or a `PipelineError` themselves: they call
//! [`meta`] or [`pipeline`] so that, for example, "not enough storage nodes" is a 503
//! `ServiceUnavailable` with the same clear message everywhere.

use crate::pipeline::PipelineError;
use s3s::{S3Error, S3ErrorCode};
use sdfbs_metadata::MetaError;
use std::sync::{Arc, Mutex};

/// Maps an error of the metadata store to the S3 error a client sees.
pub fn meta(err: MetaError) -> S3Error {
    use MetaError::*;
    let code = match &err {
        BucketAlreadyExists(_) => S3ErrorCode::BucketAlreadyExists,
        NoSuchBucket(_) => S3ErrorCode::NoSuchBucket,
        BucketNotEmpty(_) => S3ErrorCode::BucketNotEmpty,
        NoSuchKey => S3ErrorCode::NoSuchKey,
        NoSuchUpload(_) => S3ErrorCode::NoSuchUpload,
        InvalidPart(_) => S3ErrorCode::InvalidPart,
        PreconditionFailed => S3ErrorCode::PreconditionFailed,
        NoSuchAccessKey(_) => S3ErrorCode::InvalidAccessKeyId,
        // The store is unreachable or timed out: 503 makes every SDK retry with back-off.
        Backend(_) => S3ErrorCode::ServiceUnavailable,
        KeyAlreadyExists(_) | NoSuchNode(_) | Corrupt(_) => S3ErrorCode::InternalError,
    };
    if code == S3ErrorCode::InternalError {
        tracing::error!(error = %err, "metadata error");
    }
    S3Error::with_message(code, err.to_string())
}

/// Maps an error of the chunk pipeline to the S3 error a client sees. `body` holds what the
/// request body's own error was, when the pipeline failed because of it (see [`BodyErrorSlot`]).
pub fn pipeline(err: PipelineError, body: Option<&BodyErrorSlot>) -> S3Error {
    match err {
        PipelineError::InsufficientNodes { .. } => {
            S3Error::with_message(S3ErrorCode::ServiceUnavailable, err.to_string())
        }
        PipelineError::Body(msg) => match body.and_then(BodyErrorSlot::take) {
            Some(e) => e,
            None => S3Error::with_message(
                S3ErrorCode::IncompleteBody,
                format!("the request body could not be read: {msg}"),
            ),
        },
        PipelineError::ChunkUnavailable(_) => {
            tracing::error!(error = %err, "chunk unavailable");
            S3Error::with_message(S3ErrorCode::ServiceUnavailable, err.to_string())
        }
        PipelineError::Metadata(e) => meta(e),
        PipelineError::Internal(_) => {
            tracing::error!(error = %err, "pipeline error");
            S3Error::with_message(S3ErrorCode::InternalError, err.to_string())
        }
    }
}

/// Remembers what S3 error the failure of a request body stands for.
///
/// The pipeline only sees that the body stream failed (`PipelineError::Body(String)`); the
/// S3 layer wraps the body (see `body::watch`) and records here what that failure means for
/// the client: a bad aws-chunked signature is `SignatureDoesNotMatch`, a payload that does not
/// match `x-amz-content-sha256` is `XAmzContentSHA256Mismatch`, a connection that ended early is
/// `IncompleteBody`.
#[derive(Clone, Default)]
pub struct BodyErrorSlot(Arc<Mutex<Option<S3Error>>>);

impl BodyErrorSlot {
    pub fn set(&self, err: S3Error) {
        if let Ok(mut slot) = self.0.lock() {
            if slot.is_none() {
                *slot = Some(err);
            }
        }
    }

    pub fn take(&self) -> Option<S3Error> {
        self.0.lock().ok().and_then(|mut slot| slot.take())
    }
}

/// Classifies an error of a request body as produced by s3s (or hyper).
///
/// s3s's stream error types are private, so the classification reads their display text
/// (`AwsChunkedStreamError: SignatureMismatch`, `UploadStreamError: Sha256Mismatch`, ...).
/// Anything not recognised is an incomplete body, which is what a client that went away sees.
pub fn classify_body_error(err: &(dyn std::error::Error + 'static)) -> S3Error {
    let text = err.to_string();
    if text.contains("SignatureMismatch") {
        S3Error::with_message(
            S3ErrorCode::SignatureDoesNotMatch,
            "the signature of an aws-chunked body chunk does not match",
        )
    } else if text.contains("Sha256Mismatch") {
        // AWS's code for this case; s3s has no constant for it.
        let mut e = S3Error::with_message(
            S3ErrorCode::Custom("XAmzContentSHA256Mismatch".into()),
            "the body does not match the x-amz-content-sha256 header",
        );
        e.set_status_code(http::StatusCode::BAD_REQUEST);
        e
    } else if text.contains("LengthMismatch") || text.contains("Incomplete") {
        S3Error::with_message(
            S3ErrorCode::IncompleteBody,
            "the body is shorter or longer than its declared length",
        )
    } else if text.contains("FormatError")
        || text.contains("TooLarge")
        || text.contains("TooManyTrailerHeaders")
    {
        S3Error::with_message(
            S3ErrorCode::InvalidRequest,
            format!("malformed aws-chunked body: {text}"),
        )
    } else {
        S3Error::with_message(
            S3ErrorCode::IncompleteBody,
            format!("the request body ended early: {text}"),
        )
    }
}

/// The error of a checksum or Content-MD5 that does not match the body received.
pub fn bad_digest(what: &str) -> S3Error {
    S3Error::with_message(
        S3ErrorCode::BadDigest,
        format!("the {what} you specified did not match the calculated checksum of the body"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn insufficient_nodes_is_503_with_a_clear_message() {
        let e = pipeline(
            PipelineError::InsufficientNodes {
                needed: 2,
                available: 1,
            },
            None,
        );
        assert_eq!(*e.code(), S3ErrorCode::ServiceUnavailable);
        assert_eq!(e.status_code(), Some(http::StatusCode::SERVICE_UNAVAILABLE));
        assert!(e
            .message()
            .unwrap_or_default()
            .contains("2 replicas needed"));
    }

    #[test]
    fn metadata_errors_keep_their_s3_codes() {
        assert_eq!(*meta(MetaError::NoSuchKey).code(), S3ErrorCode::NoSuchKey);
        assert_eq!(
            *meta(MetaError::BucketNotEmpty("b".into())).code(),
            S3ErrorCode::BucketNotEmpty
        );
        assert_eq!(
            meta(MetaError::PreconditionFailed).status_code(),
            Some(http::StatusCode::PRECONDITION_FAILED)
        );
        assert_eq!(
            *meta(MetaError::InvalidPart(3)).code(),
            S3ErrorCode::InvalidPart
        );
        assert_eq!(
            *meta(MetaError::Backend("down".into())).code(),
            S3ErrorCode::ServiceUnavailable
        );
    }

    #[test]
    fn body_failures_use_the_recorded_cause() {
        let slot = BodyErrorSlot::default();
        slot.set(s3s::s3_error!(SignatureDoesNotMatch));
        let e = pipeline(PipelineError::Body("x".into()), Some(&slot));
        assert_eq!(*e.code(), S3ErrorCode::SignatureDoesNotMatch);
        let e = pipeline(PipelineError::Body("x".into()), Some(&slot));
        assert_eq!(*e.code(), S3ErrorCode::IncompleteBody);
    }

    #[test]
    fn body_errors_are_classified() {
        let e = std::io::Error::other("AwsChunkedStreamError: SignatureMismatch");
        assert_eq!(
            *classify_body_error(&e).code(),
            S3ErrorCode::SignatureDoesNotMatch
        );
        let e = std::io::Error::other("UploadStreamError: Sha256Mismatch");
        let e = classify_body_error(&e);
        assert_eq!(e.code().as_str(), "XAmzContentSHA256Mismatch");
        assert_eq!(e.status_code(), Some(http::StatusCode::BAD_REQUEST));
        let e = std::io::Error::other("connection reset");
        assert_eq!(*classify_body_error(&e).code(), S3ErrorCode::IncompleteBody);
    }
}
