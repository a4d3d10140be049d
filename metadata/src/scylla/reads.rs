//! What a GET reads before its first chunk, in two sequential round trips: first the bucket row
//! and the key's partition (the current version and the first entries of its manifest,
//! `ManifestHead`) at the same time, the partition under the bucket id this gateway saw last for
//! that name; then the chunk rows of the first chunks (and, for an object of more than 16
//! chunks, the rest of the manifest, at the same time). When the bucket row names another id
//! (the bucket was deleted and created again) or the name was never seen, the partition is read
//! after the bucket row: three trips, once. The chunk rows are read without counting refs (a
//! read needs the replicas, and counting is a `COUNT(*)` kept off the request path).

use super::objects::Head;
use super::ScyllaStore;
use crate::{
    BucketRecord, ChunkId, ChunkRecord, ManifestEntry, MetaError, ObjectForRead, ReadManifest,
    Result,
};
use futures::stream::{self, StreamExt, TryStreamExt};

/// How many chunk rows a read fetches at once.
const RECORD_CONCURRENCY: usize = 16;
/// Bucket ids remembered at most (the map is emptied when full: it is only a hint).
const BUCKET_IDS: usize = 10_000;

impl ScyllaStore {
    /// Remembers a bucket's id for the next read of one of its keys.
    pub(super) fn remember_bucket(&self, bucket: &BucketRecord) {
        let mut ids = self.bucket_ids.lock().unwrap_or_else(|e| e.into_inner());
        if ids.len() >= BUCKET_IDS && !ids.contains_key(&bucket.name) {
            ids.clear();
        }
        ids.insert(bucket.name.clone(), bucket.id.clone());
    }

    /// The bucket named `name` and the head of `key` in it, in one round trip when the
    /// bucket's id is known (see the module docs). `None`: no such bucket.
    pub(super) async fn bucket_and_head(
        &self,
        name: &str,
        key: &str,
    ) -> Result<Option<(BucketRecord, Head)>> {
        let known = self
            .bucket_ids
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(name)
            .cloned();
        if let Some(id) = known {
            let (bucket, head) =
                futures::try_join!(self.bucket(name), self.read_head(&id, key, false))?;
            match bucket {
                Some(bucket) if bucket.id == id => return Ok(Some((bucket, head))),
                Some(bucket) => {
                    let head = self.read_head(&bucket.id, key, false).await?;
                    return Ok(Some((bucket, head)));
                }
                None => {
                    self.bucket_ids
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .remove(name);
                    return Ok(None);
                }
            }
        }
        let Some(bucket) = self.bucket(name).await? else {
            return Ok(None);
        };
        let head = self.read_head(&bucket.id, key, false).await?;
        Ok(Some((bucket, head)))
    }

    /// The chunk rows of the first `wanted` entries, concurrently, without ref counts.
    async fn records_for_read(
        &self,
        entries: &[ManifestEntry],
        wanted: usize,
    ) -> Result<Vec<Option<ChunkRecord>>> {
        let ids: Vec<ChunkId> = entries.iter().take(wanted).map(|e| e.chunk).collect();
        stream::iter(ids)
            .map(|id| async move { self.chunk_row(&id).await })
            .buffered(RECORD_CONCURRENCY)
            .try_collect()
            .await
    }

    pub(super) async fn manifest_for_read(
        &self,
        version_id: &str,
        wanted: usize,
    ) -> Result<ReadManifest> {
        let manifest = self
            .read_manifest(version_id)
            .await?
            .ok_or(MetaError::NoSuchKey)?;
        let records = self.records_for_read(&manifest, wanted).await?;
        Ok((manifest, records))
    }

    pub(super) async fn object_for_read(
        &self,
        bucket: &str,
        key: &str,
        wanted: usize,
    ) -> Result<Option<ObjectForRead>> {
        let Some((bucket, head)) = self.bucket_and_head(bucket, key).await? else {
            return Ok(None);
        };
        let Some(object) = head.current else {
            return Ok(Some((bucket, None, None)));
        };
        if object.delete_marker {
            return Ok(Some((bucket, Some(object), None)));
        }
        let read = match &head.manifest_head {
            Some(inline) => match inline.complete() {
                Some(manifest) => {
                    let records = self.records_for_read(manifest, wanted).await?;
                    (manifest.to_vec(), records)
                }
                // The head names every chunk whose record is wanted: those records and the
                // rest of the manifest are read at the same time.
                None if wanted <= inline.entries.len() => futures::try_join!(
                    async {
                        self.read_manifest(&object.version_id)
                            .await?
                            .ok_or(MetaError::NoSuchKey)
                    },
                    self.records_for_read(&inline.entries, wanted),
                )?,
                None => self.manifest_for_read(&object.version_id, wanted).await?,
            },
            None => self.manifest_for_read(&object.version_id, wanted).await?,
        };
        Ok(Some((bucket, Some(object), Some(read))))
    }
}
