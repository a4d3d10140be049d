//! Gateway benchmark (issue 4): runs the measurements of the issue's Benchmark section against
//! a real `sdfbs dev` cluster (the gateway with three in-process chunkd nodes, embedded
//! metadata, on loopback) through aws-sdk-s3 with its default settings, and writes the figures,
//! the commands and the date to `docs/bench-gateway.md`.
//!
//! Run it on a release build (the `sdfbs` binary is taken from the same target directory as
//! this example):
//!
//! ```sh
//! cargo build --release -p sdfbs-gateway
//! cargo run --release -p sdfbs-compat-tests --example bench_gateway
//! ```
//!
//! Measured: single-core MD5 and SHA-256 rates (the same crates the gateway uses); single-stream
//! PUT and GET of a 1 GiB object (both also with curl on a presigned URL); a 5 GiB PUT from a
//! file and its GET, for memory; 16 parallel streams of 64 MiB objects, PUT then GET; 4 KiB
//! PUT and GET at 16 concurrency (ops/s, p50, p99); the gateway process's peak resident memory
//! during the 1 GiB transfers, sampled every 10 ms from /proc. Client, gateway and nodes share
//! the machine, so every figure is a lower bound of what the gateway alone could do.
//!
//! `BENCH_SMALL_OPS=N` sets the number of 4 KiB operations (5000). `BENCH_SMALL_ONLY=1` runs only
//! the 4 KiB phases on a fresh cluster and prints one line without touching the docs: for quick
//! interleaved A/B runs; `SDFBS_BIN_DIR` picks the `sdfbs` binary to measure.
//! `BENCH_METADATA=cassandra` runs `sdfbs dev` on a fresh keyspace of the Cassandra node named by
//! `SDFBS_TEST_SCYLLA` (dropped afterwards) instead of its embedded store.

#[path = "../tests/common/mod.rs"]
mod common;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context, Result};
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::Client;
use bytes::Bytes;
use sdfbs_compat_tests::machine::{command_output, cpu_model, loadavg};
use sdfbs_compat_tests::{random_bytes, Cluster, Metadata};

const MIB: usize = 1 << 20;
const GIB: usize = 1 << 30;

/// Resident set size of `pid` in bytes (VmRSS), or 0 when unreadable.
fn rss_of(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map(|kb| kb * 1024)
        .unwrap_or(0)
}

/// CPU seconds (user + system, with waited-for children) used so far by `pid` ("self" for
/// this process), from /proc/PID/stat (clock ticks of 10 ms on Linux).
fn cpu_of(pid: &str) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name, which is in parentheses and may contain spaces.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // utime, stime, cutime and cstime are fields 14 to 17 of the whole line (12 to 15 after
    // the name); the children's share counts curl, which this benchmark waits for.
    (ticks(11) + ticks(12) + ticks(13) + ticks(14)) / 100.0
}

/// Wall time and CPU seconds of the gateway process and of this client over one phase.
struct CpuWatch {
    pid: String,
    start: Instant,
    gateway: f64,
    client: f64,
}

impl CpuWatch {
    fn start(pid: u32) -> CpuWatch {
        let pid = pid.to_string();
        CpuWatch {
            gateway: cpu_of(&pid),
            client: cpu_of("self"),
            pid,
            start: Instant::now(),
        }
    }

    /// "wall s, gateway CPU s, client CPU s" since `start`.
    fn finish(&self, phase: &str) -> String {
        let line = format!(
            "{:.1} s wall, {:.1} s CPU in `sdfbs dev`, {:.1} s CPU in the client",
            self.start.elapsed().as_secs_f64(),
            cpu_of(&self.pid) - self.gateway,
            cpu_of("self") - self.client
        );
        eprintln!("bench: {phase}: {line}");
        format!("| {phase} | {line} |\n")
    }
}

/// Samples the RSS of `pid` every 10 ms until stopped; keeps the maximum.
struct RssSampler {
    stop: Arc<AtomicBool>,
    peak: Arc<AtomicU64>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl RssSampler {
    fn start(pid: u32) -> RssSampler {
        let stop = Arc::new(AtomicBool::new(false));
        let peak = Arc::new(AtomicU64::new(rss_of(pid)));
        let (s, p) = (stop.clone(), peak.clone());
        let thread = std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                p.fetch_max(rss_of(pid), Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(10));
            }
        });
        RssSampler {
            stop,
            peak,
            thread: Some(thread),
        }
    }

    fn finish(mut self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        self.peak.load(Ordering::Relaxed)
    }
}

/// Single-core hashing rate of digest `D` over `data`, in MiB/s.
fn hash_rate<D: sha2::Digest>(data: &[u8]) -> f64 {
    let t = Instant::now();
    let mut d = D::new();
    for chunk in data.chunks(MIB) {
        d.update(chunk);
    }
    std::hint::black_box(d.finalize());
    mib_per_s(data.len() as u64, t.elapsed())
}

fn mib_per_s(bytes: u64, d: Duration) -> f64 {
    bytes as f64 / MIB as f64 / d.as_secs_f64()
}

async fn put(s3: &Client, key: &str, body: Bytes) -> Result<()> {
    s3.put_object()
        .bucket("bench")
        .key(key)
        .body(ByteStream::from(body))
        .send()
        .await
        .map_err(|e| {
            anyhow!(
                "PUT {key}: {}",
                aws_smithy_types::error::display::DisplayErrorContext(&e)
            )
        })?;
    Ok(())
}

/// GETs `key`, discarding the bytes; returns how many arrived.
async fn get(s3: &Client, key: &str) -> Result<u64> {
    get_each(s3, key, |_| {}).await
}

/// Presigned URLs of the curl phases: valid for 10 minutes.
fn presigning() -> Result<aws_sdk_s3::presigning::PresigningConfig> {
    aws_sdk_s3::presigning::PresigningConfig::expires_in(Duration::from_secs(600))
        .context("presigning config")
}

/// Runs `curl -sS -o /dev/null -w WRITE_OUT ARGS...`; returns whether it exited 0, the fields of
/// its write-out, and its stdout and stderr for an error message.
async fn curl(write_out: &str, args: &[&str]) -> Result<(bool, Vec<String>, String)> {
    let out = tokio::process::Command::new("curl")
        .args(["-sS", "-o", "/dev/null", "-w", write_out])
        .args(args)
        .output()
        .await
        .context("running curl")?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let fields = stdout.split_whitespace().map(str::to_string).collect();
    let report = format!("{stdout} {}", String::from_utf8_lossy(&out.stderr));
    Ok((out.status.success(), fields, report))
}

/// PUTs 1 GiB of fresh random bytes (none of its chunks is stored yet, so every one is really
/// sent to two nodes) as `one-gib-curl` with curl on a presigned URL, from a file written
/// beforehand (untimed), and reads it back to check the bytes (untimed). Returns MiB/s as curl
/// measured it and the phase's CPU row.
async fn put_with_curl(s3: &Client, pid: u32) -> Result<(f64, String)> {
    let dir = tempfile::tempdir().context("temp dir for the curl PUT")?;
    let path = dir.path().join("one-gib");
    let expected = {
        let path = path.clone();
        tokio::task::spawn_blocking(move || {
            sdfbs_compat_tests::write_random_file(&path, GIB as u64, 3)
        })
        .await??
    };
    let url = s3
        .put_object()
        .bucket("bench")
        .key("one-gib-curl")
        .presigned(presigning()?)
        .await
        .map_err(|e| anyhow!("presigning: {e}"))?
        .uri()
        .to_string();
    let cpu = CpuWatch::start(pid);
    let path = path.to_string_lossy();
    let (ok, fields, report) = curl(
        "%{http_code} %{size_upload} %{speed_upload}",
        &["-H", "Expect:", "-T", &path, &url],
    )
    .await?;
    let row = cpu.finish("PUT 1 GiB, one stream, curl");
    anyhow::ensure!(
        ok && fields.first().map(String::as_str) == Some("200")
            && fields.get(1).and_then(|f| f.parse::<u64>().ok()) == Some(GIB as u64),
        "curl PUT failed: {report}"
    );
    let speed: f64 = fields.get(2).and_then(|f| f.parse().ok()).unwrap_or(0.0);
    let (n, digest) = get_digest(s3, "one-gib-curl").await?;
    anyhow::ensure!(
        n == GIB as u64 && digest == expected,
        "the object PUT by curl reads back as other bytes"
    );
    Ok((speed / MIB as f64, row))
}

/// GETs `key`, hashing the bytes as they arrive (nothing kept); returns (length, SHA-256 hex).
async fn get_digest(s3: &Client, key: &str) -> Result<(u64, String)> {
    use sha2::Digest;
    let mut hasher = sha2::Sha256::new();
    let n = get_each(s3, key, |b| hasher.update(b)).await?;
    Ok((n, hex::encode(hasher.finalize())))
}

/// GETs `key`, handing every piece of the body to `each` as it arrives; returns the length.
async fn get_each(s3: &Client, key: &str, mut each: impl FnMut(&[u8])) -> Result<u64> {
    let out = s3
        .get_object()
        .bucket("bench")
        .key(key)
        .send()
        .await
        .map_err(|e| {
            anyhow!(
                "GET {key}: {}",
                aws_smithy_types::error::display::DisplayErrorContext(&e)
            )
        })?;
    let mut body = out.body;
    let mut n = 0u64;
    while let Some(b) = body.try_next().await.context("reading a GET body")? {
        n += b.len() as u64;
        each(&b);
    }
    Ok(n)
}

/// The 4 KiB phases: `n` PUTs then `n` GETs of those keys, 16 at a time. Returns ops/s, p50
/// and p99 of each, and the GET phase's CPU row.
async fn small_phases(
    s3: &Client,
    n: usize,
    pid: u32,
) -> Result<(f64, f64, f64, f64, f64, f64, String)> {
    eprintln!("bench: 4 KiB PUT and GET at 16 concurrency, {n} ops each");
    let small = Bytes::from(random_bytes(4096, 2));
    let (put_ops, put_p50, put_p99) = {
        let s3 = s3.clone();
        small_ops(n, 16, move |i| {
            let (s3, small) = (s3.clone(), small.clone());
            async move { put(&s3, &format!("small/{i:06}"), small).await }
        })
        .await?
    };
    eprintln!("bench: 4 KiB GET at 16 concurrency");
    let cpu = CpuWatch::start(pid);
    let (get_ops, get_p50, get_p99) = {
        let s3 = s3.clone();
        small_ops(n, 16, move |i| {
            let s3 = s3.clone();
            async move {
                let n = get(&s3, &format!("small/{i:06}")).await?;
                anyhow::ensure!(n == 4096, "small GET returned {n} bytes");
                Ok(())
            }
        })
        .await?
    };
    let row = cpu.finish("GET 4 KiB, 16 concurrent");
    Ok((put_ops, put_p50, put_p99, get_ops, get_p50, get_p99, row))
}

/// Runs `ops` operations at `concurrency`, `op(i)` each; returns (ops/s, p50 ms, p99 ms).
async fn small_ops<F, Fut>(ops: usize, concurrency: usize, op: F) -> Result<(f64, f64, f64)>
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = Result<()>> + Send,
{
    let op = Arc::new(op);
    let next = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let mut workers = Vec::new();
    for _ in 0..concurrency {
        let (op, next) = (op.clone(), next.clone());
        workers.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed) as usize;
                if i >= ops {
                    return Ok::<_, anyhow::Error>(lat);
                }
                let t = Instant::now();
                op(i).await?;
                lat.push(t.elapsed());
            }
        }));
    }
    let mut all = Vec::new();
    for w in workers {
        all.extend(w.await??);
    }
    let elapsed = start.elapsed();
    all.sort();
    let pct = |p: f64| {
        let idx = ((p * all.len() as f64).ceil() as usize).clamp(1, all.len()) - 1;
        all[idx].as_secs_f64() * 1000.0
    };
    Ok((ops as f64 / elapsed.as_secs_f64(), pct(0.50), pct(0.99)))
}

#[tokio::main(flavor = "multi_thread")]
async fn main() -> Result<()> {
    let small_ops_count: usize = std::env::var("BENCH_SMALL_OPS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5000);
    let load_before = loadavg();
    eprintln!("bench: generating data and measuring hash rates");
    let big = Bytes::from(random_bytes(GIB, 1));
    let md5_rate = hash_rate::<md5::Md5>(&big[..256 * MIB]);
    let sha_rate = hash_rate::<sha2::Sha256>(&big[..256 * MIB]);

    let metadata = match std::env::var("BENCH_METADATA").as_deref() {
        Ok("cassandra") => Metadata::cassandra_from_env()
            .ok_or_else(|| anyhow!("BENCH_METADATA=cassandra needs SDFBS_TEST_SCYLLA=host:port"))?,
        _ => Metadata::Embedded,
    };
    eprintln!("bench: starting sdfbs dev (3 nodes, {metadata:?} metadata)");
    let cluster = Cluster::start_dev_with(3, &metadata)?;
    let pid = cluster
        .gateway_pid()
        .ok_or_else(|| anyhow!("no gateway process"))?;
    let s3 = common::client(&cluster, common::Checksums::Default);
    s3.create_bucket()
        .bucket("bench")
        .send()
        .await
        .map_err(|e| anyhow!("create bucket: {e:?}"))?;
    let idle_rss = rss_of(pid);
    if std::env::var_os("BENCH_SMALL_ONLY").is_some() {
        // Only the 4 KiB phases, printed and not written to the docs: for quick A/B runs.
        let (put_ops, _, put_p99, get_ops, get_p50, get_p99, _) =
            small_phases(&s3, small_ops_count, pid).await?;
        println!(
            "PUT 4 KiB {put_ops:.0} ops/s p99 {put_p99:.2} ms; GET 4 KiB {get_ops:.0} ops/s p50 {get_p50:.2} ms p99 {get_p99:.2} ms"
        );
        return Ok(());
    }

    eprintln!("bench: 1 GiB single-stream PUT");
    let mut cpu_rows = String::new();
    let sampler = RssSampler::start(pid);
    let cpu = CpuWatch::start(pid);
    let t = Instant::now();
    put(&s3, "one-gib", big.clone()).await?;
    cpu_rows += &cpu.finish("PUT 1 GiB, one stream");
    let put_1g = mib_per_s(GIB as u64, t.elapsed());
    let put_peak = sampler.finish();

    eprintln!("bench: 1 GiB single-stream GET");
    let sampler = RssSampler::start(pid);
    let cpu = CpuWatch::start(pid);
    let t = Instant::now();
    let n = get(&s3, "one-gib").await?;
    cpu_rows += &cpu.finish("GET 1 GiB, one stream");
    let get_1g = mib_per_s(n, t.elapsed());
    let get_peak = sampler.finish();
    anyhow::ensure!(n == GIB as u64, "GET returned {n} bytes of 1 GiB");

    // The same GET with curl on a presigned URL: what the gateway serves to a client that
    // spends less CPU per byte than the SDK (both share the machine's cores with the cluster).
    eprintln!("bench: 1 GiB single-stream GET with curl");
    let url = s3
        .get_object()
        .bucket("bench")
        .key("one-gib")
        .presigned(presigning()?)
        .await
        .map_err(|e| anyhow!("presigning: {e}"))?
        .uri()
        .to_string();
    let cpu = CpuWatch::start(pid);
    let (ok, fields, report) = curl("%{size_download} %{speed_download}", &[&url]).await?;
    cpu_rows += &cpu.finish("GET 1 GiB, one stream, curl");
    let mut fields = fields.iter().map(|f| f.parse::<f64>().unwrap_or(0.0));
    let (curl_bytes, curl_speed) = (fields.next().unwrap_or(0.0), fields.next().unwrap_or(0.0));
    anyhow::ensure!(ok && curl_bytes == GIB as f64, "curl GET failed: {report}");
    let get_1g_curl = curl_speed / MIB as f64;

    // The same PUT with curl on a presigned URL, from a file: a client that neither hashes the
    // payload for its signature nor sends a checksum, so the gateway skips the signed-payload
    // SHA-256 too. This bounds what any client could get from this machine's 2 cores.
    eprintln!("bench: 1 GiB single-stream PUT with curl");
    let (put_1g_curl, put_curl_cpu) = put_with_curl(&s3, pid).await?;
    cpu_rows += &put_curl_cpu;

    // Flat memory whatever the size: a 5 GiB object (the largest single PUT S3 allows),
    // streamed from a file by the SDK and read back without keeping it.
    eprintln!("bench: 5 GiB PUT and GET (memory)");
    let five = 5 * GIB as u64;
    let dir = tempfile::tempdir().context("temp dir for the 5 GiB file")?;
    let path = dir.path().join("five-gib");
    let digest = {
        let path = path.clone();
        tokio::task::spawn_blocking(move || sdfbs_compat_tests::write_random_file(&path, five, 5))
            .await??
    };
    let sampler = RssSampler::start(pid);
    let t = Instant::now();
    s3.put_object()
        .bucket("bench")
        .key("five-gib")
        .body(
            ByteStream::from_path(&path)
                .await
                .context("opening the 5 GiB file")?,
        )
        .send()
        .await
        .map_err(|e| {
            anyhow!(
                "PUT 5 GiB: {}",
                aws_smithy_types::error::display::DisplayErrorContext(&e)
            )
        })?;
    let put_5g = mib_per_s(five, t.elapsed());
    let put_5g_peak = sampler.finish();
    drop(dir);
    let sampler = RssSampler::start(pid);
    let t = Instant::now();
    let (n, got_digest) = get_digest(&s3, "five-gib").await?;
    let get_5g = mib_per_s(n, t.elapsed());
    let get_5g_peak = sampler.finish();
    anyhow::ensure!(
        n == five && got_digest == digest,
        "5 GiB GET returned other bytes"
    );
    s3.delete_object()
        .bucket("bench")
        .key("five-gib")
        .send()
        .await
        .map_err(|e| anyhow!("DELETE 5 GiB: {e:?}"))?;

    eprintln!("bench: 16 parallel streams of 64 MiB");
    let parts: Vec<Bytes> = (0..16)
        .map(|i| big.slice(i * 64 * MIB..(i + 1) * 64 * MIB))
        .collect();
    let t = Instant::now();
    let mut tasks = Vec::new();
    for (i, p) in parts.iter().enumerate() {
        let (s3, p) = (s3.clone(), p.clone());
        tasks.push(tokio::spawn(async move {
            put(&s3, &format!("par/{i}"), p).await
        }));
    }
    for task in tasks {
        task.await??;
    }
    let put_par = mib_per_s(GIB as u64, t.elapsed());
    let t = Instant::now();
    let mut tasks = Vec::new();
    for i in 0..16 {
        let s3 = s3.clone();
        tasks.push(tokio::spawn(
            async move { get(&s3, &format!("par/{i}")).await },
        ));
    }
    let mut total = 0;
    for task in tasks {
        total += task.await??;
    }
    let get_par = mib_per_s(total, t.elapsed());
    anyhow::ensure!(total == GIB as u64, "parallel GETs returned {total} bytes");

    let (put_ops, put_p50, put_p99, get_ops, get_p50, get_p99, get_cpu_row) =
        small_phases(&s3, small_ops_count, pid).await?;
    cpu_rows += &get_cpu_row;
    let peak_rss = put_peak.max(get_peak);
    let load_after = loadavg();
    drop(cluster);

    let mib = |b: u64| b as f64 / MIB as f64;
    let yes_no = |ok: bool| if ok { "yes" } else { "**no**" };
    let report = format!(
        "# Gateway benchmark\n\n\
Written by `compat-tests/examples/bench_gateway.rs`; rerun it to refresh every figure.\n\n\
```sh\n\
cargo build --release -p sdfbs-gateway\n\
cargo run --release -p sdfbs-compat-tests --example bench_gateway\n\
```\n\n\
- Date: {date}\n\
- Commit: {commit}\n\
- Machine: {cores} cores ({cpu}), {rustc}\n\
- Build: {build}\n\
- Load average (1/5/15 min) before and after the run: {load_before} / {load_after} (anything\n  \
above ~0.5 before the run means other work shared the 2 cores and lowered the figures)\n\
- Setup: `sdfbs dev --nodes 3` (gateway and three in-process chunkd nodes in one\n  \
process, replication 2, embedded metadata, data in a temporary directory on the local disk),\n  \
driven over loopback by aws-sdk-s3 with its default settings (CRC32 trailer checksums on\n  \
uploads) running in the same machine (and by curl for one PUT and one GET row). Client, gateway and nodes share the cores, so the\n  \
figures are lower bounds of what the gateway alone does.\n\n\
## Figures\n\n\
| measurement | result | target | met |\n\
| --- | --- | --- | --- |\n\
| single-core MD5 | {md5_rate:.0} MiB/s | | |\n\
| single-core SHA-256 | {sha_rate:.0} MiB/s | | |\n\
| PUT 1 GiB, one stream | {put_1g:.0} MiB/s ({put_pct:.0} % of MD5) | ≥ 60 % of MD5 ({put_target:.0} MiB/s) | {put_ok} |\n\
| PUT 1 GiB, one stream (curl, presigned URL, from a file) | {put_1g_curl:.0} MiB/s ({put_curl_pct:.0} % of MD5) | ≥ 60 % of MD5 ({put_target:.0} MiB/s) | {put_curl_ok} |\n\
| GET 1 GiB, one stream (aws-sdk-s3) | {get_1g:.0} MiB/s | ≥ 600 MiB/s | {get_ok} |\n\
| GET 1 GiB, one stream (curl, presigned URL) | {get_1g_curl:.0} MiB/s | ≥ 600 MiB/s | {get_curl_ok} |\n\
| PUT 16 × 64 MiB in parallel | {put_par:.0} MiB/s aggregate | | |\n\
| GET 16 × 64 MiB in parallel | {get_par:.0} MiB/s aggregate | | |\n\
| PUT 4 KiB, 16 concurrent ({n} ops) | {put_ops:.0} ops/s, p50 {put_p50:.2} ms, p99 {put_p99:.2} ms | | |\n\
| GET 4 KiB, 16 concurrent ({n} ops) | {get_ops:.0} ops/s, p50 {get_p50:.2} ms, p99 {get_p99:.2} ms | p99 ≤ 10 ms | {p99_ok} |\n\
| peak RSS during the 1 GiB PUT / GET | {put_peak_m:.0} / {get_peak_m:.0} MiB (idle {idle:.0} MiB) | ≤ 150 MiB | {rss_ok} |\n\
| peak RSS during a 5 GiB PUT / GET (from a file, {put_5g:.0} / {get_5g:.0} MiB/s) | {put_5g_m:.0} / {get_5g_m:.0} MiB (idle {idle:.0} MiB) | a few tens of MiB above idle | {rss5_ok} |\n\n\
RSS is the resident memory of the whole `sdfbs dev` process (gateway plus the three nodes),\n\
sampled every 10 ms from `/proc/PID/status`.\n\n\
## Where the time went\n\n\
CPU seconds (user + system, from `/proc/PID/stat`) of the `sdfbs dev` process (gateway and\n\
nodes) and of the benchmark client, against the wall time of the phase, on {cores} cores:\n\n\
| phase | time |\n\
| --- | --- |\n\
{cpu_rows}",
        date = command_output("date", &["-u", "+%Y-%m-%d %H:%M UTC"]),
        commit = command_output("git", &["rev-parse", "--short", "HEAD"]),
        cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
        cpu = cpu_model(),
        rustc = command_output("rustc", &["--version"]),
        build = if cfg!(debug_assertions) {
            "**debug: these figures are not representative, rerun with --release**"
        } else {
            "release (client and `sdfbs`)"
        },
        put_pct = 100.0 * put_1g / md5_rate,
        put_target = 0.6 * md5_rate,
        put_ok = yes_no(put_1g >= 0.6 * md5_rate),
        put_curl_pct = 100.0 * put_1g_curl / md5_rate,
        put_curl_ok = yes_no(put_1g_curl >= 0.6 * md5_rate),
        get_ok = yes_no(get_1g >= 600.0),
        get_curl_ok = yes_no(get_1g_curl >= 600.0),
        n = small_ops_count,
        p99_ok = yes_no(get_p99 <= 10.0),
        put_peak_m = mib(put_peak),
        get_peak_m = mib(get_peak),
        idle = mib(idle_rss),
        rss_ok = yes_no(peak_rss <= 150 * MIB as u64),
        put_5g_m = mib(put_5g_peak),
        get_5g_m = mib(get_5g_peak),
        rss5_ok = yes_no(put_5g_peak.max(get_5g_peak) <= idle_rss + 80 * MIB as u64),
    );
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/bench-gateway.md");
    std::fs::write(path, &report).with_context(|| format!("writing {path}"))?;
    println!("{report}");
    eprintln!("bench: written to docs/bench-gateway.md");
    Ok(())
}
