//! Fault drills of self-healing (issue 12), continued: chunk files corrupted on one node, two
//! of four nodes down at once, and a node whose disk fills up during uploads. Real processes
//! on loopback; bytes checked through aws-sdk-s3 and replicas counted (and hashed) on disk.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use sdfbs_compat_tests::{random_bytes, sha256_hex, Cluster, ClusterOptions};

use common::drill::*;
use common::{bucket, client, err_of, ok, Checksums};

/// Chunk ids whose files on the given nodes hash to their id, with how many such copies.
fn good_copies(cluster: &Cluster, nodes: &[usize]) -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    for &i in nodes {
        for (id, path) in cluster.chunk_files(i) {
            let bytes = std::fs::read(&path).unwrap_or_default();
            if sha256_hex(&bytes) == id {
                *out.entry(id).or_insert(0) += 1;
            }
        }
    }
    out
}

/// Drill 2: 1 % of the chunk files of one node are corrupted (same size, bytes changed): every
/// GET returns correct bytes, and scrub plus repair bring every chunk back to two good copies.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drill_corrupted_chunks_are_healed() {
    let cluster = Cluster::start(ClusterOptions {
        gateway_args: fast_workers(),
        ..ClusterOptions::default()
    });
    let s3 = client(&cluster, Checksums::Default);
    let b = bucket("drill-rot");
    ok(s3.create_bucket().bucket(&b).send().await);
    let objects = upload_objects(&s3, &b, 200, 4000).await;
    let all: Vec<String> = replicas_on_disk(&cluster, &[0, 1, 2]).into_keys().collect();
    let files = cluster.chunk_files(1);
    let count = (files.len() / 100).max(2);
    for (_, path) in files.iter().step_by(files.len() / count).take(count) {
        let mut bytes = std::fs::read(path).unwrap();
        let (mid, len) = (bytes.len() / 2, bytes.len());
        for b in &mut bytes[mid..(mid + 16).min(len)] {
            *b ^= 0x5a;
        }
        std::fs::write(path, &bytes).unwrap();
    }
    // Every read returns the right bytes (a corrupt replica is never handed on).
    assert_all_read_back(&s3, &b, &objects).await;
    // Scrub finds what reads did not, repair re-creates every bad copy from the good one.
    eventually(
        "two good copies of every chunk",
        Duration::from_secs(90),
        || {
            let good = good_copies(&cluster, &[0, 1, 2]);
            let short = all
                .iter()
                .filter(|id| good.get(*id).copied().unwrap_or(0) < 2)
                .count();
            (short == 0)
                .then_some(())
                .ok_or(format!("{short} chunk(s) with fewer than two good copies"))
        },
    )
    .await;
    assert_all_read_back(&s3, &b, &objects).await;
    let (okay, status) = cli_output(&cluster, &["repair", "status"]);
    assert!(
        okay && status.contains("lost chunks:            none"),
        "{status}"
    );
}

/// Drill 5: two of four nodes down, then back: an object whose replicas were all on the two
/// dead nodes answers a clear 503 while they are down (never wrong bytes), the others read
/// back, and everything reads back fully once the nodes return.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drill_two_of_four_nodes_down_then_back() {
    let mut cluster = Cluster::start(ClusterOptions {
        nodes: 4,
        node_down_after: Some("2s".into()),
        gateway_args: fast_workers(),
        ..ClusterOptions::default()
    });
    let s3 = client(&cluster, Checksums::Default);
    let b = bucket("drill-two-down");
    ok(s3.create_bucket().bucket(&b).send().await);
    // Single-chunk objects, so each one lives on exactly two nodes.
    let mut objects = BTreeMap::new();
    for i in 0..80 {
        let data = random_bytes(64 * KIB + i, 5000 + i as u64);
        let key = format!("small/{i:03}");
        let digest = put_bytes(&s3, &b, &key, data.clone()).await;
        objects.insert(key, (digest, data));
    }
    let placed = replicas_on_disk(&cluster, &[0, 1, 2, 3]);
    let both_dead = |data: &Vec<u8>| {
        placed
            .get(&sha256_hex(data))
            .is_some_and(|nodes| nodes.iter().all(|n| *n >= 2))
    };
    let (gone, alive): (Vec<_>, Vec<_>) = objects.iter().partition(|(_, (_, d))| both_dead(d));
    assert!(!gone.is_empty(), "some object lives only on nodes 2 and 3");

    cluster.kill_node(2);
    cluster.kill_node(3);
    eventually("two nodes Down", Duration::from_secs(30), || {
        let (_, text) = cli_output(&cluster, &["node", "list"]);
        let down = text.lines().filter(|l| l.contains(" Down ")).count();
        (down == 2).then_some(()).ok_or(text)
    })
    .await;
    for (key, _) in &gone {
        let (status, code) = err_of(s3.get_object().bucket(&b).key(*key).send().await);
        assert_eq!(
            (status, code.as_str()),
            (503, "ServiceUnavailable"),
            "{key}"
        );
    }
    for (key, (digest, _)) in &alive {
        let got = ok(s3.get_object().bucket(&b).key(*key).send().await);
        assert_eq!(&sha256_hex(&common::body_bytes(got).await), digest, "{key}");
    }
    // Repair says which chunks it cannot find anywhere, and which objects use them.
    eventually(
        "lost chunks reported with their objects",
        Duration::from_secs(30),
        || {
            let (_, status) = cli_output(&cluster, &["repair", "status"]);
            let named = gone
                .iter()
                .all(|(key, _)| status.contains(&format!("used by {b}/{key}")));
            (status.contains(&format!("LOST CHUNKS: {}", gone.len())) && named)
                .then_some(())
                .ok_or(status)
        },
    )
    .await;

    cluster.restart_node(2).unwrap();
    cluster.restart_node(3).unwrap();
    cluster.wait_nodes_up(4).unwrap();
    let digests: BTreeMap<String, String> = objects
        .iter()
        .map(|(k, (d, _))| (k.clone(), d.clone()))
        .collect();
    assert_all_read_back(&s3, &b, &digests).await;
    eventually("no chunk reported lost", Duration::from_secs(30), || {
        let (_, status) = cli_output(&cluster, &["repair", "status"]);
        let (_, nodes) = cli_output(&cluster, &["node", "list"]);
        status
            .contains("lost chunks:            none")
            .then_some(())
            .ok_or(format!("{status}\n{nodes}"))
    })
    .await;
}

/// Drill 6: a node's disk fills up during uploads (a 4 MiB capacity): every upload succeeds on
/// the other nodes, and every chunk has two replicas on disk.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drill_full_disk_during_uploads() {
    let cluster = Cluster::start(ClusterOptions {
        nodes: 4,
        node_args: vec![(0, vec!["--capacity".into(), "4MiB".into()])],
        ..ClusterOptions::default()
    });
    let s3 = client(&cluster, Checksums::Default);
    let b = bucket("drill-full");
    ok(s3.create_bucket().bucket(&b).send().await);
    let mut objects = BTreeMap::new();
    for i in 0..40 {
        let key = format!("full/{i:03}");
        let digest = put_bytes(&s3, &b, &key, random_bytes(MIB, 6000 + i)).await;
        objects.insert(key, digest);
    }
    let used: u64 = cluster
        .chunk_files(0)
        .iter()
        .map(|(_, p)| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0))
        .sum();
    assert!(used <= 4 * MIB as u64, "node 0 holds {used} bytes");
    let placed = replicas_on_disk(&cluster, &[0, 1, 2, 3]);
    for digest in objects.values() {
        assert_eq!(
            placed.get(digest).map_or(0, |n| n.len()),
            2,
            "chunk {digest}"
        );
    }
    assert_all_read_back(&s3, &b, &objects).await;
}
