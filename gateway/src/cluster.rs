//! The cluster of chunkd nodes as the gateway sees it: which nodes exist and how healthy they
//! are (`membership`), where a chunk's replicas go (`placement`), and the background workers
//! that keep every chunk on `replication` healthy nodes and collect garbage (`workers` and the
//! modules it starts: `monitor`, `repair`, `audit`, `gc`, `rebalance`), run by one gateway at a time
//! (`lease`).

pub mod audit;
pub mod gc;
pub mod lease;
pub mod membership;
pub mod monitor;
pub mod placement;
pub mod rebalance;
pub mod repair;
pub mod workers;
