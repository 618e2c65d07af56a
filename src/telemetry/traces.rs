//! OpenTelemetry traces over OTLP gRPC (issue #7, SPEC §8, §10).
//!
//! [`init`] builds the tracer provider that the `tracing-opentelemetry` layer (installed by
//! `logs::init_with_traces`, the one place that installs the subscriber) feeds:
//! - sampling decided per request by [`decide`] before any span exists (an incoming sampled
//!   `traceparent` is always continued, an unsampled one never, a new trace is kept with
//!   probability `TRACE_SAMPLING`); an unsampled request opens no span at all, so it pays
//!   nothing for tracing. The SDK's own sampler ([`sampler`]) then keeps what was opened;
//! - the W3C trace-context propagator (`traceparent`/`tracestate`), set as the global one;
//! - `SERVICE_NAME` and `SERVICE_VERSION` as the resource's `service.name`/`service.version`;
//! - a batch processor with a bounded queue, exporting from its own thread. Ending a span only
//!   tries to push it on that queue: when the collector is dead or slow the queue fills and spans
//!   are dropped, so the request path never waits on the collector and never fails because of it.
//!
//! [`Traces::shutdown`] flushes what is queued, within [`SHUTDOWN_FLUSH_LIMIT`].
//!
//! Not here: which spans exist. The server span is opened in `middleware::server_span`, the client
//! span per upstream call in `routes::forward_with_body`, the store spans in `store::redis`.
use std::time::Duration;

use http::{HeaderMap, HeaderValue};
use opentelemetry::KeyValue;
use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry::trace::{TraceContextExt as _, TracerProvider as _};
use opentelemetry_otlp::{RetryPolicy, WithExportConfig, WithTonicConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{
    BatchConfigBuilder, BatchSpanProcessor, Sampler, SdkTracer, SdkTracerProvider,
};

use tracing_opentelemetry::OpenTelemetrySpanExt as _;

use crate::config::TelemetryConfig;
use crate::headers::{TRACEPARENT, TRACESTATE, shared_value};
use crate::telemetry::trace_context::{TraceHeaders, TraceId, parse_traceparent};

/// Spans waiting for export; past this, new spans are dropped rather than queued.
pub const MAX_QUEUED_SPANS: usize = 8192;
/// How often the batch is sent (or sooner when a full batch is ready).
pub const EXPORT_INTERVAL: Duration = Duration::from_secs(1);
/// One export call, connection included. A slow collector holds the export thread this long,
/// never a request.
pub const EXPORT_TIMEOUT: Duration = Duration::from_secs(3);
/// How long shutdown waits for the last spans to reach the collector.
pub const SHUTDOWN_FLUSH_LIMIT: Duration = Duration::from_secs(5);

/// The running trace pipeline. Keep it until the server has stopped, then call `shutdown`.
pub struct Traces {
    provider: SdkTracerProvider,
}

/// Builds the pipeline. Must run inside the tokio runtime (the gRPC channel lives on it). The
/// channel connects lazily, so a collector that is down at start-up is not an error.
pub fn init(
    cfg: &TelemetryConfig,
) -> Result<(Traces, SdkTracer), opentelemetry_otlp::ExporterBuildError> {
    opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_tonic()
        .with_endpoint(cfg.otlp_endpoint.clone())
        .with_timeout(EXPORT_TIMEOUT)
        // One retry: a collector that is down stays down for longer than a backoff, and the
        // queue behind a retrying exporter only fills up.
        .with_retry_policy(RetryPolicy::recommended().with_max_retries(1))
        .build()?;
    let batch = BatchConfigBuilder::default()
        .with_max_queue_size(MAX_QUEUED_SPANS)
        .with_max_export_batch_size(512)
        .with_scheduled_delay(EXPORT_INTERVAL)
        .build();
    let processor = BatchSpanProcessor::builder(exporter)
        .with_batch_config(batch)
        .build();
    let resource = Resource::builder()
        .with_service_name(cfg.service_name.clone())
        .with_attribute(KeyValue::new(
            "service.version",
            cfg.service_version.clone(),
        ))
        .build();
    let provider = SdkTracerProvider::builder()
        .with_sampler(sampler())
        .with_resource(resource)
        .with_span_processor(processor)
        .build();
    let tracer = provider.tracer("gateway-api");
    Ok((Traces { provider }, tracer))
}

/// The SDK's sampler: parent-based, and a root span is always kept, because a request span only
/// exists when [`decide`] already chose to trace it. Sampling before the span exists is what
/// makes an unsampled request cheap: no span, no attributes, no OpenTelemetry context.
pub fn sampler() -> Sampler {
    Sampler::ParentBased(Box::new(Sampler::AlwaysOn))
}

/// SPEC §10: whether a request is traced. A caller's valid `traceparent` decides with its sampled
/// flag (a sampled one is always continued, an unsampled one never); a new trace is kept with
/// probability `ratio` (`0` exports nothing unless the caller's trace is sampled).
pub fn decide(parent: Option<&opentelemetry::Context>, ratio: f64) -> bool {
    match parent {
        Some(cx) => cx.span().span_context().is_sampled(),
        None => ratio >= 1.0 || (ratio > 0.0 && rand::random::<f64>() < ratio),
    }
}

impl Traces {
    /// Exports what is still queued and stops the export thread. Bounded: a dead collector
    /// delays exit by at most [`SHUTDOWN_FLUSH_LIMIT`].
    pub async fn shutdown(self) {
        let provider = self.provider;
        // `shutdown` blocks its thread until the exporter answers: keep it off the runtime's.
        let flush = tokio::task::spawn_blocking(move || {
            provider.shutdown_with_timeout(SHUTDOWN_FLUSH_LIMIT)
        });
        match tokio::time::timeout(SHUTDOWN_FLUSH_LIMIT + Duration::from_secs(1), flush).await {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(e))) => tracing::warn!(error = %e, "trace export on shutdown failed"),
            Ok(Err(e)) => tracing::warn!(error = %e, "trace shutdown task failed"),
            Err(_) => tracing::warn!("trace export on shutdown timed out; spans dropped"),
        }
    }
}

/// The caller's trace context from `traceparent`/`tracestate`, when it sent a valid one. Valid is
/// what [`parse_traceparent`] says, traces on or off: the SDK's propagator alone also takes ids of
/// the wrong length, a `+` sign or a trailing `-`, and would continue a trace the gateway's own
/// reading refuses.
pub fn remote_parent(headers: &HeaderMap) -> Option<opentelemetry::Context> {
    opentelemetry::global::get_text_map_propagator(|p| parent_from(p, headers))
}

fn parent_from(p: &dyn TextMapPropagator, headers: &HeaderMap) -> Option<opentelemetry::Context> {
    headers.get(&TRACEPARENT).and_then(parse_traceparent)?;
    let cx = p.extract(&HeaderExtractor(headers));
    cx.span().span_context().is_valid().then_some(cx)
}

/// The OpenTelemetry trace id behind `span`; `None` when traces are off (no OTel layer, or the
/// span is disabled).
pub fn trace_id_of(span: &tracing::Span) -> Option<[u8; 16]> {
    if span.is_disabled() {
        return None;
    }
    let cx = span.context();
    let sc = cx.span().span_context().clone();
    sc.is_valid().then(|| sc.trace_id().to_bytes())
}

/// Whether `span` is being exported (its trace was sampled).
pub fn is_sampled(span: &tracing::Span) -> bool {
    !span.is_disabled() && span.context().span().span_context().is_sampled()
}

/// The W3C headers naming `span` as the parent of what the gateway calls next. When traces are
/// off, a `traceparent` on the request's own trace id with a fresh span id, keeping the caller's
/// flags and `tracestate` (so an upstream still joins the same trace).
pub fn propagation_headers(
    span: &tracing::Span,
    trace_id: [u8; 16],
    incoming: &HeaderMap,
) -> TraceHeaders {
    if !span.is_disabled() {
        let cx = span.context();
        if cx.span().span_context().is_valid() {
            let mut out = TraceHeaders::default();
            opentelemetry::global::get_text_map_propagator(|p| {
                p.inject_context(&cx, &mut HeaderInjector(&mut out))
            });
            return out;
        }
    }
    let trace_hex = TraceId(trace_id).hex_bytes();
    let caller = incoming
        .get(&TRACEPARENT)
        .and_then(|v| v.to_str().ok())
        .filter(|v| v.len() == 55 && v.as_bytes().get(3..35) == Some(&trace_hex[..]));
    let flags = caller.and_then(|v| v.get(53..55)).unwrap_or("00");
    let span_id: [u8; 8] = loop {
        let id: [u8; 8] = rand::random();
        if id != [0; 8] {
            break id;
        }
    };
    // `00-<trace id>-<span id>-<flags>`, written on the stack and copied once.
    let mut tp = [0u8; 55];
    tp[..3].copy_from_slice(b"00-");
    tp[3..35].copy_from_slice(&trace_hex);
    tp[35] = b'-';
    // Cannot fail: 8 bytes are exactly 16 hex digits.
    let _ = hex::encode_to_slice(span_id, &mut tp[36..52]);
    tp[52] = b'-';
    tp[53..55].copy_from_slice(flags.as_bytes());
    TraceHeaders {
        traceparent: shared_value(&tp).ok(),
        tracestate: caller.and(incoming.get(&TRACESTATE).cloned()),
    }
}

struct HeaderExtractor<'a>(&'a HeaderMap);

impl Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(|k| k.as_str()).collect()
    }
}

struct HeaderInjector<'a>(&'a mut TraceHeaders);

impl Injector for HeaderInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        let value = HeaderValue::from_str(&value).ok();
        match key {
            "traceparent" => self.0.traceparent = value,
            "tracestate" => self.0.tracestate = value.filter(|v| !v.is_empty()),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use opentelemetry::Context;
    use opentelemetry::trace::{
        SpanContext, SpanId, SpanKind, TraceContextExt, TraceFlags, TraceId, TraceState,
    };
    use opentelemetry_sdk::trace::{SamplingDecision, ShouldSample};

    use super::*;

    fn remote(sampled: bool) -> Context {
        Context::new().with_remote_span_context(SpanContext::new(
            TraceId::from_bytes([0xff; 16]),
            SpanId::from_bytes([1; 8]),
            if sampled {
                TraceFlags::SAMPLED
            } else {
                TraceFlags::default()
            },
            true,
            TraceState::default(),
        ))
    }

    /// Untraced, the upstream still gets a `traceparent` of the request's trace id and a fresh
    /// span id; the caller's flags and `tracestate` only when it is the caller's trace.
    #[test]
    fn untraced_requests_propagate_the_request_trace() {
        let trace = [0x4b; 16];
        let hex_trace = "4b".repeat(16);
        let own = propagation_headers(&tracing::Span::none(), trace, &HeaderMap::new());
        let tp = own.traceparent.unwrap();
        let tp = tp.to_str().unwrap();
        assert_eq!(tp.len(), 55);
        assert!(tp.starts_with(&format!("00-{hex_trace}-")), "{tp}");
        assert!(tp.ends_with("-00"), "{tp}");
        assert_ne!(&tp[36..52], "0000000000000000");
        assert!(parse_traceparent(&HeaderValue::from_str(tp).unwrap()).is_some());
        assert!(own.tracestate.is_none());

        let mut incoming = HeaderMap::new();
        incoming.insert(
            &TRACEPARENT,
            HeaderValue::from_str(&format!("00-{hex_trace}-00f067aa0ba902b7-01")).unwrap(),
        );
        incoming.insert(&TRACESTATE, HeaderValue::from_static("k=v"));
        let continued = propagation_headers(&tracing::Span::none(), trace, &incoming);
        let tp = continued.traceparent.unwrap();
        assert!(tp.to_str().unwrap().ends_with("-01"), "{tp:?}");
        assert_ne!(
            &tp.to_str().unwrap()[36..52],
            "00f067aa0ba902b7",
            "a span id of ours"
        );
        assert_eq!(continued.tracestate.unwrap(), "k=v");

        let other = propagation_headers(&tracing::Span::none(), [0x11; 16], &incoming);
        assert!(
            other
                .traceparent
                .unwrap()
                .to_str()
                .unwrap()
                .ends_with("-00")
        );
        assert!(
            other.tracestate.is_none(),
            "another trace's state is not passed on"
        );
    }

    #[test]
    fn the_callers_sampling_decision_wins() {
        assert!(decide(Some(&remote(true)), 0.0));
        assert!(!decide(Some(&remote(false)), 1.0));
        assert!(!decide(None, 0.0));
        assert!(decide(None, 1.0));
    }

    #[test]
    fn new_traces_are_kept_at_the_ratio() {
        let kept = (0..20_000).filter(|_| decide(None, 0.1)).count();
        // Binomial(20000, 0.1): mean 2000, sd 42; +-300 is over 7 sd.
        assert!((1700..=2300).contains(&kept), "kept {kept} of 20000 at 0.1");
    }

    #[test]
    fn the_sdk_continues_the_decision_already_taken() {
        let id = TraceId::from_bytes([0xff; 16]);
        let sample = |cx: &Context| {
            sampler()
                .should_sample(Some(cx), id, "s", &SpanKind::Server, &[], &[])
                .decision
        };
        // A request span is only opened when `decide` said yes: a root is kept...
        assert_eq!(sample(&Context::new()), SamplingDecision::RecordAndSample);
        // ...and a child follows its parent.
        assert_eq!(sample(&remote(true)), SamplingDecision::RecordAndSample);
        assert_eq!(sample(&remote(false)), SamplingDecision::Drop);
    }
}

/// Property tests (issue #15): the caller's trace is the same one whether traces are on (the
/// SDK's propagator reads `traceparent`) or off (`parse_traceparent` does).
#[cfg(test)]
mod proptests {
    #![allow(clippy::unwrap_used)]
    use proptest::prelude::*;

    use super::*;
    use crate::telemetry::trace_context::proptests::{near_traceparents, well_formed};

    fn headers(value: &[u8]) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(&TRACEPARENT, HeaderValue::from_bytes(value).unwrap());
        h
    }

    /// What the SDK's propagator alone took (issue #15): short ids, signs, a trailing `-`.
    #[test]
    fn values_only_the_sdk_took_are_refused() {
        for bad in [
            "00-0000000000000000000000000000001-0000000000000001-00",
            "00-1-1-01",
            "00-+bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-",
            "0-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        ] {
            let h = headers(bad.as_bytes());
            let sdk = TraceContextPropagator::new().extract(&HeaderExtractor(&h));
            assert!(sdk.span().span_context().is_valid(), "the SDK takes {bad}");
            assert!(
                parent_from(&TraceContextPropagator::new(), &h).is_none(),
                "{bad}"
            );
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(1024))]

        /// Traces on, the caller's trace is continued exactly when `parse_traceparent` (the
        /// reading with traces off) accepts the header, and it is the same trace.
        #[test]
        fn the_callers_trace_is_the_same_traces_on_or_off(value in near_traceparents()) {
            prop_assume!(HeaderValue::from_bytes(&value).is_ok());
            let h = headers(&value);
            let on = parent_from(&TraceContextPropagator::new(), &h)
                .map(|cx| cx.span().span_context().trace_id().to_bytes());
            let off = parse_traceparent(h.get(&TRACEPARENT).unwrap()).map(|t| t.0);
            prop_assert_eq!(on, off, "{:?}", String::from_utf8_lossy(&value));
        }

        /// A well-formed caller's trace is continued with its trace id and sampled flag.
        #[test]
        fn a_well_formed_parent_is_continued((value, trace) in well_formed()) {
            let cx = parent_from(&TraceContextPropagator::new(), &headers(value.as_bytes()));
            let sc = cx.unwrap().span().span_context().clone();
            prop_assert_eq!(sc.trace_id().to_bytes(), trace.to_be_bytes());
            let flags = u8::from_str_radix(&value[53..55], 16).unwrap();
            prop_assert_eq!(sc.is_sampled(), flags & 1 == 1);
            prop_assert!(sc.is_remote());
        }
    }
}
