//! Request bodies (SPEC §4): read whole, within `MAX_BODY_SIZE` and within
//! `REQUEST_BODY_TIMEOUT`, before anything is forwarded (idempotency hashes them, the waiting
//! room reads fields of them).
//!
//! [`DeadlineBody`] wraps a request body when the listener hands it over: the whole body must
//! arrive by the deadline, else it ends with [`BodyTimeout`], which [`read_body`] turns into 408
//! `REQUEST_TIMEOUT` (and the connection is closed). The timer exists only once a read would wait:
//! a body that arrives with its head, or no body at all, costs no timer.
//!
//! [`Holding`] is for response bodies: it keeps something alive (a permit, an in-flight count)
//! for as long as the body streams, and passes the body through otherwise unchanged — its exact
//! size too, so hyper still writes `Content-Length`.
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use axum::body::Body as AxumBody;
use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use prometheus::IntCounter;
use tokio::time::{Instant, Sleep};

use crate::error::ApiError;

/// `body`, holding `held` until it is done or dropped.
pub struct Holding<B, T> {
    body: B,
    _held: T,
}

impl<B, T> Holding<B, T> {
    pub fn new(body: B, held: T) -> Self {
        Holding { body, _held: held }
    }
}

impl<B: Body + Unpin, T: Unpin> Body for Holding<B, T> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<B::Data>, B::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// Reads a whole request body: over `max` bytes → 413, not in time → 408, broken → 400.
pub async fn read_body(body: AxumBody, max: usize) -> Result<Bytes, ApiError> {
    axum::body::to_bytes(body, max).await.map_err(|e| {
        if is_body_timeout(&e) {
            return ApiError::RequestTimeout;
        }
        let mut source: Option<&(dyn std::error::Error + 'static)> = Some(&e);
        while let Some(err) = source {
            if err.is::<http_body_util::LengthLimitError>() {
                return ApiError::PayloadTooLarge;
            }
            source = err.source();
        }
        ApiError::BadRequest("could not read the request body")
    })
}

/// The request body did not arrive within `REQUEST_BODY_TIMEOUT`.
#[derive(Debug, thiserror::Error)]
#[error("the request body did not arrive in time")]
pub struct BodyTimeout;

/// A request body that must be complete by a deadline.
pub struct DeadlineBody<B> {
    inner: B,
    deadline: Instant,
    /// Armed on the first read that has to wait.
    timer: Option<Pin<Box<Sleep>>>,
    aborts: IntCounter,
    expired: bool,
}

impl<B> DeadlineBody<B> {
    pub fn new(inner: B, timeout: Duration, aborts: IntCounter) -> Self {
        DeadlineBody {
            inner,
            deadline: Instant::now() + timeout,
            timer: None,
            aborts,
            expired: false,
        }
    }
}

impl<B> Body for DeadlineBody<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<axum::BoxError>,
{
    type Data = Bytes;
    type Error = axum::BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = &mut *self;
        if this.expired {
            return Poll::Ready(Some(Err(BodyTimeout.into())));
        }
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(frame) => Poll::Ready(frame.map(|f| f.map_err(Into::into))),
            Poll::Pending => {
                let deadline = this.deadline;
                let timer = this
                    .timer
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
                ready!(timer.as_mut().poll(cx));
                this.expired = true;
                this.aborts.inc();
                Poll::Ready(Some(Err(BodyTimeout.into())))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Whether `err` (or any error it wraps) is a [`BodyTimeout`].
pub fn is_body_timeout(err: &(dyn std::error::Error + 'static)) -> bool {
    let mut source = Some(err);
    while let Some(e) = source {
        if e.is::<BodyTimeout>() {
            return true;
        }
        source = e.source();
    }
    false
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use std::io;

    use super::*;
    use http_body_util::BodyExt;

    fn counter() -> IntCounter {
        IntCounter::new("t", "t").unwrap()
    }

    #[tokio::test(start_paused = true)]
    async fn a_body_that_never_completes_ends_with_body_timeout_at_the_deadline() {
        // One byte, then nothing more (the sender stays open: a trickle that stopped).
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<Frame<Bytes>, io::Error>>(1);
        tx.send(Ok(Frame::data(Bytes::from_static(b"a"))))
            .await
            .unwrap();
        let body = http_body_util::StreamBody::new(receiver_stream(rx));
        let aborts = counter();
        let body = DeadlineBody::new(body, Duration::from_secs(10), aborts.clone());
        let err = body.collect().await.unwrap_err();
        assert!(is_body_timeout(&*err), "{err}");
        assert_eq!(aborts.get(), 1);
        drop(tx);
    }

    #[tokio::test(start_paused = true)]
    async fn a_complete_body_needs_no_timer() {
        let body = DeadlineBody::new(
            http_body_util::Full::new(Bytes::from_static(b"whole")),
            Duration::from_secs(10),
            counter(),
        );
        let bytes = body.collect().await.unwrap().to_bytes();
        assert_eq!(&bytes[..], b"whole");
    }

    fn receiver_stream(
        mut rx: tokio::sync::mpsc::Receiver<Result<Frame<Bytes>, io::Error>>,
    ) -> impl futures_util::Stream<Item = Result<Frame<Bytes>, io::Error>> {
        futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx))
    }
}
