//! The index of multipart uploads in progress (ListMultipartUploads, and DeleteBucket's check
//! for uploads): like the listing index, a bucket's uploads are spread over `shard_count`
//! partitions by the shard of their key, so no partition takes every upload of a busy bucket
//! (nor the tombstone every finished upload leaves). A listing merges the shards in (key,
//! upload id) order; all uploads of one key are in one shard, in upload id order.

use super::cql::{decode, exec, first, rows, FORMAT};
use super::listing::{after, prefix_successor, shard_of};
use super::ScyllaStore;
use crate::{BucketRecord, MetaError, Result, UploadListPage, UploadListQuery, UploadRecord};
use std::collections::VecDeque;

/// `key, upload_id, format, record` of an uploads row.
type UploadRow = (String, String, Option<i32>, Option<String>);

enum UploadEntry {
    Upload(UploadRecord),
    Prefix(String),
}

/// One shard's rows in order, read a batch at a time.
struct Cursor {
    shard: i32,
    buf: VecDeque<UploadRow>,
    /// Where the next read starts: after the pair `(key, Some(upload id))`, or at `key`
    /// inclusive with `None`.
    position: (String, Option<String>),
    done: bool,
}

impl ScyllaStore {
    pub(super) async fn upload_row_insert(
        &self,
        bucket: &BucketRecord,
        upload: &UploadRecord,
        record: String,
    ) -> Result<()> {
        let shard = shard_of(&upload.key, bucket.shard_count);
        let values = (
            &bucket.id,
            shard,
            &upload.key,
            &upload.upload_id,
            FORMAT,
            record,
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
        let shard = shard_of(key, bucket.shard_count);
        let row: Option<(Option<i32>, Option<String>)> = first(
            &self.session,
            &self.st.upload_get,
            (&bucket.id, shard, key, upload_id),
            "reading an upload",
        )
        .await?;
        match row {
            Some((format, record)) => decode(format, record.as_deref()),
            None => Err(MetaError::NoSuchUpload(upload_id.to_owned())),
        }
    }

    pub(super) async fn upload_row_delete(
        &self,
        bucket: &BucketRecord,
        key: &str,
        upload_id: &str,
    ) -> Result<()> {
        let shard = shard_of(key, bucket.shard_count);
        exec(
            &self.session,
            &self.st.upload_delete,
            (&bucket.id, shard, key, upload_id),
            "deleting an upload",
        )
        .await
    }

    /// Whether any upload of the bucket is in progress (DeleteBucket).
    pub(super) async fn bucket_has_uploads(&self, bucket: &BucketRecord) -> Result<bool> {
        for shard in 0..bucket.shard_count.max(1) as i32 {
            let row: Option<(String,)> = first(
                &self.session,
                &self.st.upload_any,
                (&bucket.id, shard),
                "checking a bucket is empty",
            )
            .await?;
            if row.is_some() {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Reads the next batch of `cursor`'s shard if its buffer is empty, and drops what is past
    /// the prefix (the shard is then done).
    async fn fill(
        &self,
        bucket: &BucketRecord,
        prefix: &str,
        batch: i32,
        cursor: &mut Cursor,
    ) -> Result<()> {
        if cursor.buf.is_empty() && !cursor.done {
            let found: Vec<UploadRow> = match &cursor.position {
                (key, Some(upload_id)) => {
                    rows(
                        &self.session,
                        &self.st.upload_list_after,
                        (&bucket.id, cursor.shard, key, upload_id, batch),
                        "listing uploads",
                    )
                    .await?
                }
                (key, None) => {
                    rows(
                        &self.session,
                        &self.st.upload_list_from,
                        (&bucket.id, cursor.shard, key, batch),
                        "listing uploads",
                    )
                    .await?
                }
            };
            if found.len() < batch as usize {
                cursor.done = true;
            }
            if let Some((key, upload_id, _, _)) = found.last() {
                cursor.position = (key.clone(), Some(upload_id.clone()));
            }
            cursor.buf.extend(found);
        }
        // Reads start at or after the prefix: the first key outside it ends the shard.
        if cursor
            .buf
            .front()
            .is_some_and(|(k, _, _, _)| !k.starts_with(prefix))
        {
            cursor.buf.clear();
            cursor.done = true;
        }
        Ok(())
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
        let shards = bucket.shard_count.max(1);
        let batch: i32 = ((q.max_uploads + 1) / shards as usize + 2).clamp(16, 1000) as i32;
        let delimiter = q.delimiter.as_deref().filter(|d| !d.is_empty());
        // Where to read from: (key, Some(upload id)) is exclusive on the pair, (key, None)
        // inclusive on the key.
        let start: (String, Option<String>) = match (&q.key_marker, &q.upload_id_marker) {
            (Some(km), Some(um)) if km.as_str() >= q.prefix.as_str() => {
                (km.clone(), Some(um.clone()))
            }
            (Some(km), None) if after(km) > q.prefix => (after(km), None),
            _ => (q.prefix.clone(), None),
        };
        let mut cursors: Vec<Cursor> = (0..shards as i32)
            .map(|shard| Cursor {
                shard,
                buf: VecDeque::new(),
                position: start.clone(),
                done: false,
            })
            .collect();
        let want = q.max_uploads + 1; // one more than the page, to know whether it is truncated
        let mut entries: Vec<UploadEntry> = Vec::new();
        while entries.len() < want {
            let mut best: Option<usize> = None;
            for i in 0..cursors.len() {
                self.fill(bucket, &q.prefix, batch, &mut cursors[i]).await?;
                if let Some((key, upload_id, _, _)) = cursors[i].buf.front() {
                    let better = best.is_none_or(|b| {
                        let (bk, bu, _, _) = &cursors[b].buf[0];
                        (key, upload_id) < (bk, bu)
                    });
                    if better {
                        best = Some(i);
                    }
                }
            }
            let Some(i) = best else { break };
            let Some((key, _, format, record)) = cursors[i].buf.pop_front() else {
                break;
            };
            let cp = delimiter.and_then(|d| {
                key[q.prefix.len()..]
                    .find(d)
                    .map(|p| key[..q.prefix.len() + p + d.len()].to_owned())
            });
            let Some(cp) = cp else {
                entries.push(UploadEntry::Upload(decode(format, record.as_deref())?));
                continue;
            };
            if q.key_marker.as_ref().is_none_or(|km| cp > *km) {
                entries.push(UploadEntry::Prefix(cp.clone()));
            }
            // Skip every upload under the folded prefix, in every shard, with one new read.
            let successor = prefix_successor(&cp);
            for c in &mut cursors {
                while c.buf.front().is_some_and(|(k, _, _, _)| k.starts_with(&cp)) {
                    c.buf.pop_front();
                }
                if c.buf.is_empty() && !c.done {
                    match &successor {
                        Some(next) if *next > c.position.0 => c.position = (next.clone(), None),
                        Some(_) => {}
                        None => c.done = true,
                    }
                }
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
