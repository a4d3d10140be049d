//! In-process tests of the S3 layer on a real cluster: three chunkd nodes on 127.0.0.1:0 with
//! temporary data directories, the embedded metadata store, the chunk pipeline, and the S3
//! service served by hyper on an ephemeral port. A raw SigV4 client (`client.rs`) sends the
//! requests the compat suites with real SDKs never send: hostile keys, malformed XML, bad
//! ranges, wrong digests, bodies that stop early, oversized headers, unauthorised keys. Every
//! test asserts what a client sees (status, S3 error code, bytes) and that a failed write leaves
//! no object behind.

mod client;

use client::{xml_value, xml_values, Client, Request, Response};
use sdfbs_gateway::membership::{Membership, MembershipConfig};
use sdfbs_gateway::pipeline::ChunkStore;
use sdfbs_gateway::state::Gateway;
use sdfbs_metadata::{now_millis, AccessKeyRecord, Heartbeat, MetadataStore, Permission};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::watch;

const SECRET: &str = "s3-edge-test-cluster-secret";
const ROOT_KEY: &str = "ROOTKEYFORTESTS";
const ROOT_SECRET: &str = "root-secret-for-tests";
const LIMITED_KEY: &str = "LIMITEDKEY";
const LIMITED_SECRET: &str = "limited-secret";
const CREATOR_KEY: &str = "CREATORKEY";
const CREATOR_SECRET: &str = "creator-secret";

/// A running cluster; `stop` shuts everything down (tests call it at the end).
struct Cluster {
    client: Client,
    meta: Arc<dyn MetadataStore>,
    nodes: Vec<chunkd::RunningNode>,
    stop: watch::Sender<bool>,
    server: tokio::task::JoinHandle<()>,
    _dir: tempfile::TempDir,
}

impl Cluster {
    async fn start() -> Cluster {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut nodes = Vec::new();
        for i in 0..3 {
            let mut config = chunkd::NodeConfig::new(
                dir.path().join(format!("node-{i}")),
                "127.0.0.1:0".parse().expect("address"),
                SECRET,
            );
            config.scrub_rate = 0;
            config.capacity = Some(1 << 34);
            nodes.push(chunkd::start(config).await.expect("start chunkd"));
        }
        let meta: Arc<dyn MetadataStore> = Arc::new(
            sdfbs_metadata::embedded::EmbeddedStore::open(dir.path().join("meta.redb"))
                .await
                .expect("open the embedded store"),
        );
        // Nodes register through the same call the admin port makes for a heartbeat. They stay
        // eligible for new chunks for the whole test (no Down timeout in practice).
        let membership = Arc::new(Membership::new(
            meta.clone(),
            MembershipConfig {
                heartbeat_interval: Duration::from_secs(3600),
                node_down_after: Duration::from_secs(24 * 3600),
            },
        ));
        for node in &nodes {
            membership
                .record_heartbeat(Heartbeat {
                    node_id: node.node_id().to_string(),
                    address: node.advertised_url().to_string(),
                    zone: "default".into(),
                    capacity_bytes: 1 << 34,
                    used_bytes: 0,
                    chunk_count: 0,
                    corrupt_chunks: 0,
                    at: now_millis(),
                })
                .await
                .expect("register node");
        }
        let chunks = Arc::new(ChunkStore::new(meta.clone(), membership, 2, SECRET));
        let gw = Arc::new(Gateway {
            meta: meta.clone(),
            chunks,
            region: client::REGION.into(),
        });
        for (id, secret, root) in [
            (ROOT_KEY, ROOT_SECRET, true),
            (LIMITED_KEY, LIMITED_SECRET, false),
            (CREATOR_KEY, CREATOR_SECRET, false),
        ] {
            meta.create_access_key(AccessKeyRecord {
                access_key_id: id.into(),
                secret_key: secret.into(),
                name: id.to_lowercase(),
                created: now_millis(),
                is_root: root,
                permissions: BTreeMap::new(),
                can_create_buckets: id == CREATOR_KEY,
            })
            .await
            .expect("create key");
        }

        let service = sdfbs_gateway::s3::build_service(gw);
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("local addr");
        let (stop, mut stopped) = watch::channel(false);
        let server = tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = stopped.changed() => break,
                    accepted = listener.accept() => {
                        let Ok((socket, _)) = accepted else { continue };
                        socket.set_nodelay(true).ok();
                        let service = service.clone();
                        tokio::spawn(async move {
                            let io = hyper_util::rt::TokioIo::new(socket);
                            let _ = hyper::server::conn::http1::Builder::new()
                                .serve_connection(io, service)
                                .await;
                        });
                    }
                }
            }
        });
        Cluster {
            client: Client {
                addr,
                creds: Some((ROOT_KEY.into(), ROOT_SECRET.into())),
            },
            meta,
            nodes,
            stop,
            server,
            _dir: dir,
        }
    }

    async fn stop(self) {
        let _ = self.stop.send(true);
        let _ = self.server.await;
        for node in self.nodes {
            node.shutdown().await.expect("stop chunkd");
        }
    }

    async fn create_bucket(&self, name: &str) {
        let r = self
            .client
            .send(Request::new("PUT", &format!("/{name}")))
            .await;
        assert_eq!(r.status, 200, "create bucket {name}: {}", r.text());
    }

    async fn put(&self, bucket: &str, key: &str, body: &[u8]) -> Response {
        let path = format!("/{bucket}/{key}");
        self.client
            .send(Request::new("PUT", &path).body(body.to_vec()))
            .await
    }

    async fn get(&self, bucket: &str, key: &str) -> Response {
        let path = format!("/{bucket}/{key}");
        self.client.send(Request::new("GET", &path)).await
    }

    async fn exists(&self, bucket: &str, key: &str) -> bool {
        let path = format!("/{bucket}/{key}");
        let r = self.client.send(Request::new("HEAD", &path)).await;
        assert!(
            r.status == 200 || r.status == 404,
            "HEAD {path}: {}",
            r.status
        );
        r.status == 200
    }
}

fn expect_error(r: &Response, status: u16, code: &str) {
    assert_eq!(
        (r.status, r.code().as_str()),
        (status, code),
        "{}",
        r.text()
    );
}

fn b64(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authentication_and_permissions() {
    let c = Cluster::start().await;
    c.create_bucket("shared").await;
    c.create_bucket("private").await;
    assert_eq!(c.put("shared", "doc", b"shared bytes").await.status, 200);

    // Anonymous, unknown key, wrong secret.
    let r = c
        .client
        .anonymous()
        .send(Request::new("GET", "/shared/doc"))
        .await;
    expect_error(&r, 403, "AccessDenied");
    let r = c
        .client
        .with_key("NOSUCHKEY", "x")
        .send(Request::new("GET", "/shared/doc"))
        .await;
    expect_error(&r, 403, "InvalidAccessKeyId");
    let r = c
        .client
        .with_key(ROOT_KEY, "wrong")
        .send(Request::new("GET", "/shared/doc"))
        .await;
    expect_error(&r, 403, "SignatureDoesNotMatch");

    // A key without permissions: denied everywhere, may not create buckets, lists nothing.
    let limited = c.client.with_key(LIMITED_KEY, LIMITED_SECRET);
    expect_error(
        &limited.send(Request::new("GET", "/shared/doc")).await,
        403,
        "AccessDenied",
    );
    expect_error(
        &limited.send(Request::new("PUT", "/mine")).await,
        403,
        "AccessDenied",
    );
    let r = limited.send(Request::new("GET", "/")).await;
    assert_eq!(r.status, 200);
    assert!(xml_values(&r.text(), "Name").is_empty(), "{}", r.text());

    // Read on one bucket: GET and list work there, writes do not, the other bucket stays closed.
    c.meta
        .set_permission(LIMITED_KEY, "shared", Some(Permission::Read))
        .await
        .expect("grant");
    let r = limited.send(Request::new("GET", "/shared/doc")).await;
    assert_eq!((r.status, r.body.as_slice()), (200, &b"shared bytes"[..]));
    expect_error(
        &limited
            .send(Request::new("PUT", "/shared/new").body("x"))
            .await,
        403,
        "AccessDenied",
    );
    expect_error(
        &limited.send(Request::new("GET", "/private")).await,
        403,
        "AccessDenied",
    );
    let r = limited.send(Request::new("GET", "/")).await;
    assert_eq!(xml_values(&r.text(), "Name"), vec!["shared".to_string()]);
    // CopyObject needs Read on the source as well as Write on the destination.
    c.meta
        .set_permission(LIMITED_KEY, "private", Some(Permission::Write))
        .await
        .expect("grant");
    let r = limited
        .send(Request::new("PUT", "/private/copy").header("x-amz-copy-source", "/shared/doc"))
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(c.exists("private", "copy").await);
    c.create_bucket("closed").await;
    c.put("closed", "secret", b"s").await;
    let r = limited
        .send(Request::new("PUT", "/private/copy2").header("x-amz-copy-source", "/closed/secret"))
        .await;
    expect_error(&r, 403, "AccessDenied");
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn creators_own_their_buckets_and_lose_them_on_delete() {
    let c = Cluster::start().await;
    let creator = c.client.with_key(CREATOR_KEY, CREATOR_SECRET);
    let r = creator.send(Request::new("PUT", "/made-by-creator")).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let r = creator
        .send(Request::new("PUT", "/made-by-creator/k").body("v"))
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let r = creator.send(Request::new("GET", "/")).await;
    assert_eq!(
        xml_values(&r.text(), "Name"),
        vec!["made-by-creator".to_string()]
    );
    // Another key sees nothing of it.
    let limited = c.client.with_key(LIMITED_KEY, LIMITED_SECRET);
    let r = limited
        .send(Request::new("GET", "/made-by-creator/k"))
        .await;
    expect_error(&r, 403, "AccessDenied");
    // A bucket of the same name created later by someone else is not the creator's.
    let r = creator
        .send(Request::new("DELETE", "/made-by-creator/k"))
        .await;
    assert_eq!(r.status, 204);
    let r = creator
        .send(Request::new("DELETE", "/made-by-creator"))
        .await;
    assert_eq!(r.status, 204);
    c.create_bucket("made-by-creator").await;
    let r = creator.send(Request::new("GET", "/made-by-creator")).await;
    expect_error(&r, 403, "AccessDenied");
    let r = creator.send(Request::new("PUT", "/made-by-creator")).await;
    expect_error(&r, 409, "BucketAlreadyExists");
    c.stop().await;
}

/// The aws CLIs installed here (v2 from Debian, v1 from PyPI) against the S3 layer: multipart
/// upload with the CLI's default checksum behaviour, download, listing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aws_cli_round_trip() {
    let mut clis: Vec<String> = Vec::new();
    for candidate in ["/usr/bin/aws", "aws"] {
        let ok = tokio::process::Command::new(candidate)
            .arg("--version")
            .output()
            .await
            .is_ok_and(|o| o.status.success());
        if ok {
            clis.push(candidate.to_string());
        }
    }
    if clis.is_empty() {
        assert!(
            std::env::var("SDFBS_REQUIRE_E2E").as_deref() != Ok("1"),
            "aws CLI not found and SDFBS_REQUIRE_E2E=1"
        );
        println!("skipped: no aws CLI installed");
        return;
    }
    let c = Cluster::start().await;
    c.create_bucket("cli").await;
    let work = tempfile::tempdir().expect("temp dir");
    let data: Vec<u8> = (0..20 * 1024 * 1024 + 123u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let input = work.path().join("input.bin");
    std::fs::write(&input, &data).expect("write input");
    let endpoint = format!("http://{}", c.client.addr);
    for (i, cli) in clis.iter().enumerate() {
        let run = |args: Vec<String>| {
            let mut cmd = tokio::process::Command::new(cli);
            cmd.args(["--endpoint-url", &endpoint])
                .args(args)
                .env("AWS_ACCESS_KEY_ID", ROOT_KEY)
                .env("AWS_SECRET_ACCESS_KEY", ROOT_SECRET)
                .env("AWS_DEFAULT_REGION", client::REGION)
                .env("AWS_CONFIG_FILE", work.path().join("no-config"))
                .env(
                    "AWS_SHARED_CREDENTIALS_FILE",
                    work.path().join("no-credentials"),
                );
            async move {
                let out = cmd.output().await.expect("run aws");
                assert!(
                    out.status.success(),
                    "{cli}: {}",
                    String::from_utf8_lossy(&out.stderr)
                );
                String::from_utf8_lossy(&out.stdout).into_owned()
            }
        };
        let key = format!("s3://cli/obj-{i}");
        let output = work.path().join(format!("output-{i}.bin"));
        run(vec![
            "s3".into(),
            "cp".into(),
            input.display().to_string(),
            key.clone(),
        ])
        .await;
        run(vec![
            "s3".into(),
            "cp".into(),
            key.clone(),
            output.display().to_string(),
        ])
        .await;
        let back = std::fs::read(&output).expect("read output");
        assert!(back == data, "{cli}: downloaded bytes differ");
        let listing = run(vec!["s3".into(), "ls".into(), "s3://cli/".into()]).await;
        assert!(listing.contains(&format!("obj-{i}")), "{cli}: {listing}");
        let head = run(vec![
            "s3api".into(),
            "head-object".into(),
            "--bucket".into(),
            "cli".into(),
            "--key".into(),
            format!("obj-{i}"),
        ])
        .await;
        assert!(
            head.contains(&format!("\"ContentLength\": {}", data.len())),
            "{cli}: {head}"
        );
    }
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bucket_errors() {
    let c = Cluster::start().await;
    expect_error(
        &c.client.send(Request::new("PUT", "/Bad_Name")).await,
        400,
        "InvalidBucketName",
    );
    expect_error(
        &c.client.send(Request::new("PUT", "/ab")).await,
        400,
        "InvalidBucketName",
    );
    c.create_bucket("bk1").await;
    expect_error(
        &c.client.send(Request::new("PUT", "/bk1")).await,
        409,
        "BucketAlreadyOwnedByYou",
    );
    expect_error(
        &c.client.send(Request::new("GET", "/nope")).await,
        404,
        "NoSuchBucket",
    );
    expect_error(&c.get("nope", "k").await, 404, "NoSuchBucket");
    assert_eq!(c.put("bk1", "k", b"v").await.status, 200);
    expect_error(
        &c.client.send(Request::new("DELETE", "/bk1")).await,
        409,
        "BucketNotEmpty",
    );
    assert_eq!(
        c.client.send(Request::new("DELETE", "/bk1/k")).await.status,
        204
    );
    assert_eq!(
        c.client.send(Request::new("DELETE", "/bk1")).await.status,
        204
    );
    let r = c.client.send(Request::new("HEAD", "/bk1")).await;
    assert_eq!(r.status, 404);
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_keys_and_url_encoded_listing() {
    let c = Cluster::start().await;
    c.create_bucket("keys").await;
    let keys = [
        "dir/a b+c.txt",
        "dir/ü/%41/../x",
        "dir/\u{1}ctrl\ttab",
        "dir/<tag>&amp;\"'",
        "dir/sub/deep",
    ];
    for key in keys {
        let r = c.put("keys", key, key.as_bytes()).await;
        assert_eq!(r.status, 200, "{key:?}: {}", r.text());
        let r = c.get("keys", key).await;
        assert_eq!(r.body, key.as_bytes(), "{key:?}");
    }
    let long = "k".repeat(1024);
    assert_eq!(c.put("keys", &long, b"x").await.status, 200);
    expect_error(
        &c.put("keys", &"k".repeat(1025), b"x").await,
        400,
        "KeyTooLongError",
    );

    let r = c
        .client
        .send(
            Request::new("GET", "/keys")
                .query("list-type", "2")
                .query("prefix", "dir/")
                .query("delimiter", "/")
                .query("encoding-type", "url"),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let body = r.text();
    assert_eq!(xml_value(&body, "EncodingType").as_deref(), Some("url"));
    assert_eq!(xml_value(&body, "Prefix").as_deref(), Some("dir/"));
    let mut listed = xml_values(&body, "Key");
    listed.sort();
    let mut expected = vec![
        "dir/%01ctrl%09tab".to_string(),
        "dir/%3Ctag%3E%26amp%3B%22%27".to_string(),
        "dir/a%20b%2Bc.txt".to_string(),
    ];
    expected.sort();
    assert_eq!(listed, expected, "{body}");
    let prefixes = xml_values(&body, "Prefix");
    assert!(prefixes.contains(&"dir/%C3%BC/".to_string()), "{body}");
    assert!(prefixes.contains(&"dir/sub/".to_string()), "{body}");

    // v1 with a marker that needs encoding, and paging by max-keys.
    let r = c
        .client
        .send(
            Request::new("GET", "/keys")
                .query("prefix", "dir/")
                .query("marker", "dir/a b+c.txt")
                .query("max-keys", "1")
                .query("encoding-type", "url"),
        )
        .await;
    let body = r.text();
    assert_eq!(
        xml_value(&body, "Marker").as_deref(),
        Some("dir/a%20b%2Bc.txt"),
        "{body}"
    );
    assert_eq!(
        xml_value(&body, "IsTruncated").as_deref(),
        Some("true"),
        "{body}"
    );
    assert_eq!(
        xml_values(&body, "Key"),
        vec!["dir/sub/deep".to_string()],
        "{body}"
    );

    // v2 continuation through every key, one per page.
    let mut token: Option<String> = None;
    let mut seen = Vec::new();
    for _ in 0..20 {
        let mut req = Request::new("GET", "/keys")
            .query("list-type", "2")
            .query("max-keys", "1");
        if let Some(t) = &token {
            req = req.query("continuation-token", t);
        }
        let body = c.client.send(req).await.text();
        seen.extend(xml_values(&body, "Key"));
        token = xml_value(&body, "NextContinuationToken");
        if token.is_none() {
            break;
        }
    }
    assert_eq!(seen.len(), keys.len() + 1);
    let r = c
        .client
        .send(
            Request::new("GET", "/keys")
                .query("list-type", "2")
                .query("continuation-token", "!!"),
        )
        .await;
    expect_error(&r, 400, "InvalidArgument");
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ranges_conditions_and_digests() {
    let c = Cluster::start().await;
    c.create_bucket("data").await;
    let body: Vec<u8> = (0..3 * 1024 * 1024 + 17).map(|i| (i % 251) as u8).collect();
    let r = c.put("data", "obj", &body).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let etag = r.header("etag").expect("etag").to_string();

    // Ranges across chunk boundaries, suffix, open-ended; unsatisfiable ones are 416.
    for (range, start, end) in [
        ("bytes=0-0", 0usize, 1usize),
        ("bytes=1048570-2097160", 1048570, 2097161),
        ("bytes=-5", body.len() - 5, body.len()),
        ("bytes=3145728-", 3145728, body.len()),
    ] {
        let r = c
            .client
            .send(Request::new("GET", "/data/obj").header("range", range))
            .await;
        assert_eq!(r.status, 206, "{range}");
        assert_eq!(r.body, body[start..end], "{range}");
    }
    let r = c
        .client
        .send(Request::new("GET", "/data/obj").header("range", &format!("bytes={}-", body.len())))
        .await;
    expect_error(&r, 416, "InvalidRange");

    // Conditional reads.
    let r = c
        .client
        .send(Request::new("GET", "/data/obj").header("if-none-match", &etag))
        .await;
    assert_eq!(r.status, 304);
    let r = c
        .client
        .send(Request::new("GET", "/data/obj").header("if-match", "\"nope\""))
        .await;
    expect_error(&r, 412, "PreconditionFailed");
    let r = c
        .client
        .send(
            Request::new("HEAD", "/data/obj")
                .header("if-modified-since", "Sun, 01 Jan 2090 00:00:00 GMT"),
        )
        .await;
    assert_eq!(r.status, 304);

    // Conditional writes.
    let r = c
        .client
        .send(
            Request::new("PUT", "/data/obj")
                .header("if-none-match", "*")
                .body("x"),
        )
        .await;
    expect_error(&r, 412, "PreconditionFailed");
    let r = c
        .client
        .send(
            Request::new("PUT", "/data/obj")
                .header("if-match", "\"0123\"")
                .body("x"),
        )
        .await;
    expect_error(&r, 412, "PreconditionFailed");
    let r = c
        .client
        .send(
            Request::new("PUT", "/data/fresh")
                .header("if-none-match", "*")
                .body("first"),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());

    // Wrong Content-MD5 and wrong x-amz-checksum-*: BadDigest, and no object.
    let r = c
        .client
        .send(
            Request::new("PUT", "/data/md5")
                .header("content-md5", &b64(&[0u8; 16]))
                .body("payload"),
        )
        .await;
    expect_error(&r, 400, "BadDigest");
    assert!(!c.exists("data", "md5").await);
    let r = c
        .client
        .send(
            Request::new("PUT", "/data/crc")
                .header("x-amz-checksum-crc32", "AAAAAA==")
                .body("payload"),
        )
        .await;
    expect_error(&r, 400, "BadDigest");
    assert!(!c.exists("data", "crc").await);

    // A right checksum is stored, and returned only with checksum mode and never for a range.
    let crc = b64(&crc32(b"payload").to_be_bytes());
    let r = c
        .client
        .send(
            Request::new("PUT", "/data/crc")
                .header("x-amz-checksum-crc32", &crc)
                .body("payload"),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let r = c.client.send(Request::new("GET", "/data/crc")).await;
    assert_eq!(r.header("x-amz-checksum-crc32"), None);
    let r = c
        .client
        .send(Request::new("GET", "/data/crc").header("x-amz-checksum-mode", "ENABLED"))
        .await;
    assert_eq!(r.header("x-amz-checksum-crc32"), Some(crc.as_str()));
    let r = c
        .client
        .send(
            Request::new("GET", "/data/crc")
                .header("x-amz-checksum-mode", "ENABLED")
                .header("range", "bytes=0-1"),
        )
        .await;
    assert_eq!((r.status, r.header("x-amz-checksum-crc32")), (206, None));

    // Metadata over 2 KiB is refused; a huge header never crashes the server.
    let big = "v".repeat(3000);
    let r = c
        .client
        .send(
            Request::new("PUT", "/data/meta")
                .header("x-amz-meta-big", &big)
                .body("x"),
        )
        .await;
    expect_error(&r, 400, "MetadataTooLarge");
    let huge = "v".repeat(200_000);
    let r = c
        .client
        .send(
            Request::new("PUT", "/data/huge")
                .header("x-amz-meta-huge", &huge)
                .body("x"),
        )
        .await;
    assert!(
        r.status == 431 || r.status == 400 || r.status == 0,
        "status {}",
        r.status
    );
    assert!(!c.exists("data", "huge").await);
    assert_eq!(c.get("data", "obj").await.body, body);
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_that_ends_early_creates_nothing() {
    let c = Cluster::start().await;
    c.create_bucket("cut").await;
    let body = vec![7u8; 2 * 1024 * 1024 + 5];
    let mut req = Request::new("PUT", "/cut/partial").body(body.clone());
    req.truncate_body_at = Some(1024 * 1024 + 3);
    let _ = c.client.send(req).await;
    assert!(!c.exists("cut", "partial").await);
    // The same key written in full afterwards reads back whole.
    assert_eq!(c.put("cut", "partial", &body).await.status, 200);
    assert_eq!(c.get("cut", "partial").await.body, body);
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_xml_and_multipart_errors() {
    let c = Cluster::start().await;
    c.create_bucket("mpu").await;
    let r = c
        .client
        .send(
            Request::new("POST", "/mpu")
                .query("delete", "")
                .body("<Delete><Object><Key>a</Key>"),
        )
        .await;
    expect_error(&r, 400, "MalformedXML");

    let r = c
        .client
        .send(Request::new("POST", "/mpu/big").query("uploads", ""))
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let upload = xml_value(&r.text(), "UploadId").expect("upload id");
    let part1: Vec<u8> = (0..5 * 1024 * 1024).map(|i| (i % 253) as u8).collect();
    let part2 = b"tail".to_vec();
    let mut etags = Vec::new();
    for (n, data) in [("1", &part1), ("2", &part2)] {
        let r = c
            .client
            .send(
                Request::new("PUT", "/mpu/big")
                    .query("partNumber", n)
                    .query("uploadId", &upload)
                    .body(data.clone()),
            )
            .await;
        assert_eq!(r.status, 200, "{}", r.text());
        etags.push(r.header("etag").expect("etag").to_string());
    }
    let complete = |parts: &[(u32, &str)]| {
        let mut xml = String::from("<CompleteMultipartUpload>");
        for (n, e) in parts {
            xml.push_str(&format!(
                "<Part><PartNumber>{n}</PartNumber><ETag>{e}</ETag></Part>"
            ));
        }
        xml.push_str("</CompleteMultipartUpload>");
        xml
    };
    let send_complete = |xml: String| {
        let client = c.client.clone();
        let upload = upload.clone();
        async move {
            client
                .send(
                    Request::new("POST", "/mpu/big")
                        .query("uploadId", &upload)
                        .body(xml),
                )
                .await
        }
    };
    expect_error(
        &send_complete("<CompleteMultipartUpload><Part>".into()).await,
        400,
        "MalformedXML",
    );
    expect_error(
        &send_complete(complete(&[(2, &etags[1]), (1, &etags[0])])).await,
        400,
        "InvalidPartOrder",
    );
    expect_error(
        &send_complete(complete(&[(1, &etags[0]), (3, "\"abc\"")])).await,
        400,
        "InvalidPart",
    );
    expect_error(
        &send_complete(complete(&[(1, "\"00000000000000000000000000000000\"")])).await,
        400,
        "InvalidPart",
    );
    // A 4-byte part that is not the last one is too small.
    let r = c
        .client
        .send(
            Request::new("PUT", "/mpu/big")
                .query("partNumber", "3")
                .query("uploadId", &upload)
                .body(part2.clone()),
        )
        .await;
    let etag3 = r.header("etag").expect("etag").to_string();
    expect_error(
        &send_complete(complete(&[(1, &etags[0]), (2, &etags[1]), (3, &etag3)])).await,
        400,
        "EntityTooSmall",
    );
    let r = send_complete(complete(&[(1, &etags[0]), (2, &etags[1])])).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let etag = xml_value(&r.text(), "ETag").expect("etag");
    assert!(
        etag.ends_with("-2\"") || etag.ends_with("-2&quot;"),
        "{etag}"
    );
    let whole = c.get("mpu", "big").await;
    assert_eq!(whole.body, [part1.clone(), part2.clone()].concat());
    let r = c
        .client
        .send(Request::new("GET", "/mpu/big").query("partNumber", "2"))
        .await;
    assert_eq!((r.status, r.body.as_slice()), (206, part2.as_slice()));
    assert_eq!(r.header("x-amz-mp-parts-count"), Some("2"));
    // The upload is gone once completed.
    expect_error(
        &send_complete(complete(&[(1, &etags[0])])).await,
        404,
        "NoSuchUpload",
    );
    let r = c
        .client
        .send(Request::new("DELETE", "/mpu/big").query("uploadId", "no-such-upload"))
        .await;
    expect_error(&r, 404, "NoSuchUpload");

    // UploadPartCopy with a range, into a new upload.
    let r = c
        .client
        .send(Request::new("POST", "/mpu/copy").query("uploads", ""))
        .await;
    let upload2 = xml_value(&r.text(), "UploadId").expect("upload id");
    let r = c
        .client
        .send(
            Request::new("PUT", "/mpu/copy")
                .query("partNumber", "1")
                .query("uploadId", &upload2)
                .header("x-amz-copy-source", "/mpu/big")
                .header("x-amz-copy-source-range", "bytes=1048570-1048590"),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let copy_etag = xml_value(&r.text(), "ETag")
        .expect("etag")
        .replace("&quot;", "\"");
    let r = c
        .client
        .send(
            Request::new("POST", "/mpu/copy")
                .query("uploadId", &upload2)
                .body(complete(&[(1, &copy_etag)])),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(c.get("mpu", "copy").await.body, part1[1048570..=1048590]);
    c.stop().await;
}

/// An aws-chunked body with unsigned chunks and a trailer, as current SDKs send by default.
fn aws_chunked_with_trailer(data: &[u8], trailer: &str) -> Vec<u8> {
    let mut out = Vec::new();
    for chunk in data.chunks(64 * 1024) {
        out.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
        out.extend_from_slice(chunk);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(format!("0\r\n{trailer}\r\n\r\n").as_bytes());
    out
}

fn trailer_put<'a>(path: &'a str, data: &[u8], crc: &str) -> Request<'a> {
    let mut req = Request::new("PUT", path)
        .header("content-encoding", "aws-chunked")
        .header("x-amz-decoded-content-length", &data.len().to_string())
        .header("x-amz-trailer", "x-amz-checksum-crc32")
        .header("x-amz-sdk-checksum-algorithm", "CRC32")
        .body(aws_chunked_with_trailer(
            data,
            &format!("x-amz-checksum-crc32:{crc}"),
        ));
    req.payload_hash = Some("STREAMING-UNSIGNED-PAYLOAD-TRAILER".into());
    req
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trailer_checksums_and_full_object_multipart_checksums() {
    let c = Cluster::start().await;
    c.create_bucket("sums").await;
    let data: Vec<u8> = (0..300_000u32).map(|i| (i % 241) as u8).collect();
    let good = b64(&crc32(&data).to_be_bytes());

    // A trailer that does not match the body: BadDigest, and nothing is created.
    let r = c
        .client
        .send(trailer_put("/sums/t", &data, "AAAAAA=="))
        .await;
    expect_error(&r, 400, "BadDigest");
    assert!(!c.exists("sums", "t").await);
    // The right trailer: stored, and returned with checksum mode.
    let r = c.client.send(trailer_put("/sums/t", &data, &good)).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let r = c
        .client
        .send(Request::new("GET", "/sums/t").header("x-amz-checksum-mode", "ENABLED"))
        .await;
    assert_eq!(r.body, data);
    assert_eq!(r.header("x-amz-checksum-crc32"), Some(good.as_str()));

    // A FULL_OBJECT CRC32 multipart upload: the object's CRC32 is the CRC32 of all its bytes,
    // combined from the parts without reading them again.
    let r = c
        .client
        .send(
            Request::new("POST", "/sums/mp")
                .query("uploads", "")
                .header("x-amz-checksum-algorithm", "CRC32")
                .header("x-amz-checksum-type", "FULL_OBJECT"),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let upload = xml_value(&r.text(), "UploadId").expect("upload id");
    let part1: Vec<u8> = (0..5 * 1024 * 1024 + 3).map(|i| (i % 239) as u8).collect();
    let part2 = data.clone();
    let mut xml = String::from("<CompleteMultipartUpload>");
    for (n, part) in [("1", &part1), ("2", &part2)] {
        let crc = b64(&crc32(part).to_be_bytes());
        let r = c
            .client
            .send(
                Request::new("PUT", "/sums/mp")
                    .query("partNumber", n)
                    .query("uploadId", &upload)
                    .header("x-amz-checksum-crc32", &crc)
                    .body(part.clone()),
            )
            .await;
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(r.header("x-amz-checksum-crc32"), Some(crc.as_str()));
        let etag = r.header("etag").expect("etag");
        xml.push_str(&format!(
            "<Part><PartNumber>{n}</PartNumber><ETag>{etag}</ETag><ChecksumCRC32>{crc}</ChecksumCRC32></Part>"
        ));
    }
    xml.push_str("</CompleteMultipartUpload>");
    let whole = [part1, part2].concat();
    let expected = b64(&crc32(&whole).to_be_bytes());
    let r = c
        .client
        .send(
            Request::new("POST", "/sums/mp")
                .query("uploadId", &upload)
                .body(xml),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        xml_value(&r.text(), "ChecksumCRC32").as_deref(),
        Some(expected.as_str())
    );
    let r = c
        .client
        .send(Request::new("HEAD", "/sums/mp").header("x-amz-checksum-mode", "ENABLED"))
        .await;
    assert_eq!(r.header("x-amz-checksum-crc32"), Some(expected.as_str()));
    assert_eq!(r.header("x-amz-checksum-type"), Some("FULL_OBJECT"));
    assert_eq!(c.get("sums", "mp").await.body, whole);
    c.stop().await;
}

/// CRC-32 (IEEE), bit by bit: an independent check of the gateway's value.
fn crc32(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}
