//! The admin port: what chunkd nodes, monitoring and the `sdfbs key` CLI talk to.
//!
//! | request | auth | answer |
//! | --- | --- | --- |
//! | `POST /cluster/heartbeat` | cluster secret | 204; registers the node on its first heartbeat |
//! | `GET /health` | none | 200 `{"status":"ok","nodes_up":N,...}` |
//! | `GET /cluster/nodes` | admin token | 200 the nodes with their derived states |
//! | `POST /admin/keys` `{"name","can_create_buckets"}` | admin token | 201 the new key, secret included (shown once) |
//! | `GET /admin/keys` | admin token | 200 the keys, secrets left out |
//! | `DELETE /admin/keys/{id}` | admin token | 204 |
//! | `PUT /admin/keys/{id}/permissions/{bucket}` `{"permission":"read"\|"write"\|"owner"\|null}` | admin token | 204 |
//! | `POST /cluster/nodes/{id}/drain`, `.../undrain`, `.../remove` | admin token | 200 the node; 409 `NodeHoldsLastCopy` for a remove that would lose data |
//! | `GET /cluster/nodes/{id}/events`, `GET /cluster/events` | admin token | 200 state changes, newest first |
//! | `GET /cluster/repair` | admin token | 200 repair, audit and GC progress, draining nodes, lost chunks |
//!
//! Credentials travel only in the `Authorization: Bearer` header, never in a URL, and are
//! compared in constant time. Errors are JSON `{"code","message"}`.

mod nodes;

use crate::cluster::membership::{heartbeat_record, Membership, NodeState};
use crate::cluster::workers::WorkerContext;
use bytes::Bytes;
use http::{header, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use sdfbs_metadata::{now_millis, AccessKeyRecord, MetaError, MetadataStore, Permission};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::Arc;

/// Largest request body the admin port reads.
const MAX_BODY: usize = 64 * 1024;

/// The admin port's handler.
pub struct Admin {
    pub meta: Arc<dyn MetadataStore>,
    pub membership: Arc<Membership>,
    pub cluster_secret: String,
    pub admin_token: String,
    pub replication: usize,
    /// The background workers (their status; they run here only while this gateway leads).
    pub workers: Arc<WorkerContext>,
}

type Answer = Response<Full<Bytes>>;

/// An error answer: status, machine-readable code, and a message telling what to do.
pub(crate) struct Failure(StatusCode, &'static str, String);

impl Admin {
    /// Serves one request. Never fails: every problem becomes a JSON error answer.
    pub async fn handle(self: Arc<Self>, req: Request<Incoming>) -> Result<Answer, hyper::Error> {
        Ok(self
            .route(req)
            .await
            .unwrap_or_else(|Failure(status, code, message)| {
                json(
                    status,
                    &serde_json::json!({ "code": code, "message": message }),
                )
            }))
    }

    async fn route(&self, req: Request<Incoming>) -> Result<Answer, Failure> {
        let path = req.uri().path().to_string();
        let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
        match (req.method().clone(), segments.as_slice()) {
            (Method::GET, ["health"]) => Ok(self.health()),
            (Method::POST, ["cluster", "heartbeat"]) => {
                require_bearer(&req, &self.cluster_secret, "cluster secret")?;
                self.heartbeat(req).await
            }
            (Method::GET, ["cluster", "nodes"]) => {
                self.require_admin(&req)?;
                Ok(json(StatusCode::OK, &self.membership.all_nodes()))
            }
            (Method::POST, ["cluster", "nodes", id, action]) => {
                self.require_admin(&req)?;
                self.node_action(id, action).await
            }
            (Method::GET, ["cluster", "nodes", id, "events"]) => {
                self.require_admin(&req)?;
                self.events(Some(id)).await
            }
            (Method::GET, ["cluster", "events"]) => {
                self.require_admin(&req)?;
                self.events(None).await
            }
            (Method::GET, ["cluster", "repair"]) => {
                self.require_admin(&req)?;
                Ok(json(StatusCode::OK, &self.repair_status()))
            }
            (Method::POST, ["admin", "keys"]) => {
                self.require_admin(&req)?;
                self.create_key(req).await
            }
            (Method::GET, ["admin", "keys"]) => {
                self.require_admin(&req)?;
                self.list_keys().await
            }
            (Method::DELETE, ["admin", "keys", id]) => {
                self.require_admin(&req)?;
                self.delete_key(id).await
            }
            (Method::PUT, ["admin", "keys", id, "permissions", bucket]) => {
                self.require_admin(&req)?;
                let (id, bucket) = (id.to_string(), bucket.to_string());
                self.set_permission(&id, &bucket, req).await
            }
            _ => Err(Failure(
                StatusCode::NOT_FOUND,
                "NotFound",
                format!("no admin endpoint {} {path}", req.method()),
            )),
        }
    }

    fn require_admin(&self, req: &Request<Incoming>) -> Result<(), Failure> {
        require_bearer(req, &self.admin_token, "admin token")
    }

    fn health(&self) -> Answer {
        let nodes = self.membership.nodes();
        let count = |s: NodeState| nodes.iter().filter(|n| n.state == s).count();
        json(
            StatusCode::OK,
            &serde_json::json!({
                "status": "ok",
                "version": env!("CARGO_PKG_VERSION"),
                "nodes_up": count(NodeState::Up),
                "nodes_suspect": count(NodeState::Suspect),
                "nodes_down": count(NodeState::Down),
                "nodes_total": nodes.len(),
                "replication": self.replication,
            }),
        )
    }

    async fn heartbeat(&self, req: Request<Incoming>) -> Result<Answer, Failure> {
        let hb: chunkd::wire::Heartbeat = read_json(req).await?;
        if hb.health.node_id.is_empty() || !hb.address.starts_with("http://") {
            return Err(Failure(
                StatusCode::BAD_REQUEST,
                "InvalidHeartbeat",
                "a heartbeat needs a node_id and an http:// address".into(),
            ));
        }
        self.membership
            .record_heartbeat(heartbeat_record(hb))
            .await
            .map_err(meta_failure)?;
        Ok(empty(StatusCode::NO_CONTENT))
    }

    async fn create_key(&self, req: Request<Incoming>) -> Result<Answer, Failure> {
        #[derive(Deserialize)]
        struct NewKey {
            name: String,
            #[serde(default)]
            can_create_buckets: bool,
        }
        let new: NewKey = read_json(req).await?;
        let record = AccessKeyRecord {
            access_key_id: crate::credentials::new_access_key_id(),
            secret_key: crate::credentials::new_secret(40),
            name: new.name,
            created: now_millis(),
            is_root: false,
            permissions: BTreeMap::new(),
            can_create_buckets: new.can_create_buckets,
        };
        self.meta
            .create_access_key(record.clone())
            .await
            .map_err(meta_failure)?;
        tracing::info!(access_key_id = %record.access_key_id, name = %record.name, "access key created");
        Ok(json(
            StatusCode::CREATED,
            &serde_json::json!({
                "access_key_id": record.access_key_id,
                "secret_key": record.secret_key,
                "name": record.name,
                "can_create_buckets": record.can_create_buckets,
            }),
        ))
    }

    async fn list_keys(&self) -> Result<Answer, Failure> {
        let keys = self.meta.list_access_keys().await.map_err(meta_failure)?;
        let keys: Vec<KeySummary> = keys.into_iter().map(KeySummary::from).collect();
        Ok(json(StatusCode::OK, &keys))
    }

    async fn delete_key(&self, id: &str) -> Result<Answer, Failure> {
        match self.meta.get_access_key(id).await.map_err(meta_failure)? {
            None => Err(meta_failure(MetaError::NoSuchAccessKey(id.to_string()))),
            Some(k) if k.is_root => Err(Failure(
                StatusCode::CONFLICT,
                "RootKey",
                "the root key cannot be deleted; set SDFBS_ROOT_ACCESS_KEY/SDFBS_ROOT_SECRET_KEY to replace it".into(),
            )),
            Some(_) => {
                self.meta.delete_access_key(id).await.map_err(meta_failure)?;
                tracing::info!(access_key_id = %id, "access key deleted");
                Ok(empty(StatusCode::NO_CONTENT))
            }
        }
    }

    async fn set_permission(
        &self,
        id: &str,
        bucket: &str,
        req: Request<Incoming>,
    ) -> Result<Answer, Failure> {
        #[derive(Deserialize)]
        struct Grant {
            permission: Option<String>,
        }
        let grant: Grant = read_json(req).await?;
        let permission = match grant.permission.as_deref() {
            None | Some("none") => None,
            Some(p) => Some(parse_permission(p).ok_or_else(|| {
                Failure(
                    StatusCode::BAD_REQUEST,
                    "InvalidPermission",
                    format!("unknown permission {p:?}: use read, write, owner or none"),
                )
            })?),
        };
        self.meta
            .set_permission(id, bucket, permission)
            .await
            .map_err(meta_failure)?;
        tracing::info!(access_key_id = %id, bucket, ?permission, "permission set");
        Ok(empty(StatusCode::NO_CONTENT))
    }
}

/// A key as `GET /admin/keys` lists it: everything but the secret.
#[derive(Serialize, Deserialize, Debug, Clone)]
pub struct KeySummary {
    pub access_key_id: String,
    pub name: String,
    pub created: i64,
    pub is_root: bool,
    pub can_create_buckets: bool,
    pub permissions: BTreeMap<String, String>,
}

impl From<AccessKeyRecord> for KeySummary {
    fn from(k: AccessKeyRecord) -> Self {
        KeySummary {
            access_key_id: k.access_key_id,
            name: k.name,
            created: k.created,
            is_root: k.is_root,
            can_create_buckets: k.can_create_buckets,
            permissions: k
                .permissions
                .into_iter()
                .map(|(b, p)| (b, permission_name(p).to_string()))
                .collect(),
        }
    }
}

/// `read`, `write` or `owner`.
pub fn parse_permission(s: &str) -> Option<Permission> {
    match s.to_ascii_lowercase().as_str() {
        "read" => Some(Permission::Read),
        "write" => Some(Permission::Write),
        "owner" => Some(Permission::Owner),
        _ => None,
    }
}

pub fn permission_name(p: Permission) -> &'static str {
    match p {
        Permission::Read => "read",
        Permission::Write => "write",
        Permission::Owner => "owner",
    }
}

/// Checks `Authorization: Bearer <expected>`, in constant time.
fn require_bearer(req: &Request<Incoming>, expected: &str, what: &str) -> Result<(), Failure> {
    if chunkd::wire::bearer_matches(req.headers(), expected) {
        Ok(())
    } else {
        Err(Failure(
            StatusCode::UNAUTHORIZED,
            "Unauthorized",
            format!("missing or wrong {what} (send it as `Authorization: Bearer ...`)"),
        ))
    }
}

async fn read_json<T: for<'de> Deserialize<'de>>(req: Request<Incoming>) -> Result<T, Failure> {
    let body = Limited::new(req.into_body(), MAX_BODY)
        .collect()
        .await
        .map_err(|e| {
            Failure(
                StatusCode::BAD_REQUEST,
                "InvalidBody",
                format!("cannot read the request body (at most {MAX_BODY} bytes): {e}"),
            )
        })?
        .to_bytes();
    serde_json::from_slice(&body).map_err(|e| {
        Failure(
            StatusCode::BAD_REQUEST,
            "InvalidJson",
            format!("the request body is not the expected JSON: {e}"),
        )
    })
}

fn meta_failure(e: MetaError) -> Failure {
    let (status, code) = match &e {
        MetaError::NoSuchAccessKey(_) => (StatusCode::NOT_FOUND, "NoSuchAccessKey"),
        MetaError::KeyAlreadyExists(_) => (StatusCode::CONFLICT, "KeyAlreadyExists"),
        MetaError::NoSuchBucket(_) => (StatusCode::NOT_FOUND, "NoSuchBucket"),
        MetaError::NoSuchNode(_) => (StatusCode::NOT_FOUND, "NoSuchNode"),
        _ => (StatusCode::SERVICE_UNAVAILABLE, "MetadataUnavailable"),
    };
    Failure(status, code, e.to_string())
}

fn json<T: Serialize>(status: StatusCode, value: &T) -> Answer {
    let body = serde_json::to_vec(value).unwrap_or_default();
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    resp
}

fn empty(status: StatusCode) -> Answer {
    let mut resp = Response::new(Full::new(Bytes::new()));
    *resp.status_mut() = status;
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn permissions_parse() {
        assert_eq!(parse_permission("READ"), Some(Permission::Read));
        assert_eq!(parse_permission("write"), Some(Permission::Write));
        assert_eq!(parse_permission("owner"), Some(Permission::Owner));
        assert_eq!(parse_permission("admin"), None);
    }
}
