//! Child processes of a test cluster: spawning one with a clean environment and its output in a
//! log file, waiting for the lines it prints when ready, and showing the tail of its log when a
//! test fails.

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};

/// How long a process may take to print its "listening on" line, and the cluster to report
/// every node Up.
pub(crate) const START_DEADLINE: Duration = Duration::from_secs(60);

/// Removes inherited SDFBS_* variables so the machine's environment cannot change what a test
/// cluster does, and asks for readable logs.
pub(crate) fn clean_env(cmd: &mut Command) {
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("SDFBS_") {
            cmd.env_remove(&k);
        }
    }
    if std::env::var_os("RUST_LOG").is_none() {
        cmd.env("RUST_LOG", "info");
    }
    cmd.env("RUST_BACKTRACE", "1").env("NO_COLOR", "1");
}

/// Spawns `cmd` with stderr appended to `log` and stdout read line by line on a thread. Every
/// stdout line is also copied to the log. The returned channel yields the lines; the thread
/// keeps draining stdout after the receiver is gone so the child never blocks on a full pipe.
pub(crate) fn spawn_logged(
    mut cmd: Command,
    log: &Path,
) -> Result<(Child, mpsc::Receiver<String>)> {
    let err = File::create(log).with_context(|| format!("creating {}", log.display()))?;
    let mut out_log = err.try_clone()?;
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::from(err));
    let mut child = cmd
        .spawn()
        .with_context(|| format!("spawning {:?}", cmd.get_program()))?;
    let stdout = child
        .stdout
        .take()
        .ok_or_else(|| anyhow!("no stdout pipe"))?;
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        use std::io::Write;
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            let _ = writeln!(out_log, "[stdout] {line}");
            let _ = tx.send(line);
        }
    });
    Ok((child, rx))
}

/// Feeds stdout lines to `done` until it returns true; fails on EOF (the process died) or after
/// [`START_DEADLINE`].
pub(crate) fn wait_lines(
    lines: &mpsc::Receiver<String>,
    log: &Path,
    mut done: impl FnMut(&str) -> bool,
) -> Result<()> {
    let deadline = Instant::now() + START_DEADLINE;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match lines.recv_timeout(left) {
            Ok(line) => {
                if done(&line) {
                    return Ok(());
                }
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {
                bail!("timed out after {START_DEADLINE:?}\n{}", tail("log", log))
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                // Give stderr a moment to reach the file before showing it.
                std::thread::sleep(Duration::from_millis(100));
                bail!(
                    "the process closed its stdout (exited?)\n{}",
                    tail("log", log)
                )
            }
        }
    }
}

/// Kills `child` with SIGKILL (if it still runs) and reaps it.
pub(crate) fn kill(child: Option<Child>) {
    if let Some(mut c) = child {
        let _ = c.kill();
        let _ = c.wait();
    }
}

/// The last 40 lines of the log `path`, headed by `name`.
pub(crate) fn tail(name: &str, path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    let from = lines.len().saturating_sub(40);
    format!(
        "== {name} ({}), last {} lines ==\n{}\n",
        path.display(),
        lines.len() - from,
        lines[from..].join("\n")
    )
}
