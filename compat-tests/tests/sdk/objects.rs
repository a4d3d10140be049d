//! PutObject, GetObject (ranges, conditions), HeadObject, DeleteObject, DeleteObjects, stored
//! headers and user metadata, conditional PutObject.

use aws_sdk_s3::primitives::{ByteStream, DateTime};
use aws_sdk_s3::types::{Delete, ObjectIdentifier};
use sdfbs_compat_tests::{
    on_each_backend, random_bytes, sha256_hex, Cluster, ClusterOptions, Metadata,
};

use crate::common::{assert_err, body_bytes, bucket, client, err_of, ok, quoted_md5, Checksums};

// Each test runs once per metadata backend: `NAME::embedded` and `NAME::cassandra`.
on_each_backend!(
    objects_roundtrip_default_checksums,
    objects_roundtrip_when_required,
    ranges_and_conditional_get,
    conditional_put_is_atomic
);

const MIB: usize = 1 << 20;

async fn roundtrip(metadata: Metadata, checksums: Checksums) {
    let cluster = Cluster::start(ClusterOptions::with_metadata(metadata));
    let s3 = client(&cluster, checksums);
    let b = bucket("objects");
    ok(s3.create_bucket().bucket(&b).send().await);

    // Sizes around the 1 MiB chunk boundary, plus an empty object and several chunks.
    for (i, size) in [0, 1, MIB - 1, MIB, MIB + 1, 5 * MIB + 123]
        .into_iter()
        .enumerate()
    {
        let data = random_bytes(size, i as u64);
        let key = format!("sizes/{size}.bin");
        let put = ok(s3
            .put_object()
            .bucket(&b)
            .key(&key)
            .body(ByteStream::from(data.clone()))
            .send()
            .await);
        assert_eq!(
            put.e_tag(),
            Some(quoted_md5(&data).as_str()),
            "ETag of {key}"
        );
        let got = ok(s3.get_object().bucket(&b).key(&key).send().await);
        assert_eq!(got.content_length(), Some(size as i64));
        assert_eq!(got.e_tag(), Some(quoted_md5(&data).as_str()));
        assert_eq!(
            sha256_hex(&body_bytes(got).await),
            sha256_hex(&data),
            "{key}"
        );
        let head = ok(s3.head_object().bucket(&b).key(&key).send().await);
        assert_eq!(head.content_length(), Some(size as i64));
        assert!(head.last_modified().is_some());
    }

    // Stored and returned headers and user metadata.
    let expires = DateTime::from_secs(2_000_000_000);
    ok(s3
        .put_object()
        .bucket(&b)
        .key("docs/report.json.gz")
        .body(ByteStream::from_static(b"{\"a\":1}"))
        .content_type("application/json")
        .content_encoding("gzip")
        .content_disposition("attachment; filename=\"report.json.gz\"")
        .cache_control("max-age=3600")
        .expires(expires)
        .metadata("project", "sdfbs")
        .metadata("Mixed-Case", "Value with spaces")
        .send()
        .await);
    let head = ok(s3
        .head_object()
        .bucket(&b)
        .key("docs/report.json.gz")
        .send()
        .await);
    assert_eq!(head.content_type(), Some("application/json"));
    assert_eq!(head.content_encoding(), Some("gzip"));
    assert_eq!(
        head.content_disposition(),
        Some("attachment; filename=\"report.json.gz\"")
    );
    assert_eq!(head.cache_control(), Some("max-age=3600"));
    assert_eq!(
        head.expires_string(),
        Some("Wed, 18 May 2033 03:33:20 GMT"),
        "Expires"
    );
    let meta = head.metadata().cloned().unwrap_or_default();
    assert_eq!(meta.get("project").map(String::as_str), Some("sdfbs"));
    assert_eq!(
        meta.get("mixed-case").map(String::as_str),
        Some("Value with spaces")
    );
    let got = ok(s3
        .get_object()
        .bucket(&b)
        .key("docs/report.json.gz")
        .send()
        .await);
    assert_eq!(got.content_type(), Some("application/json"));
    assert_eq!(got.cache_control(), Some("max-age=3600"));

    // Keys are data: odd characters round-trip.
    for key in [
        "dir/sub dir/ünïcödé+plus&amp=eq?q#hash.txt",
        "../../etc/passwd",
        "%2F%00weird",
        "trailing/",
    ] {
        ok(s3
            .put_object()
            .bucket(&b)
            .key(key)
            .body(ByteStream::from(key.as_bytes().to_vec()))
            .send()
            .await);
        let got = ok(s3.get_object().bucket(&b).key(key).send().await);
        assert_eq!(body_bytes(got).await, key.as_bytes(), "{key}");
    }

    // Overwrite replaces content.
    ok(s3
        .put_object()
        .bucket(&b)
        .key("sizes/1.bin")
        .body(ByteStream::from_static(b"second version"))
        .send()
        .await);
    let got = ok(s3.get_object().bucket(&b).key("sizes/1.bin").send().await);
    assert_eq!(body_bytes(got).await, b"second version");

    // Missing things.
    assert_err(
        s3.get_object().bucket(&b).key("missing").send().await,
        404,
        "NoSuchKey",
    );
    assert_err(
        s3.head_object().bucket(&b).key("missing").send().await,
        404,
        "",
    );
    assert_err(
        s3.get_object()
            .bucket("no-such-bucket")
            .key("k")
            .send()
            .await,
        404,
        "NoSuchBucket",
    );
    assert_err(
        s3.put_object()
            .bucket("no-such-bucket")
            .key("k")
            .body(ByteStream::from_static(b"x"))
            .send()
            .await,
        404,
        "NoSuchBucket",
    );

    // DeleteObject, idempotent.
    ok(s3
        .delete_object()
        .bucket(&b)
        .key("sizes/0.bin")
        .send()
        .await);
    ok(s3
        .delete_object()
        .bucket(&b)
        .key("sizes/0.bin")
        .send()
        .await);
    assert_err(
        s3.get_object().bucket(&b).key("sizes/0.bin").send().await,
        404,
        "NoSuchKey",
    );

    // DeleteObjects: existing and missing keys are all reported deleted.
    let ids = ["sizes/1.bin", "sizes/1048575.bin", "never-existed"]
        .iter()
        .map(|k| ObjectIdentifier::builder().key(*k).build().unwrap())
        .collect::<Vec<_>>();
    let del = ok(s3
        .delete_objects()
        .bucket(&b)
        .delete(Delete::builder().set_objects(Some(ids)).build().unwrap())
        .send()
        .await);
    let mut deleted: Vec<&str> = del.deleted().iter().filter_map(|d| d.key()).collect();
    deleted.sort();
    assert_eq!(
        deleted,
        ["never-existed", "sizes/1.bin", "sizes/1048575.bin"]
    );
    assert!(del.errors().is_empty(), "{:?}", del.errors());
    let list = ok(s3
        .list_objects_v2()
        .bucket(&b)
        .prefix("sizes/")
        .send()
        .await);
    let keys: Vec<&str> = list.contents().iter().filter_map(|o| o.key()).collect();
    assert_eq!(
        keys,
        [
            "sizes/1048576.bin",
            "sizes/1048577.bin",
            "sizes/5243003.bin"
        ]
    );
}

async fn objects_roundtrip_default_checksums(metadata: Metadata) {
    roundtrip(metadata, Checksums::Default).await;
}

async fn objects_roundtrip_when_required(metadata: Metadata) {
    roundtrip(metadata, Checksums::WhenRequired).await;
}

async fn ranges_and_conditional_get(metadata: Metadata) {
    let cluster = Cluster::start(ClusterOptions::with_metadata(metadata));
    let s3 = client(&cluster, Checksums::Default);
    let b = bucket("ranges");
    ok(s3.create_bucket().bucket(&b).send().await);
    let size = 3 * MIB + 1000;
    let data = random_bytes(size, 42);
    let put = ok(s3
        .put_object()
        .bucket(&b)
        .key("obj")
        .body(ByteStream::from(data.clone()))
        .send()
        .await);
    let etag = put.e_tag().unwrap_or_default().to_string();

    for (range, start, end) in [
        ("bytes=0-0", 0, 1),
        ("bytes=100-2000000", 100, 2_000_001),
        ("bytes=1048575-1048576", MIB - 1, MIB + 1),
        ("bytes=-500", size - 500, size),
        ("bytes=3145000-", 3_145_000, size),
        ("bytes=3000000-99999999", 3_000_000, size),
    ] {
        let got = ok(s3
            .get_object()
            .bucket(&b)
            .key("obj")
            .range(range)
            .send()
            .await);
        assert_eq!(
            got.content_range(),
            Some(format!("bytes {start}-{}/{size}", end - 1).as_str()),
            "{range}"
        );
        assert_eq!(got.content_length(), Some((end - start) as i64), "{range}");
        assert_eq!(body_bytes(got).await, &data[start..end], "{range}");
    }
    assert_err(
        s3.get_object()
            .bucket(&b)
            .key("obj")
            .range(format!("bytes={size}-"))
            .send()
            .await,
        416,
        "InvalidRange",
    );

    // If-Match / If-None-Match / If-Modified-Since / If-Unmodified-Since.
    let past = DateTime::from_secs(1_000_000_000);
    let future = DateTime::from_secs(4_000_000_000);
    let got = ok(s3
        .get_object()
        .bucket(&b)
        .key("obj")
        .if_match(&etag)
        .send()
        .await);
    assert_eq!(body_bytes(got).await.len(), size);
    assert_err(
        s3.get_object()
            .bucket(&b)
            .key("obj")
            .if_match("\"0123456789abcdef0123456789abcdef\"")
            .send()
            .await,
        412,
        "PreconditionFailed",
    );
    assert_err(
        s3.get_object()
            .bucket(&b)
            .key("obj")
            .if_none_match(&etag)
            .send()
            .await,
        304,
        "",
    );
    let got = ok(s3
        .get_object()
        .bucket(&b)
        .key("obj")
        .if_none_match("\"0123456789abcdef0123456789abcdef\"")
        .send()
        .await);
    assert_eq!(body_bytes(got).await.len(), size);
    assert_err(
        s3.get_object()
            .bucket(&b)
            .key("obj")
            .if_modified_since(future)
            .send()
            .await,
        304,
        "",
    );
    ok(s3
        .get_object()
        .bucket(&b)
        .key("obj")
        .if_modified_since(past)
        .send()
        .await);
    assert_err(
        s3.get_object()
            .bucket(&b)
            .key("obj")
            .if_unmodified_since(past)
            .send()
            .await,
        412,
        "PreconditionFailed",
    );
    ok(s3
        .get_object()
        .bucket(&b)
        .key("obj")
        .if_unmodified_since(future)
        .send()
        .await);
    assert_err(
        s3.head_object()
            .bucket(&b)
            .key("obj")
            .if_match("\"nope\"")
            .send()
            .await,
        412,
        "",
    );
}

async fn conditional_put_is_atomic(metadata: Metadata) {
    let cluster = Cluster::start(ClusterOptions::with_metadata(metadata));
    let s3 = client(&cluster, Checksums::Default);
    let b = bucket("condput");
    ok(s3.create_bucket().bucket(&b).send().await);

    // If-None-Match: * creates only when absent.
    let first = ok(s3
        .put_object()
        .bucket(&b)
        .key("lock")
        .if_none_match("*")
        .body(ByteStream::from_static(b"one"))
        .send()
        .await);
    assert_err(
        s3.put_object()
            .bucket(&b)
            .key("lock")
            .if_none_match("*")
            .body(ByteStream::from_static(b"two"))
            .send()
            .await,
        412,
        "PreconditionFailed",
    );
    // If-Match replaces only the version the client saw.
    let etag = first.e_tag().unwrap_or_default().to_string();
    assert_err(
        s3.put_object()
            .bucket(&b)
            .key("lock")
            .if_match("\"0123456789abcdef0123456789abcdef\"")
            .body(ByteStream::from_static(b"three"))
            .send()
            .await,
        412,
        "PreconditionFailed",
    );
    ok(s3
        .put_object()
        .bucket(&b)
        .key("lock")
        .if_match(&etag)
        .body(ByteStream::from_static(b"four"))
        .send()
        .await);
    let got = ok(s3.get_object().bucket(&b).key("lock").send().await);
    assert_eq!(body_bytes(got).await, b"four");
    // If-Match on a key that does not exist: 404 NoSuchKey, nothing created.
    let (status, _) = err_of(
        s3.put_object()
            .bucket(&b)
            .key("absent")
            .if_match(&etag)
            .body(ByteStream::from_static(b"x"))
            .send()
            .await,
    );
    assert_eq!(status, 404, "If-Match on a missing key");
    assert_err(
        s3.head_object().bucket(&b).key("absent").send().await,
        404,
        "",
    );

    // 16 racing creators: exactly one wins, and the object holds the winner's bytes.
    let mut tasks = Vec::new();
    for i in 0..16u8 {
        let s3 = s3.clone();
        let b = b.clone();
        tasks.push(tokio::spawn(async move {
            let body = vec![i; 1000 + i as usize];
            let r = s3
                .put_object()
                .bucket(&b)
                .key("race")
                .if_none_match("*")
                .body(ByteStream::from(body))
                .send()
                .await;
            (
                i,
                r.map(|_| ())
                    .map_err(|e| e.raw_response().map(|r| r.status().as_u16()).unwrap_or(0)),
            )
        }));
    }
    let mut winners = Vec::new();
    for t in tasks {
        let (i, r) = t.await.unwrap();
        match r {
            Ok(()) => winners.push(i),
            // 409 ConditionalRequestConflict is what AWS answers to a concurrent loser.
            Err(status) => assert!(status == 412 || status == 409, "loser {i} got {status}"),
        }
    }
    assert_eq!(winners.len(), 1, "winners: {winners:?}");
    let got = ok(s3.get_object().bucket(&b).key("race").send().await);
    let w = winners[0];
    assert_eq!(body_bytes(got).await, vec![w; 1000 + w as usize]);
}
