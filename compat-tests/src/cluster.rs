//! [`Cluster`]: a real SDFBS cluster made of separate processes on loopback.
//!
//! One or more `sdfbs gateway` processes and N `chunkd` processes, each with its own data
//! directory, all on ephemeral `127.0.0.1` ports. The gateways keep their metadata in an
//! embedded redb file in a temporary directory (one gateway), or in a fresh keyspace on a
//! Cassandra node (see [`Metadata`]), which several gateways can share: they then run with the
//! same root key, admin token and cluster secret, and every node heartbeats to each of the
//! gateways started with the cluster. The process contract this relies on (issue 4):
//!
//! * the gateway prints `sdfbs: s3 listening on http://127.0.0.1:PORT` and
//!   `sdfbs: admin listening on http://127.0.0.1:PORT` on stdout once both listeners are bound;
//! * chunkd prints `chunkd listening on http://127.0.0.1:PORT node_id=<id>` once bound, then
//!   heartbeats to every `--gateway` admin port it was given;
//! * `GET {admin}/health` answers JSON with `nodes_up`.
//!
//! Everything a cluster starts is killed when it is dropped, including on panic, when the
//! tail of every process log is printed to help whoever reads the failure; a Cassandra
//! keyspace is dropped after the gateways are gone.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use rand::{distributions::Alphanumeric, Rng};

use crate::http;
use crate::metadata::{Metadata, MetadataStore};
use crate::process::{clean_env, kill, spawn_logged, tail, wait_lines, START_DEADLINE};

/// Options of [`Cluster::start`].
#[derive(Debug, Clone)]
pub struct ClusterOptions {
    /// Number of chunkd processes (3 by default).
    pub nodes: usize,
    /// Where the gateways keep their metadata (embedded by default).
    pub metadata: Metadata,
    /// Number of `sdfbs gateway` processes (1 by default); more than one needs a shared
    /// metadata store ([`Metadata::Cassandra`]).
    pub gateways: usize,
    /// `--replication` of the gateway (its default when `None`).
    pub replication: Option<usize>,
    /// `--node-down-after` of the gateway, e.g. `"2s"` (its default when `None`).
    pub node_down_after: Option<String>,
    /// Extra arguments for `sdfbs gateway`.
    pub gateway_args: Vec<String>,
    /// Extra arguments for `chunkd`, per node index (e.g. `--capacity` for one node).
    pub node_args: Vec<(usize, Vec<String>)>,
}

impl Default for ClusterOptions {
    fn default() -> Self {
        ClusterOptions {
            nodes: 3,
            metadata: Metadata::Embedded,
            gateways: 1,
            replication: None,
            node_down_after: None,
            gateway_args: Vec::new(),
            node_args: Vec::new(),
        }
    }
}

impl ClusterOptions {
    /// The default options with metadata in `metadata`.
    pub fn with_metadata(metadata: Metadata) -> ClusterOptions {
        ClusterOptions {
            metadata,
            ..ClusterOptions::default()
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
    /// Extra `chunkd` arguments.
    args: Vec<String>,
    child: Option<Child>,
    url: Option<String>,
    node_id: Option<String>,
}

/// A running gateway process (`sdfbs gateway`, or `sdfbs dev` for a dev cluster).
struct GatewayProcess {
    log: PathBuf,
    /// The command that started it (to start it again on the same ports).
    command: Vec<String>,
    child: Option<Child>,
    s3_url: String,
    admin_url: String,
}

/// A running cluster. See the module documentation.
pub struct Cluster {
    dir: tempfile::TempDir,
    /// The `--metadata` of the gateways; owns the Cassandra keyspace, dropped after them.
    store: MetadataStore,
    /// `sdfbs gateway` flags besides the metadata and the listeners (for added gateways).
    gateway_flags: Vec<String>,
    gateways: Vec<GatewayProcess>,
    nodes: Vec<Node>,
    /// S3 endpoint of the first gateway, e.g. `http://127.0.0.1:41234`.
    pub s3_url: String,
    /// Admin endpoint of the first gateway, e.g. `http://127.0.0.1:41235`.
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
    /// Starts `opts.gateways` gateways and `opts.nodes` chunkd processes and waits until every
    /// gateway reports every node Up. Panics (with the process logs) if that does not happen
    /// within a minute.
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
        Self::start_dev_with(nodes, &Metadata::Embedded)
    }

    /// [`Cluster::start_dev`] with its metadata in `metadata` (`sdfbs dev --metadata
    /// scylla:...` for Cassandra; the data directory then holds only the nodes' chunks).
    pub fn start_dev_with(nodes: usize, metadata: &Metadata) -> Result<Cluster> {
        let mut cluster = Self::new_empty(metadata)?;
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
        if metadata.is_shared() {
            cmd.args(["--metadata", &cluster.store.spec]);
        }
        cluster.launch_gateway(cmd)?;
        cluster.wait_nodes_up(nodes)?;
        Ok(cluster)
    }

    fn new_empty(metadata: &Metadata) -> Result<Cluster> {
        let dir = tempfile::Builder::new().prefix("sdfbs-compat-").tempdir()?;
        Ok(Cluster {
            store: MetadataStore::new(metadata, dir.path())?,
            gateway_flags: Vec::new(),
            gateways: Vec::new(),
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
    /// "listening on" lines. The first gateway's endpoints are also `s3_url` and `admin_url`.
    fn launch_gateway(&mut self, mut cmd: Command) -> Result<()> {
        let command: Vec<String> = std::iter::once(cmd.get_program())
            .chain(cmd.get_args())
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        clean_env(&mut cmd);
        cmd.env("SDFBS_ROOT_ACCESS_KEY", &self.access_key)
            .env("SDFBS_ROOT_SECRET_KEY", &self.secret_key)
            .env("SDFBS_ADMIN_TOKEN", &self.admin_token)
            .env("SDFBS_CLUSTER_SECRET", &self.cluster_secret);
        let i = self.gateways.len();
        let log = self.dir.path().join(match i {
            0 => "gateway.log".to_string(),
            i => format!("gateway{i}.log"),
        });
        let (child, lines) = spawn_logged(cmd, &log)?;
        // Pushed before waiting, so that a failed start is still killed and its log shown.
        self.gateways.push(GatewayProcess {
            log: log.clone(),
            command,
            child: Some(child),
            s3_url: String::new(),
            admin_url: String::new(),
        });
        let mut s3 = None;
        let mut admin = None;
        wait_lines(&lines, &log, |line| {
            if let Some(u) = line.strip_prefix("sdfbs: s3 listening on ") {
                s3 = Some(u.trim().to_string());
            } else if let Some(u) = line.strip_prefix("sdfbs: admin listening on ") {
                admin = Some(u.trim().to_string());
            }
            s3.is_some() && admin.is_some()
        })
        .with_context(|| {
            format!("waiting for gateway {i}'s `sdfbs: s3/admin listening on` lines")
        })?;
        let g = &mut self.gateways[i];
        g.s3_url = s3.unwrap_or_default();
        g.admin_url = admin.unwrap_or_default();
        if i == 0 {
            self.s3_url = g.s3_url.clone();
            self.admin_url = g.admin_url.clone();
        }
        Ok(())
    }

    /// Starts one more `sdfbs gateway` on this cluster's metadata store.
    fn spawn_gateway(&mut self) -> Result<()> {
        let mut cmd = Command::new(binary("sdfbs"));
        cmd.arg("gateway")
            .args(["--metadata", &self.store.spec])
            .args(["--cluster-secret", &self.cluster_secret])
            .args([
                "--s3-listen",
                "127.0.0.1:0",
                "--admin-listen",
                "127.0.0.1:0",
            ])
            .args(&self.gateway_flags);
        self.launch_gateway(cmd)
    }

    fn try_start(opts: ClusterOptions) -> Result<Cluster> {
        if opts.gateways == 0 {
            bail!("a cluster needs at least one gateway");
        }
        if opts.gateways > 1 && !opts.metadata.is_shared() {
            bail!("several gateways need a shared metadata store (Metadata::Cassandra)");
        }
        let chunkd = binary("chunkd");
        // From here on, an early return drops `cluster`, which kills what was started and
        // drops its keyspace.
        let mut cluster = Self::new_empty(&opts.metadata)?;
        if let Some(r) = opts.replication {
            cluster
                .gateway_flags
                .extend(["--replication".to_string(), r.to_string()]);
        }
        if let Some(d) = &opts.node_down_after {
            cluster
                .gateway_flags
                .extend(["--node-down-after".to_string(), d.clone()]);
        }
        cluster
            .gateway_flags
            .extend(opts.gateway_args.iter().cloned());
        // One after the other: the first creates the keyspace and tables, the others find them.
        for _ in 0..opts.gateways {
            cluster.spawn_gateway()?;
        }

        for i in 0..opts.nodes {
            let data_dir = cluster.dir.path().join(format!("node{i}"));
            std::fs::create_dir_all(&data_dir)?;
            let args = opts
                .node_args
                .iter()
                .filter(|(n, _)| *n == i)
                .flat_map(|(_, a)| a.iter().cloned())
                .collect();
            cluster.nodes.push(Node {
                log: cluster.dir.path().join(format!("node{i}.log")),
                data_dir,
                args,
                child: None,
                url: None,
                node_id: None,
            });
            cluster.spawn_node(&chunkd, i)?;
        }
        for g in 0..cluster.gateways.len() {
            cluster.wait_nodes_up_on(g, opts.nodes)?;
        }
        Ok(cluster)
    }

    /// Starts another gateway on this cluster's shared metadata store, with the same
    /// credentials and flags, and returns its index. The running nodes do not heartbeat to it:
    /// it learns them from the store, where the other gateways record their heartbeats.
    pub fn add_gateway(&mut self) -> Result<usize> {
        if self.store.keyspace.is_none() {
            bail!("a second gateway needs a shared metadata store (Metadata::Cassandra)");
        }
        self.spawn_gateway()?;
        Ok(self.gateways.len() - 1)
    }

    /// Number of gateways started (running or not).
    pub fn gateway_count(&self) -> usize {
        self.gateways.len()
    }

    /// S3 endpoint of gateway `i`.
    pub fn s3_url_of(&self, i: usize) -> &str {
        &self.gateways[i].s3_url
    }

    /// Admin endpoint of gateway `i`.
    pub fn admin_url_of(&self, i: usize) -> &str {
        &self.gateways[i].admin_url
    }

    /// Process id of the first gateway (of `sdfbs dev` for a dev cluster), e.g. to sample its
    /// memory.
    pub fn gateway_pid(&self) -> Option<u32> {
        self.gateways.first()?.child.as_ref().map(Child::id)
    }

    fn spawn_node(&mut self, chunkd: &Path, i: usize) -> Result<()> {
        let node = &mut self.nodes[i];
        let mut cmd = Command::new(chunkd);
        cmd.arg("--data-dir")
            .arg(&node.data_dir)
            .args(["--listen", "127.0.0.1:0"])
            .args(["--cluster-secret", &self.cluster_secret])
            .args(["--heartbeat-interval", "200ms"])
            .args(&node.args);
        for g in &self.gateways {
            cmd.args(["--gateway", &g.admin_url]);
        }
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

    /// `GET {admin}/health` of the first gateway as JSON.
    pub fn health(&self) -> Result<serde_json::Value> {
        self.health_of(0)
    }

    /// `GET {admin}/health` of gateway `i` as JSON.
    pub fn health_of(&self, i: usize) -> Result<serde_json::Value> {
        let url = format!("{}/health", self.admin_url_of(i));
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

    /// Polls the first gateway's `/health` until `nodes_up == n` (within a minute).
    pub fn wait_nodes_up(&self, n: usize) -> Result<()> {
        self.wait_nodes_up_on(0, n)
    }

    /// Polls gateway `i`'s `/health` until `nodes_up == n` (within a minute).
    pub fn wait_nodes_up_on(&self, i: usize, n: usize) -> Result<()> {
        self.wait_health_of(i, &format!("nodes_up == {n} on gateway {i}"), |h| {
            h["nodes_up"].as_u64() == Some(n as u64)
        })
    }

    /// Polls the first gateway's `/health` until `pred` holds (within a minute); `what` names
    /// the condition in the error.
    pub fn wait_health(
        &self,
        what: &str,
        pred: impl FnMut(&serde_json::Value) -> bool,
    ) -> Result<()> {
        self.wait_health_of(0, what, pred)
    }

    /// [`Cluster::wait_health`] on gateway `i`.
    pub fn wait_health_of(
        &self,
        i: usize,
        what: &str,
        mut pred: impl FnMut(&serde_json::Value) -> bool,
    ) -> Result<()> {
        let deadline = Instant::now() + START_DEADLINE;
        let mut last = String::from("no answer yet");
        while Instant::now() < deadline {
            match self.health_of(i) {
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
        kill(self.nodes[i].child.take());
        self.nodes[i].url = None;
    }

    /// Starts node `i` again on its old data directory (it keeps its node id; its port is new).
    /// Does not wait for the gateway to see it Up: use [`Cluster::wait_nodes_up`].
    pub fn restart_node(&mut self, i: usize) -> Result<()> {
        self.kill_node(i);
        let chunkd = binary("chunkd");
        self.spawn_node(&chunkd, i)
    }

    /// Stops the first gateway with SIGTERM and returns its exit status (the contract: graceful
    /// stop, exit 0). Nodes keep running until the cluster is dropped.
    pub fn terminate_gateway(&mut self, timeout: Duration) -> Result<ExitStatus> {
        let mut child = self
            .gateways
            .first_mut()
            .and_then(|g| g.child.take())
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

    /// Starts one more chunkd node (heartbeating to every gateway) and returns its index. Does
    /// not wait for the gateways to see it Up: use [`Cluster::wait_nodes_up`].
    pub fn add_node(&mut self) -> Result<usize> {
        let i = self.nodes.len();
        let data_dir = self.dir.path().join(format!("node{i}"));
        std::fs::create_dir_all(&data_dir)?;
        self.nodes.push(Node {
            log: self.dir.path().join(format!("node{i}.log")),
            data_dir,
            args: Vec::new(),
            child: None,
            url: None,
            node_id: None,
        });
        self.spawn_node(&binary("chunkd"), i)?;
        Ok(i)
    }

    /// Kills the first gateway with SIGKILL (no chance to finish anything) and reaps it.
    pub fn kill_gateway(&mut self) {
        self.kill_gateway_at(0);
    }

    /// Kills gateway `i` with SIGKILL and reaps it (its endpoints stay known but unanswered).
    pub fn kill_gateway_at(&mut self, i: usize) {
        if let Some(g) = self.gateways.get_mut(i) {
            kill(g.child.take());
        }
    }

    /// Starts the first gateway again, with the same command on the same two ports (so the
    /// nodes' heartbeats and the clients find it where it was), and waits until it sees
    /// `nodes` nodes Up.
    pub fn restart_gateway(&mut self, nodes: usize) -> Result<()> {
        self.kill_gateway();
        let g = self.gateways.remove(0);
        let (s3, admin) = (
            g.s3_url.trim_start_matches("http://").to_string(),
            g.admin_url.trim_start_matches("http://").to_string(),
        );
        let mut args: Vec<String> = g.command[1..].to_vec();
        for (flag, addr) in [("--s3-listen", &s3), ("--admin-listen", &admin)] {
            if let Some(pos) = args.iter().position(|a| a == flag) {
                args[pos + 1] = addr.clone();
            }
        }
        let mut cmd = Command::new(&g.command[0]);
        cmd.args(&args);
        // Relaunched as gateway 0: the others move up one place meanwhile.
        let others = std::mem::take(&mut self.gateways);
        let launched = self.launch_gateway(cmd);
        self.gateways.extend(others);
        launched?;
        self.wait_nodes_up_on(0, nodes)
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
        let mut out = String::new();
        for (i, g) in self.gateways.iter().enumerate() {
            out.push_str(&tail(&format!("gateway{i}"), &g.log));
        }
        for (i, n) in self.nodes.iter().enumerate() {
            out.push_str(&tail(&format!("node{i}"), &n.log));
        }
        out
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for n in &mut self.nodes {
            kill(n.child.take());
        }
        for g in &mut self.gateways {
            kill(g.child.take());
        }
        if std::thread::panicking() {
            eprintln!("--- cluster logs (test failed) ---\n{}", self.log_tails());
        }
        // Only now that no gateway can write to it any more.
        drop(self.store.keyspace.take());
    }
}
