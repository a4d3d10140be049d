//! CreateBucket, HeadBucket, ListBuckets, GetBucketLocation, DeleteBucket.

use aws_sdk_s3::primitives::ByteStream;
use sdfbs_compat_tests::{on_each_backend, Cluster, ClusterOptions, Metadata};

use crate::common::{assert_err, client, err_of, ok, Checksums};

// Each test runs once per metadata backend: `NAME::embedded` and `NAME::cassandra`.
on_each_backend!(bucket_lifecycle, list_buckets_pages);

async fn bucket_lifecycle(metadata: Metadata) {
    let cluster = Cluster::start(ClusterOptions::with_metadata(metadata));
    let s3 = client(&cluster, Checksums::Default);

    ok(s3.create_bucket().bucket("photos-2024").send().await);
    ok(s3.head_bucket().bucket("photos-2024").send().await);
    // Creating it again: the owner is told it already has it.
    let (status, code) = err_of(s3.create_bucket().bucket("photos-2024").send().await);
    assert_eq!(status, 409);
    assert!(
        code == "BucketAlreadyOwnedByYou" || code == "BucketAlreadyExists",
        "{code}"
    );

    ok(s3.create_bucket().bucket("backups.example").send().await);
    let list = ok(s3.list_buckets().send().await);
    let names: Vec<&str> = list.buckets().iter().filter_map(|b| b.name()).collect();
    assert_eq!(names, ["backups.example", "photos-2024"], "sorted by name");
    assert!(list.buckets().iter().all(|b| b.creation_date().is_some()));

    let loc = ok(s3.get_bucket_location().bucket("photos-2024").send().await);
    let loc = loc.location_constraint().map(|l| l.as_str()).unwrap_or("");
    assert!(loc.is_empty() || loc == "us-east-1", "location {loc:?}");

    // Missing buckets.
    assert_err(s3.head_bucket().bucket("nope").send().await, 404, "");
    assert_err(
        s3.delete_bucket().bucket("nope").send().await,
        404,
        "NoSuchBucket",
    );
    assert_err(
        s3.get_bucket_location().bucket("nope").send().await,
        404,
        "NoSuchBucket",
    );

    // Invalid names.
    for bad in [
        "ab",
        "Upper-Case",
        "under_score",
        "-leading",
        "192.168.1.1",
        "a..b",
    ] {
        assert_err(
            s3.create_bucket().bucket(bad).send().await,
            400,
            "InvalidBucketName",
        );
    }

    // A bucket with an object cannot be deleted; an empty one can.
    ok(s3
        .put_object()
        .bucket("photos-2024")
        .key("a.jpg")
        .body(ByteStream::from_static(b"jpeg"))
        .send()
        .await);
    assert_err(
        s3.delete_bucket().bucket("photos-2024").send().await,
        409,
        "BucketNotEmpty",
    );
    ok(s3
        .delete_object()
        .bucket("photos-2024")
        .key("a.jpg")
        .send()
        .await);
    ok(s3.delete_bucket().bucket("photos-2024").send().await);
    assert_err(s3.head_bucket().bucket("photos-2024").send().await, 404, "");
    let list = ok(s3.list_buckets().send().await);
    let names: Vec<&str> = list.buckets().iter().filter_map(|b| b.name()).collect();
    assert_eq!(names, ["backups.example"]);
    assert_err(
        s3.list_objects_v2().bucket("photos-2024").send().await,
        404,
        "NoSuchBucket",
    );
}

/// The names of a ListBuckets page.
fn bucket_names(out: &aws_sdk_s3::operation::list_buckets::ListBucketsOutput) -> Vec<String> {
    out.buckets()
        .iter()
        .filter_map(|b| b.name().map(str::to_string))
        .collect()
}

async fn list_buckets_pages(metadata: Metadata) {
    let cluster = Cluster::start(ClusterOptions::with_metadata(metadata));
    let s3 = client(&cluster, Checksums::Default);
    // Created out of order; listed by name.
    let logs = ["logs-c", "logs-a", "logs-e", "logs-b", "logs-d"];
    for name in logs.iter().chain(&["media-1", "media-2"]) {
        ok(s3.create_bucket().bucket(*name).send().await);
    }

    // Pages of two by hand: a token while more remain, none on the last page.
    let mut seen = Vec::new();
    let mut token: Option<String> = None;
    let mut pages = 0;
    loop {
        let out = ok(s3
            .list_buckets()
            .max_buckets(2)
            .set_continuation_token(token.clone())
            .send()
            .await);
        pages += 1;
        let names = bucket_names(&out);
        assert!(names.len() <= 2, "{names:?}");
        seen.extend(names);
        token = out.continuation_token().map(str::to_string);
        if token.is_none() {
            break;
        }
        assert!(pages < 10, "the listing does not end");
    }
    assert_eq!(pages, 4);
    assert_eq!(
        seen,
        ["logs-a", "logs-b", "logs-c", "logs-d", "logs-e", "media-1", "media-2"]
    );

    // Prefix: filtered and echoed; pages of the filtered names.
    let out = ok(s3
        .list_buckets()
        .prefix("logs-")
        .max_buckets(3)
        .send()
        .await);
    assert_eq!(bucket_names(&out), ["logs-a", "logs-b", "logs-c"]);
    assert_eq!(out.prefix(), Some("logs-"));
    let token = out.continuation_token().map(str::to_string);
    assert!(token.is_some());
    let out = ok(s3
        .list_buckets()
        .prefix("logs-")
        .max_buckets(3)
        .set_continuation_token(token)
        .send()
        .await);
    assert_eq!(bucket_names(&out), ["logs-d", "logs-e"]);
    assert_eq!(out.continuation_token(), None);

    // The SDK's paginator walks the same pages.
    let pages: Vec<_> = s3
        .list_buckets()
        .prefix("media")
        .into_paginator()
        .page_size(1)
        .send()
        .collect::<Vec<_>>()
        .await;
    let names: Vec<Vec<String>> = pages.into_iter().map(|p| bucket_names(&ok(p))).collect();
    assert_eq!(
        names,
        [vec!["media-1".to_string()], vec!["media-2".to_string()]]
    );

    // Without max-buckets everything comes at once; out-of-range max-buckets and a forged token
    // are InvalidArgument.
    let out = ok(s3.list_buckets().send().await);
    assert_eq!(bucket_names(&out).len(), 7);
    assert_eq!(out.continuation_token(), None);
    for bad in [0, 10_001] {
        assert_err(
            s3.list_buckets().max_buckets(bad).send().await,
            400,
            "InvalidArgument",
        );
    }
    assert_err(
        s3.list_buckets()
            .continuation_token("not base64!")
            .send()
            .await,
        400,
        "InvalidArgument",
    );
}
