//! Crash and shutdown behaviour of a real `chunkd` process: `kill -9` in the middle of a large
//! write, SIGTERM with a write in flight, and the scrubber finding a chunk corrupted on disk.

mod common;

use std::io::Write;
use std::net::TcpStream;
use std::time::Duration;

use bytes::Bytes;
use chunkd::wire::ChunkId;
use chunkd::PutOutcome;
use common::*;

/// Opens a PUT of `total` bytes for `id` and sends its first `sent` bytes.
fn start_put(node: &Chunkd, id: &ChunkId, body: &[u8], sent: usize) -> TcpStream {
    let mut stream = TcpStream::connect(node.addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let head = format!(
        "PUT /chunks/{id} HTTP/1.1\r\nHost: x\r\nAuthorization: {}\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n",
        bearer(),
        body.len()
    );
    stream.write_all(head.as_bytes()).unwrap();
    stream.write_all(&body[..sent]).unwrap();
    stream
}

/// Waits until the node has written at least `min` bytes of a chunk into tmp/.
fn wait_for_partial_write(node: &Chunkd, min: u64) {
    let tmp = node.data_dir.join("tmp");
    wait_for(Duration::from_secs(30), "a partial chunk in tmp/", || {
        files_below(&tmp)
            .iter()
            .any(|f| f.metadata().map(|m| m.len() >= min).unwrap_or(false))
            .then_some(())
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_during_a_large_write_leaves_no_partial_chunk() {
    let dir = tempfile::tempdir().unwrap();
    let body = data(11, 12 << 20);
    let id = id_of(&body);
    let mut node = Chunkd::start(dir.path(), &[]);
    let _stream = start_put(&node, &id, &body, 6 << 20);
    wait_for_partial_write(&node, 1 << 20);
    let status = node.signal_and_wait(libc::SIGKILL);
    assert!(!status.success());
    drop(node);

    // After a restart the interrupted chunk is nowhere: not readable, not listed, not counted,
    // and the temporary file is gone.
    let node = Chunkd::start(dir.path(), &[]);
    let client = node.client();
    assert_eq!(client.head(&id).await.unwrap(), None);
    assert!(client.list(None, 100).await.unwrap().chunks.is_empty());
    assert_eq!(client.health().await.unwrap().chunk_count, 0);
    assert!(files_below(&dir.path().join("tmp")).is_empty());
    assert!(files_below(&dir.path().join("chunks")).is_empty());

    // The same chunk can then be stored whole.
    let body = Bytes::from(body);
    assert_eq!(
        client.put(&id, body.clone()).await.unwrap(),
        PutOutcome::Created
    );
    assert_eq!(client.get(&id).await.unwrap(), body);
}

#[test]
fn sigterm_finishes_the_write_in_flight_and_exits_0() {
    let dir = tempfile::tempdir().unwrap();
    let body = data(12, 4 << 20);
    let id = id_of(&body);
    let mut node = Chunkd::start(dir.path(), &[]);
    let mut stream = start_put(&node, &id, &body, 2 << 20);
    wait_for_partial_write(&node, 1 << 20);

    // SIGTERM: the node stops accepting (new connections are refused)...
    let pid = node.child.id() as i32;
    // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(pid, libc::SIGTERM) };
    let addr = node.addr;
    wait_for(Duration::from_secs(30), "the listener to close", || {
        TcpStream::connect(addr).is_err().then_some(())
    });
    // ...but the upload already under way completes and is acknowledged.
    stream.write_all(&body[2 << 20..]).unwrap();
    let answer = read_answer(&mut stream, false);
    assert_eq!(answer.status, 201, "{answer:?}");
    let status = node.signal_and_wait(0); // already signalled; just wait for the exit
    assert_eq!(status.code(), Some(0));
    drop(node);

    let node = Chunkd::start(dir.path(), &[]);
    let auth = bearer();
    let answer = raw(
        node.addr,
        "GET",
        &format!("/chunks/{id}"),
        &[("Authorization", &auth)],
        &[],
    );
    assert_eq!(answer.status, 200);
    assert_eq!(answer.body, body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scrubber_quarantines_and_reports_a_chunk_corrupted_on_disk() {
    let dir = tempfile::tempdir().unwrap();
    let node = Chunkd::start(dir.path(), &["--scrub-rate", "64MiB"]);
    let client = node.client();
    let chunks: Vec<Bytes> = (20..23)
        .map(|seed| Bytes::from(data(seed, 256 << 10)))
        .collect();
    for chunk in &chunks {
        client.put(&id_of(chunk), chunk.clone()).await.unwrap();
    }
    // Flip one byte of the second chunk on disk, in place.
    let victim = id_of(&chunks[1]);
    let hex = victim.to_hex();
    let path = dir
        .path()
        .join("chunks")
        .join(&hex[0..2])
        .join(&hex[2..4])
        .join(&hex);
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[1000] ^= 0x40;
    std::fs::write(&path, &bytes).unwrap();

    let mut health = client.health().await.unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while health.corrupt_chunks == 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "scrubber did not report the corrupt chunk"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
        health = client.health().await.unwrap();
    }
    assert_eq!(health.corrupt_chunks, 1);
    assert_eq!(health.chunk_count, 2);
    assert_eq!(client.head(&victim).await.unwrap(), None);
    let listed: Vec<ChunkId> = client
        .list(None, 10)
        .await
        .unwrap()
        .chunks
        .into_iter()
        .map(|c| c.id)
        .collect();
    assert!(!listed.contains(&victim));
    for good in [&chunks[0], &chunks[2]] {
        assert_eq!(&client.get(&id_of(good)).await.unwrap(), good);
    }
    let quarantined = files_below(&dir.path().join("quarantine"));
    assert_eq!(quarantined.len(), 1);
    assert!(quarantined[0]
        .file_name()
        .unwrap()
        .to_string_lossy()
        .starts_with(&hex));
    drop(node);

    // The count survives a restart (kill -9 included), and is in the heartbeat document too.
    let node = Chunkd::start(dir.path(), &["--scrub-rate", "0"]);
    assert_eq!(node.client().health().await.unwrap().corrupt_chunks, 1);
}
