//! Connection settings of the Scylla backend: which nodes, which keyspace, how the keyspace is
//! replicated and at which consistency the statements run.
//!
//! The gateway builds a config from one string (`--metadata scylla://...` or an environment
//! variable) with [`ScyllaConfig::from_spec`], then adjusts the public fields if its own
//! configuration says more (replication for production, credentials).

use crate::{MetaError, Result};
use ::scylla::statement::{Consistency, SerialConsistency};
use std::collections::BTreeMap;
use std::time::Duration;

/// The CQL port a host without an explicit port is reached on.
pub const DEFAULT_PORT: u16 = 9042;
/// The keyspace used when the spec names none.
pub const DEFAULT_KEYSPACE: &str = "sdfbs";

/// How the keyspace is replicated (used only when the keyspace is created; an existing
/// keyspace is never altered).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Replication {
    /// `SimpleStrategy` with this replication factor: one datacenter, development and tests.
    Simple { factor: u32 },
    /// `NetworkTopologyStrategy`: datacenter name to replication factor, for production.
    NetworkTopology { datacenters: BTreeMap<String, u32> },
}

impl Default for Replication {
    fn default() -> Self {
        Replication::Simple { factor: 1 }
    }
}

impl Replication {
    /// The CQL map literal of `WITH replication = ...`. Datacenter names are quoted as CQL
    /// string literals (a `'` is doubled), so no name can change the statement.
    pub fn to_cql(&self) -> String {
        match self {
            Replication::Simple { factor } => {
                format!("{{'class': 'SimpleStrategy', 'replication_factor': {factor}}}")
            }
            Replication::NetworkTopology { datacenters } => {
                let mut out = String::from("{'class': 'NetworkTopologyStrategy'");
                for (dc, factor) in datacenters {
                    out.push_str(&format!(", '{}': {factor}", dc.replace('\'', "''")));
                }
                out.push('}');
                out
            }
        }
    }
}

/// Everything [`super::ScyllaStore::connect`] needs.
#[derive(Clone, Debug)]
pub struct ScyllaConfig {
    /// Contact points, `host:port` (a host without a port gets 9042; IPv6 as `[addr]:port`).
    pub hosts: Vec<String>,
    /// Keyspace holding the tables; lower case letters, digits and `_`, at most 48 characters.
    pub keyspace: String,
    pub replication: Replication,
    /// Consistency of every read and write (default `LOCAL_QUORUM`).
    pub consistency: Consistency,
    /// Consistency of the Paxos phase of lightweight transactions (default `LOCAL_SERIAL`).
    pub serial_consistency: SerialConsistency,
    /// Password authentication, when the cluster requires it.
    pub username: Option<String>,
    pub password: Option<String>,
    /// How long to wait for the first connection to a contact point.
    pub connect_timeout: Duration,
    /// The datacenter this gateway runs in: requests go to its nodes only (datacenter-aware
    /// load balancing, no failover to a remote one), which is what `LOCAL_QUORUM` and
    /// `LOCAL_SERIAL` assume. `None`: every node is a candidate (one datacenter).
    pub local_datacenter: Option<String>,
    /// How long the client waits for a lightweight transaction (commits, part records, upload
    /// states) before it treats the answer as lost; `None`: the driver's default. Whatever it
    /// is, an LWT whose answer is lost is settled by a serial read, never assumed failed (the
    /// tests set it very short to make answers get lost).
    pub lwt_timeout: Option<Duration>,
}

impl ScyllaConfig {
    /// Parses `host1:9042,host2/keyspace?option=value&...` (the keyspace part is optional and
    /// defaults to `sdfbs`). Replication defaults to `SimpleStrategy` factor 1, consistency to
    /// `LOCAL_QUORUM` / `LOCAL_SERIAL`. Options, for production clusters:
    /// * `replication=3` (`SimpleStrategy`, one datacenter) or `replication=dc1:3,dc2:3`
    ///   (`NetworkTopologyStrategy`); used only when the keyspace is created;
    /// * `local_dc=dc1`: datacenter-aware load balancing (see `local_datacenter`);
    /// * `username=NAME` with `password_file=PATH` (the file's first line; the gateway also
    ///   takes the password from `SDFBS_SCYLLA_PASSWORD`), so no secret sits on a command line.
    pub fn from_spec(spec: &str) -> Result<ScyllaConfig> {
        let spec = spec.trim();
        let spec = spec.strip_prefix("scylla://").unwrap_or(spec);
        let (spec, options) = match spec.split_once('?') {
            Some((spec, options)) => (spec, Some(options)),
            None => (spec, None),
        };
        let (hosts_part, keyspace) = match spec.rsplit_once('/') {
            Some((hosts, ks)) => (hosts, ks.trim()),
            None => (spec, DEFAULT_KEYSPACE),
        };
        let keyspace = validate_keyspace(if keyspace.is_empty() {
            DEFAULT_KEYSPACE
        } else {
            keyspace
        })?;
        let mut hosts = Vec::new();
        for host in hosts_part.split(',') {
            let host = host.trim();
            if host.is_empty() {
                continue;
            }
            hosts.push(with_default_port(host)?);
        }
        if hosts.is_empty() {
            return Err(invalid(
                spec,
                "it names no host (expected `host1:9042,host2/keyspace`)",
            ));
        }
        let mut config = ScyllaConfig {
            hosts,
            keyspace,
            replication: Replication::default(),
            consistency: Consistency::LocalQuorum,
            serial_consistency: SerialConsistency::LocalSerial,
            username: None,
            password: None,
            connect_timeout: Duration::from_secs(10),
            local_datacenter: None,
            lwt_timeout: None,
        };
        for option in options.into_iter().flat_map(|o| o.split('&')) {
            config.apply_option(spec, option)?;
        }
        Ok(config)
    }

    /// One `name=value` option of a spec.
    fn apply_option(&mut self, spec: &str, option: &str) -> Result<()> {
        let (name, value) = option.split_once('=').unwrap_or((option, ""));
        let value = value.trim();
        match name.trim() {
            "replication" => self.replication = parse_replication(spec, value)?,
            "local_dc" if !value.is_empty() => self.local_datacenter = Some(value.to_owned()),
            "username" if !value.is_empty() => self.username = Some(value.to_owned()),
            "password_file" => {
                let text = std::fs::read_to_string(value).map_err(|e| {
                    invalid(spec, &format!("cannot read the password file `{value}`: {e}"))
                })?;
                let password = text.lines().next().unwrap_or("").to_owned();
                self.password = Some(password);
            }
            "" => {}
            other => {
                return Err(invalid(
                    spec,
                    &format!(
                        "unknown option `{other}` (known: replication, local_dc, username, password_file)"
                    ),
                ))
            }
        }
        Ok(())
    }

    /// The consistency a read must use to see the outcome of lightweight transactions that
    /// are still in flight (a "serial read": it completes any unfinished Paxos round first).
    pub(crate) fn serial_read_consistency(&self) -> Consistency {
        match self.serial_consistency {
            SerialConsistency::Serial => Consistency::Serial,
            SerialConsistency::LocalSerial => Consistency::LocalSerial,
        }
    }
}

/// `3` or `dc1:3,dc2:3`.
fn parse_replication(spec: &str, value: &str) -> Result<Replication> {
    let factor = |f: &str| {
        match f.trim().parse::<u32>() {
        Ok(n) if (1..=32).contains(&n) => Ok(n),
        _ => Err(invalid(
            spec,
            "a replication factor is a number from 1 to 32 (`replication=3` or `replication=dc1:3,dc2:3`)",
        )),
    }
    };
    if !value.contains(':') {
        return Ok(Replication::Simple {
            factor: factor(value)?,
        });
    }
    let mut datacenters = BTreeMap::new();
    for pair in value.split(',') {
        let (dc, n) = pair
            .split_once(':')
            .ok_or_else(|| invalid(spec, "replication per datacenter is `dc1:3,dc2:3`"))?;
        let dc = dc.trim();
        if dc.is_empty() {
            return Err(invalid(spec, "a datacenter name is empty"));
        }
        datacenters.insert(dc.to_owned(), factor(n)?);
    }
    Ok(Replication::NetworkTopology { datacenters })
}

fn invalid(spec: &str, why: &str) -> MetaError {
    MetaError::Backend(format!("invalid Scylla spec `{spec}`: {why}"))
}

/// Adds `:9042` to a host that has no port. Handles `[v6]:port`, `[v6]`, bare IPv6.
fn with_default_port(host: &str) -> Result<String> {
    if let Some(rest) = host.strip_prefix('[') {
        return match rest.split_once(']') {
            Some((_, "")) => Ok(format!("{host}:{DEFAULT_PORT}")),
            Some((_, port)) if port.starts_with(':') => {
                check_port(host, &port[1..])?;
                Ok(host.to_owned())
            }
            _ => Err(invalid(host, "malformed bracketed IPv6 address")),
        };
    }
    match host.matches(':').count() {
        0 => Ok(format!("{host}:{DEFAULT_PORT}")),
        1 => {
            let (_, port) = host.split_once(':').unwrap_or((host, ""));
            check_port(host, port)?;
            Ok(host.to_owned())
        }
        // A bare IPv6 address: it cannot carry a port without brackets.
        _ => Ok(format!("[{host}]:{DEFAULT_PORT}")),
    }
}

fn check_port(host: &str, port: &str) -> Result<()> {
    match port.parse::<u16>() {
        Ok(p) if p > 0 => Ok(()),
        _ => Err(invalid(
            host,
            "the port is not a number between 1 and 65535",
        )),
    }
}

/// Keyspace names are substituted into CQL text, so only plain identifiers are accepted.
pub(crate) fn validate_keyspace(name: &str) -> Result<String> {
    let ok = !name.is_empty()
        && name.len() <= 48
        && name.starts_with(|c: char| c.is_ascii_alphabetic())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !ok {
        return Err(invalid(
            name,
            "the keyspace must be 1 to 48 letters, digits or `_`, starting with a letter",
        ));
    }
    Ok(name.to_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spec_with_ports_hosts_and_keyspace() {
        let c = ScyllaConfig::from_spec("host1:9043,host2/My_Ks").unwrap();
        assert_eq!(c.hosts, vec!["host1:9043", "host2:9042"]);
        assert_eq!(c.keyspace, "my_ks");
        assert_eq!(c.replication, Replication::Simple { factor: 1 });
        assert_eq!(c.consistency, Consistency::LocalQuorum);
        assert_eq!(c.serial_consistency, SerialConsistency::LocalSerial);
    }

    #[test]
    fn spec_defaults_and_ipv6() {
        let c = ScyllaConfig::from_spec("127.0.0.1").unwrap();
        assert_eq!(c.hosts, vec!["127.0.0.1:9042"]);
        assert_eq!(c.keyspace, DEFAULT_KEYSPACE);
        let c = ScyllaConfig::from_spec("[::1],[::1]:19042,::1/ks").unwrap();
        assert_eq!(c.hosts, vec!["[::1]:9042", "[::1]:19042", "[::1]:9042"]);
    }

    #[test]
    fn spec_rejects_bad_input() {
        assert!(ScyllaConfig::from_spec("/ks").is_err());
        assert!(ScyllaConfig::from_spec("h:notaport/ks").is_err());
        assert!(ScyllaConfig::from_spec("h/ks; DROP KEYSPACE x").is_err());
        assert!(ScyllaConfig::from_spec("h/1ks").is_err());
        assert!(ScyllaConfig::from_spec(&format!("h/{}", "k".repeat(49))).is_err());
    }

    #[test]
    fn spec_options() {
        let dir = std::env::temp_dir().join(format!("sdfbs-pw-{}", std::process::id()));
        std::fs::write(&dir, "s3cret\nignored\n").unwrap();
        let c = ScyllaConfig::from_spec(&format!(
            "h1,h2/ks?replication=dc1:3,dc2:2&local_dc=dc1&username=sdfbs&password_file={}",
            dir.display()
        ))
        .unwrap();
        std::fs::remove_file(&dir).unwrap();
        assert_eq!(c.hosts, vec!["h1:9042", "h2:9042"]);
        assert_eq!(c.keyspace, "ks");
        assert_eq!(
            c.replication,
            Replication::NetworkTopology {
                datacenters: BTreeMap::from([("dc1".to_owned(), 3), ("dc2".to_owned(), 2)])
            }
        );
        assert_eq!(c.local_datacenter.as_deref(), Some("dc1"));
        assert_eq!(c.username.as_deref(), Some("sdfbs"));
        assert_eq!(c.password.as_deref(), Some("s3cret"));
        let c = ScyllaConfig::from_spec("h/ks?replication=3").unwrap();
        assert_eq!(c.replication, Replication::Simple { factor: 3 });
        for bad in [
            "h/ks?replication=0",
            "h/ks?replication=dc1:x",
            "h/ks?replication=:3",
            "h/ks?colour=blue",
            "h/ks?password_file=/nonexistent/sdfbs",
        ] {
            assert!(ScyllaConfig::from_spec(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn replication_literals() {
        assert_eq!(
            Replication::Simple { factor: 3 }.to_cql(),
            "{'class': 'SimpleStrategy', 'replication_factor': 3}"
        );
        let dcs = BTreeMap::from([("dc1".to_owned(), 3), ("o'dc".to_owned(), 2)]);
        assert_eq!(
            Replication::NetworkTopology { datacenters: dcs }.to_cql(),
            "{'class': 'NetworkTopologyStrategy', 'dc1': 3, 'o''dc': 2}"
        );
    }
}
