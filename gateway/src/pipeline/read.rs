//! The read path: a manifest and a byte range in, verified bytes out.
//!
//! Only the chunks that overlap the range are fetched, in order, with a few fetched ahead
//! (`PREFETCH_CHUNKS`, which also bounds the memory a GET holds). Every chunk is checked against
//! its id (SHA-256, on the blocking pool) before a single byte of it is handed on; on a transport
//! error or a mismatch the next replica is tried (Up nodes first). A replica that was missing or
//! returned wrong bytes is logged and, once a good copy has been read elsewhere, dropped from
//! the chunk's record, which puts the chunk on the under-replicated list that repair works from
//! (and wakes it).
//!
//! If no replica of a chunk can be read, the stream yields one `Err` and ends: the HTTP layer
//! must abort the response rather than end it as if it were complete.

use super::replicas::{fetch_verified, read_order};
use super::{Inner, PipelineError};
use crate::cluster::membership::NodeView;
use bytes::Bytes;
use futures::stream::BoxStream;
use futures::StreamExt;
use sdfbs_metadata::{ChunkRecord, ManifestEntry};
use std::sync::Arc;

/// Chunks fetched ahead of the one being sent to the client.
pub(super) const PREFETCH_CHUNKS: usize = 3;

/// The part of one chunk a range needs: the chunk, its place in the manifest, and [from, to)
/// within it.
struct Piece {
    entry: ManifestEntry,
    index: usize,
    from: usize,
    to: usize,
}

/// `records[i]`, when present, is the chunk record of `manifest[i]` already read with the
/// manifest; the chunks without one are looked up as they are fetched.
pub(super) fn read_range(
    inner: Arc<Inner>,
    manifest: Vec<ManifestEntry>,
    mut records: Vec<Option<ChunkRecord>>,
    start: u64,
    end: u64,
) -> BoxStream<'static, Result<Bytes, PipelineError>> {
    let pieces = pieces(&manifest, start, end);
    futures::stream::iter(pieces)
        .map(move |piece| {
            let inner = Arc::clone(&inner);
            let known = records.get_mut(piece.index).and_then(Option::take);
            async move {
                let frames = fetch_chunk(&inner, &piece.entry, known).await?;
                Ok(slice_frames(frames, piece.from, piece.to))
            }
        })
        .buffered(PREFETCH_CHUNKS)
        // Stop after the first error: nothing after a missing chunk may reach the client.
        .scan(false, |failed, item| {
            if *failed {
                return futures::future::ready(None);
            }
            *failed = item.is_err();
            futures::future::ready(Some(item))
        })
        // A chunk is handed on as the frames it arrived in (no copy into one buffer).
        .flat_map(|item| match item {
            Ok(frames) => futures::stream::iter(frames.into_iter().map(Ok)).left_stream(),
            Err(e) => futures::stream::once(futures::future::ready(Err(e))).right_stream(),
        })
        .boxed()
}

/// Bytes [from, to) of a chunk held as consecutive frames, still as frames (no copy).
fn slice_frames(frames: Vec<Bytes>, from: usize, to: usize) -> Vec<Bytes> {
    let mut out = Vec::new();
    let mut offset = 0usize;
    for frame in frames {
        let (start, end) = (offset, offset + frame.len());
        offset = end;
        if end <= from || start >= to || from >= to {
            continue;
        }
        out.push(frame.slice(from.max(start) - start..to.min(end) - start));
    }
    out
}

/// The chunks overlapping [start, end), with the slice of each that is needed.
fn pieces(manifest: &[ManifestEntry], start: u64, end: u64) -> Vec<Piece> {
    let mut out = Vec::new();
    if start >= end {
        return out;
    }
    let mut offset = 0u64;
    for (index, entry) in manifest.iter().enumerate() {
        let (chunk_start, chunk_end) = (offset, offset + entry.size);
        offset = chunk_end;
        if chunk_end <= start || entry.size == 0 {
            continue;
        }
        if chunk_start >= end {
            break;
        }
        out.push(Piece {
            entry: *entry,
            index,
            from: (start.max(chunk_start) - chunk_start) as usize,
            to: (end.min(chunk_end) - chunk_start) as usize,
        });
    }
    out
}

/// Reads one chunk from the first replica that returns the right bytes. `known` is its record
/// when it was read with the manifest.
async fn fetch_chunk(
    inner: &Inner,
    entry: &ManifestEntry,
    known: Option<ChunkRecord>,
) -> Result<Vec<Bytes>, PipelineError> {
    let id = entry.chunk;
    let record = match known {
        Some(record) => record,
        None => inner.meta.get_chunk_location(&id).await?.ok_or_else(|| {
            PipelineError::ChunkUnavailable(format!("chunk {id} has no record in metadata"))
        })?,
    };
    let nodes: Vec<NodeView> = record
        .replicas
        .iter()
        .filter_map(|node_id| {
            let node = inner.membership.node(node_id);
            if node.is_none() {
                tracing::warn!(chunk = %id, node_id = %node_id, "replica on an unknown node");
            }
            node
        })
        .collect();
    let replicas = read_order(inner, nodes);
    let fetched = fetch_verified(inner, &id, entry.size, &replicas).await?;
    if let Some(frames) = fetched.data {
        forget_bad(inner, entry, fetched.corrupt.iter().chain(&fetched.missing)).await;
        return Ok(frames);
    }
    tracing::error!(chunk = %id, replicas = ?record.replicas, "no readable replica of a chunk");
    Err(PipelineError::ChunkUnavailable(format!(
        "no readable replica of chunk {id} ({} tried; last: {})",
        fetched.tried, fetched.last_error
    )))
}

/// Drops replicas that were missing or returned wrong bytes from the chunk's record, now that
/// a good copy was read, and wakes repair: the chunk is under-replicated, and repair copies it
/// from a good replica.
async fn forget_bad(inner: &Inner, entry: &ManifestEntry, bad: impl Iterator<Item = &String>) {
    let mut any = false;
    for node in bad {
        any = true;
        if let Err(e) = inner.meta.drop_replica(&entry.chunk, node).await {
            tracing::warn!(chunk = %entry.chunk, node_id = %node, error = %e,
                "cannot drop the bad replica from metadata");
        }
    }
    if any {
        inner.repair_wanted.notify_one();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sdfbs_metadata::ChunkId;

    fn manifest(sizes: &[u64]) -> Vec<ManifestEntry> {
        sizes
            .iter()
            .enumerate()
            .map(|(i, s)| ManifestEntry {
                chunk: ChunkId([i as u8; 32]),
                size: *s,
            })
            .collect()
    }

    fn spans(m: &[ManifestEntry], start: u64, end: u64) -> Vec<(u8, usize, usize)> {
        pieces(m, start, end)
            .iter()
            .map(|p| (p.entry.chunk.0[0], p.from, p.to))
            .collect()
    }

    #[test]
    fn a_range_fetches_only_the_chunks_it_overlaps() {
        let m = manifest(&[10, 10, 5]);
        assert_eq!(spans(&m, 0, 25), vec![(0, 0, 10), (1, 0, 10), (2, 0, 5)]);
        assert_eq!(spans(&m, 12, 14), vec![(1, 2, 4)]);
        assert_eq!(spans(&m, 9, 11), vec![(0, 9, 10), (1, 0, 1)]);
        assert_eq!(spans(&m, 10, 20), vec![(1, 0, 10)]);
        assert_eq!(spans(&m, 24, 100), vec![(2, 4, 5)]);
        assert!(spans(&m, 5, 5).is_empty());
        assert!(spans(&m, 25, 30).is_empty());
        assert!(spans(&[], 0, 0).is_empty());
    }

    #[test]
    fn a_slice_of_frames_holds_exactly_the_bytes_of_the_range() {
        let whole: Vec<u8> = (0..=255u8).cycle().take(1000).collect();
        let frames: Vec<Bytes> = [0usize, 1, 300, 301, 700, 1000]
            .windows(2)
            .map(|w| Bytes::copy_from_slice(&whole[w[0]..w[1]]))
            .collect();
        for (from, to) in [
            (0, 1000),
            (0, 1),
            (1, 301),
            (299, 302),
            (300, 301),
            (999, 1000),
            (5, 5),
        ] {
            let sliced = slice_frames(frames.clone(), from, to);
            let joined: Vec<u8> = sliced.iter().flat_map(|b| b.iter().copied()).collect();
            assert_eq!(joined, whole[from..to], "range {from}..{to}");
            assert!(
                sliced.iter().all(|b| !b.is_empty()),
                "no empty frame in {from}..{to}"
            );
        }
    }
}
