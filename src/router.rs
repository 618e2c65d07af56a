//! Every route and layer, in request order.
//!
//! The life of a request:
//! 1. The listener (`app.rs`) enforces head size, header count and the slow-header timeout.
//! 2. `context` gives it a request id and a trace id, resolves the client address, and on the way
//!    out stamps `X-Request-ID`, `X-Trace-Id` and the security headers. A panic below it becomes a
//!    JSON 500. CORS preflights are answered here, before any policy.
//! 3. Routing: unknown path → 404, wrong method → 405 (both JSON). Health, readiness, version and
//!    metrics (and the OpenAPI document) are answered without any policy.
//! 4. `/api` route layers, cheapest refusal first: overload shedding and the per-client rate limit
//!    (issue #4), then authentication (issue #3), then idempotency on writes (issue #5). Queue
//!    `status` and `leave` are only shed: the store limits them per waiting token (SPEC §5).
//!    `/admin/v1` needs a verified token with the admin scope and is neither limited nor shed
//!    (SPEC §5a).
//! 5. The handler validates ids, maps the path and forwards (`routes.rs`, `upstream.rs`).
use std::sync::Arc;

use axum::Router;
use axum::middleware::from_fn_with_state;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use http::{HeaderName, Method};
use tower::ServiceBuilder;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::cors::{AllowOrigin, CorsLayer};

use crate::config::{Config, CorsOrigins};

use crate::error::ApiError;
use crate::middleware::auth::AuthLayer;
use crate::middleware::context;
use crate::middleware::idempotency::IdempotencyLayer;
use crate::middleware::overload::OverloadLayer;
use crate::middleware::ratelimit::RateLimitLayer;
use crate::middleware::scope;
use crate::openapi;
use crate::openapi::docs;
use crate::routes::{admin, demo, health, payments, queue, reservations};
use crate::state::AppState;

pub fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .merge(operations_routes())
        .merge(docs_routes())
        .merge(client_routes(&state))
        .merge(queue_poll_routes(&state))
        .merge(admin_routes(&state))
        // `--demo` only (absent otherwise, so 404): mint a token for the dev key.
        .merge(demo::routes(state.demo.is_some()))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(
            ServiceBuilder::new()
                // Request id, trace id, client address, security headers: every response has them.
                .layer(from_fn_with_state(context_settings(&state), context::layer))
                // A bug becomes a JSON 500, never a dropped connection.
                .layer(CatchPanicLayer::custom(panic_response))
                // Preflights are answered before any policy runs.
                .option_layer(cors(&state.config)),
        )
        .with_state(state)
}

/// Health, readiness, version and metrics: never rate limited, shed or authenticated (SPEC §2).
fn operations_routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route("/version", get(health::version))
        .route("/metrics", get(health::metrics))
}

/// The OpenAPI document and Swagger UI over it, assets compiled in (works offline).
fn docs_routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/openapi.json", get(openapi::serve))
        .route("/docs", get(docs::redirect))
        .route("/docs/", get(docs::page))
        .route("/docs/{*rest}", get(docs::asset))
}

/// Every `/api` route a client calls, but the queue polls: overload shedding, then the
/// per-client rate limit (issue #4), before auth so a flood cannot burn CPU on signatures.
fn client_routes(state: &Arc<AppState>) -> Router<Arc<AppState>> {
    protected_routes(state)
        .merge(queue_routes(state))
        .route_layer(
            ServiceBuilder::new()
                // Cheapest refusal first: one shared semaphore, no store call.
                .layer(OverloadLayer::new(
                    state.in_flight.clone(),
                    state.metrics.clone(),
                ))
                // One store round trip; 429 and the RateLimit headers.
                .option_layer(
                    state
                        .config
                        .rate_limit
                        .enabled
                        .then(|| RateLimitLayer::new(state.limiter.clone())),
                ),
        )
}

/// Reservations and payments need a verified bearer token (SPEC §2): sets `Caller` for the
/// layers and handlers below.
fn protected_routes(state: &Arc<AppState>) -> Router<Arc<AppState>> {
    Router::new()
        .route("/api/v1/reservations/{id}", get(reservations::get))
        .route("/api/v1/payment/intent/{id}", get(payments::get_intent))
        .merge(write_routes(state))
        .route_layer(AuthLayer::required(
            state.jwt.clone(),
            state.metrics.clone(),
        ))
}

/// Writes: each one needs an Idempotency-Key (SPEC §6).
fn write_routes(state: &Arc<AppState>) -> Router<Arc<AppState>> {
    Router::new()
        .route("/api/v1/reservations/create", post(reservations::create))
        .route("/api/v1/reservations", post(reservations::create))
        .route(
            "/api/v1/reservations/{id}/cancel",
            post(reservations::cancel),
        )
        .route(
            "/api/v1/reservations/{id}/confirm",
            post(reservations::confirm),
        )
        .route("/api/v1/payment/intent", post(payments::create_intent))
        // Exactly-once: replay, 409 or run; inside auth so a record belongs to the caller.
        .route_layer(idempotency(state))
}

/// The waiting room's join and enter (SPEC §5) know the verified caller when a bearer is sent
/// (optional auth: none → anonymous, invalid → 401).
fn queue_routes(state: &Arc<AppState>) -> Router<Arc<AppState>> {
    let enter = Router::new()
        .route("/api/v1/queue/enter", post(queue::enter))
        // A write: a retry with the same key replays the grant instead of spending a new place.
        .route_layer(idempotency(state));
    Router::new()
        .route("/api/v1/queue/join", post(queue::join))
        .merge(enter)
        .route_layer(AuthLayer::optional(
            state.jwt.clone(),
            state.metrics.clone(),
        ))
}

/// Status and leave are limited per waiting token in the store (SPEC §5), not per client:
/// thousands of fans behind one NAT must be able to wait. Still shed under overload.
fn queue_poll_routes(state: &Arc<AppState>) -> Router<Arc<AppState>> {
    Router::new()
        .route("/api/v1/queue/status", get(queue::status))
        .route("/api/v1/queue/leave", delete(queue::leave))
        .route_layer(OverloadLayer::new(
            state.in_flight.clone(),
            state.metrics.clone(),
        ))
}

/// Exactly-once writes (SPEC §6), built from the parts the layer needs.
fn idempotency(state: &AppState) -> IdempotencyLayer {
    IdempotencyLayer::new(state.store.clone(), state.metrics.clone(), &state.config)
}

fn context_settings(state: &AppState) -> Arc<context::Settings> {
    Arc::new(context::Settings {
        metrics: state.metrics.clone(),
        trusted_proxies: state.config.trusted_proxies.clone(),
        trace_sampling: state.config.telemetry.trace_sampling,
    })
}

/// The operators' routes (SPEC §5a): a verified bearer token with `ADMIN_SCOPE`; neither rate
/// limited per client nor shed, so an operator can still pause a sale the gateway is drowning in.
fn admin_routes(state: &Arc<AppState>) -> Router<Arc<AppState>> {
    let scope: Arc<str> = Arc::from(state.config.queue.admin_scope.as_str());
    Router::new()
        .route("/admin/v1/events", get(admin::list_events))
        .route(
            "/admin/v1/events/{event_id}",
            get(admin::get_event)
                .put(admin::put_event)
                .delete(admin::delete_event),
        )
        // 403 without the scope; runs after auth.
        .route_layer(from_fn_with_state(scope, scope::require))
        // 401 without a valid token.
        .route_layer(AuthLayer::required(
            state.jwt.clone(),
            state.metrics.clone(),
        ))
}

async fn not_found() -> ApiError {
    ApiError::NotFound
}

async fn method_not_allowed() -> ApiError {
    ApiError::MethodNotAllowed
}

fn panic_response(_: Box<dyn std::any::Any + Send + 'static>) -> Response {
    tracing::error!("handler panicked");
    ApiError::Internal.into_response()
}

fn cors(config: &Config) -> Option<CorsLayer> {
    let origin = match config.cors_allowed_origins.as_ref()? {
        CorsOrigins::Any => AllowOrigin::any(),
        CorsOrigins::List(origins) => AllowOrigin::list(origins.iter().cloned()),
    };
    let allow_headers = [
        "authorization",
        "content-type",
        "idempotency-key",
        "x-request-id",
        "x-reservation-token",
        "traceparent",
        "tracestate",
    ];
    let expose_headers = [
        "x-request-id",
        "x-trace-id",
        "retry-after",
        "ratelimit",
        "ratelimit-policy",
        "x-ratelimit-limit",
        "x-ratelimit-remaining",
        "x-ratelimit-reset",
        "idempotent-replayed",
    ];
    Some(
        CorsLayer::new()
            .allow_origin(origin)
            .allow_methods([Method::GET, Method::POST, Method::PUT, Method::DELETE])
            .allow_headers(allow_headers.map(HeaderName::from_static))
            .expose_headers(expose_headers.map(HeaderName::from_static))
            .max_age(std::time::Duration::from_secs(600)),
    )
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use axum::body::Body;
    use http::Request;
    use tower::ServiceExt;

    use super::*;

    async fn boom() -> &'static str {
        let v: Vec<&str> = Vec::new();
        v[0] // index out of bounds: a bug
    }

    #[tokio::test]
    async fn a_panicking_handler_becomes_a_json_500() {
        let app: Router = Router::new()
            .route("/boom", get(boom))
            .layer(CatchPanicLayer::custom(panic_response));
        let res = app
            .oneshot(Request::get("/boom").body(Body::empty()).unwrap())
            .await
            .unwrap();
        assert_eq!(res.status(), 500);
        let body = axum::body::to_bytes(res.into_body(), 4096).await.unwrap();
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["error"]["code"], "INTERNAL_ERROR");
    }
}
