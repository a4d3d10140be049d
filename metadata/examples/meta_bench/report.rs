//! The state of the machine around a run, the figures one backend measured, and the
//! side-by-side table of all of them.

use crate::BoxError;
use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

/// Latencies of one measurement.
pub struct Latency {
    pub samples: usize,
    pub p50: Duration,
    pub p99: Duration,
    pub max: Duration,
    /// Mean number of entries per answer (pages only).
    pub mean_entries: f64,
}

impl Latency {
    /// Percentiles of `lat` (not empty); `entries` is the total over all answers.
    pub fn of(mut lat: Vec<Duration>, entries: usize) -> Latency {
        lat.sort();
        let pick = |p: f64| lat[(((lat.len() - 1) as f64) * p).round() as usize];
        Latency {
            samples: lat.len(),
            p50: pick(0.5),
            p99: pick(0.99),
            max: lat[lat.len() - 1],
            mean_entries: entries as f64 / lat.len() as f64,
        }
    }
}

/// Milliseconds, three decimals below 10 ms, one above.
pub fn ms(d: Duration) -> String {
    let ms = d.as_secs_f64() * 1000.0;
    if ms < 10.0 {
        format!("{ms:.3}")
    } else {
        format!("{ms:.1}")
    }
}

/// What one backend measured, for the side-by-side table.
pub struct Figures {
    /// The column header, e.g. `Cassandra 5.0.6`.
    pub backend: String,
    /// (writers, commits, time) of each commit measurement.
    pub commits: Vec<(usize, u64, Duration)>,
    /// How the big bucket was loaded, with its rates.
    pub load: String,
    pub get: Latency,
    /// Without, then with a delimiter.
    pub pages: Vec<Latency>,
    /// Common prefixes and time of the fully folded listing.
    pub folded: (usize, Duration),
    /// Latency of a small write and fsync beside the store (embedded only).
    pub fsync: Option<Latency>,
    /// [`machine_state`] at the start and at the end of the backend's run.
    pub state: (String, String),
}

/// The 1, 5 and 15 minute load averages, and the share of the last minute in which some
/// (`some`) or all (`full`) runnable tasks waited for I/O: a commit that waits for fsync is
/// as slow as the disk is busy with other people's writes.
pub fn machine_state() -> String {
    let load = std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".into());
    let io = std::fs::read_to_string("/proc/pressure/io").unwrap_or_default();
    let avg60 = |kind: &str| {
        io.lines()
            .find(|l| l.starts_with(kind))
            .and_then(|l| l.split_whitespace().find_map(|f| f.strip_prefix("avg60=")))
            .unwrap_or("?")
            .to_owned()
    };
    format!(
        "load {load}, io pressure some {} % full {} %",
        avg60("some"),
        avg60("full")
    )
}

/// Writes 4 KiB and fsyncs it, in a file of `dir`, up to 50 times or for 5 s: how long the
/// disk takes to make a commit durable just now.
pub fn fsync_latency(dir: &Path) -> Result<Latency, BoxError> {
    let path = dir.join("fsync-probe");
    let mut file = std::fs::File::create(&path)?;
    let block = [0x5au8; 4096];
    let start = Instant::now();
    let mut lat = Vec::new();
    while lat.len() < 50 && start.elapsed() < Duration::from_secs(5) {
        let t = Instant::now();
        file.write_all(&block)?;
        file.sync_data()?;
        lat.push(t.elapsed());
    }
    std::fs::remove_file(&path)?;
    Ok(Latency::of(lat, 0))
}

/// The figures of every backend as one Markdown table, a column per backend.
pub fn print_table(big: u64, all: &[Figures]) {
    let mut rows: Vec<(String, Vec<String>)> = Vec::new();
    let mut row = |name: String, cell: &dyn Fn(&Figures) -> String| {
        rows.push((name, all.iter().map(cell).collect()));
    };
    for (n, (writers, _, _)) in all[0].commits.iter().enumerate() {
        row(
            format!("commits/s, 1-chunk objects, {writers} writer(s)"),
            &|f| {
                let (_, done, took) = f.commits[n];
                format!(
                    "{:.0} ({done} in {:.1} s)",
                    done as f64 / took.as_secs_f64(),
                    took.as_secs_f64()
                )
            },
        );
    }
    row(
        format!("GET metadata (`get_object_for_read`, 4 records) on {big} keys, p50 / p99 ms"),
        &|f| format!("{} / {}", ms(f.get.p50), ms(f.get.p99)),
    );
    for (n, what) in ["", ", prefix `backup/host-NN/` + delimiter `/`"]
        .iter()
        .enumerate()
    {
        row(
            format!("one 1,000-key page{what} from {big} keys, p50 / p99 / max ms"),
            &|f| {
                let l = &f.pages[n];
                format!("{} / {} / {}", ms(l.p50), ms(l.p99), ms(l.max))
            },
        );
    }
    row("folded listing (100 common prefixes), ms".into(), &|f| {
        ms(f.folded.1)
    });
    row("big bucket loaded".into(), &|f| f.load.clone());
    row(
        "fsync of 4 KiB beside the store, p50 / p99 ms".into(),
        &|f| {
            f.fsync
                .as_ref()
                .map_or("n/a".into(), |l| format!("{} / {}", ms(l.p50), ms(l.p99)))
        },
    );
    row("machine at start / end".into(), &|f| {
        format!("{} / {}", f.state.0, f.state.1)
    });
    println!();
    let header: Vec<&str> = all.iter().map(|f| f.backend.as_str()).collect();
    println!("| measurement | {} |", header.join(" | "));
    println!("| --- |{}", " --- |".repeat(all.len()));
    for (name, cells) in rows {
        println!("| {name} | {} |", cells.join(" | "));
    }
}
