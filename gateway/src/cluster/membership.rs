//! Cluster membership: which chunkd nodes exist and whether they are Up, Suspect or Down.
//!
//! chunkd nodes POST a heartbeat to the admin port every couple of seconds (`admin.rs`). The
//! first heartbeat registers a node (no manual step); every heartbeat is recorded in the
//! metadata store (`record_heartbeat`), so several gateways sharing one store see the same
//! nodes: each gateway keeps an in-memory copy of the `nodes` table, updated by the heartbeats
//! it receives itself and refreshed from the store every second for the ones other gateways
//! received.
//!
//! Health is derived, never stored: from the age of the last heartbeat, a node is Up, Suspect
//! after three missed heartbeat intervals, and Down after `node_down_after`. Only Up nodes
//! receive new chunks (Suspect ones only when no Up node is left to try); a Down node receives
//! none. Draining and Removed are set by an administrator and also exclude a node from new
//! chunks; reads still use any node that answers. The life cycle state shown to users
//! ([`LifecycleState`]) is the administrator's state when there is one, the derived health
//! otherwise; its changes are logged in the metadata store by `cluster::monitor`.
//!
//! A replica counts toward a chunk's redundancy only on a *healthy* node: Active, not Down,
//! and not waiting for an audit. A node that comes back from Down waits for one
//! (`cluster::audit`): its chunks count again once they are verified present.

use sdfbs_metadata::{
    now_millis, AdminState, Heartbeat, LifecycleState, MetaError, MetadataStore, NodeRecord,
};
use serde::Serialize;
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, RwLock};
use std::time::Duration;
use tokio::sync::watch;

/// How often the in-memory view is re-read from the metadata store.
const REFRESH_EVERY: Duration = Duration::from_secs(1);

/// Health of a node, derived from the age of its last heartbeat.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum NodeState {
    Up,
    Suspect,
    Down,
}

/// A node as the pipeline and the admin API see it.
#[derive(Clone, Debug, Serialize)]
pub struct NodeView {
    pub node_id: String,
    pub address: String,
    pub zone: String,
    pub capacity_bytes: u64,
    pub used_bytes: u64,
    pub chunk_count: u64,
    pub corrupt_chunks: u64,
    /// Milliseconds since the last heartbeat.
    pub heartbeat_age_ms: i64,
    pub state: NodeState,
    pub admin_state: AdminState,
    /// Up, Suspect, Down, Draining or Removed.
    pub lifecycle: LifecycleState,
    /// Whether its replicas wait for an audit before they count again (back from Down).
    pub awaiting_audit: bool,
}

impl NodeView {
    /// Whether the node may be given new chunks right now (Up or Suspect, not Draining/Removed).
    pub fn accepts_new_chunks(&self) -> bool {
        self.admin_state == AdminState::Active && self.state != NodeState::Down
    }

    /// Whether a replica on this node counts toward a chunk's redundancy: Active, not Down,
    /// and verified since it last came back.
    pub fn is_healthy(&self) -> bool {
        self.accepts_new_chunks() && !self.awaiting_audit
    }

    /// Free bytes as last reported (placement weighs nodes by it).
    pub fn free_bytes(&self) -> u64 {
        self.capacity_bytes.saturating_sub(self.used_bytes)
    }
}

/// The life cycle state of a node: the administrator's Draining or Removed when set, the
/// heartbeat-derived health otherwise.
pub fn lifecycle(admin: AdminState, health: NodeState) -> LifecycleState {
    match (admin, health) {
        (AdminState::Removed, _) => LifecycleState::Removed,
        (AdminState::Draining, _) => LifecycleState::Draining,
        (AdminState::Active, NodeState::Up) => LifecycleState::Up,
        (AdminState::Active, NodeState::Suspect) => LifecycleState::Suspect,
        (AdminState::Active, NodeState::Down) => LifecycleState::Down,
    }
}

/// Timing of the state derivation.
#[derive(Clone, Copy, Debug)]
pub struct MembershipConfig {
    /// The interval chunkd nodes heartbeat at (Suspect after 3 of them are missed).
    pub heartbeat_interval: Duration,
    /// Silence after which a node is Down.
    pub node_down_after: Duration,
}

impl Default for MembershipConfig {
    fn default() -> Self {
        MembershipConfig {
            heartbeat_interval: Duration::from_secs(2),
            node_down_after: Duration::from_secs(10),
        }
    }
}

/// The gateway's view of the nodes.
pub struct Membership {
    meta: Arc<dyn MetadataStore>,
    config: MembershipConfig,
    nodes: RwLock<HashMap<String, NodeRecord>>,
    /// Nodes back from Down whose replicas do not count until an audit verified them.
    awaiting_audit: RwLock<HashSet<String>>,
}

impl Membership {
    pub fn new(meta: Arc<dyn MetadataStore>, config: MembershipConfig) -> Membership {
        Membership {
            meta,
            config,
            nodes: RwLock::new(HashMap::new()),
            awaiting_audit: RwLock::new(HashSet::new()),
        }
    }

    /// Marks a node's replicas as unverified (it came back from Down) or verified again.
    pub fn set_awaiting_audit(&self, node_id: &str, awaiting: bool) {
        let mut set = self
            .awaiting_audit
            .write()
            .unwrap_or_else(|e| e.into_inner());
        if awaiting {
            set.insert(node_id.to_string());
        } else {
            set.remove(node_id);
        }
    }

    /// Changes a node's administrative state in the store and in this view at once (so the
    /// gateway that served the request acts on it without waiting for the next refresh).
    pub async fn set_admin_state(&self, node_id: &str, state: AdminState) -> Result<(), MetaError> {
        self.meta.set_node_state(node_id, state).await?;
        let mut nodes = self.nodes.write().unwrap_or_else(|e| e.into_inner());
        if let Some(record) = nodes.get_mut(node_id) {
            record.admin_state = state;
        }
        Ok(())
    }

    pub fn config(&self) -> MembershipConfig {
        self.config
    }

    /// Records a heartbeat (registering the node if it is new) in the store and the local view.
    pub async fn record_heartbeat(&self, hb: Heartbeat) -> Result<NodeRecord, MetaError> {
        let record = self.meta.record_heartbeat(hb).await?;
        let mut nodes = self.nodes.write().unwrap_or_else(|e| e.into_inner());
        if record.first_seen == record.last.at {
            tracing::info!(node_id = %record.last.node_id, address = %record.last.address,
                zone = %record.last.zone, "node registered");
        }
        nodes.insert(record.last.node_id.clone(), record.clone());
        Ok(record)
    }

    /// Re-reads every node from the metadata store (heartbeats other gateways received).
    pub async fn refresh(&self) -> Result<(), MetaError> {
        let list = self.meta.list_nodes().await?;
        let mut nodes = self.nodes.write().unwrap_or_else(|e| e.into_inner());
        for record in list {
            // Keep whichever copy has the newer heartbeat: one received here a moment ago may
            // not be visible in a replicated store yet.
            match nodes.get_mut(&record.last.node_id) {
                Some(mine) if mine.last.at > record.last.at => {
                    mine.admin_state = record.admin_state;
                }
                _ => {
                    nodes.insert(record.last.node_id.clone(), record);
                }
            }
        }
        Ok(())
    }

    /// Refreshes the view every second until `stop` turns true.
    pub fn spawn_refresher(
        self: &Arc<Self>,
        mut stop: watch::Receiver<bool>,
    ) -> tokio::task::JoinHandle<()> {
        let me = Arc::clone(self);
        tokio::spawn(async move {
            loop {
                if let Err(e) = me.refresh().await {
                    tracing::warn!(error = %e, "cannot refresh the node list from metadata");
                }
                tokio::select! {
                    _ = tokio::time::sleep(REFRESH_EVERY) => {}
                    _ = stop.wait_for(|s| *s) => return,
                }
            }
        })
    }

    /// Every known node (Removed ones excluded), ordered by node id.
    pub fn nodes(&self) -> Vec<NodeView> {
        let mut out = self.all_nodes();
        out.retain(|n| n.admin_state != AdminState::Removed);
        out
    }

    /// Every known node, Removed ones included, ordered by node id.
    pub fn all_nodes(&self) -> Vec<NodeView> {
        let now = now_millis();
        let nodes = self.nodes.read().unwrap_or_else(|e| e.into_inner());
        let mut out: Vec<NodeView> = nodes.values().map(|r| self.view(r, now)).collect();
        out.sort_by(|a, b| a.node_id.cmp(&b.node_id));
        out
    }

    /// One node, if known.
    pub fn node(&self, node_id: &str) -> Option<NodeView> {
        let nodes = self.nodes.read().unwrap_or_else(|e| e.into_inner());
        nodes.get(node_id).map(|r| self.view(r, now_millis()))
    }

    fn view(&self, r: &NodeRecord, now: i64) -> NodeView {
        let age = (now - r.last.at).max(0);
        let state = derive_state(age, self.config);
        let awaiting_audit = self
            .awaiting_audit
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .contains(&r.last.node_id);
        NodeView {
            node_id: r.last.node_id.clone(),
            address: r.last.address.clone(),
            zone: r.last.zone.clone(),
            capacity_bytes: r.last.capacity_bytes,
            used_bytes: r.last.used_bytes,
            chunk_count: r.last.chunk_count,
            corrupt_chunks: r.last.corrupt_chunks,
            heartbeat_age_ms: age,
            state,
            admin_state: r.admin_state,
            lifecycle: lifecycle(r.admin_state, state),
            awaiting_audit,
        }
    }
}

/// Up / Suspect (3 missed intervals) / Down (silent longer than `node_down_after`).
pub fn derive_state(age_ms: i64, config: MembershipConfig) -> NodeState {
    let age = Duration::from_millis(age_ms.max(0) as u64);
    if age > config.node_down_after {
        NodeState::Down
    } else if age > config.heartbeat_interval * 3 {
        NodeState::Suspect
    } else {
        NodeState::Up
    }
}

/// Converts what chunkd sends into the record the metadata store keeps, stamped now.
pub fn heartbeat_record(hb: chunkd::wire::Heartbeat) -> Heartbeat {
    Heartbeat {
        node_id: hb.health.node_id,
        address: hb.address.trim_end_matches('/').to_string(),
        zone: hb.health.zone,
        capacity_bytes: hb.health.capacity_bytes,
        used_bytes: hb.health.used_bytes,
        chunk_count: hb.health.chunk_count,
        corrupt_chunks: hb.health.corrupt_chunks,
        at: now_millis(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_follow_heartbeat_age() {
        let c = MembershipConfig {
            heartbeat_interval: Duration::from_secs(2),
            node_down_after: Duration::from_secs(10),
        };
        assert_eq!(derive_state(0, c), NodeState::Up);
        assert_eq!(derive_state(6_000, c), NodeState::Up);
        assert_eq!(derive_state(6_001, c), NodeState::Suspect);
        assert_eq!(derive_state(10_000, c), NodeState::Suspect);
        assert_eq!(derive_state(10_001, c), NodeState::Down);
        // A clock step backwards never makes a node look older.
        assert_eq!(derive_state(-5_000, c), NodeState::Up);
    }
}
