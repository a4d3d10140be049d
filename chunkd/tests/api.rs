//! The HTTP API of a real `chunkd` process: the client against every endpoint, raw HTTP with a
//! wrong or missing secret, malformed ids, oversized bodies, and configuration through
//! environment variables.

mod common;

use std::process::Command;
use std::time::Duration;

use bytes::Bytes;
use chunkd::wire::ChunkId;
use chunkd::{ChunkClient, ClientError, DeleteOutcome, PutOutcome};
use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_against_every_endpoint() {
    let dir = tempfile::tempdir().unwrap();
    let node = Chunkd::start(dir.path(), &["--zone", "z1", "--capacity", "1GiB"]);
    let client = node.client();
    assert_eq!(client.base_url(), node.url);

    let chunk = Bytes::from(data(1, 1 << 20));
    let id = id_of(&chunk);
    assert_eq!(
        client.put(&id, chunk.clone()).await.unwrap(),
        PutOutcome::Created
    );
    assert_eq!(
        client.put(&id, chunk.clone()).await.unwrap(),
        PutOutcome::AlreadyPresent
    );
    assert_eq!(client.get(&id).await.unwrap(), chunk);
    assert_eq!(client.head(&id).await.unwrap(), Some(chunk.len() as u64));
    assert_eq!(client.touch(&id).await.unwrap(), Some(chunk.len() as u64));

    // The empty chunk is a chunk like any other.
    let empty = id_of(b"");
    assert_eq!(
        client.put(&empty, Bytes::new()).await.unwrap(),
        PutOutcome::Created
    );
    assert_eq!(client.get(&empty).await.unwrap(), Bytes::new());
    assert_eq!(client.head(&empty).await.unwrap(), Some(0));
    assert_eq!(
        client.delete(&empty, Duration::ZERO).await.unwrap(),
        DeleteOutcome::Deleted
    );

    let absent = id_of(b"never stored");
    assert!(matches!(
        client.get(&absent).await,
        Err(ClientError::NotFound)
    ));
    assert_eq!(client.head(&absent).await.unwrap(), None);
    assert_eq!(client.touch(&absent).await.unwrap(), None);

    // Wrong bytes for the id: refused, nothing kept.
    let wrong = id_of(b"something else");
    assert!(matches!(
        client.put(&wrong, chunk.clone()).await,
        Err(ClientError::BadDigest)
    ));
    assert_eq!(client.head(&wrong).await.unwrap(), None);

    // Listing, in id order, in pages.
    let mut ids = vec![id];
    for seed in 2..7 {
        let bytes = Bytes::from(data(seed, 1000 + seed as usize));
        ids.push(id_of(&bytes));
        client.put(&id_of(&bytes), bytes).await.unwrap();
    }
    ids.sort();
    let mut listed = Vec::new();
    let mut after: Option<ChunkId> = None;
    loop {
        let page = client.list(after.as_ref(), 4).await.unwrap();
        assert!(page.chunks.len() <= 4);
        listed.extend(page.chunks.iter().map(|c| c.id));
        match page.next_after {
            Some(next) => after = Some(next),
            None => break,
        }
    }
    assert_eq!(listed, ids);
    let first = client.list(None, 100).await.unwrap();
    let entry = first.chunks.iter().find(|c| c.id == id).unwrap();
    assert_eq!(entry.size, 1 << 20);
    assert!(entry.mtime > 1_600_000_000);

    let health = client.health().await.unwrap();
    assert_eq!(health.node_id, node.node_id);
    assert_eq!(health.zone, "z1");
    assert_eq!(health.capacity_bytes, 1 << 30);
    assert_eq!(health.chunk_count, 6);
    assert_eq!(
        health.used_bytes,
        (1 << 20) + (2..7).map(|s| 1000 + s).sum::<u64>()
    );
    assert_eq!(health.corrupt_chunks, 0);
    assert_eq!(health.version, env!("CARGO_PKG_VERSION"));

    // Garbage-collection grace: just written, so a one-hour grace keeps it; none deletes it.
    assert_eq!(
        client.delete(&id, Duration::from_secs(3600)).await.unwrap(),
        DeleteOutcome::TooYoung
    );
    assert_eq!(client.get(&id).await.unwrap(), chunk);
    assert_eq!(
        client.delete(&id, Duration::ZERO).await.unwrap(),
        DeleteOutcome::Deleted
    );
    assert!(matches!(client.get(&id).await, Err(ClientError::NotFound)));
    assert_eq!(
        client.delete(&id, Duration::ZERO).await.unwrap(),
        DeleteOutcome::Deleted
    );
    assert_eq!(client.health().await.unwrap().chunk_count, 5);

    // A wrong secret is refused by every endpoint but /health.
    let intruder = ChunkClient::new(&node.url, "wrong secret");
    assert!(matches!(
        intruder.get(&ids[0]).await,
        Err(ClientError::Unauthorized)
    ));
    assert!(matches!(
        intruder.head(&ids[0]).await,
        Err(ClientError::Unauthorized)
    ));
    assert!(matches!(
        intruder.list(None, 10).await,
        Err(ClientError::Unauthorized)
    ));
    assert!(intruder.health().await.is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_node_is_a_transport_error() {
    // Bind then drop a listener to get a port nobody listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let client = ChunkClient::new(&format!("http://127.0.0.1:{port}"), SECRET);
    let err = client.health().await.unwrap_err();
    assert!(matches!(err, ClientError::Transport(_)), "{err:?}");
}

#[test]
fn wrong_or_missing_secret_gets_401_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let node = Chunkd::start(dir.path(), &[]);
    let chunk = data(9, 5000);
    let id = id_of(&chunk);
    let path = format!("/chunks/{id}");
    let bad_secret = [("Authorization", "Bearer nope")];
    let lowercase_scheme = [("Authorization", "bearer test-cluster-secret")];
    let no_scheme = [("Authorization", SECRET)];
    for headers in [
        &[][..],
        &bad_secret[..],
        &lowercase_scheme[..],
        &no_scheme[..],
    ] {
        for (method, target, body) in [
            ("PUT", path.as_str(), &chunk[..]),
            ("GET", path.as_str(), &[][..]),
            ("HEAD", path.as_str(), &[][..]),
            ("DELETE", path.as_str(), &[][..]),
            ("GET", "/chunks", &[][..]),
            ("GET", "/chunks/../node_id", &[][..]),
            ("GET", "/nowhere", &[][..]),
        ] {
            let answer = raw(node.addr, method, target, headers, body);
            assert_eq!(answer.status, 401, "{method} {target} with {headers:?}");
        }
    }
    // The refused PUT stored nothing.
    let auth = bearer();
    let answer = raw(node.addr, "HEAD", &path, &[("Authorization", &auth)], &[]);
    assert_eq!(answer.status, 404);
    assert!(files_below(&dir.path().join("chunks")).is_empty());

    // With the secret it works, and /health needs none and names no chunk.
    let answer = raw(node.addr, "PUT", &path, &[("Authorization", &auth)], &chunk);
    assert_eq!(answer.status, 201);
    let health = raw(node.addr, "GET", "/health", &[], &[]);
    assert_eq!(health.status, 200);
    let text = String::from_utf8(health.body).unwrap();
    assert!(
        !text.contains(&id.to_hex()),
        "health lists a chunk id: {text}"
    );
    let doc: serde_json::Value = serde_json::from_str(&text).unwrap();
    for field in [
        "node_id",
        "zone",
        "version",
        "capacity_bytes",
        "used_bytes",
        "chunk_count",
        "corrupt_chunks",
        "uptime_s",
    ] {
        assert!(doc.get(field).is_some(), "health lacks {field}: {text}");
    }
    assert_eq!(doc["chunk_count"], 1);
}

#[test]
fn malformed_ids_get_400_and_touch_no_file() {
    let dir = tempfile::tempdir().unwrap();
    let node = Chunkd::start(dir.path(), &[]);
    let auth = bearer();
    let headers = [("Authorization", auth.as_str())];
    let hex = "ab".repeat(32);
    let targets = [
        format!("/chunks/{}", &hex[..63]),
        format!("/chunks/{hex}0"),
        format!("/chunks/{}", hex.to_uppercase()),
        format!("/chunks/{}", "g".repeat(64)),
        "/chunks/../node_id".to_owned(),
        "/chunks/..%2Fnode_id".to_owned(),
        format!("/chunks/%2e%2e%2f{}", &hex[..55]),
        format!("/chunks/{hex}/extra"),
        format!("/chunks/ab/cd/{hex}"),
        format!("/chunks/..{}", &hex[..62]),
        "/chunks/%00".to_owned(),
    ];
    let node_id_before = std::fs::read(dir.path().join("node_id")).unwrap();
    for target in &targets {
        for method in ["GET", "HEAD", "PUT", "DELETE"] {
            let answer = raw(node.addr, method, target, &headers, b"payload");
            assert_eq!(answer.status, 400, "{method} {target}");
            if method != "HEAD" {
                assert_eq!(answer.error_code(), "InvalidChunkId", "{method} {target}");
            }
        }
    }
    let answer = raw(node.addr, "GET", "/chunks?after=../x", &headers, &[]);
    assert_eq!(answer.status, 400);
    assert_eq!(answer.error_code(), "InvalidChunkId");
    assert_eq!(
        std::fs::read(dir.path().join("node_id")).unwrap(),
        node_id_before
    );
    assert!(files_below(&dir.path().join("chunks")).is_empty());
    assert!(files_below(&dir.path().join("tmp")).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_body_gets_413_and_keeps_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let node = Chunkd::start(dir.path(), &["--max-chunk-size", "64KiB"]);
    let client = node.client();

    let exact = Bytes::from(data(3, 64 << 10));
    assert_eq!(
        client.put(&id_of(&exact), exact.clone()).await.unwrap(),
        PutOutcome::Created
    );

    let big = Bytes::from(data(4, (64 << 10) + 1));
    assert!(matches!(
        client.put(&id_of(&big), big.clone()).await,
        Err(ClientError::TooLarge)
    ));

    // Without Content-Length (chunked), the limit is enforced while the body streams in.
    let id = id_of(&big);
    let auth = bearer();
    let answer = tokio::task::spawn_blocking(move || {
        use std::io::Write;
        let mut stream = std::net::TcpStream::connect(node.addr).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        let head = format!(
            "PUT /chunks/{id} HTTP/1.1\r\nHost: x\r\nAuthorization: {auth}\r\n\
             Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
        );
        stream.write_all(head.as_bytes()).unwrap();
        for piece in big.chunks(8192) {
            let frame = [format!("{:x}\r\n", piece.len()).as_bytes(), piece, b"\r\n"].concat();
            if stream.write_all(&frame).is_err() {
                break; // the server may stop reading once it has refused
            }
        }
        let _ = stream.write_all(b"0\r\n\r\n");
        (read_answer(&mut stream, false), node)
    })
    .await
    .unwrap();
    let (answer, node) = answer;
    assert_eq!(answer.status, 413);
    assert_eq!(answer.error_code(), "TooLarge");
    let health = node.client().health().await.unwrap();
    assert_eq!(health.chunk_count, 1);
    assert!(files_below(&dir.path().join("tmp")).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_node_answers_507_and_keeps_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let node = Chunkd::start(dir.path(), &["--capacity", "1500"]);
    let client = node.client();
    let first = Bytes::from(data(40, 1000));
    let second = Bytes::from(data(41, 1000));
    assert_eq!(
        client.put(&id_of(&first), first.clone()).await.unwrap(),
        PutOutcome::Created
    );
    let err = client
        .put(&id_of(&second), second.clone())
        .await
        .unwrap_err();
    assert!(matches!(err, ClientError::InsufficientStorage), "{err:?}");
    assert_eq!(client.head(&id_of(&second)).await.unwrap(), None);
    assert!(files_below(&dir.path().join("tmp")).is_empty());
    // Re-putting what it already holds needs no room.
    assert_eq!(
        client.put(&id_of(&first), first).await.unwrap(),
        PutOutcome::AlreadyPresent
    );
    assert_eq!(client.health().await.unwrap().used_bytes, 1000);
}

#[test]
fn every_flag_can_come_from_the_environment() {
    let dir = tempfile::tempdir().unwrap();
    let mut command = Command::new(env!("CARGO_BIN_EXE_chunkd"));
    command
        .env("CHUNKD_DATA_DIR", dir.path())
        .env("CHUNKD_LISTEN", "127.0.0.1:0")
        .env("CHUNKD_CLUSTER_SECRET", SECRET)
        .env("CHUNKD_ZONE", "zone-from-env")
        .env("CHUNKD_CAPACITY", "2GiB")
        .env("CHUNKD_ADVERTISE", "http://node.example:7070")
        .env("CHUNKD_HEARTBEAT_INTERVAL", "5s")
        .env("CHUNKD_SCRUB_RATE", "1MiB")
        .env("CHUNKD_MAX_CHUNK_SIZE", "1KiB");
    let node = Chunkd::spawn(command, dir.path());
    let health = raw(node.addr, "GET", "/health", &[], &[]);
    let doc: serde_json::Value = serde_json::from_slice(&health.body).unwrap();
    assert_eq!(doc["zone"], "zone-from-env");
    assert_eq!(doc["capacity_bytes"], 2u64 << 30);
    let auth = bearer();
    let big = data(5, 2000);
    let answer = raw(
        node.addr,
        "PUT",
        &format!("/chunks/{}", id_of(&big)),
        &[("Authorization", &auth)],
        &big,
    );
    assert_eq!(answer.status, 413);
}

/// Ages the chunk's file on disk, as if it had been written `age` ago.
fn age_chunk(dir: &std::path::Path, id: &ChunkId, age: Duration) {
    let path = chunkd::store::chunk_path_in(dir, id);
    let file = std::fs::OpenOptions::new().write(true).open(path).unwrap();
    file.set_modified(std::time::SystemTime::now() - age)
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn touch_and_re_put_restart_the_grace_period() {
    let dir = tempfile::tempdir().unwrap();
    let node = Chunkd::start(dir.path(), &[]);
    let client = node.client();
    let chunk = Bytes::from(data(50, 3000));
    let id = id_of(&chunk);
    let grace = Duration::from_secs(60);
    client.put(&id, chunk.clone()).await.unwrap();

    // Old enough for GC, then touched: kept.
    age_chunk(dir.path(), &id, Duration::from_secs(600));
    assert_eq!(client.touch(&id).await.unwrap(), Some(3000));
    assert_eq!(
        client.delete(&id, grace).await.unwrap(),
        DeleteOutcome::TooYoung
    );

    // A plain HEAD does not refresh anything.
    age_chunk(dir.path(), &id, Duration::from_secs(600));
    assert_eq!(client.head(&id).await.unwrap(), Some(3000));
    // Re-put: kept.
    assert_eq!(
        client.put(&id, chunk.clone()).await.unwrap(),
        PutOutcome::AlreadyPresent
    );
    assert_eq!(
        client.delete(&id, grace).await.unwrap(),
        DeleteOutcome::TooYoung
    );

    // Old and untouched: deleted.
    age_chunk(dir.path(), &id, Duration::from_secs(600));
    assert_eq!(client.head(&id).await.unwrap(), Some(3000));
    assert_eq!(
        client.delete(&id, grace).await.unwrap(),
        DeleteOutcome::Deleted
    );
    assert_eq!(client.head(&id).await.unwrap(), None);

    // A malformed grace is refused, not taken as 0.
    client.put(&id, chunk).await.unwrap();
    let auth = bearer();
    let answer = raw(
        node.addr,
        "DELETE",
        &format!("/chunks/{id}?grace=soon"),
        &[("Authorization", &auth)],
        &[],
    );
    assert_eq!(answer.status, 400);
    assert_eq!(client.head(&id).await.unwrap(), Some(3000));
}

#[test]
fn malformed_query_values_get_400_with_their_code() {
    let dir = tempfile::tempdir().unwrap();
    let node = Chunkd::start(dir.path(), &[]);
    let auth = bearer();
    let headers = [("Authorization", auth.as_str())];
    let id = id_of(b"kept");
    let put = raw(
        node.addr,
        "PUT",
        &format!("/chunks/{id}"),
        &headers,
        b"kept",
    );
    assert_eq!(put.status, 201);
    let upper_after = format!("/chunks?after={}", id.to_hex().to_uppercase());
    for (method, target, code) in [
        (
            "DELETE",
            format!("/chunks/{id}?grace=abc"),
            "InvalidArgument",
        ),
        (
            "DELETE",
            format!("/chunks/{id}?grace=-1"),
            "InvalidArgument",
        ),
        ("GET", "/chunks?limit=x".to_owned(), "InvalidArgument"),
        ("GET", "/chunks?after=abc".to_owned(), "InvalidChunkId"),
        ("GET", upper_after, "InvalidChunkId"),
    ] {
        let answer = raw(node.addr, method, &target, &headers, &[]);
        assert_eq!(answer.status, 400, "{method} {target}");
        assert_eq!(answer.error_code(), code, "{method} {target}");
    }
    // The error body, byte for byte.
    let answer = raw(
        node.addr,
        "DELETE",
        &format!("/chunks/{id}?grace=abc"),
        &headers,
        &[],
    );
    assert_eq!(
        String::from_utf8_lossy(&answer.body),
        r#"{"code":"InvalidArgument","message":"grace must be a whole number of seconds"}"#
    );
    assert_eq!(
        answer.header("content-type").as_deref(),
        Some("application/json")
    );
    // Nothing was deleted; a clamped limit is not an error.
    let answer = raw(node.addr, "HEAD", &format!("/chunks/{id}"), &headers, &[]);
    assert_eq!(answer.status, 200);
    let answer = raw(node.addr, "GET", "/chunks?limit=0", &headers, &[]);
    assert_eq!(answer.status, 200);
    let page: serde_json::Value = serde_json::from_slice(&answer.body).unwrap();
    assert_eq!(page["chunks"][0]["id"], id.to_hex());
}
