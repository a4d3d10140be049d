//! Moving one chunk between nodes, shared by the read path, the write path and the cluster
//! workers (repair, drain): read a verified copy from the first replica that has one, and
//! write replicas to the next nodes in placement order.

use super::{frames_id, Inner, PipelineError};
use crate::cluster::membership::{NodeState, NodeView};
use crate::cluster::placement::{placement_order, Candidate};
use bytes::Bytes;
use sdfbs_metadata::{ChunkId, NodeId};

/// What reading a chunk from a list of nodes found.
#[derive(Debug, Default)]
pub struct Fetched {
    /// The chunk's bytes as the frames they arrived in, verified against its id and size;
    /// `None` when no node returned the right bytes.
    pub data: Option<Vec<Bytes>>,
    /// Nodes that returned bytes that do not hash to the id (or have the wrong length).
    pub corrupt: Vec<NodeId>,
    /// Nodes that answered that they do not hold the chunk.
    pub missing: Vec<NodeId>,
    /// Nodes tried, in order.
    pub tried: usize,
    /// The last failure, in words (for the error a client or an operator sees).
    pub last_error: String,
}

/// Reads the chunk from `nodes` in the order given, until one returns bytes of length `size`
/// that hash to `id`. Nothing is handed on unverified.
pub(super) async fn fetch_verified(
    inner: &Inner,
    id: &ChunkId,
    size: u64,
    nodes: &[NodeView],
) -> Result<Fetched, PipelineError> {
    let mut found = Fetched {
        last_error: "no replica on a known node".into(),
        ..Fetched::default()
    };
    for node in nodes {
        found.tried += 1;
        let client = inner.client(&node.address);
        match client.get_frames(id).await {
            Ok(frames) => {
                let len: usize = frames.iter().map(Bytes::len).sum();
                if len as u64 == size && frames_id(frames.clone()).await? == *id {
                    found.data = Some(frames);
                    return Ok(found);
                }
                tracing::warn!(chunk = %id, node_id = %node.node_id, len,
                    "replica is corrupt (SHA-256 mismatch); reading another one, this one needs repair");
                found.corrupt.push(node.node_id.clone());
                found.last_error = format!("replica on node {} is corrupt", node.node_id);
            }
            Err(chunkd::ClientError::NotFound) => {
                tracing::warn!(chunk = %id, node_id = %node.node_id,
                    "recorded replica is missing on its node; reading another one");
                found.missing.push(node.node_id.clone());
                found.last_error = format!("node {}: chunk not found", node.node_id);
            }
            Err(e) => {
                tracing::warn!(chunk = %id, node_id = %node.node_id, error = %e,
                    "cannot read replica; trying another one");
                inner.mark_failing(&node.node_id);
                found.last_error = format!("node {}: {e}", node.node_id);
            }
        }
    }
    Ok(found)
}

/// Writes `data` (the chunk `id`) to new nodes until `holders` has `need` entries: Up nodes
/// that may take new chunks first, then Suspect ones, each list in weighted-HRW order, nodes
/// that just failed last, never a node already in `holders` or `exclude`. The next node takes
/// over whenever one fails. Returns the nodes written to (fsynced on each: chunkd answers a
/// PUT only after fsync), or `InsufficientNodes` with nothing more to try.
pub(super) async fn place(
    inner: &Inner,
    id: &ChunkId,
    data: &Bytes,
    holders: &mut Vec<NodeView>,
    exclude: &[NodeId],
    need: usize,
) -> Result<(), PipelineError> {
    let (up, suspect) = inner.writable_nodes();
    let mut remaining: Vec<NodeView> = ordered(id, up);
    remaining.extend(ordered(id, suspect));
    remaining.retain(|n| {
        !holders.iter().any(|h| h.node_id == n.node_id) && !exclude.contains(&n.node_id)
    });
    // Nodes that just failed a write are tried last (stable: HRW order is kept otherwise).
    remaining.sort_by_key(|n| inner.is_failing(&n.node_id));

    while holders.len() < need {
        let batch = pick(&mut remaining, holders, need - holders.len());
        if batch.is_empty() {
            tracing::warn!(chunk = %id, needed = need, written = holders.len(),
                "not enough nodes can take the chunk");
            return Err(PipelineError::InsufficientNodes {
                needed: need,
                available: holders.len(),
            });
        }
        let puts = batch.iter().map(|node| {
            let client = inner.client(&node.address);
            let data = data.clone();
            async move { client.put(id, data).await }
        });
        let results = futures::future::join_all(puts).await;
        for (node, result) in batch.into_iter().zip(results) {
            match result {
                Ok(_) => holders.push(node),
                Err(e) => {
                    // A full or read-only disk answers 507: the next node takes the chunk.
                    tracing::warn!(chunk = %id, node_id = %node.node_id,
                        address = %node.address, error = %e, "chunk write failed; trying the next node");
                    inner.mark_failing(&node.node_id);
                }
            }
        }
    }
    Ok(())
}

/// Up nodes first (in random order, to spread reads), then Suspect, then Down ones (which may
/// well answer: a node is Down only because its heartbeats stopped arriving); within each
/// state, nodes that failed a request in the last few seconds go last.
pub(super) fn read_order(inner: &Inner, mut nodes: Vec<NodeView>) -> Vec<NodeView> {
    {
        use rand::seq::SliceRandom;
        nodes.shuffle(&mut rand::thread_rng());
    }
    nodes.sort_by_key(|n| {
        let state = match n.state {
            NodeState::Up => 0,
            NodeState::Suspect => 1,
            NodeState::Down => 2,
        };
        (state, inner.is_failing(&n.node_id))
    });
    nodes
}

/// Nodes in weighted-HRW order for this chunk (distinct zones first), weighted by free space,
/// so a fuller node takes a smaller share of new chunks.
pub(super) fn ordered(id: &ChunkId, nodes: Vec<NodeView>) -> Vec<NodeView> {
    let candidates: Vec<Candidate> = nodes
        .iter()
        .map(|n| Candidate {
            node_id: n.node_id.clone(),
            zone: n.zone.clone(),
            weight: n.free_bytes(),
        })
        .collect();
    let order: Vec<String> = placement_order(id, &candidates)
        .into_iter()
        .map(|c| c.node_id.clone())
        .collect();
    let mut nodes = nodes;
    let mut out = Vec::with_capacity(nodes.len());
    for node_id in order {
        if let Some(pos) = nodes.iter().position(|n| n.node_id == node_id) {
            out.push(nodes.swap_remove(pos));
        }
    }
    out
}

/// Takes the next `k` nodes to try off the front of `remaining`, preferring zones that hold no
/// replica yet (and distinct from each other), so replicas land in distinct zones whenever the
/// cluster has several and failover keeps that preference.
pub(super) fn pick(remaining: &mut Vec<NodeView>, holders: &[NodeView], k: usize) -> Vec<NodeView> {
    let mut used: Vec<String> = holders.iter().map(|n| n.zone.clone()).collect();
    let mut chosen = Vec::with_capacity(k);
    let mut i = 0;
    while chosen.len() < k && i < remaining.len() {
        if used.contains(&remaining[i].zone) {
            i += 1;
        } else {
            let node = remaining.remove(i);
            used.push(node.zone.clone());
            chosen.push(node);
        }
    }
    while chosen.len() < k && !remaining.is_empty() {
        chosen.push(remaining.remove(0));
    }
    chosen
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view(id: &str, zone: &str) -> NodeView {
        NodeView {
            node_id: id.into(),
            address: String::new(),
            zone: zone.into(),
            capacity_bytes: 1,
            used_bytes: 0,
            chunk_count: 0,
            corrupt_chunks: 0,
            heartbeat_age_ms: 0,
            state: NodeState::Up,
            admin_state: Default::default(),
            lifecycle: sdfbs_metadata::LifecycleState::Up,
            awaiting_audit: false,
        }
    }

    #[test]
    fn pick_prefers_unused_zones() {
        let mut remaining = vec![view("a1", "a"), view("a2", "a"), view("b1", "b")];
        let holders = vec![view("a0", "a")];
        let chosen = pick(&mut remaining, &holders, 1);
        assert_eq!(chosen[0].node_id, "b1");
        let chosen = pick(&mut remaining, &holders, 2);
        let ids: Vec<_> = chosen.iter().map(|n| n.node_id.as_str()).collect();
        assert_eq!(ids, vec!["a1", "a2"]);
        assert!(pick(&mut remaining, &holders, 1).is_empty());
    }

    #[test]
    fn placement_weighs_free_space() {
        // A node with no room left gets (almost) no new chunk; two equal ones share them.
        let mut full = view("full", "z");
        full.capacity_bytes = 1 << 40;
        full.used_bytes = 1 << 40;
        let mut a = view("a", "z");
        a.capacity_bytes = 1 << 40;
        let mut b = view("b", "z");
        b.capacity_bytes = 1 << 40;
        let mut firsts = std::collections::HashMap::new();
        for i in 0..2000u32 {
            let mut idb = [0u8; 32];
            idb[..4].copy_from_slice(&i.to_be_bytes());
            let order = ordered(&ChunkId(idb), vec![full.clone(), a.clone(), b.clone()]);
            *firsts.entry(order[0].node_id.clone()).or_insert(0) += 1;
        }
        assert_eq!(firsts.get("full"), None, "{firsts:?}");
        assert!(firsts["a"] > 800 && firsts["b"] > 800, "{firsts:?}");
    }
}
