//! The embedded backend: all metadata in one redb file, for a single gateway.
//!
//! * Reads run in `spawn_blocking`, each in its own read transaction (a consistent snapshot),
//!   except access keys already read, which are answered from memory (`key_cache.rs`).
//! * Writes go to one writer thread that group-commits whatever is queued into one durable
//!   write transaction (`writer.rs`); a write returns only after its commit is fsynced.
//! * Records are stored with a format version byte (`codec.rs`).
//! * redb is crash-safe: reopening after the process was killed mid-commit gives the state of
//!   the last completed commit (tested in `tests/embedded.rs` by killing a child process).

mod admin;
mod codec;
mod key_cache;
mod listing;
mod multipart;
mod objects;
mod tables;
mod writer;

use crate::*;
use async_trait::async_trait;
use codec::*;
use redb::{Database, ReadTransaction, ReadableDatabase, ReadableTable, ReadableTableMetadata};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tables::get;
use writer::Writer;

/// The redb-backed [`MetadataStore`]. Cheap to clone; all clones share one file and one writer.
#[derive(Clone)]
pub struct EmbeddedStore {
    inner: Arc<Inner>,
}

struct Inner {
    db: Arc<Database>,
    keys: key_cache::KeyCache,
    writer: Option<Writer>,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl Drop for Inner {
    /// Stops the writer (it finishes the requests already queued) and waits for it, so the file
    /// is closed when the last clone is gone and can be opened again at once.
    fn drop(&mut self) {
        self.writer.take();
        let handle = self.thread.lock().ok().and_then(|mut h| h.take());
        if let Some(h) = handle {
            if h.join().is_err() {
                tracing::error!("metadata writer thread panicked");
            }
        }
    }
}

impl EmbeddedStore {
    /// Opens (or creates) the store at `path`. Opening a file after a crash recovers the last
    /// committed state; a file opened by another live process is refused.
    pub async fn open(path: impl AsRef<Path>) -> Result<EmbeddedStore> {
        let path = path.as_ref().to_path_buf();
        let db = tokio::task::spawn_blocking(move || open_db(&path))
            .await
            .map_err(backend)??;
        let db = Arc::new(db);
        let (writer, thread) = Writer::start(db.clone())?;
        Ok(EmbeddedStore {
            inner: Arc::new(Inner {
                db,
                keys: Default::default(),
                writer: Some(writer),
                thread: Mutex::new(Some(thread)),
            }),
        })
    }

    async fn write<R, F>(&self, op: F) -> Result<R>
    where
        R: Send + 'static,
        F: for<'a, 'b> FnOnce(&'a mut tables::Tables<'b>) -> writer::OpResult<R> + Send + 'static,
    {
        match &self.inner.writer {
            Some(w) => w.write(op).await,
            None => Err(MetaError::Backend("the metadata store is closed".into())),
        }
    }

    async fn read<R, F>(&self, f: F) -> Result<R>
    where
        R: Send + 'static,
        F: FnOnce(&ReadTransaction) -> Result<R> + Send + 'static,
    {
        let db = self.inner.db.clone();
        tokio::task::spawn_blocking(move || {
            let txn = db.begin_read().map_err(backend)?;
            f(&txn)
        })
        .await
        .map_err(backend)?
    }
}

/// A bucket and its key's current version, in `txn` (`None`: no such bucket).
fn bucket_and_object(
    txn: &ReadTransaction,
    bucket: &str,
    key: &str,
) -> Result<Option<(BucketRecord, Option<ObjectRecord>)>> {
    let Some(record): Option<BucketRecord> =
        get(&table(txn, BUCKETS)?, bucket.as_bytes(), "bucket")?
    else {
        return Ok(None);
    };
    let object = get(
        &table(txn, OBJECTS)?,
        &object_key(&record.id, key),
        "object",
    )?;
    Ok(Some((record, object)))
}

/// A version's manifest and the records of its first `records` chunks, in `txn`.
fn manifest_for_read(
    txn: &ReadTransaction,
    version_id: &str,
    records: usize,
) -> Result<ReadManifest> {
    let manifest =
        tables::read_manifest(&table(txn, MANIFESTS)?, version_id)?.ok_or(MetaError::NoSuchKey)?;
    let chunks = table(txn, CHUNKS)?;
    let found = manifest
        .iter()
        .take(records)
        .map(|entry| get(&chunks, &entry.chunk.0, "chunk"))
        .collect::<Result<Vec<_>>>()?;
    Ok((manifest, found))
}

pub(crate) fn open_db(path: &Path) -> Result<Database> {
    let db = Database::create(path).map_err(|e| {
        MetaError::Backend(format!("cannot open metadata file {}: {e}", path.display()))
    })?;
    let txn = db.begin_write().map_err(backend)?;
    for def in ALL_TABLES {
        txn.open_table(def).map_err(backend)?;
    }
    txn.commit().map_err(backend)?;
    Ok(db)
}

type RTable = redb::ReadOnlyTable<&'static [u8], &'static [u8]>;

fn table(txn: &ReadTransaction, def: Def) -> Result<RTable> {
    txn.open_table(def).map_err(backend)
}

/// All records of a table, in key order.
fn all<V: serde::de::DeserializeOwned>(
    txn: &ReadTransaction,
    def: Def,
    what: &str,
) -> Result<Vec<V>> {
    let t = table(txn, def)?;
    let mut out = Vec::new();
    for row in t.iter().map_err(backend)? {
        let (_, v) = row.map_err(backend)?;
        out.push(decode(v.value(), what)?);
    }
    Ok(out)
}

/// Chunk records in id order strictly after `after`, from the rows of `index` (whose keys are
/// `key_prefix` + chunk id), that pass `keep`, at most `limit`.
fn scan_chunks(
    txn: &ReadTransaction,
    index: Def,
    key_prefix: Vec<u8>,
    after: Option<ChunkId>,
    limit: usize,
    keep: impl Fn(&ChunkRecord) -> bool,
) -> Result<Vec<ChunkRecord>> {
    let idx = table(txn, index)?;
    let chunks = table(txn, CHUNKS)?;
    let start = match after {
        Some(a) => {
            let mut k = key_prefix.clone();
            k.extend_from_slice(&a.0);
            std::ops::Bound::Excluded(k)
        }
        None => std::ops::Bound::Included(key_prefix.clone()),
    };
    let end = match prefix_successor(&key_prefix) {
        Some(e) => std::ops::Bound::Excluded(e),
        None => std::ops::Bound::Unbounded,
    };
    let mut out = Vec::new();
    if limit == 0 {
        return Ok(out);
    }
    let range = idx
        .range::<&[u8]>((
            start.as_ref().map(|v| v.as_slice()),
            end.as_ref().map(|v| v.as_slice()),
        ))
        .map_err(backend)?;
    for row in range {
        let (k, _) = row.map_err(backend)?;
        let id = &k.value()[key_prefix.len()..];
        let Some(rec) = get::<ChunkRecord>(&chunks, id, "chunk")? else {
            continue;
        };
        if keep(&rec) {
            out.push(rec);
            if out.len() >= limit {
                break;
            }
        }
    }
    Ok(out)
}

fn counter(t: &RTable, name: &[u8]) -> Result<u64> {
    match t.get(name).map_err(backend)? {
        Some(v) => decode_u64(v.value()),
        None => Ok(0),
    }
}

#[async_trait]
impl MetadataStore for EmbeddedStore {
    async fn create_bucket(&self, record: BucketRecord) -> Result<()> {
        self.write(move |t| admin::create_bucket(t, &record)).await
    }

    async fn get_bucket(&self, name: &str) -> Result<Option<BucketRecord>> {
        let name = name.to_string();
        self.read(move |txn| get(&table(txn, BUCKETS)?, name.as_bytes(), "bucket"))
            .await
    }

    async fn list_buckets(&self) -> Result<Vec<BucketRecord>> {
        self.read(|txn| all(txn, BUCKETS, "bucket")).await
    }

    async fn delete_bucket(&self, name: &str) -> Result<()> {
        let name = name.to_string();
        self.write(move |t| admin::delete_bucket(t, &name)).await
    }

    async fn set_bucket_versioning(&self, name: &str, state: VersioningState) -> Result<()> {
        let name = name.to_string();
        self.write(move |t| admin::set_versioning(t, &name, state))
            .await
    }

    async fn commit_object(
        &self,
        bucket: &BucketRecord,
        object: ObjectRecord,
        manifest: Vec<ManifestEntry>,
        placements: Vec<ChunkPlacement>,
        condition: PutCondition,
    ) -> Result<CommitOutcome> {
        let bucket = bucket.clone();
        self.write(move |t| {
            // Every check before the first write (a refusal must leave the batch untouched).
            let replaced = objects::check_commit(t, &bucket, &object.key, &condition)?;
            objects::check_chunks_known(t, &manifest, &placements)?;
            // Replica records and refs before the object row (the commit point).
            t.update_chunks(&placements, &manifest, &[])?;
            objects::install(t, &bucket.id, &object, &manifest, replaced.as_ref())?;
            Ok(CommitOutcome { replaced })
        })
        .await
    }

    async fn get_object(&self, bucket: &BucketRecord, key: &str) -> Result<Option<ObjectRecord>> {
        let k = object_key(&bucket.id, key);
        self.read(move |txn| get(&table(txn, OBJECTS)?, &k, "object"))
            .await
    }

    /// `NoSuchKey` when the version has no manifest (unknown, or replaced and released).
    async fn get_manifest(&self, version_id: &str) -> Result<Vec<ManifestEntry>> {
        let v = version_id.to_string();
        self.read(move |txn| {
            tables::read_manifest(&table(txn, MANIFESTS)?, &v)?.ok_or(MetaError::NoSuchKey)
        })
        .await
    }

    async fn get_bucket_and_object(
        &self,
        bucket: &str,
        key: &str,
    ) -> Result<Option<(BucketRecord, Option<ObjectRecord>)>> {
        let (name, key) = (bucket.to_string(), key.to_string());
        self.read(move |txn| bucket_and_object(txn, &name, &key))
            .await
    }

    async fn get_manifest_for_read(
        &self,
        version_id: &str,
        records: usize,
    ) -> Result<ReadManifest> {
        let v = version_id.to_string();
        self.read(move |txn| manifest_for_read(txn, &v, records))
            .await
    }

    async fn get_object_for_read(
        &self,
        bucket: &str,
        key: &str,
        records: usize,
    ) -> Result<Option<ObjectForRead>> {
        let (name, key) = (bucket.to_string(), key.to_string());
        self.read(move |txn| {
            let Some((record, object)) = bucket_and_object(txn, &name, &key)? else {
                return Ok(None);
            };
            let manifest = match &object {
                Some(o) if !o.delete_marker => {
                    Some(manifest_for_read(txn, &o.version_id, records)?)
                }
                _ => None,
            };
            Ok(Some((record, object, manifest)))
        })
        .await
    }

    async fn delete_object(
        &self,
        bucket: &BucketRecord,
        key: &str,
    ) -> Result<Option<ObjectRecord>> {
        let bucket = bucket.clone();
        let key = key.to_string();
        self.write(move |t| objects::delete(t, &bucket, &key)).await
    }

    async fn list_objects(&self, bucket: &BucketRecord, query: &ListQuery) -> Result<ListPage> {
        let id = bucket.id.clone();
        let q = query.clone();
        self.read(move |txn| listing::list_objects(&table(txn, OBJECTS)?, &id, &q))
            .await
    }

    async fn create_upload(&self, bucket: &BucketRecord, upload: UploadRecord) -> Result<()> {
        let bucket = bucket.clone();
        self.write(move |t| multipart::create(t, &bucket, &upload))
            .await
    }

    async fn get_upload(
        &self,
        bucket: &BucketRecord,
        key: &str,
        upload_id: &str,
    ) -> Result<UploadRecord> {
        let (id, key, up) = (bucket.id.clone(), key.to_string(), upload_id.to_string());
        self.read(move |txn| {
            listing::get_upload(&table(txn, UPLOADS)?, &id, &key, &up)?
                .ok_or(MetaError::NoSuchUpload(up))
        })
        .await
    }

    async fn put_part(
        &self,
        bucket: &BucketRecord,
        key: &str,
        upload_id: &str,
        part: PartRecord,
        placements: Vec<ChunkPlacement>,
    ) -> Result<()> {
        let (bucket, key, up) = (bucket.clone(), key.to_string(), upload_id.to_string());
        self.write(move |t| multipart::put_part(t, &bucket, &key, &up, &part, &placements))
            .await
    }

    async fn list_parts(
        &self,
        bucket: &BucketRecord,
        key: &str,
        upload_id: &str,
        after_part: u32,
        max: usize,
    ) -> Result<Vec<PartRecord>> {
        let (id, key, up) = (bucket.id.clone(), key.to_string(), upload_id.to_string());
        self.read(move |txn| {
            if listing::get_upload(&table(txn, UPLOADS)?, &id, &key, &up)?.is_none() {
                return Err(MetaError::NoSuchUpload(up));
            }
            multipart::all_parts(&table(txn, PARTS)?, &up, after_part, max)
        })
        .await
    }

    async fn list_uploads(
        &self,
        bucket: &BucketRecord,
        query: &UploadListQuery,
    ) -> Result<UploadListPage> {
        let id = bucket.id.clone();
        let q = query.clone();
        self.read(move |txn| listing::list_uploads(&table(txn, UPLOADS)?, &id, &q))
            .await
    }

    async fn complete_upload(
        &self,
        bucket: &BucketRecord,
        upload_id: &str,
        object: ObjectRecord,
        part_numbers: &[u32],
        condition: PutCondition,
    ) -> Result<CommitOutcome> {
        let (bucket, up, parts) = (bucket.clone(), upload_id.to_string(), part_numbers.to_vec());
        self.write(move |t| multipart::complete(t, &bucket, &up, &object, &parts, &condition))
            .await
    }

    async fn abort_upload(&self, bucket: &BucketRecord, key: &str, upload_id: &str) -> Result<()> {
        let (bucket, key, up) = (bucket.clone(), key.to_string(), upload_id.to_string());
        self.write(move |t| multipart::abort(t, &bucket, &key, &up))
            .await
    }

    async fn get_chunk(&self, id: &ChunkId) -> Result<Option<ChunkRecord>> {
        let id = *id;
        self.read(move |txn| get(&table(txn, CHUNKS)?, &id.0, "chunk"))
            .await
    }

    async fn add_replica(&self, id: &ChunkId, node: &str) -> Result<()> {
        let (id, node) = (*id, node.to_string());
        self.write(move |t| Ok(t.set_replica(&id, &node, true)?))
            .await
    }

    async fn drop_replica(&self, id: &ChunkId, node: &str) -> Result<()> {
        let (id, node) = (*id, node.to_string());
        self.write(move |t| Ok(t.set_replica(&id, &node, false)?))
            .await
    }

    async fn under_replicated_chunks(
        &self,
        replication: usize,
        healthy: &[NodeId],
        after: Option<ChunkId>,
        limit: usize,
    ) -> Result<Vec<ChunkRecord>> {
        let healthy = healthy.to_vec();
        self.read(move |txn| {
            // The chunks table is its own index (key = chunk id).
            scan_chunks(txn, CHUNKS, Vec::new(), after, limit, |c| {
                c.ref_count > 0
                    && c.replicas.iter().filter(|n| healthy.contains(n)).count() < replication
            })
        })
        .await
    }

    async fn unreferenced_chunks(
        &self,
        unreferenced_before: UnixMillis,
        after: Option<ChunkId>,
        limit: usize,
    ) -> Result<Vec<ChunkRecord>> {
        self.read(move |txn| {
            scan_chunks(txn, UNREFERENCED, Vec::new(), after, limit, |c| {
                c.ref_count == 0 && c.unreferenced_since < unreferenced_before
            })
        })
        .await
    }

    async fn delete_chunk_if_unreferenced(&self, id: &ChunkId) -> Result<bool> {
        let id = *id;
        self.write(move |t| admin::delete_chunk_if_unreferenced(t, &id))
            .await
    }

    async fn chunks_on_node(
        &self,
        node: &str,
        after: Option<ChunkId>,
        limit: usize,
    ) -> Result<Vec<ChunkRecord>> {
        let prefix = join(node, b"");
        self.read(move |txn| scan_chunks(txn, NODE_CHUNKS, prefix, after, limit, |_| true))
            .await
    }

    async fn record_heartbeat(&self, heartbeat: Heartbeat) -> Result<NodeRecord> {
        self.write(move |t| admin::record_heartbeat(t, heartbeat))
            .await
    }

    async fn list_nodes(&self) -> Result<Vec<NodeRecord>> {
        self.read(|txn| all(txn, NODES, "node")).await
    }

    async fn set_node_state(&self, node: &str, state: AdminState) -> Result<()> {
        let node = node.to_string();
        self.write(move |t| admin::set_node_state(t, &node, state))
            .await
    }

    async fn record_node_event(&self, event: NodeEvent) -> Result<()> {
        self.write(move |t| admin::record_node_event(t, &event))
            .await
    }

    async fn node_events(&self, node: Option<&str>, limit: usize) -> Result<Vec<NodeEvent>> {
        let node = node.map(str::to_owned);
        self.read(move |txn| {
            let t = table(txn, NODE_EVENTS)?;
            let mut out: Vec<NodeEvent> = Vec::new();
            match node {
                Some(node) => {
                    let prefix = join(&node, b"");
                    let end = prefix_successor(&prefix).unwrap_or_default();
                    for row in t
                        .range(prefix.as_slice()..end.as_slice())
                        .map_err(backend)?
                        .rev()
                        .take(limit)
                    {
                        let (_, v) = row.map_err(backend)?;
                        out.push(decode(v.value(), "node event")?);
                    }
                }
                None => {
                    // Every node's history, merged newest first (rows are in node order).
                    for row in t.iter().map_err(backend)? {
                        let (_, v) = row.map_err(backend)?;
                        out.push(decode(v.value(), "node event")?);
                    }
                    out.reverse();
                    out.sort_by_key(|e| std::cmp::Reverse(e.at));
                    out.truncate(limit);
                }
            }
            Ok(out)
        })
        .await
    }

    async fn create_access_key(&self, key: AccessKeyRecord) -> Result<()> {
        let done = self.write(move |t| admin::create_access_key(t, &key)).await;
        self.inner.keys.clear();
        done
    }

    async fn get_access_key(&self, access_key_id: &str) -> Result<Option<AccessKeyRecord>> {
        let generation = match self.inner.keys.lookup(access_key_id) {
            key_cache::Lookup::Hit(record) => return Ok(Some(record)),
            key_cache::Lookup::Miss(generation) => generation,
        };
        let id = access_key_id.to_string();
        let found: Option<AccessKeyRecord> = self
            .read(move |txn| get(&table(txn, ACCESS_KEYS)?, id.as_bytes(), "access key"))
            .await?;
        if let Some(record) = &found {
            self.inner.keys.insert(generation, record);
        }
        Ok(found)
    }

    async fn list_access_keys(&self) -> Result<Vec<AccessKeyRecord>> {
        self.read(|txn| all(txn, ACCESS_KEYS, "access key")).await
    }

    async fn delete_access_key(&self, access_key_id: &str) -> Result<()> {
        let id = access_key_id.to_string();
        let done = self.write(move |t| admin::delete_access_key(t, &id)).await;
        self.inner.keys.clear();
        done
    }

    async fn set_permission(
        &self,
        access_key_id: &str,
        bucket: &str,
        permission: Option<Permission>,
    ) -> Result<()> {
        let (id, bucket) = (access_key_id.to_string(), bucket.to_string());
        let done = self
            .write(move |t| admin::set_permission(t, &id, &bucket, permission))
            .await;
        self.inner.keys.clear();
        done
    }

    async fn acquire_lease(&self, name: &str, holder: &str, ttl: Duration) -> Result<bool> {
        let (name, holder) = (name.to_string(), holder.to_string());
        self.write(move |t| admin::acquire_lease(t, &name, &holder, ttl))
            .await
    }

    async fn renew_lease(&self, name: &str, holder: &str, ttl: Duration) -> Result<bool> {
        let (name, holder) = (name.to_string(), holder.to_string());
        self.write(move |t| admin::renew_lease(t, &name, &holder, ttl))
            .await
    }

    async fn release_lease(&self, name: &str, holder: &str) -> Result<()> {
        let (name, holder) = (name.to_string(), holder.to_string());
        self.write(move |t| admin::release_lease(t, &name, &holder))
            .await
    }

    async fn setting_get_or_init(&self, name: &str, value: &str) -> Result<String> {
        let (name, value) = (name.to_string(), value.to_string());
        self.write(move |t| admin::setting_get_or_init(t, &name, &value))
            .await
    }

    async fn get_setting(&self, name: &str) -> Result<Option<String>> {
        let name = name.to_string();
        self.read(move |txn| get(&table(txn, SETTINGS)?, name.as_bytes(), "setting"))
            .await
    }

    async fn stats(&self) -> Result<StoreStats> {
        self.read(|txn| {
            let c = table(txn, COUNTERS)?;
            Ok(StoreStats {
                buckets: table(txn, BUCKETS)?.len().map_err(backend)?,
                objects: counter(&c, tables::C_OBJECTS)?,
                object_bytes: counter(&c, tables::C_OBJECT_BYTES)?,
                chunks: counter(&c, tables::C_CHUNKS)?,
                chunk_bytes: counter(&c, tables::C_CHUNK_BYTES)?,
            })
        })
        .await
    }
}
