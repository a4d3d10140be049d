//! The optional configuration file (`--config FILE`, or `SDFBS_CONFIG`): TOML with the same
//! names as the flags, for `sdfbs gateway` and `sdfbs dev`.
//!
//! ```toml
//! metadata = "embedded:/var/lib/sdfbs/meta.redb"   # gateway; dev: optional, e.g. "scylla:..."
//! cluster_secret = "..."                           # gateway; keep the file private
//! s3_listen = "0.0.0.0:9000"
//! admin_listen = "127.0.0.1:8080"
//! replication = 2
//! region = "us-east-1"
//! s3_domain = ["s3.example.com"]                   # virtual-hosted-style BUCKET.s3.example.com
//! node_down_after = "10s"
//! heartbeat_interval = "2s"
//! data_dir = "./sdfbs-data"                        # dev
//! nodes = 3                                        # dev
//! ```
//!
//! Precedence: a flag, then its `SDFBS_*` variable, then the file, then the built-in default. A
//! file value therefore only replaces a setting clap filled from its default. Unknown names are
//! an error (a typo must not be silently ignored).

use crate::cli::{DevArgs, GatewayArgs, ServeArgs};
use anyhow::{bail, Context, Result};
use clap::parser::ValueSource;
use clap::ArgMatches;
use serde::Deserialize;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

#[derive(Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub metadata: Option<String>,
    pub cluster_secret: Option<String>,
    pub s3_listen: Option<SocketAddr>,
    pub admin_listen: Option<SocketAddr>,
    pub replication: Option<u16>,
    pub region: Option<String>,
    pub s3_domain: Option<Vec<String>>,
    pub node_down_after: Option<String>,
    pub heartbeat_interval: Option<String>,
    pub data_dir: Option<PathBuf>,
    pub nodes: Option<u16>,
}

/// Reads and parses a configuration file.
pub fn load(path: &Path) -> Result<FileConfig> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the configuration file {}", path.display()))?;
    parse(&text).with_context(|| format!("in the configuration file {}", path.display()))
}

pub fn parse(text: &str) -> Result<FileConfig> {
    Ok(toml::from_str(text)?)
}

/// Whether clap filled `id` from nothing but its default (so the file may replace it).
fn defaulted(matches: &ArgMatches, id: &str) -> bool {
    !matches!(
        matches.value_source(id),
        Some(ValueSource::CommandLine | ValueSource::EnvVariable)
    )
}

fn duration(name: &str, value: &str) -> Result<Duration> {
    humantime::parse_duration(value)
        .with_context(|| format!("{name} = {value:?} is not a duration like \"10s\""))
}

fn apply_serve(serve: &mut ServeArgs, file: &FileConfig, m: &ArgMatches) -> Result<()> {
    if let (Some(v), true) = (file.s3_listen, defaulted(m, "s3_listen")) {
        serve.s3_listen = v;
    }
    if let (Some(v), true) = (file.admin_listen, defaulted(m, "admin_listen")) {
        serve.admin_listen = v;
    }
    if let (Some(v), true) = (file.replication, defaulted(m, "replication")) {
        if !(1..=16).contains(&v) {
            bail!("replication = {v}: use 1 to 16");
        }
        serve.replication = v;
    }
    if let (Some(v), true) = (&file.region, defaulted(m, "region")) {
        serve.region = v.clone();
    }
    if let (Some(v), true) = (&file.s3_domain, defaulted(m, "s3_domains")) {
        serve.s3_domains = v.clone();
    }
    if let (Some(v), true) = (&file.node_down_after, defaulted(m, "node_down_after")) {
        serve.node_down_after = duration("node_down_after", v)?;
    }
    if let (Some(v), true) = (&file.heartbeat_interval, defaulted(m, "heartbeat_interval")) {
        serve.heartbeat_interval = duration("heartbeat_interval", v)?;
    }
    Ok(())
}

/// Fills the `gateway` settings that were not given by a flag or variable from the file.
pub fn apply_gateway(args: &mut GatewayArgs, file: &FileConfig, m: &ArgMatches) -> Result<()> {
    if file.data_dir.is_some() || file.nodes.is_some() {
        bail!("data_dir and nodes are settings of `sdfbs dev`, not of `sdfbs gateway`");
    }
    if args.metadata.is_none() {
        args.metadata = file.metadata.clone();
    }
    if args.cluster_secret.is_none() {
        args.cluster_secret = file.cluster_secret.clone();
    }
    apply_serve(&mut args.serve, file, m)
}

/// Fills the `dev` settings that were not given by a flag or variable from the file.
pub fn apply_dev(args: &mut DevArgs, file: &FileConfig, m: &ArgMatches) -> Result<()> {
    if file.cluster_secret.is_some() {
        bail!("cluster_secret is a setting of `sdfbs gateway`; `sdfbs dev` keeps its own in its metadata");
    }
    if args.metadata.is_none() {
        args.metadata = file.metadata.clone();
    }
    if let (Some(v), true) = (&file.data_dir, defaulted(m, "data_dir")) {
        args.data_dir = v.clone();
    }
    if let (Some(v), true) = (file.nodes, defaulted(m, "nodes")) {
        if !(1..=32).contains(&v) {
            bail!("nodes = {v}: use 1 to 32");
        }
        args.nodes = v;
    }
    apply_serve(&mut args.serve, file, m)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::{Cli, Command};
    use clap::{CommandFactory, FromArgMatches};

    fn gateway(argv: &[&str], file: &str) -> Result<GatewayArgs> {
        let matches = Cli::command().try_get_matches_from(argv)?;
        let cli = Cli::from_arg_matches(&matches)?;
        let (Command::Gateway(mut args), Some(("gateway", sub))) =
            (cli.command, matches.subcommand())
        else {
            bail!("not a gateway command");
        };
        apply_gateway(&mut args, &parse(file)?, sub)?;
        Ok(args)
    }

    #[test]
    fn the_file_fills_what_flags_did_not_set() -> Result<()> {
        let file = r#"
            metadata = "embedded:/srv/meta.redb"
            cluster_secret = "from-file"
            s3_listen = "0.0.0.0:9100"
            admin_listen = "127.0.0.1:8181"
            replication = 3
            node_down_after = "30s"
            s3_domain = ["s3.example.com"]
        "#;
        let args = gateway(
            &["sdfbs", "gateway", "--admin-listen", "127.0.0.1:7000"],
            file,
        )?;
        assert_eq!(args.metadata.as_deref(), Some("embedded:/srv/meta.redb"));
        assert_eq!(args.cluster_secret.as_deref(), Some("from-file"));
        assert_eq!(args.serve.s3_listen, "0.0.0.0:9100".parse()?);
        // The flag wins over the file.
        assert_eq!(args.serve.admin_listen, "127.0.0.1:7000".parse()?);
        assert_eq!(args.serve.replication, 3);
        assert_eq!(args.serve.node_down_after, Duration::from_secs(30));
        assert_eq!(args.serve.s3_domains, ["s3.example.com"]);
        // Untouched by flag and file: the default.
        assert_eq!(args.serve.region, "us-east-1");
        Ok(())
    }

    #[test]
    fn dev_takes_its_metadata_store_from_the_file_and_refuses_a_cluster_secret() -> Result<()> {
        let dev = |argv: &[&str], file: &str| -> Result<DevArgs> {
            let matches = Cli::command().try_get_matches_from(argv)?;
            let cli = Cli::from_arg_matches(&matches)?;
            let (Command::Dev(mut args), Some(("dev", sub))) = (cli.command, matches.subcommand())
            else {
                bail!("not a dev command");
            };
            apply_dev(&mut args, &parse(file)?, sub)?;
            Ok(args)
        };
        let file = "metadata = \"scylla:10.0.0.1/sdfbs\"";
        let args = dev(&["sdfbs", "dev"], file)?;
        assert_eq!(args.metadata.as_deref(), Some("scylla:10.0.0.1/sdfbs"));
        // The flag wins over the file.
        let args = dev(
            &["sdfbs", "dev", "--metadata", "embedded:/tmp/m.redb"],
            file,
        )?;
        assert_eq!(args.metadata.as_deref(), Some("embedded:/tmp/m.redb"));
        assert!(dev(&["sdfbs", "dev"], "cluster_secret = \"s\"").is_err());
        Ok(())
    }

    #[test]
    fn mistakes_in_the_file_are_errors() {
        assert!(
            parse("s3_listn = \"0.0.0.0:9000\"").is_err(),
            "unknown names are refused"
        );
        assert!(parse("replication = \"two\"").is_err());
        assert!(gateway(&["sdfbs", "gateway"], "node_down_after = \"soon\"").is_err());
        assert!(gateway(&["sdfbs", "gateway"], "nodes = 3").is_err());
        assert!(gateway(&["sdfbs", "gateway"], "replication = 0").is_err());
    }
}
