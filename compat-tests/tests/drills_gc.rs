//! Fault drills of garbage collection (issue 12): a gateway killed in the middle of a large
//! upload leaves no object behind and its chunk files are collected; an upload that reuses
//! (dedup) chunks while garbage collection is deleting them never loses them; a multipart
//! upload left idle is aborted and its part collected, while an active one is left alone.
//!
//! Real processes on loopback, with the workers made fast (`fast_workers`: a 3 s grace, a GC
//! pass every second, an audit every 2 s). Bytes are checked through aws-sdk-s3, chunk files
//! are counted and hashed on the nodes' disks, and the workers' counters are read the way an
//! operator reads them, with `sdfbs repair status`.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
use aws_sdk_s3::Client;
use aws_smithy_types::error::display::DisplayErrorContext;
use bytes::Bytes;
use rand::{rngs::StdRng, Rng, SeedableRng};
use sdfbs_compat_tests::{
    on_each_backend, random_bytes, sha256_hex, write_random_file, Cluster, ClusterOptions, Metadata,
};

use common::drill::*;
use common::{assert_err, body_bytes, bucket, client, ok, Checksums};

/// The gateway cuts objects into chunks of this size; a chunk's id is the SHA-256 of its bytes.
const CHUNK: usize = MIB;

/// The ids of the chunks `data` is stored as.
fn chunk_ids(data: &[u8]) -> BTreeSet<String> {
    data.chunks(CHUNK).map(sha256_hex).collect()
}

/// For each chunk id, the nodes holding a file of it whose SHA-256 is its name.
fn good_replicas_on_disk(cluster: &Cluster) -> BTreeMap<String, BTreeSet<usize>> {
    let mut out: BTreeMap<String, BTreeSet<usize>> = BTreeMap::new();
    for i in 0..cluster.node_count() {
        for (id, path) in cluster.chunk_files(i) {
            if std::fs::read(&path).is_ok_and(|bytes| sha256_hex(&bytes) == id) {
                out.entry(id).or_default().insert(i);
            }
        }
    }
    out
}

/// `Ok` when the nodes hold exactly the chunks `ids`, each as two good copies, and no other
/// chunk file; otherwise what differs.
fn exactly_two_copies_of(cluster: &Cluster, ids: &BTreeSet<String>) -> Result<(), String> {
    let files: usize = (0..cluster.node_count())
        .map(|i| cluster.chunk_files(i).len())
        .sum();
    let good = good_replicas_on_disk(cluster);
    let short: Vec<_> = ids
        .iter()
        .filter(|id| good.get(*id).map_or(0, BTreeSet::len) != 2)
        .map(|id| (&id[..12], good.get(id).map_or(0, BTreeSet::len)))
        .collect();
    let wanted = 2 * ids.len();
    if short.is_empty() && files == wanted {
        Ok(())
    } else {
        Err(format!(
            "{files} chunk file(s) on the nodes, {wanted} wanted; chunks without exactly two \
             good copies (id prefix, copies): {short:?}"
        ))
    }
}

/// The garbage collector's counters, as `sdfbs repair status` prints them.
#[derive(Debug, Default, Clone, Copy)]
struct GcCounters {
    chunks: u64,
    orphan_files: u64,
    uploads_aborted: u64,
    passes: u64,
}

/// Reads [`GcCounters`] from the line `garbage collected: N chunks, N orphan files, N stale
/// uploads aborted (N passes)` of `sdfbs repair status`.
fn gc_counters(cluster: &Cluster) -> Result<GcCounters, String> {
    let (okay, text) = cli_output(cluster, &["repair", "status"]);
    let line = text
        .lines()
        .find_map(|l| l.strip_prefix("garbage collected:"))
        .filter(|_| okay)
        .ok_or_else(|| format!("no `garbage collected:` line in `sdfbs repair status`:\n{text}"))?;
    let numbers: Vec<u64> = line
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|w| w.parse().ok())
        .collect();
    match numbers[..] {
        [chunks, orphan_files, uploads_aborted, passes] => Ok(GcCounters {
            chunks,
            orphan_files,
            uploads_aborted,
            passes,
        }),
        _ => Err(format!("unexpected `garbage collected:` line: {line}")),
    }
}

/// PUTs `data` at `key`, then GETs it back and compares the bytes.
async fn put_then_get(s3: &Client, b: &str, key: &str, data: &Bytes) -> Result<(), String> {
    s3.put_object()
        .bucket(b)
        .key(key)
        .body(ByteStream::from(data.clone()))
        .send()
        .await
        .map_err(|e| format!("PUT {key}: {}", DisplayErrorContext(&e)))?;
    let got = s3
        .get_object()
        .bucket(b)
        .key(key)
        .send()
        .await
        .map_err(|e| format!("GET {key} just after its PUT: {}", DisplayErrorContext(&e)))?;
    let bytes = got
        .body
        .collect()
        .await
        .map_err(|e| format!("GET {key} just after its PUT, reading the body: {e}"))?
        .into_bytes();
    if sha256_hex(&bytes) != sha256_hex(data) {
        return Err(format!(
            "GET {key} just after its PUT returned other bytes ({} bytes, {} stored)",
            bytes.len(),
            data.len()
        ));
    }
    Ok(())
}

async fn delete(s3: &Client, b: &str, key: &str) -> Result<(), String> {
    s3.delete_object()
        .bucket(b)
        .key(key)
        .send()
        .await
        .map(|_| ())
        .map_err(|e| format!("DELETE {key}: {}", DisplayErrorContext(&e)))
}

/// The gateway is killed (SIGKILL) while a 512 MiB PutObject streams in: the upload fails, no
/// part of it is ever visible (HEAD 404, not listed), and once the gateway is back the node
/// audits delete every chunk file the upload left, and only those: the object stored before
/// keeps its two copies of every chunk and reads back byte for byte.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drill_gateway_killed_mid_upload() {
    let mut cluster = Cluster::start(ClusterOptions {
        gateway_args: fast_workers(),
        ..ClusterOptions::default()
    });
    let s3 = client(&cluster, Checksums::Default);
    let b = bucket("drill-gw-kill");
    ok(s3.create_bucket().bucket(&b).send().await);
    let small = Bytes::from(random_bytes(2 * MIB + 300, 8100));
    put_then_get(&s3, &b, "keep/small.bin", &small)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let kept = chunk_ids(&small);
    assert_eq!(replicas_on_disk(&cluster, &[0, 1, 2]).len(), kept.len());

    let big = cluster.dir().join("big.bin");
    let path = big.clone();
    tokio::task::spawn_blocking(move || write_random_file(&path, 512 * MIB as u64, 8101))
        .await
        .expect("writing the big file")
        .expect("writing the big file");
    let before = cluster.total_chunk_replicas().expect("chunk counts");
    let upload = {
        let (s3, b) = (s3.clone(), b.clone());
        tokio::spawn(async move {
            let body = ByteStream::from_path(&big)
                .await
                .map_err(|e| format!("opening {}: {e}", big.display()))?;
            s3.put_object()
                .bucket(&b)
                .key("big.bin")
                .body(body)
                .send()
                .await
                .map(|_| ())
                .map_err(|e| DisplayErrorContext(&e).to_string())
        })
    };
    eventually(
        "the big upload's chunks reach the nodes",
        Duration::from_secs(60),
        || {
            if upload.is_finished() {
                return Ok(()); // reported below
            }
            let n = cluster.total_chunk_replicas().map_err(|e| e.to_string())?;
            (n >= before + 40)
                .then_some(())
                .ok_or(format!("{} replicas written", n - before))
        },
    )
    .await;
    assert!(!upload.is_finished(), "the upload ended before the kill");
    // Half-way: nothing of the object is visible yet.
    assert_err(
        s3.head_object().bucket(&b).key("big.bin").send().await,
        404,
        "",
    );

    cluster.kill_gateway();
    let result = tokio::time::timeout(Duration::from_secs(120), upload)
        .await
        .expect("the upload ends once its gateway is dead")
        .expect("the upload task");
    let error = result.expect_err("an upload whose gateway was killed cannot succeed");
    println!("the upload failed, as it must: {error}");
    let orphans: BTreeMap<String, BTreeSet<usize>> = replicas_on_disk(&cluster, &[0, 1, 2])
        .into_iter()
        .filter(|(id, _)| !kept.contains(id))
        .collect();
    let orphan_files: usize = orphans.values().map(BTreeSet::len).sum();
    assert!(
        orphans.len() >= 20,
        "the killed upload left chunk files ({} chunks)",
        orphans.len()
    );

    cluster.restart_gateway(3).expect("restarting the gateway");
    assert_err(
        s3.head_object().bucket(&b).key("big.bin").send().await,
        404,
        "",
    );
    let listed = ok(s3.list_objects_v2().bucket(&b).send().await);
    let keys: Vec<_> = listed.contents().iter().filter_map(|o| o.key()).collect();
    assert_eq!(
        keys,
        ["keep/small.bin"],
        "only the complete object is listed"
    );

    let killed_at = Instant::now();
    eventually(
        "the orphaned chunk files are collected, and only them",
        Duration::from_secs(60),
        || exactly_two_copies_of(&cluster, &kept),
    )
    .await;
    println!(
        "{orphan_files} orphan chunk files ({} chunks) collected within {:.1} s of the restart",
        orphans.len(),
        killed_at.elapsed().as_secs_f64()
    );
    let got = ok(s3
        .get_object()
        .bucket(&b)
        .key("keep/small.bin")
        .send()
        .await);
    assert_eq!(sha256_hex(&body_bytes(got).await), sha256_hex(&small));
    let counters = gc_counters(&cluster).unwrap_or_else(|e| panic!("{e}"));
    assert!(
        counters.orphan_files >= orphan_files as u64,
        "`sdfbs repair status` counts the {orphan_files} orphan files deleted: {counters:?}"
    );
}

// "An upload that reuses a chunk while it is being collected never loses it", on each backend.
on_each_backend!(gc_races_dedup_reuse);

/// How long the main loop of [`gc_races_dedup_reuse`] runs.
const RACE_FOR: Duration = Duration::from_secs(30);

/// Rounds of: PUT K, DELETE K (its chunks become unreferenced and garbage collection deletes
/// them once the 3 s grace is over), a pause, PUT K again with the same bytes (dedup reuses
/// the chunks GC may be deleting right then), and a GET of K at once. The pause is random in
/// one round of two (0 to 3 s or 3 to 6 s: before, around or after the pass that collects the
/// chunks); in the other rounds the PUT starts the moment the first copy of K's chunks
/// disappears from a disk, so it lands while GC is deleting them. Meanwhile
/// a second key with the same bytes is PUT, read and deleted at random times. No GET may ever
/// fail or return other bytes; after several more grace periods, every chunk of K still has
/// its two good copies on disk.
async fn gc_races_dedup_reuse(metadata: Metadata) {
    let cluster = Cluster::start(ClusterOptions {
        gateway_args: fast_workers(),
        ..ClusterOptions::with_metadata(metadata)
    });
    let s3 = client(&cluster, Checksums::Default);
    let b = bucket("drill-gc-race");
    ok(s3.create_bucket().bucket(&b).send().await);
    let data = Bytes::from(random_bytes(3 * MIB, 8400));
    let ids = chunk_ids(&data);
    let copies_on_disk = |cluster: &Cluster| -> usize {
        (0..cluster.node_count())
            .flat_map(|i| cluster.chunk_files(i))
            .filter(|(id, _)| ids.contains(id))
            .count()
    };

    // The second key: the same bytes, PUT (dedup), read back and deleted at random moments.
    let stop = Arc::new(AtomicBool::new(false));
    let other = {
        let (s3, b, data, stop) = (s3.clone(), b.clone(), data.clone(), stop.clone());
        tokio::spawn(async move {
            let mut rng = StdRng::seed_from_u64(8401);
            let mut puts = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let pause = Duration::from_millis(rng.gen_range(500..7000));
                tokio::time::sleep(pause).await;
                put_then_get(&s3, &b, "other", &data).await?;
                delete(&s3, &b, "other").await?;
                puts += 1;
            }
            Ok::<u64, String>(puts)
        })
    };

    let mut rng = StdRng::seed_from_u64(8402);
    let started = Instant::now();
    let (mut rounds, mut mid_deletion) = (0u64, 0u64);
    while started.elapsed() < RACE_FOR {
        put_then_get(&s3, &b, "k", &data)
            .await
            .unwrap_or_else(|e| panic!("round {rounds}: {e}"));
        delete(&s3, &b, "k")
            .await
            .unwrap_or_else(|e| panic!("round {rounds}: {e}"));
        match rounds % 4 {
            // Mostly before GC gets to the chunks: they are unreferenced but still there.
            0 => tokio::time::sleep(Duration::from_millis(rng.gen_range(0..3000))).await,
            // Around or after the pass that deletes them.
            2 => tokio::time::sleep(Duration::from_millis(rng.gen_range(3000..6000))).await,
            // The moment GC deletes the first copy (or later, if the second key kept the
            // chunks in use meanwhile).
            _ => {
                let deadline = Instant::now() + Duration::from_secs(8);
                while copies_on_disk(&cluster) == 2 * ids.len() && Instant::now() < deadline {
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
            }
        }
        let copies = copies_on_disk(&cluster);
        if copies > 0 && copies < 2 * ids.len() {
            mid_deletion += 1;
        }
        put_then_get(&s3, &b, "k", &data)
            .await
            .unwrap_or_else(|e| panic!("round {rounds}: {e}"));
        rounds += 1;
    }
    stop.store(true, Ordering::Relaxed);
    let other_puts = other
        .await
        .expect("the second key's task")
        .unwrap_or_else(|e| panic!("second key: {e}"));

    // Several grace periods and GC passes later, nothing of K was collected under it.
    let passes = gc_counters(&cluster)
        .unwrap_or_else(|e| panic!("{e}"))
        .passes;
    eventually(
        "ten more garbage collection passes",
        Duration::from_secs(60),
        || {
            let now = gc_counters(&cluster)?.passes;
            (now >= passes + 10)
                .then_some(())
                .ok_or(format!("{} passes since the loop", now - passes))
        },
    )
    .await;
    let got = ok(s3.get_object().bucket(&b).key("k").send().await);
    assert_eq!(sha256_hex(&body_bytes(got).await), sha256_hex(&data));
    assert_err(
        s3.head_object().bucket(&b).key("other").send().await,
        404,
        "",
    );
    eventually(
        "two good copies of every chunk of K, and no other chunk file",
        Duration::from_secs(30),
        || exactly_two_copies_of(&cluster, &ids),
    )
    .await;
    let (okay, status) = cli_output(&cluster, &["repair", "status"]);
    assert!(
        okay && status.contains("lost chunks:            none"),
        "{status}"
    );
    let counters = gc_counters(&cluster).unwrap_or_else(|e| panic!("{e}"));
    println!(
        "{rounds} rounds in {:.0} s ({mid_deletion} re-PUTs started while K's chunks were \
         partly deleted), {other_puts} PUTs of the second key; garbage collection collected \
         {} chunk records in {} passes",
        RACE_FOR.as_secs_f64(),
        counters.chunks,
        counters.passes
    );
    assert!(
        counters.chunks > 0,
        "garbage collection collected nothing during the test, so the race was not exercised: \
         {counters:?}"
    );
}

/// `--multipart-max-age 3s`: a multipart upload left idle after one part is aborted (no
/// longer listed, UploadPart answers 404 NoSuchUpload) and its part's chunk files are
/// collected, while an upload receiving a part every second through the same passes is left
/// alone, completes, and reads back byte for byte.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_multipart_uploads_are_aborted() {
    let mut gateway_args = fast_workers();
    gateway_args.extend(["--multipart-max-age".to_string(), "3s".to_string()]);
    let cluster = Cluster::start(ClusterOptions {
        gateway_args,
        ..ClusterOptions::default()
    });
    let s3 = client(&cluster, Checksums::Default);
    let b = bucket("drill-mpu-gc");
    ok(s3.create_bucket().bucket(&b).send().await);
    let create = |key: &'static str| {
        let (s3, b) = (s3.clone(), b.clone());
        async move {
            let out = ok(s3
                .create_multipart_upload()
                .bucket(&b)
                .key(key)
                .send()
                .await);
            out.upload_id().expect("an upload id").to_string()
        }
    };
    let upload_part = |key: &'static str, id: String, number: i32, data: Vec<u8>| {
        s3.upload_part()
            .bucket(&b)
            .key(key)
            .upload_id(id)
            .part_number(number)
            .body(ByteStream::from(data))
            .send()
    };
    let listed_uploads = || async {
        let out = ok(s3.list_multipart_uploads().bucket(&b).send().await);
        out.uploads()
            .iter()
            .filter_map(|u| u.upload_id().map(str::to_string))
            .collect::<Vec<_>>()
    };

    // Left idle after one part.
    let stale_data = random_bytes(5 * MIB, 8500);
    let stale_chunks = chunk_ids(&stale_data);
    let stale = create("stale.bin").await;
    ok(upload_part("stale.bin", stale.clone(), 1, stale_data).await);
    let on_disk = replicas_on_disk(&cluster, &[0, 1, 2]);
    assert!(
        stale_chunks.iter().all(|id| on_disk.contains_key(id)),
        "the idle upload's part is on disk"
    );

    // Active: a part a second, until the idle upload is gone and at least 6 s have passed.
    let active = create("active.bin").await;
    let started = Instant::now();
    let mut parts: Vec<Vec<u8>> = Vec::new();
    let mut completed = Vec::new();
    loop {
        let number = parts.len() as i32 + 1;
        let data = random_bytes(5 * MIB, 8600 + number as u64);
        let out = ok(upload_part("active.bin", active.clone(), number, data.clone()).await);
        completed.push(
            CompletedPart::builder()
                .part_number(number)
                .e_tag(out.e_tag().unwrap_or_default())
                .build(),
        );
        parts.push(data);
        let listed = listed_uploads().await;
        assert!(
            listed.contains(&active),
            "the active upload is listed after {:.1} s: {listed:?}",
            started.elapsed().as_secs_f64()
        );
        let stale_gone = !listed.contains(&stale);
        if stale_gone && started.elapsed() >= Duration::from_secs(6) {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the idle upload is still listed after 30 s: {listed:?}"
        );
        // The client's pace, not a wait for a state: one part a second.
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    println!(
        "the idle upload was aborted while the active one received {} parts over {:.1} s",
        parts.len(),
        started.elapsed().as_secs_f64()
    );
    assert_err(
        upload_part("stale.bin", stale.clone(), 2, vec![7; 1024]).await,
        404,
        "NoSuchUpload",
    );
    eventually(
        "the aborted upload's chunk files are collected",
        Duration::from_secs(30),
        || {
            let left = replicas_on_disk(&cluster, &[0, 1, 2])
                .into_iter()
                .filter(|(id, _)| stale_chunks.contains(id))
                .count();
            (left == 0)
                .then_some(())
                .ok_or(format!("{left} of its chunks still on disk"))
        },
    )
    .await;

    ok(s3
        .complete_multipart_upload()
        .bucket(&b)
        .key("active.bin")
        .upload_id(&active)
        .multipart_upload(
            CompletedMultipartUpload::builder()
                .set_parts(Some(completed))
                .build(),
        )
        .send()
        .await);
    let whole = parts.concat();
    let got = ok(s3.get_object().bucket(&b).key("active.bin").send().await);
    assert_eq!(sha256_hex(&body_bytes(got).await), sha256_hex(&whole));
    assert!(listed_uploads().await.is_empty());
    let counters = gc_counters(&cluster).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        counters.uploads_aborted, 1,
        "only the idle upload was aborted: {counters:?}"
    );
    // What remains on disk is the completed object, two copies of each chunk.
    eventually(
        "the completed object's chunks, two copies each, and nothing else",
        Duration::from_secs(30),
        || exactly_two_copies_of(&cluster, &chunk_ids(&whole)),
    )
    .await;
}
