//! One namespace behind both gateways: buckets, objects and multipart uploads made through one
//! are read, listed, completed and deleted through the other, and a gateway that no node
//! heartbeats to still places chunks on every node.

use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
use aws_sdk_s3::Client;
use sdfbs_compat_tests::{random_bytes, sha256_hex};

use crate::common::{assert_err, body_bytes, bucket, ok, quoted_md5};
use crate::{clients, two_gateways};

const MIB: usize = 1 << 20;

/// Keys of `b` listed through `s3` (one page: the tests keep buckets small).
async fn listed(s3: &Client, b: &str, prefix: &str) -> Vec<(String, i64)> {
    let out = ok(s3.list_objects_v2().bucket(b).prefix(prefix).send().await);
    out.contents()
        .iter()
        .map(|o| {
            (
                o.key().unwrap_or_default().to_string(),
                o.size().unwrap_or(-1),
            )
        })
        .collect()
}

/// (a) An object PUT through one gateway is read (bytes, ETag, headers), listed and deleted
/// through the other, in both directions; overwrites and the bucket's own life cross over too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn objects_cross_between_gateways() {
    let Some(cluster) = two_gateways() else {
        return;
    };
    let gw = clients(&cluster);
    let b = bucket("shared");
    ok(gw[0].create_bucket().bucket(&b).send().await);
    ok(gw[1].head_bucket().bucket(&b).send().await);
    let listed_buckets = ok(gw[1].list_buckets().send().await);
    let names: Vec<&str> = listed_buckets
        .buckets()
        .iter()
        .filter_map(|x| x.name())
        .collect();
    assert_eq!(names, [b.as_str()], "ListBuckets through gateway 1");

    for (writer, reader) in [(0, 1), (1, 0)] {
        let (w, r) = (&gw[writer], &gw[reader]);
        let key = format!("from-{writer}/photo ünï.bin");
        // Several chunks, so the reader fetches them through the replica records.
        let data = random_bytes(3 * MIB + 17, writer as u64);
        let put = ok(w
            .put_object()
            .bucket(&b)
            .key(&key)
            .content_type("image/x-test")
            .metadata("written-through", writer.to_string())
            .body(ByteStream::from(data.clone()))
            .send()
            .await);
        assert_eq!(put.e_tag(), Some(quoted_md5(&data).as_str()));

        let got = ok(r.get_object().bucket(&b).key(&key).send().await);
        assert_eq!(got.e_tag(), Some(quoted_md5(&data).as_str()));
        assert_eq!(got.content_type(), Some("image/x-test"));
        let meta = got.metadata().cloned().unwrap_or_default();
        assert_eq!(
            meta.get("written-through").map(String::as_str),
            Some(writer.to_string().as_str())
        );
        assert_eq!(
            sha256_hex(&body_bytes(got).await),
            sha256_hex(&data),
            "{key} written through gateway {writer}, read through {reader}"
        );
        let head = ok(r.head_object().bucket(&b).key(&key).send().await);
        assert_eq!(head.content_length(), Some(data.len() as i64));
        assert_eq!(
            listed(r, &b, &format!("from-{writer}/")).await,
            [(key.clone(), data.len() as i64)]
        );

        ok(r.delete_object().bucket(&b).key(&key).send().await);
        assert_err(
            w.get_object().bucket(&b).key(&key).send().await,
            404,
            "NoSuchKey",
        );
        assert_eq!(listed(w, &b, &format!("from-{writer}/")).await, []);
    }

    // An overwrite through the other gateway replaces the content seen through the first.
    ok(gw[0]
        .put_object()
        .bucket(&b)
        .key("doc")
        .body(ByteStream::from_static(b"first, through 0"))
        .send()
        .await);
    ok(gw[1]
        .put_object()
        .bucket(&b)
        .key("doc")
        .body(ByteStream::from_static(b"second, through 1"))
        .send()
        .await);
    let got = ok(gw[0].get_object().bucket(&b).key("doc").send().await);
    assert_eq!(body_bytes(got).await, b"second, through 1");

    // The bucket: not empty for either gateway, deleted through one, gone for both.
    assert_err(
        gw[1].delete_bucket().bucket(&b).send().await,
        409,
        "BucketNotEmpty",
    );
    ok(gw[1].delete_object().bucket(&b).key("doc").send().await);
    ok(gw[1].delete_bucket().bucket(&b).send().await);
    assert_err(gw[0].head_bucket().bucket(&b).send().await, 404, "");
    assert_err(
        gw[0]
            .put_object()
            .bucket(&b)
            .key("late")
            .body(ByteStream::from_static(b"x"))
            .send()
            .await,
        404,
        "NoSuchBucket",
    );
    // The name is free again, for either gateway.
    ok(gw[0].create_bucket().bucket(&b).send().await);
    assert_eq!(listed(&gw[1], &b, "").await, []);
}

/// A multipart upload created through one gateway takes parts through both, is listed and
/// completed through the other, and reads back whole through the first; an upload aborted
/// through the other gateway is gone for both.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multipart_upload_spread_over_both_gateways() {
    let Some(cluster) = two_gateways() else {
        return;
    };
    let gw = clients(&cluster);
    let b = bucket("mpu");
    ok(gw[0].create_bucket().bucket(&b).send().await);
    let key = "backup.tar";
    let parts = [random_bytes(5 * MIB, 1), random_bytes(MIB + 3, 2)];

    let id = ok(gw[0]
        .create_multipart_upload()
        .bucket(&b)
        .key(key)
        .send()
        .await)
    .upload_id()
    .unwrap_or_default()
    .to_string();
    let mut completed = Vec::new();
    for (i, data) in parts.iter().enumerate() {
        // Part 1 through gateway 1, part 2 through gateway 0.
        let through = &gw[(i + 1) % 2];
        let n = i as i32 + 1;
        let out = ok(through
            .upload_part()
            .bucket(&b)
            .key(key)
            .upload_id(&id)
            .part_number(n)
            .body(ByteStream::from(data.clone()))
            .send()
            .await);
        completed.push(
            CompletedPart::builder()
                .part_number(n)
                .e_tag(out.e_tag().unwrap_or_default())
                .build(),
        );
    }
    let uploads = ok(gw[1].list_multipart_uploads().bucket(&b).send().await);
    let ids: Vec<_> = uploads
        .uploads()
        .iter()
        .filter_map(|u| u.upload_id())
        .collect();
    assert_eq!(ids, [id.as_str()]);
    let listed_parts = ok(gw[1]
        .list_parts()
        .bucket(&b)
        .key(key)
        .upload_id(&id)
        .send()
        .await);
    let sizes: Vec<_> = listed_parts
        .parts()
        .iter()
        .map(|p| (p.part_number(), p.size()))
        .collect();
    assert_eq!(
        sizes,
        [
            (Some(1), Some(parts[0].len() as i64)),
            (Some(2), Some(parts[1].len() as i64))
        ]
    );
    let done = ok(gw[1]
        .complete_multipart_upload()
        .bucket(&b)
        .key(key)
        .upload_id(&id)
        .multipart_upload(
            CompletedMultipartUpload::builder()
                .set_parts(Some(completed))
                .build(),
        )
        .send()
        .await);
    assert!(
        done.e_tag().is_some_and(|e| e.ends_with("-2\"")),
        "multipart ETag: {:?}",
        done.e_tag()
    );
    let whole = parts.concat();
    let got = ok(gw[0].get_object().bucket(&b).key(key).send().await);
    assert_eq!(got.e_tag(), done.e_tag());
    assert_eq!(sha256_hex(&body_bytes(got).await), sha256_hex(&whole));
    let uploads = ok(gw[0].list_multipart_uploads().bucket(&b).send().await);
    assert!(uploads.uploads().is_empty(), "{uploads:?}");

    // Aborted through the other gateway: gone for both.
    let id = ok(gw[1]
        .create_multipart_upload()
        .bucket(&b)
        .key("abandoned")
        .send()
        .await)
    .upload_id()
    .unwrap_or_default()
    .to_string();
    ok(gw[1]
        .upload_part()
        .bucket(&b)
        .key("abandoned")
        .upload_id(&id)
        .part_number(1)
        .body(ByteStream::from_static(b"part"))
        .send()
        .await);
    ok(gw[0]
        .abort_multipart_upload()
        .bucket(&b)
        .key("abandoned")
        .upload_id(&id)
        .send()
        .await);
    assert_err(
        gw[1]
            .list_parts()
            .bucket(&b)
            .key("abandoned")
            .upload_id(&id)
            .send()
            .await,
        404,
        "NoSuchUpload",
    );
    let uploads = ok(gw[1].list_multipart_uploads().bucket(&b).send().await);
    assert!(uploads.uploads().is_empty(), "{uploads:?}");
}

/// A third gateway started after the nodes, which none of them heartbeats to, reports every
/// node Up from the `nodes` table the other gateways keep, and stores objects on them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_the_nodes_do_not_know_learns_them_from_the_store() {
    let Some(mut cluster) = two_gateways() else {
        return;
    };
    let late = cluster.add_gateway().unwrap();
    cluster
        .wait_nodes_up_on(late, cluster.node_count())
        .unwrap();
    let gw = clients(&cluster);
    let b = bucket("late");
    ok(gw[late].create_bucket().bucket(&b).send().await);
    let data = random_bytes(2 * MIB + 5, 9);
    ok(gw[late]
        .put_object()
        .bucket(&b)
        .key("k")
        .body(ByteStream::from(data.clone()))
        .send()
        .await);
    let got = ok(gw[0].get_object().bucket(&b).key("k").send().await);
    assert_eq!(sha256_hex(&body_bytes(got).await), sha256_hex(&data));
    // Two replicas of each of the three chunks, on the nodes the late gateway only read about.
    assert_eq!(cluster.total_chunk_replicas().unwrap(), 6);
}
