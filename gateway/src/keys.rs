//! `sdfbs key ...`: access-key management through a running gateway's admin port.
//!
//! The CLI never opens the metadata store itself (the gateway holds the embedded store open);
//! it calls the admin API (`admin.rs`) with the admin token in the Authorization header.

use crate::cli::{KeyArgs, KeyCommand};
use anyhow::{anyhow, bail, Context, Result};
use bytes::Bytes;
use http::{header, Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use sdfbs_gateway::admin::KeySummary;
use std::time::Duration;

pub async fn run(args: KeyArgs) -> Result<()> {
    let api = Api::new(&args.api.admin_url, args.api.admin_token.as_deref())?;
    match args.command {
        KeyCommand::Create {
            name,
            can_create_buckets,
        } => {
            let body =
                serde_json::json!({ "name": name, "can_create_buckets": can_create_buckets });
            let created: serde_json::Value = api
                .call(Method::POST, "/admin/keys", Some(body), StatusCode::CREATED)
                .await?
                .context("the gateway sent no key")?;
            println!(
                "access key id: {}",
                created["access_key_id"].as_str().unwrap_or("")
            );
            println!(
                "secret key:    {}",
                created["secret_key"].as_str().unwrap_or("")
            );
            println!("(the secret is shown only now; give the key access with `sdfbs key allow ID BUCKET read|write|owner`)");
        }
        KeyCommand::List => {
            let keys: Vec<KeySummary> = serde_json::from_value(
                api.call(Method::GET, "/admin/keys", None, StatusCode::OK)
                    .await?
                    .context("the gateway sent no key list")?,
            )
            .context("unexpected key list from the gateway")?;
            println!(
                "{:<22} {:<20} {:<6} {:<8} PERMISSIONS",
                "ACCESS KEY ID", "NAME", "ROOT", "CREATE"
            );
            for k in keys {
                let perms: Vec<String> = k
                    .permissions
                    .iter()
                    .map(|(b, p)| format!("{b}:{p}"))
                    .collect();
                println!(
                    "{:<22} {:<20} {:<6} {:<8} {}",
                    k.access_key_id,
                    k.name,
                    if k.is_root { "yes" } else { "no" },
                    if k.can_create_buckets { "yes" } else { "no" },
                    if k.is_root {
                        "all buckets".to_string()
                    } else {
                        perms.join(", ")
                    }
                );
            }
        }
        KeyCommand::Delete { id } => {
            api.call(
                Method::DELETE,
                &format!("/admin/keys/{}", segment(&id)?),
                None,
                StatusCode::NO_CONTENT,
            )
            .await?;
            println!("deleted access key {id}");
        }
        KeyCommand::Allow {
            id,
            bucket,
            permission,
        } => {
            let value = if permission == "none" {
                serde_json::Value::Null
            } else {
                permission.clone().into()
            };
            api.call(
                Method::PUT,
                &format!(
                    "/admin/keys/{}/permissions/{}",
                    segment(&id)?,
                    segment(&bucket)?
                ),
                Some(serde_json::json!({ "permission": value })),
                StatusCode::NO_CONTENT,
            )
            .await?;
            println!("access key {id}: {permission} on bucket {bucket}");
        }
    }
    Ok(())
}

/// A path segment as given, refused if it could change the path (ids and bucket names never
/// contain these characters).
pub(crate) fn segment(s: &str) -> Result<&str> {
    if s.is_empty()
        || s.bytes()
            .any(|b| matches!(b, b'/' | b'?' | b'#' | b'%') || b <= b' ')
    {
        bail!("invalid id or bucket name {s:?}");
    }
    Ok(s)
}

/// The admin API of a running gateway, as the CLI calls it.
pub(crate) struct Api {
    base: String,
    token: String,
}

impl Api {
    pub(crate) fn new(admin_url: &str, admin_token: Option<&str>) -> Result<Api> {
        let token = admin_token
            .filter(|t| !t.is_empty())
            .ok_or_else(|| {
                anyhow!(
                    "no admin token: set SDFBS_ADMIN_TOKEN (or --admin-token); `sdfbs dev` prints it"
                )
            })?
            .to_string();
        Ok(Api {
            base: admin_url.trim_end_matches('/').to_string(),
            token,
        })
    }

    /// One admin request; `Ok(Some(json))` for a JSON answer with the expected status.
    pub(crate) async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<serde_json::Value>,
        expected: StatusCode,
    ) -> Result<Option<serde_json::Value>> {
        let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
        let url = format!("{}{path}", self.base);
        let body = body.map(|b| b.to_string()).unwrap_or_default();
        let req = Request::builder()
            .method(method)
            .uri(&url)
            .header(header::AUTHORIZATION, format!("Bearer {}", self.token))
            .header(header::CONTENT_TYPE, "application/json")
            .body(Full::new(Bytes::from(body)))
            .with_context(|| format!("invalid admin URL {url}"))?;
        let resp = tokio::time::timeout(Duration::from_secs(30), client.request(req))
            .await
            .map_err(|_| anyhow!("the gateway at {} did not answer in 30 s", self.base))?
            .with_context(|| {
                format!(
                    "cannot reach the gateway's admin port at {} (is it running? see --admin-url)",
                    self.base
                )
            })?;
        let status = resp.status();
        let bytes = resp
            .into_body()
            .collect()
            .await
            .context("reading the answer")?
            .to_bytes();
        if status != expected {
            let detail: serde_json::Value = serde_json::from_slice(&bytes).unwrap_or_default();
            bail!(
                "the gateway answered {status}: {} {}",
                detail["code"].as_str().unwrap_or(""),
                detail["message"]
                    .as_str()
                    .unwrap_or(&String::from_utf8_lossy(&bytes))
            );
        }
        if bytes.is_empty() {
            return Ok(None);
        }
        Ok(Some(
            serde_json::from_slice(&bytes).context("the gateway's answer is not JSON")?,
        ))
    }
}
