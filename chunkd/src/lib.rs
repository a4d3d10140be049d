//! chunkd: the SDFBS storage node, as a library (wire types, server, client) and a binary.
pub mod wire;
