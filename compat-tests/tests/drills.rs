//! Fault drills of self-healing (issue 12), on a real cluster of processes on loopback: a node
//! killed with SIGKILL and repair bringing every chunk back to two replicas, and a node drained
//! under continuous uploads and downloads until it holds nothing.
//!
//! Every drill checks bytes through aws-sdk-s3 and counts replicas on disk (chunk files in the
//! nodes' data directories), not only status codes.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_sdk_s3::primitives::ByteStream;
use sdfbs_compat_tests::{
    on_each_backend, random_bytes, sha256_hex, Cluster, ClusterOptions, Metadata,
};

use common::drill::*;
use common::{bucket, client, ok, Checksums};

// Drill 1 runs on each metadata backend: `drill_node_killed_then_repaired::embedded` and
// `::cassandra`.
on_each_backend!(drill_node_killed_then_repaired);

/// Drill 1: `kill -9` one of three nodes holding 200 objects; every object stays readable, and
/// within 60 s of the node being declared Down every chunk has two replicas on the two live
/// nodes again.
async fn drill_node_killed_then_repaired(metadata: Metadata) {
    let mut cluster = Cluster::start(ClusterOptions {
        node_down_after: Some("2s".into()),
        gateway_args: fast_workers(),
        ..ClusterOptions::with_metadata(metadata)
    });
    let s3 = client(&cluster, Checksums::Default);
    let b = bucket("drill-kill");
    ok(s3.create_bucket().bucket(&b).send().await);
    let objects = upload_objects(&s3, &b, 200, 1000).await;
    let before = replicas_on_disk(&cluster, &[0, 1, 2]);
    assert!(
        before.values().all(|nodes| nodes.len() == 2),
        "every chunk starts with two replicas"
    );
    let on_victim = before.values().filter(|n| n.contains(&2)).count();
    assert!(
        on_victim > 50,
        "node 2 holds a share of the chunks ({on_victim})"
    );

    cluster.kill_node(2);
    // Readable at once, from the surviving replica.
    assert_all_read_back(&s3, &b, &objects).await;
    let victim = cluster.node_id(2).expect("node id").to_string();
    eventually("node 2 declared Down", Duration::from_secs(30), || {
        let (okay, text) = cli_output(&cluster, &["node", "list"]);
        let line = text.lines().find(|l| l.starts_with(&victim)).unwrap_or("");
        (okay && line.contains(" Down ")).then_some(()).ok_or(text)
    })
    .await;
    let down_at = Instant::now();
    eventually(
        "every chunk on two live nodes",
        Duration::from_secs(60),
        || {
            let now = replicas_on_disk(&cluster, &[0, 1]);
            let short: Vec<&String> = before
                .keys()
                .filter(|id| now.get(*id).map_or(0, BTreeSet::len) < 2)
                .collect();
            if short.is_empty() {
                Ok(())
            } else {
                Err(format!("{} chunk(s) still on one replica", short.len()))
            }
        },
    )
    .await;
    println!(
        "repaired {on_victim} chunks in {:.1} s after the node was declared Down",
        down_at.elapsed().as_secs_f64()
    );
    assert_all_read_back(&s3, &b, &objects).await;

    let (okay, status) = cli_output(&cluster, &["repair", "status"]);
    assert!(okay, "{status}");
    assert!(status.contains("lost chunks:            none"), "{status}");
    let (okay, events) = cli_output(&cluster, &["node", "events", &victim]);
    assert!(okay, "{events}");
    assert!(
        events.contains("Down") && events.contains("no heartbeat"),
        "{events}"
    );

    // The node comes back: its chunks are audited, nothing is lost, everything reads back.
    cluster.restart_node(2).unwrap();
    cluster.wait_nodes_up(3).unwrap();
    assert_all_read_back(&s3, &b, &objects).await;
}

/// Drill 4: drain a node under continuous uploads and downloads: no request fails, the node
/// ends empty, every chunk has two replicas on the other nodes, and the node can be removed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drill_drain_under_load() {
    let cluster = Cluster::start(ClusterOptions {
        gateway_args: fast_workers(),
        ..ClusterOptions::default()
    });
    let s3 = client(&cluster, Checksums::Default);
    let b = bucket("drill-drain");
    ok(s3.create_bucket().bucket(&b).send().await);
    let objects = upload_objects(&s3, &b, 60, 2000).await;
    let leaving = cluster.node_id(0).expect("node id").to_string();
    assert!(!cluster.chunk_files(0).is_empty());

    // Load: uploads of new keys and downloads of the first objects, until told to stop.
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let done = Arc::new(AtomicU64::new(0));
    let load = {
        let (s3, b, stop, done) = (s3.clone(), b.clone(), stop.clone(), done.clone());
        let objects = objects.clone();
        tokio::spawn(async move {
            let mut written = BTreeMap::new();
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let data = random_bytes(300 * KIB + i as usize, 9000 + i);
                let key = format!("load/{i:05}");
                s3.put_object()
                    .bucket(&b)
                    .key(&key)
                    .body(ByteStream::from(data.clone()))
                    .send()
                    .await
                    .map_err(|e| format!("PUT {key} failed during the drain: {e:?}"))?;
                written.insert(key, sha256_hex(&data));
                let (key, digest) = objects.iter().nth(i as usize % objects.len()).unwrap();
                let got = s3
                    .get_object()
                    .bucket(&b)
                    .key(key)
                    .send()
                    .await
                    .map_err(|e| format!("GET {key} failed during the drain: {e:?}"))?;
                let bytes = got
                    .body
                    .collect()
                    .await
                    .map_err(|e| e.to_string())?
                    .into_bytes();
                if &sha256_hex(&bytes) != digest {
                    return Err(format!("GET {key} returned wrong bytes during the drain"));
                }
                done.fetch_add(1, Ordering::Relaxed);
                i += 1;
            }
            Ok::<_, String>(written)
        })
    };

    let (okay, text) = cli_output(&cluster, &["node", "drain", &leaving]);
    assert!(okay, "{text}");
    eventually(
        "the drained node holds no chunk file",
        Duration::from_secs(120),
        || {
            let left = cluster.chunk_files(0).len();
            (left == 0)
                .then_some(())
                .ok_or(format!("{left} chunk file(s) left"))
        },
    )
    .await;
    // Some load ran during the drain.
    eventually(
        "load requests during the drain",
        Duration::from_secs(30),
        || {
            let n = done.load(Ordering::Relaxed);
            (n >= 5).then_some(()).ok_or(format!("{n} done"))
        },
    )
    .await;
    stop.store(true, Ordering::Relaxed);
    let written = load
        .await
        .unwrap()
        .expect("no request failed during the drain");

    let on_disk = replicas_on_disk(&cluster, &[0, 1, 2]);
    assert!(on_disk
        .values()
        .all(|nodes| nodes.len() >= 2 && !nodes.contains(&0)));
    assert_all_read_back(&s3, &b, &objects).await;
    assert_all_read_back(&s3, &b, &written).await;

    let (okay, text) = cli_output(&cluster, &["node", "remove", &leaving]);
    assert!(okay, "{text}");
    let (_, list) = cli_output(&cluster, &["node", "list"]);
    assert!(
        list.lines()
            .any(|l| l.starts_with(&leaving) && l.contains("Removed")),
        "{list}"
    );
}

/// Removing a node that holds the only healthy copy of chunks is refused with a clear reason.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn removing_a_node_with_last_copies_is_refused() {
    let cluster = Cluster::start(ClusterOptions {
        nodes: 2,
        replication: Some(1),
        ..ClusterOptions::default()
    });
    let s3 = client(&cluster, Checksums::Default);
    let b = bucket("drill-remove");
    ok(s3.create_bucket().bucket(&b).send().await);
    upload_objects(&s3, &b, 20, 3000).await;
    let (i, node) = (0..2)
        .map(|i| (i, cluster.node_id(i).unwrap().to_string()))
        .find(|(i, _)| !cluster.chunk_files(*i).is_empty())
        .expect("a node with chunks");
    let (okay, text) = cli_output(&cluster, &["node", "remove", &node]);
    assert!(!okay, "{text}");
    assert!(
        text.contains("409") && text.contains("NodeHoldsLastCopy"),
        "{text}"
    );
    assert!(!cluster.chunk_files(i).is_empty());
}

/// Rebalance: a node joins a two-node cluster holding data; chunks move toward their placement
/// so the new node takes its share, every chunk keeps exactly two replicas on disk, and every
/// object reads back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_node_takes_its_share() {
    let mut cluster = Cluster::start(ClusterOptions {
        nodes: 2,
        gateway_args: fast_workers(),
        ..ClusterOptions::default()
    });
    let s3 = client(&cluster, Checksums::Default);
    let b = bucket("drill-join");
    ok(s3.create_bucket().bucket(&b).send().await);
    let objects = upload_objects(&s3, &b, 60, 7000).await;
    let chunks: Vec<String> = replicas_on_disk(&cluster, &[0, 1]).into_keys().collect();
    let new = cluster.add_node().unwrap();
    cluster.wait_nodes_up(3).unwrap();
    // With three nodes and two replicas, a node belongs to the placement of about 2/3 of the
    // chunks.
    let share = eventually(
        "the new node holds its share",
        Duration::from_secs(90),
        || {
            let on_new = cluster.chunk_files(new).len();
            (on_new * 100 >= chunks.len() * 45)
                .then_some(on_new)
                .ok_or(format!(
                    "{on_new} of {} chunks on the new node",
                    chunks.len()
                ))
        },
    )
    .await;
    println!("the new node holds {share} of {} chunks", chunks.len());
    eventually(
        "two replicas of every chunk",
        Duration::from_secs(30),
        || {
            let on_disk = replicas_on_disk(&cluster, &[0, 1, new]);
            let wrong: Vec<_> = chunks
                .iter()
                .filter(|id| on_disk.get(*id).map_or(0, BTreeSet::len) != 2)
                .collect();
            wrong.is_empty().then_some(()).ok_or(format!(
                "{} chunk(s) without exactly two replicas",
                wrong.len()
            ))
        },
    )
    .await;
    assert_all_read_back(&s3, &b, &objects).await;
}
