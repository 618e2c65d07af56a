//! Thin handlers: validate what the gateway must, map the path, forward. The layers in
//! `router.rs` have already done authentication, limits and idempotency.
//!
//! Each handler carries its `#[utoipa::path]` (the OpenAPI document is read from them) and the
//! gateway's own answers are typed `Serialize + ToSchema` bodies. Their fields are in alphabetical
//! order: the order in which `serde_json`'s maps wrote the keys before the bodies were typed, so
//! no answer's bytes changed (the `--demo` banner's output shows them).
use std::sync::Arc;

use axum::extract::Request;
use axum::response::Response;
use bytes::Bytes;
use http::Method;

use crate::body::read_body;
use crate::error::ApiError;
use crate::middleware::auth::Caller;
use crate::middleware::real_ip::ClientAddr;
use crate::middleware::request_id::RequestId;
use crate::state::AppState;
use crate::telemetry::access::AccessLog;
use crate::telemetry::trace_context::TraceId;
use crate::upstream::{Forward, Incoming, Upstream};

pub mod admin;
pub mod demo;
pub mod health;
pub mod input;
pub mod payments;
pub mod queue;
pub mod reservations;

/// Forwards `req` to `upstream` at `path` (query string kept), body unchanged.
pub async fn forward(
    state: &AppState,
    upstream: &Upstream,
    method: Method,
    path: &str,
    req: Request,
) -> Result<Response, ApiError> {
    let (parts, body) = req.into_parts();
    let body = read_body(body, state.config.max_body_size).await?;
    forward_with_body(upstream, method, path, &parts, body).await
}

/// As [`forward`], for a handler that already read the body.
pub async fn forward_with_body(
    upstream: &Upstream,
    method: Method,
    path: &str,
    parts: &http::request::Parts,
    body: Bytes,
) -> Result<Response, ApiError> {
    // The outer layers always set these; a request without them is a bug, not a client's.
    let ext = &parts.extensions;
    let (Some(addr), Some(request_id), Some(trace_id)) = (
        ext.get::<ClientAddr>(),
        ext.get::<RequestId>(),
        ext.get::<TraceId>(),
    ) else {
        return Err(ApiError::Internal);
    };
    let caller = parts.extensions.get::<Caller>();
    let access = parts.extensions.get::<AccessLog>();
    if let (Some(log), Some(c)) = (access, caller) {
        log.user(c.shared_user_id());
    }
    let forward = Forward {
        method,
        path,
        body,
        incoming: Incoming {
            headers: &parts.headers,
            query: parts.uri.query(),
            request_id: &request_id.0,
            peer: addr.peer,
            trusted_peer: addr.trusted_peer,
        },
        trace_id: *trace_id,
        user_id: caller.map(|c| c.user_id()),
        access,
    };
    Ok(upstream.forward(forward).await?)
}

pub type SharedState = Arc<AppState>;
