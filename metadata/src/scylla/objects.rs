//! Objects: the commit point of a key (its own partition of the `objects` table), deletes, and
//! the bucket guard that keeps DeleteBucket from hiding a commit. The listing index written
//! after each commit is in `index.rs`, the data a version holds (refs, chunk rows, manifest)
//! in `refs.rs`; the crash analysis is in the module docs of `scylla.rs`.
//!
//! # A commit, step by step
//! 1. Read the key's partition (a plain quorum read): the current version, its sequence number
//!    and whether DeleteBucket fenced the key. A condition that fails here fails at once.
//! 2. Write the version's data (refs, chunk rows, manifest): nothing points at it yet.
//! 3. Mark the key's listing row pending (timestamp `seq - 1`), then check with a serial read
//!    that the bucket still exists under the same id and is not being deleted: a DeleteBucket
//!    that starts after this check finds the pending row (see `index.rs`).
//! 4. The commit point: one conditional batch on the key's partition sets `head` to the new
//!    version if `head` is still what step 1 read and the key is not fenced, inserts the
//!    version row and removes the replaced one. If it does not apply, the key is re-read
//!    serially (that completes any Paxos round in flight) and the loop goes back to the check
//!    of the condition. If the batch fails with an error (a timeout), it may still have
//!    applied: the serial re-read tells, and a commit that did apply is reported as done.
//! 5. Write the listing row with `seq` as its timestamp, then release the replaced version.

use super::cql::{decode, encode, first, lwt_batch, FORMAT};
use super::listing::shard_of;
use super::records::to_i64;
use super::refs::version_ref;
use super::{ScyllaStore, MAX_CAS_ATTEMPTS};
use crate::{
    now_millis, BucketRecord, ChunkPlacement, CommitOutcome, ManifestEntry, MetaError,
    ObjectRecord, PutCondition, Result,
};
use ::scylla::statement::batch::{Batch, BatchType};
use ::scylla::statement::prepared::PreparedStatement;
use std::time::{Duration, Instant};

/// A DeleteBucket that marked its bucket longer ago than this is taken to have died: commits
/// stop waiting for it.
const DELETING_STALE_MILLIS: i64 = 30_000;

/// How long a commit waits for a DeleteBucket in progress to finish before it gives up with a
/// retryable error.
const DELETING_WAIT: Duration = Duration::from_secs(5);

/// `head, head_seq, fenced, seq, format, record, manifest_head` of the first row of a key's
/// partition.
type HeadRow = (
    Option<String>,
    Option<i64>,
    Option<bool>,
    Option<i64>,
    Option<i32>,
    Option<String>,
    Option<String>,
);

/// How many manifest entries a version row carries (`manifest_head`).
pub(super) const INLINE_ENTRIES: usize = 16;

/// The first entries of a version's manifest, kept on its row, and how many it has in all.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub(super) struct ManifestHead {
    pub count: u64,
    pub entries: Vec<ManifestEntry>,
}

impl ManifestHead {
    fn of(manifest: &[ManifestEntry]) -> ManifestHead {
        ManifestHead {
            count: manifest.len() as u64,
            entries: manifest.iter().take(INLINE_ENTRIES).copied().collect(),
        }
    }

    /// The whole manifest, when the head holds all of it.
    pub fn complete(&self) -> Option<&[ManifestEntry]> {
        (self.entries.len() as u64 == self.count).then_some(self.entries.as_slice())
    }
}

/// A key's state as one read of its partition saw it.
#[derive(Clone, Debug, Default)]
pub(super) struct Head {
    /// The current version (delete markers included), `None` when the key has none.
    pub current: Option<ObjectRecord>,
    /// The partition's sequence number of the current version (for removing its row).
    pub current_seq: i64,
    /// The sequence number of the last change of the key (0 for a key never written).
    pub seq: i64,
    /// Set by DeleteBucket: nothing may commit under this key any more.
    pub fenced: bool,
    /// The first entries of the current version's manifest (`None` for rows written without).
    pub manifest_head: Option<ManifestHead>,
}

impl Head {
    fn version_id(&self) -> Option<&str> {
        self.current.as_ref().map(|c| c.version_id.as_str())
    }
}

/// Whether `condition` allows a commit over `current`. A delete marker counts as no object.
pub(super) fn check_condition(
    condition: &PutCondition,
    current: Option<&ObjectRecord>,
) -> Result<()> {
    let live = current.filter(|c| !c.delete_marker);
    let ok = match condition {
        PutCondition::None => true,
        PutCondition::IfNoneMatchStar => live.is_none(),
        // Quotes are ignored on both sides, as in the embedded backend.
        PutCondition::IfMatch(etag) => {
            live.is_some_and(|c| c.etag.trim_matches('"') == etag.trim_matches('"'))
        }
    };
    if ok {
        Ok(())
    } else {
        Err(MetaError::PreconditionFailed)
    }
}

/// The manifest head of a version row; a row without one (or an unreadable one, which only
/// costs the reader a read of the manifests table) gives `None`.
fn decode_head(text: Option<&str>) -> Option<ManifestHead> {
    serde_json::from_str(text?).ok()
}

/// The sequence number of the next change of a key whose last change was `last`: the time in
/// microseconds, and always at least 2 more than `last`, so `seq - 1` (the pending mark's
/// timestamp) is still above every timestamp the key's earlier changes wrote.
fn next_seq(last: i64) -> i64 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX / 2));
    now.max(last.saturating_add(2))
}

impl ScyllaStore {
    /// A conditional batch of `statements`, at the store's consistency levels.
    fn cas_batch(&self, statements: &[&PreparedStatement]) -> Batch {
        let mut batch = Batch::new(BatchType::Logged);
        for s in statements {
            batch.append_statement((*s).clone());
        }
        batch.set_consistency(self.config.consistency);
        batch.set_serial_consistency(Some(self.config.serial_consistency));
        batch.set_is_idempotent(false);
        batch.set_request_timeout(self.config.lwt_timeout);
        batch
    }

    /// Reads a key's partition. `serial` reads at SERIAL/LOCAL_SERIAL, which first completes
    /// any lightweight transaction in flight on it: the outcome of a commit is known after it.
    pub(super) async fn read_head(&self, bucket_id: &str, key: &str, serial: bool) -> Result<Head> {
        let stmt = if serial {
            &self.st.object_head_serial
        } else {
            &self.st.object_head
        };
        let row: Option<HeadRow> =
            first(&self.session, stmt, (bucket_id, key), "reading an object").await?;
        let Some((head, head_seq, fenced, seq, format, record, inline)) = row else {
            return Ok(Head::default());
        };
        let mut out = Head {
            current: None,
            current_seq: 0,
            seq: head_seq.unwrap_or(0),
            fenced: fenced.unwrap_or(false),
            manifest_head: None,
        };
        let Some(head) = head else { return Ok(out) };
        // The newest version row is normally the current one. When it is not (a versioned
        // key whose newest version was removed), the current one is read by its number, which
        // is the key's `head_seq`: both are set by the same commit.
        if let (Some(seq), Some(_)) = (seq, &record) {
            let newest: ObjectRecord = decode(format, record.as_deref())?;
            if newest.version_id == head {
                out.current = Some(newest);
                out.current_seq = seq;
                out.manifest_head = decode_head(inline.as_deref());
                return Ok(out);
            }
        }
        let row: Option<(Option<i32>, Option<String>, Option<String>)> = first(
            &self.session,
            &self.st.object_version_at,
            (bucket_id, key, out.seq),
            "reading an object version",
        )
        .await?;
        match row {
            Some((format, record, inline)) => {
                let current: ObjectRecord = decode(format, record.as_deref())?;
                out.manifest_head = decode_head(inline.as_deref());
                if current.version_id != head {
                    return Err(MetaError::Corrupt(format!(
                        "key `{key}`: the current version {head} has no row"
                    )));
                }
                out.current_seq = out.seq;
                out.current = Some(current);
                Ok(out)
            }
            None => Err(MetaError::Corrupt(format!(
                "key `{key}`: the current version {head} has no row"
            ))),
        }
    }

    /// Waits until `bucket` is live under the same id and no DeleteBucket is deciding its
    /// fate (serial reads, so a DeleteBucket that marked the bucket before this is seen).
    /// `NoSuchBucket` when it is gone or was re-created; a retryable error when a delete is
    /// still deciding after [`DELETING_WAIT`].
    pub(super) async fn check_bucket_live(&self, bucket: &BucketRecord) -> Result<()> {
        let deadline = Instant::now() + DELETING_WAIT;
        loop {
            let row: Option<(Option<String>, Option<i64>)> = first(
                &self.session,
                &self.st.bucket_get_serial,
                (&bucket.name,),
                "checking a bucket",
            )
            .await?;
            let deleting_since = match row {
                Some((Some(id), since)) if id == bucket.id => since.unwrap_or(0),
                _ => return Err(MetaError::NoSuchBucket(bucket.name.clone())),
            };
            if deleting_since == 0 || now_millis() - deleting_since > DELETING_STALE_MILLIS {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(MetaError::Backend(format!(
                    "bucket `{}` is being deleted; retry the request",
                    bucket.name
                )));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Commits `object` as the current version of its key: the shared path of PutObject,
    /// CopyObject and CompleteMultipartUpload (see the module docs for the steps).
    pub(super) async fn commit_version(
        &self,
        bucket: &BucketRecord,
        object: ObjectRecord,
        manifest: &[ManifestEntry],
        placements: &[ChunkPlacement],
        condition: &PutCondition,
        verify_chunks: bool,
    ) -> Result<CommitOutcome> {
        let key = object.key.as_str();
        let shard = shard_of(key, bucket.shard_count);
        let mut head = self.read_head(&bucket.id, key, false).await?;
        // Fail fast, before anything is written.
        if head.fenced {
            return Err(MetaError::NoSuchBucket(bucket.name.clone()));
        }
        check_condition(condition, head.current.as_ref())?;
        if verify_chunks {
            self.check_chunks_known(manifest, placements).await?;
        }
        if let Err(e) = self
            .write_version_data(
                &version_ref(&object.version_id),
                Some(&object.version_id),
                manifest,
                placements,
            )
            .await
        {
            // Nothing points at the new version: what it wrote is released at once.
            self.discard_version(&object.version_id, manifest).await;
            return Err(e);
        }
        let outcome = self
            .commit_head(bucket, shard, &object, manifest, condition, &mut head)
            .await;
        match outcome {
            Ok(seq) => {
                self.index_put(bucket, shard, &object, seq).await;
                if let Some(old) = &head.current {
                    self.release_version_after_commit(&old.version_id).await;
                }
                Ok(CommitOutcome {
                    replaced: head.current,
                })
            }
            Err(e) => {
                // Not committed (the serial re-read said so): the new version's data is
                // garbage now; released at once so its chunks are not referenced forever.
                self.discard_version(&object.version_id, manifest).await;
                Err(e)
            }
        }
    }

    /// Steps 3 and 4 of a commit: makes `object` the key's current version if `condition`
    /// allows, starting from `head` (updated to what was replaced). Returns the commit's
    /// sequence number.
    async fn commit_head(
        &self,
        bucket: &BucketRecord,
        shard: i32,
        object: &ObjectRecord,
        manifest: &[ManifestEntry],
        condition: &PutCondition,
        head: &mut Head,
    ) -> Result<i64> {
        let key = object.key.as_str();
        let record = encode(object)?;
        let inline = encode(&ManifestHead::of(manifest))?;
        let size = to_i64(object.size)?;
        for _ in 0..MAX_CAS_ATTEMPTS {
            let seq = next_seq(head.seq);
            self.index_mark_pending(bucket, shard, key, &object.version_id, seq - 1)
                .await?;
            self.check_bucket_live(bucket).await?;
            let old_version = head.version_id().map(str::to_owned);
            let set_head = (
                &object.version_id,
                seq,
                &bucket.id,
                key,
                old_version.as_deref(),
            );
            let insert = (
                &bucket.id,
                key,
                seq,
                &object.version_id,
                size,
                object.delete_marker,
                FORMAT,
                &record,
                &inline,
            );
            let attempt = match &head.current {
                Some(_) => {
                    let batch = self.cas_batch(&[
                        &self.st.object_set_head,
                        &self.st.object_version_insert,
                        &self.st.object_version_delete,
                    ]);
                    let remove = (&bucket.id, key, head.current_seq);
                    lwt_batch(
                        &self.session,
                        &batch,
                        (set_head, insert, remove),
                        "committing an object",
                    )
                    .await
                }
                None => {
                    let batch =
                        self.cas_batch(&[&self.st.object_set_head, &self.st.object_version_insert]);
                    lwt_batch(
                        &self.session,
                        &batch,
                        (set_head, insert),
                        "committing an object",
                    )
                    .await
                }
            };
            match attempt {
                Ok(outcome) if outcome.applied => return Ok(seq),
                Ok(outcome) if outcome.boolean("fenced") == Some(true) => {
                    // DeleteBucket fenced the key: the bucket is gone or going.
                    return Err(MetaError::NoSuchBucket(bucket.name.clone()));
                }
                Ok(_) => {}
                Err(e) => {
                    // A timeout may hide a commit that applied: the serial read below settles
                    // the Paxos round, so the current version then says whether it did.
                    tracing::warn!(key, error = %e, "commit of an object failed; checking whether it applied");
                }
            }
            let previous = std::mem::take(head);
            *head = self.read_head(&bucket.id, key, true).await?;
            if head.version_id() == Some(object.version_id.as_str()) {
                // Our commit applied (the error was a lost answer). What it replaced is the
                // version read before.
                self.settled_by_read
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let seq = head.current_seq;
                *head = previous;
                return Ok(seq);
            }
            if head.fenced {
                return Err(MetaError::NoSuchBucket(bucket.name.clone()));
            }
            check_condition(condition, head.current.as_ref())?;
        }
        Err(MetaError::Backend(format!(
            "gave up committing `{key}` after {MAX_CAS_ATTEMPTS} attempts: other writers keep replacing it"
        )))
    }

    pub(super) async fn delete_current(
        &self,
        bucket: &BucketRecord,
        key: &str,
    ) -> Result<Option<ObjectRecord>> {
        let shard = shard_of(key, bucket.shard_count);
        let mut head = self.read_head(&bucket.id, key, false).await?;
        for _ in 0..MAX_CAS_ATTEMPTS {
            let Some(current) = head.current.clone() else {
                return Ok(None);
            };
            let seq = next_seq(head.seq);
            // Pending first: if this gateway dies between the commit and the index delete, a
            // listing re-reads the key instead of showing a deleted object.
            self.index_mark_pending(bucket, shard, key, &current.version_id, seq - 1)
                .await?;
            let batch =
                self.cas_batch(&[&self.st.object_clear_head, &self.st.object_version_delete]);
            let values = (
                (seq, &bucket.id, key, &current.version_id),
                (&bucket.id, key, head.current_seq),
            );
            match lwt_batch(&self.session, &batch, values, "deleting an object").await {
                Ok(outcome) if outcome.applied => {
                    self.index_delete(bucket, shard, key, seq).await;
                    self.release_version_after_commit(&current.version_id).await;
                    return Ok(Some(current));
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(key, error = %e, "delete of an object failed; checking whether it applied");
                }
            }
            let previous = std::mem::take(&mut head);
            head = self.read_head(&bucket.id, key, true).await?;
            if head.current.is_none() && head.seq == seq {
                // Our delete applied (only it sets this sequence number).
                let _ = previous;
                self.index_delete(bucket, shard, key, seq).await;
                self.release_version_after_commit(&current.version_id).await;
                return Ok(Some(current));
            }
        }
        Err(MetaError::Backend(format!(
            "gave up deleting `{key}` after {MAX_CAS_ATTEMPTS} attempts: other writers keep replacing it"
        )))
    }

    /// The current version of a key, for readers (a plain quorum read).
    pub(super) async fn current_object(
        &self,
        bucket: &BucketRecord,
        key: &str,
    ) -> Result<Option<ObjectRecord>> {
        Ok(self.read_head(&bucket.id, key, false).await?.current)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn object(etag: &str, delete_marker: bool) -> ObjectRecord {
        ObjectRecord {
            key: "k".into(),
            version_id: "v".into(),
            size: 0,
            etag: etag.into(),
            last_modified: 0,
            content_type: None,
            headers: Default::default(),
            user_metadata: Default::default(),
            checksums: Default::default(),
            checksum_type: None,
            parts: Vec::new(),
            delete_marker,
            owner: "o".into(),
        }
    }

    #[test]
    fn conditions() {
        let live = object("abc", false);
        let marker = object("", true);
        assert!(check_condition(&PutCondition::None, Some(&live)).is_ok());
        assert!(check_condition(&PutCondition::IfNoneMatchStar, None).is_ok());
        assert!(check_condition(&PutCondition::IfNoneMatchStar, Some(&marker)).is_ok());
        assert!(check_condition(&PutCondition::IfNoneMatchStar, Some(&live)).is_err());
        assert!(check_condition(&PutCondition::IfMatch("abc".into()), Some(&live)).is_ok());
        assert!(check_condition(&PutCondition::IfMatch("abd".into()), Some(&live)).is_err());
        assert!(check_condition(&PutCondition::IfMatch("".into()), Some(&marker)).is_err());
        assert!(check_condition(&PutCondition::IfMatch("abc".into()), None).is_err());
        // Quotes are ignored on either side, as in the embedded backend.
        assert!(check_condition(&PutCondition::IfMatch("\"abc\"".into()), Some(&live)).is_ok());
        let quoted = object("\"abc\"", false);
        assert!(check_condition(&PutCondition::IfMatch("abc".into()), Some(&quoted)).is_ok());
    }
}
