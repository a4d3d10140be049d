//! Streams between s3s and the chunk pipeline.
//!
//! * [`watch`] wraps a request body on its way into `ChunkStore::write_body`: it passes the
//!   bytes through untouched and records in a [`BodyErrorSlot`] what S3 error a failure of the
//!   body stands for (the pipeline only reports "the body failed").
//! * [`response`] turns the pipeline's read stream into the body of a GET
//!   ([`response_after_first`]: once its first bytes are read, so a first chunk that cannot be
//!   read is a clean 503). If a chunk cannot
//!   be read after the response has started, the stream yields an error and hyper aborts the
//!   connection: the client sees a truncated transfer, never a short body that looks complete.

use crate::pipeline::PipelineError;
use crate::s3::error::{classify_body_error, BodyErrorSlot};
use bytes::Bytes;
use futures::stream::BoxStream;
use futures::{Stream, StreamExt};
use s3s::dto::StreamingBlob;
use std::pin::Pin;
use std::sync::Mutex;
use std::task::{Context, Poll};

type StdError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Passes `body` through, recording the S3 meaning of its first error in `slot`.
pub fn watch<S>(
    body: S,
    slot: BodyErrorSlot,
) -> impl Stream<Item = Result<Bytes, StdError>> + Send + Unpin + 'static
where
    S: Stream<Item = Result<Bytes, StdError>> + Send + Unpin + 'static,
{
    body.map(move |item| {
        if let Err(e) = &item {
            slot.set(classify_body_error(e.as_ref()));
        }
        item
    })
}

/// A copy source read through the pipeline, fed into another write (UploadPartCopy): a read
/// failure is recorded as the S3 error it maps to.
pub fn watch_copy(
    source: BoxStream<'static, Result<Bytes, PipelineError>>,
    slot: BodyErrorSlot,
) -> impl Stream<Item = Result<Bytes, PipelineError>> + Send + Unpin + 'static {
    source.map(move |item| match item {
        Ok(b) => Ok(b),
        Err(e) => {
            let text = e.to_string();
            slot.set(crate::s3::error::pipeline(e, None));
            Err(PipelineError::Internal(text))
        }
    })
}

/// The body of a GetObject response, once its first bytes are in hand: when the first chunk
/// cannot be read (every replica missing, corrupt or on a dead node), the request fails with
/// that error (a clear 503 `ServiceUnavailable`) before any header is sent, instead of a 200
/// whose body breaks off at once. The first byte reaches the client no later than it would
/// have anyway. A failure after the first chunk still aborts the connection (see above).
pub async fn response_after_first(
    mut stream: BoxStream<'static, Result<Bytes, PipelineError>>,
) -> Result<StreamingBlob, PipelineError> {
    match stream.next().await {
        Some(Err(e)) => Err(e),
        Some(Ok(first)) => Ok(response(
            futures::stream::once(futures::future::ready(Ok(first)))
                .chain(stream)
                .boxed(),
        )),
        None => Ok(response(stream)),
    }
}

/// The body of a GetObject response.
pub fn response(stream: BoxStream<'static, Result<Bytes, PipelineError>>) -> StreamingBlob {
    StreamingBlob::wrap(SyncStream(Mutex::new(stream)))
}

/// s3s wants a `Sync` body; the pipeline's stream is only `Send`. The mutex is never contended:
/// `poll_next` has `&mut self` and reaches the stream through `Mutex::get_mut`.
struct SyncStream<S>(Mutex<S>);

impl<S> Stream for SyncStream<S>
where
    S: Stream + Unpin,
{
    type Item = S::Item;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        match self.get_mut().0.get_mut() {
            Ok(stream) => Pin::new(stream).poll_next(cx),
            // A panic while polling poisoned it: end the body with nothing more (the length
            // header makes hyper report the truncation).
            Err(_) => Poll::Ready(None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn watch_records_the_cause_and_passes_bytes() {
        let slot = BodyErrorSlot::default();
        let items: Vec<Result<Bytes, StdError>> = vec![
            Ok(Bytes::from_static(b"abc")),
            Err("AwsChunkedStreamError: SignatureMismatch".into()),
        ];
        let mut s = watch(futures::stream::iter(items), slot.clone());
        assert_eq!(
            s.next().await.and_then(|r| r.ok()),
            Some(Bytes::from_static(b"abc"))
        );
        assert!(s.next().await.is_some_and(|r| r.is_err()));
        assert_eq!(
            slot.take().map(|e| e.code().clone()),
            Some(s3s::S3ErrorCode::SignatureDoesNotMatch)
        );
    }

    #[tokio::test]
    async fn response_streams_errors_through() {
        let items: Vec<Result<Bytes, PipelineError>> = vec![
            Ok(Bytes::from_static(b"abc")),
            Err(PipelineError::ChunkUnavailable("gone".into())),
        ];
        let mut blob = response(Box::pin(futures::stream::iter(items)));
        assert!(blob.next().await.is_some_and(|r| r.is_ok()));
        assert!(blob.next().await.is_some_and(|r| r.is_err()));
    }
}
