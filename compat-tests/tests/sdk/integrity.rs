//! Integrity: Content-MD5, `x-amz-checksum-*` (header and trailer; crc32, crc32c, crc64nvme,
//! sha1, sha256) verified, stored and returned with `x-amz-checksum-mode: ENABLED`; multipart
//! COMPOSITE and FULL_OBJECT checksums; bodies that fail a check or end early create nothing.

use std::io::{Read, Write};
use std::time::Duration;

use aws_sdk_s3::presigning::PresigningConfig;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{
    ChecksumAlgorithm, ChecksumMode, ChecksumType, CompletedMultipartUpload, CompletedPart,
};
use aws_sdk_s3::Client;
use sdfbs_compat_tests::{on_each_backend, random_bytes, Cluster, ClusterOptions, Metadata};

use crate::common::{assert_err, body_bytes, bucket, client, ok, Checksums};

// Each test runs once per metadata backend: `NAME::embedded` and `NAME::cassandra`.
on_each_backend!(
    checksums_default_settings,
    checksums_when_required,
    multipart_composite_and_full_object_checksums,
    single_put_over_five_gib_is_entity_too_large,
    body_ending_early_creates_nothing
);

const MIB: usize = 1 << 20;

/// Base64 checksum of `data` with `alg` ("crc32", "crc32c", "crc64nvme", "sha1", "sha256"),
/// from the SDK's own reference implementation.
pub(crate) fn checksum(alg: &str, data: &[u8]) -> String {
    let mut c = alg
        .parse::<aws_smithy_checksums::ChecksumAlgorithm>()
        .unwrap()
        .into_impl();
    c.update(data);
    c.header_value().to_str().unwrap().to_string()
}

/// The checksum of the object `b/key` of the given algorithm, as HEAD or GET with checksum
/// mode ENABLED return it (None when absent).
async fn returned_checksum(
    s3: &Client,
    b: &str,
    key: &str,
    alg: &str,
    get: bool,
) -> Option<String> {
    macro_rules! pick {
        ($o:expr) => {
            match alg {
                "crc32" => $o.checksum_crc32().map(String::from),
                "crc32c" => $o.checksum_crc32_c().map(String::from),
                "crc64nvme" => $o.checksum_crc64_nvme().map(String::from),
                "sha1" => $o.checksum_sha1().map(String::from),
                "sha256" => $o.checksum_sha256().map(String::from),
                _ => unreachable!(),
            }
        };
    }
    if get {
        let o = ok(s3
            .get_object()
            .bucket(b)
            .key(key)
            .checksum_mode(ChecksumMode::Enabled)
            .send()
            .await);
        let v = pick!(o);
        body_bytes(o).await;
        v
    } else {
        let o = ok(s3
            .head_object()
            .bucket(b)
            .key(key)
            .checksum_mode(ChecksumMode::Enabled)
            .send()
            .await);
        pick!(o)
    }
}

const ALGS: [(&str, ChecksumAlgorithm); 5] = [
    ("crc32", ChecksumAlgorithm::Crc32),
    ("crc32c", ChecksumAlgorithm::Crc32C),
    ("crc64nvme", ChecksumAlgorithm::Crc64Nvme),
    ("sha1", ChecksumAlgorithm::Sha1),
    ("sha256", ChecksumAlgorithm::Sha256),
];

async fn checksum_algorithms(metadata: Metadata, checksums: Checksums) {
    let cluster = Cluster::start(ClusterOptions::with_metadata(metadata));
    let s3 = client(&cluster, checksums);
    let b = bucket("sums");
    ok(s3.create_bucket().bucket(&b).send().await);
    let data = random_bytes(2 * MIB + 333, 77);

    for (name, alg) in ALGS {
        let want = checksum(name, &data);
        // Computed by the SDK (as a trailer with aws-chunked, or a header, as the SDK
        // chooses). Only with the default settings: under `WhenRequired`, aws-sdk-s3 1.157
        // computes nothing for PutObject even when an algorithm is named (it sends only
        // `x-amz-sdk-checksum-algorithm`), so there is nothing to verify there.
        if checksums == Checksums::Default {
            let key = format!("sdk-{name}");
            ok(s3
                .put_object()
                .bucket(&b)
                .key(&key)
                .checksum_algorithm(alg.clone())
                .body(ByteStream::from(data.clone()))
                .send()
                .await);
            assert_eq!(
                returned_checksum(&s3, &b, &key, name, false).await,
                Some(want.clone()),
                "HEAD {key}"
            );
            assert_eq!(
                returned_checksum(&s3, &b, &key, name, true).await,
                Some(want.clone()),
                "GET {key}"
            );
        }

        // Given by the caller in the header.
        let key = format!("header-{name}");
        let mut put = s3
            .put_object()
            .bucket(&b)
            .key(&key)
            .body(ByteStream::from(data.clone()));
        put = match name {
            "crc32" => put.checksum_crc32(&want),
            "crc32c" => put.checksum_crc32_c(&want),
            "crc64nvme" => put.checksum_crc64_nvme(&want),
            "sha1" => put.checksum_sha1(&want),
            _ => put.checksum_sha256(&want),
        };
        ok(put.send().await);
        assert_eq!(
            returned_checksum(&s3, &b, &key, name, false).await,
            Some(want.clone()),
            "HEAD {key}"
        );
        assert_eq!(
            returned_checksum(&s3, &b, &key, name, true).await,
            Some(want),
            "GET {key}"
        );

        // A wrong value is refused and stores nothing.
        let key = format!("bad-{name}");
        let wrong = checksum(name, b"something else");
        let mut put = s3
            .put_object()
            .bucket(&b)
            .key(&key)
            .body(ByteStream::from(data.clone()));
        put = match name {
            "crc32" => put.checksum_crc32(&wrong),
            "crc32c" => put.checksum_crc32_c(&wrong),
            "crc64nvme" => put.checksum_crc64_nvme(&wrong),
            "sha1" => put.checksum_sha1(&wrong),
            _ => put.checksum_sha256(&wrong),
        };
        assert_err(put.send().await, 400, "BadDigest");
        assert_err(s3.head_object().bucket(&b).key(&key).send().await, 404, "");
    }

    // No checksum for a range, even with checksum mode enabled.
    let o = ok(s3
        .get_object()
        .bucket(&b)
        .key("header-sha256")
        .range("bytes=0-99")
        .checksum_mode(ChecksumMode::Enabled)
        .send()
        .await);
    assert!(o.checksum_sha256().is_none() && o.checksum_crc32().is_none());
    assert_eq!(body_bytes(o).await, &data[..100]);

    // Content-MD5.
    use md5::{Digest, Md5};
    let good = aws_smithy_types::base64::encode(Md5::digest(&data));
    ok(s3
        .put_object()
        .bucket(&b)
        .key("md5-ok")
        .content_md5(&good)
        .body(ByteStream::from(data.clone()))
        .send()
        .await);
    let bad = aws_smithy_types::base64::encode(Md5::digest(b"other"));
    assert_err(
        s3.put_object()
            .bucket(&b)
            .key("md5-bad")
            .content_md5(&bad)
            .body(ByteStream::from(data.clone()))
            .send()
            .await,
        400,
        "BadDigest",
    );
    assert_err(
        s3.head_object().bucket(&b).key("md5-bad").send().await,
        404,
        "",
    );
}

async fn checksums_default_settings(metadata: Metadata) {
    checksum_algorithms(metadata, Checksums::Default).await;
}

async fn checksums_when_required(metadata: Metadata) {
    checksum_algorithms(metadata, Checksums::WhenRequired).await;
}

async fn multipart_composite_and_full_object_checksums(metadata: Metadata) {
    let cluster = Cluster::start(ClusterOptions::with_metadata(metadata));
    let s3 = client(&cluster, Checksums::Default);
    let b = bucket("mpusums");
    ok(s3.create_bucket().bucket(&b).send().await);
    let parts = [
        random_bytes(5 * MIB, 1),
        random_bytes(5 * MIB, 2),
        random_bytes(123, 3),
    ];
    let whole = parts.concat();

    // COMPOSITE crc32: checksum of the concatenated part checksums, then "-N".
    let id = ok(s3
        .create_multipart_upload()
        .bucket(&b)
        .key("composite")
        .checksum_algorithm(ChecksumAlgorithm::Crc32)
        .checksum_type(ChecksumType::Composite)
        .send()
        .await)
    .upload_id()
    .unwrap_or_default()
    .to_string();
    let mut done = Vec::new();
    let mut raw = Vec::new();
    for (i, p) in parts.iter().enumerate() {
        let n = i as i32 + 1;
        let out = ok(s3
            .upload_part()
            .bucket(&b)
            .key("composite")
            .upload_id(&id)
            .part_number(n)
            .checksum_algorithm(ChecksumAlgorithm::Crc32)
            .body(ByteStream::from(p.clone()))
            .send()
            .await);
        let sum = out.checksum_crc32().unwrap_or_default().to_string();
        assert_eq!(sum, checksum("crc32", p), "part {n} crc32");
        raw.extend(aws_smithy_types::base64::decode(&sum).unwrap());
        done.push(
            CompletedPart::builder()
                .part_number(n)
                .e_tag(out.e_tag().unwrap_or_default())
                .checksum_crc32(sum)
                .build(),
        );
    }
    ok(s3
        .complete_multipart_upload()
        .bucket(&b)
        .key("composite")
        .upload_id(&id)
        .multipart_upload(
            CompletedMultipartUpload::builder()
                .set_parts(Some(done))
                .build(),
        )
        .send()
        .await);
    let head = ok(s3
        .head_object()
        .bucket(&b)
        .key("composite")
        .checksum_mode(ChecksumMode::Enabled)
        .send()
        .await);
    assert_eq!(
        head.checksum_crc32(),
        Some(format!("{}-3", checksum("crc32", &raw)).as_str())
    );
    assert_eq!(head.checksum_type(), Some(&ChecksumType::Composite));

    // FULL_OBJECT crc64nvme: the checksum of the whole object.
    let id = ok(s3
        .create_multipart_upload()
        .bucket(&b)
        .key("full")
        .checksum_algorithm(ChecksumAlgorithm::Crc64Nvme)
        .checksum_type(ChecksumType::FullObject)
        .send()
        .await)
    .upload_id()
    .unwrap_or_default()
    .to_string();
    let mut done = Vec::new();
    for (i, p) in parts.iter().enumerate() {
        let n = i as i32 + 1;
        let out = ok(s3
            .upload_part()
            .bucket(&b)
            .key("full")
            .upload_id(&id)
            .part_number(n)
            .checksum_algorithm(ChecksumAlgorithm::Crc64Nvme)
            .body(ByteStream::from(p.clone()))
            .send()
            .await);
        done.push(
            CompletedPart::builder()
                .part_number(n)
                .e_tag(out.e_tag().unwrap_or_default())
                .checksum_crc64_nvme(out.checksum_crc64_nvme().unwrap_or_default())
                .build(),
        );
    }
    let full = checksum("crc64nvme", &whole);
    ok(s3
        .complete_multipart_upload()
        .bucket(&b)
        .key("full")
        .upload_id(&id)
        .checksum_type(ChecksumType::FullObject)
        .checksum_crc64_nvme(&full)
        .multipart_upload(
            CompletedMultipartUpload::builder()
                .set_parts(Some(done))
                .build(),
        )
        .send()
        .await);
    let o = ok(s3
        .get_object()
        .bucket(&b)
        .key("full")
        .checksum_mode(ChecksumMode::Enabled)
        .send()
        .await);
    assert_eq!(o.checksum_crc64_nvme(), Some(full.as_str()));
    assert_eq!(o.checksum_type(), Some(&ChecksumType::FullObject));
    assert_eq!(body_bytes(o).await, whole);
}

/// Sends a presigned PUT over a raw socket, declaring `declared` bytes of body and sending
/// `body`; when that is short, closes the write side (the client went away mid-body). Returns
/// the response status (None if the server closed without one).
fn raw_presigned_put(url: &str, declared: usize, body: &[u8]) -> Option<u16> {
    let text = raw_presigned_put_answer(url, declared, body);
    text.split_whitespace().nth(1).and_then(|c| c.parse().ok())
}

/// [`raw_presigned_put`], returning the whole answer (status line, headers, body) as text.
fn raw_presigned_put_answer(url: &str, declared: usize, body: &[u8]) -> String {
    let rest = url.strip_prefix("http://").unwrap();
    let (authority, path) = rest.split_at(rest.find('/').unwrap());
    let mut s = std::net::TcpStream::connect(authority).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let head = format!(
        "PUT {path} HTTP/1.1\r\nHost: {authority}\r\nContent-Length: {declared}\r\nConnection: close\r\n\r\n"
    );
    s.write_all(head.as_bytes()).unwrap();
    s.write_all(body).unwrap();
    if body.len() < declared {
        let _ = s.shutdown(std::net::Shutdown::Write);
    }
    let mut resp = Vec::new();
    let _ = s.read_to_end(&mut resp);
    String::from_utf8_lossy(&resp).into_owned()
}

async fn single_put_over_five_gib_is_entity_too_large(metadata: Metadata) {
    let cluster = Cluster::start(ClusterOptions::with_metadata(metadata));
    let s3 = client(&cluster, Checksums::WhenRequired);
    let b = bucket("huge");
    ok(s3.create_bucket().bucket(&b).send().await);
    let url = s3
        .put_object()
        .bucket(&b)
        .key("too-big")
        .presigned(PresigningConfig::expires_in(Duration::from_secs(600)).unwrap())
        .await
        .unwrap()
        .uri()
        .to_string();
    // 5 GiB + 1 declared; the answer must come before the body (none of it is sent).
    let answer = tokio::task::spawn_blocking(move || {
        raw_presigned_put_answer(&url, (5usize << 30) + 1, &[])
    })
    .await
    .unwrap();
    assert!(
        answer.starts_with("HTTP/1.1 400") && answer.contains("<Code>EntityTooLarge</Code>"),
        "{answer}"
    );
    assert_err(
        s3.head_object().bucket(&b).key("too-big").send().await,
        404,
        "",
    );
}

async fn body_ending_early_creates_nothing(metadata: Metadata) {
    let cluster = Cluster::start(ClusterOptions::with_metadata(metadata));
    let s3 = client(&cluster, Checksums::WhenRequired);
    let b = bucket("early");
    ok(s3.create_bucket().bucket(&b).send().await);
    let data = random_bytes(3 * MIB, 8);
    let presign = |key: &'static str| {
        let s3 = s3.clone();
        let b = b.clone();
        async move {
            s3.put_object()
                .bucket(&b)
                .key(key)
                .presigned(PresigningConfig::expires_in(Duration::from_secs(600)).unwrap())
                .await
                .unwrap()
                .uri()
                .to_string()
        }
    };

    // Control: the whole body through the same path works.
    let url = presign("complete").await;
    let status = tokio::task::spawn_blocking(move || raw_presigned_put(&url, data.len(), &data))
        .await
        .unwrap();
    assert_eq!(status, Some(200), "a complete presigned PUT");
    ok(s3.head_object().bucket(&b).key("complete").send().await);

    // 3 MiB declared, 2.5 MiB sent, then EOF: no object, whatever the answer.
    let data = random_bytes(3 * MIB, 9);
    let url = presign("truncated").await;
    let status = tokio::task::spawn_blocking(move || {
        raw_presigned_put(&url, data.len(), &data[..5 * MIB / 2])
    })
    .await
    .unwrap();
    assert_ne!(
        status,
        Some(200),
        "a truncated body must not be acknowledged"
    );
    assert_err(
        s3.head_object().bucket(&b).key("truncated").send().await,
        404,
        "",
    );
    let list = ok(s3.list_objects_v2().bucket(&b).send().await);
    let keys: Vec<&str> = list.contents().iter().filter_map(|o| o.key()).collect();
    assert_eq!(keys, ["complete"]);
}
