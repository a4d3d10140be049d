//! Test harness: runs the real `chunkd` binary on 127.0.0.1 with an ephemeral port and a
//! temporary data directory, and speaks raw HTTP/1.1 where the client would hide the details.
#![allow(dead_code)] // each test file uses a different part of the harness

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use chunkd::wire::ChunkId;
use sha2::{Digest, Sha256};

pub const SECRET: &str = "test-cluster-secret";

/// A running `chunkd` process, killed when dropped.
pub struct Chunkd {
    pub child: Child,
    pub url: String,
    pub addr: SocketAddr,
    pub node_id: String,
    pub data_dir: PathBuf,
}

impl Chunkd {
    /// Starts chunkd on `data_dir` with `extra` flags and waits for its "listening" line.
    pub fn start(data_dir: &Path, extra: &[&str]) -> Chunkd {
        let mut command = Command::new(env!("CARGO_BIN_EXE_chunkd"));
        command
            .arg("--data-dir")
            .arg(data_dir)
            .args(["--listen", "127.0.0.1:0", "--cluster-secret", SECRET])
            .args(extra);
        Self::spawn(command, data_dir)
    }

    /// Starts a prepared command (flags or environment already set).
    pub fn spawn(mut command: Command, data_dir: &Path) -> Chunkd {
        command
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .env("RUST_LOG", "warn");
        let mut child = command.spawn().expect("spawning chunkd");
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(line);
        });
        let line = match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(line) => line,
            Err(_) => {
                let _ = child.kill();
                panic!("chunkd did not print its listening line within 30 s");
            }
        };
        let rest = line
            .strip_prefix("chunkd listening on ")
            .unwrap_or_else(|| panic!("unexpected first line {line:?}"));
        let (url, node) = rest.trim().split_once(' ').expect("url and node_id");
        let node_id = node.strip_prefix("node_id=").expect("node_id=").to_owned();
        let addr = url.strip_prefix("http://").unwrap().parse().unwrap();
        Chunkd {
            child,
            url: url.to_owned(),
            addr,
            node_id,
            data_dir: data_dir.to_owned(),
        }
    }

    pub fn client(&self) -> chunkd::ChunkClient {
        chunkd::ChunkClient::new(&self.url, SECRET)
    }

    /// Sends `signal` and waits (with a deadline) for the exit status.
    pub fn signal_and_wait(&mut self, signal: i32) -> std::process::ExitStatus {
        let pid = self.child.id() as i32;
        // SAFETY: plain kill(2) on our own child's pid.
        unsafe { libc::kill(pid, signal) };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.child.try_wait().expect("waiting for chunkd") {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "chunkd did not exit after signal {signal}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Chunkd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Deterministic pseudo-random bytes (xorshift), so chunks differ without a RNG dependency.
pub fn data(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

pub fn id_of(bytes: &[u8]) -> ChunkId {
    ChunkId(Sha256::digest(bytes).into())
}

/// A raw HTTP answer.
#[derive(Debug)]
pub struct Raw {
    pub status: u16,
    pub head: String,
    pub body: Vec<u8>,
}

impl Raw {
    pub fn header(&self, name: &str) -> Option<String> {
        self.head.lines().find_map(|line| {
            let (key, value) = line.split_once(':')?;
            key.eq_ignore_ascii_case(name)
                .then(|| value.trim().to_owned())
        })
    }

    pub fn error_code(&self) -> String {
        let body: serde_json::Value =
            serde_json::from_slice(&self.body).unwrap_or(serde_json::Value::Null);
        body["code"].as_str().unwrap_or_default().to_owned()
    }
}

/// Sends one request (`Connection: close`) exactly as given and reads the whole answer.
pub fn raw(
    addr: SocketAddr,
    method: &str,
    target: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Raw {
    let mut stream = TcpStream::connect(addr).expect("connecting to chunkd");
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let mut request =
        format!("{method} {target} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    if !body.is_empty() || method == "PUT" {
        request.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    request.push_str("\r\n");
    stream.write_all(request.as_bytes()).unwrap();
    // The server may answer (and close) before reading a body it refuses.
    let _ = stream.write_all(body);
    read_answer(&mut stream, method == "HEAD")
}

/// Reads one HTTP/1.1 answer from a connection the server closes after it.
pub fn read_answer(stream: &mut TcpStream, head_request: bool) -> Raw {
    let mut bytes = Vec::new();
    let _ = stream.read_to_end(&mut bytes); // a reset after the answer is fine
    let split = bytes
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no complete answer: {:?}", String::from_utf8_lossy(&bytes)));
    let head = String::from_utf8_lossy(&bytes[..split]).into_owned();
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("status code");
    let body = if head_request {
        Vec::new()
    } else {
        bytes[split + 4..].to_vec()
    };
    Raw { status, head, body }
}

pub fn bearer() -> String {
    format!("Bearer {SECRET}")
}

/// Polls `check` until it returns Some, or panics after `limit`.
pub fn wait_for<T>(limit: Duration, what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(value) = check() {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(25));
    }
}

/// Regular files below `dir`, recursively.
pub fn files_below(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(files_below(&path));
        } else {
            out.push(path);
        }
    }
    out
}
