//! Multipart uploads: upload rows, part rows (each part upload holds its own chunk refs,
//! `part/<upload id>/<number>/<nonce>`), listing uploads with delimiter folding, completion
//! (a commit whose manifest is the parts' chunks, no data copied) and abort.

use super::cql::{self, decode, encode, exec, first, lwt, FORMAT};
use super::{ScyllaStore, MAX_CAS_ATTEMPTS};
use crate::{
    BucketRecord, CommitOutcome, ManifestEntry, MetaError, ObjectRecord, PartRecord, PutCondition,
    Result, UploadRecord,
};
use std::collections::BTreeMap;
use std::hash::{BuildHasher, RandomState};
use std::sync::Arc;

/// A random token naming one request's claim on an upload's state.
fn random_token() -> i64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    // RandomState is seeded from the OS; the clock separates claims within a process.
    RandomState::new().hash_one(nanos) as i64
}

/// A request's hold on an upload's state (`completing` or `aborting`). Dropped before
/// [`UploadClaim::finished`], it puts the upload back to `open` if the state is still its own
/// (an LWT on the token, sent from a task of its own since `Drop` cannot wait): the
/// completion or abort did not finish, and the client's retry must find the upload usable. A
/// finished operation has deleted the partition, which the revert's condition then misses.
struct UploadClaim {
    session: Arc<::scylla::client::session::Session>,
    revert: ::scylla::statement::prepared::PreparedStatement,
    upload_id: String,
    state: &'static str,
    token: i64,
    armed: bool,
}

impl UploadClaim {
    fn finished(mut self) {
        self.armed = false;
    }
}

impl Drop for UploadClaim {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            tracing::warn!(upload_id = %self.upload_id, "no runtime to reopen an unfinished upload; it stays {}", self.state);
            return;
        };
        let (session, revert) = (Arc::clone(&self.session), self.revert.clone());
        let (upload_id, state, token) = (self.upload_id.clone(), self.state, self.token);
        runtime.spawn(async move {
            let values = (upload_id.as_str(), state, token);
            if let Err(e) = lwt(&session, &revert, values, "reopening an upload").await {
                tracing::warn!(upload_id, error = %e, "could not reopen an upload whose completion or abort did not finish");
            }
        });
    }
}

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

/// `number, ref_id, format, record` of a part row.
type PartRow = (i32, Option<String>, Option<i32>, Option<String>);

impl ScyllaStore {
    /// CreateMultipartUpload: the upload's state row (`open`), then its listing row, then the
    /// bucket check, in this order so that a DeleteBucket racing it either is seen by the check
    /// or finds the upload row (the same argument as for object commits, `index.rs`).
    pub(super) async fn insert_upload(
        &self,
        bucket: &BucketRecord,
        upload: &UploadRecord,
    ) -> Result<()> {
        if !lwt(
            &self.session,
            &self.st.upload_open,
            (&upload.upload_id,),
            "opening an upload",
        )
        .await?
        .applied
        {
            return Err(MetaError::Backend(format!(
                "upload id `{}` is already in use",
                upload.upload_id
            )));
        }
        self.upload_row_insert(bucket, upload, encode(upload)?)
            .await?;
        if let Err(e) = self.check_bucket_live(bucket).await {
            let _ = self
                .drop_upload(bucket, &upload.key, &upload.upload_id, Vec::new())
                .await;
            return Err(e);
        }
        Ok(())
    }

    /// UploadPart's commit: the part's refs, then the part row by an LWT that requires the
    /// upload to be `open` and the part's previous `ref_id` to be the one read, so of two
    /// uploads of one part number exactly one wins and each releases what it replaced (or,
    /// losing to completion or abort, its own refs).
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
        if let Err(e) = self
            .write_version_data(&ref_id, None, &part.chunks, &placements)
            .await
        {
            // Nothing points at this upload of the part: its refs are released at once.
            let _ = self.release_refs(&ref_id, &part.chunks).await;
            return Err(e);
        }
        let number = part_number(part.number);
        let record = encode(&part)?;
        // First guess: a new part number. When that is wrong, the row is read serially and
        // the LWT retried against what it holds.
        let mut old: Option<(String, PartRecord)> = None;
        for _ in 0..MAX_CAS_ATTEMPTS {
            let old_ref = old.as_ref().map(|(r, _)| r.as_str());
            let values = (&ref_id, FORMAT, &record, upload_id, number, old_ref);
            let outcome = lwt(
                &self.session,
                &self.st.part_record,
                values,
                "recording a part",
            )
            .await;
            let open = match outcome {
                Ok(o) if o.applied => {
                    self.release_replaced_part(old.as_ref()).await;
                    return Ok(());
                }
                Ok(o) => o.text("state").as_deref() == Some("open"),
                Err(e) => {
                    // It may have applied: the serial read below says.
                    tracing::warn!(upload_id, number, error = %e, "recording a part failed; checking whether it applied");
                    true
                }
            };
            let current = if open {
                self.part_row(upload_id, number).await?
            } else {
                None
            };
            if let Some((current_ref, _)) = &current {
                if *current_ref == ref_id {
                    self.release_replaced_part(old.as_ref()).await;
                    return Ok(());
                }
            }
            if !open || !self.upload_is_open(upload_id).await? {
                self.release_refs(&ref_id, &part.chunks).await?;
                return Err(MetaError::NoSuchUpload(upload_id.to_owned()));
            }
            old = current;
        }
        self.release_refs(&ref_id, &part.chunks).await?;
        Err(MetaError::Backend(format!(
            "gave up recording part {} after {MAX_CAS_ATTEMPTS} attempts: other uploads of it keep replacing it",
            part.number
        )))
    }

    /// The upload's state and the token of the request that set it (serial read; `None`
    /// when the upload is gone).
    async fn upload_state(&self, upload_id: &str) -> Result<Option<(String, i64)>> {
        let row: Option<(Option<String>, Option<i64>)> = first(
            &self.session,
            &self.st.upload_state,
            (upload_id,),
            "reading an upload's state",
        )
        .await?;
        Ok(row.and_then(|(state, token)| Some((state?, token.unwrap_or(0)))))
    }

    /// Whether the upload's state is `open` (serial read).
    async fn upload_is_open(&self, upload_id: &str) -> Result<bool> {
        Ok(matches!(self.upload_state(upload_id).await?, Some((state, _)) if state == "open"))
    }

    /// Releases the refs of the part upload a new one replaced (after the replacement
    /// committed: a failure leaves garbage, never a dangling part).
    async fn release_replaced_part(&self, old: Option<&(String, PartRecord)>) {
        if let Some((old_ref, old_part)) = old {
            if let Err(e) = self.release_refs(old_ref, &old_part.chunks).await {
                tracing::warn!(error = %e, "could not release a replaced part's refs (garbage, not data loss)");
            }
        }
    }

    /// A part row's ref id and record, read serially (`None` when the part has no row).
    async fn part_row(&self, upload_id: &str, number: i32) -> Result<Option<(String, PartRecord)>> {
        let row: Option<(Option<String>, Option<i32>, Option<String>)> = first(
            &self.session,
            &self.st.part_get,
            (upload_id, number),
            "reading a part",
        )
        .await?;
        match row {
            Some((Some(ref_id), format, record)) => {
                Ok(Some((ref_id, decode(format, record.as_deref())?)))
            }
            _ => Ok(None),
        }
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
            let Some((_, ref_id, format, record)) =
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

    /// CompleteMultipartUpload, as one unit: the upload moves from `open` to `completing` by
    /// an LWT first (a second completion, an abort or a late part upload then fails), the parts
    /// read after that are final, the object is committed, and only then are the parts
    /// released. If the commit is refused (a condition, a missing part, the bucket gone) the
    /// upload is put back to `open` so the client may retry.
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
        let claim = self.claim_upload(upload_id, "completing").await?;
        // From here on, an early return or a dropped request puts the upload back to `open`
        // (the claim's drop): a refused commit (condition, missing part, bucket gone) can be
        // retried by the client.
        let (outcome, parts) = self
            .complete_locked(bucket, upload_id, object, part_numbers, condition)
            .await?;
        if let Err(e) = self.drop_upload(bucket, &key, upload_id, parts).await {
            tracing::warn!(upload_id, error = %e, "upload completed but its parts were not all released (garbage, not data loss)");
        }
        claim.finished();
        Ok(outcome)
    }

    /// The part of `complete` that runs while the upload is `completing`.
    async fn complete_locked(
        &self,
        bucket: &BucketRecord,
        upload_id: &str,
        object: ObjectRecord,
        part_numbers: &[u32],
        condition: PutCondition,
    ) -> Result<(CommitOutcome, Vec<(String, PartRecord)>)> {
        let key = object.key.clone();
        let parts = self.parts(upload_id, 0, usize::MAX).await?;
        let by_number: BTreeMap<u32, &PartRecord> =
            parts.iter().map(|(_, p)| (p.number, p)).collect();
        let mut manifest: Vec<ManifestEntry> = Vec::new();
        for n in part_numbers {
            let Some(part) = by_number.get(n) else {
                // Report what the embedded backend reports first: a missing bucket or a failed
                // condition before an invalid part (checked only on this error path).
                self.check_bucket_live(bucket).await?;
                let current = self.current_object(bucket, &key).await?;
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
        Ok((outcome, parts))
    }

    /// Moves an upload from `open` to `to` (LWT), under a token of this request;
    /// `NoSuchUpload` when it is not `open` (completed, aborted, or being completed or aborted
    /// by another request). A lost answer is settled by a serial read of the state and token.
    /// The claim puts the upload back to `open` when it is dropped unfinished: a request
    /// refused, failed, or cut short (a client that hangs up makes the server drop it) never
    /// leaves the upload stuck for the client's retry.
    async fn claim_upload(&self, upload_id: &str, to: &'static str) -> Result<UploadClaim> {
        // The claim exists before the LWT is sent: a request dropped while the LWT is in
        // flight still reverts it if it applied (the revert's condition names the token).
        let mut claim = UploadClaim {
            session: Arc::clone(&self.session),
            revert: self.st.upload_revert.clone(),
            upload_id: upload_id.to_owned(),
            state: to,
            token: random_token(),
            armed: true,
        };
        let values = (to, claim.token, upload_id, "open");
        let applied = match lwt(
            &self.session,
            &self.st.upload_set_state,
            values,
            "changing an upload's state",
        )
        .await
        {
            Ok(outcome) => outcome.applied,
            Err(e) => {
                tracing::warn!(upload_id, error = %e, "changing an upload's state failed; checking whether it applied");
                self.upload_state(upload_id).await? == Some((to.to_owned(), claim.token))
            }
        };
        if !applied {
            claim.armed = false;
            return Err(MetaError::NoSuchUpload(upload_id.to_owned()));
        }
        Ok(claim)
    }

    pub(super) async fn abort(
        &self,
        bucket: &BucketRecord,
        key: &str,
        upload_id: &str,
    ) -> Result<()> {
        self.upload(bucket, key, upload_id).await?;
        let claim = self.claim_upload(upload_id, "aborting").await?;
        let parts = self.parts(upload_id, 0, usize::MAX).await?;
        self.drop_upload(bucket, key, upload_id, parts).await?;
        claim.finished();
        Ok(())
    }

    /// Releases the parts' refs, then deletes the upload row (the upload is then gone from
    /// every read path) and last the parts partition (with its state: an unfinished claim's
    /// revert then finds nothing to reopen). Each step is idempotent, so a retry redoes it.
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
        self.upload_row_delete(bucket, key, upload_id).await?;
        exec(
            &self.session,
            &self.st.parts_delete,
            (upload_id,),
            "deleting parts",
        )
        .await
    }
}
