//! Cluster membership: which chunkd nodes exist and whether they are Up, Suspect or Down.
//!
//! chunkd nodes POST a heartbeat to the admin port every couple of seconds (`admin.rs`). The
//! first heartbeat registers a node (no manual step); every heartbeat is recorded in the
//! metadata store (`record_heartbeat`), so several gateways sharing one store see the same
//! nodes: each gateway keeps an in-memory copy of the `nodes` table, updated by the heartbeats
//! it receives itself and refreshed from the store every second for the ones other gateways
//! received.
//!
//! States are derived, never stored: from the age of the last heartbeat, a node is Up, Suspect
//! after three missed heartbeat intervals, and Down after `node_down_after`. Only Up nodes
//! receive new chunks (Suspect ones only when no Up node is left to try); a Down node receives
//! none. Draining and Removed are set by an administrator and also exclude a node from new
//! chunks; reads still use any node that answers.

use sdfbs_metadata::{now_millis, AdminState, Heartbeat, MetaError, MetadataStore, NodeRecord};
use serde::Serialize;
use std::collections::HashMap;
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
}

impl NodeView {
    /// Whether the node may be given new chunks right now (Up or Suspect, not Draining/Removed).
    pub fn accepts_new_chunks(&self) -> bool {
        self.admin_state == AdminState::Active && self.state != NodeState::Down
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
}

impl Membership {
    pub fn new(meta: Arc<dyn MetadataStore>, config: MembershipConfig) -> Membership {
        Membership {
            meta,
            config,
            nodes: RwLock::new(HashMap::new()),
        }
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
            match nodes.get(&record.last.node_id) {
                Some(mine) if mine.last.at > record.last.at => {}
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
        let now = now_millis();
        let nodes = self.nodes.read().unwrap_or_else(|e| e.into_inner());
        let mut out: Vec<NodeView> = nodes
            .values()
            .filter(|r| r.admin_state != AdminState::Removed)
            .map(|r| self.view(r, now))
            .collect();
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
        NodeView {
            node_id: r.last.node_id.clone(),
            address: r.last.address.clone(),
            zone: r.last.zone.clone(),
            capacity_bytes: r.last.capacity_bytes,
            used_bytes: r.last.used_bytes,
            chunk_count: r.last.chunk_count,
            corrupt_chunks: r.last.corrupt_chunks,
            heartbeat_age_ms: age,
            state: derive_state(age, self.config),
            admin_state: r.admin_state,
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
