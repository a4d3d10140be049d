//! Watches the nodes' life cycle states once a second (on the leader only) and logs every
//! change in the metadata store with its time and reason (`node_events`), so the history
//! survives restarts and every gateway shows the same one. A change is also what wakes the
//! other workers:
//! * to Down, Draining or Removed: a repair pass (chunks there no longer count);
//! * from Down back to Up or Suspect: the node's replicas stop counting until an audit
//!   verified them (`awaiting_audit`), and the audit is queued;
//! * a node's scrubber reporting more corrupt chunks: an audit of that node finds which
//!   (the scrubber moved them out of its chunk directory) and drops their replicas;
//! * a node joining, or back in service from Draining or Removed: a rebalance pass.
//!
//! When this gateway becomes the leader, every node is audited once: whatever happened while
//! no gateway was watching is found that way.

use super::workers::WorkerContext;
use sdfbs_metadata::{now_millis, LifecycleState, NodeEvent};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

const TICK: Duration = Duration::from_secs(1);

/// What the monitor last saw of a node.
struct Seen {
    state: LifecycleState,
    corrupt: u64,
}

pub(crate) async fn run(ctx: Arc<WorkerContext>, mut stop: watch::Receiver<bool>) {
    'lead: loop {
        if !ctx.leadership.wait_leader(&mut stop).await {
            return;
        }
        let mut seen: HashMap<String, Seen> = HashMap::new();
        for node in ctx.membership.all_nodes() {
            ctx.queue_audit(&node.node_id);
        }
        loop {
            if !ctx.leadership.is_leader() {
                continue 'lead;
            }
            for node in ctx.membership.all_nodes() {
                let previous = match seen.get(&node.node_id) {
                    Some(s) => Some((s.state, s.corrupt)),
                    None => last_logged(&ctx, &node.node_id)
                        .await
                        .map(|state| (state, node.corrupt_chunks)),
                };
                let (from, corrupt_before) = match previous {
                    Some((state, corrupt)) => (Some(state), corrupt),
                    None => (None, node.corrupt_chunks),
                };
                if from != Some(node.lifecycle) {
                    let reason = reason(from, node.lifecycle, node.heartbeat_age_ms);
                    tracing::info!(node_id = %node.node_id, from = ?from, to = %node.lifecycle,
                        %reason, "node state changed");
                    let event = NodeEvent {
                        node_id: node.node_id.clone(),
                        at: now_millis(),
                        from,
                        to: node.lifecycle,
                        reason,
                    };
                    if let Err(e) = ctx.meta.record_node_event(event).await {
                        tracing::warn!(node_id = %node.node_id, error = %e,
                            "cannot log the node state change; will retry");
                        continue; // not marked seen: logged on the next tick
                    }
                    match node.lifecycle {
                        LifecycleState::Down
                        | LifecycleState::Draining
                        | LifecycleState::Removed => {
                            ctx.repair_now.notify_one();
                        }
                        LifecycleState::Up | LifecycleState::Suspect => {
                            if from == Some(LifecycleState::Down) {
                                ctx.membership.set_awaiting_audit(&node.node_id, true);
                                ctx.queue_audit(&node.node_id);
                            }
                            if matches!(
                                from,
                                None | Some(LifecycleState::Draining | LifecycleState::Removed)
                            ) {
                                // A node joined (or came back into service): it takes its share.
                                ctx.rebalance_now.notify_one();
                            }
                        }
                    }
                }
                if node.corrupt_chunks > corrupt_before {
                    tracing::warn!(node_id = %node.node_id, corrupt = node.corrupt_chunks,
                        "the node's scrubber found corrupt chunks; auditing it");
                    ctx.queue_audit(&node.node_id);
                }
                seen.insert(
                    node.node_id.clone(),
                    Seen {
                        state: node.lifecycle,
                        corrupt: node.corrupt_chunks,
                    },
                );
            }
            tokio::select! {
                _ = tokio::time::sleep(TICK) => {}
                _ = stop.wait_for(|s| *s) => return,
            }
        }
    }
}

/// The state last logged for a node (its newest event), if any.
async fn last_logged(ctx: &WorkerContext, node_id: &str) -> Option<LifecycleState> {
    match ctx.meta.node_events(Some(node_id), 1).await {
        Ok(events) => events.first().map(|e| e.to),
        Err(e) => {
            tracing::warn!(node_id, error = %e, "cannot read the node's history");
            None
        }
    }
}

fn reason(from: Option<LifecycleState>, to: LifecycleState, age_ms: i64) -> String {
    let age = format!("{:.1} s", age_ms as f64 / 1000.0);
    match (from, to) {
        (None, _) => "first heartbeat (registered)".into(),
        (_, LifecycleState::Draining) => "drain requested by an administrator".into(),
        (_, LifecycleState::Removed) => "removed by an administrator".into(),
        (_, LifecycleState::Down) => format!("no heartbeat for {age}"),
        (_, LifecycleState::Suspect) => format!("heartbeats missed (last {age} ago)"),
        (Some(LifecycleState::Draining | LifecycleState::Removed), LifecycleState::Up) => {
            "returned to service by an administrator".into()
        }
        (_, LifecycleState::Up) => "heartbeats arriving again".into(),
    }
}
