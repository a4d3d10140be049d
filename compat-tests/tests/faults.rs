//! Faults on the data path, seen through aws-sdk-s3: a chunkd killed with SIGKILL in the middle
//! of a 256 MiB upload, chunk files corrupted or removed on one node, too few nodes for a
//! write, and a graceful gateway stop.
//!
//! What users must see: an upload either succeeds or fails cleanly (and then a retry
//! succeeds); every committed object reads back byte-identical; never corrupt bytes.

mod common;

use std::io::{Seek, SeekFrom, Write};
use std::time::{Duration, Instant};

use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::Client;
use sdfbs_compat_tests::{random_bytes, sha256_hex, write_random_file, Cluster, ClusterOptions};
use sha2::{Digest, Sha256};

use common::{assert_err, body_bytes, bucket, client, err_of, ok, Checksums};

const MIB: usize = 1 << 20;

/// Streams an object and returns (length, SHA-256 hex) without holding it in memory.
async fn get_sha256(s3: &Client, b: &str, key: &str) -> (u64, String) {
    let out = ok(s3.get_object().bucket(b).key(key).send().await);
    let mut body = out.body;
    let mut hasher = Sha256::new();
    let mut len = 0u64;
    loop {
        match body.try_next().await {
            Ok(Some(bytes)) => {
                len += bytes.len() as u64;
                hasher.update(&bytes);
            }
            Ok(None) => break,
            Err(e) => panic!("GET {b}/{key} failed mid-body: {e}"),
        }
    }
    (len, hex::encode(hasher.finalize()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chunkd_killed_during_a_256_mib_upload() {
    let mut cluster = Cluster::start(ClusterOptions {
        node_down_after: Some("3s".into()),
        ..ClusterOptions::default()
    });
    let s3 = client(&cluster, Checksums::Default);
    let b = bucket("faults");
    ok(s3.create_bucket().bucket(&b).send().await);
    let size = 256 * MIB as u64;
    let path = cluster.dir().join("big.bin");
    let digest = write_random_file(&path, size, 256).unwrap();

    let upload = {
        let (s3, b, path) = (s3.clone(), b.clone(), path.clone());
        tokio::spawn(async move {
            let body = ByteStream::from_path(&path).await.unwrap();
            s3.put_object()
                .bucket(&b)
                .key("big")
                .body(body)
                .send()
                .await
                .map(|_| ())
                .map_err(|e| {
                    format!(
                        "{}",
                        aws_smithy_types::error::display::DisplayErrorContext(&e)
                    )
                })
        })
    };

    // Kill node 2 once the upload has stored some chunks (40 replicas = ~20 MiB of 256).
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let stored = cluster.total_chunk_replicas().unwrap_or(0);
        if stored >= 40 {
            break;
        }
        assert!(
            !upload.is_finished(),
            "the upload ended before any chunk was seen"
        );
        assert!(Instant::now() < deadline, "the upload made no progress");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    cluster.kill_node(2);
    let first = upload.await.unwrap();
    match &first {
        Ok(()) => println!("upload survived the SIGKILL of a node"),
        Err(e) => {
            println!("upload failed after the SIGKILL of a node ({e}); retrying");
            // Failed cleanly: nothing visible.
            assert_err(s3.head_object().bucket(&b).key("big").send().await, 404, "");
            let body = ByteStream::from_path(&path).await.unwrap();
            ok(s3
                .put_object()
                .bucket(&b)
                .key("big")
                .body(body)
                .send()
                .await);
        }
    }
    assert_eq!(get_sha256(&s3, &b, "big").await, (size, digest.clone()));

    // With the node still dead, writes and reads go on with the two others.
    let small = random_bytes(3 * MIB + 1, 5);
    ok(s3
        .put_object()
        .bucket(&b)
        .key("after-kill")
        .body(ByteStream::from(small.clone()))
        .send()
        .await);
    let got = ok(s3.get_object().bucket(&b).key("after-kill").send().await);
    assert_eq!(sha256_hex(&body_bytes(got).await), sha256_hex(&small));

    // The node comes back (same data directory, new port) and everything still reads back.
    cluster.restart_node(2).unwrap();
    cluster.wait_nodes_up(3).unwrap();
    assert_eq!(get_sha256(&s3, &b, "big").await, (size, digest));
    let got = ok(s3.get_object().bucket(&b).key("after-kill").send().await);
    assert_eq!(sha256_hex(&body_bytes(got).await), sha256_hex(&small));
}

/// Overwrites 16 bytes in the middle of a file, keeping its size (so only the hash can tell).
fn corrupt(path: &std::path::Path) {
    let mut f = std::fs::OpenOptions::new().write(true).open(path).unwrap();
    let len = f.metadata().unwrap().len();
    f.seek(SeekFrom::Start(len / 2)).unwrap();
    f.write_all(b"CORRUPTED-BYTES!").unwrap();
    f.sync_all().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupted_or_missing_chunk_on_one_node() {
    let cluster = Cluster::start(ClusterOptions::default());
    let s3 = client(&cluster, Checksums::Default);
    let b = bucket("corrupt");
    ok(s3.create_bucket().bucket(&b).send().await);

    // Object k gets every one of its chunks on node k damaged (corrupted for k < 3, deleted for
    // the fourth object, on node 0). With 10 chunks per object and 2 replicas on 3 nodes, each
    // node holds most chunks of each object, so reads hit damaged replicas whatever replica the
    // gateway tries first.
    let objects: Vec<Vec<u8>> = (0..4)
        .map(|k| random_bytes(10 * MIB - 7, 100 + k))
        .collect();
    for (k, data) in objects.iter().enumerate() {
        ok(s3
            .put_object()
            .bucket(&b)
            .key(format!("obj{k}"))
            .body(ByteStream::from(data.clone()))
            .send()
            .await);
    }
    for (k, data) in objects.iter().enumerate() {
        let node = k % 3;
        let ids: Vec<String> = data.chunks(MIB).map(sha256_hex).collect();
        let mut damaged = 0;
        for (id, path) in cluster.chunk_files(node) {
            if ids.contains(&id) {
                if k < 3 {
                    corrupt(&path);
                } else {
                    std::fs::remove_file(&path).unwrap();
                }
                damaged += 1;
            }
        }
        assert!(
            damaged >= 3,
            "node {node} held only {damaged} chunks of obj{k}"
        );
    }

    for round in 0..2 {
        for (k, data) in objects.iter().enumerate() {
            let key = format!("obj{k}");
            let got = ok(s3.get_object().bucket(&b).key(&key).send().await);
            assert_eq!(
                sha256_hex(&body_bytes(got).await),
                sha256_hex(data),
                "{key}, round {round}"
            );
            // A range inside one chunk and one across a boundary.
            for (start, end) in [(MIB / 2, MIB / 2 + 100), (3 * MIB - 50, 3 * MIB + 50)] {
                let got = ok(s3
                    .get_object()
                    .bucket(&b)
                    .key(&key)
                    .range(format!("bytes={start}-{}", end - 1))
                    .send()
                    .await);
                assert_eq!(
                    body_bytes(got).await,
                    &data[start..end],
                    "{key} {start}-{end}"
                );
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn too_few_nodes_is_a_clean_503() {
    let mut cluster = Cluster::start(ClusterOptions {
        node_down_after: Some("1s".into()),
        ..ClusterOptions::default()
    });
    let s3 = client(&cluster, Checksums::Default);
    let b = bucket("few");
    ok(s3.create_bucket().bucket(&b).send().await);
    let data = random_bytes(2 * MIB, 1);
    ok(s3
        .put_object()
        .bucket(&b)
        .key("before")
        .body(ByteStream::from(data.clone()))
        .send()
        .await);

    cluster.kill_node(1);
    cluster.kill_node(2);
    cluster.wait_nodes_up(1).unwrap();
    let (status, code) = err_of(
        s3.put_object()
            .bucket(&b)
            .key("during")
            .body(ByteStream::from(random_bytes(2 * MIB, 2)))
            .send()
            .await,
    );
    assert_eq!((status, code.as_str()), (503, "ServiceUnavailable"));
    assert_err(
        s3.head_object().bucket(&b).key("during").send().await,
        404,
        "",
    );

    cluster.restart_node(1).unwrap();
    cluster.restart_node(2).unwrap();
    cluster.wait_nodes_up(3).unwrap();
    let got = ok(s3.get_object().bucket(&b).key("before").send().await);
    assert_eq!(body_bytes(got).await, data);
    ok(s3
        .put_object()
        .bucket(&b)
        .key("after")
        .body(ByteStream::from(data.clone()))
        .send()
        .await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_stops_cleanly_on_sigterm() {
    let mut cluster = Cluster::start(ClusterOptions::default());
    let s3 = client(&cluster, Checksums::Default);
    ok(s3.create_bucket().bucket("sigterm-test").send().await);
    let status = cluster.terminate_gateway(Duration::from_secs(20)).unwrap();
    assert!(
        status.success(),
        "gateway exit status after SIGTERM: {status}"
    );
}
