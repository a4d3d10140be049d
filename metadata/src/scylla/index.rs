//! The listing index: one row per key with a current version, in `shard_count` partitions per
//! bucket, written after each commit point (see `objects.rs`) and reconciled on read.
//!
//! # Why the index converges, and what "pending" means
//! Index writes come after the commit, from whichever gateway committed, in any order. Each is
//! written with the commit's sequence number as its Cassandra timestamp (`USING TIMESTAMP`).
//! Sequence numbers of one key strictly increase in commit order (each commit takes one above
//! the key's `head_seq`, under the LWT that orders commits), so whatever order the writes
//! arrive in, the cell with the highest timestamp, the last commit's, wins.
//!
//! Before its commit a writer marks the row `pending` at timestamp `seq - 1`: above every
//! earlier write of the key, below its own index write, which clears the mark. A row still
//! pending therefore means "a commit may or may not have happened here": the writer failed
//! its condition, lost a race, or died between its commit and its index write. Readers do not
//! trust such a row: a listing reads the key's partition (the commit point) for it, and
//! DeleteBucket either finds a current version there or fences the key.
//!
//! # DeleteBucket against a concurrent PUT
//! DeleteBucket first marks the bucket `deleting` (LWT), then walks this index: any row that
//! is not pending, or pending over a current version, makes the bucket not empty; a pending row
//! over a key without a current version gets the key fenced (an LWT on the key's partition,
//! `IF head = null`), after which no commit can apply there. A PUT marks its row pending
//! *before* it checks (serially) that the bucket is not being deleted, so either its check sees
//! the mark and it waits for the delete's outcome, or the delete's walk sees its pending row.
//! Either way an acknowledged PUT is never left in a deleted bucket.

use super::cql::{self, decode, lwt, rows};
use super::listing::{merge_listing, ShardReader, ShardRow};
use super::ScyllaStore;
use crate::{BucketRecord, ListPage, ListQuery, MetaError, ObjectRecord, Result};
use futures::stream::{self, StreamExt, TryStreamExt};

/// `key, pending, format, record` of a listing row.
type ListRow = (String, Option<String>, Option<i32>, Option<String>);

/// How many keys of pending rows a listing re-reads at once.
const RECONCILE_CONCURRENCY: usize = 16;

impl ScyllaStore {
    /// Marks a key's listing row pending before a commit or delete of it (see the module
    /// docs). Fails the operation if it cannot be written: the commit must not happen unseen.
    pub(super) async fn index_mark_pending(
        &self,
        bucket: &BucketRecord,
        shard: i32,
        key: &str,
        version_id: &str,
        timestamp: i64,
    ) -> Result<()> {
        cql::exec(
            &self.session,
            &self.st.listing_pending,
            (timestamp, version_id, &bucket.id, shard, key),
            "marking a listing row pending",
        )
        .await
    }

    /// The listing row of a committed version, at the commit's sequence number. After the
    /// commit point: a failure is logged, and the pending mark left behind makes readers
    /// reconcile the row.
    pub(super) async fn index_put(
        &self,
        bucket: &BucketRecord,
        shard: i32,
        object: &ObjectRecord,
        seq: i64,
    ) {
        let written = async {
            if object.delete_marker {
                // Delete markers are not listed.
                return cql::exec(
                    &self.session,
                    &self.st.listing_delete,
                    (seq, &bucket.id, shard, &object.key),
                    "removing a listing row",
                )
                .await;
            }
            let record = cql::encode(object)?;
            cql::exec(
                &self.session,
                &self.st.listing_put,
                (
                    &bucket.id,
                    shard,
                    &object.key,
                    &object.version_id,
                    cql::FORMAT,
                    &record,
                    seq,
                ),
                "writing a listing row",
            )
            .await
        };
        if let Err(e) = written.await {
            tracing::warn!(key = %object.key, error = %e, "listing row not written after the commit; readers reconcile it from the key");
        }
    }

    /// Removes a deleted key's listing row (at the delete's sequence number). After the commit
    /// point: a failure is logged, the pending mark makes readers reconcile the row.
    pub(super) async fn index_delete(
        &self,
        bucket: &BucketRecord,
        shard: i32,
        key: &str,
        seq: i64,
    ) {
        if let Err(e) = cql::exec(
            &self.session,
            &self.st.listing_delete,
            (seq, &bucket.id, shard, key),
            "removing a listing row",
        )
        .await
        {
            tracing::warn!(key, error = %e, "listing row not removed after the delete; readers reconcile it from the key");
        }
    }

    pub(super) async fn list(&self, bucket: &BucketRecord, query: &ListQuery) -> Result<ListPage> {
        let reader = ObjectShards {
            store: self,
            bucket,
        };
        let page = merge_listing(&reader, bucket.shard_count, query).await?;
        Ok(ListPage {
            objects: page.objects,
            common_prefixes: page.common_prefixes,
            is_truncated: page.is_truncated,
            next_start_after: page.next_start_after,
        })
    }

    /// DeleteBucket's emptiness check, run after the bucket was marked deleting: whether any
    /// key of the bucket has a current version. Keys with only a pending row are then fenced,
    /// so that no commit can apply there afterwards (module docs); if one of them turns out to
    /// have been committed meanwhile, the bucket is not empty and the fences set are lifted.
    pub(super) async fn bucket_has_objects(&self, bucket: &BucketRecord) -> Result<bool> {
        let mut pending = Vec::new();
        for shard in 0..bucket.shard_count.max(1) as i32 {
            let mut rows = cql::scan::<(String, Option<String>)>(
                &self.session,
                &self.st.listing_scan_shard,
                (&bucket.id, shard),
                "checking a bucket is empty",
            )
            .await?;
            while let Some((key, mark)) =
                cql::next_row(&mut rows, "checking a bucket is empty").await?
            {
                if mark.is_none() {
                    return Ok(true);
                }
                pending.push(key);
            }
        }
        let mut fenced = Vec::new();
        let mut found = false;
        for key in pending {
            let outcome = lwt(
                &self.session,
                &self.st.object_fence,
                (&bucket.id, &key),
                "fencing a key",
            )
            .await;
            match outcome {
                Ok(o) if o.applied => fenced.push(key),
                Ok(_) => {
                    // The key has a current version (committed since, or never indexed).
                    found = true;
                    break;
                }
                Err(e) => {
                    self.unfence(bucket, &fenced).await;
                    return Err(e);
                }
            }
        }
        if found {
            self.unfence(bucket, &fenced).await;
        }
        Ok(found)
    }

    /// Lifts the fences a DeleteBucket that did not delete had set (best effort: a key left
    /// fenced refuses commits with `NoSuchBucket`, so failures are logged loudly).
    async fn unfence(&self, bucket: &BucketRecord, keys: &[String]) {
        for key in keys {
            if let Err(e) = lwt(
                &self.session,
                &self.st.object_unfence,
                (&bucket.id, key),
                "lifting a fence",
            )
            .await
            {
                tracing::error!(bucket = %bucket.name, key, error = %e, "could not lift the fence of a key in a bucket that was not deleted; commits to it fail until it is lifted");
            }
        }
    }
}

/// One bucket's index shards, read for the listing merge; pending rows are replaced by what
/// their key's partition holds.
struct ObjectShards<'a> {
    store: &'a ScyllaStore,
    bucket: &'a BucketRecord,
}

impl ShardReader for ObjectShards<'_> {
    type Value = ObjectRecord;

    async fn read(
        &self,
        shard: i32,
        from: &str,
        limit: usize,
    ) -> Result<Vec<ShardRow<ObjectRecord>>> {
        let limit = i32::try_from(limit).unwrap_or(i32::MAX);
        let found: Vec<ListRow> = rows(
            &self.store.session,
            &self.store.st.listing_read,
            (&self.bucket.id, shard, from, limit),
            "listing objects",
        )
        .await?;
        stream::iter(found)
            .map(|(key, pending, format, record)| async move {
                if pending.is_none() {
                    let object: ObjectRecord = decode(format, record.as_deref())?;
                    return Ok((key, Some(object)));
                }
                // Not to be trusted: the key's partition says what is current.
                let current = self
                    .store
                    .read_head(&self.bucket.id, &key, false)
                    .await?
                    .current
                    .filter(|c| !c.delete_marker);
                Ok::<_, MetaError>((key, current))
            })
            .buffered(RECONCILE_CONCURRENCY)
            .try_collect()
            .await
    }
}
