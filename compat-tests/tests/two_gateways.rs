//! Two `sdfbs gateway` processes over one Cassandra keyspace and the same three chunkd nodes,
//! driven with aws-sdk-s3: what one gateway writes, the other reads, lists and deletes; races
//! between clients of different gateways (conditional creates, DeleteBucket against PUTs) end
//! as S3 says they must; a mixed load over both loses no acknowledged write; the background
//! workers run on exactly one of them and move to the other when it dies.
//!
//! How the gateways share the cluster: every chunkd node is started with `--gateway` for each
//! gateway and heartbeats to both, and each gateway also re-reads the `nodes` table every
//! second, so a gateway the nodes do not know still learns them from the store (tested too).
//! The gateways run with the same root key, admin token and cluster secret.
//!
//! The tests need a Cassandra/ScyllaDB node: they run when `SDFBS_TEST_SCYLLA=host:port` names
//! one (a fresh keyspace per test, dropped afterwards), print one `skipped:` line otherwise,
//! and fail without it under `SDFBS_REQUIRE_E2E=1`. The mixed load runs for
//! `SDFBS_TEST_LOAD_SECS` seconds (60 by default).

mod common;

#[path = "two_gateways/load.rs"]
mod load;
#[path = "two_gateways/races.rs"]
mod races;
#[path = "two_gateways/sharing.rs"]
mod sharing;
#[path = "two_gateways/workers.rs"]
mod workers;

use aws_sdk_s3::Client;
use sdfbs_compat_tests::{Cluster, ClusterOptions, Metadata};

/// Two gateways over a fresh keyspace and three nodes heartbeating to both, every node Up on
/// both; None (after one `skipped:` line) without `SDFBS_TEST_SCYLLA`.
fn two_gateways() -> Option<Cluster> {
    let metadata = Metadata::cassandra_from_env()?;
    Some(Cluster::start(ClusterOptions {
        metadata,
        gateways: 2,
        ..ClusterOptions::default()
    }))
}

/// A root client for each gateway, in gateway order.
fn clients(cluster: &Cluster) -> Vec<Client> {
    (0..cluster.gateway_count())
        .map(|i| common::client_of_gateway(cluster, i))
        .collect()
}
