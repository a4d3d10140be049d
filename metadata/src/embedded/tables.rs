//! The open tables of one write transaction, and the bookkeeping every write shares: chunk
//! records and their ref counts, replica indexes, manifests, and the `stats` counters.
//!
//! Keeping these helpers in one place is what keeps the indexes consistent: `UNREFERENCED`
//! holds exactly the chunks whose `ref_count` is 0, and `NODE_CHUNKS` exactly one row per
//! (replica node, chunk), because only these functions change a chunk record.

use super::codec::*;
use crate::{now_millis, ChunkId, ChunkPlacement, ChunkRecord, ManifestEntry, MetaError, Result};
use redb::{ReadableTable, Table, WriteTransaction};
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::collections::BTreeMap;

type T<'t> = Table<'t, &'static [u8], &'static [u8]>;

pub(crate) const C_OBJECTS: &[u8] = b"objects";
pub(crate) const C_OBJECT_BYTES: &[u8] = b"object_bytes";
pub(crate) const C_CHUNKS: &[u8] = b"chunks";
pub(crate) const C_CHUNK_BYTES: &[u8] = b"chunk_bytes";

pub(crate) struct Tables<'t> {
    pub buckets: T<'t>,
    pub objects: T<'t>,
    pub manifests: T<'t>,
    pub chunks: T<'t>,
    pub unreferenced: T<'t>,
    pub node_chunks: T<'t>,
    pub uploads: T<'t>,
    pub parts: T<'t>,
    pub nodes: T<'t>,
    pub node_events: T<'t>,
    pub access_keys: T<'t>,
    pub leases: T<'t>,
    pub settings: T<'t>,
    pub counters: T<'t>,
    /// Time of the batch, used for every timestamp the store itself sets.
    pub now: i64,
    /// Counter changes of the batch, written once by [`Tables::flush_counters`] before the
    /// commit (saves a read and a write per counter per request).
    pending_counts: Vec<(&'static [u8], i128)>,
}

fn open<'t>(txn: &'t WriteTransaction, def: Def) -> Result<T<'t>> {
    txn.open_table(def).map_err(backend)
}

impl<'t> Tables<'t> {
    pub(crate) fn open(txn: &'t WriteTransaction) -> Result<Tables<'t>> {
        Ok(Tables {
            buckets: open(txn, BUCKETS)?,
            objects: open(txn, OBJECTS)?,
            manifests: open(txn, MANIFESTS)?,
            chunks: open(txn, CHUNKS)?,
            unreferenced: open(txn, UNREFERENCED)?,
            node_chunks: open(txn, NODE_CHUNKS)?,
            uploads: open(txn, UPLOADS)?,
            parts: open(txn, PARTS)?,
            nodes: open(txn, NODES)?,
            node_events: open(txn, NODE_EVENTS)?,
            access_keys: open(txn, ACCESS_KEYS)?,
            leases: open(txn, LEASES)?,
            settings: open(txn, SETTINGS)?,
            counters: open(txn, COUNTERS)?,
            now: now_millis(),
            pending_counts: Vec::new(),
        })
    }

    /// Adds `delta` to a stats counter (applied at the end of the batch).
    pub(crate) fn count(&mut self, name: &'static [u8], delta: i128) -> Result<()> {
        self.pending_counts_add(name, delta);
        Ok(())
    }

    /// Writes the batch's counter changes (never below zero). Called once, before the commit,
    /// so the counters are committed together with the rows they count.
    pub(crate) fn flush_counters(&mut self) -> Result<()> {
        for (name, delta) in std::mem::take(&mut self.pending_counts) {
            let cur = match self.counters.get(name).map_err(backend)? {
                Some(v) => decode_u64(v.value())?,
                None => 0,
            };
            let next = (i128::from(cur) + delta).clamp(0, i128::from(u64::MAX)) as u64;
            self.counters
                .insert(name, encode_u64(next).as_slice())
                .map_err(backend)?;
        }
        Ok(())
    }

    pub(crate) fn get_chunk(&self, id: &ChunkId) -> Result<Option<ChunkRecord>> {
        get(&self.chunks, &id.0, "chunk")
    }

    /// Applies, in one pass, everything a request changes on chunk records: replicas written
    /// (`placements`, merged into the records, creating new ones), one ref added per entry of
    /// `add` and one released per entry of `release`. Each chunk record is read and written
    /// once, and the indexes follow: a chunk enters `UNREFERENCED` (with `unreferenced_since`
    /// = now) when its count ends at 0 and was not already there, and leaves it when its count
    /// ends above 0. Callers have checked that every chunk of `add` has a record or a placement.
    pub(crate) fn update_chunks(
        &mut self,
        placements: &[ChunkPlacement],
        add: &[ManifestEntry],
        release: &[ManifestEntry],
    ) -> Result<()> {
        // chunk -> (record, whether it is in the UNREFERENCED index now, changed)
        let mut work: BTreeMap<ChunkId, (ChunkRecord, bool)> = BTreeMap::new();
        let ids = placements
            .iter()
            .map(|p| p.chunk)
            .chain(add.iter().map(|e| e.chunk))
            .chain(release.iter().map(|e| e.chunk));
        for id in ids {
            if work.contains_key(&id) {
                continue;
            }
            if let Some(rec) = self.get_chunk(&id)? {
                let indexed = rec.ref_count == 0;
                work.insert(id, (rec, indexed));
            }
        }
        for p in placements {
            let (rec, _) = work.entry(p.chunk).or_insert_with(|| {
                self.pending_counts_add(C_CHUNKS, 1);
                self.pending_counts_add(C_CHUNK_BYTES, i128::from(p.size));
                let rec = ChunkRecord {
                    id: p.chunk,
                    size: p.size,
                    replicas: Vec::new(),
                    created: self.now,
                    last_verified: self.now,
                    ref_count: 0,
                    unreferenced_since: self.now,
                };
                (rec, false)
            });
            for node in &p.nodes {
                if !rec.replicas.contains(node) {
                    rec.replicas.push(node.clone());
                    self.node_chunks
                        .insert(node_chunk_key(node, &p.chunk).as_slice(), &[FORMAT_V1][..])
                        .map_err(backend)?;
                }
            }
        }
        for e in add {
            let (rec, _) = work.get_mut(&e.chunk).ok_or_else(|| {
                MetaError::Corrupt(format!("chunk {} has no record but is referenced", e.chunk))
            })?;
            rec.ref_count += 1;
        }
        for e in release {
            match work.get_mut(&e.chunk) {
                Some((rec, _)) => rec.ref_count = rec.ref_count.saturating_sub(1),
                None => {
                    tracing::warn!(chunk = %e.chunk, "metadata: releasing a ref of an unknown chunk")
                }
            }
        }
        for (id, (mut rec, indexed)) in work {
            if rec.ref_count > 0 {
                rec.unreferenced_since = 0;
                if indexed {
                    self.unreferenced.remove(&id.0[..]).map_err(backend)?;
                }
            } else if !indexed {
                // The last ref went now (or a new chunk arrived without one): garbage
                // collection waits its grace period from here.
                rec.unreferenced_since = self.now;
                self.unreferenced
                    .insert(&id.0[..], &[FORMAT_V1][..])
                    .map_err(backend)?;
            }
            put(&mut self.chunks, &id.0, &rec)?;
        }
        Ok(())
    }

    fn pending_counts_add(&mut self, name: &'static [u8], delta: i128) {
        match self.pending_counts.iter_mut().find(|(n, _)| *n == name) {
            Some((_, d)) => *d += delta,
            None => self.pending_counts.push((name, delta)),
        }
    }

    /// Adds or drops one replica of an existing chunk (no-op when the chunk is unknown or the
    /// replica already in that state).
    pub(crate) fn set_replica(&mut self, id: &ChunkId, node: &str, present: bool) -> Result<()> {
        let Some(mut rec) = self.get_chunk(id)? else {
            return Ok(());
        };
        let has = rec.replicas.iter().any(|n| n == node);
        if has == present {
            return Ok(());
        }
        let key = node_chunk_key(node, id);
        if present {
            rec.replicas.push(node.to_string());
            self.node_chunks
                .insert(key.as_slice(), &[FORMAT_V1][..])
                .map_err(backend)?;
        } else {
            rec.replicas.retain(|n| n != node);
            self.node_chunks.remove(key.as_slice()).map_err(backend)?;
        }
        put(&mut self.chunks, &id.0, &rec)
    }

    /// Checks (before anything is written) that every chunk of a manifest either has a record
    /// or is among `placements`: a committed object must never point at a chunk whose replicas
    /// nobody recorded.
    pub(crate) fn missing_chunk(
        &self,
        manifest: &[ManifestEntry],
        placements: &[ChunkPlacement],
    ) -> Result<Option<ChunkId>> {
        for e in manifest {
            if placements.iter().any(|p| p.chunk == e.chunk) {
                continue;
            }
            if self.chunks.get(&e.chunk.0[..]).map_err(backend)?.is_none() {
                return Ok(Some(e.chunk));
            }
        }
        Ok(None)
    }

    /// Drops one ref per manifest entry.
    pub(crate) fn release_refs(&mut self, entries: &[ManifestEntry]) -> Result<()> {
        self.update_chunks(&[], &[], entries)
    }

    /// Removes a chunk record and its index rows.
    pub(crate) fn remove_chunk(&mut self, rec: &ChunkRecord) -> Result<()> {
        self.chunks.remove(&rec.id.0[..]).map_err(backend)?;
        self.unreferenced.remove(&rec.id.0[..]).map_err(backend)?;
        for node in &rec.replicas {
            self.node_chunks
                .remove(node_chunk_key(node, &rec.id).as_slice())
                .map_err(backend)?;
        }
        self.count(C_CHUNKS, -1)?;
        self.count(C_CHUNK_BYTES, -i128::from(rec.size))
    }

    pub(crate) fn write_manifest(
        &mut self,
        version_id: &str,
        entries: &[ManifestEntry],
    ) -> Result<()> {
        // Always at least one row, so an empty object's manifest is distinguishable from an
        // unknown version.
        let mut segments: Vec<&[ManifestEntry]> = entries.chunks(MANIFEST_SEGMENT).collect();
        if segments.is_empty() {
            segments.push(&[]);
        }
        for (i, seg) in segments.into_iter().enumerate() {
            let n = u32::try_from(i).map_err(backend)?;
            self.manifests
                .insert(
                    manifest_key(version_id, n).as_slice(),
                    encode_manifest_segment(seg).as_slice(),
                )
                .map_err(backend)?;
        }
        Ok(())
    }

    /// Reads and removes a version's manifest; returns its entries (empty when unknown).
    pub(crate) fn take_manifest(&mut self, version_id: &str) -> Result<Vec<ManifestEntry>> {
        let entries = read_manifest(&self.manifests, version_id)?.unwrap_or_default();
        let start = manifest_key(version_id, 0);
        let end = manifest_key(version_id, u32::MAX);
        self.manifests
            .retain_in::<&[u8], _>(start.as_slice()..=end.as_slice(), |_, _| false)
            .map_err(backend)?;
        Ok(entries)
    }
}

/// Reads and decodes one record.
pub(crate) fn get<V: DeserializeOwned>(
    table: &impl ReadableTable<&'static [u8], &'static [u8]>,
    key: &[u8],
    what: &str,
) -> Result<Option<V>> {
    match table.get(key).map_err(backend)? {
        Some(v) => decode(v.value(), what).map(Some),
        None => Ok(None),
    }
}

pub(crate) fn put<V: Serialize>(table: &mut T<'_>, key: &[u8], value: &V) -> Result<()> {
    table
        .insert(key, encode(value)?.as_slice())
        .map_err(backend)?;
    Ok(())
}

/// A version's manifest, `None` when the version has no manifest rows.
pub(crate) fn read_manifest(
    table: &impl ReadableTable<&'static [u8], &'static [u8]>,
    version_id: &str,
) -> Result<Option<Vec<ManifestEntry>>> {
    let start = manifest_key(version_id, 0);
    let end = manifest_key(version_id, u32::MAX);
    let mut out = Vec::new();
    let mut found = false;
    for row in table
        .range::<&[u8]>(start.as_slice()..=end.as_slice())
        .map_err(backend)?
    {
        let (_, v) = row.map_err(backend)?;
        found = true;
        decode_manifest_segment(v.value(), &mut out)?;
    }
    Ok(found.then_some(out))
}
