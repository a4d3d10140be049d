//! The `sdfbs` binary: parses the command line (and the optional `--config` file) and runs the
//! chosen command (`gateway`, `dev`, `key`). The servers and the pipeline live in the
//! `sdfbs_gateway` library; this file only wires flags, the environment and the file to them,
//! and turns errors into one readable line.

mod cli;
mod config;
mod dev;
mod keys;
mod node_cli;

use anyhow::anyhow;
use anyhow::Result;
use clap::{CommandFactory, FromArgMatches};
use cli::{Cli, Command, GatewayArgs};
use sdfbs_gateway::cluster::membership::MembershipConfig;
use sdfbs_gateway::credentials::Given;
use sdfbs_gateway::server::{self, GatewayOptions};
use std::io::Write;
use std::process::ExitCode;

fn main() -> ExitCode {
    let matches = Cli::command().get_matches();
    let cli = match Cli::from_arg_matches(&matches) {
        Ok(cli) => cli,
        Err(e) => e.exit(),
    };
    let cli = match with_config_file(cli, &matches) {
        Ok(cli) => cli,
        Err(e) => {
            eprintln!("sdfbs: error: {e:#}");
            return ExitCode::FAILURE;
        }
    };
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

/// Fills settings not given by flags or variables from the `--config` file, if any.
fn with_config_file(mut cli: Cli, matches: &clap::ArgMatches) -> Result<Cli> {
    let Some(path) = cli.config.clone() else {
        return Ok(cli);
    };
    let file = config::load(&path)?;
    match (&mut cli.command, matches.subcommand()) {
        (Command::Gateway(args), Some((_, sub))) => config::apply_gateway(args, &file, sub)?,
        (Command::Dev(args), Some((_, sub))) => config::apply_dev(args, &file, sub)?,
        _ => {}
    }
    Ok(cli)
}

async fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Gateway(args) => gateway(args).await,
        Command::Dev(args) => dev::run(args, given_from_env(None)).await,
        Command::Key(args) => keys::run(args).await,
        Command::Node(args) => node_cli::run_node(args).await,
        Command::Repair(args) => node_cli::run_repair(args).await,
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
    let spec = args.metadata.as_deref().ok_or_else(|| {
        anyhow!("no metadata store: give --metadata embedded:PATH or scylla:HOST[,HOST...]/KEYSPACE (or SDFBS_METADATA, or `metadata` in the --config file)")
    })?;
    let meta = server::open_metadata(spec).await?;
    let workers = args.serve.workers();
    let running = server::start(GatewayOptions {
        meta,
        s3_listen: args.serve.s3_listen,
        admin_listen: args.serve.admin_listen,
        replication: usize::from(args.serve.replication),
        region: args.serve.region,
        s3_domains: args.serve.s3_domains,
        membership: MembershipConfig {
            heartbeat_interval: args.serve.heartbeat_interval,
            node_down_after: args.serve.node_down_after,
        },
        workers,
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
