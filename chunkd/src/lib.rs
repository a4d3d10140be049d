//! chunkd: the SDFBS storage node, as a library (wire types, server, client) and a binary.
//!
//! The protocol is defined once, here: [`wire`] holds the JSON documents, [`server`] answers
//! the HTTP API, [`ChunkClient`] is what the gateway uses to call it, and [`start`] runs a whole
//! node (server, scrubber, heartbeats) in-process, which is what the `chunkd` binary and
//! `sdfbs dev` do.
//!
//! A PUT, top-down: [`server`] checks the secret and the id, then forwards the body to
//! `store::write`, which hashes and writes it to `tmp/`, fsyncs, renames it into
//! `chunks/ab/cd/<id>` and fsyncs the directory before the 201 goes out.

pub mod client;
mod heartbeat;
pub mod node;
mod scrub;
pub mod server;
pub mod size;
pub mod store;
pub mod wire;

pub use client::{ChunkClient, ChunkClientBuilder, ClientError, DeleteOutcome, PutOutcome};
pub use node::{start, NodeConfig, RunningNode};

/// Errors starting or stopping a node.
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
