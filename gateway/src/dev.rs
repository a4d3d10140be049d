//! `sdfbs dev`: a complete local cluster in one process, for trying SDFBS and for development.
//!
//! The gateway (S3 API and admin port), `--nodes` chunkd nodes started in-process
//! (`chunkd::start`, each in `DATA_DIR/node-N` on an ephemeral loopback port, heartbeating to the
//! admin port like real nodes do) and the embedded metadata store in `DATA_DIR/meta.redb`.
//! Everything is kept in the data directory, so running it again keeps every bucket, object,
//! key and credential. `--metadata scylla:HOST:PORT/KEYSPACE` keeps the metadata (and the
//! generated credentials) in a Cassandra/ScyllaDB keyspace instead, to try that backend
//! locally; the chunks stay in the data directory. Ctrl-C (or SIGTERM) stops the gateway first
//! (requests in flight finish), then the nodes.

use crate::cli::DevArgs;
use anyhow::{Context, Result};
use sdfbs_gateway::cluster::membership::{MembershipConfig, NodeState};
use sdfbs_gateway::credentials::Given;
use sdfbs_gateway::server::{self, GatewayOptions};
use std::io::Write;
use std::time::{Duration, Instant};

pub async fn run(args: DevArgs, given: Given) -> Result<()> {
    let nodes = usize::from(args.nodes);
    let mut replication = usize::from(args.serve.replication);
    if replication > nodes {
        eprintln!(
            "sdfbs: only {nodes} node(s): using replication {nodes} instead of {replication}"
        );
        replication = nodes;
    }
    std::fs::create_dir_all(&args.data_dir).with_context(|| {
        format!(
            "cannot create the data directory {}",
            args.data_dir.display()
        )
    })?;
    let data_dir = args
        .data_dir
        .canonicalize()
        .unwrap_or_else(|_| args.data_dir.clone());
    let meta = match &args.metadata {
        Some(spec) => server::open_metadata(spec)
            .await
            .with_context(|| format!("cannot open the metadata store {spec}"))?,
        None => {
            let meta_path = data_dir.join("meta.redb");
            server::open_metadata(&format!("embedded:{}", meta_path.display()))
                .await
                .with_context(|| {
                    format!(
                        "cannot open {} (is another `sdfbs dev` running on it?)",
                        meta_path.display()
                    )
                })?
        }
    };

    let gateway = server::start(GatewayOptions {
        meta,
        s3_listen: args.serve.s3_listen,
        admin_listen: args.serve.admin_listen,
        replication,
        region: args.serve.region.clone(),
        s3_domains: args.serve.s3_domains.clone(),
        membership: MembershipConfig {
            heartbeat_interval: args.serve.heartbeat_interval,
            node_down_after: args.serve.node_down_after,
        },
        credentials: given,
        workers: args.serve.workers(),
    })
    .await?;
    let admin_url = format!("http://{}", gateway.admin_addr);

    let mut running = Vec::with_capacity(nodes);
    for i in 1..=nodes {
        let dir = data_dir.join(format!("node-{i}"));
        let mut config = chunkd::NodeConfig::new(
            dir.clone(),
            "127.0.0.1:0".parse().context("loopback address")?,
            &gateway.credentials.cluster_secret,
        );
        config.gateways = vec![admin_url.clone()];
        config.heartbeat_interval = args.serve.heartbeat_interval;
        // The nodes of a dev cluster share one disk and one CPU: together they scrub at the
        // rate of one node (every chunk is still re-read, just as often as on one node).
        config.scrub_rate = (config.scrub_rate / nodes as u64).max(1 << 20);
        match chunkd::start(config).await {
            Ok(node) => running.push(node),
            Err(e) => {
                stop_all(gateway, running).await;
                return Err(e)
                    .with_context(|| format!("cannot start node {i} in {}", dir.display()));
            }
        }
    }
    wait_for_nodes(&gateway, &running).await;

    let metadata = match &args.metadata {
        Some(spec) => spec.clone(),
        None => format!("embedded, in {}", data_dir.join("meta.redb").display()),
    };
    print_banner(
        &gateway,
        &data_dir,
        &metadata,
        nodes,
        &args.serve.s3_domains,
    )?;
    server::shutdown_signal().await;
    eprintln!("sdfbs: stopping");
    stop_all(gateway, running).await;
    Ok(())
}

/// Polls until every started node is Up in the gateway's view (their first heartbeat), with a
/// deadline: a cluster that is slow to come up is still usable, so this only warns.
async fn wait_for_nodes(gateway: &server::RunningGateway, nodes: &[chunkd::RunningNode]) {
    let deadline = Instant::now() + Duration::from_secs(15);
    let membership = gateway.gateway.chunks.membership();
    loop {
        let up = nodes
            .iter()
            .filter(|n| {
                membership
                    .node(n.node_id())
                    .is_some_and(|v| v.state == NodeState::Up)
            })
            .count();
        if up == nodes.len() {
            return;
        }
        if Instant::now() > deadline {
            eprintln!(
                "sdfbs: only {up} of {} nodes have reported so far",
                nodes.len()
            );
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn stop_all(gateway: server::RunningGateway, nodes: Vec<chunkd::RunningNode>) {
    gateway.shutdown().await;
    for node in nodes {
        if let Err(e) = node.shutdown().await {
            eprintln!("sdfbs: a node did not stop cleanly: {e}");
        }
    }
}

fn print_banner(
    gateway: &server::RunningGateway,
    data_dir: &std::path::Path,
    metadata: &str,
    nodes: usize,
    s3_domains: &[String],
) -> Result<()> {
    let c = &gateway.credentials;
    let endpoint = format!("http://{}", gateway.s3_addr);
    let region = &gateway.gateway.region;
    // Shown only when set: virtual-hosted-style requests need the domain to resolve here.
    let domains: String = s3_domains
        .iter()
        .map(|d| {
            format!(
                "\n  S3 domain     {d} (virtual-hosted: http://BUCKET.{d}:{port})",
                port = gateway.s3_addr.port()
            )
        })
        .collect();
    let mut out = std::io::stdout().lock();
    writeln!(out, "sdfbs: s3 listening on {endpoint}")?;
    writeln!(
        out,
        "sdfbs: admin listening on http://{}",
        gateway.admin_addr
    )?;
    writeln!(
        out,
        "
SDFBS dev cluster running: {nodes} node(s), data in {dir}. Ctrl-C stops it.

  Metadata      {metadata}
  S3 endpoint   {endpoint}
  Region        {region}{domains}
  Access key    {ak}
  Secret key    {sk}
  Admin token   {at}

aws-cli:
  export AWS_ACCESS_KEY_ID={ak} AWS_SECRET_ACCESS_KEY={sk} AWS_DEFAULT_REGION={region} AWS_ENDPOINT_URL={endpoint}
  aws s3 mb s3://backups && aws s3 cp ./some-file s3://backups/

rclone (append to ~/.config/rclone/rclone.conf):
  [sdfbs]
  type = s3
  provider = Other
  access_key_id = {ak}
  secret_access_key = {sk}
  endpoint = {endpoint}
  region = {region}
  force_path_style = true
  then: rclone mkdir sdfbs:backups && rclone copy ./dir sdfbs:backups/dir

Admin (keys, nodes, repair):
  export SDFBS_ADMIN_URL=http://{admin} SDFBS_ADMIN_TOKEN={at}
  sdfbs key create NAME | sdfbs node list | sdfbs node drain NODE | sdfbs repair status",
        dir = data_dir.display(),
        ak = c.root_access_key,
        sk = c.root_secret_key,
        at = c.admin_token,
        admin = gateway.admin_addr,
    )?;
    out.flush()?;
    Ok(())
}
