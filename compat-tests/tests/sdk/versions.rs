//! Version ids on a store whose buckets are never versioned: `versionId=null` names the current
//! object in GetObject, HeadObject, DeleteObject(s) and copy sources; any other version id is
//! 400 InvalidArgument, as S3 answers for an unversioned bucket. GetBucketVersioning answers an
//! empty configuration; PutBucketVersioning refuses Enabled and accepts Suspended as a no-op.

use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{
    BucketVersioningStatus, Delete, ObjectIdentifier, VersioningConfiguration,
};
use sdfbs_compat_tests::{
    on_each_backend, random_bytes, run_ok, sha256_hex, Cluster, ClusterOptions, Metadata,
};

use crate::access::create_key;
use crate::common::{assert_err, body_bytes, bucket, client, client_with, ok, Checksums};

// Each test runs once per metadata backend: `NAME::embedded` and `NAME::cassandra`.
on_each_backend!(
    version_ids_of_an_unversioned_bucket,
    bucket_versioning_is_never_enabled
);

/// A well-formed S3 version id (from AWS's documentation) that names no version here.
pub(crate) const OTHER_VERSION: &str =
    "3HL4kqtJlcpXroDTDmJ+rmSpXd3dIbrHY+MTRCxf3vjVBH40Nr8X8gdRQBpUMLUo";

async fn version_ids_of_an_unversioned_bucket(metadata: Metadata) {
    let cluster = Cluster::start(ClusterOptions::with_metadata(metadata));
    let s3 = client(&cluster, Checksums::Default);
    let b = bucket("versions");
    ok(s3.create_bucket().bucket(&b).send().await);
    let data = random_bytes(1_500_000, 31);
    ok(s3
        .put_object()
        .bucket(&b)
        .key("doc.bin")
        .body(ByteStream::from(data.clone()))
        .send()
        .await);

    // `null` is the current object.
    let got = ok(s3
        .get_object()
        .bucket(&b)
        .key("doc.bin")
        .version_id("null")
        .send()
        .await);
    assert_eq!(sha256_hex(&body_bytes(got).await), sha256_hex(&data));
    let head = ok(s3
        .head_object()
        .bucket(&b)
        .key("doc.bin")
        .version_id("null")
        .send()
        .await);
    assert_eq!(head.content_length(), Some(data.len() as i64));

    // Any other version id: 400 InvalidArgument, and nothing is changed.
    assert_err(
        s3.get_object()
            .bucket(&b)
            .key("doc.bin")
            .version_id(OTHER_VERSION)
            .send()
            .await,
        400,
        "InvalidArgument",
    );
    assert_err(
        s3.head_object()
            .bucket(&b)
            .key("doc.bin")
            .version_id(OTHER_VERSION)
            .send()
            .await,
        400,
        "",
    );
    assert_err(
        s3.delete_object()
            .bucket(&b)
            .key("doc.bin")
            .version_id(OTHER_VERSION)
            .send()
            .await,
        400,
        "InvalidArgument",
    );
    assert_err(
        s3.copy_object()
            .bucket(&b)
            .key("copy-bad")
            .copy_source(format!("{b}/doc.bin?versionId={OTHER_VERSION}"))
            .send()
            .await,
        400,
        "InvalidArgument",
    );
    ok(s3.head_object().bucket(&b).key("doc.bin").send().await);
    assert_err(
        s3.head_object().bucket(&b).key("copy-bad").send().await,
        404,
        "",
    );

    // A copy source with `?versionId=null` copies the current object.
    ok(s3
        .copy_object()
        .bucket(&b)
        .key("copy")
        .copy_source(format!("{b}/doc.bin?versionId=null"))
        .send()
        .await);
    let got = ok(s3.get_object().bucket(&b).key("copy").send().await);
    assert_eq!(sha256_hex(&body_bytes(got).await), sha256_hex(&data));

    // DeleteObjects: a bad version id is an error for that key only; `null` deletes.
    let id = |key: &str, version: &str| {
        ObjectIdentifier::builder()
            .key(key)
            .version_id(version)
            .build()
            .unwrap()
    };
    let out = ok(s3
        .delete_objects()
        .bucket(&b)
        .delete(
            Delete::builder()
                .objects(id("copy", "null"))
                .objects(id("doc.bin", OTHER_VERSION))
                .build()
                .unwrap(),
        )
        .send()
        .await);
    let deleted: Vec<_> = out.deleted().iter().filter_map(|d| d.key()).collect();
    assert_eq!(deleted, ["copy"]);
    let errors: Vec<_> = out
        .errors()
        .iter()
        .map(|e| (e.key().unwrap_or_default(), e.code().unwrap_or_default()))
        .collect();
    assert_eq!(errors, [("doc.bin", "InvalidArgument")]);
    assert_err(
        s3.head_object().bucket(&b).key("copy").send().await,
        404,
        "",
    );

    // DeleteObject of the `null` version deletes the object.
    ok(s3
        .delete_object()
        .bucket(&b)
        .key("doc.bin")
        .version_id("null")
        .send()
        .await);
    assert_err(
        s3.get_object()
            .bucket(&b)
            .key("doc.bin")
            .version_id("null")
            .send()
            .await,
        404,
        "NoSuchKey",
    );
}

async fn bucket_versioning_is_never_enabled(metadata: Metadata) {
    let cluster = Cluster::start(ClusterOptions::with_metadata(metadata));
    let s3 = client(&cluster, Checksums::Default);
    let b = bucket("versioning");
    ok(s3.create_bucket().bucket(&b).send().await);

    let v = ok(s3.get_bucket_versioning().bucket(&b).send().await);
    assert_eq!(v.status(), None, "never enabled: no Status");
    assert_eq!(v.mfa_delete(), None);
    assert_err(
        s3.get_bucket_versioning()
            .bucket("no-such-bucket-zz")
            .send()
            .await,
        404,
        "NoSuchBucket",
    );

    let config = |status| VersioningConfiguration::builder().status(status).build();
    assert_err(
        s3.put_bucket_versioning()
            .bucket(&b)
            .versioning_configuration(config(BucketVersioningStatus::Enabled))
            .send()
            .await,
        501,
        "NotImplemented",
    );
    // Suspended is accepted and changes nothing.
    ok(s3
        .put_bucket_versioning()
        .bucket(&b)
        .versioning_configuration(config(BucketVersioningStatus::Suspended))
        .send()
        .await);
    let v = ok(s3.get_bucket_versioning().bucket(&b).send().await);
    assert_eq!(v.status(), None);

    // Permissions: reading the setting needs Read on the bucket, changing it Owner.
    let (id, secret) = create_key(&cluster, "versioning-reader", false);
    let reader = client_with(&cluster, &id, &secret, Checksums::Default);
    assert_err(
        reader.get_bucket_versioning().bucket(&b).send().await,
        403,
        "AccessDenied",
    );
    run_ok(cluster.sdfbs_cli().args(["key", "allow", &id, &b, "read"]));
    let v = ok(reader.get_bucket_versioning().bucket(&b).send().await);
    assert_eq!(v.status(), None);
    assert_err(
        reader
            .put_bucket_versioning()
            .bucket(&b)
            .versioning_configuration(config(BucketVersioningStatus::Suspended))
            .send()
            .await,
        403,
        "AccessDenied",
    );
}
