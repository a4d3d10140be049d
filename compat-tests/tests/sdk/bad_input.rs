//! Bad input gets the S3 error a client expects: wrong signatures, unknown keys, anonymous
//! requests, malformed XML, keys over 1024 bytes.

use std::time::Duration;

use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
use aws_smithy_types::body::SdkBody;
use sdfbs_compat_tests::{http, on_each_backend, Cluster, ClusterOptions, Metadata};

use crate::common::{assert_err, bucket, client, client_with, ok, Checksums};

// Each test runs once per metadata backend: `NAME::embedded` and `NAME::cassandra`.
on_each_backend!(bad_requests_get_s3_errors);

async fn bad_requests_get_s3_errors(metadata: Metadata) {
    let cluster = Cluster::start(ClusterOptions::with_metadata(metadata));
    let s3 = client(&cluster, Checksums::WhenRequired);
    let b = bucket("bad");
    ok(s3.create_bucket().bucket(&b).send().await);
    ok(s3
        .put_object()
        .bucket(&b)
        .key("k")
        .body(ByteStream::from_static(b"v"))
        .send()
        .await);

    // Wrong secret, unknown key.
    let wrong = client_with(
        &cluster,
        &cluster.access_key,
        "not-the-secret",
        Checksums::Default,
    );
    assert_err(
        wrong.get_object().bucket(&b).key("k").send().await,
        403,
        "SignatureDoesNotMatch",
    );
    assert_err(
        wrong
            .put_object()
            .bucket(&b)
            .key("k2")
            .body(ByteStream::from_static(b"v"))
            .send()
            .await,
        403,
        "SignatureDoesNotMatch",
    );
    let unknown = client_with(&cluster, "AKIAUNKNOWNKEY000000", "x", Checksums::Default);
    assert_err(
        unknown.list_buckets().send().await,
        403,
        "InvalidAccessKeyId",
    );
    assert_err(s3.head_object().bucket(&b).key("k2").send().await, 404, "");

    // Anonymous requests are denied.
    let resp = http::request(
        "GET",
        &format!("{}/{b}/k", cluster.s3_url),
        &[],
        b"",
        Duration::from_secs(10),
    )
    .unwrap();
    assert_eq!(resp.status, 403, "{}", String::from_utf8_lossy(&resp.body));
    assert!(String::from_utf8_lossy(&resp.body).contains("<Code>AccessDenied</Code>"));

    // Keys: 1024 bytes is the limit.
    let long = "k".repeat(1024);
    ok(s3
        .put_object()
        .bucket(&b)
        .key(&long)
        .body(ByteStream::from_static(b"v"))
        .send()
        .await);
    assert_err(
        s3.put_object()
            .bucket(&b)
            .key("k".repeat(1025))
            .body(ByteStream::from_static(b"v"))
            .send()
            .await,
        400,
        "KeyTooLongError",
    );

    // Malformed XML in a CompleteMultipartUpload body (replaced before signing, so the
    // signature is right and only the XML is wrong).
    let id = ok(s3
        .create_multipart_upload()
        .bucket(&b)
        .key("mpu")
        .send()
        .await)
    .upload_id()
    .unwrap_or_default()
    .to_string();
    let up = ok(s3
        .upload_part()
        .bucket(&b)
        .key("mpu")
        .upload_id(&id)
        .part_number(1)
        .body(ByteStream::from_static(b"part"))
        .send()
        .await);
    let parts = CompletedMultipartUpload::builder()
        .parts(
            CompletedPart::builder()
                .part_number(1)
                .e_tag(up.e_tag().unwrap_or_default())
                .build(),
        )
        .build();
    let broken = "<CompleteMultipartUpload><Part><PartNumber>1</PartNumber><ETag>";
    assert_err(
        s3.complete_multipart_upload()
            .bucket(&b)
            .key("mpu")
            .upload_id(&id)
            .multipart_upload(parts.clone())
            .customize()
            .mutate_request(move |req| {
                *req.body_mut() = SdkBody::from(broken);
                req.headers_mut()
                    .insert("content-length", broken.len().to_string());
            })
            .send()
            .await,
        400,
        "MalformedXML",
    );
    // The upload is still there and completes normally.
    ok(s3
        .complete_multipart_upload()
        .bucket(&b)
        .key("mpu")
        .upload_id(&id)
        .multipart_upload(parts)
        .send()
        .await);
}
