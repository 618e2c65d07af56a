//! Log lines on stdout, filtered by `LOG_LEVEL`, and the one place that installs the
//! global `tracing` subscriber (with the OpenTelemetry layer when traces are on). Tokens, keys
//! and bodies are never logged by any call site; this module only formats.
//!
//! `LOG_FORMAT=json` writes one JSON object per line (SPEC §4, for collectors), `text` tracing's
//! human-readable lines; unset, text when stdout is a terminal (a person is reading) and JSON
//! otherwise (a container's log pipe, a file).
//!
//! Two consumers share the subscriber, each with its own filter:
//! - the JSON formatter sees events only (spans cost it nothing) at `LOG_LEVEL`;
//! - the OpenTelemetry layer sees this crate's spans and events at `info` and above, whatever
//!   `LOG_LEVEL` says (quiet logs must not turn traces off). The access line (target `access`) is
//!   not this crate's target, so it is not copied onto spans as an event.
//!
//! The gateway's lines go through [`LogBuffer`]: formatting happens on the request's thread, the
//! `write(2)` on a thread of its own that wakes every 100 ms (or per 64 KiB of lines) and writes
//! whatever is waiting at once. A slow or full stdout (a container log pipe) therefore never
//! blocks the runtime; past the buffer's bound new lines are dropped and counted
//! (`log_lines_dropped_total`). The buffer is written out when the [`Logs`] handle is dropped,
//! after the last request. With JSON lines the access line skips `tracing` altogether and is
//! written into the buffer directly (`access::emit`: the hot path's one log line).
use std::io::IsTerminal;
use std::sync::{Arc, OnceLock};

use opentelemetry_sdk::trace::SdkTracer;
use tracing::Level;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::Layer;
use tracing_subscriber::filter::{FilterExt, Targets, filter_fn};
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

use crate::config::{LogFormat, TelemetryConfig};
use crate::telemetry::log_buffer::{BufferWriter, LogBuffer};
use crate::telemetry::traces::{self, Traces};

/// The process's log buffer once [`init_with_traces`] has run, and whether its lines are JSON.
static BUFFER: OnceLock<(Arc<LogBuffer>, LogFormat)> = OnceLock::new();

/// Log lines dropped so far because stdout could not keep up (0 before [`init_with_traces`]).
pub fn dropped_lines() -> u64 {
    BUFFER.get().map_or(0, |(b, _)| b.dropped())
}

/// The buffer to write a JSON line into directly, when the lines are JSON and buffered (`main`);
/// `None` in tests that log through `tracing` synchronously, and with text lines.
pub fn json_buffer() -> Option<&'static LogBuffer> {
    match BUFFER.get() {
        Some((b, LogFormat::Json)) => Some(b),
        _ => None,
    }
}

/// The running log writer and trace pipeline (`main`). Keep it until the server has stopped;
/// dropping it writes out the lines still queued.
pub struct Logs {
    traces: Option<Traces>,
    buffer: Option<Arc<LogBuffer>>,
}

impl Drop for Logs {
    fn drop(&mut self) {
        if let Some(b) = &self.buffer {
            b.close();
        }
    }
}

impl Logs {
    /// Flushes and stops the trace pipeline (the last spans, after the last request). Log lines
    /// keep flowing until the handle itself is dropped.
    pub async fn shutdown_traces(&mut self) {
        if let Some(t) = self.traces.take() {
            t.shutdown().await;
        }
    }
}

/// Installs the global subscriber with logs only, written synchronously (tests: they leave
/// logging off unless `TEST_LOG` is set).
pub fn init(level: &str) {
    let filter = EnvFilter::try_new(level).unwrap_or_else(|_| EnvFilter::new("info"));
    install(filter, LogFormat::Json, None, std::io::stdout);
}

/// Installs the global subscriber with the non-blocking log writer and OTLP traces (`main`).
/// Traces are off (logged, never fatal) when the exporter cannot be built.
pub fn init_with_traces(cfg: &TelemetryConfig) -> Logs {
    let format = cfg
        .log_format
        .unwrap_or(if std::io::stdout().is_terminal() {
            LogFormat::Text
        } else {
            LogFormat::Json
        });
    let buffer = match LogBuffer::start(std::io::stdout()) {
        Ok(b) => b,
        Err(e) => {
            // No thread for the writer: log synchronously rather than not at all.
            install(cfg.log_level.env_filter(), format, None, std::io::stdout);
            tracing::warn!(error = %e, "log writer thread could not start: logging synchronously");
            return Logs {
                traces: None,
                buffer: None,
            };
        }
    };
    let _ = BUFFER.set((buffer.clone(), format));
    let writer = BufferWriter(buffer.clone());
    if !cfg.export_traces {
        install(cfg.log_level.env_filter(), format, None, writer);
        return Logs {
            traces: None,
            buffer: Some(buffer),
        };
    }
    let traces = match traces::init(cfg) {
        Ok((pipeline, tracer)) => {
            install(cfg.log_level.env_filter(), format, Some(tracer), writer);
            Some(pipeline)
        }
        Err(e) => {
            install(cfg.log_level.env_filter(), format, None, writer);
            tracing::warn!(error = %e, "OTLP exporter could not be built: traces are off");
            None
        }
    };
    Logs {
        traces,
        buffer: Some(buffer),
    }
}

fn install<W>(filter: EnvFilter, format: LogFormat, tracer: Option<SdkTracer>, writer: W)
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    let events = filter.and(filter_fn(|meta| meta.is_event()));
    let fmt = tracing_subscriber::fmt::layer().with_writer(writer);
    let fmt = match format {
        LogFormat::Json => fmt
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_span_list(false)
            .with_filter(events)
            .boxed(),
        LogFormat::Text => fmt
            .with_ansi(std::io::stdout().is_terminal())
            .with_filter(events)
            .boxed(),
    };
    let otel = tracer.map(|t| {
        tracing_opentelemetry::layer()
            .with_tracer(t)
            .with_tracked_inactivity(false)
            .with_threads(false)
            .with_filter(Targets::new().with_target(env!("CARGO_CRATE_NAME"), Level::INFO))
    });
    let _ = tracing_subscriber::registry()
        .with(fmt)
        .with(otel)
        .try_init();
}
