//! Logs, traces and metrics (issue #7 owns the full build-out).
//! - `logs`: JSON lines on stdout, `LOG_LEVEL`.
//! - `traces`: OpenTelemetry over OTLP (issue #7).
//! - `metrics`: the one Prometheus registry and every metric family the gateway exports.
pub mod logs;
pub mod metrics;

pub use metrics::Metrics;
