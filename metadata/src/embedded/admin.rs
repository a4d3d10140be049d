//! Write operations on the small tables: buckets, chunk replicas, nodes, access keys, leases
//! and settings. Each checks before it writes (see `writer.rs`: a refusal writes nothing).

use super::codec::*;
use super::tables::{get, put, Tables};
use super::writer::{refuse, OpResult};
use crate::{
    AccessKeyRecord, AdminState, BucketRecord, ChunkId, Heartbeat, MetaError, NodeEvent,
    NodeRecord, Permission, VersioningState,
};
use redb::ReadableTable;
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// A row of the `leases` table.
#[derive(Serialize, Deserialize)]
pub(crate) struct Lease {
    pub holder: String,
    pub expires: i64,
}

pub(crate) fn create_bucket(t: &mut Tables<'_>, b: &BucketRecord) -> OpResult<()> {
    if t.buckets.get(b.name.as_bytes()).map_err(backend)?.is_some() {
        return refuse(MetaError::BucketAlreadyExists(b.name.clone()));
    }
    put(&mut t.buckets, b.name.as_bytes(), b)?;
    Ok(())
}

fn has_rows_under(
    table: &impl ReadableTable<&'static [u8], &'static [u8]>,
    prefix: &[u8],
) -> crate::Result<bool> {
    let end = prefix_successor(prefix).unwrap_or_default();
    let mut r = table
        .range::<&[u8]>(prefix..end.as_slice())
        .map_err(backend)?;
    Ok(r.next().is_some())
}

pub(crate) fn delete_bucket(t: &mut Tables<'_>, name: &str) -> OpResult<()> {
    let Some(b) = get::<BucketRecord>(&t.buckets, name.as_bytes(), "bucket")? else {
        return refuse(MetaError::NoSuchBucket(name.to_string()));
    };
    let prefix = bucket_prefix(&b.id);
    if has_rows_under(&t.objects, &prefix)? || has_rows_under(&t.uploads, &prefix)? {
        return refuse(MetaError::BucketNotEmpty(name.to_string()));
    }
    t.buckets.remove(name.as_bytes()).map_err(backend)?;
    Ok(())
}

pub(crate) fn set_versioning(
    t: &mut Tables<'_>,
    name: &str,
    state: VersioningState,
) -> OpResult<()> {
    let Some(mut b) = get::<BucketRecord>(&t.buckets, name.as_bytes(), "bucket")? else {
        return refuse(MetaError::NoSuchBucket(name.to_string()));
    };
    b.versioning = state;
    put(&mut t.buckets, name.as_bytes(), &b)?;
    Ok(())
}

pub(crate) fn delete_chunk_if_unreferenced(t: &mut Tables<'_>, id: &ChunkId) -> OpResult<bool> {
    match t.get_chunk(id)? {
        Some(rec) if rec.ref_count == 0 => {
            t.remove_chunk(&rec)?;
            Ok(true)
        }
        _ => Ok(false),
    }
}

pub(crate) fn record_heartbeat(t: &mut Tables<'_>, hb: Heartbeat) -> OpResult<NodeRecord> {
    let key = hb.node_id.clone();
    let rec = match get::<NodeRecord>(&t.nodes, key.as_bytes(), "node")? {
        Some(mut r) => {
            r.last = hb;
            r
        }
        None => NodeRecord {
            first_seen: hb.at,
            last: hb,
            admin_state: AdminState::Active,
        },
    };
    put(&mut t.nodes, key.as_bytes(), &rec)?;
    Ok(rec)
}

pub(crate) fn set_node_state(t: &mut Tables<'_>, node: &str, state: AdminState) -> OpResult<()> {
    let Some(mut r) = get::<NodeRecord>(&t.nodes, node.as_bytes(), "node")? else {
        return refuse(MetaError::NoSuchNode(node.to_string()));
    };
    r.admin_state = state;
    put(&mut t.nodes, node.as_bytes(), &r)?;
    Ok(())
}

/// Appends an event under (node, time, sequence): the sequence keeps two events of one
/// millisecond apart, and makes the node's history read back in the order it was written.
pub(crate) fn record_node_event(t: &mut Tables<'_>, event: &NodeEvent) -> OpResult<()> {
    let prefix = join(&event.node_id, &(event.at.max(0) as u64).to_be_bytes());
    let end = prefix_successor(&prefix).unwrap_or_default();
    let next = match t
        .node_events
        .range(prefix.as_slice()..end.as_slice())
        .map_err(backend)?
        .next_back()
    {
        Some(row) => {
            let (k, _) = row.map_err(backend)?;
            let key = k.value();
            let mut seq = [0u8; 8];
            seq.copy_from_slice(&key[key.len() - 8..]);
            u64::from_be_bytes(seq) + 1
        }
        None => 0,
    };
    let mut key = prefix;
    key.extend_from_slice(&next.to_be_bytes());
    put(&mut t.node_events, &key, event)?;
    Ok(())
}

pub(crate) fn create_access_key(t: &mut Tables<'_>, k: &AccessKeyRecord) -> OpResult<()> {
    let id = k.access_key_id.as_bytes();
    if t.access_keys.get(id).map_err(backend)?.is_some() {
        return refuse(MetaError::KeyAlreadyExists(k.access_key_id.clone()));
    }
    put(&mut t.access_keys, id, k)?;
    Ok(())
}

pub(crate) fn delete_access_key(t: &mut Tables<'_>, id: &str) -> OpResult<()> {
    if t.access_keys
        .remove(id.as_bytes())
        .map_err(backend)?
        .is_none()
    {
        return refuse(MetaError::NoSuchAccessKey(id.to_string()));
    }
    Ok(())
}

pub(crate) fn set_permission(
    t: &mut Tables<'_>,
    id: &str,
    bucket: &str,
    permission: Option<Permission>,
) -> OpResult<()> {
    let Some(mut k) = get::<AccessKeyRecord>(&t.access_keys, id.as_bytes(), "access key")? else {
        return refuse(MetaError::NoSuchAccessKey(id.to_string()));
    };
    match permission {
        Some(p) => k.permissions.insert(bucket.to_string(), p),
        None => k.permissions.remove(bucket),
    };
    put(&mut t.access_keys, id.as_bytes(), &k)?;
    Ok(())
}

fn ttl_millis(ttl: Duration) -> i64 {
    i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX)
}

/// Takes the lease if free, expired, or ours. The single writer makes check-and-set atomic.
pub(crate) fn acquire_lease(
    t: &mut Tables<'_>,
    name: &str,
    holder: &str,
    ttl: Duration,
) -> OpResult<bool> {
    let cur: Option<Lease> = get(&t.leases, name.as_bytes(), "lease")?;
    if let Some(l) = cur {
        if l.holder != holder && l.expires > t.now {
            return Ok(false);
        }
    }
    let lease = Lease {
        holder: holder.to_string(),
        expires: t.now.saturating_add(ttl_millis(ttl)),
    };
    put(&mut t.leases, name.as_bytes(), &lease)?;
    Ok(true)
}

/// Extends the lease if the row still names us. Nobody else can have held it since our last
/// acquire or renew: taking it would have replaced the holder.
pub(crate) fn renew_lease(
    t: &mut Tables<'_>,
    name: &str,
    holder: &str,
    ttl: Duration,
) -> OpResult<bool> {
    match get::<Lease>(&t.leases, name.as_bytes(), "lease")? {
        Some(l) if l.holder == holder => {
            let lease = Lease {
                holder: l.holder,
                expires: t.now.saturating_add(ttl_millis(ttl)),
            };
            put(&mut t.leases, name.as_bytes(), &lease)?;
            Ok(true)
        }
        _ => Ok(false),
    }
}

pub(crate) fn release_lease(t: &mut Tables<'_>, name: &str, holder: &str) -> OpResult<()> {
    if let Some(l) = get::<Lease>(&t.leases, name.as_bytes(), "lease")? {
        if l.holder == holder {
            t.leases.remove(name.as_bytes()).map_err(backend)?;
        }
    }
    Ok(())
}

pub(crate) fn setting_get_or_init(t: &mut Tables<'_>, name: &str, value: &str) -> OpResult<String> {
    if let Some(v) = get::<String>(&t.settings, name.as_bytes(), "setting")? {
        return Ok(v);
    }
    put(&mut t.settings, name.as_bytes(), &value.to_string())?;
    Ok(value.to_string())
}
