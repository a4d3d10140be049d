//! The data a version or a part holds before and after its commit point: chunk refs (one per
//! manifest entry), chunk rows (replicas, referenced mark) and manifest rows; written before the
//! commit, released after the version is replaced. Everything here is keyed by ids unique to
//! one commit (version ids, part ref ids), so it is written with plain, idempotent statements.

use super::cql::{self, exec};
use super::records::{chunk_id_from_bytes, chunk_prefix, to_i64};
use super::{ScyllaStore, WRITE_CONCURRENCY};

/// How many times a commit tries to mark a reused chunk referenced while its row is missing
/// (see `write_version_data`).
const MARK_ATTEMPTS: usize = 5;
use crate::{now_millis, ChunkId, ChunkPlacement, ManifestEntry, MetaError, Result};
use futures::stream::{self, TryStreamExt};
use std::collections::{BTreeMap, BTreeSet};

/// The ref id under which an object version holds its chunks.
pub(super) fn version_ref(version_id: &str) -> String {
    format!("obj/{version_id}")
}

/// How one commit uses a chunk: its manifest indices, and its size and replica nodes when
/// the commit placed it.
type ChunkUse<'a> = (Vec<usize>, Option<(u64, BTreeSet<&'a str>)>);

/// `idx, chunk_id, size` of a manifest row (`idx` -1 is the header, without chunk).
type ManifestRow = (i32, Option<Vec<u8>>, Option<i64>);

/// Decodes the rows of one manifest partition (in `idx` order). `None` without a header row;
/// `Corrupt` when the entries do not match the header's count or are not numbered 0..n.
fn manifest_from_rows(
    version_id: &str,
    rows: Vec<ManifestRow>,
) -> Result<Option<Vec<ManifestEntry>>> {
    let corrupt =
        |why: &str| MetaError::Corrupt(format!("manifest of version {version_id}: {why}"));
    let mut rows = rows.into_iter().peekable();
    let count = match rows.next_if(|(idx, _, _)| *idx == -1) {
        Some((_, _, size)) => size.unwrap_or(0),
        None => return Ok(None),
    };
    let mut out = Vec::new();
    for (idx, chunk, size) in rows {
        if usize::try_from(idx).ok() != Some(out.len()) {
            return Err(corrupt(&format!("entry {idx} out of sequence")));
        }
        let chunk = chunk.ok_or_else(|| corrupt(&format!("entry {idx} has no chunk id")))?;
        out.push(ManifestEntry {
            chunk: chunk_id_from_bytes(&chunk)?,
            size: size.unwrap_or(0).max(0) as u64,
        });
    }
    if i64::try_from(out.len()).ok() != Some(count) {
        return Err(corrupt(&format!(
            "{} entries, the header says {count}",
            out.len()
        )));
    }
    Ok(Some(out))
}

/// The distinct chunks of `manifest` that `placements` does not place.
fn unplaced_chunks(manifest: &[ManifestEntry], placements: &[ChunkPlacement]) -> BTreeSet<ChunkId> {
    let placed: BTreeSet<ChunkId> = placements.iter().map(|p| p.chunk).collect();
    manifest
        .iter()
        .map(|e| e.chunk)
        .filter(|c| !placed.contains(c))
        .collect()
}

/// The ref of manifest entry `idx` under `ref_id`.
fn entry_ref(ref_id: &str, idx: usize) -> String {
    format!("{ref_id}#{idx}")
}

impl ScyllaStore {
    /// Step 1 of a commit: for every chunk its ref, then its chunk row (replicas from
    /// `placements`, marked referenced); and, for an object version, the manifest rows.
    /// Everything here is keyed by `ref_id`/`version_id`, unique to this commit, and idempotent.
    pub(super) async fn write_version_data(
        &self,
        ref_id: &str,
        version_id: Option<&str>,
        manifest: &[ManifestEntry],
        placements: &[ChunkPlacement],
    ) -> Result<()> {
        // Invariant (refs before commit): each ref is written before the object row, and
        // before the chunk row is marked referenced, so garbage collection that sees the
        // chunk marked referenced also finds its ref.
        // One ref per manifest entry (`<ref id>#<index>`), so a chunk used twice holds two.
        let mut chunks: BTreeMap<ChunkId, ChunkUse<'_>> = BTreeMap::new();
        for (idx, entry) in manifest.iter().enumerate() {
            chunks.entry(entry.chunk).or_default().0.push(idx);
        }
        for p in placements {
            let slot = chunks.entry(p.chunk).or_default();
            let placed = slot.1.get_or_insert_with(|| (p.size, BTreeSet::new()));
            placed.1.extend(p.nodes.iter().map(String::as_str));
        }
        let now = now_millis();
        stream::iter(chunks.into_iter().map(Ok))
            .try_for_each_concurrent(WRITE_CONCURRENCY, |(chunk, (uses, placed))| async move {
                let prefix = chunk_prefix(&chunk);
                let id = chunk.0.as_slice();
                for idx in uses {
                    let entry_ref = entry_ref(ref_id, idx);
                    exec(
                        &self.session,
                        &self.st.ref_insert,
                        (id, &entry_ref),
                        "writing a chunk ref",
                    )
                    .await?;
                }
                match placed {
                    Some((size, nodes)) => {
                        let nodes: Vec<&str> = nodes.into_iter().collect();
                        let values = (to_i64(size)?, nodes, now, now, prefix, id);
                        exec(
                            &self.session,
                            &self.st.chunk_place,
                            values,
                            "recording chunk replicas",
                        )
                        .await
                    }
                    None => {
                        // A reused chunk: its row must still exist when it is marked, so this is
                        // an LWT (`IF size > 0`: a record, not a remnant), ordered with garbage
                        // collection's LWT delete.
                        // A plain update here could re-create a row without size or replicas
                        // after the delete, and the commit would point at a chunk no one can
                        // find. The ref was written first, so a collection that deleted the
                        // row after this sees it and restores the row.
                        // A collection that sees the ref puts the row back a moment after its
                        // delete: a few short retries let this commit go through then.
                        for _ in 0..MARK_ATTEMPTS {
                            let marked = cql::lwt(
                                &self.session,
                                &self.st.chunk_mark_referenced_if_exists,
                                (prefix, id),
                                "marking a chunk referenced",
                            )
                            .await?;
                            if marked.applied {
                                return Ok(());
                            }
                            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                        }
                        Err(MetaError::Backend(format!(
                            "chunk {chunk} has no replica record (garbage collection removed it); retry the upload"
                        )))
                    }
                }
            })
            .await?;
        if let Some(version_id) = version_id {
            let count = i64::try_from(manifest.len())
                .map_err(|_| MetaError::Backend("manifest too long".into()))?;
            exec(
                &self.session,
                &self.st.manifest_header_insert,
                (version_id, count),
                "writing a manifest header",
            )
            .await?;
            stream::iter(manifest.iter().enumerate().map(Ok))
                .try_for_each_concurrent(WRITE_CONCURRENCY, |(idx, entry)| async move {
                    let idx = i32::try_from(idx).map_err(|_| {
                        MetaError::Backend("manifest longer than 2^31 chunks".into())
                    })?;
                    let values = (
                        version_id,
                        idx,
                        entry.chunk.0.as_slice(),
                        to_i64(entry.size)?,
                    );
                    exec(
                        &self.session,
                        &self.st.manifest_insert,
                        values,
                        "writing a manifest",
                    )
                    .await
                })
                .await?;
        }
        Ok(())
    }

    /// Drops the refs `ref_id` holds on the chunks of `manifest` (one per entry); chunks
    /// left without any ref are marked unreferenced now, which starts their
    /// garbage-collection grace period.
    pub(super) async fn release_refs(
        &self,
        ref_id: &str,
        manifest: &[ManifestEntry],
    ) -> Result<()> {
        let mut chunks: BTreeMap<ChunkId, Vec<usize>> = BTreeMap::new();
        for (idx, entry) in manifest.iter().enumerate() {
            chunks.entry(entry.chunk).or_default().push(idx);
        }
        let now = now_millis();
        stream::iter(chunks.into_iter().map(Ok))
            .try_for_each_concurrent(WRITE_CONCURRENCY, |(chunk, uses)| async move {
                let id = chunk.0.as_slice();
                for idx in uses {
                    let entry_ref = entry_ref(ref_id, idx);
                    exec(
                        &self.session,
                        &self.st.ref_delete,
                        (id, &entry_ref),
                        "releasing a chunk ref",
                    )
                    .await?;
                }
                if !self.has_refs(&chunk).await? {
                    let values = (now, chunk_prefix(&chunk), id);
                    exec(
                        &self.session,
                        &self.st.chunk_mark_unreferenced,
                        values,
                        "marking a chunk unreferenced",
                    )
                    .await?;
                }
                Ok(())
            })
            .await
    }

    /// Releases a version no object row points at any more: refs, then manifest.
    pub(super) async fn release_version(&self, version_id: &str) -> Result<()> {
        let manifest = self.read_manifest(version_id).await?.unwrap_or_default();
        self.release_manifest(version_id, &manifest).await
    }

    /// Releases the refs `manifest` holds for version `version_id`, then its manifest rows.
    async fn release_manifest(&self, version_id: &str, manifest: &[ManifestEntry]) -> Result<()> {
        self.release_refs(&version_ref(version_id), manifest)
            .await?;
        exec(
            &self.session,
            &self.st.manifest_delete,
            (version_id,),
            "deleting a manifest",
        )
        .await
    }

    /// Releases what an uncommitted version wrote (its refs, from the manifest the caller
    /// holds, which also covers a write that stopped before the manifest header), logging
    /// instead of failing: leftovers are garbage, never a dangling object.
    pub(super) async fn discard_version(&self, version_id: &str, manifest: &[ManifestEntry]) {
        let released = self.release_manifest(version_id, manifest);
        if let Err(e) = released.await {
            tracing::warn!(version_id, error = %e, "could not release an uncommitted version; its chunks stay referenced (garbage, not data loss)");
        }
    }

    /// Like `release_version`, logging instead of failing: used after the commit point, when
    /// the caller's operation has already succeeded and leftovers are only garbage.
    pub(super) async fn release_version_after_commit(&self, version_id: &str) {
        if let Err(e) = self.release_version(version_id).await {
            tracing::warn!(version_id, error = %e, "could not release a replaced version; its chunks stay referenced (garbage, not data loss)");
        }
    }

    /// The entries of a version's manifest; `None` when the version has no header row
    /// (unknown, not committed, or replaced and released).
    pub(super) async fn read_manifest(
        &self,
        version_id: &str,
    ) -> Result<Option<Vec<ManifestEntry>>> {
        let mut stream = cql::scan::<ManifestRow>(
            &self.session,
            &self.st.manifest_scan,
            (version_id,),
            "reading a manifest",
        )
        .await?;
        let mut found = Vec::new();
        while let Some(row) = cql::next_row(&mut stream, "reading a manifest").await? {
            found.push(row);
        }
        manifest_from_rows(version_id, found)
    }

    /// Refuses a manifest naming a chunk that has neither a record nor a placement in this
    /// commit (as the embedded backend does): otherwise marking it referenced would create a
    /// chunk row without size or replicas. Checked before anything is written.
    pub(super) async fn check_chunks_known(
        &self,
        manifest: &[ManifestEntry],
        placements: &[ChunkPlacement],
    ) -> Result<()> {
        stream::iter(unplaced_chunks(manifest, placements).into_iter().map(Ok))
            .try_for_each_concurrent(WRITE_CONCURRENCY, |chunk| async move {
                if self.chunk_exists(&chunk).await? {
                    Ok(())
                } else {
                    Err(MetaError::Backend(format!(
                        "chunk {chunk} has no replica record and no placement was given for it"
                    )))
                }
            })
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u8) -> ChunkId {
        ChunkId([n; 32])
    }

    fn entry_row(idx: i32, n: u8, size: i64) -> ManifestRow {
        (idx, Some(vec![n; 32]), Some(size))
    }

    #[test]
    fn manifest_rows_need_a_header() {
        // No rows at all: unknown or released version.
        assert_eq!(manifest_from_rows("v", vec![]).unwrap(), None);
        // Entries without a header (a commit that never finished writing): unknown too.
        assert_eq!(
            manifest_from_rows("v", vec![entry_row(0, 1, 5)]).unwrap(),
            None
        );
        // The header alone: an empty object.
        assert_eq!(
            manifest_from_rows("v", vec![(-1, None, Some(0))]).unwrap(),
            Some(vec![])
        );
        let rows = vec![(-1, None, Some(2)), entry_row(0, 1, 7), entry_row(1, 1, 3)];
        assert_eq!(
            manifest_from_rows("v", rows).unwrap(),
            Some(vec![
                ManifestEntry {
                    chunk: id(1),
                    size: 7
                },
                ManifestEntry {
                    chunk: id(1),
                    size: 3
                },
            ])
        );
    }

    #[test]
    fn manifest_rows_that_disagree_are_corrupt() {
        let short = vec![(-1, None, Some(2)), entry_row(0, 1, 7)];
        assert!(matches!(
            manifest_from_rows("v", short),
            Err(MetaError::Corrupt(_))
        ));
        let gap = vec![(-1, None, Some(2)), entry_row(0, 1, 7), entry_row(2, 1, 7)];
        assert!(matches!(
            manifest_from_rows("v", gap),
            Err(MetaError::Corrupt(_))
        ));
        let no_chunk = vec![(-1, None, Some(1)), (0, None, Some(7))];
        assert!(matches!(
            manifest_from_rows("v", no_chunk),
            Err(MetaError::Corrupt(_))
        ));
    }

    #[test]
    fn unplaced_chunks_are_the_distinct_unplaced_ones() {
        let manifest: Vec<ManifestEntry> = [1, 2, 1, 3]
            .into_iter()
            .map(|n| ManifestEntry {
                chunk: id(n),
                size: 1,
            })
            .collect();
        let placements = vec![ChunkPlacement {
            chunk: id(2),
            size: 1,
            nodes: vec!["n1".into()],
        }];
        assert_eq!(
            unplaced_chunks(&manifest, &placements)
                .into_iter()
                .collect::<Vec<_>>(),
            [id(1), id(3)]
        );
        assert!(unplaced_chunks(&[], &placements).is_empty());
    }
}
