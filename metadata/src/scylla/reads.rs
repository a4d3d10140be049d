//! What a GET reads before its first chunk, in as few sequential round trips as the tables
//! allow: the bucket row, then the key's partition (the current version and the first entries
//! of its manifest, `ManifestHead`), then the chunk rows of the first chunks (and, for an
//! object of more than 16 chunks, the rest of the manifest, at the same time). Three trips; the
//! chunk rows are read without counting refs (a read needs the replicas, and counting is a
//! `COUNT(*)` kept off the request path).

use super::ScyllaStore;
use crate::{ChunkId, ChunkRecord, ManifestEntry, MetaError, ObjectForRead, ReadManifest, Result};
use futures::stream::{self, StreamExt, TryStreamExt};

/// How many chunk rows a read fetches at once.
const RECORD_CONCURRENCY: usize = 16;

impl ScyllaStore {
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
        let Some(bucket) = self.bucket(bucket).await? else {
            return Ok(None);
        };
        let head = self.read_head(&bucket.id, key, false).await?;
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
