//! JSON log lines on stdout, filtered by `LOG_LEVEL`, and the one place that installs the
//! global `tracing` subscriber (with the OpenTelemetry layer when traces are on). Tokens, keys
//! and bodies are never logged by any call site; this module only formats.
//!
//! Two consumers share the subscriber, each with its own filter:
//! - the JSON formatter sees events only (spans cost it nothing) at `LOG_LEVEL`;
//! - the OpenTelemetry layer sees this crate's spans and events at `info` and above, whatever
//!   `LOG_LEVEL` says (quiet logs must not turn traces off). The access line (target `access`) is
//!   not this crate's target, so it is not copied onto spans as an event.
use opentelemetry_sdk::trace::SdkTracer;
use tracing::Level;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::Layer;
use tracing_subscriber::filter::{FilterExt, Targets, filter_fn};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

use crate::config::TelemetryConfig;
use crate::telemetry::traces::{self, Traces};

/// Installs the global subscriber with logs only. Tests leave logging off unless `TEST_LOG` is
/// set; they call this.
pub fn init(level: &str) {
    install(level, None);
}

/// Installs the global subscriber with logs and OTLP traces (`main`). Returns the trace pipeline
/// to flush on shutdown; `None` when the exporter could not be built (logged, never fatal).
pub fn init_with_traces(cfg: &TelemetryConfig) -> Option<Traces> {
    match traces::init(cfg) {
        Ok((pipeline, tracer)) => {
            install(&cfg.log_level, Some(tracer));
            Some(pipeline)
        }
        Err(e) => {
            install(&cfg.log_level, None);
            tracing::warn!(error = %e, "OTLP exporter could not be built: traces are off");
            None
        }
    }
}

fn install(level: &str, tracer: Option<SdkTracer>) {
    let filter = EnvFilter::try_new(level).unwrap_or_else(|_| EnvFilter::new("info"));
    let fmt = tracing_subscriber::fmt::layer()
        .json()
        .flatten_event(true)
        .with_current_span(false)
        .with_span_list(false)
        .with_filter(filter.and(filter_fn(|meta| meta.is_event())));
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
