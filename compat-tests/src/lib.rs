//! End-to-end test harness for SDFBS: starts real clusters on loopback and drives them with
//! real clients.
//!
//! Why a separate crate: the gateway and chunkd each test themselves in-process, but what users
//! depend on is the behaviour of the real binaries, wired together over real sockets, seen
//! through the clients they actually use (aws-sdk-s3, aws-cli v1 and v2, rclone, s3cmd, curl).
//! This crate holds only the plumbing for that; the tests live in `tests/`, one file per client.
//!
//! * [`cluster`]: [`Cluster::start`] spawns the `sdfbs gateway` binary (or several, over one
//!   Cassandra keyspace) and three `chunkd` processes on ephemeral ports in a temporary
//!   directory, waits until every node is Up, and kills everything when dropped. Nodes can be
//!   killed (`SIGKILL`) and restarted for fault tests.
//! * [`metadata`]: where a cluster's gateways keep their metadata: an embedded redb file, or a
//!   throwaway keyspace on the Cassandra node of `SDFBS_TEST_SCYLLA`, dropped with the cluster.
//!   Several gateways can share one keyspace.
//! * [`tools`]: finds the external clients, configures each one through temporary files and
//!   environment variables only (never the machine's `~/.aws` or `~/.config`), and skips or
//!   fails (under `SDFBS_REQUIRE_E2E=1`) when one is missing.
//! * [`data`]: deterministic pseudo-random test data and SHA-256 helpers, so that every
//!   transfer is checked byte for byte.
//! * [`http`]: a tiny blocking HTTP/1.1 client for the admin port and chunkd `/health`, so the
//!   harness needs no HTTP stack of its own.

pub mod cluster;
pub mod data;
pub mod http;
pub mod machine;
pub mod metadata;
mod process;
pub mod tools;

pub use cluster::{bin_dir, Cluster, ClusterOptions};
pub use data::{random_bytes, sha256_file, sha256_hex, write_random_file};
pub use metadata::Metadata;
pub use tools::{require_tool, run_ok, run_output, AwsCli, AwsCliVersion, CliTool, Rclone, S3cmd};
