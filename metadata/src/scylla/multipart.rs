//! Multipart uploads: upload rows, part rows (each part upload holds its own chunk refs,
//! `part/<upload id>/<number>/<nonce>`), listing uploads with delimiter folding, completion
//! (a commit whose manifest is the parts' chunks, no data copied) and abort.

use super::cql::{self, decode, encode, exec, first, rows, FORMAT};
use super::listing::{after, prefix_successor};
use super::ScyllaStore;
use crate::{
    BucketRecord, CommitOutcome, ManifestEntry, MetaError, ObjectRecord, PartRecord, PutCondition,
    Result, UploadListPage, UploadListQuery, UploadRecord,
};
use std::collections::BTreeMap;
use std::hash::{BuildHasher, RandomState};

/// A ref id unique to one upload of one part: re-uploading a part number with the same chunks
/// must not let the release of the old upload's refs drop the new one's.
fn part_ref(upload_id: &str, number: u32) -> String {
    // RandomState is seeded from the OS per process (and varies per instance), the clock
    // separates uploads within a process.
    let nonce = RandomState::new().hash_one(crate::now_millis());
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!("part/{upload_id}/{number}/{nanos:x}{nonce:016x}")
}

fn part_number(n: u32) -> i32 {
    i32::try_from(n).unwrap_or(i32::MAX)
}

/// `ref_id, format, record` of a part row.
type PartRow = (Option<String>, Option<i32>, Option<String>);

enum UploadEntry {
    Upload(UploadRecord),
    Prefix(String),
}

impl ScyllaStore {
    pub(super) async fn insert_upload(
        &self,
        bucket: &BucketRecord,
        upload: &UploadRecord,
    ) -> Result<()> {
        self.check_bucket_live(bucket).await?;
        let values = (
            &bucket.id,
            &upload.key,
            &upload.upload_id,
            FORMAT,
            encode(upload)?,
        );
        exec(
            &self.session,
            &self.st.upload_insert,
            values,
            "creating an upload",
        )
        .await
    }

    pub(super) async fn upload(
        &self,
        bucket: &BucketRecord,
        key: &str,
        upload_id: &str,
    ) -> Result<UploadRecord> {
        let row: Option<(Option<i32>, Option<String>)> = first(
            &self.session,
            &self.st.upload_get,
            (&bucket.id, key, upload_id),
            "reading an upload",
        )
        .await?;
        match row {
            Some((format, record)) => decode(format, record.as_deref()),
            None => Err(MetaError::NoSuchUpload(upload_id.to_owned())),
        }
    }

    pub(super) async fn record_part(
        &self,
        bucket: &BucketRecord,
        key: &str,
        upload_id: &str,
        part: PartRecord,
        placements: Vec<crate::ChunkPlacement>,
    ) -> Result<()> {
        self.upload(bucket, key, upload_id).await?;
        self.check_chunks_known(&part.chunks, &placements).await?;
        let ref_id = part_ref(upload_id, part.number);
        // Refs before the part row, as for objects.
        self.write_version_data(&ref_id, None, &part.chunks, &placements)
            .await?;
        let number = part_number(part.number);
        let old: Option<PartRow> = first(
            &self.session,
            &self.st.part_get,
            (upload_id, number),
            "reading a part",
        )
        .await?;
        let values = (upload_id, number, &ref_id, FORMAT, encode(&part)?);
        exec(
            &self.session,
            &self.st.part_insert,
            values,
            "recording a part",
        )
        .await?;
        if let Some((Some(old_ref), format, record)) = old {
            let old_part: PartRecord = decode(format, record.as_deref())?;
            self.release_refs(&old_ref, &old_part.chunks).await?;
        }
        Ok(())
    }

    /// All parts of an upload in number order after `after_part`, with their ref ids, paged.
    async fn parts(
        &self,
        upload_id: &str,
        after_part: u32,
        max: usize,
    ) -> Result<Vec<(String, PartRecord)>> {
        let mut stream = cql::scan::<PartRow>(
            &self.session,
            &self.st.part_scan,
            (upload_id, part_number(after_part)),
            "listing parts",
        )
        .await?;
        let mut out = Vec::new();
        while out.len() < max {
            let Some((ref_id, format, record)) =
                cql::next_row(&mut stream, "listing parts").await?
            else {
                break;
            };
            out.push((
                ref_id.unwrap_or_default(),
                decode(format, record.as_deref())?,
            ));
        }
        Ok(out)
    }

    pub(super) async fn part_list(
        &self,
        bucket: &BucketRecord,
        key: &str,
        upload_id: &str,
        after_part: u32,
        max: usize,
    ) -> Result<Vec<PartRecord>> {
        self.upload(bucket, key, upload_id).await?;
        Ok(self
            .parts(upload_id, after_part, max)
            .await?
            .into_iter()
            .map(|(_, p)| p)
            .collect())
    }

    pub(super) async fn complete(
        &self,
        bucket: &BucketRecord,
        upload_id: &str,
        object: ObjectRecord,
        part_numbers: &[u32],
        condition: PutCondition,
    ) -> Result<CommitOutcome> {
        let key = object.key.clone();
        self.upload(bucket, &key, upload_id).await?;
        let parts = self.parts(upload_id, 0, usize::MAX).await?;
        let by_number: BTreeMap<u32, &PartRecord> =
            parts.iter().map(|(_, p)| (p.number, p)).collect();
        let mut manifest: Vec<ManifestEntry> = Vec::new();
        for n in part_numbers {
            let Some(part) = by_number.get(n) else {
                // Report what the embedded backend reports first: a missing bucket or a failed
                // condition before an invalid part (checked only on this error path).
                self.check_bucket_live(bucket).await?;
                let shard = super::listing::shard_of(&key, bucket.shard_count);
                let current = self.read_object(&bucket.id, shard, &key, true).await?;
                super::objects::check_condition(&condition, current.as_ref())?;
                return Err(MetaError::InvalidPart(*n));
            };
            manifest.extend_from_slice(&part.chunks);
        }
        // The parts' chunks were checked when each part was recorded, and the parts' refs
        // keep them from garbage collection, so they are not checked again here.
        // The object holds its own refs (written by commit_version before its row); only then
        // are the parts' refs released, so the chunks are never unreferenced in between.
        let outcome = self
            .commit_version(bucket, object, &manifest, &[], &condition, false)
            .await?;
        if let Err(e) = self.drop_upload(bucket, &key, upload_id, parts).await {
            tracing::warn!(upload_id, error = %e, "upload completed but its parts were not all released (garbage, not data loss)");
        }
        Ok(outcome)
    }

    pub(super) async fn abort(
        &self,
        bucket: &BucketRecord,
        key: &str,
        upload_id: &str,
    ) -> Result<()> {
        self.upload(bucket, key, upload_id).await?;
        let parts = self.parts(upload_id, 0, usize::MAX).await?;
        self.drop_upload(bucket, key, upload_id, parts).await
    }

    /// Releases the parts' refs, then deletes the part rows and the upload row.
    async fn drop_upload(
        &self,
        bucket: &BucketRecord,
        key: &str,
        upload_id: &str,
        parts: Vec<(String, PartRecord)>,
    ) -> Result<()> {
        for (ref_id, part) in &parts {
            self.release_refs(ref_id, &part.chunks).await?;
        }
        exec(
            &self.session,
            &self.st.parts_delete,
            (upload_id,),
            "deleting parts",
        )
        .await?;
        exec(
            &self.session,
            &self.st.upload_delete,
            (&bucket.id, key, upload_id),
            "deleting an upload",
        )
        .await
    }

    pub(super) async fn upload_list(
        &self,
        bucket: &BucketRecord,
        q: &UploadListQuery,
    ) -> Result<UploadListPage> {
        let mut page = UploadListPage::default();
        if q.max_uploads == 0 {
            return Ok(page);
        }
        let batch: i32 = (q.max_uploads + 1).clamp(16, 1000) as i32;
        let delimiter = q.delimiter.as_deref().filter(|d| !d.is_empty());
        // Where to read from: (key, Some(upload id)) is exclusive on the pair, (key, None)
        // inclusive on the key.
        let mut position: (String, Option<String>) = match (&q.key_marker, &q.upload_id_marker) {
            (Some(km), Some(um)) if km.as_str() >= q.prefix.as_str() => {
                (km.clone(), Some(um.clone()))
            }
            (Some(km), None) if after(km) > q.prefix => (after(km), None),
            _ => (q.prefix.clone(), None),
        };
        let want = q.max_uploads + 1; // one more than the page, to know whether it is truncated
        let mut entries: Vec<UploadEntry> = Vec::new();
        'read: while entries.len() < want {
            let found: Vec<(String, String, Option<i32>, Option<String>)> = match &position {
                (key, Some(upload_id)) => {
                    rows(
                        &self.session,
                        &self.st.upload_list_after,
                        (&bucket.id, key, upload_id, batch),
                        "listing uploads",
                    )
                    .await?
                }
                (key, None) => {
                    rows(
                        &self.session,
                        &self.st.upload_list_from,
                        (&bucket.id, key, batch),
                        "listing uploads",
                    )
                    .await?
                }
            };
            let exhausted = found.len() < batch as usize;
            for (key, upload_id, format, record) in found {
                if !key.starts_with(&q.prefix) {
                    break 'read; // reads start at or after the prefix: past it now
                }
                let cp = delimiter.and_then(|d| {
                    key[q.prefix.len()..]
                        .find(d)
                        .map(|p| key[..q.prefix.len() + p + d.len()].to_owned())
                });
                if let Some(cp) = cp {
                    if q.key_marker.as_ref().is_none_or(|km| cp > *km) {
                        entries.push(UploadEntry::Prefix(cp.clone()));
                    }
                    // Skip every upload under the folded prefix with one new read.
                    match prefix_successor(&cp) {
                        Some(next) => position = (next, None),
                        None => break 'read,
                    }
                    continue 'read;
                }
                entries.push(UploadEntry::Upload(decode(format, record.as_deref())?));
                position = (key, Some(upload_id));
                if entries.len() == want {
                    break 'read;
                }
            }
            if exhausted {
                break;
            }
        }
        if entries.len() > q.max_uploads {
            entries.truncate(q.max_uploads);
            page.is_truncated = true;
        }
        for entry in entries {
            match entry {
                UploadEntry::Upload(u) => {
                    if page.is_truncated {
                        page.next_key_marker = Some(u.key.clone());
                        page.next_upload_id_marker = Some(u.upload_id.clone());
                    }
                    page.uploads.push(u);
                }
                UploadEntry::Prefix(cp) => {
                    if page.is_truncated {
                        page.next_key_marker = Some(cp.clone());
                        page.next_upload_id_marker = None;
                    }
                    page.common_prefixes.push(cp);
                }
            }
        }
        Ok(page)
    }
}
