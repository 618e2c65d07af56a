//! A bound on clients that stop reading (SPEC §4): [`WriteDeadline`] wraps the accepted socket: a write (or flush) that makes no progress for
//!   `RESPONSE_WRITE_TIMEOUT` fails with `TimedOut`, so hyper abandons the connection and drops the
//!   response body, which releases the in-flight permit and the upstream connection it held.
//!
//! Not here: the request body's deadline (`body.rs`); the head deadline and head size (hyper's,
//! `app.rs`).
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use prometheus::IntCounter;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

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
    use tokio::io::AsyncWriteExt;

    fn counter() -> IntCounter {
        IntCounter::new("t", "t").unwrap()
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
}
