//! The two HTTP servers of a gateway process: the S3 API (`s3::build_service`) and the admin
//! port (`admin.rs`), on hyper 1 with HTTP/1.1 keep-alive.
//!
//! Every accepted socket gets TCP_NODELAY: without it a small response waits for the client's
//! delayed ACK (Nagle), which costs ~40 ms per small GET. Each request is logged once at info
//! level when its response head is ready (heartbeats and health probes at debug, they would drown
//! everything else). Shutdown is graceful: stop accepting, let requests in flight finish (up to
//! `SHUTDOWN_GRACE`), then return.

use crate::admin::Admin;
use crate::cluster::lease::Leadership;
use crate::cluster::membership::{Membership, MembershipConfig};
use crate::cluster::workers::{WorkerConfig, WorkerContext};
use crate::credentials::{self, Credentials, Given};
use crate::pipeline::ChunkStore;
use crate::state::Gateway;
use http::{Request, Response};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use sdfbs_metadata::{MetaError, MetadataStore};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch, Semaphore};
use tokio::task::JoinHandle;

/// How long shutdown waits for requests in flight.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(30);
/// Open client connections per listener at most; more wait in the listen backlog.
const MAX_CONNECTIONS: usize = 4096;

/// Everything `start` needs.
pub struct GatewayOptions {
    pub meta: Arc<dyn MetadataStore>,
    pub s3_listen: SocketAddr,
    pub admin_listen: SocketAddr,
    pub replication: usize,
    pub region: String,
    /// Base domains of virtual-hosted-style requests (`--s3-domain`); empty: path-style only.
    pub s3_domains: Vec<String>,
    pub membership: MembershipConfig,
    pub credentials: Given,
    /// Repair, audit and garbage collection (run by the gateway holding the workers' lease).
    pub workers: WorkerConfig,
}

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error(transparent)]
    Credentials(#[from] credentials::CredentialsError),
    #[error("invalid --metadata {spec:?}: {message}")]
    MetadataSpec { spec: String, message: String },
    #[error("cannot open the metadata store: {0}")]
    Metadata(#[from] MetaError),
    #[error(transparent)]
    S3Domain(#[from] crate::s3::InvalidDomain),
}

/// A started gateway: both listeners bound and serving.
pub struct RunningGateway {
    pub s3_addr: SocketAddr,
    pub admin_addr: SocketAddr,
    pub credentials: Credentials,
    pub gateway: Arc<Gateway>,
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

impl RunningGateway {
    /// Stops accepting, waits for requests in flight (bounded), stops background work.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        for task in self.tasks {
            if let Err(e) = task.await {
                tracing::warn!(error = %e, "a server task failed while stopping");
            }
        }
    }
}

/// Opens `embedded:PATH` or `scylla:HOST[,HOST...]/KEYSPACE[?OPTIONS]` (options: see
/// `ScyllaConfig::from_spec`; the password may also come from `SDFBS_SCYLLA_PASSWORD`).
pub async fn open_metadata(spec: &str) -> Result<Arc<dyn MetadataStore>, ServerError> {
    if let Some(path) = spec.strip_prefix("embedded:") {
        if path.is_empty() {
            return Err(ServerError::MetadataSpec {
                spec: spec.into(),
                message: "embedded: needs a file path, e.g. embedded:./meta.redb".into(),
            });
        }
        let store = sdfbs_metadata::embedded::EmbeddedStore::open(path).await?;
        Ok(Arc::new(store))
    } else if let Some(rest) = spec.strip_prefix("scylla:") {
        let mut config = sdfbs_metadata::scylla::ScyllaConfig::from_spec(rest)?;
        // The password from the environment rather than the spec, so it is not on a command
        // line (`password_file=` in the spec is the other way).
        if let Ok(password) = std::env::var("SDFBS_SCYLLA_PASSWORD") {
            config.password = Some(password);
        }
        let store = sdfbs_metadata::scylla::ScyllaStore::connect(config).await?;
        Ok(Arc::new(store))
    } else {
        Err(ServerError::MetadataSpec {
            spec: spec.into(),
            message: "use embedded:PATH or scylla:HOST[,HOST...]/KEYSPACE".into(),
        })
    }
}

/// Bootstraps credentials, binds both listeners and starts serving.
pub async fn start(options: GatewayOptions) -> Result<RunningGateway, ServerError> {
    let domains = crate::s3::BucketDomains::new(&options.s3_domains)?;
    let meta = options.meta;
    let credentials = credentials::bootstrap(meta.as_ref(), options.credentials).await?;
    let membership = Arc::new(Membership::new(Arc::clone(&meta), options.membership));
    if let Err(e) = membership.refresh().await {
        tracing::warn!(error = %e, "cannot read the node list yet; will retry");
    }
    let chunks = Arc::new(
        ChunkStore::new(
            Arc::clone(&meta),
            Arc::clone(&membership),
            options.replication,
            &credentials.cluster_secret,
        )
        .with_gc_grace(options.workers.gc_grace),
    );
    let (stop, stopped) = watch::channel(false);
    let workers_enabled = options.workers.enabled;
    let (leadership, lease_task) = if workers_enabled {
        let (leadership, task) = Leadership::spawn(Arc::clone(&meta), stopped.clone());
        (leadership, Some(task))
    } else {
        (Leadership::never(), None)
    };
    let workers = WorkerContext::new(
        Arc::clone(&meta),
        Arc::clone(&membership),
        Arc::clone(&chunks),
        leadership,
        options.workers,
    );
    let gateway = Arc::new(Gateway {
        meta: Arc::clone(&meta),
        chunks,
        region: options.region,
    });
    let admin = Arc::new(Admin {
        meta: Arc::clone(&meta),
        membership: Arc::clone(&membership),
        cluster_secret: credentials.cluster_secret.clone(),
        admin_token: credentials.admin_token.clone(),
        replication: options.replication,
        workers: Arc::clone(&workers),
    });

    let s3_listener = bind(options.s3_listen).await?;
    let admin_listener = bind(options.admin_listen).await?;
    let s3_addr = local_addr(&s3_listener, options.s3_listen)?;
    let admin_addr = local_addr(&admin_listener, options.admin_listen)?;

    let s3_service = crate::s3::build_service(Arc::clone(&gateway), domains);
    let admin_service = hyper::service::service_fn(move |req| Arc::clone(&admin).handle(req));
    let mut tasks = vec![
        tokio::spawn(serve(s3_listener, s3_service, "s3", stopped.clone())),
        tokio::spawn(serve(
            admin_listener,
            admin_service,
            "admin",
            stopped.clone(),
        )),
        membership.spawn_refresher(stopped.clone()),
    ];
    if let Some(lease_task) = lease_task {
        tasks.push(lease_task);
        tasks.extend(workers.spawn(stopped));
    }
    tracing::info!(%s3_addr, %admin_addr, replication = options.replication, "gateway started");
    Ok(RunningGateway {
        s3_addr,
        admin_addr,
        credentials,
        gateway,
        stop,
        tasks,
    })
}

async fn bind(addr: SocketAddr) -> Result<TcpListener, ServerError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| ServerError::Bind { addr, source })
}

fn local_addr(listener: &TcpListener, addr: SocketAddr) -> Result<SocketAddr, ServerError> {
    listener
        .local_addr()
        .map_err(|source| ServerError::Bind { addr, source })
}

/// Accepts connections until `stop` turns true, then drains them (bounded by SHUTDOWN_GRACE).
pub async fn serve<S, B>(
    listener: TcpListener,
    service: S,
    label: &'static str,
    stop: watch::Receiver<bool>,
) where
    S: hyper::service::Service<Request<Incoming>, Response = Response<B>>
        + Clone
        + Send
        + Sync
        + 'static,
    S::Future: Send + 'static,
    S::Error: std::fmt::Debug + Into<Box<dyn std::error::Error + Send + Sync>>,
    B: http_body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    // Every connection task holds a clone of `open`; when all are gone, `drained` yields None.
    let (open, mut drained) = mpsc::channel::<()>(1);
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let permit = tokio::select! {
            p = Arc::clone(&slots).acquire_owned() => match p { Ok(p) => p, Err(_) => break },
            _ = stopped(stop.clone()) => break,
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // EMFILE and the like: back off a little instead of spinning.
                    tracing::warn!(listener = label, error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = stopped(stop.clone()) => break,
        };
        if let Err(e) = stream.set_nodelay(true) {
            tracing::debug!(error = %e, "cannot set TCP_NODELAY");
        }
        let service = Logged {
            inner: service.clone(),
            label,
            peer,
        };
        let stop = stop.clone();
        let open = open.clone();
        tokio::spawn(async move {
            let conn = http1::Builder::new()
                .keep_alive(true)
                .timer(TokioTimer::new())
                .header_read_timeout(Duration::from_secs(60))
                .serve_connection(TokioIo::new(stream), service);
            let mut conn = std::pin::pin!(conn);
            let result = tokio::select! {
                r = conn.as_mut() => r,
                _ = stopped(stop) => {
                    conn.as_mut().graceful_shutdown();
                    conn.as_mut().await
                }
            };
            if let Err(e) = result {
                tracing::debug!(listener = label, %peer, error = %e, "connection ended with an error");
            }
            drop(permit);
            drop(open);
        });
    }
    drop(listener);
    drop(open);
    if tokio::time::timeout(SHUTDOWN_GRACE, drained.recv())
        .await
        .is_err()
    {
        tracing::warn!(
            listener = label,
            "requests still in flight after {SHUTDOWN_GRACE:?}; stopping anyway"
        );
    }
}

/// Resolves once `stop` is true (or its sender is gone).
async fn stopped(mut stop: watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

/// A service wrapper that logs every request once, with its status and duration.
#[derive(Clone)]
struct Logged<S> {
    inner: S,
    label: &'static str,
    peer: SocketAddr,
}

type BoxFuture<T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send>>;

impl<S, B> hyper::service::Service<Request<Incoming>> for Logged<S>
where
    S: hyper::service::Service<Request<Incoming>, Response = Response<B>>,
    S::Future: Send + 'static,
    S::Error: std::fmt::Debug,
    B: 'static,
{
    type Response = Response<B>;
    type Error = S::Error;
    type Future = BoxFuture<Result<Response<B>, S::Error>>;

    fn call(&self, req: Request<Incoming>) -> Self::Future {
        let method = req.method().clone();
        // The path only: a presigned URL's query holds a signature.
        let path = req.uri().path().to_string();
        let quiet = path == "/health" || path == chunkd::wire::HEARTBEAT_PATH;
        let (label, peer) = (self.label, self.peer);
        let close_after = expects_continue_without_body(&req);
        let started = Instant::now();
        let fut = self.inner.call(req);
        Box::pin(async move {
            let mut result = fut.await;
            if close_after {
                if let Ok(resp) = &mut result {
                    resp.headers_mut().insert(
                        http::header::CONNECTION,
                        http::HeaderValue::from_static("close"),
                    );
                }
            }
            // Milliseconds to the response head, to 0.01 ms.
            let ms = (started.elapsed().as_secs_f64() * 100_000.0).round() / 100.0;
            match &result {
                Ok(resp) if quiet => tracing::debug!(listener = label, %peer, %method, %path,
                    status = resp.status().as_u16(), ms, "request"),
                Ok(resp) => tracing::info!(listener = label, %peer, %method, %path,
                    status = resp.status().as_u16(), ms, "request"),
                Err(e) => tracing::warn!(listener = label, %peer, %method, %path, ms,
                    error = ?e, "request failed"),
            }
            result
        })
    }
}

/// Whether a request announces `Expect: 100-continue` but has no body.
///
/// hyper sends `100 Continue` only when a handler starts reading the body, so such a request gets
/// its final answer straight away. botocore (aws-cli v1 and v2, boto3) then parses the next
/// response on the same pooled connection against the stale status line of this one
/// (boto/botocore#3755) and fails an upload with a header-parsing error. Closing the connection
/// after answering these requests keeps every client version working; it costs one new
/// connection per empty upload.
fn expects_continue_without_body<B>(req: &Request<B>) -> bool {
    let headers = req.headers();
    let expects_continue = headers
        .get(http::header::EXPECT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("100-continue"));
    let content_length = headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .map(str::trim);
    let empty = match content_length {
        Some(len) => len == "0",
        None => !headers.contains_key(http::header::TRANSFER_ENCODING),
    };
    expects_continue && empty
}

/// Resolves when SIGTERM or SIGINT (Ctrl-C) arrives.
pub async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

#[cfg(test)]
mod tests {
    use super::expects_continue_without_body;
    use http::Request;

    fn req(headers: &[(&str, &str)]) -> Request<()> {
        let mut b = Request::builder().method("PUT").uri("/b/k");
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        b.body(()).unwrap()
    }

    #[test]
    fn empty_body_with_expect_continue_closes_the_connection() {
        assert!(expects_continue_without_body(&req(&[
            ("expect", "100-continue"),
            ("content-length", "0")
        ])));
        assert!(expects_continue_without_body(&req(&[(
            "Expect",
            "100-Continue"
        )])));
    }

    #[test]
    fn other_requests_keep_the_connection() {
        assert!(!expects_continue_without_body(&req(&[
            ("expect", "100-continue"),
            ("content-length", "5")
        ])));
        assert!(!expects_continue_without_body(&req(&[
            ("expect", "100-continue"),
            ("transfer-encoding", "chunked")
        ])));
        assert!(!expects_continue_without_body(&req(&[(
            "content-length",
            "0"
        )])));
    }
}
