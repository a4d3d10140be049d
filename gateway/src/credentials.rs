//! Credentials bootstrap: the root S3 key, the admin token and the cluster secret.
//!
//! Each comes from the environment (`SDFBS_ROOT_ACCESS_KEY` + `SDFBS_ROOT_SECRET_KEY`,
//! `SDFBS_ADMIN_TOKEN`, `SDFBS_CLUSTER_SECRET` / flags) or, when not given, is generated at
//! first start and kept in the metadata store's settings (`setting_get_or_init`, atomic, so
//! several gateways starting together agree on one value) and is then the same at every
//! restart. A freshly generated value is printed once, on stdout, for the operator.
//!
//! The root key is also an `access_keys` record with `is_root = true`: that is what the S3
//! layer authenticates against.

use rand::distributions::{Alphanumeric, DistString};
use rand::Rng;
use sdfbs_metadata::{now_millis, AccessKeyRecord, MetaError, MetadataStore};
use std::collections::BTreeMap;

const SETTING_ROOT_ACCESS_KEY: &str = "root_access_key_id";
const SETTING_ROOT_SECRET_KEY: &str = "root_secret_key";
const SETTING_ADMIN_TOKEN: &str = "admin_token";
const SETTING_CLUSTER_SECRET: &str = "cluster_secret";

/// The secrets a gateway runs with.
#[derive(Clone)]
pub struct Credentials {
    pub root_access_key: String,
    pub root_secret_key: String,
    pub admin_token: String,
    pub cluster_secret: String,
}

impl std::fmt::Debug for Credentials {
    // Never print secrets by accident.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("root_access_key", &self.root_access_key)
            .finish_non_exhaustive()
    }
}

/// What the operator supplied; `None` means "generate once and keep".
#[derive(Clone, Debug, Default)]
pub struct Given {
    pub root_access_key: Option<String>,
    pub root_secret_key: Option<String>,
    pub admin_token: Option<String>,
    pub cluster_secret: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum CredentialsError {
    #[error("set both SDFBS_ROOT_ACCESS_KEY and SDFBS_ROOT_SECRET_KEY, or neither (to use the generated root key)")]
    HalfRootKey,
    #[error("{0} must not be empty")]
    Empty(&'static str),
    #[error(transparent)]
    Metadata(#[from] MetaError),
}

/// Resolves every credential and makes sure the root key record exists and matches.
pub async fn bootstrap(
    meta: &dyn MetadataStore,
    given: Given,
) -> Result<Credentials, CredentialsError> {
    let (root_access_key, root_secret_key) = match (given.root_access_key, given.root_secret_key) {
        (Some(a), Some(s)) => {
            non_empty(&a, "SDFBS_ROOT_ACCESS_KEY")?;
            non_empty(&s, "SDFBS_ROOT_SECRET_KEY")?;
            (a, s)
        }
        (None, None) => (
            kept(
                meta,
                SETTING_ROOT_ACCESS_KEY,
                new_access_key_id(),
                "root access key",
            )
            .await?,
            kept(
                meta,
                SETTING_ROOT_SECRET_KEY,
                new_secret(40),
                "root secret key",
            )
            .await?,
        ),
        _ => return Err(CredentialsError::HalfRootKey),
    };
    let admin_token = match given.admin_token {
        Some(t) => non_empty(&t, "SDFBS_ADMIN_TOKEN").map(|_| t)?,
        None => kept(meta, SETTING_ADMIN_TOKEN, new_secret(32), "admin token").await?,
    };
    let cluster_secret = match given.cluster_secret {
        Some(t) => non_empty(&t, "the cluster secret").map(|_| t)?,
        None => {
            kept(
                meta,
                SETTING_CLUSTER_SECRET,
                new_secret(32),
                "cluster secret",
            )
            .await?
        }
    };
    ensure_root_key(meta, &root_access_key, &root_secret_key).await?;
    Ok(Credentials {
        root_access_key,
        root_secret_key,
        admin_token,
        cluster_secret,
    })
}

fn non_empty(value: &str, what: &'static str) -> Result<(), CredentialsError> {
    if value.is_empty() {
        Err(CredentialsError::Empty(what))
    } else {
        Ok(())
    }
}

/// The stored value of a setting, storing `candidate` first if there is none (and printing it
/// then: this is the one time the operator sees a generated secret).
async fn kept(
    meta: &dyn MetadataStore,
    setting: &str,
    candidate: String,
    what: &str,
) -> Result<String, MetaError> {
    let value = meta.setting_get_or_init(setting, &candidate).await?;
    if value == candidate {
        println!("sdfbs: generated {what} (kept in the metadata store): {value}");
    }
    Ok(value)
}

/// Creates the root key record, or replaces it when its secret or root flag differ (the
/// operator changed SDFBS_ROOT_SECRET_KEY), and removes any other root key.
async fn ensure_root_key(
    meta: &dyn MetadataStore,
    access_key: &str,
    secret_key: &str,
) -> Result<(), MetaError> {
    let record = AccessKeyRecord {
        access_key_id: access_key.to_string(),
        secret_key: secret_key.to_string(),
        name: "root".to_string(),
        created: now_millis(),
        is_root: true,
        permissions: BTreeMap::new(),
        can_create_buckets: true,
    };
    match meta.get_access_key(access_key).await? {
        Some(existing) if existing.is_root && existing.secret_key == secret_key => {}
        Some(_) => {
            tracing::info!(access_key_id = %access_key, "replacing the root key record");
            meta.delete_access_key(access_key).await?;
            create_tolerating_race(meta, record).await?;
        }
        None => create_tolerating_race(meta, record).await?,
    }
    // There is one root key: a previous one (the operator changed SDFBS_ROOT_ACCESS_KEY) must
    // stop working, or a key believed retired would keep full access.
    for key in meta.list_access_keys().await? {
        if key.is_root && key.access_key_id != access_key {
            tracing::warn!(access_key_id = %key.access_key_id, "removing the previous root key");
            match meta.delete_access_key(&key.access_key_id).await {
                Ok(()) | Err(MetaError::NoSuchAccessKey(_)) => {}
                Err(e) => return Err(e),
            }
        }
    }
    Ok(())
}

async fn create_tolerating_race(
    meta: &dyn MetadataStore,
    record: AccessKeyRecord,
) -> Result<(), MetaError> {
    match meta.create_access_key(record).await {
        // Another gateway starting at the same moment created it.
        Ok(()) | Err(MetaError::KeyAlreadyExists(_)) => Ok(()),
        Err(e) => Err(e),
    }
}

/// An access key id in the AWS style: 20 upper-case letters and digits, starting `SDFB`.
pub fn new_access_key_id() -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let mut rng = rand::thread_rng();
    let tail: String = (0..16)
        .map(|_| ALPHABET[rng.gen_range(0..ALPHABET.len())] as char)
        .collect();
    format!("SDFB{tail}")
}

/// A random secret of `len` letters and digits (from the OS-seeded CSPRNG).
pub fn new_secret(len: usize) -> String {
    Alphanumeric.sample_string(&mut rand::thread_rng(), len)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_ids_look_like_aws_keys() {
        let id = new_access_key_id();
        assert_eq!(id.len(), 20);
        assert!(id.starts_with("SDFB"));
        assert!(id
            .bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit()));
        assert_ne!(new_secret(40), new_secret(40));
        assert_eq!(new_secret(40).len(), 40);
    }
}
