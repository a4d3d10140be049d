//! CreateBucket, HeadBucket, ListBuckets, GetBucketLocation, DeleteBucket.

use aws_sdk_s3::primitives::ByteStream;
use sdfbs_compat_tests::{Cluster, ClusterOptions};

use crate::common::{assert_err, client, err_of, ok, Checksums};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bucket_lifecycle() {
    let cluster = Cluster::start(ClusterOptions::default());
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
