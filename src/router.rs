//! Every route and layer, in request order.
//!
//! The life of a request:
//! 1. The listener (`app.rs`) enforces head size, header count and the slow-header timeout.
//! 2. The outer layers, one concern each: the HTTP metrics, the client address, the request id,
//!    the server span and trace id, the access line, the security headers, and the refusals of
//!    SPEC §4 (URI too long, ambiguous framing). A panic below them becomes a JSON 500. CORS
//!    preflights are answered here, before any policy.
//! 3. Routing: unknown path → 404, wrong method → 405 (both JSON). Health, readiness, version and
//!    metrics (and the OpenAPI document) are answered without any policy.
//! 4. `/api` route layers, cheapest refusal first: overload shedding and the per-client rate limit
//!    (issue #4), then authentication (issue #3), then idempotency on writes (issue #5). Queue
//!    `status` and `leave` are only shed: the store limits them per waiting token (SPEC §5).
//!    `/admin/v1` needs a verified token with the admin scope and is neither limited nor shed
//!    (SPEC §5a).
//! 5. The handler validates ids, maps the path and forwards (`routes.rs`, `upstream.rs`).
//!
//! The routes clients call are registered with utoipa-axum's `routes!` from each handler's
//! `#[utoipa::path]`, so the OpenAPI document ([`document`]) is built from the same route groups.
use std::sync::{Arc, LazyLock};

use axum::Router;
use axum::middleware::from_fn_with_state;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use http::{HeaderName, Method};
use tower::ServiceBuilder;
use tower::layer::util::Identity;
use tower::util::{Either, option_layer};
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::cors::{AllowOrigin, CorsLayer};
use utoipa::OpenApi as _;
use utoipa::openapi::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::config::{Config, CorsOrigins};

use crate::error::ApiError;
use crate::middleware::access_log::WriteAccessLog;
use crate::middleware::around::AroundLayer;
use crate::middleware::auth::AuthLayer;
use crate::middleware::common_headers::CommonHeaders;
use crate::middleware::idempotency::IdempotencyLayer;
use crate::middleware::overload::{OverloadLayer, Shedding};
use crate::middleware::ratelimit::RateLimitLayer;
use crate::middleware::real_ip::RealIp;
use crate::middleware::refusals::Refusals;
use crate::middleware::request_id::SetRequestId;
use crate::middleware::scope;
use crate::middleware::server_span::ServerSpanLayer;
use crate::middleware::update_metrics::UpdateMetrics;
use crate::openapi::{self, ApiDoc, docs};
use crate::routes::{SharedState, admin, demo, health, payments, queue, reservations};
use crate::state::AppState;

pub fn router(state: Arc<AppState>) -> Router {
    Router::from(route_groups(Some(&state)))
        // `--demo` only (absent otherwise, so 404): mint a token for the dev key.
        .merge(demo::routes(state.demo.is_some()))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(
            ServiceBuilder::new()
                // Counted first and last: in flight, then by method, route and status.
                .layer(AroundLayer::new(UpdateMetrics::new(state.metrics.clone())))
                // Who the client is (SPEC §7): the peer, or a trusted proxy's hop.
                .layer(AroundLayer::new(RealIp::new(&state.config.trusted_proxies)))
                // `X-Request-ID`, the client's when well formed.
                .layer(AroundLayer::new(SetRequestId))
                // The server span (sampled) and the trace id every response and error carries.
                .layer(ServerSpanLayer::new(state.config.telemetry.trace_sampling))
                // One access line per request, with what the layers further in reported.
                .layer(AroundLayer::new(WriteAccessLog))
                // The security headers of SPEC §3.
                .layer(AroundLayer::new(CommonHeaders))
                // URI too long, ambiguous framing: answered before routing (SPEC §4).
                .layer(AroundLayer::new(Refusals))
                // The layers below answer with bodies of their own types; one `Body` from here.
                .map_response(IntoResponse::into_response)
                // A bug becomes a JSON 500, never a dropped connection.
                .layer(CatchPanicLayer::custom(panic_response))
                // Preflights are answered before any policy runs.
                .option_layer(cors(&state.config)),
        )
        .with_state(state)
}

/// The OpenAPI document (`GET /openapi.json`, `gateway --print-openapi`), read from the same
/// route groups as [`router`], so what is served is what is documented. Built without a state:
/// the groups' layers are left out (the document does not show them; `openapi::complete` adds
/// the answers they give).
pub fn document() -> OpenApi {
    openapi::complete(route_groups(None).into_openapi())
}

/// Every route group, each with its layers; a handler a client calls is registered with
/// `routes!` from its own `#[utoipa::path]`, which also documents it. `state` builds the layers;
/// without it (for [`document`]) the same routes have none.
fn route_groups(state: Option<&AppState>) -> OpenApiRouter<SharedState> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .merge(operations_routes())
        .merge(docs_routes())
        .merge(read_routes(state))
        .merge(write_routes(state))
        .merge(queue_join_routes(state))
        .merge(queue_enter_routes(state))
        .merge(queue_poll_routes(state))
        .merge(admin_routes(state))
}

/// Health, readiness, version and metrics: never rate limited, shed or authenticated (SPEC §2).
fn operations_routes() -> OpenApiRouter<SharedState> {
    OpenApiRouter::new()
        .routes(routes!(health::healthz))
        .routes(routes!(health::readyz))
        .routes(routes!(health::version))
        .routes(routes!(health::metrics))
}

/// The OpenAPI document and Swagger UI over it, assets compiled in (works offline). The redirect
/// and the assets are not part of the document.
fn docs_routes() -> OpenApiRouter<SharedState> {
    OpenApiRouter::new()
        .routes(routes!(openapi_json))
        .route("/docs", get(docs::redirect))
        .routes(routes!(docs::page))
        .route("/docs/{*rest}", get(docs::asset))
}

// The `/api` groups below each put their whole policy chain in one `route_layer`, cheapest
// refusal first: overload shedding (one shared semaphore, no store call), the per-client rate
// limit (one store round trip; before auth, so a flood cannot burn CPU on signatures), auth,
// idempotency. One layer stack per group rather than a layer per nesting level: axum wraps
// every `route_layer` in a boxed `Route` that is cloned on every call, with all it holds.

/// Reading a reservation or a payment intent: a verified bearer token (SPEC §2), whose `Caller`
/// the handler sends upstream.
fn read_routes(state: Option<&AppState>) -> OpenApiRouter<SharedState> {
    OpenApiRouter::new()
        .routes(routes!(reservations::get))
        .routes(routes!(payments::get_intent))
        .route_layer(layer(state, |s| {
            ServiceBuilder::new()
                .layer(shedding(s))
                .option_layer(rate_limit(s))
                .layer(auth_required(s))
        }))
}

/// Writes: as reads, and each one needs an Idempotency-Key (SPEC §6): replay, 409 or run;
/// inside auth so a record belongs to the caller.
fn write_routes(state: Option<&AppState>) -> OpenApiRouter<SharedState> {
    OpenApiRouter::new()
        .routes(routes!(reservations::create))
        .routes(routes!(reservations::create_alias))
        .routes(routes!(reservations::cancel))
        .routes(routes!(reservations::confirm))
        .routes(routes!(payments::create_intent))
        .route_layer(layer(state, |s| {
            ServiceBuilder::new()
                .layer(shedding(s))
                .option_layer(rate_limit(s))
                .layer(auth_required(s))
                .layer(idempotency(s))
        }))
}

/// The waiting room's join (SPEC §5) knows the verified caller when a bearer is sent (optional
/// auth: none → anonymous, invalid → 401).
fn queue_join_routes(state: Option<&AppState>) -> OpenApiRouter<SharedState> {
    OpenApiRouter::new()
        .routes(routes!(queue::join))
        .route_layer(layer(state, |s| {
            ServiceBuilder::new()
                .layer(shedding(s))
                .option_layer(rate_limit(s))
                .layer(auth_optional(s))
        }))
}

/// Enter is a write: a retry with the same key replays the grant instead of spending a new
/// place.
fn queue_enter_routes(state: Option<&AppState>) -> OpenApiRouter<SharedState> {
    OpenApiRouter::new()
        .routes(routes!(queue::enter))
        .route_layer(layer(state, |s| {
            ServiceBuilder::new()
                .layer(shedding(s))
                .option_layer(rate_limit(s))
                .layer(auth_optional(s))
                .layer(idempotency(s))
        }))
}

/// Status and leave are limited per waiting token in the store (SPEC §5), not per client:
/// thousands of fans behind one NAT must be able to wait. Still shed under overload.
fn queue_poll_routes(state: Option<&AppState>) -> OpenApiRouter<SharedState> {
    OpenApiRouter::new()
        .routes(routes!(queue::status))
        .routes(routes!(queue::leave))
        .route_layer(layer(state, shedding))
}

/// The operators' routes (SPEC §5a): a verified bearer token with `ADMIN_SCOPE`; neither rate
/// limited per client nor shed, so an operator can still pause a sale the gateway is drowning in.
fn admin_routes(state: Option<&AppState>) -> OpenApiRouter<SharedState> {
    OpenApiRouter::new()
        .routes(routes!(admin::list_events))
        .routes(routes!(
            admin::get_event,
            admin::put_event,
            admin::delete_event
        ))
        .route_layer(layer(state, |s| {
            let scope: Arc<str> = Arc::from(s.config.queue.admin_scope.as_str());
            ServiceBuilder::new()
                // 401 without a valid token.
                .layer(auth_required(s))
                // 403 without the scope.
                .layer(from_fn_with_state(scope, scope::require))
        }))
}

/// `make(state)`; no layer at all when the routes are read for the [`document`] only.
fn layer<L>(state: Option<&AppState>, make: impl FnOnce(&AppState) -> L) -> Either<L, Identity> {
    option_layer(state.map(make))
}

/// The per-client rate limit (SPEC §7), unless `RATE_LIMIT_ENABLED=false`: 429 and the
/// RateLimit headers.
fn rate_limit(state: &AppState) -> Option<RateLimitLayer> {
    let cfg = &state.config.rate_limit;
    cfg.enabled
        .then(|| RateLimitLayer::new(state.limiter.clone(), cfg))
}

/// Too many requests in flight → 503 `OVERLOADED` (one set of permits for every `/api` route).
fn shedding(state: &AppState) -> OverloadLayer {
    Shedding::layer(state.in_flight.clone(), state.metrics.clone())
}

fn auth_required(state: &AppState) -> AuthLayer {
    AuthLayer::required(state.jwt.clone(), state.metrics.clone())
}

fn auth_optional(state: &AppState) -> AuthLayer {
    AuthLayer::optional(state.jwt.clone(), state.metrics.clone())
}

/// Exactly-once writes (SPEC §6), built from the parts the layer needs.
fn idempotency(state: &AppState) -> IdempotencyLayer {
    IdempotencyLayer::new(state.store.clone(), state.metrics.clone(), &state.config)
}

/// This document
#[utoipa::path(get, path = "/openapi.json", tag = "operations",
    responses((status = 200, description = "The OpenAPI 3.1 document of every public route",
        body = Object, content_type = "application/json")))]
async fn openapi_json() -> Response {
    // Built once, compact: it is served on every `GET /openapi.json`.
    static JSON: LazyLock<String> = LazyLock::new(|| document().to_json().unwrap_or_default());
    openapi::json_response(JSON.as_str())
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
