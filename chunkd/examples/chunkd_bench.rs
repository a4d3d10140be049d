//! chunkd throughput benchmark: PUT and GET of 1 MiB chunks with 1 and 8 concurrent clients on
//! loopback, next to a plain write of the same bytes with fsync on the same disk, in the same
//! run.
//!
//! Run: `cargo run --release -p sdfbs-chunkd --example chunkd_bench`
//!
//! Environment: `CHUNKD_BENCH_DIR` (default: the system temp dir) picks the disk;
//! `CHUNKD_BENCH_CHUNKS` (default 256) the number of 1 MiB chunks per measurement;
//! `CHUNKD_BENCH_ROUNDS` (default 5) how many rounds; the figures are the median per
//! measurement (the machine is shared, so single runs are noisy);
//! `CHUNKD_BENCH_CPU=1` prints, for every write phase of a round, its wall time and this
//! process's CPU time;
//! `CHUNKD_BENCH_CACHE_SIZE` (like `1GiB`, the default, or `1TiB` for a budget never reached,
//! as before the budget existed) sets the page-cache budget of the node and of the floor store;
//! `CHUNKD_BENCH_TARGET=http://HOST:PORT` sends the PUTs and GETs to a chunkd started
//! separately (with `--cluster-secret bench-secret`), so that its CPU time and profile can be
//! taken apart from the client's. Every run writes new data, so a node can be reused.
//!
//! The node runs in-process (`chunkd::start`) on 127.0.0.1 with its own HTTP listener; the
//! clients are `ChunkClient`s, exactly what the gateway uses. The baseline writes every chunk
//! to its own file with `write_all` + `fsync` (what a PUT must do at the least), with 1 and 8
//! threads. Each PUT phase stores fresh chunks, so every PUT really writes and fsyncs.
//!
//! A second baseline writes the same way and then drops each file's pages from the page cache
//! (`posix_fadvise(DONTNEED)`), which is what chunkd does with chunks beyond its page-cache
//! budget (`--cache-size`, default 1 GiB). On this VM a write into pages the guest has not
//! touched recently costs far more CPU than one into pages it reuses, so this is the fastest
//! way to write here; the target is set against the plain baseline.
//!
//! Before the rounds, the node and the floor store each write their cache budget once (the
//! node's rate for that is printed as the warm-up): a node that has just started has no
//! dropped pages to reuse yet. After the warm GETs (the chunks just written, in the page
//! cache) the put1 chunks are dropped from the page cache and read by 8 clients from the disk.
//!
//! One more write phase gives the floor of a PUT on this machine: 8 threads storing through
//! chunkd's own [`Store`] (SHA-256, temporary file, fsync, rename, directory fsync) with the
//! bytes already in memory, so no network and no HTTP. A PUT must do all of that and receive
//! the bytes too.
//!
//! Every write phase of a round is cut into `CHUNKD_BENCH_SLICES` slices (default 8), and the
//! phases take turns slice by slice, in an order that rotates. This machine's disk accepts a
//! burst of about 2 GiB of fsynced writes at 550-650 MiB/s and then slows to a sustained rate
//! near 150 MiB/s for one writer (measured with a plain write + fdatasync loop; see
//! docs/bench-chunkd.md). Run one after the other, the first phases of a round had the burst
//! and the last ones (the PUTs) the slow rate; taking turns gives every phase the same share of
//! both.

use std::io::Write;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use chunkd::store::Store;
use chunkd::wire::ChunkId;
use chunkd::{ChunkClient, NodeConfig, PutOutcome};
use sha2::{Digest, Sha256};

const CHUNK: usize = 1 << 20;
const SECRET: &str = "bench-secret";

type Result<T> = std::result::Result<T, Box<dyn std::error::Error + Send + Sync>>;

fn main() -> Result<()> {
    let chunks: usize = std::env::var("CHUNKD_BENCH_CHUNKS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(256);
    let rounds: usize = std::env::var("CHUNKD_BENCH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5)
        .max(1);
    let base = std::env::var_os("CHUNKD_BENCH_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(std::env::temp_dir);
    let dir = tempfile::tempdir_in(&base)?;
    println!(
        "chunkd_bench: {rounds} rounds, {chunks} chunks of 1 MiB per measurement, data in {}",
        dir.path().display()
    );

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(run(dir.path(), chunks, rounds))
}

/// The measurements of one round, in MiB/s.
#[derive(Clone, Copy, Default)]
struct Round {
    plain1: f64,
    plain8: f64,
    dropped8: f64,
    atomic8: f64,
    store8: f64,
    put1: f64,
    put8: f64,
    get1: f64,
    get8: f64,
    /// GET with 8 clients of chunks whose pages were dropped first (`None` against a node
    /// started separately, whose files the benchmark does not know).
    get8_cold: Option<f64>,
}

async fn run(dir: &Path, chunks: usize, rounds: usize) -> Result<()> {
    let cache_size = match std::env::var("CHUNKD_BENCH_CACHE_SIZE") {
        Ok(v) => chunkd::size::parse_size(&v)?,
        Err(_) => chunkd::store::DEFAULT_CACHE_SIZE,
    };
    let node_dir = dir.join("node");
    let mut config = NodeConfig::new(node_dir.clone(), "127.0.0.1:0".parse()?, SECRET);
    config.scrub_rate = 0; // measure the request path, not the background scrubber
    config.cache_size = cache_size;
    let node = chunkd::start(config).await?;
    let external = std::env::var_os("CHUNKD_BENCH_TARGET").is_some();
    let target = std::env::var("CHUNKD_BENCH_TARGET")
        .unwrap_or_else(|_| format!("http://{}", node.local_addr()));
    let client = ChunkClient::new(&target, SECRET);
    let plain_dir = dir.join("plain");
    std::fs::create_dir_all(&plain_dir)?;

    // The floor phase writes through chunkd's own store (its on-disk protocol and hashing) in
    // a second data directory, without network.
    let floor_store = Arc::new(Store::open(&dir.join("floor"), None)?.with_cache_size(cache_size));
    let slices: usize = std::env::var("CHUNKD_BENCH_SLICES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(8)
        .clamp(1, chunks);
    // Warm-up, timed on its own: each store writes 1 GiB (the default page-cache budget)
    // once. Until its budget is full every chunk lands in memory the VM has not touched since
    // it started (expensive here, see docs/bench-chunkd.md); afterwards its writes reuse the
    // pages of the chunks that fall out of the budget, which is what a node that has been
    // running does. The warm-up is the same whatever CHUNKD_BENCH_CACHE_SIZE says, so runs
    // with different budgets can be compared.
    let warmup_chunks = (chunkd::store::DEFAULT_CACHE_SIZE as usize).div_ceil(CHUNK);
    // Fresh data in every run, so every write really writes.
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() << 8)
        .unwrap_or(0);
    let warmup_seed = seed ^ 0xFF;
    let node_warmup: Chunks = Arc::new(make_chunks(warmup_seed, warmup_chunks));
    let (wall, _) = timed(put_all(&client, &node_warmup, 8)).await?;
    drop(node_warmup);
    println!(
        "warm-up: the node's first {warmup_chunks} MiB after start, PUT by 8 clients: {:.0} MiB/s (page-cache budget {} MiB)",
        warmup_chunks as f64 / wall.as_secs_f64(),
        cache_size >> 20
    );
    let floor_warmup: Chunks = Arc::new(make_chunks(warmup_seed ^ 0xFF00, warmup_chunks));
    store_direct(&floor_store, floor_warmup, 8).await?;

    let mut results = Vec::new();
    for round in 0..rounds as u64 {
        // Fresh data for every write phase of every round.
        let sets: Vec<Vec<Chunks>> = (0..WRITES.len() as u64)
            .map(|w| sliced(make_chunks(seed + round * 16 + w, chunks), slices))
            .collect();
        // The writes are interleaved slice by slice, in an order that rotates, so that every
        // kind of write meets the disk in the same states (see the module doc: this VM's disk
        // takes a burst of writes fast, then slows down to its sustained rate).
        let mut took = [Duration::ZERO; WRITES.len()];
        let mut cpu = [0.0f64; WRITES.len()];
        // `slice` indexes the slices of every phase's set, not one vector.
        #[allow(clippy::needless_range_loop)]
        for slice in 0..slices {
            for step in 0..WRITES.len() {
                let w = (slice + step) % WRITES.len();
                let set = Arc::clone(&sets[w][slice]);
                let (wall, used) = timed(async {
                    match WRITES[w] {
                        Phase::Plain1 => plain_write(&plain_dir, &set, 1, Durability::Fsync).await,
                        Phase::Plain8 => plain_write(&plain_dir, &set, 8, Durability::Fsync).await,
                        Phase::Dropped8 => {
                            plain_write(&plain_dir, &set, 8, Durability::FsyncDropPages).await
                        }
                        Phase::Atomic8 => {
                            plain_write(&plain_dir, &set, 8, Durability::AtomicRename).await
                        }
                        Phase::Store8 => store_direct(&floor_store, set, 8).await,
                        Phase::Put1 => put_all(&client, &set, 1).await,
                        Phase::Put8 => put_all(&client, &set, 8).await,
                    }
                })
                .await?;
                took[w] += wall;
                cpu[w] += used;
            }
        }
        let mib = chunks as f64;
        let rate = |w: Phase| mib / took[w as usize].as_secs_f64();
        if std::env::var_os("CHUNKD_BENCH_CPU").is_some() {
            for (w, kind) in WRITES.iter().enumerate() {
                eprintln!(
                    "  {kind:?}: {:.3} s wall, {:.3} s CPU (whole process), {:.2} ms CPU per MiB",
                    took[w].as_secs_f64(),
                    cpu[w],
                    1000.0 * cpu[w] / mib
                );
            }
        }
        // A phase's slices joined back into its whole set.
        let joined = |phase: Phase| -> Chunks {
            Arc::new(
                sets[phase as usize]
                    .iter()
                    .flat_map(|s| s.iter().cloned())
                    .collect(),
            )
        };
        let (put_set1, put_set8) = (joined(Phase::Put1), joined(Phase::Put8));
        drop(sets);
        let get1 = mib / timed(get_all(&client, &put_set1, 1)).await?.0.as_secs_f64();
        let get8 = mib / timed(get_all(&client, &put_set8, 8)).await?.0.as_secs_f64();
        // The same GETs once more, from the disk: the pages of the put1 chunks are dropped
        // first (only possible with the node in this process, whose files are known).
        let get8_cold = if external {
            None
        } else {
            drop_cached(&node_dir, &put_set1)?;
            Some(mib / timed(get_all(&client, &put_set1, 8)).await?.0.as_secs_f64())
        };
        // Untimed: the bytes read back are the bytes written.
        verify_all(&client, &put_set8).await?;
        let r = Round {
            plain1: rate(Phase::Plain1),
            plain8: rate(Phase::Plain8),
            dropped8: rate(Phase::Dropped8),
            atomic8: rate(Phase::Atomic8),
            store8: rate(Phase::Store8),
            put1: rate(Phase::Put1),
            put8: rate(Phase::Put8),
            get1,
            get8,
            get8_cold,
        };
        println!(
            "round {}: plain1 {:.0}, plain8 {:.0}, dropped8 {:.0}, atomic8 {:.0}, store8 {:.0}, put1 {:.0}, put8 {:.0}, get1 {:.0}, get8 {:.0}, get8 cold {} MiB/s",
            round + 1, r.plain1, r.plain8, r.dropped8, r.atomic8, r.store8, r.put1, r.put8, r.get1, r.get8,
            r.get8_cold.map_or("-".to_owned(), |v| format!("{v:.0}"))
        );
        results.push(r);
        std::fs::remove_dir_all(&plain_dir)?;
        std::fs::create_dir_all(&plain_dir)?;
    }
    node.shutdown().await?;

    let median = |f: fn(&Round) -> f64| {
        let mut v: Vec<f64> = results.iter().map(f).collect();
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let m = Round {
        plain1: median(|r| r.plain1),
        plain8: median(|r| r.plain8),
        dropped8: median(|r| r.dropped8),
        atomic8: median(|r| r.atomic8),
        store8: median(|r| r.store8),
        put1: median(|r| r.put1),
        put8: median(|r| r.put8),
        get1: median(|r| r.get1),
        get8: median(|r| r.get8),
        get8_cold: results[0]
            .get8_cold
            .map(|_| median(|r| r.get8_cold.unwrap_or(0.0))),
    };
    println!();
    println!("Median of {rounds} rounds:");
    println!();
    println!("| measurement | clients | MiB/s |");
    println!("| --- | --- | --- |");
    println!(
        "| plain write + fsync, 1 file per chunk | 1 | {:.0} |",
        m.plain1
    );
    println!(
        "| plain write + fsync, 1 file per chunk | 8 | {:.0} |",
        m.plain8
    );
    println!(
        "| plain write + fsync, then its pages dropped from the page cache (chunkd's cache policy at its tightest) | 8 | {:.0} |",
        m.dropped8
    );
    println!(
        "| plain write + fsync, rename, directory fsync (chunkd's on-disk steps, no HTTP, no hashing) | 8 | {:.0} |",
        m.atomic8
    );
    println!(
        "| chunkd's store alone (hash, write, fsync, rename, directory fsync), no network | 8 | {:.0} |",
        m.store8
    );
    println!("| chunkd PUT 1 MiB | 1 | {:.0} |", m.put1);
    println!("| chunkd PUT 1 MiB | 8 | {:.0} |", m.put8);
    println!("| chunkd GET 1 MiB | 1 | {:.0} |", m.get1);
    println!("| chunkd GET 1 MiB | 8 | {:.0} |", m.get8);
    if let Some(cold) = m.get8_cold {
        println!("| chunkd GET 1 MiB, pages dropped first (read from the disk) | 8 | {cold:.0} |");
    }
    println!();
    println!(
        "PUT at 8 clients = {:.0} % of the plain fsync write rate at 8 writers ({:.0} % of 1 writer); target >= 70 %",
        100.0 * m.put8 / m.plain8,
        100.0 * m.put8 / m.plain1
    );
    println!(
        "PUT at 8 clients = {:.0} % of the plain write + fsync whose pages are dropped after",
        100.0 * m.put8 / m.dropped8
    );
    println!(
        "PUT at 8 clients = {:.0} % of the same on-disk steps (write, fsync, rename, directory fsync) without HTTP and hashing",
        100.0 * m.put8 / m.atomic8
    );
    println!(
        "chunkd's store alone, no network = {:.0} % of the plain fsync write rate at 8 writers",
        100.0 * m.store8 / m.plain8
    );
    println!(
        "GET at 8 clients = {:.2} GiB/s; target >= 1 GiB/s",
        m.get8 / 1024.0
    );
    Ok(())
}

fn make_chunks(phase: u64, n: usize) -> Vec<(ChunkId, Bytes)> {
    (0..n as u64)
        .map(|i| {
            let mut x = (phase << 32 | i).wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
            let mut data = Vec::with_capacity(CHUNK);
            while data.len() < CHUNK {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                data.extend_from_slice(&x.to_le_bytes());
            }
            let id = ChunkId(Sha256::digest(&data).into());
            (id, Bytes::from(data))
        })
        .collect()
}

/// Runs `f`; returns its wall time and the CPU time this process used meanwhile.
async fn timed<F: std::future::Future<Output = Result<()>>>(f: F) -> Result<(Duration, f64)> {
    let started = Instant::now();
    let cpu = cpu_seconds();
    f.await?;
    Ok((started.elapsed(), cpu_seconds() - cpu))
}

/// The timed writes of a round, each of `chunks` fresh chunks.
#[derive(Clone, Copy, Debug)]
enum Phase {
    /// The baseline: a plain write + fsync per chunk, by 1 writer.
    Plain1,
    /// The same, by 8 writers.
    Plain8,
    /// The same, each file's pages dropped from the page cache after its fsync.
    Dropped8,
    /// chunkd's on-disk steps without hashing, by 8 writers.
    Atomic8,
    /// chunkd's store alone, bytes in memory, 8 writers.
    Store8,
    /// chunkd PUTs over HTTP, 1 client.
    Put1,
    /// chunkd PUTs over HTTP, 8 clients.
    Put8,
}

/// Every write phase, in the order of `Phase`'s variants (indexed by `phase as usize`).
const WRITES: [Phase; 7] = [
    Phase::Plain1,
    Phase::Plain8,
    Phase::Dropped8,
    Phase::Atomic8,
    Phase::Store8,
    Phase::Put1,
    Phase::Put8,
];

/// Chunks (id, bytes) shared by the tasks of a phase.
type Chunks = Arc<Vec<(ChunkId, Bytes)>>;

/// `set` cut into `n` consecutive slices of (nearly) equal length (`n` <= its length).
fn sliced(set: Vec<(ChunkId, Bytes)>, n: usize) -> Vec<Chunks> {
    let len = set.len();
    (0..n)
        .map(|i| Arc::new(set[i * len / n..(i + 1) * len / n].to_vec()))
        .collect()
}

/// User + system CPU time of this process so far.
fn cpu_seconds() -> f64 {
    // SAFETY: getrusage only writes into the struct we pass.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) };
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    secs(usage.ru_utime) + secs(usage.ru_stime)
}

/// How much of chunkd's on-disk protocol a baseline write performs.
#[derive(Clone, Copy, PartialEq)]
enum Durability {
    /// Write the file and fsync its data: the "plain write with fsync".
    Fsync,
    /// The same, then `posix_fadvise(DONTNEED)` on the file: what chunkd does with the pages
    /// of chunks beyond its cache budget, here for every file.
    FsyncDropPages,
    /// What chunkd must do before it acknowledges: write a temporary file, fsync it, rename
    /// it into place, fsync the directory.
    AtomicRename,
}

/// The baseline: each chunk written to its own file and made durable, by `writers` threads.
async fn plain_write(
    dir: &Path,
    set: &Arc<Vec<(ChunkId, Bytes)>>,
    writers: usize,
    durability: Durability,
) -> Result<()> {
    let mut tasks = Vec::new();
    for w in 0..writers {
        let set = Arc::clone(set);
        let dir = dir.to_owned();
        tasks.push(tokio::task::spawn_blocking(move || -> Result<()> {
            for (id, data) in set.iter().skip(w).step_by(writers) {
                if durability != Durability::AtomicRename {
                    let mut file = std::fs::File::create(dir.join(id.to_hex()))?;
                    file.write_all(data)?;
                    file.sync_data()?;
                    if durability == Durability::FsyncDropPages {
                        chunkd::store::drop_pages(&file);
                    }
                    continue;
                }
                let tmp = dir.join(format!("{id}.tmp"));
                let mut file = std::fs::File::create(&tmp)?;
                file.write_all(data)?;
                file.sync_all()?;
                std::fs::rename(&tmp, dir.join(id.to_hex()))?;
                std::fs::File::open(&dir)?.sync_all()?;
            }
            Ok(())
        }));
    }
    for task in tasks {
        task.await??;
    }
    Ok(())
}

/// Drops the cached pages of the chunks of `set` in the node data directory `node_dir`
/// (`chunks/ab/cd/<id>`), so that the next GETs read them from the disk.
fn drop_cached(node_dir: &Path, set: &[(ChunkId, Bytes)]) -> Result<()> {
    for (id, _) in set {
        let path = chunkd::store::chunk_path_in(node_dir, id);
        chunkd::store::drop_pages(&std::fs::File::open(path)?);
    }
    Ok(())
}

/// Reads every chunk back and compares the bytes (outside the timed phases).
async fn verify_all(client: &ChunkClient, set: &Arc<Vec<(ChunkId, Bytes)>>) -> Result<()> {
    for (id, data) in set.iter() {
        if client.get(id).await? != *data {
            return Err(format!("chunk {id}: wrong bytes returned").into());
        }
    }
    Ok(())
}

/// Runs `op` on every chunk of `set`, spread over `clients` concurrent tasks.
async fn each_chunk<F, Fut>(set: &Arc<Vec<(ChunkId, Bytes)>>, clients: usize, op: F) -> Result<()>
where
    F: Fn(ChunkId, Bytes) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = Result<()>> + Send,
{
    let mut tasks = Vec::new();
    for c in 0..clients {
        let set = Arc::clone(set);
        let op = op.clone();
        tasks.push(tokio::spawn(async move {
            for (id, data) in set.iter().skip(c).step_by(clients) {
                op(*id, data.clone()).await?;
            }
            Ok::<(), Box<dyn std::error::Error + Send + Sync>>(())
        }));
    }
    for task in tasks {
        task.await??;
    }
    Ok(())
}

async fn put_all(
    client: &ChunkClient,
    set: &Arc<Vec<(ChunkId, Bytes)>>,
    clients: usize,
) -> Result<()> {
    let client = client.clone();
    each_chunk(set, clients, move |id, data| {
        let client = client.clone();
        async move {
            match client.put(&id, data).await? {
                PutOutcome::Created => Ok(()),
                PutOutcome::AlreadyPresent => {
                    Err(format!("chunk {id} unexpectedly already present").into())
                }
            }
        }
    })
    .await
}

async fn get_all(
    client: &ChunkClient,
    set: &Arc<Vec<(ChunkId, Bytes)>>,
    clients: usize,
) -> Result<()> {
    let client = client.clone();
    each_chunk(set, clients, move |id, data| {
        let client = client.clone();
        async move {
            let got = client.get(&id).await?;
            if got.len() != data.len() {
                return Err(format!("chunk {id}: {} bytes, not {}", got.len(), data.len()).into());
            }
            Ok(())
        }
    })
    .await
}

/// The floor of a PUT without HTTP: `writers` threads store their share of `set` through
/// chunkd's [`Store`] directly (SHA-256 while writing, fsync, rename into the fan-out
/// directory, directory fsync), with the bytes already in memory.
async fn store_direct(
    store: &Arc<Store>,
    set: Arc<Vec<(ChunkId, Bytes)>>,
    writers: usize,
) -> Result<()> {
    let mut tasks = Vec::new();
    for w in 0..writers {
        let (set, store) = (Arc::clone(&set), Arc::clone(store));
        tasks.push(tokio::task::spawn_blocking(move || -> Result<()> {
            for (id, data) in set.iter().skip(w).step_by(writers) {
                let mut temp = store.begin_write(id)?;
                temp.write(data)?;
                temp.commit()?;
            }
            Ok(())
        }));
    }
    for task in tasks {
        task.await??;
    }
    Ok(())
}
