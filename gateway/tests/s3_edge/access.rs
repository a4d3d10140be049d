//! Authentication, per-bucket permissions, and bucket errors.

use crate::client::{xml_values, Request};
use crate::cluster::*;
use sdfbs_metadata::Permission;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authentication_and_permissions() {
    let c = Cluster::start().await;
    c.create_bucket("shared").await;
    c.create_bucket("private").await;
    assert_eq!(c.put("shared", "doc", b"shared bytes").await.status, 200);

    // Anonymous, unknown key, wrong secret.
    let r = c
        .client
        .anonymous()
        .send(Request::new("GET", "/shared/doc"))
        .await;
    expect_error(&r, 403, "AccessDenied");
    let r = c
        .client
        .with_key("NOSUCHKEY", "x")
        .send(Request::new("GET", "/shared/doc"))
        .await;
    expect_error(&r, 403, "InvalidAccessKeyId");
    let r = c
        .client
        .with_key(ROOT_KEY, "wrong")
        .send(Request::new("GET", "/shared/doc"))
        .await;
    expect_error(&r, 403, "SignatureDoesNotMatch");

    // A key without permissions: denied everywhere, may not create buckets, lists nothing.
    let limited = c.client.with_key(LIMITED_KEY, LIMITED_SECRET);
    expect_error(
        &limited.send(Request::new("GET", "/shared/doc")).await,
        403,
        "AccessDenied",
    );
    expect_error(
        &limited.send(Request::new("PUT", "/mine")).await,
        403,
        "AccessDenied",
    );
    let r = limited.send(Request::new("GET", "/")).await;
    assert_eq!(r.status, 200);
    assert!(xml_values(&r.text(), "Name").is_empty(), "{}", r.text());

    // Read on one bucket: GET and list work there, writes do not, the other bucket stays closed.
    c.meta
        .set_permission(LIMITED_KEY, "shared", Some(Permission::Read))
        .await
        .expect("grant");
    let r = limited.send(Request::new("GET", "/shared/doc")).await;
    assert_eq!((r.status, r.body.as_slice()), (200, &b"shared bytes"[..]));
    expect_error(
        &limited
            .send(Request::new("PUT", "/shared/new").body("x"))
            .await,
        403,
        "AccessDenied",
    );
    expect_error(
        &limited.send(Request::new("GET", "/private")).await,
        403,
        "AccessDenied",
    );
    let r = limited.send(Request::new("GET", "/")).await;
    assert_eq!(xml_values(&r.text(), "Name"), vec!["shared".to_string()]);
    // CopyObject needs Read on the source as well as Write on the destination.
    c.meta
        .set_permission(LIMITED_KEY, "private", Some(Permission::Write))
        .await
        .expect("grant");
    let r = limited
        .send(Request::new("PUT", "/private/copy").header("x-amz-copy-source", "/shared/doc"))
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(c.exists("private", "copy").await);
    c.create_bucket("closed").await;
    c.put("closed", "secret", b"s").await;
    let r = limited
        .send(Request::new("PUT", "/private/copy2").header("x-amz-copy-source", "/closed/secret"))
        .await;
    expect_error(&r, 403, "AccessDenied");

    // Revoking applies to the very next request: the key record is never reused across
    // requests, not even right after a successful one.
    let r = limited.send(Request::new("GET", "/shared/doc")).await;
    assert_eq!(r.status, 200);
    c.meta
        .set_permission(LIMITED_KEY, "shared", None)
        .await
        .expect("revoke");
    expect_error(
        &limited.send(Request::new("GET", "/shared/doc")).await,
        403,
        "AccessDenied",
    );
    c.meta
        .delete_access_key(LIMITED_KEY)
        .await
        .expect("delete key");
    expect_error(
        &limited.send(Request::new("GET", "/private/copy")).await,
        403,
        "InvalidAccessKeyId",
    );
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn creators_own_their_buckets_and_lose_them_on_delete() {
    let c = Cluster::start().await;
    let creator = c.client.with_key(CREATOR_KEY, CREATOR_SECRET);
    let r = creator.send(Request::new("PUT", "/made-by-creator")).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let r = creator
        .send(Request::new("PUT", "/made-by-creator/k").body("v"))
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let r = creator.send(Request::new("GET", "/")).await;
    assert_eq!(
        xml_values(&r.text(), "Name"),
        vec!["made-by-creator".to_string()]
    );
    // Another key sees nothing of it.
    let limited = c.client.with_key(LIMITED_KEY, LIMITED_SECRET);
    let r = limited
        .send(Request::new("GET", "/made-by-creator/k"))
        .await;
    expect_error(&r, 403, "AccessDenied");
    // A bucket of the same name created later by someone else is not the creator's.
    let r = creator
        .send(Request::new("DELETE", "/made-by-creator/k"))
        .await;
    assert_eq!(r.status, 204);
    let r = creator
        .send(Request::new("DELETE", "/made-by-creator"))
        .await;
    assert_eq!(r.status, 204);
    c.create_bucket("made-by-creator").await;
    let r = creator.send(Request::new("GET", "/made-by-creator")).await;
    expect_error(&r, 403, "AccessDenied");
    let r = creator.send(Request::new("PUT", "/made-by-creator")).await;
    expect_error(&r, 409, "BucketAlreadyExists");
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bucket_errors() {
    let c = Cluster::start().await;
    expect_error(
        &c.client.send(Request::new("PUT", "/Bad_Name")).await,
        400,
        "InvalidBucketName",
    );
    expect_error(
        &c.client.send(Request::new("PUT", "/ab")).await,
        400,
        "InvalidBucketName",
    );
    c.create_bucket("bk1").await;
    expect_error(
        &c.client.send(Request::new("PUT", "/bk1")).await,
        409,
        "BucketAlreadyOwnedByYou",
    );
    expect_error(
        &c.client.send(Request::new("GET", "/nope")).await,
        404,
        "NoSuchBucket",
    );
    expect_error(&c.get("nope", "k").await, 404, "NoSuchBucket");
    assert_eq!(c.put("bk1", "k", b"v").await.status, 200);
    expect_error(
        &c.client.send(Request::new("DELETE", "/bk1")).await,
        409,
        "BucketNotEmpty",
    );
    assert_eq!(
        c.client.send(Request::new("DELETE", "/bk1/k")).await.status,
        204
    );
    assert_eq!(
        c.client.send(Request::new("DELETE", "/bk1")).await.status,
        204
    );
    let r = c.client.send(Request::new("HEAD", "/bk1")).await;
    assert_eq!(r.status, 404);
    c.stop().await;
}
