//! GetObjectAttributes as S3 answers it for an unversioned bucket: only the attributes asked
//! for, the ETag without quotes, the stored checksum with its type, ObjectParts only for
//! multipart objects (the part list, paged by max-parts and part-number-marker, only when the
//! object has an additional checksum; parts carry number and size, not their checksums), and
//! the usual errors: NoSuchKey, NoSuchBucket, AccessDenied without Read, InvalidArgument for a
//! version id other than `null`, an unknown attribute or a bad paging value.

use aws_sdk_s3::operation::get_object_attributes::GetObjectAttributesOutput;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{
    ChecksumAlgorithm, ChecksumType, CompletedMultipartUpload, CompletedPart, ObjectAttributes,
    StorageClass,
};
use aws_sdk_s3::Client;
use sdfbs_compat_tests::{
    on_each_backend, random_bytes, run_ok, Cluster, ClusterOptions, Metadata,
};

use crate::access::create_key;
use crate::common::{assert_err, bucket, client, client_with, md5_hex, ok, Checksums};
use crate::integrity::checksum;
use crate::versions::OTHER_VERSION;

// Each test runs once per metadata backend: `NAME::embedded` and `NAME::cassandra`.
on_each_backend!(
    attributes_of_a_single_part_object,
    attributes_of_a_multipart_object
);

const MIB: usize = 1 << 20;

const ALL: [ObjectAttributes; 5] = [
    ObjectAttributes::Etag,
    ObjectAttributes::Checksum,
    ObjectAttributes::ObjectParts,
    ObjectAttributes::StorageClass,
    ObjectAttributes::ObjectSize,
];

async fn attributes(
    s3: &Client,
    b: &str,
    key: &str,
    wanted: &[ObjectAttributes],
) -> GetObjectAttributesOutput {
    ok(s3
        .get_object_attributes()
        .bucket(b)
        .key(key)
        .set_object_attributes(Some(wanted.to_vec()))
        .send()
        .await)
}

/// (part number, size) of the parts an answer lists.
fn listed_parts(out: &GetObjectAttributesOutput) -> Vec<(i32, i64)> {
    out.object_parts()
        .map(|p| p.parts())
        .unwrap_or_default()
        .iter()
        .map(|p| (p.part_number().unwrap_or(0), p.size().unwrap_or(0)))
        .collect()
}

async fn attributes_of_a_single_part_object(metadata: Metadata) {
    let cluster = Cluster::start(ClusterOptions::with_metadata(metadata));
    let s3 = client(&cluster, Checksums::Default);
    let b = bucket("attrs");
    ok(s3.create_bucket().bucket(&b).send().await);
    let data = random_bytes(300_000, 41);
    // The SDK's default: a CRC32 checksum sent with the body, stored as FULL_OBJECT.
    let put = ok(s3
        .put_object()
        .bucket(&b)
        .key("doc.bin")
        .body(ByteStream::from(data.clone()))
        .send()
        .await);
    let put_etag = put.e_tag().unwrap_or_default().to_string();
    assert_eq!(put_etag, format!("\"{}\"", md5_hex(&data)));
    let put_crc32 = put.checksum_crc32().unwrap_or_default().to_string();
    assert_eq!(put_crc32, checksum("crc32", &data));

    let all = attributes(&s3, &b, "doc.bin", &ALL).await;
    // The same ETag PutObject returned, but without its quotes, as S3 answers here.
    assert_eq!(all.e_tag(), Some(put_etag.trim_matches('"')));
    assert_eq!(all.object_size(), Some(data.len() as i64));
    assert_eq!(all.storage_class(), Some(&StorageClass::Standard));
    let sum = all.checksum().expect("Checksum asked for");
    assert_eq!(sum.checksum_crc32(), Some(put_crc32.as_str()));
    assert_eq!(sum.checksum_type(), Some(&ChecksumType::FullObject));
    assert_eq!(sum.checksum_sha256(), None);
    assert!(all.object_parts().is_none(), "single-part: no ObjectParts");
    let head = ok(s3.head_object().bucket(&b).key("doc.bin").send().await);
    assert!(all.last_modified().is_some());
    assert_eq!(all.last_modified(), head.last_modified());

    // Only what is asked for.
    let size_only = attributes(&s3, &b, "doc.bin", &[ObjectAttributes::ObjectSize]).await;
    assert_eq!(size_only.object_size(), Some(data.len() as i64));
    assert_eq!(size_only.e_tag(), None);
    assert!(size_only.checksum().is_none());
    assert_eq!(size_only.storage_class(), None);
    let two = attributes(
        &s3,
        &b,
        "doc.bin",
        &[ObjectAttributes::Etag, ObjectAttributes::StorageClass],
    )
    .await;
    assert_eq!(two.e_tag(), Some(put_etag.trim_matches('"')));
    assert_eq!(two.storage_class(), Some(&StorageClass::Standard));
    assert_eq!(two.object_size(), None);
    assert!(two.checksum().is_none());

    // An object stored without a checksum has no Checksum to give.
    let plain = client(&cluster, Checksums::WhenRequired);
    ok(plain
        .put_object()
        .bucket(&b)
        .key("plain.txt")
        .body(ByteStream::from_static(b"no checksum"))
        .send()
        .await);
    let out = attributes(&s3, &b, "plain.txt", &ALL).await;
    assert!(out.checksum().is_none());
    assert_eq!(out.e_tag(), Some(md5_hex(b"no checksum").as_str()));
    assert_eq!(out.object_size(), Some(11));

    // versionId: `null` is the object; any other id is InvalidArgument.
    let v = ok(s3
        .get_object_attributes()
        .bucket(&b)
        .key("doc.bin")
        .version_id("null")
        .object_attributes(ObjectAttributes::ObjectSize)
        .send()
        .await);
    assert_eq!(v.object_size(), Some(data.len() as i64));
    assert_err(
        s3.get_object_attributes()
            .bucket(&b)
            .key("doc.bin")
            .version_id(OTHER_VERSION)
            .object_attributes(ObjectAttributes::Etag)
            .send()
            .await,
        400,
        "InvalidArgument",
    );

    // Missing key, deleted key, missing bucket.
    let ask = |bucket: &str, key: &str| {
        s3.get_object_attributes()
            .bucket(bucket)
            .key(key)
            .object_attributes(ObjectAttributes::Etag)
            .send()
    };
    assert_err(ask(&b, "no-such-key").await, 404, "NoSuchKey");
    ok(s3.delete_object().bucket(&b).key("plain.txt").send().await);
    assert_err(ask(&b, "plain.txt").await, 404, "NoSuchKey");
    assert_err(
        ask("no-such-bucket-zz", "doc.bin").await,
        404,
        "NoSuchBucket",
    );

    // Bad input: a negative max-parts, a part-number-marker that is not a number.
    assert_err(
        s3.get_object_attributes()
            .bucket(&b)
            .key("doc.bin")
            .object_attributes(ObjectAttributes::ObjectParts)
            .max_parts(-1)
            .send()
            .await,
        400,
        "InvalidArgument",
    );
    assert_err(
        s3.get_object_attributes()
            .bucket(&b)
            .key("doc.bin")
            .object_attributes(ObjectAttributes::ObjectParts)
            .part_number_marker("two")
            .send()
            .await,
        400,
        "InvalidArgument",
    );

    // A key without Read on the bucket is denied; Read is enough.
    let (id, secret) = create_key(&cluster, "attributes-reader", false);
    let reader = client_with(&cluster, &id, &secret, Checksums::Default);
    assert_err(
        reader
            .get_object_attributes()
            .bucket(&b)
            .key("doc.bin")
            .object_attributes(ObjectAttributes::ObjectSize)
            .send()
            .await,
        403,
        "AccessDenied",
    );
    run_ok(cluster.sdfbs_cli().args(["key", "allow", &id, &b, "read"]));
    let out = attributes(&reader, &b, "doc.bin", &[ObjectAttributes::Etag]).await;
    assert_eq!(out.e_tag(), Some(put_etag.trim_matches('"')));
}

/// Uploads `parts` as a multipart object; with `algorithm`, the upload declares it (COMPOSITE)
/// and every part carries it. Returns the object's ETag as CompleteMultipartUpload gave it.
async fn multipart_upload(
    s3: &Client,
    b: &str,
    key: &str,
    parts: &[Vec<u8>],
    algorithm: Option<ChecksumAlgorithm>,
) -> String {
    let id = ok(s3
        .create_multipart_upload()
        .bucket(b)
        .key(key)
        .set_checksum_algorithm(algorithm.clone())
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
            .bucket(b)
            .key(key)
            .upload_id(&id)
            .part_number(n)
            .set_checksum_algorithm(algorithm.clone())
            .body(ByteStream::from(p.clone()))
            .send()
            .await);
        let part = CompletedPart::builder()
            .part_number(n)
            .e_tag(out.e_tag().unwrap_or_default());
        done.push(match algorithm {
            Some(_) => part
                .checksum_crc32(out.checksum_crc32().unwrap_or_default())
                .build(),
            None => part.build(),
        });
    }
    let out = ok(s3
        .complete_multipart_upload()
        .bucket(b)
        .key(key)
        .upload_id(&id)
        .multipart_upload(
            CompletedMultipartUpload::builder()
                .set_parts(Some(done))
                .build(),
        )
        .send()
        .await);
    out.e_tag().unwrap_or_default().to_string()
}

async fn attributes_of_a_multipart_object(metadata: Metadata) {
    let cluster = Cluster::start(ClusterOptions::with_metadata(metadata));
    let s3 = client(&cluster, Checksums::Default);
    let b = bucket("attrs-mpu");
    ok(s3.create_bucket().bucket(&b).send().await);
    let parts = [
        random_bytes(5 * MIB, 51),
        random_bytes(5 * MIB, 52),
        random_bytes(MIB, 53),
    ];
    let sizes = [(1, 5 * MIB as i64), (2, 5 * MIB as i64), (3, MIB as i64)];
    let etag = multipart_upload(&s3, &b, "crc.bin", &parts, Some(ChecksumAlgorithm::Crc32)).await;
    assert!(etag.ends_with("-3\""), "{etag}");

    let all = attributes(&s3, &b, "crc.bin", &ALL).await;
    assert_eq!(all.e_tag(), Some(etag.trim_matches('"')));
    assert_eq!(all.object_size(), Some(11 * MIB as i64));
    assert_eq!(all.storage_class(), Some(&StorageClass::Standard));
    // COMPOSITE: the CRC32 of the concatenated part CRC32s, without the "-3" HeadObject shows.
    let raw: Vec<u8> = parts
        .iter()
        .flat_map(|p| aws_smithy_types::base64::decode(checksum("crc32", p)).unwrap())
        .collect();
    let sum = all.checksum().expect("Checksum asked for");
    assert_eq!(sum.checksum_crc32(), Some(checksum("crc32", &raw).as_str()));
    assert_eq!(sum.checksum_type(), Some(&ChecksumType::Composite));
    let op = all
        .object_parts()
        .expect("a multipart object has ObjectParts");
    assert_eq!(op.total_parts_count(), Some(3));
    assert_eq!(op.max_parts(), Some(1000));
    assert_eq!(op.is_truncated(), Some(false));
    assert_eq!(op.part_number_marker(), Some("0"));
    assert_eq!(op.next_part_number_marker(), Some("3"));
    assert_eq!(listed_parts(&all), sizes);
    // Per-part checksums are not kept after completion, so none is given.
    assert!(op.parts().iter().all(|p| p.checksum_crc32().is_none()));

    // Paging: two parts, then the rest after part-number-marker 2.
    let first = ok(s3
        .get_object_attributes()
        .bucket(&b)
        .key("crc.bin")
        .object_attributes(ObjectAttributes::ObjectParts)
        .max_parts(2)
        .send()
        .await);
    assert_eq!(listed_parts(&first), sizes[..2]);
    let op = first.object_parts().unwrap();
    assert_eq!(op.total_parts_count(), Some(3));
    assert_eq!(op.max_parts(), Some(2));
    assert_eq!(op.is_truncated(), Some(true));
    assert_eq!(op.next_part_number_marker(), Some("2"));
    assert_eq!(first.e_tag(), None);
    let next = ok(s3
        .get_object_attributes()
        .bucket(&b)
        .key("crc.bin")
        .object_attributes(ObjectAttributes::ObjectParts)
        .max_parts(2)
        .part_number_marker(op.next_part_number_marker().unwrap())
        .send()
        .await);
    assert_eq!(listed_parts(&next), sizes[2..]);
    let op = next.object_parts().unwrap();
    assert_eq!(op.part_number_marker(), Some("2"));
    assert_eq!(op.is_truncated(), Some(false));
    assert_eq!(op.next_part_number_marker(), Some("3"));

    // Without an additional checksum S3 gives the part count only, not the parts.
    let bare = [random_bytes(5 * MIB, 54), random_bytes(100, 55)];
    let etag = multipart_upload(&s3, &b, "bare.bin", &bare, None).await;
    let out = attributes(&s3, &b, "bare.bin", &ALL).await;
    assert_eq!(out.e_tag(), Some(etag.trim_matches('"')));
    assert!(out.checksum().is_none());
    let op = out
        .object_parts()
        .expect("a multipart object has ObjectParts");
    assert_eq!(op.total_parts_count(), Some(2));
    assert!(op.parts().is_empty(), "{op:?}");
    assert_eq!((op.max_parts(), op.is_truncated()), (None, None));
}
