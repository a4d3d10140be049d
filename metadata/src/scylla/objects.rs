//! Objects: the commit point of a key (its own partition of the `objects` table), deletes, and
//! the bucket guard that keeps DeleteBucket from hiding a commit. The listing index written
//! after each commit is in `index.rs`, the data a version holds (refs, chunk rows, manifest)
//! in `refs.rs`; the crash analysis is in the module docs of `scylla.rs`.
//!
//! # A commit, step by step
//! 1. Read the key's partition (a plain quorum read): the current version, its sequence number
//!    and whether DeleteBucket fenced the key. A condition that fails here fails at once.
//! 2. Write the version's data (refs, chunk rows, manifest): nothing points at it yet.
//! 3. Mark the key's listing row pending (timestamp `seq - 1`), then check (a quorum read) that
//!    the bucket still exists under the same id and is not being deleted: a DeleteBucket whose
//!    mark this check misses finds the pending row (see `index.rs`).
//! 4. The commit point: one conditional batch on the key's partition sets `head` to the new
//!    version if `head` and `head_seq` are still what step 1 read (both: a key deleted and
//!    re-created meanwhile has the same `head` but a later `head_seq`) and the key is not
//!    fenced, inserts the version row and removes the replaced one. If it does not apply, the
//!    key is re-read serially (that completes any Paxos round in flight) and the loop goes back
//!    to the check of the condition. If the batch fails with an error (a timeout), it may
//!    still have applied: the serial re-read tells. Our version current: done. The key
//!    unchanged: not applied, try again. The key moved on: ours may have been current for a
//!    moment and replaced (and released) since, so it is never retried under the same id;
//!    an unconditional PUT is then done (last writer wins), a conditional one asks for a retry.
//! 5. Write the listing row with `seq` as its timestamp, then release the replaced version.

use super::cql::{decode, encode, first, lwt, lwt_batch, FORMAT};
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
    /// `head_seq` as stored: the sequence number of the last change of the key (`None` for a
    /// key never written), compared by the compare-and-set.
    pub seq_cell: Option<i64>,
    /// Set by DeleteBucket: nothing may commit under this key any more.
    pub fenced: bool,
    /// The first entries of the current version's manifest (`None` for rows written without).
    pub manifest_head: Option<ManifestHead>,
}

impl Head {
    /// The sequence number of the last change of the key (0 for a key never written).
    fn seq(&self) -> i64 {
        self.seq_cell.unwrap_or(0)
    }

    fn version_id(&self) -> Option<&str> {
        self.current.as_ref().map(|c| c.version_id.as_str())
    }

    /// Whether `other` is the same state of the key (same current version, same last change).
    fn same_as(&self, other: &Head) -> bool {
        self.version_id() == other.version_id() && self.seq_cell == other.seq_cell
    }
}

/// How a commit attempt ended, when it did not fail outright (a failure is an `Err`, after
/// which the new version is certainly not current and never will be).
enum Commit {
    /// Our version is current; `replaced` is what it replaced (to be released).
    Applied {
        seq: i64,
        replaced: Option<ObjectRecord>,
    },
    /// The answer was lost and the key has since moved on to a version that is neither ours
    /// nor the one we replaced: ours may have been current for a moment and replaced (and
    /// released) by another writer, or never applied. Either way it can never become current
    /// again; `previous` is the version ours would have replaced.
    Superseded { previous: Option<ObjectRecord> },
    /// The answer was lost and the key could not be read to settle it: our version may be
    /// current, so nothing of it may be released.
    Unknown(MetaError),
}

/// How many times the serial read that settles a lost answer is tried.
const SETTLE_READS: usize = 5;

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
            seq_cell: head_seq,
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
            (bucket_id, key, out.seq()),
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
                out.current_seq = out.seq();
                out.current = Some(current);
                Ok(out)
            }
            None => Err(MetaError::Corrupt(format!(
                "key `{key}`: the current version {head} has no row"
            ))),
        }
    }

    /// Waits until `bucket` is live under the same id and no DeleteBucket is deciding its
    /// fate. A plain quorum read is enough: a DeleteBucket whose mark this read misses had not
    /// finished its mark when the read began, so the pending listing row written before the read
    /// is there when its walk (after the mark) looks.
    /// `NoSuchBucket` when it is gone or was re-created; a retryable error when a delete is
    /// still deciding after [`DELETING_WAIT`].
    pub(super) async fn check_bucket_live(&self, bucket: &BucketRecord) -> Result<()> {
        let deadline = Instant::now() + DELETING_WAIT;
        loop {
            let row: Option<(Option<String>, Option<i64>)> = first(
                &self.session,
                &self.st.bucket_get_live,
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

    /// A commit found the key fenced. A fence is set by a DeleteBucket whose walk found the key
    /// pending; if the bucket is gone (or re-created) the commit fails with `NoSuchBucket`, and
    /// while that DeleteBucket is still deciding, `check_bucket_live` waits. A bucket that is
    /// live and not being deleted means the DeleteBucket did not finish (it found the bucket
    /// not empty but could not lift its fences, or was cut short): the fence is lifted here
    /// (an LWT on it) and the key read again.
    async fn clear_stale_fence(&self, bucket: &BucketRecord, key: &str) -> Result<Head> {
        self.check_bucket_live(bucket).await?;
        lwt(
            &self.session,
            &self.st.object_unfence,
            (&bucket.id, key),
            "lifting a stale fence",
        )
        .await?;
        self.settle(&bucket.id, key).await
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
            head = self.clear_stale_fence(bucket, key).await?;
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
            .commit_head(bucket, shard, &object, manifest, condition, head)
            .await;
        match outcome {
            Ok(Commit::Applied { seq, replaced }) => {
                self.index_put(bucket, shard, &object, seq).await;
                if let Some(old) = &replaced {
                    self.release_version_after_commit(&old.version_id).await;
                }
                Ok(CommitOutcome { replaced })
            }
            Ok(Commit::Superseded { previous }) => {
                // Ours is not current and never will be; whoever replaced it (if it was ever
                // current) released it, and releasing twice is harmless. The same holds for the
                // version ours would have replaced.
                self.discard_version(&object.version_id, manifest).await;
                if let Some(old) = &previous {
                    self.release_version_after_commit(&old.version_id).await;
                }
                match condition {
                    // Last writer wins: a PUT overwritten by a concurrent one within its own
                    // duration is linearizable as done, then replaced.
                    PutCondition::None => Ok(CommitOutcome { replaced: None }),
                    _ => Err(MetaError::Backend(format!(
                        "the conditional commit of `{}` lost its answer and the key changed since; retry",
                        object.key
                    ))),
                }
            }
            Ok(Commit::Unknown(e)) => {
                // Nothing may be released: the version may be current. Leftovers are garbage.
                Err(MetaError::Backend(format!(
                    "the outcome of the commit of `{}` is unknown ({e}); retry",
                    object.key
                )))
            }
            Err(e) => {
                // Not committed: the new version's data is garbage now; released at once so its
                // chunks are not referenced forever.
                self.discard_version(&object.version_id, manifest).await;
                Err(e)
            }
        }
    }

    /// Serial reads of a key until one answers (a lost LWT answer must be settled, not guessed).
    async fn settle(&self, bucket_id: &str, key: &str) -> Result<Head> {
        let mut last = None;
        for attempt in 0..SETTLE_READS {
            match self.read_head(bucket_id, key, true).await {
                Ok(head) => return Ok(head),
                Err(e) => last = Some(e),
            }
            tokio::time::sleep(Duration::from_millis(50 << attempt)).await;
        }
        Err(last.unwrap_or_else(|| MetaError::Backend("no read".into())))
    }

    /// Steps 3 and 4 of a commit: makes `object` the key's current version if `condition`
    /// allows, starting from `head`.
    async fn commit_head(
        &self,
        bucket: &BucketRecord,
        shard: i32,
        object: &ObjectRecord,
        manifest: &[ManifestEntry],
        condition: &PutCondition,
        mut head: Head,
    ) -> Result<Commit> {
        let key = object.key.as_str();
        let record = encode(object)?;
        let inline = encode(&ManifestHead::of(manifest))?;
        let size = to_i64(object.size)?;
        for _ in 0..MAX_CAS_ATTEMPTS {
            let seq = next_seq(head.seq());
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
                head.seq_cell,
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
            let answer_lost = match attempt {
                Ok(outcome) if outcome.applied => {
                    return Ok(Commit::Applied {
                        seq,
                        replaced: head.current,
                    })
                }
                Ok(outcome) if outcome.boolean("fenced") == Some(true) => {
                    // DeleteBucket fenced the key: the bucket is gone or going, or the fence is
                    // a leftover of a DeleteBucket that did not finish.
                    head = self.clear_stale_fence(bucket, key).await?;
                    check_condition(condition, head.current.as_ref())?;
                    continue;
                }
                Ok(_) => false,
                Err(e) => {
                    // A timeout may hide a commit that applied: the serial read below settles
                    // the Paxos round, so the key's state then says whether it did.
                    tracing::warn!(key, error = %e, "commit of an object failed; checking whether it applied");
                    true
                }
            };
            let now = match self.settle(&bucket.id, key).await {
                Ok(now) => now,
                Err(e) if answer_lost => return Ok(Commit::Unknown(e)),
                Err(e) => return Err(e),
            };
            if answer_lost {
                if now.version_id() == Some(object.version_id.as_str()) {
                    // Our commit applied; what it replaced is the state read before.
                    self.settled_by_read
                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    return Ok(Commit::Applied {
                        seq: now.current_seq,
                        replaced: head.current,
                    });
                }
                if !now.same_as(&head) {
                    // The key moved on: ours may have applied and been replaced since. Never
                    // retried under the same version id (it could re-install a released one).
                    return Ok(Commit::Superseded {
                        previous: head.current,
                    });
                }
                // Unchanged: ours did not apply; trying again is safe.
            }
            head = now;
            if head.fenced {
                head = self.clear_stale_fence(bucket, key).await?;
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
            let seq = next_seq(head.seq());
            // Pending first: if this gateway dies between the commit and the index delete, a
            // listing re-reads the key instead of showing a deleted object.
            self.index_mark_pending(bucket, shard, key, &current.version_id, seq - 1)
                .await?;
            let batch =
                self.cas_batch(&[&self.st.object_clear_head, &self.st.object_version_delete]);
            let values = (
                (seq, &bucket.id, key, &current.version_id, head.seq_cell),
                (&bucket.id, key, head.current_seq),
            );
            let answer_lost = match lwt_batch(&self.session, &batch, values, "deleting an object")
                .await
            {
                Ok(outcome) if outcome.applied => {
                    self.index_delete(bucket, shard, key, seq).await;
                    self.release_version_after_commit(&current.version_id).await;
                    return Ok(Some(current));
                }
                Ok(_) => false,
                Err(e) => {
                    tracing::warn!(key, error = %e, "delete of an object failed; checking whether it applied");
                    true
                }
            };
            let now = self.settle(&bucket.id, key).await?;
            if answer_lost {
                if now.current.is_none() && now.seq_cell == Some(seq) {
                    // Our delete applied (only it sets this sequence number).
                    self.index_delete(bucket, shard, key, seq).await;
                    self.release_version_after_commit(&current.version_id).await;
                    return Ok(Some(current));
                }
                if !now.same_as(&head) {
                    // The key moved on: our delete may have applied and a new version come
                    // since. The deleted version is released either way (twice is harmless);
                    // a DELETE answers the same whether or not there was something to delete.
                    self.release_version_after_commit(&current.version_id).await;
                    return Ok(None);
                }
            }
            head = now;
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
