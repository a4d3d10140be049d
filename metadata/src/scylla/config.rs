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
}

impl ScyllaConfig {
    /// Parses `host1:9042,host2/keyspace` (the keyspace part is optional and defaults to
    /// `sdfbs`). Replication defaults to `SimpleStrategy` factor 1, consistency to
    /// `LOCAL_QUORUM` / `LOCAL_SERIAL`.
    pub fn from_spec(spec: &str) -> Result<ScyllaConfig> {
        let spec = spec.trim();
        let spec = spec.strip_prefix("scylla://").unwrap_or(spec);
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
        Ok(ScyllaConfig {
            hosts,
            keyspace,
            replication: Replication::default(),
            consistency: Consistency::LocalQuorum,
            serial_consistency: SerialConsistency::LocalSerial,
            username: None,
            password: None,
            connect_timeout: Duration::from_secs(10),
        })
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
