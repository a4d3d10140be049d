//! Repair: every referenced chunk gets `replication` healthy replicas again, and Draining and
//! Removed nodes are emptied.
//!
//! A pass has two walks over the chunk records, both in id order with a cursor (so a pass
//! holds one page in memory, whatever the cluster's size):
//! 1. `under_replicated_chunks`: chunks with fewer replicas on healthy nodes (Active, not Down,
//!    verified) than `replication`. Each is read from the first replica that returns the right
//!    bytes (healthy nodes first; a Down node is tried last, it may still answer) and written
//!    to the next nodes in placement order, then the new replicas are added to its record.
//!    Replicas found missing or corrupt on the way are dropped from the record (and a corrupt
//!    file deleted from its node). A chunk no node could return, with no healthy replica left,
//!    is reported lost (`GET /cluster/repair`) until a later pass finds a copy.
//! 2. `chunks_on_node` for every Draining or Removed node: each chunk first gets
//!    `replication` healthy replicas elsewhere, and only then is the replica on the leaving
//!    node dropped from the record and its file deleted. A node is drained when this walk
//!    finds nothing left on it.
//!
//! Data safety: a replica is dropped from a record only when the copy is gone or bad, or when
//! `replication` healthy copies exist without it; new replicas are added only after chunkd
//! acknowledged them (fsynced). Copies go through the shared rate limiter (`--repair-rate`)
//! and a few at a time, on the leader's background tasks: client requests never wait for
//! repair.

use super::membership::NodeView;
use super::workers::{wait, LostChunk, WorkerContext};
use futures::StreamExt;
use sdfbs_metadata::{now_millis, AdminState, ChunkId, ChunkRecord, NodeId};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::watch;

/// Chunk records read per page of a walk.
const PAGE: usize = 256;

pub(crate) async fn run(ctx: Arc<WorkerContext>, mut stop: watch::Receiver<bool>) {
    loop {
        if !ctx.leadership.wait_leader(&mut stop).await {
            return;
        }
        let started = Instant::now();
        ctx.update(|s| s.repair_running = true);
        let outcome = pass(&ctx).await;
        ctx.update(|s| {
            s.repair_running = false;
            if let Ok(found) = outcome {
                s.repair_passes += 1;
                s.under_replicated_last_pass = found;
                s.last_repair_pass_ms = Some(started.elapsed().as_millis() as u64);
            }
        });
        let every = match outcome {
            Ok(_) => ctx.config.repair_scan_interval,
            Err(e) => {
                tracing::warn!(error = %e, "repair pass stopped early; retrying soon");
                ctx.config
                    .repair_scan_interval
                    .min(std::time::Duration::from_secs(5))
            }
        };
        if !wait(&ctx.repair_now, every, &mut stop).await {
            return;
        }
    }
}

/// One pass; returns how many under-replicated chunks it found.
async fn pass(ctx: &WorkerContext) -> Result<u64, sdfbs_metadata::MetaError> {
    let nodes: HashMap<NodeId, NodeView> = ctx
        .membership
        .all_nodes()
        .into_iter()
        .map(|n| (n.node_id.clone(), n))
        .collect();
    let healthy: Vec<NodeId> = nodes
        .values()
        .filter(|n| n.is_healthy())
        .map(|n| n.node_id.clone())
        .collect();
    recheck_lost(ctx, &nodes).await?;
    let mut found = 0u64;
    let mut after: Option<ChunkId> = None;
    loop {
        if !ctx.leadership.is_leader() {
            return Ok(found);
        }
        let page = ctx
            .meta
            .under_replicated_chunks(ctx.replication, &healthy, after, PAGE)
            .await?;
        let Some(last) = page.last() else { break };
        after = Some(last.id);
        found += page.len() as u64;
        futures::stream::iter(page)
            .for_each_concurrent(ctx.config.repair_concurrency, |record| async {
                let id = record.id;
                if let Err(e) = repair_chunk(ctx, &nodes, record, None).await {
                    tracing::warn!(chunk = %id, error = %e, "cannot repair chunk yet");
                    ctx.update(|s| s.repair_failures += 1);
                }
            })
            .await;
    }
    name_users_of_lost(ctx).await?;
    let leaving: Vec<&NodeView> = nodes
        .values()
        .filter(|n| n.admin_state != AdminState::Active)
        .collect();
    for node in leaving {
        let left = evacuate(ctx, &nodes, node).await?;
        ctx.update(|s| {
            s.evacuating.insert(node.node_id.clone(), left);
        });
    }
    ctx.update(|s| {
        s.evacuating.retain(|id, _| {
            nodes
                .get(id)
                .is_some_and(|n| n.admin_state != AdminState::Active)
        })
    });
    Ok(found)
}

/// Objects scanned at most to name the users of lost chunks, per pass.
const USER_SCAN_LIMIT: usize = 100_000;
/// Objects named per lost chunk, at most.
const USERS_NAMED: usize = 20;

/// Names the objects that use each newly lost chunk, so an operator knows what to restore:
/// walks the listings of every bucket and the manifests of the objects, at most
/// `USER_SCAN_LIMIT` objects (this runs only when chunks are lost, which should be never).
async fn name_users_of_lost(ctx: &WorkerContext) -> Result<(), sdfbs_metadata::MetaError> {
    let wanted: Vec<ChunkId> = ctx
        .status()
        .lost
        .values()
        .filter(|l| l.objects.is_empty() && !l.objects_scan_complete)
        .filter_map(|l| ChunkId::from_hex(&l.chunk))
        .collect();
    if wanted.is_empty() {
        return Ok(());
    }
    let mut users: HashMap<ChunkId, Vec<String>> = HashMap::new();
    let mut scanned = 0usize;
    let mut complete = true;
    'buckets: for bucket in ctx.meta.list_buckets().await? {
        let mut query = sdfbs_metadata::ListQuery {
            max_keys: 1000,
            ..Default::default()
        };
        loop {
            let page = ctx.meta.list_objects(&bucket, &query).await?;
            for object in &page.objects {
                scanned += 1;
                if scanned > USER_SCAN_LIMIT {
                    complete = false;
                    break 'buckets;
                }
                let manifest = match ctx.meta.get_manifest(&object.version_id).await {
                    Ok(m) => m,
                    Err(sdfbs_metadata::MetaError::NoSuchKey) => continue, // replaced meanwhile
                    Err(e) => return Err(e),
                };
                for entry in manifest {
                    if wanted.contains(&entry.chunk) {
                        let named = users.entry(entry.chunk).or_default();
                        let name = format!("{}/{}", bucket.name, object.key);
                        if named.len() < USERS_NAMED && !named.contains(&name) {
                            named.push(name);
                        }
                    }
                }
            }
            if !page.is_truncated {
                break;
            }
            query.start_after = page.next_start_after;
        }
    }
    ctx.update(|s| {
        for id in &wanted {
            if let Some(lost) = s.lost.get_mut(&id.to_hex()) {
                lost.objects = users.remove(id).unwrap_or_default();
                lost.objects_scan_complete = complete;
            }
        }
    });
    Ok(())
}

/// Forgets lost chunks that are lost no more: a replica's node is healthy again (a node back
/// from Down, once audited), or the chunk's record is gone (nothing refers to it any more).
/// The ones still short of replicas are then repaired by the pass like any other.
async fn recheck_lost(
    ctx: &WorkerContext,
    nodes: &HashMap<NodeId, NodeView>,
) -> Result<(), sdfbs_metadata::MetaError> {
    let lost: Vec<String> = ctx.status().lost.into_keys().collect();
    for hex in lost {
        let Some(id) = ChunkId::from_hex(&hex) else {
            continue;
        };
        let found = match ctx.meta.get_chunk_location(&id).await? {
            None => true,
            Some(record) => record
                .replicas
                .iter()
                .any(|r| nodes.get(r).is_some_and(NodeView::is_healthy)),
        };
        if found {
            tracing::info!(chunk = %hex, "chunk no longer lost");
            ctx.update(|s| {
                s.lost.remove(&hex);
            });
        }
    }
    Ok(())
}

/// Moves every chunk off `leaving`; returns how many it still holds (0: drained).
async fn evacuate(
    ctx: &WorkerContext,
    nodes: &HashMap<NodeId, NodeView>,
    leaving: &NodeView,
) -> Result<u64, sdfbs_metadata::MetaError> {
    let mut left = 0u64;
    let mut after: Option<ChunkId> = None;
    loop {
        if !ctx.leadership.is_leader() {
            return Ok(left.max(1));
        }
        let page = ctx
            .meta
            .chunks_on_node(&leaving.node_id, after, PAGE)
            .await?;
        let Some(last) = page.last() else { break };
        after = Some(last.id);
        let results: Vec<bool> = futures::stream::iter(page)
            .map(|record| async {
                let id = record.id;
                match repair_chunk(ctx, nodes, record, Some(leaving)).await {
                    Ok(moved) => moved,
                    Err(e) => {
                        tracing::warn!(chunk = %id, node_id = %leaving.node_id, error = %e,
                            "cannot move chunk off the node yet");
                        ctx.update(|s| s.repair_failures += 1);
                        false
                    }
                }
            })
            .buffer_unordered(ctx.config.repair_concurrency)
            .collect()
            .await;
        left += results.iter().filter(|moved| !**moved).count() as u64;
    }
    if left == 0 {
        tracing::info!(node_id = %leaving.node_id, state = %leaving.lifecycle,
            "node holds no chunk any more");
    }
    Ok(left)
}

/// Errors of one chunk's repair (logged, counted, retried by a later pass).
#[derive(Debug, thiserror::Error)]
enum RepairError {
    #[error(transparent)]
    Meta(#[from] sdfbs_metadata::MetaError),
    #[error(transparent)]
    Pipeline(#[from] crate::pipeline::PipelineError),
    #[error("no replica could be read: {0}")]
    Unreadable(String),
}

/// Gives one chunk `replication` healthy replicas (not counting `leaving`), then, when
/// `leaving` is given, takes the chunk off it. Returns whether the chunk is off `leaving`
/// (always true without one).
async fn repair_chunk(
    ctx: &WorkerContext,
    nodes: &HashMap<NodeId, NodeView>,
    record: ChunkRecord,
    leaving: Option<&NodeView>,
) -> Result<bool, RepairError> {
    let id = record.id;
    let counts = |n: &&NodeView| n.is_healthy() && leaving.is_none_or(|l| l.node_id != n.node_id);
    let views: Vec<NodeView> = record
        .replicas
        .iter()
        .filter_map(|r| nodes.get(r).cloned())
        .collect();
    let mut holders: Vec<NodeView> = views.iter().filter(counts).cloned().collect();
    if holders.len() < ctx.replication {
        // Healthy replicas first, then the leaving node, then any other (a Down node may
        // still answer).
        let mut sources: Vec<NodeView> = ctx.chunks.read_order(views.clone());
        sources.sort_by_key(|n| {
            if counts(&n) {
                0
            } else if leaving.is_some_and(|l| l.node_id == n.node_id) {
                1
            } else {
                2
            }
        });
        let fetched = ctx
            .chunks
            .fetch_verified(&id, record.size, &sources)
            .await?;
        for bad in fetched.corrupt.iter().chain(&fetched.missing) {
            ctx.meta.drop_replica(&id, bad).await?;
            holders.retain(|h| &h.node_id != bad);
            ctx.update(|s| s.replicas_dropped += 1);
        }
        for bad in &fetched.corrupt {
            if let Some(node) = nodes.get(bad) {
                // A wrong copy is worth nothing; deleting it keeps an audit from adopting it.
                let _ = ctx
                    .chunks
                    .client(&node.address)
                    .delete(&id, std::time::Duration::ZERO)
                    .await;
            }
        }
        let Some(frames) = fetched.data else {
            if holders.is_empty() {
                tracing::error!(chunk = %id, replicas = ?record.replicas, error = %fetched.last_error,
                    "chunk lost: no replica could be read and none is on a healthy node");
                ctx.update(|s| {
                    s.lost.entry(id.to_hex()).or_insert_with(|| LostChunk {
                        chunk: id.to_hex(),
                        size: record.size,
                        replicas: record.replicas.clone(),
                        error: fetched.last_error.clone(),
                        since: now_millis(),
                        objects: Vec::new(),
                        objects_scan_complete: false,
                    });
                });
            }
            return Err(RepairError::Unreadable(fetched.last_error));
        };
        let data = join(frames);
        let before = holders.len();
        let want = ctx.replication;
        ctx.limiter
            .take(record.size * (want - before.min(want)) as u64)
            .await;
        let result = ctx
            .chunks
            .place_replicas(&id, &data, &mut holders, &record.replicas, want)
            .await;
        for added in &holders[before..] {
            ctx.meta.add_replica(&id, &added.node_id).await?;
        }
        let written = (holders.len() - before) as u64;
        ctx.update(|s| {
            s.replicas_written += written;
            s.bytes_copied += written * record.size;
            s.lost.remove(&id.to_hex());
        });
        result?;
        tracing::info!(chunk = %id, added = written, "chunk repaired");
        ctx.update(|s| s.chunks_repaired += 1);
    } else {
        ctx.update(|s| {
            s.lost.remove(&id.to_hex());
        });
    }
    let Some(leaving) = leaving else {
        return Ok(true);
    };
    // `replication` healthy copies exist without the leaving node: forget its copy, then
    // delete the file (a file left behind holds nothing the record needs).
    ctx.meta.drop_replica(&id, &leaving.node_id).await?;
    ctx.update(|s| s.replicas_dropped += 1);
    if let Err(e) = ctx
        .chunks
        .client(&leaving.address)
        .delete(&id, std::time::Duration::ZERO)
        .await
    {
        tracing::debug!(chunk = %id, node_id = %leaving.node_id, error = %e,
            "cannot delete the moved chunk from the leaving node");
    }
    Ok(true)
}

/// A chunk's frames in one buffer (repair writes it to several nodes).
fn join(frames: Vec<bytes::Bytes>) -> bytes::Bytes {
    if frames.len() == 1 {
        return frames.into_iter().next().unwrap_or_default();
    }
    let mut out = bytes::BytesMut::with_capacity(frames.iter().map(|f| f.len()).sum());
    for f in frames {
        out.extend_from_slice(&f);
    }
    out.freeze()
}
