//! Access keys with per-bucket permissions: a key without permission gets AccessDenied; read,
//! write and owner grant what they say; ListBuckets shows only readable buckets; CreateBucket
//! needs `can_create_buckets`. Keys are made through the admin API and granted with the
//! `sdfbs key allow` CLI, as an operator would.

use std::time::Duration;

use aws_sdk_s3::primitives::ByteStream;
use sdfbs_compat_tests::{http, on_each_backend, run_ok, Cluster, ClusterOptions, Metadata};

use crate::common::{assert_err, body_bytes, client, client_with, ok, Checksums};

// Each test runs once per metadata backend: `NAME::embedded` and `NAME::cassandra`.
on_each_backend!(per_bucket_permissions);

/// Creates an access key through `POST {admin}/admin/keys`; returns (id, secret).
pub(crate) fn create_key(
    cluster: &Cluster,
    name: &str,
    can_create_buckets: bool,
) -> (String, String) {
    let body = serde_json::json!({ "name": name, "can_create_buckets": can_create_buckets });
    let auth = format!("Bearer {}", cluster.admin_token);
    let resp = http::request(
        "POST",
        &format!("{}/admin/keys", cluster.admin_url),
        &[
            ("Authorization", &auth),
            ("Content-Type", "application/json"),
        ],
        body.to_string().as_bytes(),
        Duration::from_secs(10),
    )
    .unwrap();
    assert_eq!(resp.status, 201, "{}", String::from_utf8_lossy(&resp.body));
    let v = resp.json().unwrap();
    (
        v["access_key_id"].as_str().unwrap().to_string(),
        v["secret_key"].as_str().unwrap().to_string(),
    )
}

async fn per_bucket_permissions(metadata: Metadata) {
    let cluster = Cluster::start(ClusterOptions::with_metadata(metadata));
    let root = client(&cluster, Checksums::Default);
    for b in ["team-a", "team-b"] {
        ok(root.create_bucket().bucket(b).send().await);
        ok(root
            .put_object()
            .bucket(b)
            .key("hello.txt")
            .body(ByteStream::from_static(b"hello"))
            .send()
            .await);
    }

    // The admin API refuses a wrong token.
    let resp = http::request(
        "POST",
        &format!("{}/admin/keys", cluster.admin_url),
        &[("Authorization", "Bearer wrong")],
        br#"{"name":"x"}"#,
        Duration::from_secs(10),
    )
    .unwrap();
    assert_eq!(resp.status, 401);

    let (reader_id, reader_secret) = create_key(&cluster, "reader", false);
    let (writer_id, writer_secret) = create_key(&cluster, "writer", true);
    let reader = client_with(&cluster, &reader_id, &reader_secret, Checksums::Default);
    let writer = client_with(&cluster, &writer_id, &writer_secret, Checksums::Default);

    // No permission yet: AccessDenied everywhere, and no bucket listed.
    assert_err(
        reader
            .get_object()
            .bucket("team-a")
            .key("hello.txt")
            .send()
            .await,
        403,
        "AccessDenied",
    );
    assert_err(
        reader.list_objects_v2().bucket("team-a").send().await,
        403,
        "AccessDenied",
    );
    let listed = ok(reader.list_buckets().send().await);
    assert!(listed.buckets().is_empty(), "{:?}", listed.buckets());
    assert_err(
        reader.create_bucket().bucket("reader-own").send().await,
        403,
        "AccessDenied",
    );

    // Grants through the CLI.
    run_ok(
        cluster
            .sdfbs_cli()
            .args(["key", "allow", &reader_id, "team-a", "read"]),
    );
    run_ok(
        cluster
            .sdfbs_cli()
            .args(["key", "allow", &writer_id, "team-b", "write"]),
    );

    // read: get and list that bucket only; no writes.
    let got = ok(reader
        .get_object()
        .bucket("team-a")
        .key("hello.txt")
        .send()
        .await);
    assert_eq!(body_bytes(got).await, b"hello");
    ok(reader.list_objects_v2().bucket("team-a").send().await);
    let listed = ok(reader.list_buckets().send().await);
    let names: Vec<&str> = listed.buckets().iter().filter_map(|b| b.name()).collect();
    assert_eq!(names, ["team-a"]);
    assert_err(
        reader
            .put_object()
            .bucket("team-a")
            .key("x")
            .body(ByteStream::from_static(b"x"))
            .send()
            .await,
        403,
        "AccessDenied",
    );
    assert_err(
        reader
            .delete_object()
            .bucket("team-a")
            .key("hello.txt")
            .send()
            .await,
        403,
        "AccessDenied",
    );
    assert_err(
        reader
            .get_object()
            .bucket("team-b")
            .key("hello.txt")
            .send()
            .await,
        403,
        "AccessDenied",
    );

    // write: put/get/delete objects in team-b, but not delete the bucket (owner only).
    ok(writer
        .put_object()
        .bucket("team-b")
        .key("new.txt")
        .body(ByteStream::from_static(b"new"))
        .send()
        .await);
    let got = ok(writer
        .get_object()
        .bucket("team-b")
        .key("new.txt")
        .send()
        .await);
    assert_eq!(body_bytes(got).await, b"new");
    ok(writer
        .delete_object()
        .bucket("team-b")
        .key("new.txt")
        .send()
        .await);
    ok(writer
        .delete_object()
        .bucket("team-b")
        .key("hello.txt")
        .send()
        .await);
    assert_err(
        writer.delete_bucket().bucket("team-b").send().await,
        403,
        "AccessDenied",
    );
    assert_err(
        writer
            .put_object()
            .bucket("team-a")
            .key("x")
            .body(ByteStream::from_static(b"x"))
            .send()
            .await,
        403,
        "AccessDenied",
    );

    // can_create_buckets: the creator owns its bucket; others (but root) cannot see it.
    ok(writer.create_bucket().bucket("writer-own").send().await);
    ok(writer
        .put_object()
        .bucket("writer-own")
        .key("k")
        .body(ByteStream::from_static(b"k"))
        .send()
        .await);
    assert_err(
        reader
            .get_object()
            .bucket("writer-own")
            .key("k")
            .send()
            .await,
        403,
        "AccessDenied",
    );
    let got = ok(root.get_object().bucket("writer-own").key("k").send().await);
    assert_eq!(body_bytes(got).await, b"k");
    ok(writer
        .delete_object()
        .bucket("writer-own")
        .key("k")
        .send()
        .await);
    ok(writer.delete_bucket().bucket("writer-own").send().await);

    // A deleted key stops working.
    let auth = format!("Bearer {}", cluster.admin_token);
    let resp = http::request(
        "DELETE",
        &format!("{}/admin/keys/{reader_id}", cluster.admin_url),
        &[("Authorization", &auth)],
        b"",
        Duration::from_secs(10),
    )
    .unwrap();
    assert_eq!(resp.status, 204);
    assert_err(
        reader
            .get_object()
            .bucket("team-a")
            .key("hello.txt")
            .send()
            .await,
        403,
        "InvalidAccessKeyId",
    );
}
