//! The `sdfbs` binary: parses the command line and runs the chosen command (`gateway`, `dev`,
//! `key`). The servers and the pipeline live in the `sdfbs_gateway` library; this file only
//! wires flags and the environment to them, and turns errors into one readable line.

mod cli;
mod dev;
mod keys;

use anyhow::Result;
use clap::Parser;
use cli::{Cli, Command, GatewayArgs};
use sdfbs_gateway::credentials::Given;
use sdfbs_gateway::membership::MembershipConfig;
use sdfbs_gateway::server::{self, GatewayOptions};
use std::io::Write;
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = Cli::parse();
    // `sdfbs dev` runs the nodes in-process: their per-chunk request lines would drown the
    // gateway's, so they are quieter by default there.
    let default_filter = match cli.command {
        Command::Dev(_) => "info,chunkd::server=warn",
        _ => "info",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("SDFBS_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_filter));
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(filter)
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("sdfbs: error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("sdfbs: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Gateway(args) => gateway(args).await,
        Command::Dev(args) => dev::run(args, given_from_env(None)).await,
        Command::Key(args) => keys::run(args).await,
    }
}

/// Secrets given through the environment (never through flags, except the cluster secret).
fn given_from_env(cluster_secret: Option<String>) -> Given {
    let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
    Given {
        root_access_key: var("SDFBS_ROOT_ACCESS_KEY"),
        root_secret_key: var("SDFBS_ROOT_SECRET_KEY"),
        admin_token: var("SDFBS_ADMIN_TOKEN"),
        cluster_secret: cluster_secret.or_else(|| var("SDFBS_CLUSTER_SECRET")),
    }
}

async fn gateway(args: GatewayArgs) -> Result<()> {
    let meta = server::open_metadata(&args.metadata).await?;
    let running = server::start(GatewayOptions {
        meta,
        s3_listen: args.serve.s3_listen,
        admin_listen: args.serve.admin_listen,
        replication: usize::from(args.serve.replication),
        region: args.serve.region,
        membership: MembershipConfig {
            heartbeat_interval: args.serve.heartbeat_interval,
            node_down_after: args.serve.node_down_after,
        },
        credentials: given_from_env(args.cluster_secret),
    })
    .await?;
    {
        // The compat harness waits for exactly these two lines.
        let mut out = std::io::stdout().lock();
        writeln!(out, "sdfbs: s3 listening on http://{}", running.s3_addr)?;
        writeln!(
            out,
            "sdfbs: admin listening on http://{}",
            running.admin_addr
        )?;
        out.flush()?;
    }
    server::shutdown_signal().await;
    tracing::info!("stopping: finishing requests in flight");
    running.shutdown().await;
    tracing::info!("stopped");
    Ok(())
}
