//! Self-healing benchmark: how fast a 3-node cluster (replication 2) gets back to full
//! redundancy after losing a node holding 1 GiB, what that costs foreground GETs, and how fast
//! garbage collection empties the nodes afterwards. Writes the figures, the commands, the date
//! and the commit to `docs/bench-repair.md`.
//!
//! ```sh
//! cargo build --release -p sdfbs-gateway -p sdfbs-chunkd -p sdfbs-compat-tests --bins --example bench_repair
//! SDFBS_BIN_DIR=target/release target/release/examples/bench_repair
//! ```
//!
//! Every run starts a fresh cluster of separate processes on loopback (`sdfbs gateway` with
//! embedded metadata and three `chunkd`, see `Cluster`), with `--replication 2`,
//! `--node-down-after 2s`, `--gc-grace 1s --gc-interval 1s` (nothing is unreferenced before the
//! last phase, so the fast GC changes nothing before it) and the run's `--repair-rate`. Then:
//!
//! 1. uploads distinct random 32 MiB objects (4 at a time) until the fullest node holds at least
//!    1 GiB of chunk files (about 1.5 GiB of objects), and checks that every chunk has two
//!    files on the nodes (a chunk that has not is reported under "Anomalies", with the logs kept
//!    in /tmp; every run's logs are kept in /tmp/bench-repair-logs);
//! 2. idle: 5 s without any request (the cluster's background CPU: scrubbers, heartbeats, GC
//!    passes); baseline: 4 streams GET whole objects (bytes counted and discarded) for a fixed
//!    window;
//! 3. `kill -9` of the fullest node; measures the time until `sdfbs node list` shows it Down
//!    (polled every 100 ms), then the time from Down until every chunk has a file on both live
//!    nodes (every 100 ms, a stat of each chunk file still missing, then a walk of the nodes'
//!    `chunks/` trees to confirm), with the CPU time of every process and of the whole machine
//!    over that interval. In the runs "with reads", the 4 GET streams run from Down for the
//!    window (cut short if repair completes first);
//! 4. reads every object back and compares its SHA-256 (untimed);
//! 5. deletes every object (one DeleteObjects) and measures the time until no chunk file is left
//!    on the live nodes (the killed node's files stay on its disk: GC skips Down nodes).
//!
//! Configurations: `--repair-rate` 64 (the default) and 100000 (unlimited), each without and
//! with foreground reads during repair, interleaved, `BENCH_RUNS` rounds (3).
//! `BENCH_WINDOW_SECS` sets the read window (10); `BENCH_VICTIM_MIB` the bytes the killed node
//! must hold (1024), `BENCH_OBJECTS` the objects uploaded before checking it (48);
//! `BENCH_NO_DOC=1` prints the report without writing the docs (for trials).
//! The doc's hand-written notes, below the `NOTES_MARKER` line, are kept by reruns.

#[path = "../tests/common/mod.rs"]
mod common;

use std::collections::{BTreeSet, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{Delete, ObjectIdentifier};
use aws_sdk_s3::Client;
use aws_smithy_types::error::display::DisplayErrorContext;
use sdfbs_compat_tests::machine::{command_output, cpu_model, loadavg};
use sdfbs_compat_tests::{random_bytes, sha256_hex, Cluster, ClusterOptions};

const MIB: u64 = 1 << 20;
const OBJECT: usize = 32 << 20;
const BUCKET: &str = "bench";
/// Parallel GET streams of the read phases, and parallel PUTs of the upload.
const STREAMS: usize = 4;
/// The line of the doc below which hand-written notes are kept by reruns.
const NOTES_MARKER: &str = "<!-- notes: everything below this line is kept by reruns -->";
const POLL: Duration = Duration::from_millis(100);
/// The idle phase, which measures the cluster's background CPU and disk use.
const IDLE: Duration = Duration::from_secs(5);
/// Unlimited, in effect: far above what the machine can copy.
const UNLIMITED: u64 = 100_000;

fn mib(b: u64) -> f64 {
    b as f64 / MIB as f64
}

// ---------------------------------------------------------------------------------------------
// /proc: CPU time of processes and of the machine, disk bytes of processes.

/// Jiffies (10 ms) of user + system time of `pid` ("self" for this process, every thread).
fn cpu_ticks(pid: &str) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<u64> = rest
        .split_whitespace()
        .map(|v| v.parse().unwrap_or(0))
        .collect();
    // utime and stime: fields 14 and 15 of the line, 12 and 13 after the name (index 11, 12).
    f.get(11).copied().unwrap_or(0) + f.get(12).copied().unwrap_or(0)
}

/// (read_bytes, write_bytes) that `pid` caused to be fetched from or sent to storage.
fn io_bytes(pid: u32) -> (u64, u64) {
    let io = std::fs::read_to_string(format!("/proc/{pid}/io")).unwrap_or_default();
    let field = |name: &str| {
        io.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0)
    };
    (field("read_bytes:"), field("write_bytes:"))
}

/// Machine-wide jiffies from /proc/stat: (busy, iowait, total), over every core.
fn machine_ticks() -> (u64, u64, u64) {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let f: Vec<u64> = stat
        .lines()
        .next()
        .unwrap_or("")
        .split_whitespace()
        .skip(1)
        .map(|v| v.parse().unwrap_or(0))
        .collect();
    let get = |i: usize| f.get(i).copied().unwrap_or(0);
    // user nice system idle iowait irq softirq steal
    let total: u64 = (0..8).map(get).sum();
    let idle = get(3);
    let iowait = get(4);
    (total - idle - iowait, iowait, total)
}

/// Bytes read and written so far on the machine's disks (/proc/diskstats, whole devices listed
/// in /sys/block, without loop, RAM and device-mapper devices, which would count twice).
fn disk_bytes() -> (u64, u64) {
    let disks: HashSet<String> = std::fs::read_dir("/sys/block")
        .map(|d| {
            d.flatten()
                .filter_map(|e| e.file_name().to_str().map(str::to_string))
                .filter(|n| {
                    !["loop", "ram", "zram", "dm-", "md"]
                        .iter()
                        .any(|p| n.starts_with(p))
                })
                .collect()
        })
        .unwrap_or_default();
    let stats = std::fs::read_to_string("/proc/diskstats").unwrap_or_default();
    let mut read = 0;
    let mut written = 0;
    for line in stats.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() > 9 && disks.contains(f[2]) {
            // Sectors of 512 bytes, read (field 6) and written (field 10).
            read += f[5].parse::<u64>().unwrap_or(0) * 512;
            written += f[9].parse::<u64>().unwrap_or(0) * 512;
        }
    }
    (read, written)
}

/// The pid of the process whose command line has `dir` as an argument (a node by its data
/// directory), if one runs.
fn pid_with_arg(dir: &Path) -> Option<u32> {
    let want = dir.as_os_str().as_encoded_bytes();
    for e in std::fs::read_dir("/proc").ok()?.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else {
            continue;
        };
        let Ok(cmdline) = std::fs::read(e.path().join("cmdline")) else {
            continue;
        };
        if cmdline.split(|b| *b == 0).any(|a| a == want) {
            return Some(pid);
        }
    }
    None
}

/// Processes on the machine that are not this benchmark's: other test clusters' gateways and
/// nodes, compilers, Cassandra.
fn other_activity(ours: &Path) -> String {
    let ours = ours.as_os_str().as_encoded_bytes();
    let mut counts = std::collections::BTreeMap::<&str, usize>::new();
    if let Ok(entries) = std::fs::read_dir("/proc") {
        for e in entries.flatten() {
            if e.file_name()
                .to_str()
                .and_then(|n| n.parse::<u32>().ok())
                .is_none()
            {
                continue;
            }
            let Ok(cmdline) = std::fs::read(e.path().join("cmdline")) else {
                continue;
            };
            let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
            let prog = args.first().copied().unwrap_or_default();
            let name = prog.rsplit(|b| *b == b'/').next().unwrap_or_default();
            let is_ours = cmdline.windows(ours.len()).any(|w| w == ours);
            let kind = match name {
                b"rustc" => "rustc",
                b"cargo" => "cargo",
                b"java" => "java (Cassandra)",
                b"sdfbs" | b"chunkd" if !is_ours => "other sdfbs/chunkd",
                _ => continue,
            };
            *counts.entry(kind).or_default() += 1;
        }
    }
    if counts.is_empty() {
        "none".into()
    } else {
        counts
            .iter()
            .map(|(k, n)| format!("{n} {k}"))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// CPU and disk counters of the cluster's processes, this client and the machine at one time.
struct Snapshot {
    at: Instant,
    /// (label, pid, CPU ticks, (read, write) bytes); pid 0 is this process.
    procs: Vec<(String, u32, u64, (u64, u64))>,
    machine: (u64, u64, u64),
    /// Bytes read from and written to the machine's disks, by anyone.
    disks: (u64, u64),
}

impl Snapshot {
    fn take(procs: &[(String, u32)]) -> Snapshot {
        Snapshot {
            at: Instant::now(),
            procs: procs
                .iter()
                .map(|(label, pid)| {
                    let ticks = if *pid == 0 {
                        cpu_ticks("self")
                    } else {
                        cpu_ticks(&pid.to_string())
                    };
                    let io = if *pid == 0 { (0, 0) } else { io_bytes(*pid) };
                    (label.clone(), *pid, ticks, io)
                })
                .collect(),
            machine: machine_ticks(),
            disks: disk_bytes(),
        }
    }

    /// What happened between `self` (earlier) and `later`.
    fn until(&self, later: &Snapshot) -> Usage {
        let wall = later.at.duration_since(self.at).as_secs_f64();
        let mut procs = Vec::new();
        let mut ours = 0u64;
        let mut read = 0u64;
        let mut written = 0u64;
        for ((label, _, t0, io0), (_, _, t1, io1)) in self.procs.iter().zip(&later.procs) {
            let t = t1.saturating_sub(*t0);
            ours += t;
            read += io1.0.saturating_sub(io0.0);
            written += io1.1.saturating_sub(io0.1);
            procs.push((label.clone(), t as f64 / 100.0));
        }
        let busy = later.machine.0.saturating_sub(self.machine.0);
        let iowait = later.machine.1.saturating_sub(self.machine.1);
        let total = later.machine.2.saturating_sub(self.machine.2).max(1);
        Usage {
            wall,
            procs,
            others: busy.saturating_sub(ours) as f64 / 100.0,
            busy_pct: 100.0 * busy as f64 / total as f64,
            iowait_pct: 100.0 * iowait as f64 / total as f64,
            read,
            written,
            disk_read: later.disks.0.saturating_sub(self.disks.0),
            disk_written: later.disks.1.saturating_sub(self.disks.1),
        }
    }
}

/// CPU seconds per process over a phase, with the machine's busy and iowait shares.
struct Usage {
    wall: f64,
    procs: Vec<(String, f64)>,
    /// CPU seconds of every other process on the machine (busy time not accounted above).
    others: f64,
    /// Share of all cores' time busy, and in iowait, over the phase.
    busy_pct: f64,
    iowait_pct: f64,
    /// Bytes the cluster's processes read from / wrote to storage.
    read: u64,
    written: u64,
    /// Bytes read from / written to the machine's disks by anyone (the file system's journal
    /// included, which no process is charged for).
    disk_read: u64,
    disk_written: u64,
}

impl Usage {
    fn cells(&self) -> String {
        let procs: Vec<String> = self
            .procs
            .iter()
            .filter(|(l, s)| !(l.ends_with("(killed)") && *s == 0.0))
            .map(|(l, s)| format!("{l} {s:.1}"))
            .collect();
        format!(
            "{:.1} | {} | {:.1} | {:.0} % | {:.0} % | {:.0} / {:.0} | {:.0} / {:.0}",
            self.wall,
            procs.join(", "),
            self.others,
            self.busy_pct,
            self.iowait_pct,
            mib(self.read),
            mib(self.written),
            mib(self.disk_read),
            mib(self.disk_written)
        )
    }
}

// ---------------------------------------------------------------------------------------------
// Chunk files on disk.

/// Chunk ids and sizes of the files under `data_dir/chunks` (files named by 64 hex digits, as
/// `Cluster::chunk_files` finds them).
fn chunks_in(data_dir: &Path) -> Vec<(String, u64)> {
    let mut out = Vec::new();
    let mut stack = vec![data_dir.join("chunks")];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for e in entries.flatten() {
            let Ok(kind) = e.file_type() else { continue };
            if kind.is_dir() {
                stack.push(e.path());
            } else if let Some(name) = e.file_name().to_str() {
                if name.len() == 64 && name.bytes().all(|b| b.is_ascii_hexdigit()) {
                    let size = e.metadata().map(|m| m.len()).unwrap_or(0);
                    out.push((name.to_string(), size));
                }
            }
        }
    }
    out
}

/// Chunk ids found on disk under `data_dir`, without sizes (one readdir walk, no stat).
fn chunk_ids_in(data_dir: &Path) -> HashSet<String> {
    let mut out = HashSet::new();
    let mut stack = vec![data_dir.join("chunks")];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for e in entries.flatten() {
            let name = e.file_name();
            let Some(name) = name.to_str() else { continue };
            if name.len() == 64 && name.bytes().all(|b| b.is_ascii_hexdigit()) {
                out.insert(name.to_string());
            } else if e.file_type().is_ok_and(|k| k.is_dir()) {
                stack.push(e.path());
            }
        }
    }
    out
}

/// Where chunkd keeps chunk `id` under `data_dir`: `chunks/ab/cd/<id>`.
fn chunk_path(data_dir: &Path, id: &str) -> PathBuf {
    data_dir
        .join("chunks")
        .join(&id[0..2])
        .join(&id[2..4])
        .join(id)
}

/// What polling the live nodes' disks until every chunk is on both of them saw.
struct RepairWatch {
    /// When a poll first found a chunk file that was missing at the start.
    first_copy: Option<Instant>,
    /// When the poll that found the last missing file ended (then confirmed by a full walk).
    full: Instant,
    polls: u64,
    poll_time: Duration,
}

/// Polls every 100 ms until each of `dirs` holds a file of every id of `expected`; sets `done`
/// then. One walk of the directories finds the missing files; the polls then look only for
/// those (a stat each, so that the polling costs next to nothing next to the repair it
/// measures), and a last walk confirms.
fn wait_full_redundancy(
    dirs: &[PathBuf],
    expected: &BTreeSet<String>,
    done: &AtomicBool,
    within: Duration,
) -> Result<RepairWatch> {
    let start = Instant::now();
    let mut first_copy = None;
    let mut polls = 0u64;
    let mut poll_time = Duration::ZERO;
    let missing_files = || -> Vec<PathBuf> {
        let mut out = Vec::new();
        for d in dirs {
            let have = chunk_ids_in(d);
            out.extend(
                expected
                    .iter()
                    .filter(|id| !have.contains(*id))
                    .map(|id| chunk_path(d, id)),
            );
        }
        out
    };
    let mut pending = missing_files();
    let initial = pending.len();
    loop {
        let t = Instant::now();
        pending.retain(|p| !p.exists());
        if pending.is_empty() {
            // Confirmed by a full walk (a file could have gone meanwhile).
            pending = missing_files();
        }
        let now = Instant::now();
        polls += 1;
        poll_time += now - t;
        if pending.len() < initial && first_copy.is_none() {
            first_copy = Some(now);
        }
        if pending.is_empty() {
            done.store(true, Ordering::Relaxed);
            return Ok(RepairWatch {
                first_copy: first_copy.or(Some(now)),
                full: now,
                polls,
                poll_time,
            });
        }
        if now - start > within {
            done.store(true, Ordering::Relaxed);
            bail!(
                "{} chunk file(s) still missing on the live nodes after {within:?}",
                pending.len()
            );
        }
        std::thread::sleep(POLL.saturating_sub(now - t));
    }
}

/// Polls every 100 ms (a stat of each file still there, then a full walk to confirm) until
/// `dirs` hold no chunk file; returns the seconds since `t0` when the first file was seen gone
/// and when none was left.
fn wait_empty(dirs: &[PathBuf], t0: Instant, within: Duration) -> Result<(f64, f64)> {
    let all_files = || -> Vec<PathBuf> {
        dirs.iter()
            .flat_map(|d| {
                chunk_ids_in(d)
                    .into_iter()
                    .map(|id| chunk_path(d, &id))
                    .collect::<Vec<_>>()
            })
            .collect()
    };
    let mut left = all_files();
    let initial = left.len();
    let mut first = None;
    loop {
        let t = Instant::now();
        left.retain(|p| p.exists());
        if left.is_empty() {
            left = all_files();
        }
        let at = t0.elapsed().as_secs_f64();
        if left.len() < initial && first.is_none() {
            first = Some(at);
        }
        if left.is_empty() {
            return Ok((first.unwrap_or(at), at));
        }
        if t0.elapsed() > within {
            bail!(
                "{} chunk file(s) still on the live nodes {within:?} after the delete",
                left.len()
            );
        }
        std::thread::sleep(POLL.saturating_sub(t.elapsed()));
    }
}

// ---------------------------------------------------------------------------------------------
// S3 traffic.

fn s3_err<E: std::error::Error + 'static, R: std::fmt::Debug>(
    what: &str,
) -> impl FnOnce(aws_sdk_s3::error::SdkError<E, R>) -> anyhow::Error + '_ {
    move |e| anyhow!("{what}: {}", DisplayErrorContext(&e))
}

/// Uploads objects `first..first + count` (`obj/NNNN`, 32 MiB of fresh random bytes each),
/// `STREAMS` at a time; returns (key, SHA-256) of each.
async fn upload(
    s3: &Client,
    seed: u64,
    first: usize,
    count: usize,
) -> Result<Vec<(String, String)>> {
    let next = Arc::new(AtomicUsize::new(first));
    let mut tasks = Vec::new();
    for _ in 0..STREAMS {
        let (s3, next) = (s3.clone(), next.clone());
        tasks.push(tokio::spawn(async move {
            let mut done = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= first + count {
                    return Ok::<_, anyhow::Error>(done);
                }
                let (data, digest) = tokio::task::spawn_blocking(move || {
                    let data = random_bytes(OBJECT, seed + i as u64);
                    let digest = sha256_hex(&data);
                    (data, digest)
                })
                .await?;
                let key = format!("obj/{i:04}");
                s3.put_object()
                    .bucket(BUCKET)
                    .key(&key)
                    .body(ByteStream::from(data))
                    .send()
                    .await
                    .map_err(s3_err(&format!("PUT {key}")))?;
                done.push((key, digest));
            }
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await??);
    }
    all.sort();
    Ok(all)
}

/// What a read phase got.
struct Reads {
    bytes: u64,
    /// Whole objects read.
    gets: u64,
    errors: u64,
    first_error: Option<String>,
}

/// `STREAMS` streams GET whole objects of `keys` (each stream from its own place in the list,
/// round and round), counting the bytes that arrive before `deadline` or before `stop` is set.
async fn read_load(
    s3: &Client,
    keys: Arc<Vec<String>>,
    deadline: Instant,
    stop: Arc<AtomicBool>,
) -> Reads {
    let bytes = Arc::new(AtomicU64::new(0));
    let gets = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let first_error = Arc::new(Mutex::new(None));
    let mut tasks = Vec::new();
    for stream in 0..STREAMS {
        let (s3, keys, stop) = (s3.clone(), keys.clone(), stop.clone());
        let (bytes, gets, errors, first_error) = (
            bytes.clone(),
            gets.clone(),
            errors.clone(),
            first_error.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let over = || Instant::now() >= deadline || stop.load(Ordering::Relaxed);
            let mut i = stream * keys.len() / STREAMS;
            'objects: while !over() {
                let key = &keys[i % keys.len()];
                i += 1;
                let result = s3.get_object().bucket(BUCKET).key(key).send().await;
                let mut body = match result {
                    Ok(out) => out.body,
                    Err(e) => {
                        errors.fetch_add(1, Ordering::Relaxed);
                        first_error.lock().unwrap().get_or_insert_with(|| {
                            format!("GET {key}: {}", DisplayErrorContext(&e))
                        });
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                loop {
                    match body.try_next().await {
                        Ok(Some(piece)) => {
                            if over() {
                                break 'objects;
                            }
                            bytes.fetch_add(piece.len() as u64, Ordering::Relaxed);
                        }
                        Ok(None) => {
                            gets.fetch_add(1, Ordering::Relaxed);
                            break;
                        }
                        Err(e) => {
                            errors.fetch_add(1, Ordering::Relaxed);
                            first_error
                                .lock()
                                .unwrap()
                                .get_or_insert_with(|| format!("GET {key} body: {e}"));
                            break;
                        }
                    }
                }
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
    let first_error = first_error.lock().unwrap().take();
    Reads {
        bytes: bytes.load(Ordering::Relaxed),
        gets: gets.load(Ordering::Relaxed),
        errors: errors.load(Ordering::Relaxed),
        first_error,
    }
}

/// GETs every object and compares its SHA-256 with the uploaded one; returns the mismatches.
async fn verify(s3: &Client, objects: &[(String, String)]) -> Result<Vec<String>> {
    let mut bad = Vec::new();
    for (key, digest) in objects {
        let out = s3
            .get_object()
            .bucket(BUCKET)
            .key(key)
            .send()
            .await
            .map_err(s3_err(&format!("GET {key}")))?;
        let data = out.body.collect().await.context("reading a GET body")?;
        let bytes = data.into_bytes();
        let got = tokio::task::spawn_blocking(move || sha256_hex(&bytes)).await?;
        if &got != digest {
            bad.push(key.clone());
        }
    }
    Ok(bad)
}

// ---------------------------------------------------------------------------------------------
// One run.

#[derive(Clone, Copy)]
struct Config {
    rate: u64,
    /// Foreground GETs during repair.
    reads: bool,
}

impl Config {
    fn name(&self) -> String {
        let rate = if self.rate >= UNLIMITED {
            format!("rate {} (unlimited)", self.rate)
        } else {
            format!("rate {}", self.rate)
        };
        if self.reads {
            format!("{rate}, with reads")
        } else {
            format!("{rate}, quiet")
        }
    }
}

struct Run {
    config: Config,
    /// Unexpected findings (with evidence), reported in the doc.
    anomalies: Vec<String>,
    round: usize,
    load_before: String,
    others_before: String,
    objects: usize,
    upload_mibs: f64,
    distinct_chunks: usize,
    chunk_bytes: u64,
    victim: usize,
    victim_chunks: usize,
    victim_bytes: u64,
    baseline: Reads,
    baseline_window: f64,
    baseline_usage: Usage,
    /// No request at all, every node up, for `IDLE`.
    idle_usage: Usage,
    kill_to_down: f64,
    down_to_first_copy: f64,
    down_to_full: f64,
    repair_usage: Usage,
    polls: u64,
    poll_ms: f64,
    /// What the gateway logged about the live nodes and failed chunk repairs.
    log_summary: String,
    during: Option<(Reads, f64, Usage)>,
    repair_status: String,
    gc_files: usize,
    gc_bytes: u64,
    gc_request: f64,
    gc_first: f64,
    gc_empty: f64,
    gc_usage: Usage,
    gc_status: String,
    load_after: String,
}

/// For each chunk id on `per_node` (files of nodes 0, 1, 2): the nodes holding it, its size.
fn replica_map(
    per_node: &[Vec<(String, u64)>],
) -> std::collections::BTreeMap<String, (Vec<usize>, u64)> {
    let mut out = std::collections::BTreeMap::<String, (Vec<usize>, u64)>::new();
    for (i, files) in per_node.iter().enumerate() {
        for (id, size) in files {
            out.entry(id.clone())
                .or_insert((Vec::new(), *size))
                .0
                .push(i);
        }
    }
    out
}

/// Chunks with other than two files on the nodes right after the upload: looks again 3 s
/// later, copies the process logs to /tmp for a closer look, and says what the gateway logged
/// about each chunk.
async fn explain_odd_replicas(
    cluster: &Cluster,
    tag: &str,
    odd: &[(String, Vec<usize>)],
) -> String {
    tokio::time::sleep(Duration::from_secs(3)).await;
    let again = replica_map(
        &(0..3)
            .map(|i| chunks_in(cluster.node_data_dir(i)))
            .collect::<Vec<_>>(),
    );
    let keep = std::env::temp_dir().join(format!(
        "bench-repair-anomaly-{}",
        tag.replace(|c: char| !c.is_ascii_alphanumeric(), "-")
            .trim_matches('-')
    ));
    let _ = std::fs::create_dir_all(&keep);
    let mut logs = String::new();
    for name in ["gateway.log", "node0.log", "node1.log", "node2.log"] {
        let _ = std::fs::copy(cluster.dir().join(name), keep.join(name));
        logs += &std::fs::read_to_string(cluster.dir().join(name)).unwrap_or_default();
    }
    let write_failures = logs.matches("chunk write failed").count();
    let mut out = format!(
        "{} chunk(s) without exactly two files on the nodes right after the upload \
         ({write_failures} \"chunk write failed\" lines in the logs; logs kept in {}):",
        odd.len(),
        keep.display()
    );
    for (id, nodes) in odd {
        let later = again.get(id).map(|(n, _)| n.clone()).unwrap_or_default();
        let lines: Vec<&str> = logs
            .lines()
            .filter(|l| l.contains(id.as_str()))
            .take(4)
            .collect();
        out += &format!(
            " chunk {} on nodes {nodes:?}, 3 s later on {later:?}; log lines naming it: {lines:?}.",
            &id[..16]
        );
    }
    eprintln!("bench: {tag} ANOMALY: {out}");
    out
}

/// Copies the run's process logs to a directory under /tmp (printed), and sums up what the
/// gateway logged: state changes of nodes other than `victim`, and chunks repair could not
/// repair at the first try.
fn keep_logs(cluster: &Cluster, tag: &str, victim: &str) -> String {
    let keep = std::env::temp_dir().join(format!(
        "bench-repair-logs/{}",
        tag.replace(|c: char| !c.is_ascii_alphanumeric(), "-")
            .trim_matches('-')
    ));
    let _ = std::fs::create_dir_all(&keep);
    for name in ["gateway0.log", "node0.log", "node1.log", "node2.log"] {
        let from = cluster.dir().join(name.replace("gateway0", "gateway"));
        let _ = std::fs::copy(from, keep.join(name));
    }
    eprintln!("bench: {tag} logs kept in {}", keep.display());
    let log = std::fs::read_to_string(keep.join("gateway0.log")).unwrap_or_default();
    let changes: Vec<String> = log
        .lines()
        .filter(|l| l.contains("node state changed") && !l.contains(victim))
        .filter(|l| !l.contains("from=None"))
        .map(|l| {
            l.split_whitespace()
                .filter(|w| w.starts_with("from=") || w.starts_with("to="))
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect();
    let warnings: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("cannot repair chunk yet"))
        .collect();
    let first = warnings
        .first()
        .map(|w| {
            let w = w.split_once("error=").map(|(_, e)| e).unwrap_or(w);
            format!(" (first: `{}`)", w.chars().take(160).collect::<String>())
        })
        .unwrap_or_default();
    format!(
        "live-node state changes: {}; cannot-repair warnings: {}{first}",
        if changes.is_empty() {
            "none".to_string()
        } else {
            changes.join(", ")
        },
        warnings.len()
    )
}

/// Runs `sdfbs ARGS` against the cluster; returns whether it succeeded and its output.
fn cli(cluster: &Cluster, args: &[&str]) -> (bool, String) {
    match cluster.sdfbs_cli().args(args).output() {
        Ok(out) => (
            out.status.success(),
            format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        ),
        Err(e) => (false, format!("running sdfbs: {e}")),
    }
}

/// Runs `sdfbs repair status` and keeps its lines that start with one of `prefixes`.
fn status_lines(cluster: &Cluster, prefixes: &[&str]) -> String {
    let (_, text) = cli(cluster, &["repair", "status"]);
    text.lines()
        .filter(|l| prefixes.iter().any(|p| l.starts_with(p)))
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect::<Vec<_>>()
        .join("; ")
}

async fn run_once(
    config: Config,
    round: usize,
    window: Duration,
    first_objects: usize,
    victim_min: u64,
) -> Result<Run> {
    let tag = format!("[round {round}, {}]", config.name());
    let load_before = loadavg();
    eprintln!("bench: {tag} starting a cluster; load average {load_before}");
    let mut cluster = Cluster::start(ClusterOptions {
        nodes: 3,
        replication: Some(2),
        node_down_after: Some("2s".into()),
        gateway_args: [
            "--repair-rate",
            &config.rate.to_string(),
            "--gc-grace",
            "1s",
            "--gc-interval",
            "1s",
        ]
        .map(String::from)
        .to_vec(),
        ..Default::default()
    });
    let others_before = other_activity(cluster.dir());
    let s3 = common::client(&cluster, common::Checksums::Default);
    s3.create_bucket()
        .bucket(BUCKET)
        .send()
        .await
        .map_err(s3_err("create bucket"))?;

    // 1. Data: 48 objects (1.5 GiB), then more until the fullest node holds `victim_min`.
    let seed = 1_000_000 * round as u64 + config.rate + if config.reads { 500_000 } else { 0 };
    let t = Instant::now();
    let mut objects = upload(&s3, seed, 0, first_objects).await?;
    let per_node = |c: &Cluster| -> Vec<Vec<(String, u64)>> {
        (0..3).map(|i| chunks_in(c.node_data_dir(i))).collect()
    };
    let mut on_disk = per_node(&cluster);
    let bytes_of = |files: &[(String, u64)]| files.iter().map(|f| f.1).sum::<u64>();
    while on_disk.iter().map(|f| bytes_of(f)).max().unwrap_or(0) < victim_min {
        let more = upload(&s3, seed, objects.len(), 2).await?;
        objects.extend(more);
        on_disk = per_node(&cluster);
    }
    let upload_mibs = mib((objects.len() * OBJECT) as u64) / t.elapsed().as_secs_f64();
    let victim = (0..3).max_by_key(|i| bytes_of(&on_disk[*i])).unwrap_or(0);
    let victim_chunks = on_disk[victim].len();
    let victim_bytes = bytes_of(&on_disk[victim]);
    let mut anomalies = Vec::new();
    let replicas = replica_map(&on_disk);
    let odd: Vec<(String, Vec<usize>)> = replicas
        .iter()
        .filter(|(_, (nodes, _))| nodes.len() != 2)
        .map(|(id, (nodes, _))| (id.clone(), nodes.clone()))
        .collect();
    if !odd.is_empty() {
        anomalies.push(explain_odd_replicas(&cluster, &tag, &odd).await);
    }
    let expected: BTreeSet<String> = replicas.keys().cloned().collect();
    let chunk_bytes: u64 = replicas.values().map(|(_, s)| s).sum();
    eprintln!(
        "bench: {tag} {} objects, {} chunks; node {victim} holds {victim_chunks} chunks, {victim_bytes} bytes",
        objects.len(),
        expected.len()
    );

    let gateway = cluster
        .gateway_pid()
        .ok_or_else(|| anyhow!("no gateway process"))?;
    let node_pid = |c: &Cluster, i: usize| {
        pid_with_arg(c.node_data_dir(i)).ok_or_else(|| anyhow!("no process for node {i}"))
    };
    let live: Vec<usize> = (0..3).filter(|i| *i != victim).collect();
    // The killed node counts in the baseline; it reads 0 from the kill on.
    let mut procs = vec![("gateway".to_string(), gateway)];
    for i in 0..3 {
        let label = if i == victim {
            format!("node{i} (killed)")
        } else {
            format!("node{i}")
        };
        procs.push((label, node_pid(&cluster, i)?));
    }
    procs.push(("client".to_string(), 0));
    let keys: Arc<Vec<String>> = Arc::new(objects.iter().map(|(k, _)| k.clone()).collect());

    // The cluster's own background work (scrubbers, heartbeats, GC passes) with no request.
    let idle_start = Snapshot::take(&procs);
    tokio::time::sleep(IDLE).await;
    let idle_usage = idle_start.until(&Snapshot::take(&procs));

    // 2. Baseline reads, every node up.
    eprintln!("bench: {tag} baseline reads for {window:?}");
    let before = Snapshot::take(&procs);
    let baseline = read_load(
        &s3,
        keys.clone(),
        Instant::now() + window,
        Arc::new(AtomicBool::new(false)),
    )
    .await;
    let after = Snapshot::take(&procs);
    let baseline_usage = before.until(&after);
    let baseline_window = window.as_secs_f64();

    // 3. Kill the fullest node; wait for Down; then for two replicas of every chunk.
    let victim_id = cluster
        .node_id(victim)
        .ok_or_else(|| anyhow!("no node id for node {victim}"))?
        .to_string();
    let victim_id_of = victim_id.clone();
    eprintln!("bench: {tag} kill -9 node {victim} ({victim_id})");
    cluster.kill_node(victim);
    let killed = Instant::now();
    let cluster = Arc::new(cluster);
    let down = {
        let cluster = cluster.clone();
        tokio::task::spawn_blocking(move || -> Result<Instant> {
            loop {
                let (okay, text) = cli(&cluster, &["node", "list"]);
                let state = text
                    .lines()
                    .find(|l| l.starts_with(&victim_id))
                    .and_then(|l| l.split_whitespace().nth(1))
                    .unwrap_or("");
                if okay && state.starts_with("Down") {
                    return Ok(Instant::now());
                }
                if killed.elapsed() > Duration::from_secs(120) {
                    bail!("node not Down after 120 s: {text}");
                }
                std::thread::sleep(POLL);
            }
        })
        .await??
    };
    let kill_to_down = (down - killed).as_secs_f64();
    eprintln!("bench: {tag} Down after {kill_to_down:.2} s");
    let start = Snapshot::take(&procs);
    let done = Arc::new(AtomicBool::new(false));
    let watch = {
        let dirs: Vec<PathBuf> = live
            .iter()
            .map(|i| cluster.node_data_dir(*i).to_path_buf())
            .collect();
        let done = done.clone();
        let expected = expected.clone();
        tokio::task::spawn_blocking(move || {
            wait_full_redundancy(&dirs, &expected, &done, Duration::from_secs(700))
        })
    };
    let during = if config.reads {
        let read_start = Snapshot::take(&procs);
        let reads = read_load(&s3, keys.clone(), down + window, done.clone()).await;
        let read_end = Snapshot::take(&procs);
        let usage = read_start.until(&read_end);
        Some((reads, usage.wall, usage))
    } else {
        None
    };
    let watch = match watch.await? {
        Ok(watch) => watch,
        Err(e) => {
            // Keep what explains it: the cluster's view and the logs.
            let (_, nodes) = cli(&cluster, &["node", "list"]);
            let (_, status) = cli(&cluster, &["repair", "status"]);
            let logs = keep_logs(&cluster, &tag, &victim_id_of);
            bail!(
                "{tag} {e:#}\n`sdfbs node list`:\n{nodes}\n`sdfbs repair status`:\n{status}\n\
                 gateway log: {logs}"
            );
        }
    };
    let end = Snapshot::take(&procs);
    // CPU from just after Down to just after the poll that saw full redundancy.
    let repair_usage = start.until(&end);
    let down_to_full = (watch.full - down).as_secs_f64();
    let down_to_first_copy = watch
        .first_copy
        .map(|t| t.saturating_duration_since(down).as_secs_f64())
        .unwrap_or(f64::NAN);
    let during = during.map(|(reads, _, usage)| {
        // The window ends at its deadline or when repair completed, whichever came first.
        let window_s = (down + window).min(watch.full) - down;
        (reads, window_s.as_secs_f64(), usage)
    });
    eprintln!(
        "bench: {tag} full redundancy {down_to_full:.2} s after Down ({:.1} chunks/s, {:.1} MiB/s)",
        victim_chunks as f64 / down_to_full,
        mib(victim_bytes) / down_to_full
    );
    // Let a pass that is still running finish before reading its counters.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let repair_status = status_lines(
        &cluster,
        &[
            "repair passes:",
            "repaired:",
            "repair failures:",
            "lost chunks:",
        ],
    );

    // 4. Every object reads back as uploaded.
    eprintln!("bench: {tag} checking every object's SHA-256");
    let bad = verify(&s3, &objects).await?;
    if !bad.is_empty() {
        bail!("{tag} objects read back with other bytes after repair: {bad:?}");
    }

    // 5. Delete everything; time until the live nodes hold no chunk file.
    let live_dirs: Vec<PathBuf> = live
        .iter()
        .map(|i| cluster.node_data_dir(*i).to_path_buf())
        .collect();
    let live_files: Vec<(String, u64)> = live_dirs.iter().flat_map(|d| chunks_in(d)).collect();
    let gc_files = live_files.len();
    let gc_bytes = live_files.iter().map(|f| f.1).sum();
    eprintln!(
        "bench: {tag} deleting {} objects ({gc_files} chunk files on the live nodes)",
        objects.len()
    );
    let gc_start = Snapshot::take(&procs);
    let t0 = Instant::now();
    let ids: Vec<ObjectIdentifier> = objects
        .iter()
        .map(|(k, _)| ObjectIdentifier::builder().key(k).build())
        .collect::<Result<_, _>>()?;
    let out = s3
        .delete_objects()
        .bucket(BUCKET)
        .delete(
            Delete::builder()
                .set_objects(Some(ids))
                .quiet(true)
                .build()?,
        )
        .send()
        .await
        .map_err(s3_err("DeleteObjects"))?;
    if !out.errors().is_empty() {
        bail!("{tag} DeleteObjects errors: {:?}", out.errors());
    }
    let gc_request = t0.elapsed().as_secs_f64();
    let (gc_first, gc_empty) =
        tokio::task::spawn_blocking(move || wait_empty(&live_dirs, t0, Duration::from_secs(600)))
            .await??;
    let gc_end = Snapshot::take(&procs);
    let gc_usage = gc_start.until(&gc_end);
    eprintln!("bench: {tag} live nodes empty {gc_empty:.2} s after the DeleteObjects request");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let gc_status = status_lines(&cluster, &["garbage collected:"]);
    let load_after = loadavg();
    let log_summary = keep_logs(&cluster, &tag, &victim_id_of);
    drop(s3);
    drop(cluster);
    Ok(Run {
        config,
        anomalies,
        round,
        load_before,
        others_before,
        objects: objects.len(),
        upload_mibs,
        distinct_chunks: expected.len(),
        chunk_bytes,
        victim,
        victim_chunks,
        victim_bytes,
        baseline,
        baseline_window,
        baseline_usage,
        idle_usage,
        kill_to_down,
        down_to_first_copy,
        down_to_full,
        repair_usage,
        polls: watch.polls,
        log_summary,
        poll_ms: watch.poll_time.as_secs_f64() * 1000.0 / watch.polls.max(1) as f64,
        during,
        repair_status,
        gc_files,
        gc_bytes,
        gc_request,
        gc_first,
        gc_empty,
        gc_usage,
        gc_status,
        load_after,
    })
}

// ---------------------------------------------------------------------------------------------
// The report.

fn mem_total() -> String {
    std::fs::read_to_string("/proc/meminfo")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map(|kb| format!("{:.0} GiB RAM", kb / 1024.0 / 1024.0))
        .unwrap_or_else(|| "?".into())
}

/// "mean (min–max)" of `values`.
fn spread(values: &[f64], decimals: usize) -> String {
    if values.is_empty() {
        return "-".into();
    }
    let mean = values.iter().sum::<f64>() / values.len() as f64;
    let min = values.iter().cloned().fold(f64::INFINITY, f64::min);
    let max = values.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    format!("{mean:.decimals$} ({min:.decimals$}–{max:.decimals$})")
}

/// Other processes used more than this share of a core on average during a phase: the machine
/// was shared, and the phase's figures are not representative.
const BUSY_CORES: f64 = 0.25;

fn busy(u: &Usage) -> bool {
    u.others / u.wall.max(0.001) > BUSY_CORES
}

/// The summary table of `runs`, per configuration, then the garbage collection line.
fn summary(runs: &[&Run]) -> String {
    let mut out = String::new();
    out += "| configuration | runs | kill → Down (s) | Down → 2 replicas (s) | repair chunks/s | \
repair MiB/s | GET MiB/s baseline | GET MiB/s during repair |\n";
    out += "| --- | --- | --- | --- | --- | --- | --- | --- |\n";
    let mut configs: Vec<(u64, bool)> = runs
        .iter()
        .map(|r| (r.config.rate, r.config.reads))
        .collect();
    let mut seen = BTreeSet::new();
    configs.retain(|c| seen.insert(*c));
    for (rate, reads) in configs {
        let rs: Vec<&Run> = runs
            .iter()
            .filter(|r| r.config.rate == rate && r.config.reads == reads)
            .copied()
            .collect();
        let f = |g: &dyn Fn(&Run) -> f64, d: usize| {
            spread(&rs.iter().map(|r| g(r)).collect::<Vec<_>>(), d)
        };
        let during: Vec<f64> = rs
            .iter()
            .filter_map(|r| r.during.as_ref().map(|(g, w, _)| mib(g.bytes) / w))
            .collect();
        out += &format!(
            "| {} | {} | {} | {} | {} | {} | {} | {} |\n",
            rs[0].config.name(),
            rs.len(),
            f(&|r| r.kill_to_down, 2),
            f(&|r| r.down_to_full, 1),
            f(&|r| r.victim_chunks as f64 / r.down_to_full, 0),
            f(&|r| mib(r.victim_bytes) / r.down_to_full, 0),
            f(&|r| mib(r.baseline.bytes) / r.baseline_window, 0),
            if during.is_empty() {
                "-".to_string()
            } else {
                spread(&during, 0)
            },
        );
    }
    out += "\n";
    out += &gc_summary(runs);
    out
}

/// One line on garbage collection over `runs`.
fn gc_summary(runs: &[&Run]) -> String {
    let of = |g: &dyn Fn(&Run) -> f64, d: usize| {
        spread(&runs.iter().map(|r| g(r)).collect::<Vec<_>>(), d)
    };
    format!(
        "Garbage collection ({} runs): live nodes empty {} s after the DeleteObjects request; \
{} chunks/s ({} MiB/s of chunk data; every chunk has two files) counted from the request, \
{} chunks/s from the first file deleted to the last.\n\n",
        runs.len(),
        of(&|r| r.gc_empty, 1),
        of(&|r| r.distinct_chunks as f64 / r.gc_empty, 0),
        of(&|r| mib(r.gc_bytes / 2) / r.gc_empty, 0),
        of(
            &|r| r.distinct_chunks as f64 / (r.gc_empty - r.gc_first).max(0.1),
            0
        ),
    )
}

fn report(runs: &[Run], started: &str, finished: &str, window: Duration, dirty: &str) -> String {
    let mut out = String::new();
    out += "# Repair and garbage collection benchmark\n\n";
    out += "Written by `compat-tests/examples/bench_repair.rs`; rerun it to refresh every figure \
(about 2 minutes per run):\n\n";
    out += "```sh\n\
cargo build --release -p sdfbs-gateway -p sdfbs-chunkd -p sdfbs-compat-tests --bins --example bench_repair\n\
SDFBS_BIN_DIR=target/release target/release/examples/bench_repair\n\
```\n\n";
    out += &format!(
        "- Date: {started} to {finished}\n\
- Commit: {commit}{dirty}\n\
- Machine: {cores} cores ({cpu}), {mem}, shared by the client, the gateway and the three nodes; \
{rustc}\n\
- Build: {build}\n\
- Setup: a fresh cluster per run: `sdfbs gateway` (embedded metadata) and three `chunkd` \
processes on loopback, each node with its own data directory on the same local disk; \
`--replication 2 --node-down-after 2s --gc-grace 1s --gc-interval 1s --repair-rate R` \
(nodes heartbeat every 200 ms; chunkd defaults otherwise: each node's scrubber re-reads its \
chunks at 32 MiB/s, which shows in the disk reads below, and keeps 1 GiB of chunks in the page \
cache); aws-sdk-s3 client with its default settings. Chunks are 1 MiB.\n\
- Data: distinct random 32 MiB objects, uploaded 4 at a time until the fullest node holds \
≥ 1 GiB of chunk files; that node is killed with SIGKILL.\n\
- Reads: {STREAMS} streams GET whole objects (bytes counted, discarded) for {window} s: \
before the kill (baseline, every node up), and in the runs \"with reads\" from the moment the \
node is seen Down until {window} s later or until repair completes, whichever comes first.\n\
- Load: the load average before each run is in the tables; \"others\" in the CPU table is the \
CPU time of every process that is not this cluster or this client (other engineers' builds and \
tests, Cassandra), measured from /proc/stat.\n\n",
        commit = command_output("git", &["rev-parse", "--short", "HEAD"]),
        cores = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(0),
        cpu = cpu_model(),
        mem = mem_total(),
        rustc = command_output("rustc", &["--version"]),
        build = if cfg!(debug_assertions) {
            "**debug client: rerun the example built with --release**"
        } else {
            "release (client, `sdfbs`, `chunkd`)"
        },
        window = window.as_secs(),
    );

    // Summary per configuration: every run, then only the runs on a quiet machine.
    out += "## Summary (mean, min–max over the runs)\n\n";
    out += &summary(&runs.iter().collect::<Vec<_>>());
    let quiet: Vec<&Run> = runs
        .iter()
        .filter(|r| {
            !busy(&r.baseline_usage)
                && !busy(&r.repair_usage)
                && r.during.as_ref().is_none_or(|(_, _, u)| !busy(u))
        })
        .collect();
    let quiet_gc: Vec<&Run> = runs.iter().filter(|r| !busy(&r.gc_usage)).collect();
    if quiet.len() < runs.len() || quiet_gc.len() < runs.len() {
        out += &format!(
            "### Runs on a quiet machine only\n\n\
Without the phases during which other processes (not this cluster, not this client) used more \
than {BUSY_CORES} of a core on average (\"others\" in the CPU table): {} of {} runs for repair \
and reads, {} of {} for garbage collection.\n\n",
            quiet.len(),
            runs.len(),
            quiet_gc.len(),
            runs.len()
        );
        if !quiet.is_empty() {
            out += summary(&quiet)
                .split("\nGarbage collection")
                .next()
                .unwrap_or_default();
            out += "\n";
        }
        if !quiet_gc.is_empty() {
            out += &gc_summary(&quiet_gc);
        }
    }

    out += "## 1. Time to full redundancy after losing a node\n\n";
    out += "Down → 2 replicas ends at the disk poll (every 100 ms: a stat of every chunk file \
still missing on the two live nodes, confirmed by a walk of their `chunks/` trees) that found \
every chunk on both; throughput is the killed node's chunks and bytes over that interval. \
\"first copy\" is when a poll first found a repaired chunk's file. The last column counts, in \
the gateway's log of the run, the state changes of the two live nodes and the \
\"cannot repair chunk yet\" warnings (with the first one).\n\n";
    out += "| round | configuration | load avg before | other processes | objects (chunks) | killed node holds | others during repair (cores) | kill → Down | Down → first copy | Down → 2 replicas | chunks/s | MiB/s | `sdfbs repair status` after | gateway log |\n";
    out +=
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |\n";
    for r in runs {
        out += &format!(
            "| {} | {} | {} | {} | {} × 32 MiB ({} chunks, {} bytes) | node{}: {} chunks, {} bytes ({:.1} MiB) | {:.2} | {:.2} s | {:.2} s | {:.2} s | {:.0} | {:.0} | {} | {} |\n",
            r.round,
            r.config.name(),
            r.load_before,
            r.others_before,
            r.objects,
            r.distinct_chunks,
            r.chunk_bytes,
            r.victim,
            r.victim_chunks,
            r.victim_bytes,
            mib(r.victim_bytes),
            r.repair_usage.others / r.repair_usage.wall.max(0.001),
            r.kill_to_down,
            r.down_to_first_copy,
            r.down_to_full,
            r.victim_chunks as f64 / r.down_to_full,
            mib(r.victim_bytes) / r.down_to_full,
            r.repair_status,
            r.log_summary,
        );
    }

    out += "\n## 2. Foreground GETs, without and during repair\n\n";
    out += &format!(
        "{STREAMS} parallel streams of whole-object GETs. Every object was read back afterwards and \
its SHA-256 compared with the uploaded bytes (all matched in every run).\n\n"
    );
    out += "| round | configuration | baseline (all nodes up) | during repair | window during repair | during / baseline | GET errors |\n";
    out += "| --- | --- | --- | --- | --- | --- | --- |\n";
    for r in runs {
        let base = mib(r.baseline.bytes) / r.baseline_window;
        let (during, window, ratio, errors) = match &r.during {
            Some((g, w, _)) => (
                format!("{:.0} MiB/s ({} objects)", mib(g.bytes) / w, g.gets),
                format!("{w:.1} s"),
                format!("{:.0} %", 100.0 * mib(g.bytes) / w / base),
                format!(
                    "{} / {}{}",
                    r.baseline.errors,
                    g.errors,
                    g.first_error
                        .as_ref()
                        .map(|e| format!(" ({e})"))
                        .unwrap_or_default()
                ),
            ),
            None => (
                "-".into(),
                "-".into(),
                "-".into(),
                format!("{} / -", r.baseline.errors),
            ),
        };
        out += &format!(
            "| {} | {} | {:.0} MiB/s ({} objects) | {} | {} | {} | {} |\n",
            r.round,
            r.config.name(),
            base,
            r.baseline.gets,
            during,
            window,
            ratio,
            errors
        );
    }

    out += "\n## 3. Garbage collection\n\n";
    out +=
        "After repair, one DeleteObjects removes every object (`--gc-grace 1s --gc-interval 1s`). \
Times from the start of the request; the live nodes hold two files of every chunk. The killed \
node's files stay on its disk (GC skips Down nodes; its audit collects them once it is back).\n\n";
    out += "| round | configuration | others during GC (cores) | files on live nodes | DeleteObjects answered | first file gone | no file left | chunks/s | files/s | MiB/s (chunk data) | `sdfbs repair status` after |\n";
    out += "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |\n";
    for r in runs {
        out += &format!(
            "| {} | {} | {:.2} | {} ({:.0} MiB) | {:.2} s | {:.2} s | {:.2} s | {:.0} | {:.0} | {:.0} | {} |\n",
            r.round,
            r.config.name(),
            r.gc_usage.others / r.gc_usage.wall.max(0.001),
            r.gc_files,
            mib(r.gc_bytes),
            r.gc_request,
            r.gc_first,
            r.gc_empty,
            r.distinct_chunks as f64 / r.gc_empty,
            r.gc_files as f64 / r.gc_empty,
            mib(r.gc_bytes / 2) / r.gc_empty,
            r.gc_status
        );
    }

    out += "\n## Where the time went\n\n";
    out +=
        "CPU seconds (user + system, /proc/PID/stat) of the gateway, the two live nodes and the \
benchmark client (which includes the disk polls every 100 ms), \"others\" (the rest of the \
machine), the share of the machine's cores busy and in iowait (/proc/stat), and what the cluster's \
processes read from and wrote to the disk (/proc/PID/io) against what the whole disk did \
(/proc/diskstats: every process, and the file system's journal), per phase. The idle row is the \
cluster's background work (each node's scrubber, heartbeats, a GC pass every second) with no \
request: it goes on during the other phases too.\n\n";
    out += "| round | configuration | phase | wall s | CPU s | others CPU s | machine busy | iowait | cluster's disk read / written MiB | whole disk read / written MiB |\n";
    out += "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |\n";
    for r in runs {
        let mut row = |phase: &str, u: &Usage| {
            out += &format!(
                "| {} | {} | {} | {} |\n",
                r.round,
                r.config.name(),
                phase,
                u.cells()
            );
        };
        row("idle (no request)", &r.idle_usage);
        row("baseline reads", &r.baseline_usage);
        if let Some((_, _, u)) = &r.during {
            row("reads during repair", u);
        }
        row("repair (Down → 2 replicas)", &r.repair_usage);
        row("GC (delete → empty)", &r.gc_usage);
    }
    out += &format!(
        "\nDisk polls during repair: {} per run, {} ms each on average (in the client).\n",
        spread(&runs.iter().map(|r| r.polls as f64).collect::<Vec<_>>(), 0),
        spread(&runs.iter().map(|r| r.poll_ms).collect::<Vec<_>>(), 2)
    );
    out += &format!(
        "\nUpload (4 parallel 32 MiB PUTs, untimed setup): {} MiB/s. Load average after each run: {}.\n",
        spread(&runs.iter().map(|r| r.upload_mibs).collect::<Vec<_>>(), 0),
        runs.iter()
            .map(|r| r.load_after.clone())
            .collect::<Vec<_>>()
            .join("; ")
    );
    out
}

fn main() -> Result<()> {
    // The run takes a quarter of an hour: a copy of the binaries keeps a build of the same
    // target directory meanwhile (another engineer's) from replacing them under the benchmark.
    let bins = tempfile::Builder::new()
        .prefix("bench-repair-bin-")
        .tempdir()?;
    let from = sdfbs_compat_tests::bin_dir();
    for name in ["sdfbs", "chunkd"] {
        std::fs::copy(from.join(name), bins.path().join(name))
            .with_context(|| format!("copying {} from {}", name, from.display()))?;
    }
    // SAFETY: no other thread runs yet (the runtime starts below).
    unsafe { std::env::set_var("SDFBS_BIN_DIR", bins.path()) };
    let result = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(bench());
    drop(bins);
    result
}

async fn bench() -> Result<()> {
    let env = |name: &str, default: u64| -> u64 {
        std::env::var(name)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    };
    let rounds = env("BENCH_RUNS", 3) as usize;
    let window = Duration::from_secs(env("BENCH_WINDOW_SECS", 10));
    let victim_min = env("BENCH_VICTIM_MIB", 1024) * MIB;
    let first_objects = env("BENCH_OBJECTS", 48) as usize;
    let started = command_output("date", &["-u", "+%Y-%m-%d %H:%M UTC"]);
    let dirty = command_output(
        "git",
        &[
            "status",
            "--porcelain",
            "--",
            "chunkd",
            "gateway",
            "metadata",
        ],
    );
    let dirty = if dirty.is_empty() {
        String::new()
    } else {
        format!(
            " (with uncommitted changes in the product crates when the binaries were built: {})",
            dirty.lines().map(str::trim).collect::<Vec<_>>().join(", ")
        )
    };
    let configs = [
        Config {
            rate: 64,
            reads: false,
        },
        Config {
            rate: UNLIMITED,
            reads: false,
        },
        Config {
            rate: 64,
            reads: true,
        },
        Config {
            rate: UNLIMITED,
            reads: true,
        },
    ];
    let mut runs = Vec::new();
    let mut failed = Vec::new();
    for round in 1..=rounds {
        for config in configs {
            match run_once(config, round, window, first_objects, victim_min).await {
                Ok(run) => runs.push(run),
                Err(e) => {
                    eprintln!("bench: run failed: {e:#}");
                    failed.push(format!("round {round}, {}: {e:#}", config.name()));
                }
            }
        }
    }
    let finished = command_output("date", &["-u", "+%Y-%m-%d %H:%M UTC"]);
    let mut doc = report(&runs, &started, &finished, window, &dirty);
    let anomalies: Vec<String> = runs
        .iter()
        .flat_map(|r| {
            r.anomalies
                .iter()
                .map(move |a| format!("- round {}, {}: {a}\n", r.round, r.config.name()))
        })
        .chain(failed.iter().map(|f| format!("- run failed: {f}\n")))
        .collect();
    if !anomalies.is_empty() {
        doc += "\n## Anomalies\n\n";
        doc += &anomalies.concat();
    }
    println!("{doc}");
    if std::env::var_os("BENCH_NO_DOC").is_some() {
        return Ok(());
    }
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/bench-repair.md");
    let notes = std::fs::read_to_string(path)
        .ok()
        .and_then(|old| old.split_once(NOTES_MARKER).map(|(_, n)| n.to_string()));
    doc += &format!("\n{NOTES_MARKER}");
    doc += &notes.unwrap_or_else(|| "\n".into());
    std::fs::write(path, &doc).with_context(|| format!("writing {path}"))?;
    eprintln!("bench: written to docs/bench-repair.md");
    Ok(())
}
