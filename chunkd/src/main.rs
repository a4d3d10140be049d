//! The `chunkd` binary: parses the command line (every flag also read from `CHUNKD_<FLAG>`),
//! runs a node with [`chunkd::start`], prints one line to stdout once it listens, and stops
//! cleanly on SIGTERM or SIGINT (exit status 0). Logs go to stderr (`RUST_LOG` filters them).

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use tokio::signal::unix::{signal, SignalKind};

/// SDFBS storage node: stores chunks as files, verifies them, answers the gateway.
#[derive(Parser, Debug)]
#[command(name = "chunkd", version)]
struct Args {
    /// Directory holding this node's chunks and identity.
    #[arg(long, env = "CHUNKD_DATA_DIR")]
    data_dir: PathBuf,

    /// Address to listen on (port 0 picks a free port).
    #[arg(long, env = "CHUNKD_LISTEN", default_value = "127.0.0.1:7070")]
    listen: SocketAddr,

    /// Shared secret every request from the gateway must carry.
    #[arg(long, env = "CHUNKD_CLUSTER_SECRET", hide_env_values = true)]
    cluster_secret: String,

    /// URL the gateway should use to reach this node [default: http://<bound address>].
    #[arg(long, value_name = "URL", env = "CHUNKD_ADVERTISE")]
    advertise: Option<String>,

    /// Failure zone of this node (replicas go to distinct zones).
    #[arg(long, env = "CHUNKD_ZONE", default_value = "default")]
    zone: String,

    /// Bytes this node may hold, like 500GiB [default: size of the file system].
    #[arg(long, env = "CHUNKD_CAPACITY", value_parser = chunkd::size::parse_size)]
    capacity: Option<u64>,

    /// Gateway to send heartbeats to (repeatable; comma-separated in the variable).
    #[arg(
        long = "gateway",
        value_name = "URL",
        env = "CHUNKD_GATEWAY",
        value_delimiter = ','
    )]
    gateways: Vec<String>,

    /// Time between heartbeats, like 2s.
    #[arg(long, env = "CHUNKD_HEARTBEAT_INTERVAL", default_value = "2s",
          value_parser = humantime::parse_duration)]
    heartbeat_interval: Duration,

    /// Scrubber read rate per second, like 32MiB (0 disables scrubbing).
    #[arg(long, env = "CHUNKD_SCRUB_RATE", default_value = "32MiB",
          value_parser = chunkd::size::parse_size)]
    scrub_rate: u64,

    /// Largest chunk accepted, like 16MiB.
    #[arg(long, env = "CHUNKD_MAX_CHUNK_SIZE", default_value = "16MiB",
          value_parser = chunkd::size::parse_size)]
    max_chunk_size: u64,

    /// Bytes of recently written or read chunks left in the page cache, like 1GiB; the pages
    /// of older ones are dropped (0 drops every chunk's pages right after use).
    #[arg(long, env = "CHUNKD_CACHE_SIZE", default_value = "1GiB",
          value_parser = chunkd::size::parse_size)]
    cache_size: u64,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();

    let config = chunkd::NodeConfig {
        data_dir: args.data_dir,
        listen: args.listen,
        cluster_secret: args.cluster_secret,
        advertise: args.advertise,
        zone: args.zone,
        capacity: args.capacity,
        gateways: args.gateways,
        heartbeat_interval: args.heartbeat_interval,
        scrub_rate: args.scrub_rate,
        max_chunk_size: args.max_chunk_size,
        cache_size: args.cache_size,
    };
    // Install the handlers before announcing readiness, so a signal sent right after the
    // line below is never lost.
    let mut sigterm = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let mut sigint = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;

    let node = chunkd::start(config).await.context("starting chunkd")?;
    {
        // Test harnesses parse the URL after "listening on ".
        let mut stdout = std::io::stdout().lock();
        writeln!(
            stdout,
            "chunkd listening on http://{} node_id={}",
            node.local_addr(),
            node.node_id()
        )?;
        stdout.flush()?;
    }

    tokio::select! {
        _ = sigterm.recv() => tracing::info!("SIGTERM: stopping"),
        _ = sigint.recv() => tracing::info!("SIGINT: stopping"),
    }
    node.shutdown().await.context("stopping chunkd")?;
    tracing::info!("stopped");
    Ok(())
}
