//! Who may do what: SigV4 secrets from the `access_keys` table, and per-bucket permissions.
//!
//! s3s verifies every signature (header, presigned URL, aws-chunked chunks and trailers) with
//! the secret [`KeyStore`] returns; an unknown access key id is `InvalidAccessKeyId`, a wrong
//! signature `SignatureDoesNotMatch`. Anonymous requests are denied.
//!
//! [`Permissions`] then decides per operation: a root key may do everything; any other key
//! needs Read (get, head, list), Write (put, delete, copy, multipart) or Owner (delete the
//! bucket, anything else) on the bucket, `can_create_buckets` to create one (it becomes its
//! Owner), and ListBuckets shows only the buckets it may read. The key record is left in the
//! request's extensions as a [`Caller`] for the handlers (CopyObject checks Read on its source).

use crate::s3::error;
use s3s::access::{S3Access, S3AccessContext};
use s3s::auth::{S3Auth, SecretKey};
use s3s::{S3Error, S3ErrorCode, S3Request, S3Result};
use sdfbs_metadata::{AccessKeyRecord, MetadataStore, Permission};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Looks up SigV4 secrets in the metadata store.
pub struct KeyStore {
    pub meta: Arc<dyn MetadataStore>,
    pub handoff: KeyHandoff,
}

/// Key records just read by [`KeyStore`] for a request's signature, handed to [`Permissions`]
/// for the same request so that each request reads its access key once, not twice.
///
/// An entry is taken (removed) by the permission check that follows, and is never used once
/// it is older than `HANDOFF_TTL`: a record is reused only within one request's
/// authentication, never cached across requests, so a deleted key or a changed permission
/// applies to the very next request. Concurrent requests with the same key may take each
/// other's entry; both were read within the last moment, and a missing entry is read again.
#[derive(Clone, Default)]
pub struct KeyHandoff(
    Arc<std::sync::Mutex<std::collections::HashMap<String, (Instant, AccessKeyRecord)>>>,
);

const HANDOFF_TTL: Duration = Duration::from_secs(1);
/// Bound on waiting entries (requests whose signature check passed but whose permission check
/// has not run yet); beyond it, stale entries are dropped.
const HANDOFF_MAX: usize = 1024;

impl KeyHandoff {
    fn put(&self, record: AccessKeyRecord) {
        let mut map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() >= HANDOFF_MAX {
            map.retain(|_, (at, _)| at.elapsed() < HANDOFF_TTL);
        }
        if map.len() < HANDOFF_MAX {
            map.insert(record.access_key_id.clone(), (Instant::now(), record));
        }
    }

    fn take(&self, access_key: &str) -> Option<AccessKeyRecord> {
        let mut map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let (at, record) = map.remove(access_key)?;
        (at.elapsed() < HANDOFF_TTL).then_some(record)
    }
}

#[async_trait::async_trait]
impl S3Auth for KeyStore {
    async fn get_secret_key(&self, access_key: &str) -> S3Result<SecretKey> {
        match self
            .meta
            .get_access_key(access_key)
            .await
            .map_err(error::meta)?
        {
            Some(key) => {
                let secret = SecretKey::from(key.secret_key.clone());
                self.handoff.put(key);
                Ok(secret)
            }
            None => Err(unknown_key()),
        }
    }
}

fn unknown_key() -> S3Error {
    S3Error::with_message(
        S3ErrorCode::InvalidAccessKeyId,
        "The AWS access key Id you provided does not exist in our records.",
    )
}

/// The verified access key of a request, for the handlers.
#[derive(Clone, Debug)]
pub struct Caller(pub Arc<AccessKeyRecord>);

impl Caller {
    /// Whether this key holds at least `needed` on `bucket`.
    pub fn may(&self, bucket: &str, needed: Permission) -> bool {
        self.0.is_root || self.0.permissions.get(bucket).is_some_and(|p| *p >= needed)
    }

    pub fn access_key_id(&self) -> &str {
        &self.0.access_key_id
    }

    pub fn require(&self, bucket: &str, needed: Permission) -> S3Result<()> {
        if self.may(bucket, needed) {
            Ok(())
        } else {
            Err(access_denied(bucket, needed))
        }
    }
}

fn access_denied(bucket: &str, needed: Permission) -> S3Error {
    S3Error::with_message(
        S3ErrorCode::AccessDenied,
        format!("Access Denied: this access key needs {needed:?} permission on bucket `{bucket}`"),
    )
}

/// The caller of a request that passed [`Permissions::check`].
pub fn caller<T>(req: &S3Request<T>) -> S3Result<Caller> {
    req.extensions
        .get::<Caller>()
        .cloned()
        .ok_or_else(|| s3s::s3_error!(AccessDenied, "Signature is required"))
}

/// What an operation needs on its bucket, by S3 operation name.
pub fn needed_permission(operation: &str) -> Option<Permission> {
    Some(match operation {
        // Checked separately: every key may list (and sees only its buckets); creating needs
        // `can_create_buckets`.
        "ListBuckets" | "CreateBucket" => return None,
        "GetObject"
        | "GetObjectAttributes"
        | "HeadObject"
        | "HeadBucket"
        | "GetBucketLocation"
        | "GetBucketVersioning"
        | "ListObjects"
        | "ListObjectsV2"
        | "ListParts"
        | "ListMultipartUploads" => Permission::Read,
        "PutObject"
        | "DeleteObject"
        | "DeleteObjects"
        | "CopyObject"
        | "CreateMultipartUpload"
        | "UploadPart"
        | "UploadPartCopy"
        | "CompleteMultipartUpload"
        | "AbortMultipartUpload" => Permission::Write,
        _ => Permission::Owner,
    })
}

/// Per-bucket permissions of access keys.
pub struct Permissions {
    pub meta: Arc<dyn MetadataStore>,
    pub handoff: KeyHandoff,
}

#[async_trait::async_trait]
impl S3Access for Permissions {
    async fn check(&self, cx: &mut S3AccessContext<'_>) -> S3Result<()> {
        let Some(credentials) = cx.credentials() else {
            return Err(s3s::s3_error!(
                AccessDenied,
                "Anonymous access is not allowed; sign the request"
            ));
        };
        let access_key = credentials.access_key.clone();
        let record = match self.handoff.take(&access_key) {
            Some(record) => record,
            None => self
                .meta
                .get_access_key(&access_key)
                .await
                .map_err(error::meta)?
                .ok_or_else(unknown_key)?,
        };
        let caller = Caller(Arc::new(record));
        let operation = cx.s3_op().name().to_string();
        match needed_permission(&operation) {
            None if operation == "CreateBucket"
                && !(caller.0.is_root || caller.0.can_create_buckets) =>
            {
                return Err(s3s::s3_error!(
                    AccessDenied,
                    "Access Denied: this access key may not create buckets"
                ));
            }
            None => {}
            Some(needed) => {
                // Operations on the root path other than ListBuckets are unknown to us.
                let bucket = cx
                    .s3_path()
                    .get_bucket_name()
                    .unwrap_or_default()
                    .to_string();
                caller.require(&bucket, needed)?;
            }
        }
        cx.extensions_mut().insert(caller);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn record(id: &str) -> AccessKeyRecord {
        AccessKeyRecord {
            access_key_id: id.into(),
            secret_key: "SK".into(),
            name: "test".into(),
            created: 0,
            is_root: false,
            permissions: BTreeMap::new(),
            can_create_buckets: false,
        }
    }

    #[test]
    fn a_handed_off_key_is_taken_once_and_only_while_fresh() {
        let handoff = KeyHandoff::default();
        handoff.put(record("A"));
        assert!(handoff.take("B").is_none());
        assert_eq!(handoff.take("A").map(|r| r.access_key_id), Some("A".into()));
        assert!(handoff.take("A").is_none(), "an entry serves one request");

        // A stale entry (its request never reached the permission check) is not used.
        handoff.put(record("S"));
        handoff.0.lock().unwrap().get_mut("S").unwrap().0 -= HANDOFF_TTL;
        assert!(handoff.take("S").is_none());

        // Bounded: past HANDOFF_MAX waiting entries, new ones are not kept (their permission
        // check reads the key again) and stale ones are dropped.
        for i in 0..HANDOFF_MAX + 10 {
            handoff.put(record(&format!("K{i}")));
        }
        assert_eq!(handoff.0.lock().unwrap().len(), HANDOFF_MAX);
    }

    fn key(root: bool, perms: &[(&str, Permission)]) -> Caller {
        Caller(Arc::new(AccessKeyRecord {
            access_key_id: "AK".into(),
            secret_key: "SK".into(),
            name: "test".into(),
            created: 0,
            is_root: root,
            permissions: perms
                .iter()
                .map(|(b, p)| (b.to_string(), *p))
                .collect::<BTreeMap<_, _>>(),
            can_create_buckets: false,
        }))
    }

    #[test]
    fn permissions_are_ordered() {
        let k = key(false, &[("r", Permission::Read), ("w", Permission::Write)]);
        assert!(k.may("r", Permission::Read));
        assert!(!k.may("r", Permission::Write));
        assert!(k.may("w", Permission::Read));
        assert!(!k.may("w", Permission::Owner));
        assert!(!k.may("other", Permission::Read));
        assert!(key(true, &[]).may("any", Permission::Owner));
        let e = k.require("r", Permission::Write).unwrap_err();
        assert_eq!(*e.code(), S3ErrorCode::AccessDenied);
    }

    #[test]
    fn operations_need_the_right_permission() {
        assert_eq!(needed_permission("GetObject"), Some(Permission::Read));
        assert_eq!(
            needed_permission("GetObjectAttributes"),
            Some(Permission::Read)
        );
        assert_eq!(needed_permission("UploadPartCopy"), Some(Permission::Write));
        assert_eq!(needed_permission("DeleteBucket"), Some(Permission::Owner));
        assert_eq!(
            needed_permission("PutBucketPolicy"),
            Some(Permission::Owner)
        );
        assert_eq!(needed_permission("ListBuckets"), None);
        assert_eq!(
            needed_permission("GetBucketVersioning"),
            Some(Permission::Read)
        );
        assert_eq!(
            needed_permission("PutBucketVersioning"),
            Some(Permission::Owner)
        );
    }
}
