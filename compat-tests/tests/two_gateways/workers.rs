//! The background workers (repair, audit, GC) run on exactly one gateway, the holder of the
//! workers' lease, and move to the other gateway when that one is killed: a node killed
//! afterwards is repaired by the survivor.

use std::time::Duration;

use sdfbs_compat_tests::{http, Cluster, ClusterOptions, Metadata};

use crate::common::drill::*;
use crate::common::{bucket, client_of_gateway, ok};

/// Whether gateway `i` says it runs the workers (`None` when it does not answer).
fn leads(cluster: &Cluster, i: usize) -> Option<bool> {
    let url = format!("{}/cluster/repair", cluster.admin_url_of(i));
    let resp = http::get(&url, Some(&cluster.admin_token)).ok()?;
    resp.json().ok()?["status"]["leader"].as_bool()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workers_run_on_one_gateway_and_move_when_it_dies() {
    let Some(metadata) = Metadata::cassandra_from_env() else {
        return;
    };
    let mut cluster = Cluster::start(ClusterOptions {
        metadata,
        gateways: 2,
        node_down_after: Some("2s".into()),
        gateway_args: fast_workers(),
        ..ClusterOptions::default()
    });
    let leader = eventually(
        "exactly one gateway runs the workers",
        Duration::from_secs(30),
        || match (leads(&cluster, 0), leads(&cluster, 1)) {
            (Some(true), Some(false)) => Ok(0),
            (Some(false), Some(true)) => Ok(1),
            other => Err(format!("leader flags {other:?}")),
        },
    )
    .await;
    let survivor = 1 - leader;
    let s3 = client_of_gateway(&cluster, survivor);
    let b = bucket("workers");
    ok(s3.create_bucket().bucket(&b).send().await);
    let objects = upload_objects(&s3, &b, 40, 8000).await;
    let chunks: Vec<String> = replicas_on_disk(&cluster, &[0, 1, 2]).into_keys().collect();

    cluster.kill_gateway_at(leader);
    // The lease lasts 10 s without renewal: the survivor takes it over after that.
    eventually(
        "the survivor runs the workers",
        Duration::from_secs(40),
        || {
            (leads(&cluster, survivor) == Some(true))
                .then_some(())
                .ok_or("not yet".to_string())
        },
    )
    .await;
    cluster.kill_node(2);
    eventually(
        "every chunk on the two live nodes",
        Duration::from_secs(90),
        || {
            let on_disk = replicas_on_disk(&cluster, &[0, 1]);
            let short = chunks
                .iter()
                .filter(|id| on_disk.get(*id).map_or(0, |n| n.len()) < 2)
                .count();
            (short == 0)
                .then_some(())
                .ok_or(format!("{short} chunk(s) on one replica"))
        },
    )
    .await;
    assert_all_read_back(&s3, &b, &objects).await;
}
