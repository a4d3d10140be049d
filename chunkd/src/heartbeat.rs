//! Heartbeats: every interval, POST this node's `/health` document plus its advertised address
//! ([`wire::Heartbeat`]) to `{gateway}` + [`wire::HEARTBEAT_PATH`] on every configured gateway,
//! with the cluster secret. This is how gateways discover nodes and notice when they go away.
//!
//! A gateway that is down or answers with an error is logged (once when it starts failing, and
//! again when it recovers) and simply tried again at the next tick: heartbeats are never fatal.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{header, Method, Request};
use http_body_util::{BodyExt, Full};
use tokio::sync::watch;

use crate::client::http_client;
use crate::node::stop_requested;
use crate::server::Shared;
use crate::wire::{self, Heartbeat};

pub struct Settings {
    pub gateways: Vec<String>,
    pub interval: Duration,
    pub cluster_secret: String,
    /// This node's base URL as the gateway should use it.
    pub address: String,
}

/// Sends heartbeats until a stop is requested. The first one goes out at once.
pub async fn run(settings: Settings, shared: Arc<Shared>, mut stopped: watch::Receiver<bool>) {
    let http = http_client(Duration::from_secs(2));
    let timeout = settings
        .interval
        .clamp(Duration::from_secs(1), Duration::from_secs(10));
    let authorization = wire::bearer(&settings.cluster_secret);
    let targets: Vec<String> = settings
        .gateways
        .iter()
        .map(|g| format!("{}{}", g.trim_end_matches('/'), wire::HEARTBEAT_PATH))
        .collect();
    let mut failing = vec![false; targets.len()];
    let mut ticks = tokio::time::interval(settings.interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticks.tick() => {}
            () = stop_requested(&mut stopped) => return,
        }
        let beat = Heartbeat {
            health: shared.health(),
            address: settings.address.clone(),
        };
        let body = match serde_json::to_vec(&beat) {
            Ok(body) => Bytes::from(body),
            Err(e) => {
                tracing::error!(error = %e, "cannot encode heartbeat");
                continue;
            }
        };
        let sends = targets.iter().map(|url| {
            let request = Request::builder()
                .method(Method::POST)
                .uri(url)
                .header(header::AUTHORIZATION, &authorization)
                .header(header::CONTENT_TYPE, wire::JSON_CONTENT_TYPE)
                .body(Full::new(body.clone()));
            let http = http.clone();
            async move {
                let request = request.map_err(|e| format!("invalid gateway URL {url}: {e}"))?;
                let exchange = async {
                    let response = http.request(request).await.map_err(|e| e.to_string())?;
                    let status = response.status();
                    // Read the answer so the connection can be reused.
                    let _ = response.into_body().collect().await;
                    if status.is_success() {
                        Ok(())
                    } else {
                        Err(format!("gateway answered {status}"))
                    }
                };
                tokio::time::timeout(timeout, exchange)
                    .await
                    .map_err(|_| "gateway did not answer in time".to_owned())?
            }
        });
        let results = tokio::select! {
            results = futures::future::join_all(sends) => results,
            () = stop_requested(&mut stopped) => return,
        };
        for ((url, result), failing) in targets.iter().zip(results).zip(failing.iter_mut()) {
            match result {
                Ok(()) if *failing => {
                    tracing::info!(gateway = %url, "heartbeats accepted again");
                    *failing = false;
                }
                Ok(()) => tracing::debug!(gateway = %url, "heartbeat sent"),
                Err(e) if !*failing => {
                    tracing::warn!(gateway = %url, error = %e, "heartbeat failed; will keep retrying");
                    *failing = true;
                }
                Err(e) => tracing::debug!(gateway = %url, error = %e, "heartbeat failed again"),
            }
        }
    }
}
