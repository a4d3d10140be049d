//! Where a chunk's replicas go: weighted rendezvous hashing (HRW) of (chunk id, node id).
//!
//! Every node gets a score from a hash of the pair, scaled by the node's weight (its capacity);
//! nodes are tried in decreasing score order. This needs no shared table: every gateway computes
//! the same order from the same node list, and adding or removing a node only moves the chunks
//! whose top choices change (about 1/N of them), which is what keeps repair traffic small.
//!
//! Weighting uses the logarithmic method (score = w / -ln(u), u uniform in (0,1) from the hash),
//! under which a node's chance of ranking first is exactly its share of the total weight.
//!
//! When the candidates span more than one zone, the order is rearranged so that the first
//! nodes come from distinct zones (each zone's best node, in score order), then the rest in
//! score order: taking replicas from the front of the list puts them in distinct zones whenever
//! that is possible, and failing over down the list keeps that preference.

use sdfbs_metadata::ChunkId;
use sha2::{Digest, Sha256};

/// A node that may receive chunks (the caller filters out Down, Draining and Removed nodes).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Candidate {
    pub node_id: String,
    pub zone: String,
    /// Capacity in bytes; 0 is treated as 1 (the node still takes a tiny share).
    pub weight: u64,
}

/// The candidates in the order a chunk's replicas should be written: distinct zones first (when
/// there are several), then by decreasing HRW score. Deterministic for a given input set,
/// whatever the order of `nodes`.
pub fn placement_order<'a>(chunk: &ChunkId, nodes: &'a [Candidate]) -> Vec<&'a Candidate> {
    let mut scored: Vec<(f64, &Candidate)> = nodes.iter().map(|n| (score(chunk, n), n)).collect();
    // Highest score first; ties (practically impossible) broken by node id for determinism.
    scored.sort_by(|a, b| {
        b.0.partial_cmp(&a.0)
            .unwrap_or(std::cmp::Ordering::Equal)
            .then_with(|| a.1.node_id.cmp(&b.1.node_id))
    });
    let ranked: Vec<&Candidate> = scored.into_iter().map(|(_, n)| n).collect();

    let mut zones: Vec<&str> = ranked.iter().map(|n| n.zone.as_str()).collect();
    zones.sort_unstable();
    zones.dedup();
    if zones.len() <= 1 {
        return ranked;
    }
    // First pass: the best node of each zone, in score order. Second: everything else.
    let mut seen_zones: Vec<&str> = Vec::new();
    let mut first = Vec::new();
    let mut rest = Vec::new();
    for n in ranked {
        if seen_zones.contains(&n.zone.as_str()) {
            rest.push(n);
        } else {
            seen_zones.push(n.zone.as_str());
            first.push(n);
        }
    }
    first.extend(rest);
    first
}

/// Weighted HRW score of (chunk, node): higher is better.
fn score(chunk: &ChunkId, node: &Candidate) -> f64 {
    let mut h = Sha256::new();
    h.update(chunk.0);
    h.update(node.node_id.as_bytes());
    let digest = h.finalize();
    let mut first8 = [0u8; 8];
    first8.copy_from_slice(&digest[..8]);
    let bits = u64::from_be_bytes(first8) >> 11; // 53 bits: exact in an f64
                                                 // u in (0, 1), never 0 or 1, so -ln(u) is finite and positive.
    let u = (bits as f64 + 0.5) / (1u64 << 53) as f64;
    let weight = node.weight.max(1) as f64;
    weight / -u.ln()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunk(i: u32) -> ChunkId {
        let d = Sha256::digest(i.to_be_bytes());
        let mut id = [0u8; 32];
        id.copy_from_slice(&d);
        ChunkId(id)
    }

    fn node(id: &str, zone: &str, weight: u64) -> Candidate {
        Candidate {
            node_id: id.to_string(),
            zone: zone.to_string(),
            weight,
        }
    }

    fn first_choice(c: &ChunkId, nodes: &[Candidate]) -> String {
        placement_order(c, nodes)[0].node_id.clone()
    }

    #[test]
    fn order_is_a_permutation_and_independent_of_input_order() {
        let nodes: Vec<Candidate> = (0..5).map(|i| node(&format!("n{i}"), "z", 100)).collect();
        let mut reversed = nodes.clone();
        reversed.reverse();
        for i in 0..100 {
            let a: Vec<_> = placement_order(&chunk(i), &nodes)
                .iter()
                .map(|n| n.node_id.clone())
                .collect();
            let b: Vec<_> = placement_order(&chunk(i), &reversed)
                .iter()
                .map(|n| n.node_id.clone())
                .collect();
            assert_eq!(a, b);
            let mut sorted = a.clone();
            sorted.sort();
            assert_eq!(sorted, vec!["n0", "n1", "n2", "n3", "n4"]);
        }
    }

    #[test]
    fn adding_a_node_moves_only_its_share_of_chunks() {
        let mut nodes: Vec<Candidate> = (0..10).map(|i| node(&format!("n{i}"), "z", 100)).collect();
        let total = 5000;
        let before: Vec<String> = (0..total)
            .map(|i| first_choice(&chunk(i), &nodes))
            .collect();
        nodes.push(node("new", "z", 100));
        let mut moved = 0;
        for i in 0..total {
            let after = first_choice(&chunk(i), &nodes);
            if after != before[i as usize] {
                // A chunk only ever moves to the new node, never between old ones.
                assert_eq!(after, "new");
                moved += 1;
            }
        }
        // Expected 1/11 of 5000 = 454; allow generous statistical slack.
        assert!((300..620).contains(&moved), "moved {moved} of {total}");
    }

    #[test]
    fn weights_are_respected() {
        let nodes = vec![node("small", "z", 1_000), node("big", "z", 3_000)];
        let total = 8000;
        let big = (0..total)
            .filter(|i| first_choice(&chunk(*i), &nodes) == "big")
            .count();
        // Expected 75 %.
        let share = big as f64 / total as f64;
        assert!((0.72..0.78).contains(&share), "big share {share}");
    }

    #[test]
    fn replicas_go_to_distinct_zones_first() {
        let nodes = vec![
            node("a1", "a", 100),
            node("a2", "a", 100),
            node("a3", "a", 100),
            node("b1", "b", 100),
        ];
        for i in 0..500 {
            let order = placement_order(&chunk(i), &nodes);
            assert_eq!(order.len(), 4);
            assert_ne!(order[0].zone, order[1].zone, "chunk {i}: {order:?}");
        }
    }

    #[test]
    fn single_zone_keeps_pure_score_order() {
        let nodes: Vec<Candidate> = (0..4).map(|i| node(&format!("n{i}"), "z", 100)).collect();
        let c = chunk(7);
        let order = placement_order(&c, &nodes);
        for w in order.windows(2) {
            assert!(score(&c, w[0]) >= score(&c, w[1]));
        }
    }
}
