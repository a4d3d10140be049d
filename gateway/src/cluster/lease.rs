//! One leader among many gateways: the background workers (the state-change log, repair, audit,
//! garbage collection) run only in the gateway that holds the `cluster-workers` lease in the
//! metadata store. Leases are atomic on both backends (a redb transaction, a Cassandra LWT), so
//! at most one gateway holds it at a time; a gateway that stops renewing (killed, cut off from
//! the store) loses it after `LEASE_TTL` and another takes over.
//!
//! Every worker asks [`Leadership::is_leader`] before each unit of work, so a gateway that
//! lost the lease stops within one unit. Work is written so that two leaders overlapping for a
//! moment (the old one finishing a unit while the new one starts) is harmless: every step is
//! idempotent or conditional (replica adds, grace-guarded deletes, conditional record deletes).

use sdfbs_metadata::MetadataStore;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// The lease's name in the store.
pub const LEASE_NAME: &str = "cluster-workers";
/// How long the lease lasts without renewal.
pub const LEASE_TTL: Duration = Duration::from_secs(10);
/// How often the holder renews (and a non-holder tries to take it).
const RENEW_EVERY: Duration = Duration::from_secs(2);

/// Whether this gateway currently leads, kept up to date by [`Leadership::spawn`].
#[derive(Clone)]
pub struct Leadership {
    holder: String,
    leading: watch::Receiver<bool>,
}

impl Leadership {
    /// Starts competing for the lease; gives it up when `stop` turns true.
    pub fn spawn(
        meta: Arc<dyn MetadataStore>,
        mut stop: watch::Receiver<bool>,
    ) -> (Leadership, tokio::task::JoinHandle<()>) {
        let holder = format!("gateway-{}", uuid::Uuid::new_v4());
        let (tx, rx) = watch::channel(false);
        let me = holder.clone();
        let task = tokio::spawn(async move {
            loop {
                let held = *tx.borrow();
                let result = if held {
                    meta.renew_lease(LEASE_NAME, &me, LEASE_TTL).await
                } else {
                    meta.acquire_lease(LEASE_NAME, &me, LEASE_TTL).await
                };
                let now = match result {
                    Ok(now) => now,
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot reach the metadata store for the workers' lease");
                        // Not renewed: assume lost rather than risk two leaders.
                        false
                    }
                };
                if now != held {
                    if now {
                        tracing::info!(holder = %me, "this gateway now runs the cluster workers (repair, audit, gc)");
                    } else {
                        tracing::warn!(holder = %me, "this gateway no longer runs the cluster workers");
                    }
                    let _ = tx.send(now);
                }
                let stopping = tokio::select! {
                    _ = tokio::time::sleep(RENEW_EVERY) => false,
                    _ = stop.wait_for(|s| *s) => true,
                };
                if stopping {
                    let held = *tx.borrow();
                    if held {
                        let _ = meta.release_lease(LEASE_NAME, &me).await;
                    }
                    let _ = tx.send(false);
                    return;
                }
            }
        });
        (
            Leadership {
                holder,
                leading: rx,
            },
            task,
        )
    }

    /// A gateway that never competes for the lease (workers disabled): never the leader.
    pub fn never() -> Leadership {
        let (_, leading) = watch::channel(false);
        Leadership {
            holder: String::new(),
            leading,
        }
    }

    /// Whether this gateway holds the lease right now.
    pub fn is_leader(&self) -> bool {
        *self.leading.borrow()
    }

    /// Waits until this gateway leads (or `stop` turns true: then `false`).
    pub async fn wait_leader(&self, stop: &mut watch::Receiver<bool>) -> bool {
        let mut leading = self.leading.clone();
        tokio::select! {
            r = leading.wait_for(|l| *l) => r.is_ok(),
            _ = stop.wait_for(|s| *s) => false,
        }
    }

    /// This gateway's holder name in the lease.
    pub fn holder(&self) -> &str {
        &self.holder
    }
}
