//! Bounds on slow clients (SPEC §4): a client never holds an in-flight slot, an upstream
//! connection or a task for longer than the configured time because it sends or reads slowly.
//!
//! - [`DeadlineBody`] wraps a request body: the whole body must arrive by the deadline, else it
//!   ends with [`BodyTimeout`], which the handler reading it turns into 408 `REQUEST_TIMEOUT` (and
//!   the connection is closed). The timer exists only once a read would wait: a body that arrives
//!   with its head, or no body at all, costs no timer.
//! - [`WriteDeadline`] wraps the accepted socket: a write (or flush) that makes no progress for
//!   `RESPONSE_WRITE_TIMEOUT` fails with `TimedOut`, so hyper abandons the connection and drops the
//!   response body, which releases the in-flight permit and the upstream connection it held.
//!
//! Not here: the head deadline and head size (hyper's, `app.rs`).
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use prometheus::IntCounter;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

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

/// A socket whose writes must make progress: `timeout` without any byte written fails the write.
pub struct WriteDeadline<IO> {
    io: IO,
    timeout: Duration,
    /// Armed when a write first has to wait; disarmed (not reset) by progress.
    timer: Pin<Box<Sleep>>,
    armed: bool,
    aborts: IntCounter,
}

impl<IO> WriteDeadline<IO> {
    pub fn new(io: IO, timeout: Duration, aborts: IntCounter) -> Self {
        WriteDeadline {
            io,
            timeout,
            timer: Box::pin(tokio::time::sleep_until(Instant::now() + timeout)),
            armed: false,
            aborts,
        }
    }

    /// After the inner write said `Pending`: start the clock if it is not running, then fail once
    /// it has run out.
    fn stalled<T>(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<T>> {
        if !self.armed {
            self.armed = true;
            let deadline = Instant::now() + self.timeout;
            self.timer.as_mut().reset(deadline);
        }
        ready!(self.timer.as_mut().poll(cx));
        self.aborts.inc();
        Poll::Ready(Err(io::Error::new(
            io::ErrorKind::TimedOut,
            "the client made no read progress within RESPONSE_WRITE_TIMEOUT",
        )))
    }

    fn progressed<T>(
        &mut self,
        result: Poll<io::Result<T>>,
        cx: &mut Context<'_>,
    ) -> Poll<io::Result<T>> {
        match result {
            Poll::Pending => self.stalled(cx),
            done => {
                self.armed = false;
                done
            }
        }
    }
}

impl<IO: AsyncRead + Unpin> AsyncRead for WriteDeadline<IO> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for WriteDeadline<IO> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        let result = Pin::new(&mut this.io).poll_write(cx, buf);
        this.progressed(result, cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        let result = Pin::new(&mut this.io).poll_write_vectored(cx, bufs);
        this.progressed(result, cx)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        let result = Pin::new(&mut this.io).poll_flush(cx);
        this.progressed(result, cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use http_body_util::BodyExt;
    use tokio::io::AsyncWriteExt;

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

    #[tokio::test(start_paused = true)]
    async fn a_write_with_no_progress_fails_after_the_timeout_and_progress_resets_it() {
        // A 16-byte pipe whose far end is read only when we say so.
        let (near, mut far) = tokio::io::duplex(16);
        let aborts = counter();
        let mut w = WriteDeadline::new(near, Duration::from_secs(10), aborts.clone());
        w.write_all(&[0; 16]).await.unwrap();
        // Half the timeout stalled, then the reader takes the bytes: progress.
        let reader = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(6)).await;
            let mut buf = [0; 16];
            tokio::io::AsyncReadExt::read_exact(&mut far, &mut buf)
                .await
                .unwrap();
            far
        });
        w.write_all(&[0; 16]).await.unwrap();
        let _far = reader.await.unwrap();
        assert_eq!(aborts.get(), 0, "a slow but moving reader is not cut off");
        // Now nobody reads: the write fails once the timeout has passed without progress.
        let err = w.write_all(&[0; 16]).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        assert_eq!(aborts.get(), 1);
    }

    fn receiver_stream(
        mut rx: tokio::sync::mpsc::Receiver<Result<Frame<Bytes>, io::Error>>,
    ) -> impl futures_util::Stream<Item = Result<Frame<Bytes>, io::Error>> {
        futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx))
    }
}
