//! Single objects: hostile keys and url-encoded listings, ranges, conditions, digests, bodies
//! that stop early, and the aws CLIs.

use crate::client::{xml_value, xml_values, Request};
use crate::cluster::*;

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
                .env("AWS_DEFAULT_REGION", crate::client::REGION)
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
async fn too_few_nodes_is_503_and_creates_nothing() {
    // One node cannot hold two replicas.
    let c = Cluster::start_with(1).await;
    c.create_bucket("few").await;
    let r = c.put("few", "k", b"some bytes").await;
    assert_eq!(
        (r.status, r.code().as_str()),
        (503, "ServiceUnavailable"),
        "{}",
        r.text()
    );
    assert!(r.text().contains("replicas"), "{}", r.text());
    assert!(!c.exists("few", "k").await);
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stored_headers_and_copy_directives() {
    let c = Cluster::start().await;
    c.create_bucket("hdrs").await;
    let headers = [
        ("content-type", "text/plain; charset=utf-8"),
        ("content-encoding", "gzip"),
        ("content-disposition", "attachment; filename=\"a b.txt\""),
        ("cache-control", "max-age=60"),
        ("content-language", "fr"),
        ("expires", "Wed, 21 Oct 2037 07:28:00 GMT"),
        ("x-amz-meta-color", "Blue"),
    ];
    let mut req = Request::new("PUT", "/hdrs/src").body("hello");
    for (k, v) in headers {
        req = req.header(k, v);
    }
    assert_eq!(c.client.send(req).await.status, 200);
    let r = c.get("hdrs", "src").await;
    for (k, v) in headers {
        assert_eq!(r.header(k), Some(v), "{k}");
    }
    assert!(r.header("last-modified").is_some());

    // COPY keeps the source's headers; REPLACE takes the request's.
    let r = c
        .client
        .send(Request::new("PUT", "/hdrs/copied").header("x-amz-copy-source", "/hdrs/src"))
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let r = c.get("hdrs", "copied").await;
    assert_eq!(
        (r.body.as_slice(), r.header("x-amz-meta-color")),
        (&b"hello"[..], Some("Blue"))
    );
    assert_eq!(r.header("content-encoding"), Some("gzip"));
    let r = c
        .client
        .send(
            Request::new("PUT", "/hdrs/replaced")
                .header("x-amz-copy-source", "/hdrs/src")
                .header("x-amz-metadata-directive", "REPLACE")
                .header("content-type", "application/json")
                .header("x-amz-meta-shape", "round"),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let r = c.get("hdrs", "replaced").await;
    assert_eq!(r.header("content-type"), Some("application/json"));
    assert_eq!(r.header("x-amz-meta-shape"), Some("round"));
    assert_eq!(r.header("x-amz-meta-color"), None);
    assert_eq!(r.header("content-encoding"), None);
    assert_eq!(r.body, b"hello");

    // Copying an object onto itself without changing anything is refused, as AWS does.
    let r = c
        .client
        .send(Request::new("PUT", "/hdrs/src").header("x-amz-copy-source", "/hdrs/src"))
        .await;
    assert_eq!(
        (r.status, r.code().as_str()),
        (400, "InvalidRequest"),
        "{}",
        r.text()
    );
    // A missing source is NoSuchKey; a failed source condition is 412.
    let r = c
        .client
        .send(Request::new("PUT", "/hdrs/x").header("x-amz-copy-source", "/hdrs/none"))
        .await;
    expect_error(&r, 404, "NoSuchKey");
    let r = c
        .client
        .send(
            Request::new("PUT", "/hdrs/x")
                .header("x-amz-copy-source", "/hdrs/src")
                .header("x-amz-copy-source-if-match", "\"different\""),
        )
        .await;
    expect_error(&r, 412, "PreconditionFailed");
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_failing_their_signature_create_nothing() {
    let c = Cluster::start().await;
    c.create_bucket("sig").await;
    let data = vec![42u8; 200_000];

    // A signed single-chunk payload whose bytes do not match x-amz-content-sha256.
    let mut req = Request::new("PUT", "/sig/single").body(data.clone());
    req.payload_hash = Some("0".repeat(64));
    let r = c.client.send(req).await;
    expect_error(&r, 400, "XAmzContentSHA256Mismatch");
    assert!(!c.exists("sig", "single").await);

    // A signed aws-chunked payload whose chunk signatures are wrong.
    let mut body = Vec::new();
    for chunk in data.chunks(64 * 1024).chain(std::iter::once(&[][..])) {
        body.extend_from_slice(
            format!("{:x};chunk-signature={}\r\n", chunk.len(), "0".repeat(64)).as_bytes(),
        );
        body.extend_from_slice(chunk);
        body.extend_from_slice(b"\r\n");
    }
    let mut req = Request::new("PUT", "/sig/chunked")
        .header("content-encoding", "aws-chunked")
        .header("x-amz-decoded-content-length", &data.len().to_string())
        .body(body);
    req.payload_hash = Some("STREAMING-AWS4-HMAC-SHA256-PAYLOAD".into());
    let r = c.client.send(req).await;
    expect_error(&r, 403, "SignatureDoesNotMatch");
    assert!(!c.exists("sig", "chunked").await);
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn empty_objects() {
    let c = Cluster::start().await;
    c.create_bucket("empty").await;
    let r = c.put("empty", "zero", b"").await;
    assert_eq!(r.status, 200, "{}", r.text());
    // The MD5 of nothing.
    assert_eq!(
        r.header("etag"),
        Some("\"d41d8cd98f00b204e9800998ecf8427e\"")
    );
    let r = c.get("empty", "zero").await;
    assert_eq!((r.status, r.body.len()), (200, 0));
    assert_eq!(r.header("content-length"), Some("0"));
    let r = c
        .client
        .send(Request::new("GET", "/empty/zero").header("range", "bytes=0-"))
        .await;
    expect_error(&r, 416, "InvalidRange");
    c.stop().await;
}
