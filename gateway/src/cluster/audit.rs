//! Audit of one node: its chunk files against the chunk records that name it.
//!
//! Both are walked in id order, a page of records at a time, with the node's listing
//! (`GET /chunks?after=&limit=`) read for the same span of ids *after* the records, so a file
//! written meanwhile is seen and never taken for missing. Then:
//! * a record naming the node whose file is gone (quarantined by the scrubber, lost with a
//!   disk, deleted by hand): the replica is dropped from the record, and repair copies the
//!   chunk from a good replica;
//! * a file no record knows (an upload interrupted by its client or by a crashed gateway, a
//!   chunk garbage collection could not delete while the node was away): deleted once older
//!   than the grace period, by a grace-guarded DELETE, so chunkd keeps it if an upload wrote
//!   or touched it since;
//! * a file whose chunk has a record that does not name this node: kept, and adopted as a
//!   replica when the chunk lacks healthy ones and the file reads back with the right hash;
//!   an extra copy of a well-replicated chunk is deleted under the same grace guard.
//!
//! A node back from Down counts again (`awaiting_audit` cleared) once its audit completes.

use super::workers::{wait, WorkerContext};
use chunkd::wire::ChunkInfo;
use sdfbs_metadata::{now_millis, ChunkId, ChunkRecord};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// Records (and listing entries) per page.
const PAGE: usize = 1000;

pub(crate) async fn run(ctx: Arc<WorkerContext>, mut stop: watch::Receiver<bool>) {
    let mut last_full = tokio::time::Instant::now();
    loop {
        if !ctx.leadership.wait_leader(&mut stop).await {
            return;
        }
        if last_full.elapsed() >= ctx.config.audit_interval {
            last_full = tokio::time::Instant::now();
            for node in ctx.membership.nodes() {
                ctx.queue_audit(&node.node_id);
            }
        }
        loop {
            let next = {
                let mut queue = ctx.audit_queue.lock().unwrap_or_else(|e| e.into_inner());
                queue.pop_first()
            };
            let Some(node_id) = next else { break };
            if !ctx.leadership.is_leader() {
                break;
            }
            match audit_node(&ctx, &node_id).await {
                Ok(Some(report)) => {
                    ctx.membership.set_awaiting_audit(&node_id, false);
                    ctx.update(|s| {
                        s.audits += 1;
                        s.orphans_collected += report.orphans_deleted;
                        s.replicas_dropped += report.missing;
                    });
                    if report.missing > 0 || report.adopted > 0 {
                        ctx.repair_now.notify_one();
                    }
                    tracing::info!(node_id = %node_id, files = report.files,
                        missing = report.missing, orphans_deleted = report.orphans_deleted,
                        adopted = report.adopted, "node audited");
                }
                Ok(None) => {} // not auditable now (Down, Draining, unknown)
                Err(e) => {
                    tracing::warn!(node_id = %node_id, error = %e, "node audit failed; will retry");
                }
            }
        }
        if !wait(&ctx.audit_now, Duration::from_secs(5), &mut stop).await {
            return;
        }
    }
}

#[derive(Debug, Default)]
struct Report {
    files: u64,
    missing: u64,
    orphans_deleted: u64,
    adopted: u64,
}

#[derive(Debug, thiserror::Error)]
enum AuditError {
    #[error(transparent)]
    Meta(#[from] sdfbs_metadata::MetaError),
    #[error("listing the node's chunks: {0}")]
    Node(#[from] chunkd::ClientError),
}

/// Audits one node; `None` when the node cannot be audited now (not Up or Suspect, or not
/// Active: a leaving node is emptied by repair instead).
async fn audit_node(ctx: &WorkerContext, node_id: &str) -> Result<Option<Report>, AuditError> {
    let Some(node) = ctx.membership.node(node_id) else {
        return Ok(None);
    };
    if !node.accepts_new_chunks() {
        return Ok(None);
    }
    let client = ctx.chunks.client(&node.address);
    let mut report = Report::default();
    let mut after: Option<ChunkId> = None;
    let mut listed_after: Option<ChunkId> = None;
    let mut listing_done = false;
    let mut files: BTreeMap<ChunkId, ChunkInfo> = BTreeMap::new();
    loop {
        if !ctx.leadership.is_leader() {
            return Ok(None);
        }
        let records = ctx.meta.chunks_on_node(node_id, after, PAGE).await?;
        let last_page = records.len() < PAGE;
        let upper = if last_page {
            None
        } else {
            records.last().map(|r| r.id)
        };
        // The node's files up to `upper` (all of them on the last page).
        while !listing_done && upper.is_none_or(|u| listed_after.is_none_or(|l| l < u)) {
            let page = client.list(listed_after.as_ref(), PAGE).await?;
            for info in page.chunks {
                listed_after = Some(info.id);
                files.insert(info.id, info);
            }
            match page.next_after {
                Some(next) => listed_after = Some(next),
                None => listing_done = true,
            }
        }
        for record in &records {
            if files.remove(&record.id).is_none() {
                tracing::warn!(chunk = %record.id, node_id, "recorded replica is missing on its node; dropping it");
                ctx.meta.drop_replica(&record.id, node_id).await?;
                report.missing += 1;
            }
        }
        // Files up to `upper` that no record of this node names.
        let unrecorded: Vec<ChunkInfo> = match upper {
            Some(u) => {
                let rest = files.split_off(&next_id(&u));
                std::mem::replace(&mut files, rest).into_values().collect()
            }
            None => std::mem::take(&mut files).into_values().collect(),
        };
        report.files += records.len() as u64 + unrecorded.len() as u64;
        for info in unrecorded {
            unrecorded_file(ctx, &node, &info, &mut report).await?;
        }
        match upper {
            Some(u) => after = Some(u),
            None => return Ok(Some(report)),
        }
    }
}

/// The smallest id after `id` (the split point just past it).
fn next_id(id: &ChunkId) -> ChunkId {
    let mut bytes = id.0;
    for b in bytes.iter_mut().rev() {
        if *b == 0xff {
            *b = 0;
        } else {
            *b += 1;
            return ChunkId(bytes);
        }
    }
    ChunkId([0xff; 32])
}

/// A file no record of this node names: an orphan to collect, an extra copy, or a replica to
/// adopt.
async fn unrecorded_file(
    ctx: &WorkerContext,
    node: &super::membership::NodeView,
    info: &ChunkInfo,
    report: &mut Report,
) -> Result<(), AuditError> {
    let grace = ctx.config.gc_grace;
    let age = Duration::from_secs((now_millis() / 1000).max(0) as u64)
        .saturating_sub(Duration::from_secs(info.mtime));
    let record: Option<ChunkRecord> = ctx.meta.get_chunk_location(&info.id).await?;
    let client = ctx.chunks.client(&node.address);
    let healthy = |r: &ChunkRecord| {
        r.replicas
            .iter()
            .filter(|n| ctx.membership.node(n).is_some_and(|v| v.is_healthy()))
            .count()
    };
    match record {
        Some(r) if healthy(&r) < ctx.replication && r.size == info.size => {
            // The chunk needs replicas and this node has a copy: verify it, then count it.
            let fetched = ctx
                .chunks
                .fetch_verified(&info.id, r.size, std::slice::from_ref(node))
                .await
                .map_err(|e| sdfbs_metadata::MetaError::Backend(e.to_string()))?;
            if fetched.data.is_some() {
                ctx.meta.add_replica(&info.id, &node.node_id).await?;
                report.adopted += 1;
            }
        }
        _ if age <= grace => {} // young: an upload or a repair may be writing it
        _ => {
            // No record, or an extra copy of a chunk with enough healthy replicas.
            match client.delete(&info.id, grace).await? {
                chunkd::DeleteOutcome::Deleted => report.orphans_deleted += 1,
                chunkd::DeleteOutcome::TooYoung => {}
            }
        }
    }
    Ok(())
}
