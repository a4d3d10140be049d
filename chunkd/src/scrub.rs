//! The scrubber: re-reads and re-hashes every chunk, forever, at no more than `--scrub-rate`
//! bytes per second, and moves the ones whose bytes no longer match their id to quarantine.
//!
//! Disks rot silently; a chunk that is only read when a client asks for it could be bad on
//! every replica by then. Quarantined chunks disappear from this node's listing and are
//! counted in `/health` and in heartbeats (`corrupt_chunks`), which tells the gateway's
//! repair to re-replicate them from a good copy.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::watch;

use crate::node::stop_requested;
use crate::store::{Store, Verdict};
use crate::wire::ChunkId;

/// Chunks listed per directory walk.
const PAGE: usize = 256;
/// Pause between two complete passes (an empty or tiny store is not re-read in a busy loop).
const PASS_PAUSE: Duration = Duration::from_secs(1);

/// Runs until a stop is requested.
pub async fn run(store: Arc<Store>, rate: u64, mut stopped: watch::Receiver<bool>) {
    loop {
        tokio::select! {
            result = pass(&store, rate) => {
                if let Err(e) = result {
                    tracing::warn!(error = %e, "scrub pass failed; retrying later");
                }
            }
            () = stop_requested(&mut stopped) => return,
        }
        tokio::select! {
            () = tokio::time::sleep(PASS_PAUSE) => {}
            () = stop_requested(&mut stopped) => return,
        }
    }
}

/// One pass over every chunk, in id order.
async fn pass(store: &Arc<Store>, rate: u64) -> Result<(), String> {
    let started = Instant::now();
    let mut bytes_read = 0u64;
    let mut after: Option<ChunkId> = None;
    loop {
        let page = {
            let store = Arc::clone(store);
            blocking(move || store.list(after.as_ref(), PAGE)).await?
        };
        let Some(last) = page.last() else {
            return Ok(());
        };
        after = Some(last.id);
        for info in &page {
            let id = info.id;
            let verdict = {
                let store = Arc::clone(store);
                blocking(move || store.verify(&id)).await?
            };
            match verdict {
                Verdict::Good { size } => bytes_read += size,
                Verdict::Gone => {}
                Verdict::Corrupt { size, identity } => {
                    bytes_read += size;
                    let store = Arc::clone(store);
                    if blocking(move || store.quarantine(&id, identity)).await? {
                        tracing::warn!(chunk = %id, "corrupt chunk moved to quarantine");
                    }
                }
            }
            // Rate limit: never ahead of `rate` bytes per second since the pass started.
            let due = Duration::from_secs_f64(bytes_read as f64 / rate as f64);
            if let Some(wait) = due.checked_sub(started.elapsed()) {
                tokio::time::sleep(wait).await;
            }
        }
    }
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, crate::store::StoreError> + Send + 'static,
) -> Result<T, String> {
    match tokio::task::spawn_blocking(f).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(e)) => Err(e.to_string()),
        Err(e) => Err(e.to_string()),
    }
}
