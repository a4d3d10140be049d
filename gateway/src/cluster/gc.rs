//! Garbage collection: chunks no object version or part has used for longer than the grace
//! period (`--gc-grace`) are deleted from their nodes and then from metadata; multipart uploads
//! without activity for longer than `--multipart-max-age` are aborted (which releases their
//! parts' chunks to the next passes). Chunk files that have no record at all (uploads
//! interrupted before their commit) are collected by the node audits (`audit.rs`).
//!
//! Data safety, against an upload that reuses a chunk while it is being collected (dedup):
//! * the chunk is deleted from a node with chunkd's grace guard: a node keeps a chunk written
//!   or touched within the grace period, and an upload that reuses a chunk touches it first
//!   (and keeps touching it until it commits, see `pipeline/write.rs`), so either the touch
//!   comes first and the delete is refused, or the delete comes first and the touch finds the
//!   chunk gone and the upload writes it again;
//! * the record is read again right before its files are deleted (a page of candidates can take
//!   long to work through, longer than the grace when nodes are slow), so a chunk reused and
//!   committed since is left alone; an upload still in progress keeps its chunks touched;
//! * the record is deleted only if it is still unreferenced (`delete_chunk_if_unreferenced`,
//!   conditional on both backends), and only when no node refused: a refusal means an upload is
//!   using the chunk again.

use super::workers::{wait, WorkerContext};
use sdfbs_metadata::{now_millis, BucketRecord, ChunkId, UploadListQuery};
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::watch;

const PAGE: usize = 256;

pub(crate) async fn run(ctx: Arc<WorkerContext>, mut stop: watch::Receiver<bool>) {
    let never = tokio::sync::Notify::new();
    loop {
        if !wait(&never, ctx.config.gc_interval, &mut stop).await {
            return;
        }
        if !ctx.leadership.is_leader() {
            continue;
        }
        let started = Instant::now();
        match pass(&ctx).await {
            Ok(()) => ctx.update(|s| {
                s.gc_passes += 1;
                s.last_gc_pass_ms = Some(started.elapsed().as_millis() as u64);
            }),
            Err(e) => tracing::warn!(error = %e, "garbage collection pass stopped early"),
        }
    }
}

async fn pass(ctx: &WorkerContext) -> Result<(), sdfbs_metadata::MetaError> {
    abort_stale_uploads(ctx).await?;
    let grace = ctx.config.gc_grace;
    let before = now_millis() - grace.as_millis() as i64;
    let mut after: Option<ChunkId> = None;
    loop {
        if !ctx.leadership.is_leader() {
            return Ok(());
        }
        let page = ctx.meta.unreferenced_chunks(before, after, PAGE).await?;
        let Some(last) = page.last() else { break };
        after = Some(last.id);
        for record in page {
            // Checked again right before the deletes, not only when the page was read: an
            // upload may have reused the chunk and committed since, and by the time the pass
            // reaches this chunk its touch may be older than the grace guard.
            match ctx.meta.get_chunk(&record.id).await? {
                Some(now)
                    if now.ref_count == 0
                        && now.unreferenced_since != 0
                        && now.unreferenced_since < before => {}
                _ => continue,
            }
            let mut refused = false;
            for node_id in &record.replicas {
                let Some(node) = ctx.membership.node(node_id) else {
                    continue;
                };
                if node.state == super::membership::NodeState::Down {
                    continue; // its copy is collected by its audit once it is back
                }
                match ctx
                    .chunks
                    .client(&node.address)
                    .delete(&record.id, grace)
                    .await
                {
                    Ok(chunkd::DeleteOutcome::Deleted) => {}
                    Ok(chunkd::DeleteOutcome::TooYoung) => refused = true,
                    // Unreachable: its copy becomes an orphan file, collected by the node's
                    // audit once it is back.
                    Err(e) => tracing::debug!(chunk = %record.id, node_id, error = %e,
                        "cannot delete an unreferenced chunk from its node"),
                }
            }
            if refused {
                tracing::debug!(chunk = %record.id, "unreferenced chunk was touched recently; kept");
                continue;
            }
            if ctx.meta.delete_chunk_if_unreferenced(&record.id).await? {
                ctx.update(|s| s.chunks_collected += 1);
            }
        }
    }
    Ok(())
}

/// Aborts the multipart uploads of every bucket that saw no activity (creation or a part)
/// for longer than `--multipart-max-age`.
async fn abort_stale_uploads(ctx: &WorkerContext) -> Result<(), sdfbs_metadata::MetaError> {
    let oldest = now_millis() - ctx.config.multipart_max_age.as_millis() as i64;
    for bucket in ctx.meta.list_buckets().await? {
        let mut query = UploadListQuery {
            max_uploads: 1000,
            ..UploadListQuery::default()
        };
        loop {
            let page = ctx.meta.list_uploads(&bucket, &query).await?;
            for upload in &page.uploads {
                if upload.initiated < oldest
                    && !has_recent_part(ctx, &bucket, upload, oldest).await?
                {
                    match ctx
                        .meta
                        .abort_upload(&bucket, &upload.key, &upload.upload_id)
                        .await
                    {
                        Ok(()) => {
                            tracing::info!(bucket = %bucket.name, key = %upload.key,
                                upload_id = %upload.upload_id, "stale multipart upload aborted");
                            ctx.update(|s| s.uploads_aborted += 1);
                        }
                        Err(sdfbs_metadata::MetaError::NoSuchUpload(_)) => {}
                        Err(e) => return Err(e),
                    }
                }
            }
            if !page.is_truncated {
                break;
            }
            query.key_marker = page.next_key_marker;
            query.upload_id_marker = page.next_upload_id_marker;
        }
    }
    Ok(())
}

async fn has_recent_part(
    ctx: &WorkerContext,
    bucket: &BucketRecord,
    upload: &sdfbs_metadata::UploadRecord,
    oldest: i64,
) -> Result<bool, sdfbs_metadata::MetaError> {
    let mut after = 0;
    loop {
        let parts = ctx
            .meta
            .list_parts(bucket, &upload.key, &upload.upload_id, after, 1000)
            .await?;
        if parts.iter().any(|p| p.last_modified >= oldest) {
            return Ok(true);
        }
        match parts.last() {
            Some(p) if parts.len() == 1000 => after = p.number,
            _ => return Ok(false),
        }
    }
}
