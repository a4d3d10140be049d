//! Multipart uploads: CreateMultipartUpload, UploadPart, UploadPartCopy (with range),
//! CompleteMultipartUpload (order, ETag, size checks), AbortMultipartUpload, ListParts,
//! ListMultipartUploads, GetObject by partNumber.

use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
use aws_sdk_s3::Client;
use sdfbs_compat_tests::{
    on_each_backend, random_bytes, sha256_hex, Cluster, ClusterOptions, Metadata,
};

use crate::common::{assert_err, body_bytes, bucket, client, md5_hex, ok, Checksums};

// Each test runs once per metadata backend: `NAME::embedded` and `NAME::cassandra`.
on_each_backend!(
    multipart_default_checksums,
    multipart_when_required,
    multipart_small_parts_abort_and_part_copy
);

const MIB: usize = 1 << 20;

fn completed(parts: &[(i32, String)]) -> CompletedMultipartUpload {
    CompletedMultipartUpload::builder()
        .set_parts(Some(
            parts
                .iter()
                .map(|(n, e)| CompletedPart::builder().part_number(*n).e_tag(e).build())
                .collect(),
        ))
        .build()
}

/// The multipart ETag: MD5 of the concatenated binary part MD5s, then `-N`.
fn multipart_etag(parts: &[&[u8]]) -> String {
    use md5::{Digest, Md5};
    let mut all = Vec::new();
    for p in parts {
        all.extend_from_slice(&Md5::digest(p));
    }
    format!("\"{}-{}\"", hex::encode(Md5::digest(&all)), parts.len())
}

async fn upload_part(s3: &Client, b: &str, key: &str, id: &str, n: i32, data: &[u8]) -> String {
    let out = ok(s3
        .upload_part()
        .bucket(b)
        .key(key)
        .upload_id(id)
        .part_number(n)
        .body(ByteStream::from(data.to_vec()))
        .send()
        .await);
    let etag = out.e_tag().unwrap_or_default().to_string();
    assert_eq!(etag, format!("\"{}\"", md5_hex(data)), "part {n} ETag");
    etag
}

async fn multipart(metadata: Metadata, checksums: Checksums) {
    let cluster = Cluster::start(ClusterOptions::with_metadata(metadata));
    let s3 = client(&cluster, checksums);
    let b = bucket("mpu");
    ok(s3.create_bucket().bucket(&b).send().await);

    let p1 = random_bytes(5 * MIB, 1);
    let p2 = random_bytes(5 * MIB + 3, 2);
    let p3 = random_bytes(MIB + 7, 3);
    let key = "big/object.bin";
    let create = ok(s3
        .create_multipart_upload()
        .bucket(&b)
        .key(key)
        .content_type("application/x-backup")
        .metadata("origin", "mpu")
        .send()
        .await);
    let id = create.upload_id().unwrap_or_default().to_string();
    assert!(!id.is_empty());

    // Parts uploaded out of order; part 2 uploaded twice (the last one counts).
    let e3 = upload_part(&s3, &b, key, &id, 3, &p3).await;
    let _stale = upload_part(&s3, &b, key, &id, 2, &p1).await;
    let e2 = upload_part(&s3, &b, key, &id, 2, &p2).await;
    let e1 = upload_part(&s3, &b, key, &id, 1, &p1).await;

    let uploads = ok(s3.list_multipart_uploads().bucket(&b).send().await);
    let listed: Vec<(&str, &str)> = uploads
        .uploads()
        .iter()
        .map(|u| (u.key().unwrap_or(""), u.upload_id().unwrap_or("")))
        .collect();
    assert_eq!(listed, [(key, id.as_str())]);

    let parts = ok(s3
        .list_parts()
        .bucket(&b)
        .key(key)
        .upload_id(&id)
        .send()
        .await);
    let listed: Vec<(i32, i64, &str)> = parts
        .parts()
        .iter()
        .map(|p| {
            (
                p.part_number().unwrap_or(0),
                p.size().unwrap_or(0),
                p.e_tag().unwrap_or(""),
            )
        })
        .collect();
    assert_eq!(
        listed,
        [
            (1, p1.len() as i64, e1.as_str()),
            (2, p2.len() as i64, e2.as_str()),
            (3, p3.len() as i64, e3.as_str())
        ]
    );
    let page = ok(s3
        .list_parts()
        .bucket(&b)
        .key(key)
        .upload_id(&id)
        .max_parts(2)
        .send()
        .await);
    assert_eq!(page.parts().len(), 2);
    assert_eq!(page.is_truncated(), Some(true));
    assert_eq!(page.next_part_number_marker(), Some("2"));

    // Wrong order and wrong ETag are refused and leave the upload usable.
    assert_err(
        s3.complete_multipart_upload()
            .bucket(&b)
            .key(key)
            .upload_id(&id)
            .multipart_upload(completed(&[
                (2, e2.clone()),
                (1, e1.clone()),
                (3, e3.clone()),
            ]))
            .send()
            .await,
        400,
        "InvalidPartOrder",
    );
    assert_err(
        s3.complete_multipart_upload()
            .bucket(&b)
            .key(key)
            .upload_id(&id)
            .multipart_upload(completed(&[
                (1, e1.clone()),
                (2, format!("\"{}\"", md5_hex(b"other"))),
                (3, e3.clone()),
            ]))
            .send()
            .await,
        400,
        "InvalidPart",
    );
    assert_err(
        s3.get_object().bucket(&b).key(key).send().await,
        404,
        "NoSuchKey",
    );

    let done = ok(s3
        .complete_multipart_upload()
        .bucket(&b)
        .key(key)
        .upload_id(&id)
        .multipart_upload(completed(&[(1, e1), (2, e2), (3, e3)]))
        .send()
        .await);
    let etag = multipart_etag(&[&p1, &p2, &p3]);
    assert_eq!(done.e_tag(), Some(etag.as_str()));

    let whole: Vec<u8> = [p1.as_slice(), &p2, &p3].concat();
    let got = ok(s3.get_object().bucket(&b).key(key).send().await);
    assert_eq!(got.e_tag(), Some(etag.as_str()));
    assert_eq!(got.content_type(), Some("application/x-backup"));
    assert_eq!(
        got.metadata()
            .and_then(|m| m.get("origin"))
            .map(String::as_str),
        Some("mpu")
    );
    assert_eq!(sha256_hex(&body_bytes(got).await), sha256_hex(&whole));

    // partNumber reads one part and tells how many there are.
    let part2 = ok(s3
        .get_object()
        .bucket(&b)
        .key(key)
        .part_number(2)
        .send()
        .await);
    assert_eq!(part2.parts_count(), Some(3));
    assert_eq!(part2.content_length(), Some(p2.len() as i64));
    assert_eq!(sha256_hex(&body_bytes(part2).await), sha256_hex(&p2));
    let head = ok(s3
        .head_object()
        .bucket(&b)
        .key(key)
        .part_number(3)
        .send()
        .await);
    assert_eq!(head.parts_count(), Some(3));
    assert_eq!(head.content_length(), Some(p3.len() as i64));
    // A range inside the assembled object crosses the part boundary.
    let start = p1.len() - 10;
    let got = ok(s3
        .get_object()
        .bucket(&b)
        .key(key)
        .range(format!("bytes={start}-{}", start + 19))
        .send()
        .await);
    assert_eq!(body_bytes(got).await, &whole[start..start + 20]);

    // The upload is gone once completed.
    let uploads = ok(s3.list_multipart_uploads().bucket(&b).send().await);
    assert!(uploads.uploads().is_empty());
    assert_err(
        s3.upload_part()
            .bucket(&b)
            .key(key)
            .upload_id(&id)
            .part_number(4)
            .body(ByteStream::from_static(b"late"))
            .send()
            .await,
        404,
        "NoSuchUpload",
    );
}

async fn multipart_default_checksums(metadata: Metadata) {
    multipart(metadata, Checksums::Default).await;
}

async fn multipart_when_required(metadata: Metadata) {
    multipart(metadata, Checksums::WhenRequired).await;
}

async fn multipart_small_parts_abort_and_part_copy(metadata: Metadata) {
    let cluster = Cluster::start(ClusterOptions::with_metadata(metadata));
    let s3 = client(&cluster, Checksums::Default);
    let b = bucket("mpu2");
    ok(s3.create_bucket().bucket(&b).send().await);

    // EntityTooSmall: a part under 5 MiB that is not the last one.
    let id = ok(s3
        .create_multipart_upload()
        .bucket(&b)
        .key("small")
        .send()
        .await)
    .upload_id()
    .unwrap_or_default()
    .to_string();
    let small = random_bytes(MIB, 5);
    let e1 = upload_part(&s3, &b, "small", &id, 1, &small).await;
    let e2 = upload_part(&s3, &b, "small", &id, 2, &small).await;
    assert_err(
        s3.complete_multipart_upload()
            .bucket(&b)
            .key("small")
            .upload_id(&id)
            .multipart_upload(completed(&[(1, e1.clone()), (2, e2)]))
            .send()
            .await,
        400,
        "EntityTooSmall",
    );
    // A single small part is fine: it is the last one.
    ok(s3
        .complete_multipart_upload()
        .bucket(&b)
        .key("small")
        .upload_id(&id)
        .multipart_upload(completed(&[(1, e1)]))
        .send()
        .await);
    let got = ok(s3.get_object().bucket(&b).key("small").send().await);
    assert_eq!(got.e_tag(), Some(multipart_etag(&[&small]).as_str()));
    assert_eq!(body_bytes(got).await, small);

    // Abort: the upload disappears, its parts cannot be completed, no object appears.
    let id = ok(s3
        .create_multipart_upload()
        .bucket(&b)
        .key("aborted")
        .send()
        .await)
    .upload_id()
    .unwrap_or_default()
    .to_string();
    let e1 = upload_part(&s3, &b, "aborted", &id, 1, &small).await;
    ok(s3
        .abort_multipart_upload()
        .bucket(&b)
        .key("aborted")
        .upload_id(&id)
        .send()
        .await);
    let uploads = ok(s3.list_multipart_uploads().bucket(&b).send().await);
    assert!(uploads.uploads().is_empty(), "{:?}", uploads.uploads());
    assert_err(
        s3.complete_multipart_upload()
            .bucket(&b)
            .key("aborted")
            .upload_id(&id)
            .multipart_upload(completed(&[(1, e1)]))
            .send()
            .await,
        404,
        "NoSuchUpload",
    );
    assert_err(
        s3.list_parts()
            .bucket(&b)
            .key("aborted")
            .upload_id(&id)
            .send()
            .await,
        404,
        "NoSuchUpload",
    );
    assert_err(
        s3.head_object().bucket(&b).key("aborted").send().await,
        404,
        "",
    );

    // UploadPartCopy with a range, then a regular last part.
    let src = random_bytes(7 * MIB + 11, 6);
    ok(s3
        .put_object()
        .bucket(&b)
        .key("source")
        .body(ByteStream::from(src.clone()))
        .send()
        .await);
    let id = ok(s3
        .create_multipart_upload()
        .bucket(&b)
        .key("assembled")
        .send()
        .await)
    .upload_id()
    .unwrap_or_default()
    .to_string();
    let (from, to) = (MIB + 5, 6 * MIB + 4); // inclusive, 5 MiB long, not chunk-aligned
    let pc = ok(s3
        .upload_part_copy()
        .bucket(&b)
        .key("assembled")
        .upload_id(&id)
        .part_number(1)
        .copy_source(format!("{b}/source"))
        .copy_source_range(format!("bytes={from}-{to}"))
        .send()
        .await);
    let e1 = pc
        .copy_part_result()
        .and_then(|r| r.e_tag())
        .unwrap_or_default()
        .to_string();
    assert_eq!(e1, format!("\"{}\"", md5_hex(&src[from..=to])));
    let tail = random_bytes(1000, 7);
    let e2 = upload_part(&s3, &b, "assembled", &id, 2, &tail).await;
    ok(s3
        .complete_multipart_upload()
        .bucket(&b)
        .key("assembled")
        .upload_id(&id)
        .multipart_upload(completed(&[(1, e1), (2, e2)]))
        .send()
        .await);
    let want: Vec<u8> = [&src[from..=to], tail.as_slice()].concat();
    let got = ok(s3.get_object().bucket(&b).key("assembled").send().await);
    assert_eq!(sha256_hex(&body_bytes(got).await), sha256_hex(&want));
}
