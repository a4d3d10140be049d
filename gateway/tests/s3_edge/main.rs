//! In-process tests of the S3 layer on a real cluster: three chunkd nodes on 127.0.0.1:0 with
//! temporary data directories, the embedded metadata store, the chunk pipeline, and the S3
//! service served by hyper on an ephemeral port. A raw SigV4 client (`client.rs`) sends the
//! requests the compat suites with real SDKs never send: hostile keys, malformed XML, bad
//! ranges, wrong digests, bodies that stop early, oversized headers, unauthorised keys. Every
//! test asserts what a client sees (status, S3 error code, bytes) and that a failed write leaves
//! no object behind.

mod access;
mod client;
mod cluster;
mod multipart;
mod objects;
