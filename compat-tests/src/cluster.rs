//! [`Cluster`]: a real SDFBS cluster made of separate processes on loopback.
//!
//! One `sdfbs gateway` (embedded metadata in a temporary directory) and N `chunkd` processes,
//! each with its own data directory, all on ephemeral `127.0.0.1` ports. The process contract
//! this relies on (issue 4):
//!
//! * the gateway prints `sdfbs: s3 listening on http://127.0.0.1:PORT` and
//!   `sdfbs: admin listening on http://127.0.0.1:PORT` on stdout once both listeners are bound;
//! * chunkd prints `chunkd listening on http://127.0.0.1:PORT node_id=<id>` once bound, then
//!   heartbeats to the gateway's admin port;
//! * `GET {admin}/health` answers JSON with `nodes_up`.
//!
//! Everything a cluster starts is killed when it is dropped, including on panic, when the
//! tail of every process log is printed to help whoever reads the failure.

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use rand::{distributions::Alphanumeric, Rng};

use crate::http;

/// How long a process may take to print its "listening on" line, and the cluster to report
/// every node Up.
const START_DEADLINE: Duration = Duration::from_secs(60);

/// Options of [`Cluster::start`].
#[derive(Debug, Clone)]
pub struct ClusterOptions {
    /// Number of chunkd processes (3 by default).
    pub nodes: usize,
    /// `--replication` of the gateway (its default when `None`).
    pub replication: Option<usize>,
    /// `--node-down-after` of the gateway, e.g. `"2s"` (its default when `None`).
    pub node_down_after: Option<String>,
    /// Extra arguments for `sdfbs gateway`.
    pub gateway_args: Vec<String>,
}

impl Default for ClusterOptions {
    fn default() -> Self {
        ClusterOptions {
            nodes: 3,
            replication: None,
            node_down_after: None,
            gateway_args: Vec::new(),
        }
    }
}

/// The directory holding the `sdfbs` and `chunkd` binaries: `$SDFBS_BIN_DIR`, or the cargo
/// target directory this test binary was built in (`target/debug` for `target/debug/deps/x`).
pub fn bin_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("SDFBS_BIN_DIR") {
        return PathBuf::from(dir);
    }
    let exe = std::env::current_exe().unwrap_or_default();
    let mut dir = exe.parent().map(Path::to_path_buf).unwrap_or_default();
    if dir
        .file_name()
        .is_some_and(|n| n == "deps" || n == "examples")
    {
        dir.pop();
    }
    dir
}

/// Path of binary `name` in [`bin_dir`]; panics with what to do when it was not built.
fn binary(name: &str) -> PathBuf {
    let path = bin_dir().join(name);
    if !path.is_file() {
        panic!(
            "{} not found: the compat tests run the real binaries; build them first with \
             `cargo build --workspace --bins` (or `cargo test --workspace`, which builds them), \
             or point SDFBS_BIN_DIR at the directory holding `sdfbs` and `chunkd`",
            path.display()
        );
    }
    path
}

fn random_token(len: usize) -> String {
    rand::thread_rng()
        .sample_iter(&Alphanumeric)
        .take(len)
        .map(char::from)
        .collect()
}

/// A running chunkd process (or the memory of one that was killed).
struct Node {
    data_dir: PathBuf,
    log: PathBuf,
    child: Option<Child>,
    url: Option<String>,
    node_id: Option<String>,
}

/// A running cluster. See the module documentation.
pub struct Cluster {
    dir: tempfile::TempDir,
    gateway: Option<Child>,
    gateway_log: PathBuf,
    nodes: Vec<Node>,
    /// S3 endpoint, e.g. `http://127.0.0.1:41234`.
    pub s3_url: String,
    /// Admin endpoint, e.g. `http://127.0.0.1:41235`.
    pub admin_url: String,
    /// Root access key id (given to the gateway by `SDFBS_ROOT_ACCESS_KEY`).
    pub access_key: String,
    /// Root secret key (`SDFBS_ROOT_SECRET_KEY`).
    pub secret_key: String,
    /// Admin token (`SDFBS_ADMIN_TOKEN`).
    pub admin_token: String,
    /// Shared gateway/chunkd secret.
    pub cluster_secret: String,
    /// Region the gateway answers for.
    pub region: String,
}

impl Cluster {
    /// Starts a gateway and `opts.nodes` chunkd processes and waits until every node is Up.
    /// Panics (with the process logs) if that does not happen within a minute.
    pub fn start(opts: ClusterOptions) -> Cluster {
        match Self::try_start(opts) {
            Ok(c) => c,
            Err(e) => panic!("starting the test cluster failed: {e:#}"),
        }
    }

    /// Starts `sdfbs dev --nodes N` (the gateway with N in-process chunkd nodes, as a user runs
    /// it) on ephemeral ports with its data directory in a temporary directory, and waits until
    /// its N nodes are Up. Used by the benchmark; node-level methods do not apply to it.
    pub fn start_dev(nodes: usize) -> Result<Cluster> {
        let mut cluster = Self::new_empty()?;
        let mut cmd = Command::new(binary("sdfbs"));
        cmd.arg("dev")
            .arg("--data-dir")
            .arg(cluster.dir.path().join("dev"))
            .args(["--nodes", &nodes.to_string()])
            .args([
                "--s3-listen",
                "127.0.0.1:0",
                "--admin-listen",
                "127.0.0.1:0",
            ]);
        cluster.launch_gateway(cmd)?;
        cluster.wait_nodes_up(nodes)?;
        Ok(cluster)
    }

    fn new_empty() -> Result<Cluster> {
        let dir = tempfile::Builder::new().prefix("sdfbs-compat-").tempdir()?;
        Ok(Cluster {
            gateway: None,
            gateway_log: dir.path().join("gateway.log"),
            nodes: Vec::new(),
            s3_url: String::new(),
            admin_url: String::new(),
            access_key: format!("SDFBSTEST{}", random_token(11).to_ascii_uppercase()),
            secret_key: random_token(40),
            admin_token: random_token(32),
            cluster_secret: random_token(32),
            region: "us-east-1".to_string(),
            dir,
        })
    }

    /// Spawns the gateway command `cmd` with this cluster's credentials and waits for its two
    /// "listening on" lines.
    fn launch_gateway(&mut self, mut cmd: Command) -> Result<()> {
        clean_env(&mut cmd);
        cmd.env("SDFBS_ROOT_ACCESS_KEY", &self.access_key)
            .env("SDFBS_ROOT_SECRET_KEY", &self.secret_key)
            .env("SDFBS_ADMIN_TOKEN", &self.admin_token)
            .env("SDFBS_CLUSTER_SECRET", &self.cluster_secret);
        let (child, lines) = spawn_logged(cmd, &self.gateway_log)?;
        self.gateway = Some(child);
        let mut s3 = None;
        let mut admin = None;
        wait_lines(&lines, &self.gateway_log, |line| {
            if let Some(u) = line.strip_prefix("sdfbs: s3 listening on ") {
                s3 = Some(u.trim().to_string());
            } else if let Some(u) = line.strip_prefix("sdfbs: admin listening on ") {
                admin = Some(u.trim().to_string());
            }
            s3.is_some() && admin.is_some()
        })
        .context("waiting for the gateway's `sdfbs: s3/admin listening on` lines")?;
        self.s3_url = s3.unwrap_or_default();
        self.admin_url = admin.unwrap_or_default();
        Ok(())
    }

    fn try_start(opts: ClusterOptions) -> Result<Cluster> {
        let sdfbs = binary("sdfbs");
        let chunkd = binary("chunkd");
        // From here on, an early return drops `cluster`, which kills what was started.
        let mut cluster = Self::new_empty()?;
        let meta = cluster.dir.path().join("meta.redb");
        let mut cmd = Command::new(&sdfbs);
        cmd.arg("gateway")
            .arg("--metadata")
            .arg(format!("embedded:{}", meta.display()))
            .args(["--cluster-secret", &cluster.cluster_secret])
            .args([
                "--s3-listen",
                "127.0.0.1:0",
                "--admin-listen",
                "127.0.0.1:0",
            ]);
        if let Some(r) = opts.replication {
            cmd.args(["--replication", &r.to_string()]);
        }
        if let Some(d) = &opts.node_down_after {
            cmd.args(["--node-down-after", d]);
        }
        cmd.args(&opts.gateway_args);
        cluster.launch_gateway(cmd)?;

        for i in 0..opts.nodes {
            let data_dir = cluster.dir.path().join(format!("node{i}"));
            std::fs::create_dir_all(&data_dir)?;
            cluster.nodes.push(Node {
                log: cluster.dir.path().join(format!("node{i}.log")),
                data_dir,
                child: None,
                url: None,
                node_id: None,
            });
            cluster.spawn_node(&chunkd, i)?;
        }
        cluster.wait_nodes_up(opts.nodes)?;
        Ok(cluster)
    }

    /// Process id of the gateway (of `sdfbs dev` for a dev cluster), e.g. to sample its memory.
    pub fn gateway_pid(&self) -> Option<u32> {
        self.gateway.as_ref().map(Child::id)
    }

    fn spawn_node(&mut self, chunkd: &Path, i: usize) -> Result<()> {
        let node = &mut self.nodes[i];
        let mut cmd = Command::new(chunkd);
        cmd.arg("--data-dir")
            .arg(&node.data_dir)
            .args(["--listen", "127.0.0.1:0"])
            .args(["--cluster-secret", &self.cluster_secret])
            .args(["--gateway", &self.admin_url])
            .args(["--heartbeat-interval", "200ms"]);
        clean_env(&mut cmd);
        let (child, lines) = spawn_logged(cmd, &node.log)?;
        node.child = Some(child);
        let mut url = None;
        let mut node_id = None;
        wait_lines(&lines, &node.log, |line| {
            if let Some(rest) = line.strip_prefix("chunkd listening on ") {
                let mut parts = rest.split_whitespace();
                url = parts.next().map(str::to_string);
                node_id = parts
                    .find_map(|p| p.strip_prefix("node_id="))
                    .map(str::to_string);
                return true;
            }
            false
        })
        .with_context(|| format!("waiting for node {i}'s `chunkd listening on` line"))?;
        node.url = url;
        node.node_id = node_id;
        Ok(())
    }

    /// `GET {admin}/health` as JSON.
    pub fn health(&self) -> Result<serde_json::Value> {
        let url = format!("{}/health", self.admin_url);
        let resp = http::get(&url, Some(&self.admin_token))?;
        if resp.status != 200 {
            bail!(
                "GET {url}: status {} body {}",
                resp.status,
                String::from_utf8_lossy(&resp.body)
            );
        }
        resp.json()
    }

    /// Polls `/health` until `nodes_up == n` (within a minute).
    pub fn wait_nodes_up(&self, n: usize) -> Result<()> {
        self.wait_health(&format!("nodes_up == {n}"), |h| {
            h["nodes_up"].as_u64() == Some(n as u64)
        })
    }

    /// Polls `/health` until `pred` holds (within a minute); `what` names the condition in the
    /// error.
    pub fn wait_health(
        &self,
        what: &str,
        mut pred: impl FnMut(&serde_json::Value) -> bool,
    ) -> Result<()> {
        let deadline = Instant::now() + START_DEADLINE;
        let mut last = String::from("no answer yet");
        while Instant::now() < deadline {
            match self.health() {
                Ok(h) if pred(&h) => return Ok(()),
                Ok(h) => last = h.to_string(),
                Err(e) => last = format!("{e:#}"),
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        bail!(
            "{what} not reached within {START_DEADLINE:?}; last /health: {last}\n{}",
            self.log_tails()
        )
    }

    /// Number of chunkd processes this cluster was started with.
    pub fn node_count(&self) -> usize {
        self.nodes.len()
    }

    /// Data directory of node `i` (for corruption tests).
    pub fn node_data_dir(&self, i: usize) -> &Path {
        &self.nodes[i].data_dir
    }

    /// The chunk files node `i` holds: (chunk id, path), found by walking its `chunks/`
    /// directory for files named by a 64-hex-digit id (for corruption tests).
    pub fn chunk_files(&self, i: usize) -> Vec<(String, PathBuf)> {
        let mut out = Vec::new();
        let mut stack = vec![self.nodes[i].data_dir.join("chunks")];
        while let Some(dir) = stack.pop() {
            let Ok(entries) = std::fs::read_dir(&dir) else {
                continue;
            };
            for e in entries.flatten() {
                let path = e.path();
                if path.is_dir() {
                    stack.push(path);
                } else if let Some(name) = path.file_name().and_then(|n| n.to_str()) {
                    if name.len() == 64 && name.bytes().all(|b| b.is_ascii_hexdigit()) {
                        out.push((name.to_string(), path.clone()));
                    }
                }
            }
        }
        out.sort();
        out
    }

    /// Base URL of node `i` while it runs.
    pub fn node_url(&self, i: usize) -> Option<&str> {
        self.nodes[i].url.as_deref()
    }

    /// Node id printed by node `i` at its last start.
    pub fn node_id(&self, i: usize) -> Option<&str> {
        self.nodes[i].node_id.as_deref()
    }

    /// `GET /health` of node `i` (chunkd's own health: chunk_count, used_bytes, ...).
    pub fn node_health(&self, i: usize) -> Result<serde_json::Value> {
        let url = format!(
            "{}/health",
            self.node_url(i)
                .ok_or_else(|| anyhow!("node {i} is not running"))?
        );
        let resp = http::get(&url, None)?;
        if resp.status != 200 {
            bail!("GET {url}: status {}", resp.status);
        }
        resp.json()
    }

    /// Sum of `chunk_count` over the running nodes (replicas included).
    pub fn total_chunk_replicas(&self) -> Result<u64> {
        let mut total = 0;
        for i in 0..self.nodes.len() {
            if self.nodes[i].child.is_some() {
                total += self.node_health(i)?["chunk_count"]
                    .as_u64()
                    .ok_or_else(|| anyhow!("node {i} /health has no chunk_count"))?;
            }
        }
        Ok(total)
    }

    /// Kills node `i` with SIGKILL (no chance to flush or say goodbye) and reaps it.
    pub fn kill_node(&mut self, i: usize) {
        if let Some(mut child) = self.nodes[i].child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        self.nodes[i].url = None;
    }

    /// Starts node `i` again on its old data directory (it keeps its node id; its port is new).
    /// Does not wait for the gateway to see it Up: use [`Cluster::wait_nodes_up`].
    pub fn restart_node(&mut self, i: usize) -> Result<()> {
        self.kill_node(i);
        let chunkd = binary("chunkd");
        self.spawn_node(&chunkd, i)
    }

    /// Stops the gateway with SIGTERM and returns its exit status (the contract: graceful stop,
    /// exit 0). Nodes keep running until the cluster is dropped.
    pub fn terminate_gateway(&mut self, timeout: Duration) -> Result<ExitStatus> {
        let mut child = self
            .gateway
            .take()
            .ok_or_else(|| anyhow!("the gateway is not running"))?;
        // SAFETY: kill(2) on the pid of a child we own and have not reaped yet.
        let rc = unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
        if rc != 0 {
            bail!("kill(SIGTERM) failed: {}", std::io::Error::last_os_error());
        }
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = child.try_wait()? {
                return Ok(status);
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                bail!("the gateway did not exit within {timeout:?} of SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// A `sdfbs` CLI command (e.g. `key create NAME`) aimed at this cluster's admin port.
    pub fn sdfbs_cli(&self) -> Command {
        let mut cmd = Command::new(binary("sdfbs"));
        clean_env(&mut cmd);
        cmd.env("SDFBS_ADMIN_URL", &self.admin_url)
            .env("SDFBS_ADMIN_TOKEN", &self.admin_token);
        cmd
    }

    /// The temporary directory of this cluster (removed on drop); tests may put files there.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The last lines of every process log, for failure messages.
    pub fn log_tails(&self) -> String {
        let mut out = tail("gateway", &self.gateway_log);
        for (i, n) in self.nodes.iter().enumerate() {
            out.push_str(&tail(&format!("node{i}"), &n.log));
        }
        out
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for n in &mut self.nodes {
            if let Some(mut c) = n.child.take() {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
        if let Some(mut g) = self.gateway.take() {
            let _ = g.kill();
            let _ = g.wait();
        }
        if std::thread::panicking() {
            eprintln!("--- cluster logs (test failed) ---\n{}", self.log_tails());
        }
    }
}

/// Removes inherited SDFBS_* variables so the machine's environment cannot change what a test
/// cluster does, and asks for readable logs.
fn clean_env(cmd: &mut Command) {
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
fn spawn_logged(mut cmd: Command, log: &Path) -> Result<(Child, mpsc::Receiver<String>)> {
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
fn wait_lines(
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

fn tail(name: &str, path: &Path) -> String {
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
