//! Benchmark of the metadata backends, side by side: the embedded (redb) store and the
//! Cassandra/ScyllaDB store, with the same workload in one run.
//!
//! ```text
//! cargo run --release -p sdfbs-metadata --example meta_bench -- \
//!     [--keys N] [--backend embedded|cassandra|both] [--scylla HOST:PORT] \
//!     [--cassandra-load auto|commits|index]
//! ```
//!
//! `--backend` defaults to `both` when a Cassandra node is named (`--scylla`, or the
//! `SDFBS_TEST_SCYLLA` variable the tests use), else to `embedded`. For each backend it measures:
//! * commits per second of 1-chunk objects on a fresh bucket, with 1 and with 16 concurrent
//!   writers (at most 2,000 and 20,000 commits, and at most 15 s each);
//! * the latency of `get_object_for_read(bucket, key, 4)`, all a GET reads before its first
//!   chunk, on the big bucket (`--keys`, default 1,000,000), one at a time, p50/p99, over
//!   10,000 keys spread evenly over the bucket and taken in random order;
//! * one ListObjectsV2 page (`list_objects`, max_keys 1,000, start_after at random places) from
//!   the big bucket, p50/p99/max over 200 pages, without a delimiter and with prefix
//!   `backup/host-NN/` and delimiter `/`; and one fully folded listing (100 common prefixes).
//!
//! How the big bucket is loaded:
//! * embedded: every key through ordinary commits (256 concurrent writers);
//! * Cassandra: first the 10,000 keys the GETs read, through ordinary commits (64 writers; the
//!   first 10 s of it measure the commit rate at that concurrency). If the rest would take more
//!   than 8 minutes at that rate (`--cassandra-load auto`, the default) or with
//!   `--cassandra-load index`, the other keys get only their listing-index rows, written with
//!   plain CQL inserts (`meta_bench/index_load.rs`), and the listing figures are for the index
//!   read path; `--cassandra-load commits` commits every key. Then it waits (at most 5 minutes)
//!   for the node to finish compacting the keyspace, as it would have long before a bucket of
//!   that size is listed in service. Only those 10,000 keys (and the commit runs' keys) have
//!   partitions in `objects`, so the GETs look keys up in a smaller table than a full load gives.
//!
//! The embedded store lives in a temporary directory removed at the end; the Cassandra store in
//! a fresh keyspace `sdfbs_bench_<uuid>`, dropped at the end, also after an error or Ctrl-C.

#[path = "meta_bench/index_load.rs"]
mod index_load;
#[path = "meta_bench/report.rs"]
mod report;

use index_load::{IndexLoader, ListingRow};
use report::{fsync_latency, machine_state, ms, print_table, Figures, Latency};
use sdfbs_metadata::embedded::EmbeddedStore;
use sdfbs_metadata::scylla::{ScyllaConfig, ScyllaStore};
use sdfbs_metadata::{
    now_millis, BucketRecord, ChunkId, ChunkPlacement, ListQuery, ManifestEntry, MetadataStore,
    ObjectRecord, PutCondition, VersioningState,
};
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Commits per measurement with 1 and with 16 writers, and the time limit of each.
const COMMIT_RUNS: [(usize, u64); 2] = [(1, 2_000), (16, 20_000)];
const COMMIT_TIME_LIMIT: Duration = Duration::from_secs(15);
/// Keys read by the GET measurement (and committed first on Cassandra).
const GET_KEYS: u64 = 10_000;
/// Pages per listing measurement.
const PAGES: u64 = 200;
const EMBEDDED_LOAD_WRITERS: usize = 256;
const CASSANDRA_LOAD_WRITERS: usize = 64;
/// How long the Cassandra commit rate is measured before the load method is chosen.
const RATE_PROBE: Duration = Duration::from_secs(10);
/// Longest load through commits `--cassandra-load auto` accepts.
const MAX_COMMIT_LOAD: Duration = Duration::from_secs(8 * 60);
/// Longest wait, after the load, for Cassandra to finish compacting the benchmark's tables.
const COMPACTION_WAIT: Duration = Duration::from_secs(5 * 60);

// ----- the workload -----

fn bucket(name: &str) -> BucketRecord {
    BucketRecord {
        name: name.into(),
        id: format!("id-{name}"),
        created: now_millis(),
        owner: "AKBENCH".into(),
        versioning: VersioningState::Unversioned,
        shard_count: 16, // what the gateway gives a new bucket
    }
}

/// A well-mixed 64-bit value of `n` (splitmix64's finalizer).
fn mix(n: u64) -> u64 {
    let mut x = n.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

/// A chunk id spread like SHA-256 would be (a cheap mix, not a hash of real data).
fn chunk(n: u64) -> ChunkId {
    let mut id = [0u8; 32];
    for (j, part) in id.chunks_mut(8).enumerate() {
        part.copy_from_slice(&mix(n.wrapping_mul(4).wrapping_add(j as u64)).to_be_bytes());
    }
    ChunkId(id)
}

/// Keys spread over 100 "directories" so that delimiter listings have something to fold.
fn key(i: u64) -> String {
    format!("backup/host-{:02}/file-{:09}.bin", i % 100, i)
}

fn object(i: u64) -> ObjectRecord {
    ObjectRecord {
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
    }
}

async fn commit_one(store: &dyn MetadataStore, b: &BucketRecord, i: u64) -> Result<(), BoxError> {
    let c = chunk(i);
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
        .commit_object(
            b,
            object(i),
            vec![entry],
            vec![placement],
            PutCondition::None,
        )
        .await?;
    Ok(())
}

/// Commits the keys `indices` of `b` from `writers` concurrent tasks. No new commit starts
/// after `limit`. Returns how many were committed (the first ones of `indices`) and the time.
async fn commit_many(
    store: &Arc<dyn MetadataStore>,
    b: &BucketRecord,
    indices: Arc<[u64]>,
    writers: usize,
    limit: Option<Duration>,
) -> Result<(u64, Duration), BoxError> {
    let next = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let count = indices.len() as u64;
    let tasks: Vec<_> = (0..writers)
        .map(|_| {
            let (store, b, next, indices) =
                (store.clone(), b.clone(), next.clone(), indices.clone());
            tokio::spawn(async move {
                loop {
                    if limit.is_some_and(|l| start.elapsed() >= l) {
                        return Ok::<(), BoxError>(());
                    }
                    let n = next.fetch_add(1, Ordering::Relaxed);
                    if n >= count {
                        return Ok(());
                    }
                    commit_one(store.as_ref(), &b, indices[n as usize]).await?;
                    if n > 0 && n % 100_000 == 0 {
                        eprintln!("  committed {n} keys ({:.0?})", start.elapsed());
                    }
                }
            })
        })
        .collect();
    for t in tasks {
        t.await??;
    }
    let done = next.load(Ordering::Relaxed).min(count);
    Ok((done, start.elapsed()))
}

/// The keys the GETs read: `GET_KEYS` of them, evenly spread over `0..big`.
fn get_keys(big: u64) -> Vec<u64> {
    let n = GET_KEYS.min(big);
    let stride = big / n;
    (0..n).map(|j| j * stride).collect()
}

// ----- the measurements, the same for every backend -----

async fn measure_commits(
    store: &Arc<dyn MetadataStore>,
) -> Result<Vec<(usize, u64, Duration)>, BoxError> {
    let mut out = Vec::new();
    for (writers, count) in COMMIT_RUNS {
        let b = bucket(&format!("commits-{writers}"));
        store.create_bucket(b.clone()).await?;
        let indices: Arc<[u64]> = (0..count).collect();
        let (done, took) =
            commit_many(store, &b, indices, writers, Some(COMMIT_TIME_LIMIT)).await?;
        println!(
            "commits, 1-chunk objects, {writers:>2} writer(s): {done} in {:.2} s = {:.0} commits/s",
            took.as_secs_f64(),
            done as f64 / took.as_secs_f64()
        );
        out.push((writers, done, took));
    }
    Ok(out)
}

async fn measure_gets(
    store: &Arc<dyn MetadataStore>,
    b: &BucketRecord,
    big: u64,
) -> Result<Latency, BoxError> {
    let mut keys = get_keys(big);
    // Random order (Fisher-Yates with the mix as the random source).
    for j in (1..keys.len()).rev() {
        keys.swap(j, (mix(j as u64 ^ 0x6e7) % (j as u64 + 1)) as usize);
    }
    let mut lat = Vec::with_capacity(keys.len());
    for i in keys {
        let k = key(i);
        let start = Instant::now();
        let got = store.get_object_for_read(&b.name, &k, 4).await?;
        lat.push(start.elapsed());
        match got {
            Some((_, Some(o), Some((manifest, records))))
                if o.key == k
                    && manifest.len() == 1
                    && records.first().is_some_and(Option::is_some) => {}
            other => return Err(format!("GET of `{k}`: unexpected answer {other:?}").into()),
        }
    }
    let l = Latency::of(lat, 0);
    println!(
        "get_object_for_read(bucket, key, 4) on {big} keys: p50 {} ms p99 {} ms max {} ms ({} GETs, one at a time)",
        ms(l.p50),
        ms(l.p99),
        ms(l.max),
        l.samples
    );
    Ok(l)
}

/// One 1,000-key page at `PAGES` random places, without and with a delimiter.
async fn measure_pages(
    store: &Arc<dyn MetadataStore>,
    b: &BucketRecord,
    big: u64,
) -> Result<Vec<Latency>, BoxError> {
    // Places chosen so that a page is full when the bucket is big enough: a start-after key
    // at least 1,000 keys before the end of its directory.
    let per_dir = big / 100;
    let room = per_dir.saturating_sub(1000).max(1);
    let mut out = Vec::new();
    for delimiter in [None, Some("/")] {
        let mut lat = Vec::new();
        let mut entries = 0;
        for n in 0..PAGES {
            let r = mix(n ^ 0x11_57);
            let dir = r % 100;
            let start_after = key(dir + 100 * ((r >> 8) % room));
            let q = ListQuery {
                prefix: match delimiter {
                    None => String::new(),
                    Some(_) => format!("backup/host-{dir:02}/"),
                },
                delimiter: delimiter.map(str::to_string),
                start_after: Some(start_after),
                max_keys: 1000,
            };
            let start = Instant::now();
            let page = store.list_objects(b, &q).await?;
            lat.push(start.elapsed());
            let got = page.objects.len() + page.common_prefixes.len();
            if got == 0 || (per_dir > 1000 && got != 1000) {
                return Err(format!("page {q:?} holds {got} entries").into());
            }
            entries += got;
        }
        let l = Latency::of(lat, entries);
        let what = match delimiter {
            None => "ListObjectsV2 page, start-after at random places",
            Some(_) => "ListObjectsV2 page, prefix backup/host-NN/ delimiter /, start-after at random places",
        };
        println!(
            "{what}, from {big} keys: p50 {} ms p99 {} ms max {} ms ({} pages of {:.0} entries)",
            ms(l.p50),
            ms(l.p99),
            ms(l.max),
            l.samples,
            l.mean_entries
        );
        out.push(l);
    }
    Ok(out)
}

/// A fully folded listing: 100 common prefixes out of the whole bucket.
async fn measure_folded(
    store: &Arc<dyn MetadataStore>,
    b: &BucketRecord,
    big: u64,
) -> Result<(usize, Duration), BoxError> {
    let q = ListQuery {
        prefix: "backup/".into(),
        delimiter: Some("/".into()),
        start_after: None,
        max_keys: 1000,
    };
    let start = Instant::now();
    let page = store.list_objects(b, &q).await?;
    let took = start.elapsed();
    println!(
        "folded listing (prefix backup/, delimiter /): {} common prefixes from {big} keys in {} ms",
        page.common_prefixes.len(),
        ms(took)
    );
    Ok((page.common_prefixes.len(), took))
}

/// Everything but the load, in the order of the report.
async fn measure(
    backend: String,
    store: &Arc<dyn MetadataStore>,
    big: u64,
    load: impl Future<Output = Result<(BucketRecord, String), BoxError>>,
    commits: Vec<(usize, u64, Duration)>,
    state_start: String,
) -> Result<Figures, BoxError> {
    let (b, load) = load.await?;
    let get = measure_gets(store, &b, big).await?;
    let pages = measure_pages(store, &b, big).await?;
    let folded = measure_folded(store, &b, big).await?;
    let end = machine_state();
    println!("machine at the end: {end}");
    Ok(Figures {
        backend,
        commits,
        load,
        get,
        pages,
        folded,
        fsync: None,
        state: (state_start, end),
    })
}

// ----- the backends -----

async fn run_embedded(big: u64) -> Result<Figures, BoxError> {
    let start_state = machine_state();
    println!("== embedded (redb) == machine at the start: {start_state}");
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("bench.redb");
    let probe_dir = dir.path().to_owned();
    let fsync = tokio::task::spawn_blocking(move || fsync_latency(&probe_dir)).await??;
    println!(
        "fsync of a 4 KiB write in the store's directory: p50 {} ms p99 {} ms ({} writes)",
        ms(fsync.p50),
        ms(fsync.p99),
        fsync.samples
    );
    let embedded = EmbeddedStore::open(&path).await?;
    let store: Arc<dyn MetadataStore> = Arc::new(embedded.clone());
    let commits = measure_commits(&store).await?;
    let load = async {
        let b = bucket("big");
        store.create_bucket(b.clone()).await?;
        let all: Arc<[u64]> = (0..big).collect();
        let (done, took) = commit_many(&store, &b, all, EMBEDDED_LOAD_WRITERS, None).await?;
        let line = format!(
            "all {done} keys through ordinary commits, {EMBEDDED_LOAD_WRITERS} writers: {:.1} s = {:.0} commits/s",
            took.as_secs_f64(),
            done as f64 / took.as_secs_f64()
        );
        println!("load: {line}");
        Ok((b, line))
    };
    let mut figures = measure("embedded".into(), &store, big, load, commits, start_state).await?;
    figures.fsync = Some(fsync);
    let stats = embedded.stats().await?;
    println!(
        "stats: {} objects, {} chunks; file size {:.0} MiB",
        stats.objects,
        stats.chunks,
        std::fs::metadata(&path)?.len() as f64 / f64::from(1 << 20)
    );
    Ok(figures)
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum CassandraLoad {
    Auto,
    Commits,
    Index,
}

/// Loads Cassandra's big bucket (see the module docs); returns it and how it was loaded.
async fn load_cassandra(
    store: &Arc<dyn MetadataStore>,
    loader: &IndexLoader,
    big: u64,
    mode: CassandraLoad,
) -> Result<(BucketRecord, String), BoxError> {
    let b = bucket("big");
    store.create_bucket(b.clone()).await?;
    let read_keys = get_keys(big);
    let w = CASSANDRA_LOAD_WRITERS;
    let (probed, probe_time) =
        commit_many(store, &b, read_keys.clone().into(), w, Some(RATE_PROBE)).await?;
    let rate = probed as f64 / probe_time.as_secs_f64();
    let projected = Duration::from_secs_f64(big as f64 / rate.max(1e-3));
    println!(
        "commit rate, {w} writers on the big bucket: {probed} in {:.2} s = {rate:.0} commits/s; all {big} keys would take {:.0} s",
        probe_time.as_secs_f64(),
        projected.as_secs_f64()
    );
    let (rest, rest_time) = commit_many(
        store,
        &b,
        read_keys[probed as usize..].to_vec().into(),
        w,
        None,
    )
    .await?;
    let committed = probed + rest;
    let commit_time = probe_time + rest_time;
    loader.check_shard(&b.id, b.shard_count, &key(0)).await?;
    let stride = big / read_keys.len() as u64;
    let others: Vec<u64> = (0..big)
        .filter(|i| i % stride != 0 || i / stride >= read_keys.len() as u64)
        .collect();
    let by_index = match mode {
        CassandraLoad::Index => true,
        CassandraLoad::Commits => false,
        CassandraLoad::Auto => projected > MAX_COMMIT_LOAD,
    };
    let line = if by_index {
        let (rows, took) = loader
            .load(&b.id, b.shard_count, &others, |i| ListingRow {
                key: key(i),
                version_id: format!("ver-{i:012}"),
                record: serde_json::to_string(&object(i)).unwrap_or_default(),
            })
            .await?;
        format!(
            "{committed} keys (the GETs' keys: one in {stride}) through ordinary commits, {w} writers: {:.1} s = {:.0} commits/s; \
             the other {rows} keys as listing-index rows only, plain CQL inserts (unlogged one-shard batches of 8, 32 in flight): {:.1} s = {:.0} rows/s",
            commit_time.as_secs_f64(),
            committed as f64 / commit_time.as_secs_f64(),
            took.as_secs_f64(),
            rows as f64 / took.as_secs_f64()
        )
    } else {
        let (done, took) = commit_many(store, &b, others.into(), w, None).await?;
        let (all, time) = (committed + done, commit_time + took);
        format!(
            "all {all} keys through ordinary commits, {w} writers: {:.1} s = {:.0} commits/s",
            time.as_secs_f64(),
            all as f64 / time.as_secs_f64()
        )
    };
    let (waited, settled) = loader.wait_for_compactions(COMPACTION_WAIT).await?;
    let line = format!(
        "{line}; then {} compactions of the keyspace ({:.0} s)",
        if settled {
            "waited for the end of"
        } else {
            "gave up waiting for"
        },
        waited.as_secs_f64()
    );
    println!("load: {line}");
    Ok((b, line))
}

async fn run_cassandra(host: &str, big: u64, mode: CassandraLoad) -> Result<Figures, BoxError> {
    let keyspace = format!("sdfbs_bench_{}", uuid::Uuid::new_v4().simple());
    let config = ScyllaConfig::from_spec(&format!("{host}/{keyspace}"))?;
    let run = async {
        let scylla = ScyllaStore::connect(config.clone()).await?;
        let loader = IndexLoader::connect(&config.hosts, &config.keyspace).await?;
        let backend = format!("Cassandra {}", loader.release_version().await?);
        let start_state = machine_state();
        println!(
            "== {backend} on {host}, keyspace {keyspace} == machine at the start: {start_state}"
        );
        let store: Arc<dyn MetadataStore> = Arc::new(scylla);
        let commits = measure_commits(&store).await?;
        let load = load_cassandra(&store, &loader, big, mode);
        measure(backend, &store, big, load, commits, start_state).await
    };
    let outcome = interruptible(run).await;
    // Dropped whatever happened: a benchmark keyspace holds a million rows.
    match sdfbs_metadata::scylla::drop_keyspace(&config).await {
        Ok(()) => println!("dropped keyspace {keyspace}"),
        Err(e) => eprintln!("could not drop keyspace {keyspace} (drop it by hand): {e}"),
    }
    outcome
}

/// Runs `fut` unless Ctrl-C comes first, so that the caller's clean-up still runs.
async fn interruptible<T>(fut: impl Future<Output = Result<T, BoxError>>) -> Result<T, BoxError> {
    tokio::select! {
        r = fut => r,
        _ = tokio::signal::ctrl_c() => Err("interrupted".into()),
    }
}

// ----- options -----

struct Options {
    keys: u64,
    embedded: bool,
    cassandra: Option<String>,
    cassandra_load: CassandraLoad,
}

const USAGE: &str = "usage: meta_bench [--keys N] [--backend embedded|cassandra|both] \
                     [--scylla HOST:PORT] [--cassandra-load auto|commits|index]";

fn parse_options() -> Result<Options, BoxError> {
    let mut keys = 1_000_000;
    let mut backend = None;
    let mut scylla = std::env::var("SDFBS_TEST_SCYLLA").ok();
    let mut cassandra_load = CassandraLoad::Auto;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || {
            args.next()
                .ok_or_else(|| format!("{arg} needs a value; {USAGE}"))
        };
        match arg.as_str() {
            "--keys" => keys = value()?.parse()?,
            "--backend" => backend = Some(value()?),
            "--scylla" => scylla = Some(value()?),
            "--cassandra-load" => {
                cassandra_load = match value()?.as_str() {
                    "auto" => CassandraLoad::Auto,
                    "commits" => CassandraLoad::Commits,
                    "index" => CassandraLoad::Index,
                    other => {
                        return Err(format!("unknown --cassandra-load {other}; {USAGE}").into())
                    }
                }
            }
            // The older form: the number of keys alone.
            n if n.parse::<u64>().is_ok() => keys = n.parse()?,
            other => return Err(format!("unknown argument {other}; {USAGE}").into()),
        }
    }
    if keys < 100 {
        return Err(format!("--keys {keys}: at least 100 keys (one per directory)").into());
    }
    let backend =
        backend.unwrap_or_else(|| if scylla.is_some() { "both" } else { "embedded" }.to_owned());
    let (embedded, cassandra) = match backend.as_str() {
        "embedded" => (true, false),
        "cassandra" => (false, true),
        "both" => (true, true),
        other => return Err(format!("unknown --backend {other}; {USAGE}").into()),
    };
    if cassandra && scylla.is_none() {
        return Err(
            "--backend cassandra needs a node: --scylla HOST:PORT or SDFBS_TEST_SCYLLA".into(),
        );
    }
    Ok(Options {
        keys,
        embedded,
        cassandra: if cassandra { scylla } else { None },
        cassandra_load,
    })
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let opts = parse_options()?;
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    println!(
        "meta_bench: {} keys in the big bucket; {cores} cores",
        opts.keys
    );
    let mut all = Vec::new();
    if opts.embedded {
        all.push(interruptible(run_embedded(opts.keys)).await?);
    }
    if let Some(host) = &opts.cassandra {
        all.push(run_cassandra(host, opts.keys, opts.cassandra_load).await?);
    }
    print_table(opts.keys, &all);
    Ok(())
}
