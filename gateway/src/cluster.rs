//! The cluster of chunkd nodes as the gateway sees it: which nodes exist and how healthy they
//! are (`membership`), where a chunk's replicas go (`placement`), and the background workers
//! that keep every chunk on `replication` healthy nodes.

pub mod membership;
pub mod placement;
