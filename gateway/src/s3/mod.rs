//! The S3 API of the gateway, on top of `s3s` (work in progress: the S3 helper is writing it).
