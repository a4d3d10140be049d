//! chunkd: the SDFBS storage node, as a library (wire types, server, client) and a binary.
//!
//! The protocol is defined once, here: [`wire`] holds its paths, query parameters, JSON
//! documents, error codes and the workspace's [`wire::ChunkId`], [`server`] answers the HTTP
//! API, [`ChunkClient`] is what the gateway uses to call it, and [`start`] runs a whole node
//! (server, scrubber, heartbeats) in-process, which is what the `chunkd` binary and `sdfbs dev`
//! do. Everything but [`wire`] needs the default feature `node`.
//!
//! A PUT, top-down: [`server`] checks the secret and the id, then forwards the body to
//! `store::write`, which hashes and writes it to `tmp/`, fsyncs, renames it into
//! `chunks/ab/cd/<id>` and fsyncs the directory before the 201 goes out.

#[cfg(feature = "node")]
pub mod client;
#[cfg(feature = "node")]
mod heartbeat;
#[cfg(feature = "node")]
pub mod node;
#[cfg(feature = "node")]
mod scrub;
#[cfg(feature = "node")]
pub mod server;
#[cfg(feature = "node")]
pub mod size;
#[cfg(feature = "node")]
pub mod store;
pub mod wire;

#[cfg(feature = "node")]
pub use client::{ChunkClient, ChunkClientBuilder, ClientError, DeleteOutcome, PutOutcome};
#[cfg(feature = "node")]
pub use node::{start, NodeConfig, RunningNode};

/// Errors starting or stopping a node.
#[cfg(feature = "node")]
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid configuration: {0}")]
    Config(String),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
    #[error(transparent)]
    Store(#[from] store::StoreError),
    #[error("a node task failed: {0}")]
    Task(String),
}
