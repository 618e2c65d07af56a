//! Every metric the gateway exports, in one registry (SPEC §10 labels). Built once per
//! `AppState`, so tests can run several gateways in one process without colliding.
//!
//! Names carry units (`_seconds`, `_total`). `route` is always a route template or `unmatched`,
//! never a raw path, so a scan of random URLs cannot create series.
use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};

/// Per-thread HTTP handles kept at most (routes × methods × statuses are bounded; this bounds
/// the cache even so).
const MAX_CACHED_HTTP_HANDLES: usize = 4096;

#[derive(PartialEq, Eq, Hash)]
struct HttpKey {
    metrics: u64,
    method: usize,
    route: usize,
    route_len: usize,
    status: u16,
}

struct HttpHandles {
    route: Box<str>,
    requests: IntCounter,
    duration: Histogram,
}

thread_local! {
    static HTTP_HANDLES: RefCell<HashMap<HttpKey, HttpHandles>> = RefCell::new(HashMap::new());
}

fn status_label(status: u16) -> http::StatusCode {
    http::StatusCode::from_u16(status).unwrap_or(http::StatusCode::INTERNAL_SERVER_ERROR)
}

/// The counters of one labelled family for label values known at start-up (outcomes, reasons:
/// `&'static str`s chosen in code), resolved once: a request finds its counter by a short scan
/// instead of prometheus' hash, lock and `Arc` clone. A value not listed is looked up the slow
/// way.
pub struct CounterHandles {
    family: IntCounterVec,
    resolved: Box<[Resolved]>,
}

/// Label values and their counter.
type Resolved = (Box<[&'static str]>, IntCounter);

impl CounterHandles {
    pub fn new(family: &IntCounterVec, values: &[&[&'static str]]) -> Self {
        CounterHandles {
            resolved: values
                .iter()
                .map(|v| (Box::from(*v), family.with_label_values(v)))
                .collect(),
            family: family.clone(),
        }
    }

    pub fn inc(&self, labels: &[&str]) {
        match self.resolved.iter().find(|(v, _)| **v == *labels) {
            Some((_, c)) => c.inc(),
            None => self.family.with_label_values(labels).inc(),
        }
    }
}

/// A counter per HTTP status code of one labelled family (an upstream's answers), each resolved
/// on its first use and kept.
pub struct StatusCounters {
    family: IntCounterVec,
    /// The labels before `status`.
    prefix: Box<[&'static str]>,
    by_status: Box<[OnceLock<IntCounter>]>,
}

impl StatusCounters {
    pub fn new(family: &IntCounterVec, prefix: &[&'static str]) -> Self {
        StatusCounters {
            family: family.clone(),
            prefix: prefix.into(),
            by_status: (100..600).map(|_| OnceLock::new()).collect(),
        }
    }

    pub fn inc(&self, status: http::StatusCode) {
        let slot = usize::from(status.as_u16()).wrapping_sub(100);
        let resolve = || {
            let mut labels: Vec<&str> = self.prefix.to_vec();
            labels.push(status.as_str());
            self.family.with_label_values(&labels)
        };
        match self.by_status.get(slot) {
            Some(cell) => cell.get_or_init(resolve).inc(),
            None => resolve().inc(),
        }
    }
}

/// Buckets from 100 µs to 10 s: a sub-millisecond gateway and slow upstreams on one scale.
const LATENCY_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0,
];

pub struct Metrics {
    /// Unique per `Metrics` in the process: the key of the per-thread HTTP handle cache.
    id: u64,
    pub registry: Registry,
    // HTTP server
    pub http_requests: IntCounterVec,
    pub http_duration: HistogramVec,
    pub http_in_flight: IntGauge,
    // Upstreams
    pub upstream_requests: IntCounterVec,
    pub upstream_duration: HistogramVec,
    pub upstream_instance_requests: IntCounterVec,
    pub upstream_ejections: IntCounterVec,
    pub upstream_circuit_open: IntGaugeVec,
    pub upstream_retries: IntCounterVec,
    pub upstream_rejected: IntCounterVec,
    // Policies
    pub ratelimit_decisions: IntCounterVec,
    pub ratelimit_fallback_active: IntGauge,
    /// 1 while the store answers its health probe (SPEC §2: shown, not a readiness verdict).
    pub store_up: IntGauge,
    /// Connections cut because the client was too slow (SPEC §4): `body_timeout`, `write_timeout`.
    pub slow_client_aborts: IntCounterVec,
    pub overload_shed: IntCounter,
    /// Synced from the log writer when `/metrics` is rendered.
    pub log_lines_dropped: IntCounter,
    pub idempotency_outcomes: IntCounterVec,
    pub jwt_verifications: IntCounterVec,
    pub jwks_fetches: IntCounterVec,
    pub jwt_cache_hits: IntCounter,
    pub queue_joins: IntCounterVec,
    pub queue_admissions: IntCounterVec,
    pub queue_expirations: IntCounterVec,
    pub queue_waiting: IntGaugeVec,
    /// Per defined event, from the store (SPEC §5a).
    pub queue_prequeue: IntGaugeVec,
    pub queue_active: IntGaugeVec,
    pub queue_admitted: IntGaugeVec,
    pub queue_admission_factor: prometheus::GaugeVec,
    pub store_errors: IntCounterVec,
    pub store_duration: HistogramVec,
}

impl Metrics {
    pub fn new() -> Result<Self, prometheus::Error> {
        let registry = Registry::new();
        let counter =
            |name: &str, help: &str, labels: &[&str]| -> Result<IntCounterVec, prometheus::Error> {
                let c = IntCounterVec::new(Opts::new(name, help), labels)?;
                registry.register(Box::new(c.clone()))?;
                Ok(c)
            };
        let gauge =
            |name: &str, help: &str, labels: &[&str]| -> Result<IntGaugeVec, prometheus::Error> {
                let g = IntGaugeVec::new(Opts::new(name, help), labels)?;
                registry.register(Box::new(g.clone()))?;
                Ok(g)
            };
        let histogram =
            |name: &str, help: &str, labels: &[&str]| -> Result<HistogramVec, prometheus::Error> {
                let h = HistogramVec::new(
                    HistogramOpts::new(name, help).buckets(LATENCY_BUCKETS.to_vec()),
                    labels,
                )?;
                registry.register(Box::new(h.clone()))?;
                Ok(h)
            };
        let single_counter = |name: &str, help: &str| -> Result<IntCounter, prometheus::Error> {
            let c = IntCounter::new(name, help)?;
            registry.register(Box::new(c.clone()))?;
            Ok(c)
        };
        let single_gauge = |name: &str, help: &str| -> Result<IntGauge, prometheus::Error> {
            let g = IntGauge::new(name, help)?;
            registry.register(Box::new(g.clone()))?;
            Ok(g)
        };
        static NEXT_ID: AtomicU64 = AtomicU64::new(1);
        let m = Metrics {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            http_requests: counter(
                "http_server_requests_total",
                "HTTP requests served, by method, route template and status.",
                &["method", "route", "status"],
            )?,
            http_duration: histogram(
                "http_server_request_duration_seconds",
                "Time from request head to response head, by method, route template and status.",
                &["method", "route", "status"],
            )?,
            http_in_flight: single_gauge(
                "http_server_requests_in_flight",
                "Requests being served now.",
            )?,
            upstream_requests: counter(
                "upstream_requests_total",
                "Requests sent to upstreams, by upstream and status (or error kind).",
                &["upstream", "status"],
            )?,
            upstream_duration: histogram(
                "upstream_request_duration_seconds",
                "Upstream response time, by upstream.",
                &["upstream"],
            )?,
            upstream_instance_requests: counter(
                "upstream_instance_requests_total",
                "Requests per upstream instance.",
                &["upstream", "instance"],
            )?,
            upstream_ejections: counter(
                "upstream_ejections_total",
                "Instances ejected after consecutive failures.",
                &["upstream", "instance"],
            )?,
            upstream_circuit_open: gauge(
                "upstream_circuit_open",
                "1 while the upstream's circuit is open (every instance failing).",
                &["upstream"],
            )?,
            upstream_retries: counter(
                "upstream_retries_total",
                "GETs retried on another instance after a connect failure.",
                &["upstream"],
            )?,
            upstream_rejected: counter(
                "upstream_rejected_total",
                "Requests refused before reaching an upstream, by reason (circuit_open, saturated).",
                &["upstream", "reason"],
            )?,
            ratelimit_decisions: counter(
                "ratelimit_decisions_total",
                "Rate-limit decisions by outcome (allowed, limited) and source (store, fallback).",
                &["outcome", "source"],
            )?,
            ratelimit_fallback_active: single_gauge(
                "ratelimit_fallback_active",
                "1 while the store is down and this replica limits with local buckets.",
            )?,
            store_up: single_gauge(
                "store_up",
                "1 while the store answers the gateway's health probe, 0 while it does not.",
            )?,
            slow_client_aborts: counter(
                "slow_client_aborts_total",
                "Connections closed because a client was too slow: the request body did not arrive \
                 within REQUEST_BODY_TIMEOUT (body_timeout), or the response made no write progress \
                 for RESPONSE_WRITE_TIMEOUT (write_timeout).",
                &["reason"],
            )?,
            overload_shed: single_counter(
                "overload_shed_total",
                "Requests refused with 503 OVERLOADED because MAX_IN_FLIGHT was reached.",
            )?,
            log_lines_dropped: single_counter(
                "log_lines_dropped_total",
                "Log lines dropped because stdout could not keep up (logging never blocks a request).",
            )?,
            idempotency_outcomes: counter(
                "idempotency_outcomes_total",
                "Idempotency outcomes: new, replayed, in_progress, conflict, store_error.",
                &["outcome"],
            )?,
            jwt_verifications: counter(
                "jwt_verifications_total",
                "Bearer token checks by result (ok, or the reason for refusal).",
                &["result"],
            )?,
            jwks_fetches: counter(
                "jwks_fetches_total",
                "JWKS fetches by result (ok, error).",
                &["result"],
            )?,
            jwt_cache_hits: single_counter(
                "jwt_cache_hits_total",
                "Tokens accepted from the verified-token cache without a signature check.",
            )?,
            queue_joins: counter(
                "queue_joins_total",
                "Waiting-room joins by event.",
                &["event"],
            )?,
            queue_admissions: counter(
                "queue_admissions_total",
                "Waiting-room admissions (reservation tokens granted) by event.",
                &["event"],
            )?,
            queue_expirations: counter(
                "queue_expirations_total",
                "Waiting tokens that expired without a heartbeat, by event.",
                &["event"],
            )?,
            queue_waiting: gauge(
                "queue_waiting",
                "People waiting per event, as last seen by this replica.",
                &["event"],
            )?,
            queue_prequeue: gauge(
                "queue_prequeue",
                "People in the prequeue per defined event (before opens_at).",
                &["event"],
            )?,
            queue_active: gauge(
                "queue_active",
                "People ready or admitted per defined event (what max_active caps).",
                &["event"],
            )?,
            queue_admitted: gauge(
                "queue_admitted",
                "People admitted in total per defined event, as the store counts them.",
                &["event"],
            )?,
            queue_admission_factor: {
                let g = prometheus::GaugeVec::new(
                    Opts::new(
                        "queue_admission_factor",
                        "The adaptive admission factor per defined event (1 when not adaptive).",
                    ),
                    &["event"],
                )?;
                registry.register(Box::new(g.clone()))?;
                g
            },
            store_errors: counter(
                "store_errors_total",
                "Store calls that failed, by operation.",
                &["op"],
            )?,
            store_duration: histogram(
                "store_request_duration_seconds",
                "Store round-trip time, by operation.",
                &["op"],
            )?,
            registry,
        };
        #[cfg(target_os = "linux")]
        m.registry.register(Box::new(
            prometheus::process_collector::ProcessCollector::for_self(),
        ))?;
        Ok(m)
    }

    /// Counts a served request and observes its duration (`http_server_requests_total`,
    /// `http_server_request_duration_seconds`). The handles of each (method, route, status) are
    /// resolved once per worker thread and kept, so a request does no label hashing, lock or
    /// `Arc` clone in prometheus. `method` is one of `http_labels::method_label`'s `&'static str`s; `route` a
    /// template (bounded) or `unmatched`.
    pub fn observe_http(&self, method: &'static str, route: &str, status: u16, seconds: f64) {
        let key = HttpKey {
            metrics: self.id,
            method: method.as_ptr() as usize,
            route: route.as_ptr() as usize,
            route_len: route.len(),
            status,
        };
        HTTP_HANDLES.with(|cache| {
            let mut cache = cache.borrow_mut();
            // A route string freed and another allocated at its address (tests build many
            // routers in one process) must not inherit its handles: the text is checked too.
            if let Some(h) = cache.get(&key).filter(|h| &*h.route == route) {
                h.requests.inc();
                h.duration.observe(seconds);
                return;
            }
            if cache.len() >= MAX_CACHED_HTTP_HANDLES {
                cache.clear();
            }
            let status = status_label(status);
            let labels = [method, route, status.as_str()];
            let h = HttpHandles {
                route: route.into(),
                requests: self.http_requests.with_label_values(&labels),
                duration: self.http_duration.with_label_values(&labels),
            };
            h.requests.inc();
            h.duration.observe(seconds);
            cache.insert(key, h);
        });
    }

    /// The text exposition format for `/metrics`.
    pub fn render(&self) -> Vec<u8> {
        {
            // Scrapes are rare: a lock keeps two at once from adding the same drops twice.
            static SYNC: std::sync::Mutex<()> = std::sync::Mutex::new(());
            let _one = SYNC.lock().unwrap_or_else(|e| e.into_inner());
            let seen = self.log_lines_dropped.get();
            let dropped = crate::telemetry::logs::dropped_lines();
            if dropped > seen {
                self.log_lines_dropped.inc_by(dropped - seen);
            }
        }
        let mut buf = Vec::with_capacity(16 * 1024);
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut buf);
        buf
    }
}
