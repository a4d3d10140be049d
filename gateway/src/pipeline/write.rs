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

use super::{chunk_id, BodyHasher, Inner, PipelineError, WrittenData, CHUNK_SIZE};
use crate::cluster::membership::NodeView;
use crate::cluster::placement::{placement_order, Candidate};
use bytes::{Bytes, BytesMut};
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
        while let Some((entry, placement)) = stored.try_next().await? {
            written.size += entry.size;
            written.manifest.push(entry);
            written.placements.push(placement);
        }
    }
    let hasher = hasher_task.join().await?;
    Ok((written, hasher))
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
    let hex = id.to_hex();
    let need = inner.replication;

    let mut holders = existing_replicas(&inner, &id, size, need).await?;

    let (up, suspect) = inner.writable_nodes();
    let mut remaining: Vec<NodeView> = ordered(&id, up);
    remaining.extend(ordered(&id, suspect));
    remaining.retain(|n| !holders.iter().any(|h| h.node_id == n.node_id));
    // Nodes that just failed a write are tried last (stable: HRW order is kept otherwise).
    remaining.sort_by_key(|n| inner.is_failing(&n.node_id));

    while holders.len() < need {
        let batch = pick(&mut remaining, &holders, need - holders.len());
        if batch.is_empty() {
            tracing::warn!(chunk = %hex, needed = need, written = holders.len(),
                "not enough nodes can take the chunk");
            return Err(PipelineError::InsufficientNodes {
                needed: need,
                available: holders.len(),
            });
        }
        let puts = batch.iter().map(|node| {
            let client = inner.client(&node.address);
            let data = data.clone();
            async move { client.put(&id, data).await }
        });
        let results = futures::future::join_all(puts).await;
        for (node, result) in batch.into_iter().zip(results) {
            match result {
                Ok(_) => holders.push(node),
                Err(e) => {
                    tracing::warn!(chunk = %hex, node_id = %node.node_id,
                        address = %node.address, error = %e, "chunk write failed; trying the next node");
                    inner.mark_failing(&node.node_id);
                }
            }
        }
    }

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

/// Nodes in weighted-HRW order for this chunk (distinct zones first).
fn ordered(id: &ChunkId, nodes: Vec<NodeView>) -> Vec<NodeView> {
    let candidates: Vec<Candidate> = nodes
        .iter()
        .map(|n| Candidate {
            node_id: n.node_id.clone(),
            zone: n.zone.clone(),
            weight: n.capacity_bytes,
        })
        .collect();
    let order: Vec<String> = placement_order(id, &candidates)
        .into_iter()
        .map(|c| c.node_id.clone())
        .collect();
    let mut nodes = nodes;
    let mut out = Vec::with_capacity(nodes.len());
    for node_id in order {
        if let Some(pos) = nodes.iter().position(|n| n.node_id == node_id) {
            out.push(nodes.swap_remove(pos));
        }
    }
    out
}

/// Takes the next `k` nodes to try off the front of `remaining`, preferring zones that hold no
/// replica yet (and distinct from each other), so replicas land in distinct zones whenever the
/// cluster has several and failover keeps that preference.
fn pick(remaining: &mut Vec<NodeView>, holders: &[NodeView], k: usize) -> Vec<NodeView> {
    let mut used: Vec<String> = holders.iter().map(|n| n.zone.clone()).collect();
    let mut chosen = Vec::with_capacity(k);
    let mut i = 0;
    while chosen.len() < k && i < remaining.len() {
        if used.contains(&remaining[i].zone) {
            i += 1;
        } else {
            let node = remaining.remove(i);
            used.push(node.zone.clone());
            chosen.push(node);
        }
    }
    while chosen.len() < k && !remaining.is_empty() {
        chosen.push(remaining.remove(0));
    }
    chosen
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

    fn view(id: &str, zone: &str) -> NodeView {
        NodeView {
            node_id: id.into(),
            address: String::new(),
            zone: zone.into(),
            capacity_bytes: 1,
            used_bytes: 0,
            chunk_count: 0,
            corrupt_chunks: 0,
            heartbeat_age_ms: 0,
            state: crate::cluster::membership::NodeState::Up,
            admin_state: Default::default(),
        }
    }

    #[test]
    fn pick_prefers_unused_zones() {
        let mut remaining = vec![view("a1", "a"), view("a2", "a"), view("b1", "b")];
        let holders = vec![view("a0", "a")];
        let chosen = pick(&mut remaining, &holders, 1);
        assert_eq!(chosen[0].node_id, "b1");
        let chosen = pick(&mut remaining, &holders, 2);
        let ids: Vec<_> = chosen.iter().map(|n| n.node_id.as_str()).collect();
        assert_eq!(ids, vec!["a1", "a2"]);
        assert!(pick(&mut remaining, &holders, 1).is_empty());
    }
}
