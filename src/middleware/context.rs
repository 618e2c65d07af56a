//! The request context: the first thing every request meets and the last thing every response
//! leaves (SPEC §3, §4).
//!
//! It decides the request id (the client's when well formed, else a UUID), opens the server span
//! (continuing an incoming W3C `traceparent`) whose trace id becomes the request's trace id,
//! resolves the client address, puts a [`RequestContext`] and an [`AccessLog`] in the request
//! extensions and the trace id in a task-local so that `ApiError::into_response` can print it,
//! and stamps `X-Request-ID`, `X-Trace-Id` and the security headers on every response. On the way
//! out it records the HTTP server metrics (`route` is the template or `unmatched`, never the raw
//! path; unknown methods are `_OTHER`) and writes the access line (`telemetry::access`). When
//! traces are off the trace id is the incoming `traceparent`'s, else a fresh one. Not for policy:
//! auth, limits and idempotency are route layers of their own.
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Instant;

use axum::extract::{ConnectInfo, MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http::{HeaderMap, HeaderName, HeaderValue, Method, header};
use prometheus::IntGauge;
use tracing::Instrument;
use tracing_opentelemetry::OpenTelemetrySpanExt as _;

use crate::error::ApiError;
use crate::framing;
use crate::headers::{TRACEPARENT, X_REQUEST_ID, X_TRACE_ID};
use crate::middleware::client_ip;
use crate::telemetry::Metrics;
use crate::telemetry::access::{self, AccessLog};
use crate::telemetry::trace_context::{self, TraceId, parse_traceparent};
use crate::telemetry::traces;

/// SPEC §4: a request target over 8 KiB is refused with 414.
pub const MAX_URI_LEN: usize = 8 * 1024;

/// Per-request facts shared with every later layer and handler.
#[derive(Debug, Clone)]
pub struct RequestContext {
    pub request_id: HeaderValue,
    pub trace_id: TraceId,
    /// The client as SPEC §7 defines it (peer, or right-most untrusted `X-Forwarded-For` hop).
    pub client_ip: IpAddr,
    /// The socket peer, for `X-Forwarded-For`.
    pub peer_ip: IpAddr,
}

/// The client's `X-Request-ID` when it is 1–128 characters of `[A-Za-z0-9._-]` (SPEC §3).
pub fn valid_request_id(headers: &HeaderMap) -> Option<HeaderValue> {
    let v = headers.get(&X_REQUEST_ID)?;
    let b = v.as_bytes();
    let ok = (1..=128).contains(&b.len())
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'_' | b'-'));
    ok.then(|| v.clone())
}

fn new_request_id() -> HeaderValue {
    let mut buf = uuid::Uuid::encode_buffer();
    let s = uuid::Uuid::new_v4().hyphenated().encode_lower(&mut buf);
    HeaderValue::from_str(s).unwrap_or_else(|_| HeaderValue::from_static("invalid"))
}

/// The security headers of SPEC §3, on every response.
const SECURITY_HEADERS: [(HeaderName, &str); 4] = [
    (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
    (header::X_FRAME_OPTIONS, "DENY"),
    (header::REFERRER_POLICY, "no-referrer"),
    (
        header::CONTENT_SECURITY_POLICY,
        "default-src 'none'; frame-ancestors 'none'",
    ),
];

/// The outermost middleware (see the module docs).
/// What the request context reads, handed to it by the router.
pub struct Settings {
    pub metrics: Arc<Metrics>,
    pub trusted_proxies: Vec<ipnet::IpNet>,
    pub trace_sampling: f64,
}

pub async fn layer(State(state): State<Arc<Settings>>, mut req: Request, next: Next) -> Response {
    let started = Instant::now();
    let metrics = &state.metrics;
    let _in_flight = InFlight::enter(&metrics.http_in_flight);
    let peer = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip())
        .unwrap_or(IpAddr::from([127, 0, 0, 1]));
    let client_ip = client_ip::resolve(peer, req.headers(), &state.trusted_proxies);
    let request_id = valid_request_id(req.headers()).unwrap_or_else(new_request_id);
    // The router's own string (an `Arc` clone, not a copy).
    let matched = req.extensions().get::<MatchedPath>().cloned();
    let route = matched.as_ref().map_or(UNMATCHED, MatchedPath::as_str);
    let method = method_label(req.method());

    // The server span continues the caller's trace; its trace id is the request's trace id.
    // With traces off the span is disabled and the id comes from `traceparent` or is new.
    // Sampling is decided first (`traces::decide`): an unsampled request opens no span at all.
    let parent = traces::remote_parent(req.headers());
    let traced = traces::decide(parent.as_ref(), state.trace_sampling);
    let span = if !traced {
        tracing::Span::none()
    } else {
        tracing::info_span!(
        "http.server",
        otel.name = %format_args!("{method} {route}"),
        otel.kind = "server",
        otel.status_code = tracing::field::Empty,
        http.request.method = method,
        http.route = route,
        url.path = req.uri().path(),
        url.scheme = "http",
        client.address = %client_ip,
        network.peer.address = %peer,
        http.response.status_code = tracing::field::Empty,
        error.type = tracing::field::Empty,
        )
    };
    if let Some(parent) = parent.filter(|_| !span.is_disabled()) {
        let _ = span.set_parent(parent);
    }
    let trace_id = traces::trace_id_of(&span)
        .map(TraceId)
        .or_else(|| req.headers().get(&TRACEPARENT).and_then(parse_traceparent))
        .unwrap_or_else(TraceId::random);

    let access = AccessLog::default();
    let ctx = RequestContext {
        request_id: request_id.clone(),
        trace_id,
        client_ip,
        peer_ip: peer,
    };
    req.extensions_mut().insert(ctx);
    req.extensions_mut().insert(access.clone());

    let mut res = trace_context::with_trace_id(
        trace_id,
        async move {
            if uri_len(req.uri()) > MAX_URI_LEN {
                return ApiError::UriTooLong.into_response();
            }
            if req.extensions().get::<framing::Refused>().is_some() {
                let mut res = ApiError::BadRequest("ambiguous request framing").into_response();
                res.headers_mut()
                    .insert(header::CONNECTION, HeaderValue::from_static("close"));
                return res;
            }
            next.run(req).await
        }
        .instrument(span.clone()),
    )
    .await;

    let status = res.status();
    span.record("http.response.status_code", status.as_u16());
    if status.is_server_error() {
        span.record("otel.status_code", "error");
        span.record("error.type", status.as_str());
    }
    drop(span);
    let latency = started.elapsed();
    metrics.observe_http(method, route, status.as_u16(), latency.as_secs_f64());

    let trace_hex_bytes = trace_id.hex_bytes();
    let trace_hex = std::str::from_utf8(&trace_hex_bytes).unwrap_or("");
    access::emit(
        &access::Line {
            method,
            route,
            status: status.as_u16(),
            latency,
            client_ip,
            request_id: request_id.to_str().unwrap_or(""),
            trace_id: trace_hex,
        },
        &access,
    );

    let headers = res.headers_mut();
    headers.insert(X_REQUEST_ID.clone(), request_id);
    if let Ok(v) = HeaderValue::from_bytes(&trace_hex_bytes) {
        headers.insert(X_TRACE_ID.clone(), v);
    }
    for (name, value) in SECURITY_HEADERS {
        // A page that needs its own policy (`/docs`) sets it; everything else gets the strict one.
        if name == header::CONTENT_SECURITY_POLICY && headers.contains_key(&name) {
            continue;
        }
        headers.insert(name, HeaderValue::from_static(value));
    }
    res
}

/// The `route` label and span attribute of a request no route matched.
pub const UNMATCHED: &str = "unmatched";

/// The `method` label: the standard methods by name, anything else `_OTHER`, so a client cannot
/// mint label values (OpenTelemetry HTTP semantic conventions do the same).
pub fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::CONNECT => "CONNECT",
        Method::OPTIONS => "OPTIONS",
        Method::TRACE => "TRACE",
        Method::PATCH => "PATCH",
        _ => "_OTHER",
    }
}

/// Counts a request in flight until dropped, so a request whose client went away (its future
/// dropped mid-way) is uncounted too.
struct InFlight<'a>(&'a IntGauge);

impl<'a> InFlight<'a> {
    fn enter(gauge: &'a IntGauge) -> Self {
        gauge.inc();
        InFlight(gauge)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.dec();
    }
}

fn uri_len(uri: &http::Uri) -> usize {
    uri.path_and_query().map_or(0, |p| p.as_str().len())
        + uri.authority().map_or(0, |a| a.as_str().len())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn request_ids_are_checked() {
        let mut h = HeaderMap::new();
        h.insert(&X_REQUEST_ID, HeaderValue::from_static("abc.DEF_123-x"));
        assert!(valid_request_id(&h).is_some());
        h.insert(&X_REQUEST_ID, HeaderValue::from_static("has space"));
        assert!(valid_request_id(&h).is_none());
        h.insert(
            &X_REQUEST_ID,
            HeaderValue::from_str(&"a".repeat(129)).unwrap(),
        );
        assert!(valid_request_id(&h).is_none());
        assert_eq!(new_request_id().len(), 36);
    }

    #[test]
    fn unknown_methods_share_one_label() {
        assert_eq!(method_label(&Method::GET), "GET");
        assert_eq!(method_label(&Method::PATCH), "PATCH");
        for m in ["PURGE", "get", "X-ANYTHING"] {
            assert_eq!(
                method_label(&Method::from_bytes(m.as_bytes()).unwrap()),
                "_OTHER"
            );
        }
    }
}
