//! Rebalance: when a node joins, chunks move toward their placement (weighted rendezvous
//! hashing over the healthy nodes, weighted by capacity) at a low rate, so a new node takes its
//! share of the existing data instead of only new writes.
//!
//! For every healthy node N and every chunk on N (`chunks_on_node`), in id order with a cursor:
//! when N is not among the chunk's first `replication` nodes in placement order and the chunk
//! is fully replicated, the chunk is copied (verified) to the first of those nodes that lacks
//! it, the new replica is recorded, then N's replica is dropped from the record and its file
//! deleted with chunkd's grace guard. If the guard refuses (an upload reused N's copy a moment
//! ago), N's replica is recorded again: the chunk then has one replica more than needed, never
//! one fewer. Runs after a node joins and at every repair interval, at a quarter of the repair
//! rate, and never while a repair pass is running.

use super::membership::NodeView;
use super::placement::{placement_order, Candidate};
use super::workers::{wait, RateLimiter, WorkerContext};
use sdfbs_metadata::{ChunkId, ChunkRecord, NodeId};
use std::collections::HashMap;
use std::sync::Arc;
use tokio::sync::watch;

const PAGE: usize = 256;

pub(crate) async fn run(ctx: Arc<WorkerContext>, mut stop: watch::Receiver<bool>) {
    let limiter = RateLimiter::new((ctx.config.repair_rate / 4).max(1));
    loop {
        if !wait(
            &ctx.rebalance_now,
            ctx.config.repair_scan_interval,
            &mut stop,
        )
        .await
        {
            return;
        }
        if !ctx.leadership.is_leader() {
            continue;
        }
        match pass(&ctx, &limiter).await {
            Ok(moved) if moved > 0 => {
                tracing::info!(moved, "rebalance pass moved chunks toward their placement")
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "rebalance pass stopped early"),
        }
    }
}

/// One pass; returns how many chunks moved.
async fn pass(
    ctx: &WorkerContext,
    limiter: &RateLimiter,
) -> Result<u64, sdfbs_metadata::MetaError> {
    let healthy: Vec<NodeView> = ctx
        .membership
        .nodes()
        .into_iter()
        .filter(NodeView::is_healthy)
        .collect();
    if healthy.len() <= ctx.replication {
        return Ok(0); // every healthy node already belongs to every chunk's placement
    }
    let by_id: HashMap<NodeId, NodeView> = healthy
        .iter()
        .map(|n| (n.node_id.clone(), n.clone()))
        .collect();
    let candidates: Vec<Candidate> = healthy
        .iter()
        .map(|n| Candidate {
            node_id: n.node_id.clone(),
            zone: n.zone.clone(),
            weight: n.capacity_bytes,
        })
        .collect();
    let mut moved = 0;
    for source in &healthy {
        let mut after: Option<ChunkId> = None;
        loop {
            if !ctx.leadership.is_leader() || ctx.status().repair_running {
                return Ok(moved);
            }
            let page = ctx
                .meta
                .chunks_on_node(&source.node_id, after, PAGE)
                .await?;
            let Some(last) = page.last() else { break };
            after = Some(last.id);
            for record in page {
                match move_chunk(ctx, limiter, &by_id, &candidates, source, record).await {
                    Ok(true) => moved += 1,
                    Ok(false) => {}
                    Err(e) => tracing::debug!(error = %e, "cannot move chunk toward its placement"),
                }
            }
        }
    }
    Ok(moved)
}

/// Moves one chunk off `source` to its placement, when it does not belong there (or only
/// takes it off `source`, when the placement already holds it: an extra copy left by an
/// earlier move whose delete was refused).
async fn move_chunk(
    ctx: &WorkerContext,
    limiter: &RateLimiter,
    nodes: &HashMap<NodeId, NodeView>,
    candidates: &[Candidate],
    source: &NodeView,
    record: ChunkRecord,
) -> Result<bool, Box<dyn std::error::Error + Send + Sync>> {
    let id = record.id;
    let placement: Vec<&str> = placement_order(&id, candidates)
        .into_iter()
        .take(ctx.replication)
        .map(|c| c.node_id.as_str())
        .collect();
    if placement.contains(&source.node_id.as_str()) {
        return Ok(false);
    }
    let healthy_holders = record
        .replicas
        .iter()
        .filter(|r| nodes.contains_key(*r))
        .count();
    if healthy_holders < ctx.replication {
        return Ok(false); // repair's job first
    }
    if let Some(target) = placement
        .iter()
        .find(|t| !record.replicas.iter().any(|r| r == *t))
        .and_then(|t| nodes.get(*t))
    {
        limiter.take(record.size).await;
        let fetched = ctx
            .chunks
            .fetch_verified(&id, record.size, std::slice::from_ref(source))
            .await?;
        let Some(frames) = fetched.data else {
            return Ok(false); // the audit and repair deal with a bad copy
        };
        let data: bytes::Bytes = frames.concat().into();
        ctx.chunks.client(&target.address).put(&id, data).await?;
        ctx.meta.add_replica(&id, &target.node_id).await?;
    }
    // The placement holds the chunk: the copy on `source` is one too many.
    ctx.meta.drop_replica(&id, &source.node_id).await?;
    match ctx
        .chunks
        .client(&source.address)
        .delete(&id, ctx.config.gc_grace)
        .await
    {
        Ok(chunkd::DeleteOutcome::Deleted) => {}
        // Touched within the grace: an upload may count this copy. Keep it, and say so.
        Ok(chunkd::DeleteOutcome::TooYoung) | Err(_) => {
            ctx.meta.add_replica(&id, &source.node_id).await?;
        }
    }
    Ok(true)
}
