//! The node life cycle and repair status on the admin port: drain, undrain and remove a node,
//! its history of state changes, and what the background workers are doing.

use super::{json, meta_failure, Admin, Answer, Failure};
use crate::cluster::membership::NodeView;
use http::StatusCode;
use sdfbs_metadata::{AdminState, ChunkId, LifecycleState};

/// Chunk records a remove check reads per page.
const PAGE: usize = 1000;
/// Chunks named in a refused remove, at most.
const NAMED: usize = 10;

impl Admin {
    /// `POST /cluster/nodes/{id}/{drain|undrain|remove}`.
    pub(super) async fn node_action(&self, id: &str, action: &str) -> Result<Answer, Failure> {
        let Some(node) = self.membership.node(id) else {
            return Err(meta_failure(sdfbs_metadata::MetaError::NoSuchNode(
                id.into(),
            )));
        };
        let state = match action {
            "drain" => AdminState::Draining,
            "undrain" => AdminState::Active,
            "remove" => {
                self.check_removable(&node).await?;
                AdminState::Removed
            }
            _ => {
                return Err(Failure(
                    StatusCode::NOT_FOUND,
                    "NotFound",
                    format!("no node action {action:?}: use drain, undrain or remove"),
                ))
            }
        };
        self.membership
            .set_admin_state(id, state)
            .await
            .map_err(meta_failure)?;
        tracing::info!(node_id = %id, ?state, "node state set by an administrator");
        // The leader logs the change and starts moving chunks on its next look at the nodes.
        self.workers.repair_now.notify_one();
        let view = self.membership.node(id).unwrap_or(node);
        Ok(json(StatusCode::OK, &view))
    }

    /// Refuses (409 `NodeHoldsLastCopy`) while `node` holds a chunk that has no replica on
    /// any other healthy node: removing it would lose that chunk. Drain it first.
    async fn check_removable(&self, node: &NodeView) -> Result<(), Failure> {
        if node.lifecycle == LifecycleState::Removed {
            return Ok(());
        }
        let mut only_copies: Vec<String> = Vec::new();
        let mut count = 0u64;
        let mut after: Option<ChunkId> = None;
        loop {
            let page = self
                .meta
                .chunks_on_node(&node.node_id, after, PAGE)
                .await
                .map_err(meta_failure)?;
            let Some(last) = page.last() else { break };
            after = Some(last.id);
            for record in &page {
                let elsewhere = record.replicas.iter().any(|r| {
                    r != &node.node_id && self.membership.node(r).is_some_and(|v| v.is_healthy())
                });
                if !elsewhere {
                    count += 1;
                    if only_copies.len() < NAMED {
                        only_copies.push(record.id.to_hex());
                    }
                }
            }
        }
        if count == 0 {
            return Ok(());
        }
        Err(Failure(
            StatusCode::CONFLICT,
            "NodeHoldsLastCopy",
            format!(
                "node {} holds the only healthy copy of {count} chunk(s) (e.g. {}); drain it first (`sdfbs node drain {}`) and remove it once it is empty",
                node.node_id,
                only_copies.join(", "),
                node.node_id
            ),
        ))
    }

    /// `GET /cluster/nodes/{id}/events` and `GET /cluster/events`.
    pub(super) async fn events(&self, node: Option<&str>) -> Result<Answer, Failure> {
        let events = self
            .meta
            .node_events(node, 200)
            .await
            .map_err(meta_failure)?;
        Ok(json(StatusCode::OK, &events))
    }

    /// `GET /cluster/repair`.
    pub(super) fn repair_status(&self) -> serde_json::Value {
        let status = self.workers.status();
        serde_json::json!({
            "replication": self.replication,
            "status": status,
            "lost": status.lost.values().collect::<Vec<_>>(),
        })
    }
}
