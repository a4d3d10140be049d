//! CopyObject within and across buckets, COPY and REPLACE metadata directives, and the fact that
//! a copy (and a re-upload of identical bytes) stores no new chunk.

use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{ChecksumAlgorithm, ChecksumMode, ChecksumType, MetadataDirective};
use sdfbs_compat_tests::{
    on_each_backend, random_bytes, sha256_hex, Cluster, ClusterOptions, Metadata,
};

use crate::common::{assert_err, body_bytes, bucket, client, ok, quoted_md5, Checksums};
use crate::integrity::checksum;

// Each test runs once per metadata backend: `NAME::embedded` and `NAME::cassandra`.
on_each_backend!(
    copy_object_and_dedup,
    copy_object_computes_a_new_checksum_algorithm
);

/// Percent-encodes a key for `x-amz-copy-source` (everything but unreserved characters and `/`).
fn encode_key(key: &str) -> String {
    let mut out = String::new();
    for b in key.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~/".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

async fn copy_object_and_dedup(metadata: Metadata) {
    let cluster = Cluster::start(ClusterOptions::with_metadata(metadata));
    let s3 = client(&cluster, Checksums::Default);
    let (src_b, dst_b) = (bucket("src"), bucket("dst"));
    ok(s3.create_bucket().bucket(&src_b).send().await);
    ok(s3.create_bucket().bucket(&dst_b).send().await);

    let data = random_bytes(3 * (1 << 20) + 5, 9);
    let src_key = "photos/2024 holiday/ünï+1.raw";
    ok(s3
        .put_object()
        .bucket(&src_b)
        .key(src_key)
        .body(ByteStream::from(data.clone()))
        .content_type("image/x-raw")
        .metadata("camera", "x100")
        .send()
        .await);
    let chunks_before = cluster.total_chunk_replicas().unwrap();
    assert!(
        chunks_before >= 8,
        "4 chunks x 2 replicas, got {chunks_before}"
    );

    // COPY (the default): same bytes, same ETag, same metadata, across buckets.
    let source = format!("{src_b}/{}", encode_key(src_key));
    let copied = ok(s3
        .copy_object()
        .bucket(&dst_b)
        .key("copy-1")
        .copy_source(&source)
        .send()
        .await);
    let etag = copied
        .copy_object_result()
        .and_then(|r| r.e_tag())
        .unwrap_or_default();
    assert_eq!(etag, quoted_md5(&data));
    let got = ok(s3.get_object().bucket(&dst_b).key("copy-1").send().await);
    assert_eq!(got.content_type(), Some("image/x-raw"));
    assert_eq!(
        got.metadata()
            .and_then(|m| m.get("camera"))
            .map(String::as_str),
        Some("x100")
    );
    assert_eq!(sha256_hex(&body_bytes(got).await), sha256_hex(&data));

    // REPLACE, within the same bucket.
    ok(s3
        .copy_object()
        .bucket(&src_b)
        .key("copy-2")
        .copy_source(&source)
        .metadata_directive(MetadataDirective::Replace)
        .content_type("application/octet-stream")
        .metadata("new", "yes")
        .send()
        .await);
    let head = ok(s3.head_object().bucket(&src_b).key("copy-2").send().await);
    assert_eq!(head.content_type(), Some("application/octet-stream"));
    let meta = head.metadata().cloned().unwrap_or_default();
    assert_eq!(meta.get("new").map(String::as_str), Some("yes"));
    assert!(
        !meta.contains_key("camera"),
        "REPLACE drops old metadata: {meta:?}"
    );
    assert_eq!(head.e_tag(), Some(quoted_md5(&data).as_str()));

    // A copy stores no chunk, nor does uploading identical bytes under another key.
    ok(s3
        .put_object()
        .bucket(&dst_b)
        .key("same-bytes")
        .body(ByteStream::from(data.clone()))
        .send()
        .await);
    assert_eq!(
        cluster.total_chunk_replicas().unwrap(),
        chunks_before,
        "copies and identical uploads must not store chunks again"
    );

    // The copy outlives its source.
    ok(s3.delete_object().bucket(&src_b).key(src_key).send().await);
    let got = ok(s3.get_object().bucket(&dst_b).key("copy-1").send().await);
    assert_eq!(sha256_hex(&body_bytes(got).await), sha256_hex(&data));

    assert_err(
        s3.copy_object()
            .bucket(&dst_b)
            .key("x")
            .copy_source(format!("{src_b}/missing"))
            .send()
            .await,
        404,
        "NoSuchKey",
    );
    assert_err(
        s3.copy_object()
            .bucket(&dst_b)
            .key("x")
            .copy_source("no-such-bucket-zz/k")
            .send()
            .await,
        404,
        "NoSuchBucket",
    );
}

async fn copy_object_computes_a_new_checksum_algorithm(metadata: Metadata) {
    let cluster = Cluster::start(ClusterOptions::with_metadata(metadata));
    let s3 = client(&cluster, Checksums::Default);
    let plain = client(&cluster, Checksums::WhenRequired);
    let b = bucket("ck");
    ok(s3.create_bucket().bucket(&b).send().await);

    // A source stored with CRC32 (the SDK's default), and one stored with no checksum at all.
    let data = random_bytes(3 * (1 << 20) + 333, 77);
    ok(s3
        .put_object()
        .bucket(&b)
        .key("crc32-source")
        .body(ByteStream::from(data.clone()))
        .checksum_algorithm(ChecksumAlgorithm::Crc32)
        .send()
        .await);
    let bare = random_bytes((1 << 20) + 1, 78);
    ok(plain
        .put_object()
        .bucket(&b)
        .key("bare-source")
        .body(ByteStream::from(bare.clone()))
        .send()
        .await);
    let chunks_before = cluster.total_chunk_replicas().unwrap();

    let cases = [
        ("crc32-source", &data, ChecksumAlgorithm::Sha256, "sha256"),
        ("bare-source", &bare, ChecksumAlgorithm::Crc32C, "crc32c"),
        (
            "bare-source",
            &bare,
            ChecksumAlgorithm::Crc64Nvme,
            "crc64nvme",
        ),
    ];
    for (src, bytes, algorithm, name) in cases {
        let expected = checksum(name, bytes);
        let dst = format!("{src}-as-{name}");
        let copied = ok(s3
            .copy_object()
            .bucket(&b)
            .key(&dst)
            .copy_source(format!("{b}/{src}"))
            .checksum_algorithm(algorithm.clone())
            .send()
            .await);
        let result = copied.copy_object_result().expect("CopyObjectResult");
        let returned = match algorithm {
            ChecksumAlgorithm::Sha256 => result.checksum_sha256(),
            ChecksumAlgorithm::Crc32C => result.checksum_crc32_c(),
            _ => result.checksum_crc64_nvme(),
        };
        assert_eq!(returned, Some(expected.as_str()), "{dst}");
        assert_eq!(result.e_tag(), Some(quoted_md5(bytes).as_str()));

        let got = ok(s3
            .get_object()
            .bucket(&b)
            .key(&dst)
            .checksum_mode(ChecksumMode::Enabled)
            .send()
            .await);
        let stored = match algorithm {
            ChecksumAlgorithm::Sha256 => got.checksum_sha256(),
            ChecksumAlgorithm::Crc32C => got.checksum_crc32_c(),
            _ => got.checksum_crc64_nvme(),
        }
        .map(str::to_string);
        assert_eq!(stored, Some(expected), "{dst}");
        assert_eq!(got.checksum_type(), Some(&ChecksumType::FullObject));
        // S3 keeps one checksum per object: the source's CRC32 is not carried over.
        assert_eq!(got.checksum_crc32(), None, "{dst}");
        assert_eq!(sha256_hex(&body_bytes(got).await), sha256_hex(bytes));
    }

    // Asking for the algorithm the source already has keeps the source's checksum.
    let copied = ok(s3
        .copy_object()
        .bucket(&b)
        .key("crc32-again")
        .copy_source(format!("{b}/crc32-source"))
        .checksum_algorithm(ChecksumAlgorithm::Crc32)
        .send()
        .await);
    assert_eq!(
        copied.copy_object_result().and_then(|r| r.checksum_crc32()),
        Some(checksum("crc32", &data).as_str())
    );

    // The copies read the data but stored no chunk.
    assert_eq!(cluster.total_chunk_replicas().unwrap(), chunks_before);
}
