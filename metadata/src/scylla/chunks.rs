//! Chunk records: replicas, and the walks of repair, garbage collection and draining.
//!
//! The `chunks` table is partitioned by the first 12 bits of the chunk id, so a walk "in id
//! order after `after`" visits partitions in order and each partition in clustering order,
//! paged. Filters are applied here (never `ALLOW FILTERING`): these walks are background
//! work, rate-limited by their callers, not a request path.

use super::cql::{self, exec, first, lwt};
use super::records::{chunk_from_row, chunk_prefix, ChunkRow, CHUNK_PREFIXES};
use super::ScyllaStore;
use crate::{now_millis, ChunkId, ChunkRecord, NodeId, Result, UnixMillis};
use futures::stream::{self, StreamExt};

/// How many partitions of the chunks table a walk opens ahead of the one it reads.
const SCAN_AHEAD: usize = 8;

/// Which chunks a walk returns.
pub(super) enum ChunkFilter<'a> {
    UnderReplicated {
        replication: usize,
        healthy: &'a [NodeId],
    },
    Unreferenced {
        before: UnixMillis,
    },
    OnNode(&'a str),
}

impl ScyllaStore {
    pub(super) async fn has_refs(&self, chunk: &ChunkId) -> Result<bool> {
        let row: Option<(String,)> = first(
            &self.session,
            &self.st.ref_any,
            (chunk.0.as_slice(),),
            "reading chunk refs",
        )
        .await?;
        Ok(row.is_some())
    }

    async fn ref_count(&self, chunk: &ChunkId) -> Result<u64> {
        let row: Option<(i64,)> = first(
            &self.session,
            &self.st.ref_count,
            (chunk.0.as_slice(),),
            "counting chunk refs",
        )
        .await?;
        Ok(row.map_or(0, |(n,)| n.max(0) as u64))
    }

    /// The chunk row without its ref count, as stored: possibly a remnant (see `chunk_row`).
    async fn chunk_row_raw(&self, id: &ChunkId) -> Result<Option<ChunkRecord>> {
        let row: Option<ChunkRow> = first(
            &self.session,
            &self.st.chunk_get,
            (chunk_prefix(id), id.0.as_slice()),
            "reading a chunk",
        )
        .await?;
        row.map(chunk_from_row).transpose()
    }

    /// The chunk row without its ref count. A row without a size is no chunk record: it is
    /// the remnant of a plain `unreferenced_since` update (a release) that landed after garbage
    /// collection deleted the row; collection deletes such remnants like any unreferenced row.
    pub(super) async fn chunk_row(&self, id: &ChunkId) -> Result<Option<ChunkRecord>> {
        Ok(self.chunk_row_raw(id).await?.filter(|r| r.size > 0))
    }

    /// Whether the chunk has a record.
    pub(super) async fn chunk_exists(&self, id: &ChunkId) -> Result<bool> {
        Ok(self.chunk_row(id).await?.is_some())
    }

    pub(super) async fn chunk(&self, id: &ChunkId) -> Result<Option<ChunkRecord>> {
        let Some(mut record) = self.chunk_row(id).await? else {
            return Ok(None);
        };
        record.ref_count = self.ref_count(id).await?;
        Ok(Some(record))
    }

    /// Adds or removes one replica of an existing chunk (a missing chunk is left missing:
    /// a set update would otherwise create a row without a size).
    pub(super) async fn change_replica(&self, id: &ChunkId, node: &str, add: bool) -> Result<()> {
        if self.chunk_row(id).await?.is_none() {
            return Ok(());
        }
        let stmt = if add {
            &self.st.chunk_add_replica
        } else {
            &self.st.chunk_drop_replica
        };
        exec(
            &self.session,
            stmt,
            (vec![node], chunk_prefix(id), id.0.as_slice()),
            "updating chunk replicas",
        )
        .await
    }

    /// Whether `record` passes `filter`; fills its ref count when it does.
    async fn accepts(&self, filter: &ChunkFilter<'_>, record: &mut ChunkRecord) -> Result<bool> {
        match filter {
            ChunkFilter::UnderReplicated {
                replication,
                healthy,
            } => {
                let good = record
                    .replicas
                    .iter()
                    .filter(|r| healthy.contains(r))
                    .count();
                // The unreferenced mark is only a hint here (a release racing a commit can
                // leave it set on a referenced chunk): the refs decide.
                if good >= *replication {
                    return Ok(false);
                }
                record.ref_count = self.ref_count(&record.id).await?;
                Ok(record.ref_count > 0)
            }
            ChunkFilter::Unreferenced { before } => {
                if record.unreferenced_since == 0 || record.unreferenced_since >= *before {
                    return Ok(false);
                }
                Ok(!self.has_refs(&record.id).await?)
            }
            ChunkFilter::OnNode(node) => {
                if !record.replicas.iter().any(|r| r == node) {
                    return Ok(false);
                }
                record.ref_count = self.ref_count(&record.id).await?;
                Ok(true)
            }
        }
    }

    /// Up to `limit` chunks passing `filter`, in id order strictly after `after`.
    ///
    /// Partitions are opened in order, a few ahead of the one being read ([`SCAN_AHEAD`]:
    /// each opening fetches its first page), so a walk over a sparse table is not 4,096
    /// sequential round trips. Memory stays bounded by the pages opened ahead.
    pub(super) async fn walk_chunks(
        &self,
        filter: ChunkFilter<'_>,
        after: Option<ChunkId>,
        limit: usize,
    ) -> Result<Vec<ChunkRecord>> {
        let mut out = Vec::new();
        if limit == 0 {
            return Ok(out);
        }
        let start = after.as_ref().map_or(0, chunk_prefix);
        let after = after.as_ref();
        let mut partitions = stream::iter(start..CHUNK_PREFIXES)
            .map(|prefix| async move {
                match after {
                    // Inside the partition of `after`: strictly after it.
                    Some(a) if prefix == start => {
                        cql::scan::<ChunkRow>(
                            &self.session,
                            &self.st.chunk_scan,
                            (prefix, a.0.as_slice()),
                            "walking chunks",
                        )
                        .await
                    }
                    // Later partitions are read whole.
                    _ => {
                        cql::scan::<ChunkRow>(
                            &self.session,
                            &self.st.chunk_scan_all,
                            (prefix,),
                            "walking chunks",
                        )
                        .await
                    }
                }
            })
            .buffered(SCAN_AHEAD);
        while let Some(rows) = partitions.next().await {
            let mut rows = rows?;
            while let Some(row) = cql::next_row(&mut rows, "walking chunks").await? {
                let mut record = chunk_from_row(row)?;
                if self.accepts(&filter, &mut record).await? {
                    out.push(record);
                    if out.len() == limit {
                        return Ok(out);
                    }
                }
            }
        }
        Ok(out)
    }

    /// Garbage collection's delete. See "Where lightweight transactions are used" in the
    /// module docs of `scylla.rs` for why this is an LWT on `unreferenced_since`.
    pub(super) async fn delete_unreferenced(&self, id: &ChunkId) -> Result<bool> {
        let Some(record) = self.chunk_row_raw(id).await? else {
            return Ok(false);
        };
        let prefix = chunk_prefix(id);
        let bytes = id.0.as_slice();
        if self.has_refs(id).await? {
            if record.unreferenced_since != 0 {
                // Heal a mark left by a release that raced a commit.
                exec(
                    &self.session,
                    &self.st.chunk_mark_referenced,
                    (prefix, bytes),
                    "marking a chunk referenced",
                )
                .await?;
            }
            return Ok(false);
        }
        if record.unreferenced_since == 0 {
            // No refs but never marked (a release failed midway): start the grace period now
            // instead of deleting at once.
            let values = (now_millis(), prefix, bytes);
            exec(
                &self.session,
                &self.st.chunk_mark_unreferenced,
                values,
                "marking a chunk unreferenced",
            )
            .await?;
            return Ok(false);
        }
        let values = (prefix, bytes, record.unreferenced_since);
        if !lwt(
            &self.session,
            &self.st.chunk_delete,
            values,
            "deleting a chunk",
        )
        .await?
        .applied
        {
            return Ok(false); // a commit marked it referenced meanwhile
        }
        // Data safety: a commit may have written a ref between our check and the delete.
        // Then the chunk is in use again: put its record back and report it kept.
        if self.has_refs(id).await? {
            let nodes: Vec<&str> = record.replicas.iter().map(String::as_str).collect();
            let values = (
                super::records::to_i64(record.size)?,
                nodes,
                record.created,
                record.last_verified,
                prefix,
                bytes,
            );
            exec(
                &self.session,
                &self.st.chunk_place,
                values,
                "restoring a chunk record",
            )
            .await?;
            return Ok(false);
        }
        Ok(true)
    }
}
