//! Logs, traces and metrics (issue #7).
//! - `logs`: JSON (or, on a terminal, text) lines on stdout, `LOG_LEVEL`, `LOG_FORMAT`; installs the
//!   one global subscriber.
//! - `traces`: OpenTelemetry over OTLP gRPC: sampler, propagator, batch export, flush.
//! - `trace_context`: the request's trace id, `traceparent` parsing, the task-local.
//! - `log_buffer`: the buffer every line goes through to stdout, and its writer thread.
//! - `access`: the per-request access line and the hook later layers report into.
//! - `http_labels`: the bounded `method` and `route` names the metrics, spans and access line share.
//! - `metrics`: the one Prometheus registry and every metric family the gateway exports.
pub mod access;
pub mod http_labels;
pub mod log_buffer;
pub mod logs;
pub mod metrics;
pub mod trace_context;
pub mod traces;

pub use access::AccessLog;
pub use metrics::Metrics;
