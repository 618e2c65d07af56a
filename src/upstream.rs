//! The reservation and payment upstreams: a pooled HTTP client per upstream, path and header
//! rules (SPEC §2, §3), timeouts and the errors of SPEC §4. Load balancing, ejection and circuit
//! breaking over several instances (SPEC §7a) live in `balancer`.
//!
//! Not for policy: by the time a request gets here it has been authenticated, limited and (for
//! writes) recorded for idempotency.
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::response::Response;
use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method};
use prometheus::{Histogram, IntCounter};
use tokio::sync::Semaphore;

use crate::config::{RoutingConfig, UpstreamConfig};
use tracing::Instrument;

use crate::body::Holding;
use crate::error::ApiError;
use crate::telemetry::metrics::{CounterHandles, StatusCounters};
use crate::telemetry::trace_context::TraceId;
use crate::telemetry::{AccessLog, Metrics, traces};
use balancer::{Balancer, EjectionPolicy, InFlight, Pick, Transitions};

pub mod balancer;
pub mod client;
pub mod forward;

/// Why an upstream call failed. Only `ApiError` knows which HTTP status that becomes.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    /// Nothing was sent: refused, unreachable, DNS failure.
    #[error("connect failed: {0}")]
    Connect(String),
    /// No answer within the upstream's timeout.
    #[error("timed out")]
    Timeout,
    /// Sent, but the answer was not HTTP or the connection closed without one.
    #[error("bad response: {0}")]
    Protocol(String),
    /// Refused before sending: the upstream's concurrency cap is reached.
    #[error("concurrency cap reached")]
    Saturated,
    /// Refused before sending: every instance is failing and the circuit is open.
    #[error("circuit open")]
    CircuitOpen,
}

impl UpstreamError {
    /// The one label of this failure: `upstream_requests_total{status}`, the client span's
    /// `error.type`, the logs.
    pub fn kind(&self) -> &'static str {
        match self {
            UpstreamError::Connect(_) => "connect_error",
            UpstreamError::Timeout => "timeout",
            UpstreamError::Protocol(_) => "protocol_error",
            UpstreamError::Saturated => "saturated",
            UpstreamError::CircuitOpen => "circuit_open",
        }
    }
}

impl From<UpstreamError> for ApiError {
    fn from(e: UpstreamError) -> Self {
        match e {
            UpstreamError::Connect(_) | UpstreamError::CircuitOpen => {
                ApiError::UpstreamUnavailable("the upstream service is unavailable")
            }
            UpstreamError::Saturated => {
                ApiError::UpstreamUnavailable("the upstream service is at capacity, retry later")
            }
            UpstreamError::Timeout => ApiError::UpstreamTimeout,
            UpstreamError::Protocol(_) => ApiError::BadGateway,
        }
    }
}

/// One request to forward, as the handler knows it: the mapped path, the body read, and the
/// per-request facts the header rules and the client span need.
pub struct Forward<'a> {
    pub method: Method,
    /// The upstream path (`/v1/reservations/{id}`); the incoming query string is appended.
    pub path: &'a str,
    pub body: Bytes,
    pub incoming: Incoming<'a>,
    pub trace_id: TraceId,
    /// The verified caller, sent as `X-User-ID`.
    pub user_id: Option<&'a str>,
    pub access: Option<&'a AccessLog>,
}

/// What the client sent and who it is on the wire.
pub struct Incoming<'a> {
    pub headers: &'a HeaderMap,
    pub query: Option<&'a str>,
    pub request_id: &'a http::HeaderValue,
    /// The socket peer, appended to `X-Forwarded-For`.
    pub peer: std::net::IpAddr,
    /// Whether the peer is a trusted proxy (its `X-Forwarded-Proto` is believed).
    pub trusted_peer: bool,
}

/// What to send: everything already mapped (path, query) and rewritten (headers).
pub struct Outbound {
    pub method: Method,
    /// Path and query on the upstream, e.g. `/v1/reservations/abc?x=1`.
    pub path_and_query: String,
    pub headers: HeaderMap,
    pub body: Bytes,
}

pub struct Upstream {
    pub name: &'static str,
    config: UpstreamConfig,
    /// One pooled client; reqwest keeps a connection pool per host, so per instance.
    http: reqwest::Client,
    /// Bulkhead: a slow upstream holds at most this many requests (SPEC §7a).
    permits: Arc<Semaphore>,
    /// Instance choice, passive health and the circuit (SPEC §7a).
    balancer: Arc<Balancer>,
    /// Per-instance metric handles, resolved once (indexed like `config.bases`).
    instances: Box<[InstanceMetrics]>,
    /// This upstream's metric handles, resolved once (no label look-up per request).
    handles: UpstreamMetrics,
    metrics: Arc<Metrics>,
}

struct UpstreamMetrics {
    duration: Histogram,
    retries: IntCounter,
    /// `upstream_requests_total{status}` per HTTP status.
    answers: StatusCounters,
    /// `upstream_requests_total{status}` per error kind, and `upstream_rejected_total{reason}`.
    failures: CounterHandles,
    rejected: CounterHandles,
}

impl UpstreamMetrics {
    fn new(name: &'static str, m: &Metrics) -> Self {
        let kinds = [
            "connect_error",
            "timeout",
            "protocol_error",
            "saturated",
            "circuit_open",
        ];
        let failures: Vec<[&'static str; 2]> = kinds.iter().map(|k| [name, *k]).collect();
        let failures: Vec<&[&'static str]> = failures.iter().map(|l| &l[..]).collect();
        let rejected = [[name, "saturated"], [name, "circuit_open"]];
        let rejected: Vec<&[&'static str]> = rejected.iter().map(|l| &l[..]).collect();
        UpstreamMetrics {
            duration: m.upstream_duration.with_label_values(&[name]),
            retries: m.upstream_retries.with_label_values(&[name]),
            answers: StatusCounters::new(&m.upstream_requests, &[name]),
            failures: CounterHandles::new(&m.upstream_requests, &failures),
            rejected: CounterHandles::new(&m.upstream_rejected, &rejected),
        }
    }
}

struct InstanceMetrics {
    /// `host:port` of the base URL: bounded by the configuration.
    label: String,
    /// The `Host` header for this instance, built once (not formatted per request).
    host: Option<HeaderValue>,
    requests: IntCounter,
    ejections: IntCounter,
}

impl Upstream {
    pub fn new(
        config: UpstreamConfig,
        routing: &RoutingConfig,
        metrics: Arc<Metrics>,
    ) -> Result<Self, reqwest::Error> {
        let instances: Box<[InstanceMetrics]> = config
            .bases
            .iter()
            .map(|base| {
                let label = instance_label(base);
                InstanceMetrics {
                    host: host_header(base),
                    requests: metrics
                        .upstream_instance_requests
                        .with_label_values(&[config.name, &label]),
                    ejections: metrics
                        .upstream_ejections
                        .with_label_values(&[config.name, &label]),
                    label,
                }
            })
            .collect();
        metrics
            .upstream_circuit_open
            .with_label_values(&[config.name])
            .set(0);
        Ok(Upstream {
            name: config.name,
            handles: UpstreamMetrics::new(config.name, &metrics),
            http: client::build(&config)?,
            permits: Arc::new(Semaphore::new(config.max_concurrency)),
            balancer: Arc::new(Balancer::new(
                instances.len(),
                EjectionPolicy::from(routing),
            )),
            instances,
            config,
            metrics,
        })
    }

    /// Forwards one request end to end (SPEC §3): opens the client span (a child of the server
    /// span; none when the request is not traced), writes the propagation headers and the header
    /// allowlist, sends, reports the outcome on the span and the access line.
    pub async fn forward(&self, req: Forward<'_>) -> Result<Response, UpstreamError> {
        let span = if tracing::Span::current().is_disabled() {
            tracing::Span::none()
        } else {
            tracing::info_span!(
                "http.client",
                otel.name = %format_args!("{} {}", req.method, self.name),
                otel.kind = "client",
                otel.status_code = tracing::field::Empty,
                http.request.method = req.method.as_str(),
                url.path = req.path,
                peer.service = self.name,
                http.response.status_code = tracing::field::Empty,
                error.type = tracing::field::Empty,
            )
        };
        let trace = traces::propagation_headers(&span, req.trace_id.0, req.incoming.headers);
        let headers = forward::upstream_headers(
            req.incoming.headers,
            req.incoming.request_id,
            req.incoming.peer,
            req.user_id,
            &trace,
            req.incoming.trusted_peer,
        );
        let path_and_query = match req.incoming.query {
            Some(q) => format!("{}?{q}", req.path),
            None => req.path.to_owned(),
        };
        let started = Instant::now();
        let result = self
            .send(Outbound {
                method: req.method,
                path_and_query,
                headers,
                body: req.body,
            })
            .instrument(span.clone())
            .await;
        let status = result.as_ref().ok().map(|r| r.status());
        if let Some(log) = req.access {
            log.upstream(self.name, status.map(|s| s.as_u16()), started.elapsed());
        }
        match (&result, status) {
            (_, Some(s)) => {
                span.record("http.response.status_code", s.as_u16());
                if s.is_server_error() {
                    span.record("otel.status_code", "error");
                    span.record("error.type", s.as_str());
                }
            }
            (Err(e), None) => {
                span.record("otel.status_code", "error");
                span.record("error.type", e.kind());
            }
            (Ok(_), None) => {}
        }
        result
    }

    /// Sends the request and returns the upstream's answer with its body streamed through.
    ///
    /// One instance is chosen by the balancer; a GET whose connection failed (nothing was sent)
    /// is retried once on another instance within what is left of the timeout. Anything else
    /// is answered from the first attempt: a write is never sent twice by the gateway.
    pub async fn send(&self, out: Outbound) -> Result<Response, UpstreamError> {
        let permit = self.permits.clone().try_acquire_owned().map_err(|_| {
            self.reject("saturated");
            UpstreamError::Saturated
        })?;
        let (index, probe) = match self.balancer.pick(self.balancer.now()) {
            Pick::Instance { index, probe } => (index, probe),
            Pick::CircuitOpen => {
                self.reject("circuit_open");
                return Err(UpstreamError::CircuitOpen);
            }
        };
        let started = Instant::now();
        let deadline = started + self.config.timeout;
        // A probe is one request to one instance: its outcome decides the circuit.
        let retry_copy =
            (out.method == Method::GET && !probe && self.balancer.len() > 1).then(|| Outbound {
                method: Method::GET,
                path_and_query: out.path_and_query.clone(),
                headers: out.headers.clone(),
                body: out.body.clone(),
            });
        let mut flight = self.balancer.begin(index, probe);
        let mut result = self.attempt(&mut flight, out, None).await;
        if let (Err(UpstreamError::Connect(_)), Some(again)) = (&result, retry_copy) {
            let left = deadline.saturating_duration_since(Instant::now());
            let other = self.balancer.pick_other(self.balancer.now(), index);
            if let (Some(other), false) = (other, left.is_zero()) {
                self.handles.retries.inc();
                flight = self.balancer.begin(other, false);
                result = self.attempt(&mut flight, again, Some(left)).await;
            }
        }
        self.handles
            .duration
            .observe(started.elapsed().as_secs_f64());
        let res = match result {
            Ok(res) => res,
            Err(e) => {
                self.handles.failures.inc(&[self.name, e.kind()]);
                tracing::warn!(upstream = self.name, error = %e, "upstream call failed");
                return Err(e);
            }
        };
        self.handles.answers.inc(res.status());
        // Status, headers and body as they came (the body is not re-wrapped into a stream, so
        // its exact size — `Content-Length` — survives); only hop-by-hop headers go.
        let (mut parts, body) = http::Response::from(res).into_parts();
        forward::strip_response_headers(&mut parts.headers);
        parts.extensions = http::Extensions::new();
        // The permit and the in-flight count live as long as the body, so a slow body still
        // counts against the cap and the instance's load.
        let body = Holding::new(body, (permit, flight));
        Ok(Response::from_parts(parts, Body::new(body)))
    }

    /// One attempt on the instance of `flight`; records its outcome with the balancer.
    async fn attempt(
        &self,
        flight: &mut InFlight,
        mut out: Outbound,
        left: Option<Duration>,
    ) -> Result<reqwest::Response, UpstreamError> {
        let index = flight.index();
        let instance = &self.instances[index];
        instance.requests.inc();
        if let Some(host) = &instance.host {
            out.headers.insert(http::header::HOST, host.clone());
        }
        let result = client::send(&self.http, &self.config.bases[index], left, out).await;
        // 5xx is the instance failing; 4xx is the instance answering a bad request.
        let ok = matches!(&result, Ok(res) if !res.status().is_server_error());
        let t = flight.finish(ok, self.balancer.now());
        self.report(index, t);
        result
    }

    /// Turns balancer transitions into metrics and one log line each.
    fn report(&self, index: usize, t: Transitions) {
        let inst = &self.instances[index];
        if let Some(ms) = t.ejected_for_ms {
            inst.ejections.inc();
            tracing::warn!(
                upstream = self.name,
                instance = %inst.label,
                cooldown_ms = ms,
                "upstream instance ejected after consecutive failures"
            );
        }
        if t.circuit_opened || t.circuit_closed {
            // The state now, not the event: two racing transitions cannot leave it stale.
            self.metrics
                .upstream_circuit_open
                .with_label_values(&[self.name])
                .set(i64::from(self.balancer.is_open()));
        }
        if t.circuit_opened {
            tracing::error!(
                upstream = self.name,
                "every upstream instance is failing: circuit open"
            );
        }
        if t.circuit_closed {
            tracing::info!(upstream = self.name, instance = %inst.label, "upstream circuit closed");
        }
    }

    fn reject(&self, reason: &str) {
        self.handles.rejected.inc(&[self.name, reason]);
    }
}

/// The `Host` header for a base URL, as the client would write it: the port only when it is not
/// the scheme's default.
fn host_header(base: &reqwest::Url) -> Option<HeaderValue> {
    let host = base.host_str()?;
    let value = match base.port() {
        Some(port) => format!("{host}:{port}"),
        None => host.to_owned(),
    };
    HeaderValue::from_str(&value).ok()
}

/// `host:port` of a base URL, the `instance` metric label.
fn instance_label(base: &reqwest::Url) -> String {
    let host = base.host_str().unwrap_or("unknown");
    match base.port_or_known_default() {
        Some(port) => format!("{host}:{port}"),
        None => host.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn instance_label_is_host_and_port() {
        let u = |s: &str| reqwest::Url::parse(s).unwrap();
        assert_eq!(
            instance_label(&u("http://10.0.0.1:8081/p")),
            "10.0.0.1:8081"
        );
        assert_eq!(instance_label(&u("http://api.local")), "api.local:80");
        assert_eq!(instance_label(&u("https://api.local")), "api.local:443");
    }

    #[test]
    fn host_header_leaves_out_the_default_port() {
        let u = |s: &str| reqwest::Url::parse(s).unwrap();
        assert_eq!(
            host_header(&u("http://10.0.0.1:8081/p")).unwrap(),
            "10.0.0.1:8081"
        );
        assert_eq!(host_header(&u("http://api.local:80")).unwrap(), "api.local");
        assert_eq!(host_header(&u("https://api.local")).unwrap(), "api.local");
        assert_eq!(host_header(&u("http://[::1]:9000")).unwrap(), "[::1]:9000");
    }

    #[test]
    fn circuit_open_is_503_upstream_unavailable() {
        let e = ApiError::from(UpstreamError::CircuitOpen);
        assert_eq!(e.code(), "UPSTREAM_UNAVAILABLE");
        assert_eq!(e.status(), 503);
    }
}
