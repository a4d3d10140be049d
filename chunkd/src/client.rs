//! `ChunkClient`: the gateway's side of the chunkd protocol (see [`crate::wire`]).
//!
//! One client per node. It keeps a pool of keep-alive HTTP/1.1 connections (TCP_NODELAY on
//! every socket, so a small request is never held back by Nagle's algorithm), puts the cluster
//! secret on every request, and turns each status code of the protocol into a typed answer or a
//! [`ClientError`]. Every request has a deadline: connecting is bounded by the connect timeout,
//! the whole exchange (including reading the body) by the request timeout.
//!
//! Chunk ids are [`ChunkId`]s, whose text form is always 64 lowercase hex characters, so no
//! id from a caller can be turned into another path on the node.

use std::time::Duration;

use bytes::Bytes;
use http::{header, Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::{TokioExecutor, TokioTimer};

use crate::wire::{
    self, ChunkId, ChunkPage, DeleteQuery, ErrorBody, ErrorCode, HeadQuery, Health, ListQuery,
};

/// Default bound on establishing a TCP connection to a node.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// Default bound on one whole request, body included.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// Answer to a successful `PUT /chunks/{id}`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PutOutcome {
    /// 201: the node did not hold the chunk before.
    Created,
    /// 200: the node already held it; its modification time was refreshed.
    AlreadyPresent,
}

/// Answer to a successful `DELETE /chunks/{id}?grace=S`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeleteOutcome {
    /// 204: the chunk is gone (or was already absent).
    Deleted,
    /// 409: the chunk was written or refreshed less than `grace` ago and was kept.
    TooYoung,
}

/// Everything that can go wrong talking to a node.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("chunk not found on the node")]
    NotFound,
    #[error("the node rejected the cluster secret (check --cluster-secret on both sides)")]
    Unauthorized,
    #[error("the chunk's bytes do not hash to its id (BadDigest)")]
    BadDigest,
    #[error("the chunk is larger than the node's --max-chunk-size")]
    TooLarge,
    #[error("the node has no room left for the chunk (disk full, or read-only)")]
    InsufficientStorage,
    #[error("invalid chunk id: it must be 64 lowercase hex characters")]
    InvalidChunkId,
    #[error("unexpected answer from the node: {status} {code}: {message}")]
    Status {
        status: u16,
        code: String,
        message: String,
    },
    #[error("cannot reach the node: {0}")]
    Transport(String),
    #[error("the node did not answer in time")]
    Timeout,
}

/// Builds a [`ChunkClient`] with non-default timeouts.
#[derive(Clone, Debug)]
pub struct ChunkClientBuilder {
    base_url: String,
    secret: String,
    connect_timeout: Duration,
    request_timeout: Duration,
}

impl ChunkClientBuilder {
    /// Bound on establishing a TCP connection (default 2 s).
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Bound on one whole request, body included (default 30 s).
    pub fn request_timeout(mut self, timeout: Duration) -> Self {
        self.request_timeout = timeout;
        self
    }

    pub fn build(self) -> ChunkClient {
        ChunkClient {
            http: http_client(self.connect_timeout),
            base_url: self.base_url.trim_end_matches('/').to_owned(),
            authorization: wire::bearer(&self.secret),
            request_timeout: self.request_timeout,
        }
    }
}

/// The pooled HTTP/1.1 client used for every call to a node (and for heartbeats): keep-alive
/// connections, TCP_NODELAY on every socket, bounded connect time.
pub(crate) fn http_client(connect_timeout: Duration) -> Client<HttpConnector, Full<Bytes>> {
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    connector.set_connect_timeout(Some(connect_timeout));
    connector.enforce_http(true);
    Client::builder(TokioExecutor::new())
        .pool_timer(TokioTimer::new())
        .pool_idle_timeout(Duration::from_secs(60))
        .pool_max_idle_per_host(64)
        .build(connector)
}

/// A client for one chunkd node. Cheap to clone: clones share the connection pool.
#[derive(Clone)]
pub struct ChunkClient {
    http: Client<HttpConnector, Full<Bytes>>,
    base_url: String,
    authorization: String,
    request_timeout: Duration,
}

impl std::fmt::Debug for ChunkClient {
    // Hand-written so the cluster secret never ends up in a log line.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChunkClient")
            .field("base_url", &self.base_url)
            .finish_non_exhaustive()
    }
}

/// A response whose body has been read completely.
struct Answer {
    status: StatusCode,
    headers: http::HeaderMap,
    /// The body as the frames it arrived in: a 1 MiB chunk comes in a few frames, and joining
    /// them would copy every byte once more.
    frames: Vec<Bytes>,
}

impl Answer {
    /// The body in one buffer (copied only when it came in more than one frame).
    fn body(&self) -> Bytes {
        match self.frames.as_slice() {
            [] => Bytes::new(),
            [one] => one.clone(),
            many => {
                let mut joined = bytes::BytesMut::with_capacity(many.iter().map(Bytes::len).sum());
                for frame in many {
                    joined.extend_from_slice(frame);
                }
                joined.freeze()
            }
        }
    }
}

impl ChunkClient {
    /// A client for the node at `base_url` (like `http://127.0.0.1:7070`), with default timeouts.
    pub fn new(base_url: &str, cluster_secret: &str) -> ChunkClient {
        Self::builder(base_url, cluster_secret).build()
    }

    pub fn builder(base_url: &str, cluster_secret: &str) -> ChunkClientBuilder {
        ChunkClientBuilder {
            base_url: base_url.to_owned(),
            secret: cluster_secret.to_owned(),
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
        }
    }

    /// The node's base URL, without a trailing slash.
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    /// Stores `data` under `id` (which must be the SHA-256 of `data`). The node answers only
    /// after the chunk is fsynced.
    pub async fn put(&self, id: &ChunkId, data: Bytes) -> Result<PutOutcome, ClientError> {
        let answer = self.send(Method::PUT, &wire::chunk_path(id), data).await?;
        match answer.status {
            StatusCode::CREATED => Ok(PutOutcome::Created),
            StatusCode::OK => Ok(PutOutcome::AlreadyPresent),
            _ => Err(error_from(answer)),
        }
    }

    /// The whole chunk in one buffer. The bytes are not re-hashed here: the caller verifies
    /// them.
    pub async fn get(&self, id: &ChunkId) -> Result<Bytes, ClientError> {
        let answer = self
            .send(Method::GET, &wire::chunk_path(id), Bytes::new())
            .await?;
        match answer.status {
            StatusCode::OK => Ok(answer.body()),
            _ => Err(error_from(answer)),
        }
    }

    /// The whole chunk as the frames it arrived in, in order, without joining them into one
    /// buffer (which would copy every byte once more). Not re-hashed here either.
    pub async fn get_frames(&self, id: &ChunkId) -> Result<Vec<Bytes>, ClientError> {
        let answer = self
            .send(Method::GET, &wire::chunk_path(id), Bytes::new())
            .await?;
        match answer.status {
            StatusCode::OK => Ok(answer.frames),
            _ => Err(error_from(answer)),
        }
    }

    /// The chunk's size, or `None` if the node does not hold it.
    pub async fn head(&self, id: &ChunkId) -> Result<Option<u64>, ClientError> {
        self.head_with(id, HeadQuery { touch: false }).await
    }

    /// `HEAD /chunks/{id}?touch=1`: like [`head`](Self::head), but when the chunk is present
    /// the node also refreshes its modification time, restarting the garbage-collection grace
    /// period, exactly as a repeated PUT would. Use it instead of re-sending a chunk the node
    /// already holds.
    pub async fn touch(&self, id: &ChunkId) -> Result<Option<u64>, ClientError> {
        self.head_with(id, HeadQuery { touch: true }).await
    }

    async fn head_with(&self, id: &ChunkId, query: HeadQuery) -> Result<Option<u64>, ClientError> {
        let path = wire::with_query(wire::chunk_path(id), &query.to_query());
        let answer = self.send(Method::HEAD, &path, Bytes::new()).await?;
        match answer.status {
            StatusCode::OK => {
                let len = answer
                    .headers
                    .get(header::CONTENT_LENGTH)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.parse::<u64>().ok())
                    .ok_or_else(|| ClientError::Status {
                        status: 200,
                        code: "MissingContentLength".into(),
                        message: "HEAD answer without a valid Content-Length".into(),
                    })?;
                Ok(Some(len))
            }
            StatusCode::NOT_FOUND => Ok(None),
            _ => Err(error_from(answer)),
        }
    }

    /// Deletes the chunk unless it was written or refreshed less than `grace` ago (whole
    /// seconds, rounded up so the node never waits less than asked).
    pub async fn delete(
        &self,
        id: &ChunkId,
        grace: Duration,
    ) -> Result<DeleteOutcome, ClientError> {
        let query = DeleteQuery::rounding_up(grace);
        let path = wire::with_query(wire::chunk_path(id), &query.to_query());
        let answer = self.send(Method::DELETE, &path, Bytes::new()).await?;
        match answer.status {
            StatusCode::NO_CONTENT | StatusCode::OK => Ok(DeleteOutcome::Deleted),
            StatusCode::CONFLICT => Ok(DeleteOutcome::TooYoung),
            _ => Err(error_from(answer)),
        }
    }

    /// One page of the node's chunks in id order, strictly after `after`.
    pub async fn list(
        &self,
        after: Option<&ChunkId>,
        limit: usize,
    ) -> Result<ChunkPage, ClientError> {
        let query = ListQuery {
            after: after.copied(),
            limit,
        };
        let path = wire::with_query(wire::CHUNKS_PATH.to_owned(), &query.to_query());
        let answer = self.send(Method::GET, &path, Bytes::new()).await?;
        match answer.status {
            StatusCode::OK => parse_json(&answer.body()),
            _ => Err(error_from(answer)),
        }
    }

    /// `GET /health`.
    pub async fn health(&self) -> Result<Health, ClientError> {
        let answer = self
            .send(Method::GET, wire::HEALTH_PATH, Bytes::new())
            .await?;
        match answer.status {
            StatusCode::OK => parse_json(&answer.body()),
            _ => Err(error_from(answer)),
        }
    }

    /// Sends one request with the secret and reads the whole answer, within the request timeout.
    async fn send(&self, method: Method, path: &str, body: Bytes) -> Result<Answer, ClientError> {
        let uri = format!("{}{}", self.base_url, path);
        let mut builder = Request::builder()
            .method(method)
            .uri(&uri)
            .header(header::AUTHORIZATION, &self.authorization);
        if !body.is_empty() {
            builder = builder.header(header::CONTENT_LENGTH, body.len());
        }
        let request = builder
            .body(Full::new(body))
            .map_err(|e| ClientError::Transport(format!("invalid request URL {uri}: {e}")))?;
        let exchange = async {
            let response = self
                .http
                .request(request)
                .await
                .map_err(|e| transport_error(&e))?;
            let (parts, mut body) = response.into_parts();
            let mut frames = Vec::new();
            while let Some(frame) = body.frame().await {
                let frame = frame
                    .map_err(|e| ClientError::Transport(format!("reading the answer: {e}")))?;
                if let Ok(data) = frame.into_data() {
                    if !data.is_empty() {
                        frames.push(data);
                    }
                }
            }
            Ok(Answer {
                status: parts.status,
                headers: parts.headers,
                frames,
            })
        };
        match tokio::time::timeout(self.request_timeout, exchange).await {
            Ok(result) => result,
            Err(_) => Err(ClientError::Timeout),
        }
    }
}

fn parse_json<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ClientError> {
    serde_json::from_slice(body).map_err(|e| ClientError::Status {
        status: 200,
        code: "InvalidJson".into(),
        message: format!("the node's answer is not the expected JSON: {e}"),
    })
}

/// A hyper client error as a [`ClientError`]: a connect timeout (an `io::Error` of kind
/// `TimedOut` somewhere in the chain) is [`ClientError::Timeout`], anything else is
/// [`ClientError::Transport`] with the whole chain of causes in the message.
fn transport_error(e: &hyper_util::client::legacy::Error) -> ClientError {
    let mut message = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        if let Some(io) = cause.downcast_ref::<std::io::Error>() {
            if io.kind() == std::io::ErrorKind::TimedOut {
                return ClientError::Timeout;
            }
        }
        message.push_str(": ");
        message.push_str(&cause.to_string());
        source = cause.source();
    }
    ClientError::Transport(message)
}

/// Maps an unexpected answer to the matching [`ClientError`]: by status, and for a 400 by its
/// [`ErrorCode`]. An answer without an [`ErrorBody`] has an empty code and its body as the
/// message.
fn error_from(answer: Answer) -> ClientError {
    let raw = answer.body();
    let body: Option<ErrorBody> = serde_json::from_slice(&raw).ok();
    let (code, message) = match body {
        Some(b) => (Some(b.code), b.message),
        None => (None, String::from_utf8_lossy(&raw).into_owned()),
    };
    match (answer.status, code) {
        (StatusCode::NOT_FOUND, _) => ClientError::NotFound,
        (StatusCode::UNAUTHORIZED, _) => ClientError::Unauthorized,
        (StatusCode::PAYLOAD_TOO_LARGE, _) => ClientError::TooLarge,
        (StatusCode::INSUFFICIENT_STORAGE, _) => ClientError::InsufficientStorage,
        (StatusCode::BAD_REQUEST, Some(ErrorCode::BadDigest)) => ClientError::BadDigest,
        (StatusCode::BAD_REQUEST, Some(ErrorCode::InvalidChunkId)) => ClientError::InvalidChunkId,
        (status, code) => ClientError::Status {
            status: status.as_u16(),
            code: code.map_or("", ErrorCode::as_str).to_owned(),
            message,
        },
    }
}
