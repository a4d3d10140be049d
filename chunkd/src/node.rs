//! Running a whole node in-process: open the store, listen, serve the API, scrub, heartbeat,
//! and stop cleanly. The `chunkd` binary is a thin command line around [`start`]; `sdfbs dev`
//! calls it directly to run several nodes inside one process.
//!
//! Shutdown ([`RunningNode::shutdown`]) stops accepting connections, lets every request in
//! flight finish (so an acknowledged write is always complete and an unacknowledged one leaves
//! nothing behind), closes idle keep-alive connections, and stops the background tasks.
//! Dropping a [`RunningNode`] without calling it also stops everything, without waiting.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinHandle;

use crate::server::{self, Shared, MAX_CONCURRENT_WRITES};
use crate::store::Store;
use crate::{heartbeat, scrub, Error};

/// Open connections at most; further clients wait in the listen backlog.
const MAX_CONNECTIONS: usize = 1024;
/// How long shutdown waits for requests in flight before giving up on them.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(30);

/// Everything a node needs; the binary fills it from flags and `CHUNKD_*` variables.
#[derive(Clone)]
pub struct NodeConfig {
    pub data_dir: PathBuf,
    pub listen: SocketAddr,
    pub cluster_secret: String,
    /// Base URL the gateway should use; default `http://<actual bound address>`.
    pub advertise: Option<String>,
    /// Default `"default"`.
    pub zone: String,
    /// Default: size of the file system holding `data_dir`.
    pub capacity: Option<u64>,
    pub gateways: Vec<String>,
    pub heartbeat_interval: Duration,
    /// Scrubber read rate in bytes per second; 0 disables the scrubber.
    pub scrub_rate: u64,
    pub max_chunk_size: u64,
    /// Bytes of recently written or read chunks left in the page cache (`--cache-size`).
    pub cache_size: u64,
}

impl std::fmt::Debug for NodeConfig {
    // Hand-written so the cluster secret never ends up in a log line.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeConfig")
            .field("data_dir", &self.data_dir)
            .field("listen", &self.listen)
            .field("cluster_secret", &"<redacted>")
            .field("advertise", &self.advertise)
            .field("zone", &self.zone)
            .field("capacity", &self.capacity)
            .field("gateways", &self.gateways)
            .field("heartbeat_interval", &self.heartbeat_interval)
            .field("scrub_rate", &self.scrub_rate)
            .field("max_chunk_size", &self.max_chunk_size)
            .field("cache_size", &self.cache_size)
            .finish()
    }
}

impl NodeConfig {
    /// A configuration with the documented defaults: zone `default`, 2 s heartbeats, 32 MiB/s
    /// scrubbing, 16 MiB chunks at most, 1 GiB of chunks left in the page cache,
    /// no gateway.
    pub fn new(data_dir: PathBuf, listen: SocketAddr, cluster_secret: &str) -> NodeConfig {
        NodeConfig {
            data_dir,
            listen,
            cluster_secret: cluster_secret.to_owned(),
            advertise: None,
            zone: "default".to_owned(),
            capacity: None,
            gateways: Vec::new(),
            heartbeat_interval: Duration::from_secs(2),
            scrub_rate: 32 << 20,
            max_chunk_size: 16 << 20,
            cache_size: crate::store::DEFAULT_CACHE_SIZE,
        }
    }
}

/// A node started by [`start`].
pub struct RunningNode {
    local_addr: SocketAddr,
    node_id: String,
    advertised_url: String,
    stop: watch::Sender<bool>,
    server: JoinHandle<()>,
    background: Vec<JoinHandle<()>>,
}

/// Opens the data directory, binds the listener, and starts the server, the scrubber and (with
/// gateways) the heartbeat sender. Returns once the node accepts connections.
pub async fn start(config: NodeConfig) -> Result<RunningNode, Error> {
    validate(&config)?;
    let data_dir = config.data_dir.clone();
    let (capacity, cache_size) = (config.capacity, config.cache_size);
    let store = tokio::task::spawn_blocking(move || {
        Store::open(&data_dir, capacity).map(|store| store.with_cache_size(cache_size))
    })
    .await
    .map_err(|e| Error::Task(e.to_string()))??;
    let store = Arc::new(store);

    let listener = TcpListener::bind(config.listen)
        .await
        .map_err(|source| Error::Bind {
            addr: config.listen,
            source,
        })?;
    let local_addr = listener.local_addr().map_err(|source| Error::Bind {
        addr: config.listen,
        source,
    })?;
    let advertised_url = config
        .advertise
        .clone()
        .unwrap_or_else(|| format!("http://{local_addr}"))
        .trim_end_matches('/')
        .to_owned();

    let shared = Arc::new(Shared {
        store: Arc::clone(&store),
        cluster_secret: config.cluster_secret.clone(),
        max_chunk_size: config.max_chunk_size,
        zone: config.zone.clone(),
        started: Instant::now(),
        write_slots: Semaphore::new(MAX_CONCURRENT_WRITES),
    });
    let (stop, stopped) = watch::channel(false);

    let server = tokio::spawn(serve(listener, Arc::clone(&shared), stopped.clone()));
    let mut background = Vec::new();
    if config.scrub_rate > 0 {
        background.push(tokio::spawn(scrub::run(
            Arc::clone(&store),
            config.scrub_rate,
            stopped.clone(),
        )));
    }
    if !config.gateways.is_empty() {
        background.push(tokio::spawn(heartbeat::run(
            heartbeat::Settings {
                gateways: config.gateways.clone(),
                interval: config.heartbeat_interval,
                cluster_secret: config.cluster_secret.clone(),
                address: advertised_url.clone(),
            },
            Arc::clone(&shared),
            stopped,
        )));
    }
    tracing::info!(node_id = store.node_id(), %local_addr, advertise = %advertised_url,
        data_dir = %config.data_dir.display(), "chunkd started");
    Ok(RunningNode {
        local_addr,
        node_id: store.node_id().to_owned(),
        advertised_url,
        stop,
        server,
        background,
    })
}

fn validate(config: &NodeConfig) -> Result<(), Error> {
    if config.cluster_secret.is_empty() {
        return Err(Error::Config("the cluster secret must not be empty".into()));
    }
    if config.max_chunk_size == 0 {
        return Err(Error::Config("max chunk size must be above 0".into()));
    }
    if !config.gateways.is_empty() && config.heartbeat_interval.is_zero() {
        return Err(Error::Config("heartbeat interval must be above 0".into()));
    }
    for gateway in &config.gateways {
        if !gateway.starts_with("http://") {
            return Err(Error::Config(format!(
                "gateway URL {gateway:?} must start with http://"
            )));
        }
    }
    if let Some(advertise) = &config.advertise {
        if !advertise.starts_with("http://") {
            return Err(Error::Config(format!(
                "advertised URL {advertise:?} must start with http://"
            )));
        }
    }
    Ok(())
}

impl RunningNode {
    /// The address actually bound (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    pub fn node_id(&self) -> &str {
        &self.node_id
    }

    pub fn advertised_url(&self) -> &str {
        &self.advertised_url
    }

    /// Stops accepting, waits for requests in flight (at most 30 s), stops background tasks.
    pub async fn shutdown(self) -> Result<(), Error> {
        let _ = self.stop.send(true);
        let mut failure = None;
        for task in std::iter::once(self.server).chain(self.background) {
            if let Err(e) = task.await {
                failure = Some(Error::Task(e.to_string()));
            }
        }
        failure.map_or(Ok(()), Err)
    }
}

/// Stops are signalled by `true` on the watch channel or by the sender being dropped.
pub(crate) async fn stop_requested(stopped: &mut watch::Receiver<bool>) {
    let _ = stopped.wait_for(|stop| *stop).await;
}

/// The accept loop. Each connection is served by hyper's HTTP/1.1 implementation with
/// keep-alive and TCP_NODELAY; on stop, connections finish their current request and close.
async fn serve(listener: TcpListener, shared: Arc<Shared>, mut stopped: watch::Receiver<bool>) {
    let graceful = GracefulShutdown::new();
    let connections = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let mut http = http1::Builder::new();
    http.keep_alive(true)
        .timer(TokioTimer::new())
        .header_read_timeout(Duration::from_secs(30));
    loop {
        let permit = tokio::select! {
            permit = Arc::clone(&connections).acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => break,
            },
            () = stop_requested(&mut stopped) => break,
        };
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = stop_requested(&mut stopped) => break,
        };
        let (stream, peer) = match accepted {
            Ok(conn) => conn,
            Err(e) => {
                // Typically EMFILE: back off briefly instead of spinning.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        if let Err(e) = stream.set_nodelay(true) {
            tracing::debug!(error = %e, "could not set TCP_NODELAY");
        }
        let shared = Arc::clone(&shared);
        let service = service_fn(move |req| server::handle(Arc::clone(&shared), req));
        let connection = graceful.watch(http.serve_connection(TokioIo::new(stream), service));
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
            drop(permit);
        });
    }
    drop(listener);
    tokio::select! {
        () = graceful.shutdown() => {}
        () = tokio::time::sleep(SHUTDOWN_GRACE) => {
            tracing::warn!("requests still in flight after {SHUTDOWN_GRACE:?}; stopping anyway");
        }
    }
}
