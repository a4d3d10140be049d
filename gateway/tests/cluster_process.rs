//! The `sdfbs` binary as a process: the contract the compat harness and users rely on (the two
//! "listening" lines on stdout, `/health`, the key CLI, a clean exit 0 on SIGTERM, and `sdfbs dev`
//! keeping its credentials across runs).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const DEADLINE: Duration = Duration::from_secs(60);

/// Ephemeral loopback ports and fast heartbeats, for every spawned server.
const LOOPBACK_FAST: [&str; 6] = [
    "--s3-listen",
    "127.0.0.1:0",
    "--admin-listen",
    "127.0.0.1:0",
    "--heartbeat-interval",
    "200ms",
];

/// A spawned `sdfbs`, killed if a test fails half-way.
struct Proc {
    child: Option<Child>,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl Proc {
    fn spawn(args: &[&str], envs: &[(&str, &str)]) -> Proc {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_sdfbs"));
        cmd.args(args).stdout(Stdio::piped()).stderr(Stdio::null());
        for (k, _) in std::env::vars() {
            if k.starts_with("SDFBS_") {
                cmd.env_remove(k);
            }
        }
        for (k, v) in envs {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("spawn sdfbs");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Proc {
            child: Some(child),
            lines,
            seen: Vec::new(),
        }
    }

    /// Waits for a stdout line starting with `prefix` (after indentation); returns the rest of it.
    fn line_after(&mut self, prefix: &str) -> String {
        if let Some(l) = self
            .seen
            .iter()
            .find(|l| l.trim_start().starts_with(prefix))
        {
            return l.trim_start()[prefix.len()..].trim().to_string();
        }
        let deadline = Instant::now() + DEADLINE;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if let Some(rest) = line.trim_start().strip_prefix(prefix) {
                        return rest.trim().to_string();
                    }
                }
                Err(_) => panic!("no line starting {prefix:?}; saw {:?}", self.seen),
            }
        }
    }

    /// SIGTERM, then the exit status (within the deadline).
    fn terminate(mut self) -> std::process::ExitStatus {
        let mut child = self.child.take().expect("child");
        let status = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .expect("kill");
        assert!(status.success());
        let deadline = Instant::now() + DEADLINE;
        loop {
            if let Some(status) = child.try_wait().expect("wait") {
                return status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("sdfbs did not stop within {DEADLINE:?} of SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A minimal HTTP/1.1 GET: (status, body).
fn http_get(base: &str, path: &str) -> (u16, String) {
    let addr = base.trim_start_matches("http://");
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .expect("write");
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("read");
    let status = response
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = response.split("\r\n\r\n").nth(1).unwrap_or("").to_string();
    (status, body)
}

fn health(admin: &str) -> serde_json::Value {
    let (status, body) = http_get(admin, "/health");
    assert_eq!(status, 200, "health answered {status}: {body}");
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("health is not JSON ({e}): {body}"))
}

fn wait_nodes_up(admin: &str, n: u64) {
    let deadline = Instant::now() + DEADLINE;
    loop {
        let h = health(admin);
        if h["nodes_up"].as_u64() == Some(n) {
            return;
        }
        assert!(Instant::now() < deadline, "nodes_up never reached {n}: {h}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn sdfbs_key(admin: &str, token: &str, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_sdfbs"))
        .arg("key")
        .args(args)
        .env("SDFBS_ADMIN_URL", admin)
        .env("SDFBS_ADMIN_TOKEN", token)
        .output()
        .expect("run sdfbs key");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn gateway_process_announces_serves_health_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().expect("temp dir");
    let meta = format!("embedded:{}", dir.path().join("meta.redb").display());
    let token = "process-test-admin-token";
    let mut gw = Proc::spawn(
        &[
            &[
                "gateway",
                "--metadata",
                &meta,
                "--cluster-secret",
                "proc-secret",
            ],
            &LOOPBACK_FAST[..],
        ]
        .concat(),
        &[
            ("SDFBS_ROOT_ACCESS_KEY", "PROCESSTESTROOTKEY01"),
            ("SDFBS_ROOT_SECRET_KEY", "process-test-root-secret"),
            ("SDFBS_ADMIN_TOKEN", token),
        ],
    );
    let s3 = gw.line_after("sdfbs: s3 listening on ");
    let admin = gw.line_after("sdfbs: admin listening on ");
    assert!(s3.starts_with("http://127.0.0.1:") && admin.starts_with("http://127.0.0.1:"));
    let h = health(&admin);
    assert_eq!(h["status"], "ok");
    assert_eq!(h["nodes_up"], 0);

    // Three chunkd nodes join by heartbeat (run in-process here; the compat tests use processes).
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let nodes: Vec<chunkd::RunningNode> = (0..3)
        .map(|i| {
            let mut config = chunkd::NodeConfig::new(
                dir.path().join(format!("node-{i}")),
                "127.0.0.1:0".parse().unwrap(),
                "proc-secret",
            );
            config.gateways = vec![admin.clone()];
            config.heartbeat_interval = Duration::from_millis(200);
            runtime
                .block_on(chunkd::start(config))
                .expect("start chunkd")
        })
        .collect();
    wait_nodes_up(&admin, 3);

    // The key CLI against the admin port.
    let (ok, out, err) = sdfbs_key(&admin, token, &["create", "backup-bot"]);
    assert!(ok, "key create failed: {err}");
    let id = out
        .lines()
        .find_map(|l| l.strip_prefix("access key id: "))
        .expect("id printed")
        .trim()
        .to_string();
    let (ok, _, err) = sdfbs_key(&admin, token, &["allow", &id, "photos", "write"]);
    assert!(ok, "key allow failed: {err}");
    let (ok, out, _) = sdfbs_key(&admin, token, &["list"]);
    assert!(
        ok && out.contains(&id)
            && out.contains("photos:write")
            && out.contains("PROCESSTESTROOTKEY01"),
        "{out}"
    );
    assert!(
        !out.contains("process-test-root-secret"),
        "secrets must not be listed"
    );
    let (ok, _, err) = sdfbs_key(&admin, "wrong-token", &["list"]);
    assert!(
        !ok && err.contains("401"),
        "a wrong admin token must be refused: {err}"
    );
    let (ok, _, err) = sdfbs_key(&admin, token, &["delete", &id]);
    assert!(ok, "key delete failed: {err}");
    let (_, out, _) = sdfbs_key(&admin, token, &["list"]);
    assert!(!out.contains(&id));

    let status = gw.terminate();
    assert!(status.success(), "sdfbs exited with {status}");
    for node in nodes {
        runtime.block_on(node.shutdown()).expect("node shutdown");
    }
}

#[test]
fn dev_runs_a_cluster_and_keeps_its_credentials() {
    let dir = tempfile::tempdir().expect("temp dir");
    let data_dir = dir.path().join("data");
    let args = [
        "dev",
        "--data-dir",
        data_dir.to_str().expect("utf-8 path"),
        "--nodes",
        "3",
    ]
    .into_iter()
    .chain(LOOPBACK_FAST)
    .collect::<Vec<_>>();
    let mut first_keys = None;
    for run in 0..2 {
        let mut dev = Proc::spawn(&args, &[]);
        let s3 = dev.line_after("sdfbs: s3 listening on ");
        let admin = dev.line_after("sdfbs: admin listening on ");
        assert_eq!(dev.line_after("S3 endpoint"), s3);
        let access = dev.line_after("Access key");
        let secret = dev.line_after("Secret key");
        assert!(!access.is_empty() && !secret.is_empty());
        wait_nodes_up(&admin, 3);
        match &first_keys {
            None => first_keys = Some((access, secret)),
            Some(first) => assert_eq!(first, &(access, secret), "run {run}: credentials changed"),
        }
        let status = dev.terminate();
        assert!(status.success(), "sdfbs dev exited with {status}");
    }
    assert!(data_dir.join("meta.redb").exists());
    assert!(data_dir.join("node-3").is_dir());
}

#[test]
fn gateway_takes_its_settings_from_a_config_file() {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = dir.path().join("sdfbs.toml");
    std::fs::write(
        &config,
        format!(
            "metadata = \"embedded:{}\"\ncluster_secret = \"file-secret\"\ns3_listen = \"127.0.0.1:0\"\nadmin_listen = \"127.0.0.1:0\"\nreplication = 3\n",
            dir.path().join("meta.redb").display()
        ),
    )
    .expect("write config");
    let mut gw = Proc::spawn(
        &["gateway", "--config", config.to_str().expect("utf-8 path")],
        &[],
    );
    let admin = gw.line_after("sdfbs: admin listening on ");
    assert_eq!(health(&admin)["replication"], 3);
    let status = gw.terminate();
    assert!(status.success(), "sdfbs exited with {status}");

    // A misspelt setting is an error, not silently ignored.
    std::fs::write(&config, "replicaton = 3\n").expect("write config");
    let out = Command::new(env!("CARGO_BIN_EXE_sdfbs"))
        .args(["gateway", "--config", config.to_str().expect("utf-8 path")])
        .output()
        .expect("run sdfbs");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("replicaton"));
}
