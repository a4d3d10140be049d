//! The chunkd HTTP API (see the table in [`crate::wire`]): routing, the cluster-secret check,
//! and the mapping of store results to status codes. Disk work is delegated to
//! [`crate::store`] on blocking threads; this module only moves bytes between hyper and those
//! threads through small bounded channels.
//!
//! Order of checks for every request: `GET /health` needs nothing; anything else must carry
//! `Authorization: Bearer <cluster secret>` or gets 401 before the path is even looked at; then
//! the chunk id is validated (400 `InvalidChunkId`) before any file is touched.

use std::convert::Infallible;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{header, HeaderMap, Method, Request, Response, StatusCode};
use http_body::{Body, Frame, SizeHint};
use http_body_util::{combinators::BoxBody, BodyExt, Full};
use hyper::body::Incoming;
use tokio::sync::{mpsc, Semaphore};

use crate::store::write::{self, Piece};
use crate::store::{DeleteResult, PutResult, Store, StoreError};
use crate::wire::{
    self, ChunkId, ChunkPage, DeleteQuery, Endpoint, ErrorBody, ErrorCode, HeadQuery, Health,
    InvalidQuery, ListQuery,
};

/// Body of every response.
pub type ResponseBody = BoxBody<Bytes, io::Error>;

/// Bytes forwarded to the writer thread at a time (request frames are grouped up to this).
const PIECE_SIZE: usize = 128 * 1024;
/// Bytes read from disk at a time for a GET: a whole 1 MiB chunk in one blocking call, which
/// keeps the hops between the reactor and the blocking pool to one per chunk.
const READ_SIZE: usize = 1024 * 1024;
/// Pieces read ahead of the client by a GET (with `READ_SIZE`, at most about two chunks' worth
/// of memory per GET).
const READ_AHEAD: usize = 1;
/// Pieces in flight between hyper and a disk thread, per request. With `PIECE_SIZE` this keeps
/// a PUT well under one 1 MiB chunk in memory.
const CHANNEL_DEPTH: usize = 2;
/// Concurrent PUTs; more wait for a slot (bounds memory and open temporary files).
pub const MAX_CONCURRENT_WRITES: usize = 64;

/// State shared by every request of one node.
pub struct Shared {
    pub store: Arc<Store>,
    /// Every request but `GET /health` must carry `Authorization: Bearer <cluster_secret>`.
    pub cluster_secret: String,
    pub max_chunk_size: u64,
    pub zone: String,
    pub started: Instant,
    pub write_slots: Semaphore,
}

impl Shared {
    /// The `GET /health` document (also the body of heartbeats).
    pub fn health(&self) -> Health {
        Health {
            node_id: self.store.node_id().to_owned(),
            zone: self.zone.clone(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
            capacity_bytes: self.store.capacity(),
            used_bytes: self.store.used_bytes(),
            chunk_count: self.store.chunk_count(),
            corrupt_chunks: self.store.corrupt_chunks(),
            uptime_s: self.started.elapsed().as_secs(),
        }
    }
}

/// The hyper service: answers one request and logs one line for it.
pub async fn handle(
    shared: Arc<Shared>,
    req: Request<Incoming>,
) -> Result<Response<ResponseBody>, Infallible> {
    let started = Instant::now();
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    let response = route(&shared, req).await;
    tracing::info!(
        %method,
        %path,
        status = response.status().as_u16(),
        ms = started.elapsed().as_millis() as u64,
        "request"
    );
    Ok(response)
}

async fn route(shared: &Shared, req: Request<Incoming>) -> Response<ResponseBody> {
    let endpoint = Endpoint::parse(req.uri().path());
    match endpoint {
        Endpoint::Health => match *req.method() {
            Method::GET => json(StatusCode::OK, &shared.health()),
            _ => method_not_allowed(endpoint),
        },
        _ if !wire::bearer_matches(req.headers(), &shared.cluster_secret) => error(
            ErrorCode::Unauthorized,
            "missing or wrong cluster secret (Authorization: Bearer <secret>)",
        ),
        Endpoint::ChunkList => match *req.method() {
            Method::GET => list(shared, req.uri().query()).await,
            _ => method_not_allowed(endpoint),
        },
        Endpoint::Chunk(raw_id) => {
            // Only 64 lowercase hex characters get past this point: no '/', '.', '%' or
            // anything else that could make the path name a file outside the data directory.
            let Some(id) = ChunkId::from_hex(raw_id) else {
                return error(
                    ErrorCode::InvalidChunkId,
                    "a chunk id is 64 lowercase hex characters (the SHA-256 of the chunk)",
                );
            };
            let query = req.uri().query();
            match *req.method() {
                Method::PUT => put(shared, id, req).await,
                Method::GET => get(shared, id).await,
                Method::HEAD => head(shared, id, HeadQuery::parse(query)).await,
                Method::DELETE => match DeleteQuery::parse(query) {
                    Ok(query) => delete(shared, id, query).await,
                    Err(invalid) => invalid_query(invalid),
                },
                _ => method_not_allowed(endpoint),
            }
        }
        Endpoint::Unknown => error(ErrorCode::NotFound, "no such endpoint"),
    }
}

/// `PUT /chunks/{id}`: streams the body to a writer thread, which hashes it, writes it to a
/// temporary file and commits it (see `store::write` for the fsync-before-ack invariant).
async fn put(shared: &Shared, id: ChunkId, req: Request<Incoming>) -> Response<ResponseBody> {
    let max = shared.max_chunk_size;
    if content_length(req.headers()).is_some_and(|len| len > max) {
        return too_large(max);
    }
    let Ok(_slot) = shared.write_slots.acquire().await else {
        return error(ErrorCode::ShuttingDown, "node is stopping");
    };
    let (tx, rx) = mpsc::channel(CHANNEL_DEPTH);
    let store = Arc::clone(&shared.store);
    let writer = tokio::task::spawn_blocking(move || write::receive(&store, &id, rx));

    let fed = feed(req.into_body(), &tx, max).await;
    if fed.is_ok() {
        // If the writer already stopped (disk full), this fails and its error is reported.
        let _ = tx.send(Piece::End).await;
    }
    drop(tx); // without End, the writer discards the temporary file
    let written = writer.await;

    match fed {
        Err(Feed::TooLarge) => return too_large(max),
        Err(Feed::Body(e)) => {
            return error(
                ErrorCode::IncompleteBody,
                &format!("reading the request body failed: {e}"),
            )
        }
        Ok(()) | Err(Feed::WriterStopped) => {}
    }
    match written {
        Ok(Ok(PutResult::Created)) => empty(StatusCode::CREATED),
        Ok(Ok(PutResult::AlreadyPresent)) => empty(StatusCode::OK),
        Ok(Err(StoreError::BadDigest { actual })) => error(
            ErrorCode::BadDigest,
            &format!("the body hashes to {actual}, not to the chunk id {id}; nothing was stored"),
        ),
        Ok(Err(StoreError::Full)) => error(
            ErrorCode::InsufficientStorage,
            "no space left on this node; nothing was stored",
        ),
        Ok(Err(StoreError::ReadOnly)) => error(
            ErrorCode::ReadOnly,
            "this node's data directory is read-only; nothing was stored",
        ),
        Ok(Err(e)) => internal(&e),
        Err(join) => internal(&join),
    }
}

enum Feed {
    TooLarge,
    Body(hyper::Error),
    WriterStopped,
}

/// Forwards the request body to the writer in pieces of about `PIECE_SIZE`, stopping as soon
/// as it exceeds `max` bytes.
async fn feed(mut body: Incoming, tx: &mpsc::Sender<Piece>, max: u64) -> Result<(), Feed> {
    let mut received = 0u64;
    // Frames are handed over as they are (no copy), grouped until about PIECE_SIZE so the
    // writer thread is woken once per piece rather than once per small frame.
    let mut pending: Vec<Bytes> = Vec::new();
    let mut pending_len = 0usize;
    while let Some(frame) = body.frame().await {
        let Ok(data) = frame.map_err(Feed::Body)?.into_data() else {
            continue; // trailers carry nothing we need
        };
        received += data.len() as u64;
        if received > max {
            return Err(Feed::TooLarge);
        }
        pending_len += data.len();
        pending.push(data);
        if pending_len >= PIECE_SIZE {
            send(tx, std::mem::take(&mut pending)).await?;
            pending_len = 0;
        }
    }
    if !pending.is_empty() {
        send(tx, pending).await?;
    }
    Ok(())
}

async fn send(tx: &mpsc::Sender<Piece>, data: Vec<Bytes>) -> Result<(), Feed> {
    tx.send(Piece::Data(data))
        .await
        .map_err(|_| Feed::WriterStopped)
}

/// Runs a store operation on the blocking pool; a failure is already the 500 answer.
async fn on_disk<T: Send + 'static>(
    shared: &Shared,
    op: impl FnOnce(&Store) -> Result<T, StoreError> + Send + 'static,
) -> Result<T, Response<ResponseBody>> {
    let store = Arc::clone(&shared.store);
    match tokio::task::spawn_blocking(move || op(&store)).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(e)) => Err(internal(&e)),
        Err(join) => Err(internal(&join)),
    }
}

/// What a GET found on disk.
enum Found {
    /// A chunk of at most `READ_SIZE` bytes, read in the same blocking call that opened it.
    Whole(Bytes),
    /// A larger chunk, streamed piece by piece.
    Large(std::fs::File, u64),
}

/// `GET /chunks/{id}`: the bytes with their Content-Length. A chunk up to `READ_SIZE` (every
/// chunk the gateway writes) is opened and read in one trip to the blocking pool; a larger one
/// is streamed.
async fn get(shared: &Shared, id: ChunkId) -> Response<ResponseBody> {
    let found = on_disk(shared, move |store| {
        let Some((mut file, len)) = store.open_chunk(&id)? else {
            return Ok(None);
        };
        if len > READ_SIZE as u64 {
            return Ok(Some(Found::Large(file, len)));
        }
        let read = read_piece(&mut file, len as usize);
        // The pages this read brought into the cache count against its budget.
        store.record_use(&id, len);
        match read {
            Ok(bytes) => Ok(Some(Found::Whole(bytes))),
            Err(source) => Err(StoreError::Io {
                context: "reading",
                path: store.chunk_path(&id),
                source,
            }),
        }
    })
    .await;
    let (body, len) = match found {
        Ok(Some(Found::Whole(bytes))) => {
            let len = bytes.len() as u64;
            (full(bytes), len)
        }
        Ok(Some(Found::Large(file, len))) => {
            let (tx, rx) = mpsc::channel(READ_AHEAD);
            let store = Arc::clone(&shared.store);
            tokio::spawn(stream_file(file, len, tx, store, id));
            (ChannelBody { rx, remaining: len }.boxed(), len)
        }
        Ok(None) => return not_found(),
        Err(response) => return response,
    };
    let mut response = Response::new(body);
    response
        .headers_mut()
        .insert(header::CONTENT_LENGTH, header::HeaderValue::from(len));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static(wire::CHUNK_CONTENT_TYPE),
    );
    response
}

/// Reads exactly `want` bytes from the file's current position (blocking). `read_to_end`
/// fills the spare capacity without zeroing it first.
fn read_piece(file: &mut std::fs::File, want: usize) -> io::Result<Bytes> {
    use std::io::Read;
    let mut buf = Vec::with_capacity(want);
    let n = file.take(want as u64).read_to_end(&mut buf)?;
    if n != want {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            format!("chunk file shorter than announced ({n} of {want} bytes)"),
        ));
    }
    Ok(Bytes::from(buf))
}

/// Sends exactly `len` bytes of `file` down `tx`, each read on a blocking thread, so a slow
/// client holds no thread while it catches up. A short file is reported as an error, which
/// makes hyper abort the connection instead of ending a response shorter than announced.
/// Afterwards, however it ended, the chunk `id` counts as used for the store's page-cache
/// budget: what was read of it is in the page cache.
async fn stream_file(
    file: std::fs::File,
    len: u64,
    tx: mpsc::Sender<io::Result<Bytes>>,
    store: Arc<Store>,
    id: ChunkId,
) {
    let chunk = Arc::new((store, id));
    if !send_pieces(file, len, &tx, &chunk).await {
        let _ = tokio::task::spawn_blocking(move || chunk.0.record_use(&chunk.1, len)).await;
    }
}

/// The loop of [`stream_file`]: returns when all is sent, the client is gone or a read failed;
/// true if the chunk was recorded as used (by the blocking call that read its last piece, so
/// before the client can have the last byte).
async fn send_pieces(
    file: std::fs::File,
    len: u64,
    tx: &mpsc::Sender<io::Result<Bytes>>,
    chunk: &Arc<(Arc<Store>, ChunkId)>,
) -> bool {
    let mut file = Some(file);
    let mut remaining = len;
    while remaining > 0 {
        let Some(mut f) = file.take() else {
            return false;
        };
        let want = remaining.min(READ_SIZE as u64) as usize;
        let last = want as u64 == remaining;
        let chunk = Arc::clone(chunk);
        let read = tokio::task::spawn_blocking(move || {
            let result = read_piece(&mut f, want);
            if last {
                chunk.0.record_use(&chunk.1, len);
            }
            (f, result)
        })
        .await;
        let result = match read {
            Ok((f, result)) => {
                file = Some(f);
                result
            }
            Err(join) => Err(io::Error::other(join.to_string())),
        };
        let failed = result.is_err();
        if tx.send(result).await.is_err() || failed {
            return last; // client gone, or error delivered
        }
        remaining -= want as u64;
    }
    true
}

/// A response body fed through a bounded channel by [`stream_file`].
struct ChannelBody {
    rx: mpsc::Receiver<io::Result<Bytes>>,
    remaining: u64,
}

impl Body for ChannelBody {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        if self.remaining == 0 {
            return Poll::Ready(None);
        }
        match self.rx.poll_recv(cx) {
            Poll::Ready(Some(Ok(bytes))) => {
                self.remaining = self.remaining.saturating_sub(bytes.len() as u64);
                Poll::Ready(Some(Ok(Frame::data(bytes))))
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(e))),
            Poll::Ready(None) => Poll::Ready(Some(Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "chunk reader stopped early",
            )))),
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.remaining == 0
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.remaining)
    }
}

/// `HEAD /chunks/{id}[?touch=1]`.
async fn head(shared: &Shared, id: ChunkId, query: HeadQuery) -> Response<ResponseBody> {
    let found = on_disk(shared, move |store| {
        if query.touch {
            store.touch(&id)
        } else {
            store.stat(&id)
        }
    })
    .await;
    match found {
        Ok(Some(len)) => {
            let mut response = empty(StatusCode::OK);
            response
                .headers_mut()
                .insert(header::CONTENT_LENGTH, header::HeaderValue::from(len));
            response
        }
        Ok(None) => empty(StatusCode::NOT_FOUND),
        Err(response) => response,
    }
}

/// `DELETE /chunks/{id}?grace=SECONDS` (no grace means 0).
async fn delete(shared: &Shared, id: ChunkId, query: DeleteQuery) -> Response<ResponseBody> {
    let grace = query.grace_secs;
    let deleted = on_disk(shared, move |store| {
        store.delete(&id, Duration::from_secs(grace))
    })
    .await;
    match deleted {
        Ok(DeleteResult::Deleted | DeleteResult::Absent) => empty(StatusCode::NO_CONTENT),
        Ok(DeleteResult::TooYoung) => error(
            ErrorCode::TooYoung,
            &format!("the chunk was written or refreshed less than {grace} s ago; kept"),
        ),
        Err(response) => response,
    }
}

/// `GET /chunks?after={id}&limit={n}`.
async fn list(shared: &Shared, query: Option<&str>) -> Response<ResponseBody> {
    let ListQuery { after, limit } = match ListQuery::parse(query) {
        Ok(query) => query,
        Err(invalid) => return invalid_query(invalid),
    };
    // One more than asked tells whether another page follows.
    let listed = on_disk(shared, move |store| store.list(after.as_ref(), limit + 1)).await;
    match listed {
        Ok(mut chunks) => {
            let next_after = if chunks.len() > limit {
                chunks.truncate(limit);
                chunks.last().map(|c| c.id)
            } else {
                None
            };
            json(StatusCode::OK, &ChunkPage { chunks, next_after })
        }
        Err(response) => response,
    }
}

fn content_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .parse()
        .ok()
}

fn empty(status: StatusCode) -> Response<ResponseBody> {
    let mut response = Response::new(full(Bytes::new()));
    *response.status_mut() = status;
    response
}

fn full(bytes: Bytes) -> ResponseBody {
    Full::new(bytes).map_err(|never| match never {}).boxed()
}

fn json<T: serde::Serialize>(status: StatusCode, value: &T) -> Response<ResponseBody> {
    match serde_json::to_vec(value) {
        Ok(body) => {
            let mut response = Response::new(full(Bytes::from(body)));
            *response.status_mut() = status;
            response.headers_mut().insert(
                header::CONTENT_TYPE,
                header::HeaderValue::from_static(wire::JSON_CONTENT_TYPE),
            );
            response
        }
        Err(e) => internal(&e),
    }
}

/// An error answer: the status that goes with `code` (see [`ErrorCode::status`]) and an
/// [`ErrorBody`].
fn error(code: ErrorCode, message: &str) -> Response<ResponseBody> {
    json(
        code.status(),
        &ErrorBody {
            code,
            message: message.to_owned(),
        },
    )
}

fn invalid_query(invalid: InvalidQuery) -> Response<ResponseBody> {
    error(invalid.code, invalid.message)
}

fn not_found() -> Response<ResponseBody> {
    error(ErrorCode::NotFound, "no such chunk on this node")
}

fn too_large(max: u64) -> Response<ResponseBody> {
    error(
        ErrorCode::TooLarge,
        &format!("a chunk is at most {max} bytes on this node (--max-chunk-size)"),
    )
}

fn method_not_allowed(endpoint: Endpoint<'_>) -> Response<ResponseBody> {
    let mut response = error(ErrorCode::MethodNotAllowed, "method not allowed here");
    response.headers_mut().insert(
        header::ALLOW,
        header::HeaderValue::from_static(endpoint.allowed_methods()),
    );
    response
}

fn internal(e: &dyn std::fmt::Display) -> Response<ResponseBody> {
    tracing::error!(error = %e, "internal error");
    error(ErrorCode::Internal, &format!("internal error: {e}"))
}
