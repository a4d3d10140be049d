//! Buckets, nodes, access keys, leases, settings and statistics: the small tables.

use super::cql::{
    self, admin_state_from_text, admin_state_to_text, decode, encode, exec, first, lwt,
    permission_to_text, versioning_to_text, FORMAT,
};
use super::records::{bucket_from_row, key_from_row, BucketRow, KeyRow};
use super::ScyllaStore;
use crate::{
    AccessKeyRecord, AdminState, BucketRecord, Heartbeat, MetaError, NodeEvent, NodeRecord,
    Permission, Result, StoreStats, VersioningState,
};
use std::collections::BTreeMap;
use std::time::Duration;

/// `node_id, format, heartbeat, first_seen, admin_state`
type NodeRow = (
    String,
    Option<i32>,
    Option<String>,
    Option<i64>,
    Option<String>,
);

fn node_from_row(row: NodeRow) -> Result<Option<NodeRecord>> {
    let (_, format, heartbeat, first_seen, admin_state) = row;
    // A row holding only an admin state (set while the node row was being removed) is no node.
    if heartbeat.is_none() {
        return Ok(None);
    }
    let last: Heartbeat = decode(format, heartbeat.as_deref())?;
    Ok(Some(NodeRecord {
        first_seen: first_seen.unwrap_or(last.at),
        last,
        admin_state: admin_state_from_text(admin_state.as_deref().unwrap_or(""))?,
    }))
}

fn ttl_millis(ttl: Duration) -> i64 {
    i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX / 2)
}

impl ScyllaStore {
    // ----- buckets -----

    pub(super) async fn bucket_create(&self, b: BucketRecord) -> Result<()> {
        let shards = i32::try_from(b.shard_count.max(1))
            .map_err(|_| MetaError::Backend("shard count does not fit a CQL int".into()))?;
        let values = (
            &b.name,
            &b.id,
            b.created,
            &b.owner,
            versioning_to_text(b.versioning),
            shards,
        );
        if lwt(
            &self.session,
            &self.st.bucket_insert,
            values,
            "creating a bucket",
        )
        .await?
        .applied
        {
            Ok(())
        } else {
            Err(MetaError::BucketAlreadyExists(b.name))
        }
    }

    pub(super) async fn bucket(&self, name: &str) -> Result<Option<BucketRecord>> {
        let row: Option<BucketRow> = first(
            &self.session,
            &self.st.bucket_get,
            (name,),
            "reading a bucket",
        )
        .await?;
        let bucket = row.map(bucket_from_row).transpose()?;
        if let Some(b) = &bucket {
            self.remember_bucket(b);
        }
        Ok(bucket)
    }

    pub(super) async fn buckets(&self) -> Result<Vec<BucketRecord>> {
        let mut stream =
            cql::scan::<BucketRow>(&self.session, &self.st.bucket_scan, (), "listing buckets")
                .await?;
        let mut out = Vec::new();
        while let Some(row) = cql::next_row(&mut stream, "listing buckets").await? {
            out.push(bucket_from_row(row)?);
        }
        // The scan is in token order; S3 lists buckets by name.
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    /// DeleteBucket. The bucket is first marked deleting (an LWT): commits and upload
    /// creations that check the bucket after that wait for the outcome, and those that checked
    /// before left a pending listing row or an upload row that the emptiness check below finds
    /// (see `index.rs`). Not empty: the mark is lifted and `BucketNotEmpty` returned.
    pub(super) async fn bucket_delete(&self, name: &str) -> Result<()> {
        let bucket = self
            .bucket(name)
            .await?
            .ok_or_else(|| MetaError::NoSuchBucket(name.to_owned()))?;
        // `IF id = ?` everywhere: a bucket re-created under the same name meanwhile is not
        // ours to touch.
        if !lwt(
            &self.session,
            &self.st.bucket_set_deleting,
            (crate::now_millis(), name, &bucket.id),
            "marking a bucket deleting",
        )
        .await?
        .applied
        {
            return Err(MetaError::NoSuchBucket(name.to_owned()));
        }
        let empty = self.bucket_is_empty(&bucket).await;
        if !matches!(empty, Ok(true)) {
            let unmarked = lwt(
                &self.session,
                &self.st.bucket_set_deleting,
                (0i64, name, &bucket.id),
                "unmarking a bucket deleting",
            )
            .await;
            if let Err(e) = unmarked {
                // Commits treat a mark older than 30 s as stale, so this delays them only.
                tracing::warn!(bucket = name, error = %e, "could not lift the deleting mark of a bucket that was not deleted");
            }
            empty?;
            return Err(MetaError::BucketNotEmpty(name.to_owned()));
        }
        if lwt(
            &self.session,
            &self.st.bucket_delete,
            (name, &bucket.id),
            "deleting a bucket",
        )
        .await?
        .applied
        {
            Ok(())
        } else {
            Err(MetaError::NoSuchBucket(name.to_owned()))
        }
    }

    /// Whether a bucket marked deleting holds no upload and no object (fencing keys whose
    /// commit is pending, see `index.rs`).
    async fn bucket_is_empty(&self, bucket: &BucketRecord) -> Result<bool> {
        Ok(!self.bucket_has_uploads(bucket).await? && !self.bucket_has_objects(bucket).await?)
    }

    pub(super) async fn bucket_set_versioning(
        &self,
        name: &str,
        state: VersioningState,
    ) -> Result<()> {
        let values = (versioning_to_text(state), name);
        if lwt(
            &self.session,
            &self.st.bucket_set_versioning,
            values,
            "setting versioning",
        )
        .await?
        .applied
        {
            Ok(())
        } else {
            Err(MetaError::NoSuchBucket(name.to_owned()))
        }
    }

    // ----- nodes -----

    async fn node(&self, node_id: &str) -> Result<Option<NodeRecord>> {
        let row: Option<NodeRow> = first(
            &self.session,
            &self.st.node_get,
            (node_id,),
            "reading a node",
        )
        .await?;
        Ok(row.map(node_from_row).transpose()?.flatten())
    }

    pub(super) async fn heartbeat(&self, hb: Heartbeat) -> Result<NodeRecord> {
        let existing = self.node(&hb.node_id).await?;
        let text = encode(&hb)?;
        // The heartbeat never writes admin_state, so it cannot undo an admin's Draining.
        let record = match existing {
            Some(old) => {
                exec(
                    &self.session,
                    &self.st.node_heartbeat,
                    (FORMAT, &text, &hb.node_id),
                    "recording a heartbeat",
                )
                .await?;
                NodeRecord {
                    last: hb,
                    first_seen: old.first_seen,
                    admin_state: old.admin_state,
                }
            }
            None => {
                let values = (FORMAT, &text, hb.at, &hb.node_id);
                exec(
                    &self.session,
                    &self.st.node_register,
                    values,
                    "registering a node",
                )
                .await?;
                let admin_state = self
                    .node(&hb.node_id)
                    .await?
                    .map_or(AdminState::Active, |n| n.admin_state);
                NodeRecord {
                    first_seen: hb.at,
                    last: hb,
                    admin_state,
                }
            }
        };
        Ok(record)
    }

    pub(super) async fn nodes(&self) -> Result<Vec<NodeRecord>> {
        let mut stream =
            cql::scan::<NodeRow>(&self.session, &self.st.node_scan, (), "listing nodes").await?;
        let mut out = Vec::new();
        while let Some(row) = cql::next_row(&mut stream, "listing nodes").await? {
            out.extend(node_from_row(row)?);
        }
        out.sort_by(|a, b| a.last.node_id.cmp(&b.last.node_id));
        Ok(out)
    }

    pub(super) async fn node_state(&self, node_id: &str, state: AdminState) -> Result<()> {
        if self.node(node_id).await?.is_none() {
            return Err(MetaError::NoSuchNode(node_id.to_owned()));
        }
        exec(
            &self.session,
            &self.st.node_set_state,
            (admin_state_to_text(state), node_id),
            "setting a node state",
        )
        .await
    }

    pub(super) async fn node_event(&self, event: NodeEvent) -> Result<()> {
        let text = encode(&event)?;
        // Not idempotent in effect (now() makes a new row), but a repeated event is harmless.
        exec(
            &self.session,
            &self.st.node_event_insert,
            (&event.node_id, event.at, FORMAT, &text),
            "recording a node event",
        )
        .await
    }

    pub(super) async fn events(&self, node: Option<&str>, limit: usize) -> Result<Vec<NodeEvent>> {
        let what = "reading node events";
        let mut out: Vec<NodeEvent> = Vec::new();
        let mut stream = match node {
            Some(node) => {
                let limit = i32::try_from(limit).unwrap_or(i32::MAX);
                cql::scan::<(Option<i32>, Option<String>)>(
                    &self.session,
                    &self.st.node_events_of,
                    (node, limit),
                    what,
                )
                .await?
            }
            None => {
                cql::scan::<(Option<i32>, Option<String>)>(
                    &self.session,
                    &self.st.node_events_scan,
                    (),
                    what,
                )
                .await?
            }
        };
        while let Some((format, record)) = cql::next_row(&mut stream, what).await? {
            out.push(decode(format, record.as_deref())?);
        }
        // Partitions come in token order, each newest first: merge by time (stable, so one
        // node's events of one millisecond keep their order).
        out.sort_by_key(|e| std::cmp::Reverse(e.at));
        out.truncate(limit);
        Ok(out)
    }

    // ----- access keys -----

    pub(super) async fn key_create(&self, key: AccessKeyRecord) -> Result<()> {
        let perms: BTreeMap<&str, &str> = key
            .permissions
            .iter()
            .map(|(b, p)| (b.as_str(), permission_to_text(*p)))
            .collect();
        let values = (
            &key.access_key_id,
            &key.secret_key,
            &key.name,
            key.created,
            key.is_root,
            key.can_create_buckets,
            perms,
        );
        if lwt(
            &self.session,
            &self.st.key_insert,
            values,
            "creating an access key",
        )
        .await?
        .applied
        {
            Ok(())
        } else {
            Err(MetaError::KeyAlreadyExists(key.access_key_id))
        }
    }

    pub(super) async fn key(&self, id: &str) -> Result<Option<AccessKeyRecord>> {
        let row: Option<KeyRow> = first(
            &self.session,
            &self.st.key_get,
            (id,),
            "reading an access key",
        )
        .await?;
        row.map(key_from_row).transpose()
    }

    pub(super) async fn keys(&self) -> Result<Vec<AccessKeyRecord>> {
        let mut stream =
            cql::scan::<KeyRow>(&self.session, &self.st.key_scan, (), "listing access keys")
                .await?;
        let mut out = Vec::new();
        while let Some(row) = cql::next_row(&mut stream, "listing access keys").await? {
            out.push(key_from_row(row)?);
        }
        out.sort_by(|a, b| a.access_key_id.cmp(&b.access_key_id));
        Ok(out)
    }

    pub(super) async fn key_delete(&self, id: &str) -> Result<()> {
        if lwt(
            &self.session,
            &self.st.key_delete,
            (id,),
            "deleting an access key",
        )
        .await?
        .applied
        {
            Ok(())
        } else {
            Err(MetaError::NoSuchAccessKey(id.to_owned()))
        }
    }

    pub(super) async fn key_permission(
        &self,
        id: &str,
        bucket: &str,
        p: Option<Permission>,
    ) -> Result<()> {
        let outcome = match p {
            Some(p) => {
                let values = (bucket, permission_to_text(p), id);
                lwt(
                    &self.session,
                    &self.st.key_set_permission,
                    values,
                    "setting a permission",
                )
                .await?
            }
            None => {
                lwt(
                    &self.session,
                    &self.st.key_drop_permission,
                    (bucket, id),
                    "removing a permission",
                )
                .await?
            }
        };
        if outcome.applied {
            Ok(())
        } else {
            Err(MetaError::NoSuchAccessKey(id.to_owned()))
        }
    }

    // ----- leases (protocol in the module docs of scylla.rs) -----

    pub(super) async fn lease_acquire(
        &self,
        name: &str,
        holder: &str,
        ttl: Duration,
    ) -> Result<bool> {
        for _ in 0..super::MAX_CAS_ATTEMPTS {
            let now = crate::now_millis();
            let expires = now.saturating_add(ttl_millis(ttl));
            let insert = lwt(
                &self.session,
                &self.st.lease_insert,
                (name, holder, expires),
                "taking a lease",
            )
            .await?;
            if insert.applied {
                return Ok(true);
            }
            let (Some(seen_holder), Some(seen_expiry)) =
                (insert.text("holder"), insert.bigint("expires_at"))
            else {
                continue; // released between our insert and its read-back: try again
            };
            if seen_holder == holder {
                return self.lease_renew(name, holder, ttl).await;
            }
            if seen_expiry > now {
                return Ok(false); // held by someone else, not expired (same rule as embedded)
            }
            let values = (holder, expires, name, &seen_holder, seen_expiry);
            let take = lwt(
                &self.session,
                &self.st.lease_take,
                values,
                "taking an expired lease",
            )
            .await?;
            // Not applied: another gateway took it, or the holder renewed it; look again.
            if take.applied {
                return Ok(true);
            }
        }
        Ok(false)
    }

    pub(super) async fn lease_renew(
        &self,
        name: &str,
        holder: &str,
        ttl: Duration,
    ) -> Result<bool> {
        let expires = crate::now_millis().saturating_add(ttl_millis(ttl));
        // Only the holder's own row matches; an expired lease nobody took is still ours.
        Ok(lwt(
            &self.session,
            &self.st.lease_renew,
            (expires, name, holder),
            "renewing a lease",
        )
        .await?
        .applied)
    }

    pub(super) async fn lease_release(&self, name: &str, holder: &str) -> Result<()> {
        lwt(
            &self.session,
            &self.st.lease_release,
            (name, holder),
            "releasing a lease",
        )
        .await?;
        Ok(())
    }

    // ----- settings -----

    pub(super) async fn setting_init(&self, name: &str, value: &str) -> Result<String> {
        let outcome = lwt(
            &self.session,
            &self.st.setting_init,
            (name, value),
            "initialising a setting",
        )
        .await?;
        if outcome.applied {
            return Ok(value.to_owned());
        }
        if let Some(stored) = outcome.text("value") {
            return Ok(stored);
        }
        // Servers that return no row values on a failed IF NOT EXISTS: read it linearizably.
        let row: Option<(Option<String>,)> = first(
            &self.session,
            &self.st.setting_get_serial,
            (name,),
            "reading a setting",
        )
        .await?;
        row.and_then(|(v,)| v)
            .ok_or_else(|| MetaError::Backend(format!("setting `{name}` vanished")))
    }

    pub(super) async fn setting(&self, name: &str) -> Result<Option<String>> {
        let row: Option<(Option<String>,)> = first(
            &self.session,
            &self.st.setting_get,
            (name,),
            "reading a setting",
        )
        .await?;
        Ok(row.and_then(|(v,)| v))
    }

    // ----- statistics: full paged scans, see "Costs to know" -----

    pub(super) async fn statistics(&self) -> Result<StoreStats> {
        let mut stats = StoreStats {
            buckets: self.buckets().await?.len() as u64,
            ..Default::default()
        };
        // Version rows: only the current version of each key counts (static-only rows of keys
        // without a current version have no version id).
        let mut objects = cql::scan::<(Option<String>, Option<String>, Option<i64>, Option<bool>)>(
            &self.session,
            &self.st.object_stats_scan,
            (),
            "counting objects",
        )
        .await?;
        while let Some((head, version, size, marker)) =
            cql::next_row(&mut objects, "counting objects").await?
        {
            if version.is_some() && head == version && marker != Some(true) {
                stats.objects += 1;
                stats.object_bytes += size.unwrap_or(0).max(0) as u64;
            }
        }
        let mut chunks = cql::scan::<(Option<i64>,)>(
            &self.session,
            &self.st.chunk_stats_scan,
            (),
            "counting chunks",
        )
        .await?;
        while let Some((size,)) = cql::next_row(&mut chunks, "counting chunks").await? {
            stats.chunks += 1;
            stats.chunk_bytes += size.unwrap_or(0).max(0) as u64;
        }
        Ok(stats)
    }
}
