//! `sdfbs dev` as a user runs it (the gateway and its in-process chunkd nodes in one process),
//! on each metadata backend: the default embedded store in `DATA_DIR/meta.redb`, and
//! `--metadata scylla:HOST:PORT/KEYSPACE` on a fresh keyspace of the node named by
//! `SDFBS_TEST_SCYLLA` (skipped without it), dropped afterwards.

mod common;

use aws_sdk_s3::primitives::ByteStream;
use sdfbs_compat_tests::{on_each_backend, random_bytes, sha256_hex, Cluster, Metadata};

use common::{body_bytes, bucket, client, ok, quoted_md5, Checksums};

// Each test runs once per metadata backend: `NAME::embedded` and `NAME::cassandra`.
on_each_backend!(
    put_and_get_through_sdfbs_dev,
    node_and_repair_commands_on_sdfbs_dev
);

async fn put_and_get_through_sdfbs_dev(metadata: Metadata) {
    let cluster = match Cluster::start_dev_with(3, &metadata) {
        Ok(c) => c,
        Err(e) => panic!("starting `sdfbs dev` failed: {e:#}"),
    };
    let s3 = client(&cluster, Checksums::Default);
    let b = bucket("dev");
    ok(s3.create_bucket().bucket(&b).send().await);
    // Two chunks and a bit, stored on the in-process nodes.
    let data = random_bytes(2 * (1 << 20) + 11, 5);
    let put = ok(s3
        .put_object()
        .bucket(&b)
        .key("notes/today.bin")
        .body(ByteStream::from(data.clone()))
        .send()
        .await);
    assert_eq!(put.e_tag(), Some(quoted_md5(&data).as_str()));
    let got = ok(s3
        .get_object()
        .bucket(&b)
        .key("notes/today.bin")
        .send()
        .await);
    assert_eq!(sha256_hex(&body_bytes(got).await), sha256_hex(&data));
    let listed = ok(s3.list_objects_v2().bucket(&b).send().await);
    let keys: Vec<_> = listed.contents().iter().filter_map(|o| o.key()).collect();
    assert_eq!(keys, ["notes/today.bin"]);

    // The metadata went where it was asked to: the data directory holds a redb file only when
    // no other store was given.
    let redb = cluster.dir().join("dev").join("meta.redb");
    assert_eq!(
        redb.exists(),
        !metadata.is_shared(),
        "{} with {metadata:?}",
        redb.display()
    );
}

/// `sdfbs node` and `sdfbs repair status` against `sdfbs dev`, as its banner tells a user to.
async fn node_and_repair_commands_on_sdfbs_dev(metadata: Metadata) {
    let cluster = match Cluster::start_dev_with(3, &metadata) {
        Ok(c) => c,
        Err(e) => panic!("starting `sdfbs dev` failed: {e:#}"),
    };
    let run = |args: &[&str]| {
        let out = cluster.sdfbs_cli().args(args).output().expect("run sdfbs");
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "sdfbs {args:?} failed: {text}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        text
    };
    let list = run(&["node", "list"]);
    let nodes: Vec<&str> = list.lines().skip(1).collect();
    assert_eq!(nodes.len(), 3, "{list}");
    assert!(nodes.iter().all(|l| l.contains(" Up ")), "{list}");
    let node = nodes[0].split_whitespace().next().unwrap().to_string();

    // The gateway of `sdfbs dev` runs the workers: its status says so and nothing is lost.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let status = run(&["repair", "status"]);
        if !status.contains("does not run the cluster workers") {
            assert!(status.contains("lost chunks:            none"), "{status}");
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{status}");
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    // Drain and undrain one node; both show in its history.
    assert!(run(&["node", "drain", &node]).contains("Draining"));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let events = run(&["node", "events", &node]);
        if events.contains("Draining") {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{events}");
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    run(&["node", "undrain", &node]);
    let list = run(&["node", "list"]);
    assert!(
        list.lines()
            .any(|l| l.starts_with(&node) && l.contains(" Up ")),
        "{list}"
    );
}
