//! Benchmark of the embedded (redb) metadata backend.
//!
//! Run with `cargo run --release -p sdfbs-metadata --example meta_bench` (optionally
//! `-- <keys>` to change the size of the big bucket, default 1,000,000). It measures:
//! * object commits per second for 1-chunk objects, with 1 and with 16 concurrent writers
//!   (every commit durable: the writer thread group-commits, one fsync per batch);
//! * loading the big bucket through ordinary commits (256 concurrent writers; there is no
//!   separate bulk-load path);
//! * get_object latency p50/p99 on the big bucket;
//! * one ListObjectsV2-style page of 1,000 keys from the big bucket (p50/p99/max over pages
//!   taken at random places), without and with a delimiter.
//!
//! The store lives in a temporary directory that is removed at the end.

use sdfbs_metadata::embedded::EmbeddedStore;
use sdfbs_metadata::{
    now_millis, BucketRecord, ChunkId, ChunkPlacement, ListQuery, ManifestEntry, MetaError,
    MetadataStore, ObjectRecord, PutCondition, VersioningState,
};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

fn bucket(name: &str) -> BucketRecord {
    BucketRecord {
        name: name.into(),
        id: format!("id-{name}"),
        created: now_millis(),
        owner: "AKBENCH".into(),
        versioning: VersioningState::Unversioned,
        shard_count: 16,
    }
}

fn chunk(n: u64) -> ChunkId {
    // Spread ids like SHA-256 would (a cheap mix, not a hash of real data).
    let mut id = [0u8; 32];
    let mut x = n.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0xD1B5_4A32_D192_ED03;
    for part in id.chunks_mut(8) {
        x ^= x >> 29;
        x = x.wrapping_mul(0xBF58_476D_1CE4_E5B9);
        part.copy_from_slice(&x.to_be_bytes());
    }
    ChunkId(id)
}

/// Keys spread over 100 "directories" so that delimiter listings have something to fold.
fn key(i: u64) -> String {
    format!("backup/host-{:02}/file-{:09}.bin", i % 100, i)
}

async fn commit_one(store: &EmbeddedStore, b: &BucketRecord, i: u64) -> Result<(), MetaError> {
    let c = chunk(i);
    let object = ObjectRecord {
        key: key(i),
        version_id: format!("ver-{i:012}"),
        size: 1 << 20,
        etag: format!("{:032x}", u128::from(i) * 0x1234_5678_9abc_def1),
        last_modified: now_millis(),
        content_type: Some("application/octet-stream".into()),
        headers: Default::default(),
        user_metadata: Default::default(),
        checksums: Default::default(),
        checksum_type: None,
        parts: Vec::new(),
        delete_marker: false,
        owner: "AKBENCH".into(),
    };
    let placement = ChunkPlacement {
        chunk: c,
        size: 1 << 20,
        nodes: vec!["node-a".into(), "node-b".into()],
    };
    let entry = ManifestEntry {
        chunk: c,
        size: 1 << 20,
    };
    store
        .commit_object(b, object, vec![entry], vec![placement], PutCondition::None)
        .await
        .map(|_| ())
}

/// Commits keys `0..count` of `b` from `writers` concurrent tasks; returns the elapsed time.
async fn commit_many(
    store: &EmbeddedStore,
    b: &BucketRecord,
    count: u64,
    writers: usize,
    progress: bool,
) -> Result<Duration, BoxError> {
    let next = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let tasks: Vec<_> = (0..writers)
        .map(|_| {
            let (store, b, next) = (store.clone(), b.clone(), next.clone());
            tokio::spawn(async move {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= count {
                        return Ok::<(), MetaError>(());
                    }
                    commit_one(&store, &b, i).await?;
                    if progress && i > 0 && i % 100_000 == 0 {
                        eprintln!("  loaded {i} keys ({:.0?})", start.elapsed());
                    }
                }
            })
        })
        .collect();
    for t in tasks {
        t.await??;
    }
    Ok(start.elapsed())
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

fn ms(d: Duration) -> String {
    format!("{:.3} ms", d.as_secs_f64() * 1000.0)
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let big: u64 = match std::env::args().nth(1) {
        Some(n) => n.parse()?,
        None => 1_000_000,
    };
    let dir = tempfile::tempdir()?;
    let store = EmbeddedStore::open(dir.path().join("bench.redb")).await?;

    // 1. Commit throughput on a fresh bucket.
    for (writers, count) in [(1usize, 2_000u64), (16, 20_000)] {
        let b = bucket(&format!("commits-{writers}"));
        store.create_bucket(b.clone()).await?;
        let took = commit_many(&store, &b, count, writers, false).await?;
        println!(
            "commits, 1-chunk objects, {writers:>2} writer(s): {count} in {:.2} s = {:.0} commits/s",
            took.as_secs_f64(),
            count as f64 / took.as_secs_f64()
        );
    }

    // 2. Load the big bucket.
    let b = bucket("big");
    store.create_bucket(b.clone()).await?;
    let took = commit_many(&store, &b, big, 256, true).await?;
    println!(
        "load: {big} keys through ordinary commits, 256 writers: {:.1} s = {:.0} commits/s",
        took.as_secs_f64(),
        big as f64 / took.as_secs_f64()
    );

    // 3. get_object latency on the big bucket.
    let mut lat = Vec::new();
    for n in 0..10_000u64 {
        let i = chunk(n).0[0] as u64 * big / 256 + n % (big / 256).max(1);
        let start = Instant::now();
        let got = store.get_object(&b, &key(i % big)).await?;
        lat.push(start.elapsed());
        if got.is_none() {
            return Err(format!("key {} missing", key(i % big)).into());
        }
    }
    lat.sort();
    println!(
        "get_object on {big} keys: p50 {} p99 {} (10,000 gets, one at a time)",
        ms(percentile(&lat, 0.5)),
        ms(percentile(&lat, 0.99))
    );

    // 4. One 1,000-key page from the big bucket, at 200 places.
    for delimiter in [None, Some("/")] {
        let mut lat = Vec::new();
        for n in 0..200u64 {
            let host = n % 100;
            let (prefix, start_after) = match delimiter {
                None => (String::new(), Some(key(chunk(n).0[1] as u64 * big / 256))),
                Some(_) => (format!("backup/host-{host:02}/"), None),
            };
            let q = ListQuery {
                prefix,
                delimiter: delimiter.map(str::to_string),
                start_after,
                max_keys: 1000,
            };
            let start = Instant::now();
            let page = store.list_objects(&b, &q).await?;
            lat.push(start.elapsed());
            if page.objects.len() + page.common_prefixes.len() == 0 {
                return Err("empty page".into());
            }
        }
        lat.sort();
        let what = match delimiter {
            None => "ListObjectsV2 page of 1,000 keys (start-after at random places)",
            Some(_) => "ListObjectsV2 page of 1,000 keys, prefix backup/host-NN/ delimiter /",
        };
        println!(
            "{what} from {big} keys: p50 {} p99 {} max {}",
            ms(percentile(&lat, 0.5)),
            ms(percentile(&lat, 0.99)),
            ms(lat[lat.len() - 1])
        );
    }
    // A fully folded listing: 100 common prefixes out of the whole bucket.
    let start = Instant::now();
    let page = store
        .list_objects(
            &b,
            &ListQuery {
                prefix: "backup/".into(),
                delimiter: Some("/".into()),
                start_after: None,
                max_keys: 1000,
            },
        )
        .await?;
    println!(
        "folded listing (prefix backup/, delimiter /): {} common prefixes from {big} keys in {}",
        page.common_prefixes.len(),
        ms(start.elapsed())
    );
    let stats = store.stats().await?;
    println!(
        "stats: {} objects, {} chunks; file size {:.0} MiB",
        stats.objects,
        stats.chunks,
        std::fs::metadata(dir.path().join("bench.redb"))?.len() as f64 / (1 << 20) as f64
    );
    Ok(())
}
