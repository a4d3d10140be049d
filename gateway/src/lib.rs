//! The SDFBS gateway: the S3 API (module `s3`, through s3s) over the chunk pipeline
//! (`pipeline`), cluster membership (`membership`, `placement`), the admin port (`admin`) and
//! the `sdfbs` command line (`cli`, `server`, `dev`, `keys`).
//!
//! The crate is a library plus the thin `sdfbs` binary (`main.rs`) so that the integration
//! tests in `tests/` can drive the pipeline and the servers in-process.

pub mod admin;
pub mod credentials;
pub mod membership;
pub mod pipeline;
pub mod placement;
pub mod s3;
pub mod server;
pub mod state;
