//! Helpers of the fault drills (`tests/drills*.rs`): fast worker settings, replicas counted
//! on disk, objects uploaded and read back by SHA-256, polling with a deadline, the CLI.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::Client;
use sdfbs_compat_tests::{random_bytes, sha256_hex, Cluster};

use super::{body_bytes, ok};

pub const KIB: usize = 1 << 10;
pub const MIB: usize = 1 << 20;

/// Flags that make the workers act within seconds instead of minutes.
pub fn fast_workers() -> Vec<String> {
    [
        "--repair-scan-interval",
        "5s",
        "--gc-interval",
        "1s",
        "--gc-grace",
        "3s",
        "--audit-interval",
        "2s",
    ]
    .map(String::from)
    .to_vec()
}

/// For each chunk id, the nodes (by index) holding a file of it, over the running nodes.
pub fn replicas_on_disk(cluster: &Cluster, nodes: &[usize]) -> BTreeMap<String, BTreeSet<usize>> {
    let mut out: BTreeMap<String, BTreeSet<usize>> = BTreeMap::new();
    for &i in nodes {
        for (id, _) in cluster.chunk_files(i) {
            out.entry(id).or_default().insert(i);
        }
    }
    out
}

/// Uploads `data` under `key` and returns its SHA-256.
pub async fn put_bytes(s3: &Client, b: &str, key: &str, data: Vec<u8>) -> String {
    let digest = sha256_hex(&data);
    ok(s3
        .put_object()
        .bucket(b)
        .key(key)
        .body(ByteStream::from(data))
        .send()
        .await);
    digest
}

/// Uploads `count` objects of varied sizes (some several chunks long); returns key -> SHA-256.
pub async fn upload_objects(
    s3: &Client,
    b: &str,
    count: usize,
    seed: u64,
) -> BTreeMap<String, String> {
    let mut objects = BTreeMap::new();
    for i in 0..count {
        let len = match i % 10 {
            0 => 2 * MIB + 17,
            5 => MIB + 1,
            _ => 20 * KIB + i * 97,
        };
        let data = random_bytes(len, seed + i as u64);
        let key = format!("obj/{i:04}");
        ok(s3
            .put_object()
            .bucket(b)
            .key(&key)
            .body(ByteStream::from(data.clone()))
            .send()
            .await);
        objects.insert(key, sha256_hex(&data));
    }
    objects
}

pub async fn assert_all_read_back(s3: &Client, b: &str, objects: &BTreeMap<String, String>) {
    for (key, digest) in objects {
        let got = ok(s3.get_object().bucket(b).key(key).send().await);
        assert_eq!(&sha256_hex(&body_bytes(got).await), digest, "{key}");
    }
}

/// Polls `check` every 200 ms until it returns `Ok`, or panics with its last error after
/// `within`.
pub async fn eventually<T>(
    what: &str,
    within: Duration,
    mut check: impl FnMut() -> Result<T, String>,
) -> T {
    let deadline = Instant::now() + within;
    loop {
        match check() {
            Ok(v) => return v,
            Err(e) if Instant::now() > deadline => panic!("{what}: not within {within:?}: {e}"),
            Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
}

pub fn cli_output(cluster: &Cluster, args: &[&str]) -> (bool, String) {
    let out = cluster.sdfbs_cli().args(args).output().expect("run sdfbs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}
