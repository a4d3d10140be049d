//! Shared pieces of the aws-sdk-s3 based tests: building a client for a test cluster (plain
//! HTTP, path-style, static credentials, no environment or profile lookups) and reading the S3
//! error code and HTTP status out of an SDK error.
#![allow(dead_code)]

pub mod drill;

use aws_sdk_s3::config::{
    BehaviorVersion, Credentials, Region, RequestChecksumCalculation, ResponseChecksumValidation,
};
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_s3::Client;
use sdfbs_compat_tests::Cluster;

/// The SDK's request-checksum setting under test.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Checksums {
    /// The SDK's defaults (`WhenSupported`: CRC32 on every upload, trailers with aws-chunked).
    Default,
    /// `WhenRequired` for both request calculation and response validation.
    WhenRequired,
}

/// A client for `cluster` with the root credentials.
pub fn client(cluster: &Cluster, checksums: Checksums) -> Client {
    client_with(cluster, &cluster.access_key, &cluster.secret_key, checksums)
}

/// A client for `cluster` with the given credentials.
pub fn client_with(cluster: &Cluster, ak: &str, sk: &str, checksums: Checksums) -> Client {
    build_client(cluster, &cluster.s3_url, ak, sk, checksums)
}

/// A client for gateway `i` of `cluster` with the root credentials and the SDK's default
/// checksum settings.
pub fn client_of_gateway(cluster: &Cluster, i: usize) -> Client {
    build_client(
        cluster,
        cluster.s3_url_of(i),
        &cluster.access_key,
        &cluster.secret_key,
        Checksums::Default,
    )
}

fn build_client(
    cluster: &Cluster,
    endpoint: &str,
    ak: &str,
    sk: &str,
    checksums: Checksums,
) -> Client {
    let http = aws_smithy_http_client::Builder::new().build_http();
    let mut conf = aws_sdk_s3::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new(cluster.region.clone()))
        .endpoint_url(endpoint)
        .force_path_style(true)
        .credentials_provider(Credentials::new(ak, sk, None, None, "sdfbs-compat-tests"))
        .http_client(http);
    if checksums == Checksums::WhenRequired {
        conf = conf
            .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
            .response_checksum_validation(ResponseChecksumValidation::WhenRequired);
    }
    Client::from_conf(conf.build())
}

/// (HTTP status, S3 error code) of a failed call; panics when the call succeeded.
pub fn err_of<T: std::fmt::Debug, E: ProvideErrorMetadata + std::fmt::Debug>(
    r: Result<T, SdkError<E>>,
) -> (u16, String) {
    match r {
        Ok(v) => panic!("expected an error, got {v:?}"),
        Err(e) => {
            let status = e.raw_response().map(|r| r.status().as_u16()).unwrap_or(0);
            let code = e.code().unwrap_or_default().to_string();
            if status == 0 {
                panic!("expected an S3 error answer, got a client-side error: {e:?}");
            }
            (status, code)
        }
    }
}

/// Asserts that `r` failed with HTTP `status` and S3 error `code` (code unchecked when "";
/// HEAD answers carry no body, so no code).
#[track_caller]
pub fn assert_err<T: std::fmt::Debug, E: ProvideErrorMetadata + std::fmt::Debug>(
    r: Result<T, SdkError<E>>,
    status: u16,
    code: &str,
) {
    let (s, c) = err_of(r);
    assert_eq!(
        (s, c.as_str()),
        (status, if code.is_empty() { c.as_str() } else { code }),
        "expected {status} {code}"
    );
}

/// Unwraps an SDK result, printing the whole error (code, message, status) when it failed.
#[track_caller]
pub fn ok<T, E: std::error::Error + 'static>(r: Result<T, SdkError<E>>) -> T
where
    SdkError<E>: std::fmt::Debug,
{
    match r {
        Ok(v) => v,
        Err(e) => panic!(
            "S3 call failed: {}",
            aws_smithy_types::error::display::DisplayErrorContext(&e)
        ),
    }
}

/// The whole body of a GetObject answer.
pub async fn body_bytes(out: aws_sdk_s3::operation::get_object::GetObjectOutput) -> Vec<u8> {
    match out.body.collect().await {
        Ok(b) => b.into_bytes().to_vec(),
        Err(e) => panic!("reading a GetObject body failed: {e}"),
    }
}

/// Unquoted MD5 hex of `data` (the ETag of a single-part upload).
pub fn md5_hex(data: &[u8]) -> String {
    use md5::{Digest, Md5};
    hex::encode(Md5::digest(data))
}

/// `"<md5 hex>"`, as an ETag header shows it.
pub fn quoted_md5(data: &[u8]) -> String {
    format!("\"{}\"", md5_hex(data))
}

/// A bucket name unique enough for one cluster.
pub fn bucket(name: &str) -> String {
    format!("{name}-{}", rand::random::<u32>())
}
