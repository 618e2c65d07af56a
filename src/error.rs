//! `ApiError`: every error the gateway itself produces, as status, code and the JSON body of
//! SPEC §4. The only module that turns failures into HTTP. Modules keep their own small error
//! types (`StoreError`, `UpstreamError`, `ConfigError`); handlers map them here.
use std::time::Duration;

use axum::response::{IntoResponse, Response};
use http::{HeaderValue, StatusCode, header};
use serde::Serialize;

use crate::telemetry::trace_context;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    BadRequest(&'static str),
    /// 400 `BAD_REQUEST` naming the field (`event_id: missing field`), from `routes::input`.
    #[error("{0}")]
    InvalidInput(String),
    #[error("{0}")]
    Unauthenticated(AuthFailure),
    #[error("{0}")]
    Forbidden(&'static str),
    #[error("no route for this path")]
    NotFound,
    /// axum's method router adds the `Allow` header to this response.
    #[error("method not allowed")]
    MethodNotAllowed,
    #[error("the Idempotency-Key was used for a different request")]
    IdempotencyConflict,
    #[error("a request with this Idempotency-Key is still in progress")]
    IdempotencyInProgress,
    #[error("request body too large")]
    PayloadTooLarge,
    #[error("this route requires an Idempotency-Key header")]
    IdempotencyRequired,
    #[error("rate limit exceeded")]
    RateLimited { retry_after: Duration },
    #[error("internal error")]
    Internal,
    /// 502 `UPSTREAM_ERROR`: the upstream answered with something that is not HTTP, or closed the
    /// connection without an answer.
    #[error("the upstream service returned an invalid response")]
    BadGateway,
    #[error("{0}")]
    UpstreamUnavailable(&'static str),
    #[error("the gateway is overloaded, retry later")]
    Overloaded,
    #[error("the upstream service did not answer in time")]
    UpstreamTimeout,
    /// 408: the body did not arrive within `REQUEST_BODY_TIMEOUT`; the connection is closed.
    #[error("the request body did not arrive in time")]
    RequestTimeout,
    /// 414: the request target alone is over the limit (SPEC §4).
    #[error("request URI too long")]
    UriTooLong,
    /// 431: the request head is over the limit (SPEC §4).
    #[error("request header fields too large")]
    HeadersTooLarge,
    /// 404: an event no operator defined (SPEC §5a).
    #[error("{0}")]
    EventNotFound(&'static str),
    /// 410: the event is closed (SPEC §5a).
    #[error("the event is closed")]
    EventClosed,
}

/// Why a bearer token was refused. Only `Missing` changes what the client sees (no `error=` in
/// `WWW-Authenticate`); every other reason goes to the log, the client reads a generic message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AuthFailure {
    #[error("authentication required")]
    Missing,
    #[error("invalid or expired token")]
    Invalid,
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    error: ErrorDetail<'a>,
}

#[derive(Serialize)]
struct ErrorDetail<'a> {
    code: &'static str,
    message: &'a str,
    trace_id: &'a str,
}

impl ApiError {
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_) | ApiError::IdempotencyRequired => StatusCode::BAD_REQUEST,
            ApiError::InvalidInput(_) => StatusCode::BAD_REQUEST,
            ApiError::Unauthenticated(_) => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::NotFound => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::IdempotencyConflict | ApiError::IdempotencyInProgress => StatusCode::CONFLICT,
            ApiError::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Internal => StatusCode::INTERNAL_SERVER_ERROR,
            ApiError::BadGateway => StatusCode::BAD_GATEWAY,
            ApiError::UpstreamUnavailable(_) | ApiError::Overloaded => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            ApiError::UpstreamTimeout => StatusCode::GATEWAY_TIMEOUT,
            ApiError::RequestTimeout => StatusCode::REQUEST_TIMEOUT,
            ApiError::UriTooLong => StatusCode::URI_TOO_LONG,
            ApiError::HeadersTooLarge => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            ApiError::EventNotFound(_) => StatusCode::NOT_FOUND,
            ApiError::EventClosed => StatusCode::GONE,
        }
    }

    pub fn code(&self) -> &'static str {
        match self {
            ApiError::BadRequest(_) => "BAD_REQUEST",
            ApiError::InvalidInput(_) => "BAD_REQUEST",
            ApiError::RequestTimeout => "REQUEST_TIMEOUT",
            ApiError::UriTooLong => "URI_TOO_LONG",
            ApiError::HeadersTooLarge => "HEADERS_TOO_LARGE",
            ApiError::Unauthenticated(_) => "UNAUTHENTICATED",
            ApiError::Forbidden(_) => "FORBIDDEN",
            ApiError::NotFound => "NOT_FOUND",
            ApiError::MethodNotAllowed => "METHOD_NOT_ALLOWED",
            ApiError::IdempotencyConflict => "IDEMPOTENCY_CONFLICT",
            ApiError::IdempotencyInProgress => "IDEMPOTENCY_IN_PROGRESS",
            ApiError::PayloadTooLarge => "PAYLOAD_TOO_LARGE",
            ApiError::IdempotencyRequired => "IDEMPOTENCY_REQUIRED",
            ApiError::RateLimited { .. } => "RATE_LIMITED",
            ApiError::Internal => "INTERNAL_ERROR",
            ApiError::BadGateway => "UPSTREAM_ERROR",
            ApiError::UpstreamUnavailable(_) => "UPSTREAM_UNAVAILABLE",
            ApiError::Overloaded => "OVERLOADED",
            ApiError::UpstreamTimeout => "UPSTREAM_TIMEOUT",
            ApiError::EventNotFound(_) => "EVENT_NOT_FOUND",
            ApiError::EventClosed => "EVENT_CLOSED",
        }
    }
}

/// Whole seconds, at least 1 (SPEC §4: `Retry-After` in whole seconds ≥ 1), rounded up so a
/// retry after it is honest.
pub fn retry_after_secs(d: Duration) -> u64 {
    secs_ceil(d).max(1)
}

/// Whole seconds, rounded up (`RateLimit` `t=`, `X-RateLimit-Reset`).
pub fn secs_ceil(d: Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let trace_id = trace_context::current_trace_id();
        let message = self.to_string();
        let body = ErrorBody {
            error: ErrorDetail {
                code: self.code(),
                message: &message,
                trace_id: trace_id.as_str(),
            },
        };
        let bytes = serde_json::to_vec(&body)
            .unwrap_or_else(|_| b"{\"error\":{\"code\":\"INTERNAL_ERROR\"}}".to_vec());
        let mut res = (
            self.status(),
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            )],
            bytes,
        )
            .into_response();
        let headers = res.headers_mut();
        match &self {
            ApiError::RateLimited { retry_after } => {
                headers.insert(
                    header::RETRY_AFTER,
                    HeaderValue::from(retry_after_secs(*retry_after)),
                );
            }
            ApiError::IdempotencyInProgress | ApiError::Overloaded => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            }
            ApiError::RequestTimeout => {
                // The rest of the body may still be on its way: this connection is done.
                headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
            }
            ApiError::Unauthenticated(AuthFailure::Missing) => {
                headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            }
            ApiError::Unauthenticated(AuthFailure::Invalid) => {
                headers.insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("Bearer error=\"invalid_token\""),
                );
            }
            _ => {}
        }
        // Lets outer layers (access log, idempotency) see which gateway error this was.
        res.extensions_mut().insert(GatewayError(self.code()));
        res
    }
}

/// Marker in response extensions: this response is the gateway's own error with this code.
#[derive(Debug, Clone, Copy)]
pub struct GatewayError(pub &'static str);

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[tokio::test]
    async fn rate_limited_body_and_retry_after() {
        let res = ApiError::RateLimited {
            retry_after: Duration::from_millis(1200),
        }
        .into_response();
        assert_eq!(res.status(), 429);
        assert_eq!(res.headers()["retry-after"], "2");
        assert_eq!(res.headers()["content-type"], "application/json");
        let body = axum::body::to_bytes(res.into_body(), 4096).await.unwrap();
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["error"]["code"], "RATE_LIMITED");
        assert!(v["error"]["message"].is_string());
        assert!(v["error"]["trace_id"].is_string());
    }

    #[test]
    fn retry_after_is_whole_seconds_at_least_one() {
        assert_eq!(retry_after_secs(Duration::ZERO), 1);
        assert_eq!(retry_after_secs(Duration::from_millis(1)), 1);
        assert_eq!(retry_after_secs(Duration::from_secs(1)), 1);
        assert_eq!(retry_after_secs(Duration::from_millis(1001)), 2);
    }

    #[test]
    fn missing_token_has_no_error_attribute() {
        let res = ApiError::Unauthenticated(AuthFailure::Missing).into_response();
        assert_eq!(res.headers()["www-authenticate"], "Bearer");
        let res = ApiError::Unauthenticated(AuthFailure::Invalid).into_response();
        assert_eq!(
            res.headers()["www-authenticate"],
            "Bearer error=\"invalid_token\""
        );
    }
}
