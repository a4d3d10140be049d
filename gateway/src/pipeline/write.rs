//! The write path: a body stream in, replicated chunks out.
//!
//! Three things overlap, each bounded:
//! * the request's own future reads the body and cuts it into 1 MiB chunks (`chunker`);
//! * a hasher task feeds every chunk, in object order, to the caller's `BodyHasher` (MD5 for the
//!   ETag, x-amz-checksum-*) on the blocking pool, through a channel of one chunk;
//! * up to `MAX_CHUNKS_IN_FLIGHT` chunks are being hashed (SHA-256, their id) and sent to their
//!   nodes at once (`store_chunk`), while the next chunk is read.
//!
//! So a request holds about four chunks in memory (one being filled, three in flight; the
//! hasher works on chunks that are also in flight, and it can lag by at most two), whatever the
//! object size. Three in flight rather than two because every chunk waits for two fsyncs on
//! its nodes: more overlap hides that latency.
//!
//! Data safety: `write_body` returns only when every chunk has `replication` replicas that
//! chunkd acknowledged, and chunkd acknowledges a PUT only after fsync. When anything fails
//! (the body, a chunk without enough nodes), the in-flight work is dropped and an error is
//! returned: chunks already written are unreferenced garbage, collected later, and nothing is
//! committed because committing is the caller's job and it only happens after `Ok`.

use super::replicas::place;
use super::{chunk_id, BodyHasher, Inner, PipelineError, WrittenData, CHUNK_SIZE};
use crate::cluster::membership::NodeView;
use bytes::{Bytes, BytesMut};
use chunkd::ChunkClient;
use futures::{Stream, StreamExt, TryStreamExt};
use sdfbs_metadata::{ChunkId, ChunkPlacement, ManifestEntry, NodeId};
use std::sync::Arc;
use tokio::sync::mpsc;

/// Chunks being hashed and replicated at once, per request (besides the one being read).
const MAX_CHUNKS_IN_FLIGHT: usize = 3;

pub(super) async fn write_body<S, E, H>(
    inner: &Arc<Inner>,
    body: S,
    hasher: H,
) -> Result<(WrittenData, H), PipelineError>
where
    S: Stream<Item = Result<Bytes, E>> + Send + Unpin + 'static,
    E: Into<Box<dyn std::error::Error + Send + Sync>>,
    H: BodyHasher,
{
    let (to_hasher, hasher_input) = mpsc::channel::<Bytes>(1);
    let hasher_task = AbortOnDrop(tokio::spawn(run_hasher(hasher, hasher_input)));

    let mut written = WrittenData::default();
    {
        // The stream owns the only sender: once it is dropped (end of this block), the hasher
        // sees the end of its input and returns.
        let mut stored = std::pin::pin!(chunker(body)
            .and_then(move |chunk| {
                let to_hasher = to_hasher.clone();
                async move {
                    to_hasher
                        .send(chunk.clone())
                        .await
                        .map_err(|_| PipelineError::Internal("the body hasher stopped".into()))?;
                    Ok(chunk)
                }
            })
            .map_ok(|chunk| store_chunk(Arc::clone(inner), chunk))
            .try_buffered(MAX_CHUNKS_IN_FLIGHT));
        let every = (inner.gc_grace / 3).max(std::time::Duration::from_millis(100));
        let mut keepalive = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
        loop {
            tokio::select! {
                next = stored.try_next() => match next? {
                    Some((entry, placement)) => {
                        written.size += entry.size;
                        written.manifest.push(entry);
                        written.placements.push(placement);
                    }
                    None => break,
                },
                _ = keepalive.tick() => keep_alive(inner, &written.placements).await?,
            }
        }
    }
    let hasher = hasher_task.join().await?;
    Ok((written, hasher))
}

/// Touches every replica written so far, restarting the garbage-collection grace period of
/// each: until the caller commits, nothing refers to these chunks, and garbage collection
/// deletes unreferenced chunks (and unrecorded chunk files) older than the grace period, so a
/// write that lasts longer than it keeps them young this way. A replica found gone fails the
/// write rather than commit an object missing a chunk.
async fn keep_alive(inner: &Inner, placements: &[ChunkPlacement]) -> Result<(), PipelineError> {
    let mut replicas: Vec<(ChunkId, String, ChunkClient)> = Vec::new();
    for p in placements {
        for node_id in &p.nodes {
            if let Some(node) = inner.membership.node(node_id) {
                replicas.push((p.chunk, node_id.clone(), inner.client(&node.address)));
            }
        }
    }
    futures::stream::iter(replicas)
        .map(|(chunk, node_id, client)| async move {
            match client.touch(&chunk).await {
                Ok(Some(_)) => Ok(()),
                Ok(None) => Err(PipelineError::Internal(format!(
                    "chunk {chunk} vanished from node {node_id} during the upload"
                ))),
                // Unreachable for now: the grace guard of a node that cannot be reached
                // does not matter to a collector that cannot reach it either.
                Err(e) => {
                    tracing::debug!(chunk = %chunk, node_id, error = %e, "cannot touch a replica");
                    Ok(())
                }
            }
        })
        .buffer_unordered(16)
        .try_collect::<Vec<()>>()
        .await?;
    Ok(())
}

/// Feeds chunks to the caller's hasher in order, on the blocking pool; returns the hasher.
async fn run_hasher<H: BodyHasher>(
    mut hasher: H,
    mut input: mpsc::Receiver<Bytes>,
) -> Result<H, PipelineError> {
    while let Some(chunk) = input.recv().await {
        hasher = tokio::task::spawn_blocking(move || {
            hasher.update(&chunk);
            hasher
        })
        .await
        .map_err(|e| PipelineError::Internal(format!("body hasher failed: {e}")))?;
    }
    Ok(hasher)
}

/// A task that is aborted if the write is dropped half-way (client gone, error elsewhere).
struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

impl<T> AbortOnDrop<Result<T, PipelineError>> {
    async fn join(mut self) -> Result<T, PipelineError> {
        (&mut self.0)
            .await
            .map_err(|e| PipelineError::Internal(format!("task failed: {e}")))?
    }
}

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Cuts a body into chunks of exactly `CHUNK_SIZE` bytes (the last one shorter, none empty).
fn chunker<S, E>(body: S) -> impl Stream<Item = Result<Bytes, PipelineError>> + Send
where
    S: Stream<Item = Result<Bytes, E>> + Send + Unpin + 'static,
    E: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    futures::stream::try_unfold(
        (body, BytesMut::new(), false),
        |(mut body, mut buf, mut ended)| async move {
            loop {
                if buf.len() >= CHUNK_SIZE {
                    let chunk = buf.split_to(CHUNK_SIZE).freeze();
                    return Ok(Some((chunk, (body, buf, ended))));
                }
                if ended {
                    if buf.is_empty() {
                        return Ok(None);
                    }
                    let chunk = buf.split().freeze();
                    return Ok(Some((chunk, (body, buf, ended))));
                }
                match body.next().await {
                    Some(Ok(data)) => {
                        if buf.capacity() - buf.len() < data.len() {
                            buf.reserve(CHUNK_SIZE.saturating_sub(buf.len()).max(data.len()));
                        }
                        buf.extend_from_slice(&data);
                    }
                    Some(Err(e)) => return Err(PipelineError::Body(e.into().to_string())),
                    None => ended = true,
                }
            }
        },
    )
}

/// Hashes one chunk and makes sure `replication` distinct nodes hold it.
///
/// Dedup first: when the metadata already records replicas of this chunk, the Up ones are
/// touched (which also restarts their garbage-collection grace period, so a collector cannot
/// delete the chunk under this upload) and count as written. The missing replicas go to the
/// nodes in placement order, the next node taking over whenever one fails.
async fn store_chunk(
    inner: Arc<Inner>,
    data: Bytes,
) -> Result<(ManifestEntry, ChunkPlacement), PipelineError> {
    let size = data.len() as u64;
    let id = chunk_id(data.clone()).await?;
    let need = inner.replication;

    let mut holders = existing_replicas(&inner, &id, size, need).await?;
    place(&inner, &id, &data, &mut holders, &[], need).await?;

    let nodes: Vec<NodeId> = holders.into_iter().map(|n| n.node_id).collect();
    Ok((
        ManifestEntry { chunk: id, size },
        ChunkPlacement {
            chunk: id,
            size,
            nodes,
        },
    ))
}

/// The recorded replicas of a chunk that are on Up nodes and still hold it (refreshed by a
/// touch), at most `need` of them.
async fn existing_replicas(
    inner: &Inner,
    id: &ChunkId,
    size: u64,
    need: usize,
) -> Result<Vec<NodeView>, PipelineError> {
    let Some(record) = inner.meta.get_chunk_location(id).await? else {
        return Ok(Vec::new());
    };
    let hex = id.to_hex();
    let candidates: Vec<NodeView> = record
        .replicas
        .iter()
        .filter_map(|node_id| inner.membership.node(node_id))
        .filter(|n| n.accepts_new_chunks() && n.state == crate::cluster::membership::NodeState::Up)
        .collect();
    let touches = candidates.iter().map(|node| {
        let client = inner.client(&node.address);
        async move { client.touch(id).await }
    });
    let results = futures::future::join_all(touches).await;
    let mut holders = Vec::new();
    for (node, result) in candidates.into_iter().zip(results) {
        match result {
            Ok(Some(len)) if len == size && holders.len() < need => holders.push(node),
            Ok(Some(len)) if len != size => tracing::warn!(chunk = %hex, node_id = %node.node_id,
                len, size, "recorded replica has the wrong size; writing the chunk again"),
            Ok(_) => {}
            Err(e) => tracing::debug!(chunk = %hex, node_id = %node.node_id, error = %e,
                "cannot touch recorded replica"),
        }
    }
    Ok(holders)
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::stream;

    async fn chunks_of(parts: Vec<usize>) -> Vec<usize> {
        let body = stream::iter(
            parts
                .into_iter()
                .map(|n| Ok::<_, std::io::Error>(Bytes::from(vec![7u8; n]))),
        );
        chunker(body)
            .map_ok(|c| c.len())
            .try_collect()
            .await
            .unwrap_or_default()
    }

    #[tokio::test]
    async fn chunker_cuts_exact_mebibytes() {
        const M: usize = CHUNK_SIZE;
        assert_eq!(chunks_of(vec![]).await, Vec::<usize>::new());
        assert_eq!(chunks_of(vec![0, 0]).await, Vec::<usize>::new());
        assert_eq!(chunks_of(vec![1]).await, vec![1]);
        assert_eq!(chunks_of(vec![M]).await, vec![M]);
        assert_eq!(chunks_of(vec![M - 1, 2]).await, vec![M, 1]);
        assert_eq!(chunks_of(vec![3 * M + 5]).await, vec![M, M, M, 5]);
        assert_eq!(
            chunks_of(vec![1000; 3000]).await,
            vec![M, M, 3_000_000 - 2 * M]
        );
    }

    #[tokio::test]
    async fn chunker_reports_a_failing_body() {
        let body = stream::iter(vec![
            Ok(Bytes::from_static(b"abc")),
            Err(std::io::Error::other("client went away")),
        ]);
        let result: Result<Vec<Bytes>, _> = chunker(body).try_collect().await;
        assert!(matches!(result, Err(PipelineError::Body(m)) if m.contains("client went away")));
    }
}
