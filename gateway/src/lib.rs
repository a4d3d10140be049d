//! The SDFBS gateway: the S3 API (module `s3`, through s3s) over the chunk pipeline
//! (`pipeline`), cluster membership, placement and background workers (`cluster`), the admin port (`admin`) and
//! the `sdfbs` command line (`cli`, `server`, `dev`, `keys`).
//!
//! The crate is a library plus the thin `sdfbs` binary (`main.rs`) so that the integration
//! tests in `tests/` can drive the pipeline and the servers in-process.

pub mod admin;
pub mod cluster;
pub mod credentials;
pub mod pipeline;
pub mod s3;
pub mod server;
pub mod state;
