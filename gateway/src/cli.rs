//! The `sdfbs` command line: flags, with `SDFBS_*` environment variables as fallbacks.
//!
//! Secrets are never flags (they would show in `ps`): the root key, the admin token and the
//! cluster secret come from the environment (`SDFBS_ROOT_ACCESS_KEY`, `SDFBS_ROOT_SECRET_KEY`,
//! `SDFBS_ADMIN_TOKEN`, `SDFBS_CLUSTER_SECRET`) or are generated once and kept in the metadata
//! store. `--cluster-secret` and `--admin-token` exist for convenience and scripts, and their
//! environment values are hidden from `--help`.

use clap::{Args, Parser, Subcommand};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Parser, Debug)]
#[command(
    name = "sdfbs",
    version,
    about = "SDFBS: an S3-compatible object store for backups"
)]
pub struct Cli {
    /// Configuration file (TOML, the flags' names): flags and SDFBS_* variables take
    /// precedence over it.
    #[arg(long, env = "SDFBS_CONFIG", global = true)]
    pub config: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run a production gateway: the S3 API and the admin port, over chunkd nodes that join by
    /// heartbeat.
    Gateway(GatewayArgs),
    /// Run a complete local cluster in one process: the gateway, N chunkd nodes and embedded
    /// metadata (or --metadata scylla:...), all kept under --data-dir.
    Dev(DevArgs),
    /// Manage S3 access keys through a running gateway's admin port.
    Key(KeyArgs),
    /// Show and change the chunkd nodes' life cycle through a running gateway's admin port.
    Node(NodeArgs),
    /// Show what repair and garbage collection are doing, and any chunk that is lost.
    Repair(RepairArgs),
}

/// Flags shared by `gateway` and `dev`.
#[derive(Args, Debug, Clone)]
pub struct ServeArgs {
    /// Address of the S3 API.
    #[arg(long, env = "SDFBS_S3_LISTEN", default_value = "127.0.0.1:9000")]
    pub s3_listen: SocketAddr,
    /// Address of the admin port (heartbeats, /health, admin API).
    #[arg(long, env = "SDFBS_ADMIN_LISTEN", default_value = "127.0.0.1:8080")]
    pub admin_listen: SocketAddr,
    /// Replicas of every chunk, on distinct nodes.
    #[arg(long, env = "SDFBS_REPLICATION", default_value_t = 2, value_parser = clap::value_parser!(u16).range(1..=16))]
    pub replication: u16,
    /// Region reported by the S3 API.
    #[arg(long, env = "SDFBS_REGION", default_value = "us-east-1")]
    pub region: String,
    /// Base domain for virtual-hosted-style requests: a Host of `BUCKET.NAME` (any port)
    /// addresses BUCKET. Repeatable (the variable takes a comma-separated list); path-style
    /// requests keep working.
    #[arg(
        long = "s3-domain",
        env = "SDFBS_S3_DOMAIN",
        value_name = "NAME",
        value_delimiter = ','
    )]
    pub s3_domains: Vec<String>,
    /// A node silent for longer than this is Down and receives no new chunks.
    #[arg(long, env = "SDFBS_NODE_DOWN_AFTER", default_value = "10s", value_parser = humantime::parse_duration)]
    pub node_down_after: Duration,
    /// Interval the chunkd nodes heartbeat at (a node is Suspect after missing three).
    #[arg(long, env = "SDFBS_HEARTBEAT_INTERVAL", default_value = "2s", value_parser = humantime::parse_duration)]
    pub heartbeat_interval: Duration,
    /// Most MiB per second repair and drain copy between nodes.
    #[arg(long, env = "SDFBS_REPAIR_RATE", default_value_t = 64, value_parser = clap::value_parser!(u64).range(1..))]
    pub repair_rate: u64,
    /// A full repair pass at least this often (node failures and bad replicas found by reads
    /// start one at once).
    #[arg(long, env = "SDFBS_REPAIR_SCAN_INTERVAL", default_value = "10m", value_parser = humantime::parse_duration)]
    pub repair_scan_interval: Duration,
    /// How long a chunk stays unreferenced, and a chunk file unrecorded, before garbage
    /// collection deletes it. The same on every gateway of a cluster.
    #[arg(long, env = "SDFBS_GC_GRACE", default_value = "10m", value_parser = humantime::parse_duration)]
    pub gc_grace: Duration,
    /// How often garbage collection runs.
    #[arg(long, env = "SDFBS_GC_INTERVAL", default_value = "1m", value_parser = humantime::parse_duration)]
    pub gc_interval: Duration,
    /// Every node's files are checked against the chunk records at least this often.
    #[arg(long, env = "SDFBS_AUDIT_INTERVAL", default_value = "1h", value_parser = humantime::parse_duration)]
    pub audit_interval: Duration,
    /// Multipart uploads with no activity for longer than this are aborted.
    #[arg(long, env = "SDFBS_MULTIPART_MAX_AGE", default_value = "7days", value_parser = humantime::parse_duration)]
    pub multipart_max_age: Duration,
}

impl ServeArgs {
    /// The background workers' settings these flags give.
    pub fn workers(&self) -> sdfbs_gateway::cluster::workers::WorkerConfig {
        sdfbs_gateway::cluster::workers::WorkerConfig {
            repair_rate: self.repair_rate.saturating_mul(1024 * 1024),
            repair_scan_interval: self.repair_scan_interval,
            gc_grace: self.gc_grace,
            gc_interval: self.gc_interval,
            audit_interval: self.audit_interval,
            multipart_max_age: self.multipart_max_age,
            ..Default::default()
        }
    }
}

#[derive(Args, Debug)]
pub struct GatewayArgs {
    /// Metadata store: `embedded:PATH` (one gateway) or `scylla:HOST[,HOST...]/KEYSPACE`
    /// (required, here or in the --config file).
    #[arg(long, env = "SDFBS_METADATA")]
    pub metadata: Option<String>,
    /// Secret shared with the chunkd nodes. Default: generated once and kept in metadata.
    #[arg(long, env = "SDFBS_CLUSTER_SECRET", hide_env_values = true)]
    pub cluster_secret: Option<String>,
    #[command(flatten)]
    pub serve: ServeArgs,
}

#[derive(Args, Debug)]
pub struct DevArgs {
    /// Where the metadata and the nodes' chunks are kept (reused by the next run).
    #[arg(long, env = "SDFBS_DATA_DIR", default_value = "./sdfbs-data")]
    pub data_dir: PathBuf,
    /// Metadata store: `scylla:HOST[,HOST...]/KEYSPACE` to try the Cassandra/ScyllaDB backend
    /// (`embedded:PATH` also works). Default: embedded, in DATA_DIR/meta.redb.
    #[arg(long, env = "SDFBS_METADATA")]
    pub metadata: Option<String>,
    /// Number of chunkd nodes to run.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u16).range(1..=32))]
    pub nodes: u16,
    #[command(flatten)]
    pub serve: ServeArgs,
}

#[derive(Args, Debug)]
pub struct KeyArgs {
    #[command(flatten)]
    pub api: AdminApiArgs,
    #[command(subcommand)]
    pub command: KeyCommand,
}

/// Where the admin API of a running gateway is, for the CLI subcommands.
#[derive(Args, Debug, Clone)]
pub struct AdminApiArgs {
    /// Admin port of the running gateway.
    #[arg(
        long,
        env = "SDFBS_ADMIN_URL",
        default_value = "http://127.0.0.1:8080",
        global = true
    )]
    pub admin_url: String,
    /// Admin token (printed by `sdfbs dev`).
    #[arg(long, env = "SDFBS_ADMIN_TOKEN", hide_env_values = true, global = true)]
    pub admin_token: Option<String>,
}

#[derive(Args, Debug)]
pub struct NodeArgs {
    #[command(flatten)]
    pub api: AdminApiArgs,
    #[command(subcommand)]
    pub command: NodeCommand,
}

#[derive(Subcommand, Debug)]
pub enum NodeCommand {
    /// Every node with its state, heartbeat age, capacity and chunk count.
    List,
    /// Move every chunk off NODE (it takes no new chunk); then it can be removed.
    Drain { node: String },
    /// Put a Draining or Removed node back in service.
    Undrain { node: String },
    /// Take NODE out of the cluster; refused while it holds the only healthy copy of a chunk.
    Remove { node: String },
    /// The history of state changes, newest first (of NODE, or of every node).
    Events { node: Option<String> },
}

#[derive(Args, Debug)]
pub struct RepairArgs {
    #[command(flatten)]
    pub api: AdminApiArgs,
    #[command(subcommand)]
    pub command: RepairCommand,
}

#[derive(Subcommand, Debug)]
pub enum RepairCommand {
    /// Repair and garbage-collection progress, draining nodes, and every lost chunk.
    Status,
}

#[derive(Subcommand, Debug)]
pub enum KeyCommand {
    /// Create an access key; prints its id and secret (the secret is shown only once).
    Create {
        name: String,
        /// Allow the key to create buckets (it becomes Owner of the buckets it creates).
        #[arg(long)]
        can_create_buckets: bool,
    },
    /// List access keys and their permissions (no secrets).
    List,
    /// Delete an access key.
    Delete { id: String },
    /// Give a key a permission on a bucket: read, write, owner, or none to remove it.
    Allow {
        id: String,
        bucket: String,
        #[arg(value_parser = ["read", "write", "owner", "none"])]
        permission: String,
    },
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn gateway_flags_parse() {
        let cli = Cli::try_parse_from([
            "sdfbs",
            "gateway",
            "--metadata",
            "embedded:/tmp/m.redb",
            "--cluster-secret",
            "s",
            "--s3-listen",
            "127.0.0.1:0",
            "--node-down-after",
            "3s",
            "--s3-domain",
            "s3.example.com",
            "--s3-domain",
            "s3.internal,s3.lan",
        ])
        .map_err(|e| e.to_string());
        let Ok(Cli {
            command: Command::Gateway(g),
            ..
        }) = cli
        else {
            panic!("did not parse: {cli:?}");
        };
        assert_eq!(g.serve.node_down_after, Duration::from_secs(3));
        assert_eq!(g.serve.s3_listen.port(), 0);
        assert_eq!(g.serve.replication, 2);
        assert_eq!(
            g.serve.s3_domains,
            ["s3.example.com", "s3.internal", "s3.lan"]
        );
    }

    #[test]
    fn dev_takes_an_optional_metadata_store() {
        let parse = |argv: &[&str]| match Cli::try_parse_from(argv) {
            Ok(Cli {
                command: Command::Dev(d),
                ..
            }) => d,
            other => panic!("did not parse as dev: {other:?}"),
        };
        assert_eq!(parse(&["sdfbs", "dev"]).metadata, None);
        let d = parse(&["sdfbs", "dev", "--metadata", "scylla:127.0.0.1:9042/ks"]);
        assert_eq!(d.metadata.as_deref(), Some("scylla:127.0.0.1:9042/ks"));
    }
}
