//! A chunkd node's life cycle as the cluster records it: the state it is in and the history of
//! its state changes (`node_events`), kept in the metadata store so every gateway and every
//! restart sees the same history.

use crate::{NodeId, UnixMillis};
use serde::{Deserialize, Serialize};

/// Where a node is in its life cycle (DESIGN.md, "Membership, health and repair").
///
/// Up, Suspect and Down follow from the age of the node's last heartbeat; Draining and Removed
/// are set by an administrator (`AdminState`) and win over the heartbeat-derived state.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum LifecycleState {
    Up,
    Suspect,
    Down,
    Draining,
    Removed,
}

impl LifecycleState {
    pub fn as_str(self) -> &'static str {
        match self {
            LifecycleState::Up => "Up",
            LifecycleState::Suspect => "Suspect",
            LifecycleState::Down => "Down",
            LifecycleState::Draining => "Draining",
            LifecycleState::Removed => "Removed",
        }
    }
}

impl std::fmt::Display for LifecycleState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One change of a node's state, as logged.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeEvent {
    pub node_id: NodeId,
    /// When the change was seen, milliseconds since the Unix epoch.
    pub at: UnixMillis,
    /// `None` for a node's first registration.
    pub from: Option<LifecycleState>,
    pub to: LifecycleState,
    /// Why, in words: "no heartbeat for 10.2 s", "drained by an administrator", ...
    pub reason: String,
}
