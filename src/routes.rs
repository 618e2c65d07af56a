//! Thin handlers: validate what the gateway must, map the path, forward. The layers in
//! `router.rs` have already done authentication, limits and idempotency.
use std::sync::Arc;
use std::time::Instant;

use axum::extract::Request;
use axum::response::Response;
use bytes::Bytes;
use http::Method;
use tracing::Instrument;

use crate::body::read_body;
use crate::error::ApiError;
use crate::middleware::auth::Caller;
use crate::middleware::client_ip;
use crate::middleware::context::RequestContext;
use crate::state::AppState;
use crate::telemetry::access::AccessLog;
use crate::telemetry::traces;
use crate::upstream::forward::upstream_headers;
use crate::upstream::{Outbound, Upstream, UpstreamError};

pub mod demo;
pub mod health;
pub mod input;
pub mod payments;
pub mod queue;
pub mod reservations;

/// `{id}` and `event_id`: `[A-Za-z0-9_-]{1,128}` (SPEC §2). Checked before any upstream is
/// touched, so `..`, encoded slashes and spaces never reach one.
pub fn valid_id(id: &str) -> Result<&str, ApiError> {
    let ok = (1..=128).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if ok {
        Ok(id)
    } else {
        Err(ApiError::BadRequest(
            "invalid id: expected 1-128 characters of A-Z a-z 0-9 _ -",
        ))
    }
}

/// Forwards `req` to `upstream` at `path` (query string kept), body unchanged.
pub async fn proxy(
    state: &AppState,
    upstream: &Upstream,
    method: Method,
    path: &str,
    req: Request,
) -> Result<Response, ApiError> {
    let (parts, body) = req.into_parts();
    let body = read_body(body, state.config.max_body_size).await?;
    proxy_parts(state, upstream, method, path, &parts, body).await
}

/// As [`proxy`], for a handler that already read the body.
pub async fn proxy_parts(
    state: &AppState,
    upstream: &Upstream,
    method: Method,
    path: &str,
    parts: &http::request::Parts,
    body: Bytes,
) -> Result<Response, ApiError> {
    let ctx = parts
        .extensions
        .get::<RequestContext>()
        .ok_or(ApiError::Internal)?;
    let caller = parts.extensions.get::<Caller>();
    let trusted_peer = client_ip::is_trusted_peer(ctx.peer_ip, &state.config.trusted_proxies);
    let access = parts.extensions.get::<AccessLog>();
    if let (Some(log), Some(c)) = (access, caller) {
        log.user(c.user_id());
    }
    // The client span: a child of the server span (none when the request is not traced);
    // upstreams see it as their parent.
    let span = if tracing::Span::current().is_disabled() {
        tracing::Span::none()
    } else {
        tracing::info_span!(
        "http.client",
        otel.name = %format_args!("{method} {}", upstream.name),
        otel.kind = "client",
        otel.status_code = tracing::field::Empty,
        http.request.method = method.as_str(),
        url.path = path,
        peer.service = upstream.name,
        http.response.status_code = tracing::field::Empty,
        error.type = tracing::field::Empty,
        )
    };
    let trace = traces::propagation_headers(&span, ctx.trace_id.0, &parts.headers);
    let headers = upstream_headers(
        &parts.headers,
        &ctx.request_id,
        ctx.peer_ip,
        caller.map(|c| c.user_id()),
        &trace,
        trusted_peer,
    );
    let path_and_query = match parts.uri.query() {
        Some(q) => format!("{path}?{q}"),
        None => path.to_owned(),
    };
    let started = Instant::now();
    let result = upstream
        .send(Outbound {
            method,
            path_and_query,
            headers,
            body,
        })
        .instrument(span.clone())
        .await;
    let status = result.as_ref().ok().map(|r| r.status());
    if let Some(log) = access {
        log.upstream(upstream.name, status.map(|s| s.as_u16()), started.elapsed());
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
            span.record("error.type", error_type(e));
        }
        (Ok(_), None) => {}
    }
    Ok(result?)
}

/// The client span's `error.type` when no answer came.
fn error_type(e: &UpstreamError) -> &'static str {
    match e {
        UpstreamError::Timeout => "timeout",
        UpstreamError::Connect(_) => "connect_error",
        UpstreamError::Protocol(_) => "protocol_error",
        UpstreamError::Saturated => "saturated",
        UpstreamError::CircuitOpen => "circuit_open",
        #[allow(unreachable_patterns, reason = "the upstream module grows new kinds")]
        _ => "upstream_error",
    }
}

pub type SharedState = Arc<AppState>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_checked_before_any_upstream() {
        assert!(valid_id("abc-DEF_123").is_ok());
        assert!(valid_id(&"a".repeat(128)).is_ok());
        for bad in ["", "..", "a/b", "a%2Fb", "has space", "ü", &"a".repeat(129)] {
            assert!(valid_id(bad).is_err(), "{bad:?}");
        }
    }
}
