//! The buffer every log line goes through on its way to stdout (nginx's `access_log … buffer=
//! flush=`): a request appends its line to one in-memory buffer and returns; a writer thread of
//! its own wakes every [`FLUSH_INTERVAL`], or early once [`FLUSH_BYTES`] are waiting, takes the
//! whole buffer and writes it with one `write(2)`.
//!
//! So a line costs its request a `memcpy` under an uncontended lock — no system call, and no
//! other thread woken for it (the writer is woken about once per [`FLUSH_BYTES`] of lines, not
//! per line). A slow or full stdout (a container log pipe) never blocks the runtime: past
//! [`MAX_BUFFERED_BYTES`] waiting, new lines are dropped and counted. A line reaches stdout at
//! most about [`FLUSH_INTERVAL`] after it was logged, and [`LogBuffer::close`] (the `Logs`
//! handle being dropped, after the last request) writes out what is left.
use std::io::Write;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::{self, JoinHandle, Thread};
use std::time::Duration;

/// How long a line may wait in the buffer.
pub const FLUSH_INTERVAL: Duration = Duration::from_millis(100);
/// Waiting bytes that wake the writer before its interval is up.
pub const FLUSH_BYTES: usize = 64 * 1024;
/// Waiting bytes past which new lines are dropped (and counted) instead of queued.
pub const MAX_BUFFERED_BYTES: usize = 8 * 1024 * 1024;

pub struct LogBuffer {
    pending: Mutex<Vec<u8>>,
    /// Set by the line that crossed [`FLUSH_BYTES`], cleared by the writer: one wake per batch.
    woken: AtomicBool,
    closing: AtomicBool,
    dropped: AtomicU64,
    writer: Mutex<Option<(Thread, JoinHandle<()>)>>,
}

impl LogBuffer {
    /// Starts the writer thread over `out`.
    pub fn start<W: Write + Send + 'static>(out: W) -> std::io::Result<Arc<LogBuffer>> {
        let buffer = Arc::new(LogBuffer {
            pending: Mutex::new(Vec::with_capacity(FLUSH_BYTES * 2)),
            woken: AtomicBool::new(false),
            closing: AtomicBool::new(false),
            dropped: AtomicU64::new(0),
            writer: Mutex::new(None),
        });
        let handle = {
            let buffer = buffer.clone();
            thread::Builder::new()
                .name("log-writer".into())
                .spawn(move || buffer.run(out))?
        };
        *buffer.lock_writer() = Some((handle.thread().clone(), handle));
        Ok(buffer)
    }

    /// Queues one whole line (with its `\n`); drops it when the buffer is full.
    pub fn push(&self, line: &[u8]) {
        let len = {
            let mut pending = self.pending.lock().unwrap_or_else(PoisonError::into_inner);
            if pending.len() + line.len() > MAX_BUFFERED_BYTES {
                drop(pending);
                self.dropped.fetch_add(1, Ordering::Relaxed);
                return;
            }
            pending.extend_from_slice(line);
            pending.len()
        };
        if len >= FLUSH_BYTES
            && !self.woken.swap(true, Ordering::AcqRel)
            && let Some((thread, _)) = &*self.lock_writer()
        {
            thread.unpark();
        }
    }

    /// Lines dropped so far because the buffer was full.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Writes out what is queued and stops the writer. Lines pushed afterwards are dropped.
    pub fn close(&self) {
        self.closing.store(true, Ordering::Release);
        let writer = self.lock_writer().take();
        if let Some((thread, handle)) = writer {
            thread.unpark();
            let _ = handle.join();
        }
    }

    fn run<W: Write>(&self, mut out: W) {
        let mut batch = Vec::with_capacity(FLUSH_BYTES * 2);
        loop {
            let closing = self.closing.load(Ordering::Acquire);
            if !closing {
                thread::park_timeout(FLUSH_INTERVAL);
            }
            self.woken.store(false, Ordering::Release);
            std::mem::swap(
                &mut *self.pending.lock().unwrap_or_else(PoisonError::into_inner),
                &mut batch,
            );
            if !batch.is_empty() {
                // Nowhere to report a failing stdout; the lines are lost, the gateway serves on.
                let _ = out.write_all(&batch).and_then(|()| out.flush());
                batch.clear();
                // A burst may have grown it; keep the resident size bounded between bursts.
                batch.shrink_to(FLUSH_BYTES * 2);
            }
            if closing {
                return;
            }
        }
    }

    fn lock_writer(&self) -> std::sync::MutexGuard<'_, Option<(Thread, JoinHandle<()>)>> {
        self.writer.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// `tracing-subscriber`'s writer over the buffer: its formatter hands over each event as one
/// `write_all` of a whole line.
#[derive(Clone)]
pub struct BufferWriter(pub Arc<LogBuffer>);

impl Write for BufferWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.push(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for BufferWriter {
    type Writer = BufferWriter;

    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

#[cfg(test)]
pub(crate) mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// A writer the test can read back (the access-log layer's test uses it too).
    #[derive(Clone, Default)]
    pub(crate) struct Shared(pub(crate) Arc<Mutex<Vec<u8>>>);

    impl Write for Shared {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn lines_reach_the_writer_in_order_within_the_interval() {
        let out = Shared::default();
        let buffer = LogBuffer::start(out.clone()).unwrap();
        buffer.push(b"one\n");
        buffer.push(b"two\n");
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while out.0.lock().unwrap().is_empty() && std::time::Instant::now() < deadline {
            thread::sleep(Duration::from_millis(10));
        }
        assert_eq!(&*out.0.lock().unwrap(), b"one\ntwo\n");
        buffer.close();
    }

    #[test]
    fn close_writes_out_what_is_left_and_later_lines_are_not_written() {
        let out = Shared::default();
        let buffer = LogBuffer::start(out.clone()).unwrap();
        for i in 0..1000 {
            buffer.push(format!("line {i}\n").as_bytes());
        }
        buffer.close();
        let written = String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
        assert_eq!(written.lines().count(), 1000);
        assert_eq!(written.lines().last(), Some("line 999"));
        buffer.push(b"after close\n");
        thread::sleep(Duration::from_millis(300));
        assert!(!String::from_utf8_lossy(&out.0.lock().unwrap()).contains("after close"));
    }

    /// A writer that never returns: stdout blocked.
    struct Stuck;
    impl Write for Stuck {
        fn write(&mut self, _: &[u8]) -> std::io::Result<usize> {
            thread::sleep(Duration::from_secs(3600));
            Ok(0)
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_blocked_stdout_drops_and_counts_instead_of_blocking() {
        let buffer = LogBuffer::start(Stuck).unwrap();
        let line = vec![b'x'; 1023];
        let started = std::time::Instant::now();
        // Three times the bound: the writer takes at most one batch and then hangs.
        for _ in 0..(3 * MAX_BUFFERED_BYTES / 1024) {
            buffer.push(&line);
        }
        assert!(started.elapsed() < Duration::from_secs(30));
        assert!(buffer.dropped() >= (MAX_BUFFERED_BYTES / 1024) as u64);
        // Not closed: the writer thread is stuck in `Stuck::write` for good.
    }
}
