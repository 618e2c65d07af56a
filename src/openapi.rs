//! The OpenAPI 3.1 document of every public route (SPEC §2), built from code with `utoipa` and
//! served at `GET /openapi.json` (and printed by `gateway --print-openapi`).
//!
//! The whole document lives in this one module rather than as annotations on the handlers: each
//! route is described by a doc-only function in [`paths`] (its `#[utoipa::path]`), its bodies by
//! the schema types below. The answers a whole class of routes shares (401, 429, 503, the
//! idempotency 409s, the request-id and rate-limit headers) are added once by [`SharedAnswers`],
//! following the router's own rules: every `/api` route is rate limited and may be shed, a route
//! that requires a bearer token authenticates, a route with an `Idempotency-Key` parameter is an
//! idempotent write, a route tagged `reservations` or `payments` is proxied.
//!
//! Not here: the upstreams' own bodies are passed through unparsed (SPEC §2), so their schemas
//! describe what the bundled mock upstreams answer; the real APIs own their contracts.
//! `tests/api/openapi.rs` fails when a route is served but not documented, or the other way round.

pub mod docs;

use std::sync::LazyLock;

use axum::response::{IntoResponse, Response};
use http::{HeaderValue, Method, header};
use utoipa::openapi::path::Operation;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{
    ContentBuilder, HeaderBuilder, Object, OpenApi as Document, Ref, RefOr, ResponseBuilder, Type,
};
use utoipa::{IntoParams, Modify, OpenApi, ToSchema};

/// The document, with the shared answers added.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "gateway-api",
        description = "The single entry point of the ticket-booking platform: authentication (JWT), \
rate limits, overload shedding, a virtual waiting room, idempotent writes, and a proxy to the \
reservation and payment APIs.\n\nEvery response carries `X-Request-ID` and `X-Trace-Id`. Every \
error the gateway itself produces has the `ErrorBody` shape; upstream answers (status, body, \
`Content-Type`) are passed through unchanged."
    ),
    paths(
        paths::healthz,
        paths::readyz,
        paths::version,
        paths::metrics,
        paths::openapi_json,
        paths::docs,
        paths::queue_join,
        paths::queue_status,
        paths::queue_enter,
        paths::queue_leave,
        paths::reservation_create,
        paths::reservation_create_alias,
        paths::reservation_get,
        paths::reservation_cancel,
        paths::reservation_confirm,
        paths::payment_intent_create,
        paths::payment_intent_get,
        paths::admin_events_list,
        paths::admin_event_get,
        paths::admin_event_put,
        paths::admin_event_delete,
    ),
    servers((url = "/", description = "The gateway serving this document (same origin)")),
    modifiers(&SharedAnswers),
    tags(
        (name = "operations", description = "Health, readiness, version, metrics: never rate limited, shed or authenticated."),
        (name = "queue", description = "The per-event virtual waiting room (SPEC §5)."),
        (name = "reservations", description = "Proxied to the reservation API; bearer token required."),
        (name = "payments", description = "Proxied to the payment API; bearer token required."),
        (name = "admin", description = "Operators steer events (SPEC §5a): a bearer token with ADMIN_SCOPE; never rate limited per client or shed."),
    )
)]
pub struct ApiDoc;

/// Adds the bearer security scheme and the answers a whole class of routes shares, following the
/// router's rules (see the module docs). A route's own description of a status wins.
pub struct SharedAnswers;

impl Modify for SharedAnswers {
    fn modify(&self, doc: &mut Document) {
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearerAuth",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .description(Some(
                        "A JWT whose `sub` is the caller, verified against JWT_JWKS_URL \
                         (issuer JWT_ISSUER, audience JWT_AUDIENCE).",
                    ))
                    .build(),
            ),
        );
        for (name, description) in SHARED_HEADERS {
            components
                .headers
                .insert(name.to_owned(), RefOr::T(header_of(description).build()));
        }
        for (path, item) in doc.paths.paths.iter_mut() {
            let ops = [
                &mut item.get,
                &mut item.post,
                &mut item.put,
                &mut item.delete,
                &mut item.patch,
            ];
            for op in ops.into_iter().flatten() {
                add_shared_answers(path, op);
            }
        }
    }
}

/// Response headers described once under `components/headers`.
const SHARED_HEADERS: [(&str, &str); 8] = [
    (
        "X-Request-ID",
        "The client's `X-Request-ID` when it is 1-128 characters of `[A-Za-z0-9._-]`, else a new UUID",
    ),
    ("X-Trace-Id", "The W3C trace id of this request"),
    (
        "RateLimit-Policy",
        "`\"default\";q=<RATE_LIMIT_BURST>;w=<ceil(BURST/RPS)>`",
    ),
    (
        "RateLimit",
        "`\"default\";r=<whole tokens left>;t=<seconds until the bucket is full>`",
    ),
    ("X-RateLimit-Limit", "`RATE_LIMIT_BURST`"),
    ("X-RateLimit-Remaining", "Whole tokens left"),
    ("X-RateLimit-Reset", "Seconds until the bucket is full"),
    (
        "Idempotent-Replayed",
        "`true` when this is the stored answer to an earlier request with the same key",
    ),
];

const RATE_LIMIT_HEADERS: [&str; 5] = [
    "RateLimit-Policy",
    "RateLimit",
    "X-RateLimit-Limit",
    "X-RateLimit-Remaining",
    "X-RateLimit-Reset",
];

fn add_shared_answers(path: &str, op: &mut Operation) {
    let tagged = |name: &str| op.tags.iter().flatten().any(|t| t == name);
    let proxied = tagged("reservations") || tagged("payments");
    let api = path.starts_with("/api/");
    let idempotent = op.parameters.iter().flatten().any(|p| match p {
        RefOr::T(p) => p.name == "Idempotency-Key",
        RefOr::Ref(_) => false,
    });
    let has_body = op.request_body.is_some();
    let answers = &mut op.responses.responses;
    let mut add = |status: &str, response: ResponseBuilder| {
        answers
            .entry(status.to_owned())
            .or_insert_with(|| RefOr::T(response.build()));
    };
    if proxied {
        add(
            "401",
            error_answer(
                "`UNAUTHENTICATED`: token missing, malformed, badly signed, unknown `kid`, \
                 expired, not yet valid, wrong `iss`/`aud` or disallowed `alg`",
            )
            .header(
                "WWW-Authenticate",
                header_of(
                    "`Bearer` when the token is missing, else `Bearer error=\"invalid_token\"`",
                )
                .build(),
            ),
        );
        add(
            "502",
            error_answer(
                "`UPSTREAM_ERROR`: the upstream answered with something that is not HTTP, or \
                 closed the connection without an answer",
            ),
        );
        add(
            "504",
            error_answer("`UPSTREAM_TIMEOUT`: the upstream did not answer within its timeout"),
        );
    }
    if has_body {
        add(
            "413",
            error_answer("`PAYLOAD_TOO_LARGE`: body over `MAX_BODY_SIZE`"),
        );
    }
    if idempotent {
        add(
            "409",
            error_answer(
                "`IDEMPOTENCY_CONFLICT` (same key, different request) or \
                 `IDEMPOTENCY_IN_PROGRESS` (the first one is still running; `Retry-After: 1`)",
            ),
        );
    }
    if api {
        add(
            "429",
            error_answer("`RATE_LIMITED`: the client's bucket is empty").header(
                "Retry-After",
                header_of("Whole seconds (at least 1) until one token is back").build(),
            ),
        );
        add(
            "503",
            error_answer(
                "`OVERLOADED`: too many requests in flight, load shed (`Retry-After: 1`); or \
                 `UPSTREAM_UNAVAILABLE`: the upstream is unreachable or its circuit is open, or \
                 the store is down where the gateway must fail closed (idempotency, waiting \
                 room), or no JWKS is loaded yet",
            ),
        );
        add(
            "500",
            error_answer("`INTERNAL_ERROR`: a bug in the gateway"),
        );
    }
    for (status, answer) in answers.iter_mut() {
        let RefOr::T(answer) = answer else { continue };
        let mut names = vec!["X-Request-ID", "X-Trace-Id"];
        if api {
            names.extend(RATE_LIMIT_HEADERS);
        }
        if idempotent && status.starts_with('2') {
            names.push("Idempotent-Replayed");
        }
        for name in names {
            answer
                .headers
                .entry(name.to_owned())
                .or_insert_with(|| RefOr::Ref(Ref::new(format!("#/components/headers/{name}"))));
        }
    }
}

/// An answer with the gateway's error body.
fn error_answer(description: &str) -> ResponseBuilder {
    ResponseBuilder::new().description(description).content(
        "application/json",
        ContentBuilder::new()
            .schema(Some(Ref::from_schema_name("ErrorBody")))
            .build(),
    )
}

/// A string-valued response header.
fn header_of(description: &str) -> HeaderBuilder {
    HeaderBuilder::new()
        .schema(Some(Object::with_type(Type::String)))
        .description(Some(description))
}

/// The serialized document, built once (compact: it is served on every `GET /openapi.json`).
static DOCUMENT: LazyLock<String> =
    LazyLock::new(|| ApiDoc::openapi().to_json().unwrap_or_default());

/// The document as compact JSON, as `GET /openapi.json` serves it.
pub fn document_json() -> &'static str {
    &DOCUMENT
}

/// The document as pretty JSON (`gateway --print-openapi`).
pub fn document_pretty() -> String {
    ApiDoc::openapi().to_pretty_json().unwrap_or_default()
}

/// `GET /openapi.json`.
pub async fn serve() -> Response {
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        document_json(),
    )
        .into_response()
}

/// Every `(method, path template)` the document describes, for the route-coverage test.
pub fn documented_routes() -> Vec<(Method, String)> {
    let doc = ApiDoc::openapi();
    let mut routes = Vec::new();
    for (path, item) in &doc.paths.paths {
        let ops = [
            (Method::GET, &item.get),
            (Method::POST, &item.post),
            (Method::PUT, &item.put),
            (Method::DELETE, &item.delete),
            (Method::PATCH, &item.patch),
            (Method::HEAD, &item.head),
            (Method::OPTIONS, &item.options),
        ];
        for (method, op) in ops {
            if op.is_some() {
                routes.push((method, path.clone()));
            }
        }
    }
    routes
}

// ---------------------------------------------------------------------------------------------
// Schemas. Doc-only types: the gateway builds these bodies with `serde_json` where it answers
// itself; a test checks the real bodies against these shapes.

/// Every error the gateway itself produces (SPEC §4).
#[derive(ToSchema)]
#[schema(example = json!({"error": {"code": "RATE_LIMITED", "message": "rate limit exceeded", "trace_id": "4bf92f3577b34da6a3ce929d0e0e4736"}}))]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(ToSchema)]
pub struct ErrorDetail {
    pub code: ErrorCode,
    /// Human readable; never contains tokens, keys, bodies or upstream addresses.
    pub message: String,
    /// This request's trace id (also in `X-Trace-Id`): quote it when reporting a problem.
    pub trace_id: String,
}

/// The machine-readable error code (SPEC §4).
#[derive(ToSchema)]
#[schema(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ErrorCode {
    BadRequest,
    Unauthenticated,
    Forbidden,
    NotFound,
    MethodNotAllowed,
    IdempotencyConflict,
    IdempotencyInProgress,
    PayloadTooLarge,
    IdempotencyRequired,
    RateLimited,
    InternalError,
    UpstreamError,
    UpstreamUnavailable,
    Overloaded,
    UpstreamTimeout,
    RequestTimeout,
    UriTooLong,
    HeadersTooLarge,
    EventNotFound,
    EventClosed,
}

/// An error answered by an upstream, passed through as it is (e.g. `INVENTORY_CONFLICT`).
#[derive(ToSchema)]
#[schema(example = json!({"error": {"code": "INVENTORY_CONFLICT", "message": "no seats left for this event"}}))]
pub struct UpstreamErrorBody {
    pub error: UpstreamErrorDetail,
}

#[derive(ToSchema)]
pub struct UpstreamErrorDetail {
    pub code: String,
    pub message: String,
}

#[derive(ToSchema)]
pub struct Health {
    #[schema(example = "ok")]
    pub status: String,
}

/// `/readyz`: 200 `{"status":"ready","store":…}` or 503 `{"status":"not_ready","reason":…}`.
#[derive(ToSchema)]
pub struct Readiness {
    /// `ready` or `not_ready`.
    #[schema(example = "ready")]
    pub status: String,
    /// Which store answered: `memory` or `redis` (when ready).
    #[schema(example = "redis")]
    pub store: Option<String>,
    /// Why not ready: `shutting down`, `store unavailable`, `store did not answer`, `JWKS not loaded`.
    #[schema(example = "store unavailable")]
    pub reason: Option<String>,
}

#[derive(ToSchema)]
pub struct Version {
    #[schema(example = "gateway-api")]
    pub service: String,
    #[schema(example = "0.1.0")]
    pub version: String,
    /// The full sha of the commit the binary was built from.
    #[schema(example = "a779fcf1b2c3d4e5f60718293a4b5c6d7e8f9012")]
    pub git_sha: String,
    /// The binary was built from a tree with uncommitted changes.
    pub git_dirty: bool,
    #[schema(example = "2026-11-28T18:00:00Z", format = DateTime)]
    pub build_time: String,
}

/// `Idempotency-Key` on writes (SPEC §6).
#[derive(IntoParams)]
#[into_params(parameter_in = Header)]
pub struct IdempotencyKeyHeader {
    /// A UUID, bare or as a quoted structured-field string (`"…"`). Missing: 400
    /// `IDEMPOTENCY_REQUIRED`; not a UUID: 400 `BAD_REQUEST`. A completed request repeated with
    /// the same key is answered from the record with `Idempotent-Replayed: true`.
    #[param(rename = "Idempotency-Key", format = "uuid")]
    pub idempotency_key: String,
}

/// The waiting-room admission for reservation create (SPEC §5).
#[derive(IntoParams)]
#[into_params(parameter_in = Header)]
pub struct ReservationTokenHeader {
    /// Alternative to the body's `reservation_token` when `QUEUE_REQUIRE_ADMISSION=true`.
    #[param(rename = "X-Reservation-Token")]
    pub reservation_token: Option<String>,
}

/// `{id}`: `[A-Za-z0-9_-]{1,128}`, else 400 before any upstream is touched (SPEC §2).
#[derive(IntoParams)]
#[into_params(parameter_in = Path)]
pub struct IdPath {
    #[param(pattern = "^[A-Za-z0-9_-]{1,128}$", example = "res_5f1c0d2a")]
    pub id: String,
}

/// The waiting token as a query parameter.
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
pub struct WaitingTokenQuery {
    /// The `waiting_token` from join.
    pub token: String,
}

#[derive(ToSchema)]
pub struct QueueJoinRequest {
    #[schema(pattern = "^[A-Za-z0-9_-]{1,128}$", example = "concert-2026")]
    pub event_id: String,
    /// Used only without a valid bearer token; a verified `sub` is a different namespace.
    pub user_id: Option<String>,
}

#[derive(ToSchema)]
pub struct QueueJoined {
    pub waiting_token: String,
    pub event_id: String,
    /// 1-based position at the moment of joining (0 for a returning user who is ready;
    /// `null` in the prequeue, whose order is drawn at the opening).
    #[schema(required = true)]
    pub position_hint: Option<u64>,
    /// `waiting`, `prequeue` (before `opens_at`), or for a returning user `ready` / `admitted`.
    #[schema(example = "waiting")]
    pub status: String,
}

#[derive(ToSchema)]
#[schema(rename_all = "lowercase")]
pub enum QueueState {
    Prequeue,
    Waiting,
    Ready,
    Admitted,
    Expired,
}

#[derive(ToSchema)]
pub struct QueueStatus {
    pub status: QueueState,
    /// `null` when the token names no event this gateway knows (an unknown or long-gone token).
    #[schema(required = true)]
    pub event_id: Option<String>,
    /// People ahead + 1 among those still waiting; 0 once ready or admitted; `null` in the
    /// prequeue.
    #[schema(required = true)]
    pub position: Option<u64>,
    /// `ceil(people ahead / admission rate)` (the configured rate until 10 people were
    /// admitted, then the rate measured over the last 60 s); seconds until the opening in the
    /// prequeue; 0 once ready; `null` while the event is paused.
    #[schema(required = true)]
    pub eta_sec: Option<u64>,
    /// When to poll next (1-30 s, always well inside the heartbeat TTL); `null` once expired.
    #[schema(required = true)]
    pub poll_after_sec: Option<u64>,
    /// `admitted` only: the reservation token's remaining life.
    pub reservation_token_ttl_sec: Option<u64>,
}

/// An event's definition (SPEC §5a).
#[derive(ToSchema)]
pub struct EventDefinitionBody {
    #[schema(pattern = "^[A-Za-z0-9_-]{1,128}$", example = "concert-2026")]
    pub event_id: String,
    /// People admitted per second (before the adaptive factor).
    #[schema(example = 100.0)]
    pub admission_rps: f64,
    /// At most this many people `ready` or `admitted` at once; `null` = no cap.
    #[schema(required = true, minimum = 1)]
    pub max_active: Option<u64>,
    /// Before this instant joins go to the prequeue; `null` = open since defined.
    #[schema(required = true, format = DateTime)]
    pub opens_at: Option<String>,
    pub state: EventStateBody,
    pub adaptive: bool,
}

#[derive(ToSchema)]
#[schema(rename_all = "lowercase")]
pub enum EventStateBody {
    Open,
    Paused,
    Closed,
}

/// A `PUT` body: any of the fields; those not sent keep their value.
#[derive(ToSchema)]
pub struct EventPutRequest {
    #[schema(exclusive_minimum = 0.0)]
    pub admission_rps: Option<f64>,
    #[schema(minimum = 1)]
    pub max_active: Option<u64>,
    #[schema(format = DateTime)]
    pub opens_at: Option<String>,
    pub state: Option<EventStateBody>,
    pub adaptive: Option<bool>,
}

/// A definition with its live figures.
#[derive(ToSchema)]
pub struct EventWithFigures {
    #[schema(inline)]
    pub definition: EventDefinitionBody,
    pub waiting: u64,
    pub prequeue: u64,
    /// `ready` + `admitted` now.
    pub active: u64,
    pub admitted_total: u64,
    /// People per second over the last 60 s.
    pub admission_rate_measured: f64,
    /// The adaptive factor (1 when not adaptive).
    pub admission_factor: f64,
}

#[derive(ToSchema)]
pub struct EventList {
    pub events: Vec<EventWithFigures>,
}

#[derive(ToSchema)]
pub struct EventDeleted {
    pub event_id: String,
    #[schema(example = "deleted")]
    pub status: String,
}

/// `{event_id}`: `[A-Za-z0-9_-]{1,128}`.
#[derive(IntoParams)]
#[into_params(parameter_in = Path)]
pub struct EventIdPath {
    #[param(pattern = "^[A-Za-z0-9_-]{1,128}$", example = "concert-2026")]
    pub event_id: String,
}

#[derive(ToSchema)]
pub struct QueueEnterRequest {
    pub waiting_token: String,
}

#[derive(ToSchema)]
pub struct QueueAdmission {
    #[schema(example = "granted")]
    pub admission: String,
    /// Bound to the event and the user; send it with the reservation create.
    pub reservation_token: String,
    /// `QUEUE_RESERVATION_TOKEN_TTL_SECONDS`.
    #[schema(example = 30)]
    pub ttl_sec: u64,
}

#[derive(ToSchema)]
pub struct QueueLeft {
    #[schema(example = "left")]
    pub status: String,
}

/// Passed through to the reservation API unparsed; the gateway reads `event_id` and
/// `reservation_token` only when waiting-room admission is required.
#[derive(ToSchema)]
pub struct ReservationCreateRequest {
    #[schema(pattern = "^[A-Za-z0-9_-]{1,128}$", example = "concert-2026")]
    pub event_id: String,
    #[schema(example = 2)]
    pub seats: Option<u32>,
    /// From `POST /api/v1/queue/enter`, when `QUEUE_REQUIRE_ADMISSION=true` (or the
    /// `X-Reservation-Token` header).
    pub reservation_token: Option<String>,
}

#[derive(ToSchema)]
#[schema(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ReservationState {
    Held,
    Confirmed,
    Cancelled,
}

/// As the reservation API answers (shape of the bundled mock).
#[derive(ToSchema)]
pub struct Reservation {
    #[schema(example = "res_5f1c0d2a")]
    pub reservation_id: String,
    pub event_id: String,
    pub seats: u32,
    pub status: ReservationState,
    #[schema(format = DateTime)]
    pub hold_expires_at: String,
}

/// Passed through to the payment API unparsed.
#[derive(ToSchema)]
pub struct PaymentIntentRequest {
    pub reservation_id: String,
    /// Minor units.
    #[schema(example = 4200)]
    pub amount: u64,
    #[schema(example = "EUR")]
    pub currency: Option<String>,
}

/// As the payment API answers (shape of the bundled mock).
#[derive(ToSchema)]
pub struct PaymentIntent {
    #[schema(example = "pi_8e2a9b")]
    pub payment_intent_id: String,
    #[schema(example = "PENDING")]
    pub status: String,
    pub reservation_id: Option<String>,
    pub amount: Option<u64>,
    pub currency: String,
}

// ---------------------------------------------------------------------------------------------
// Routes: one doc-only function per (method, path), in SPEC §2 order. Only what is particular to
// the route is written here; `SharedAnswers` adds what its class shares.
pub mod paths {
    use super::*;

    /// Liveness
    ///
    /// 200 while the process serves.
    #[utoipa::path(get, path = "/healthz", tag = "operations",
        responses((status = 200, description = "Alive", body = Health)))]
    pub fn healthz() {}

    /// Readiness
    ///
    /// 200 when the store answers and (when verifying tokens) a JWKS is loaded; 503 otherwise and
    /// from the moment shutdown begins.
    #[utoipa::path(get, path = "/readyz", tag = "operations",
        responses(
            (status = 200, description = "Ready to serve", body = Readiness),
            (status = 503, description = "Not ready; `reason` says why", body = Readiness),
        ))]
    pub fn readyz() {}

    /// Build information
    #[utoipa::path(get, path = "/version", tag = "operations",
        responses((status = 200, description = "Service, version, git sha, build time", body = Version)))]
    pub fn version() {}

    /// Prometheus metrics
    #[utoipa::path(get, path = "/metrics", tag = "operations",
        responses((status = 200, description = "Prometheus text exposition format 0.0.4",
            body = String, content_type = "text/plain; version=0.0.4; charset=utf-8")))]
    pub fn metrics() {}

    /// This document
    #[utoipa::path(get, path = "/openapi.json", tag = "operations",
        responses((status = 200, description = "The OpenAPI 3.1 document of every public route",
            body = Object, content_type = "application/json")))]
    pub fn openapi_json() {}

    /// This document as a page (Swagger UI)
    ///
    /// Served from assets compiled into the gateway: works offline, loads nothing from elsewhere.
    /// `/docs` redirects here.
    #[utoipa::path(get, path = "/docs/", tag = "operations",
        responses((status = 200, description = "Swagger UI over /openapi.json",
            body = String, content_type = "text/html")))]
    pub fn docs() {}

    /// Join an event's waiting room
    ///
    /// The user is the bearer token's `sub` when a valid token is sent, else `user_id` from the
    /// body, else a fresh anonymous identity. Joining again returns the same token and place.
    #[utoipa::path(post, path = "/api/v1/queue/join", tag = "queue",
        request_body = QueueJoinRequest,
        responses(
            (status = 202, description = "In the queue (or the prequeue, before the event's `opens_at`)", body = QueueJoined),
            (status = 400, description = "`BAD_REQUEST`: malformed JSON or a bad `event_id`", body = ErrorBody),
            (status = 404, description = "`EVENT_NOT_FOUND`: `QUEUE_EVENTS_OPEN=false` and no operator defined the event", body = ErrorBody),
            (status = 410, description = "`EVENT_CLOSED`: the event is closed", body = ErrorBody),
        ),
        security((), ("bearerAuth" = [])))]
    pub fn queue_join() {}

    /// Poll a place in the queue (the heartbeat)
    ///
    /// A token not polled (or entered) for `QUEUE_HEARTBEAT_TTL_SECONDS` expires. Unknown or
    /// tampered tokens are `expired`, as is every token of a closed or deleted event. Not counted
    /// in the per-client bucket: limited per waiting token (5 at once, 2 per second; 429 with
    /// `Retry-After` beyond).
    #[utoipa::path(get, path = "/api/v1/queue/status", tag = "queue",
        params(WaitingTokenQuery),
        responses(
            (status = 200, description = "Where the caller stands", body = QueueStatus),
            (status = 400, description = "`BAD_REQUEST`: malformed token (wrong length or alphabet)", body = ErrorBody),
        ))]
    pub fn queue_status() {}

    /// Trade a ready waiting token for a reservation token
    #[utoipa::path(post, path = "/api/v1/queue/enter", tag = "queue",
        request_body = QueueEnterRequest,
        params(IdempotencyKeyHeader),
        responses(
            (status = 200, description = "Admitted", body = QueueAdmission),
            (status = 400, description = "`BAD_REQUEST`: malformed JSON or token", body = ErrorBody),
            (status = 403, description = "`FORBIDDEN`: still waiting, or the token expired / is unknown (the message says which)", body = ErrorBody),
        ),
        security((), ("bearerAuth" = [])))]
    pub fn queue_enter() {}

    /// Leave the queue; the place is freed at once (an entered session ends)
    ///
    /// Not counted in the per-client bucket: limited per waiting token (5 at once, 2 per
    /// second; 429 beyond).
    #[utoipa::path(delete, path = "/api/v1/queue/leave", tag = "queue",
        params(WaitingTokenQuery),
        responses(
            (status = 200, description = "Left", body = QueueLeft),
            (status = 400, description = "`BAD_REQUEST`: malformed token", body = ErrorBody),
        ))]
    pub fn queue_leave() {}

    /// List the defined events with their live figures
    #[utoipa::path(get, path = "/admin/v1/events", tag = "admin",
        responses(
            (status = 200, description = "Every defined event", body = EventList),
            (status = 401, description = "`UNAUTHENTICATED`: no valid bearer token", body = ErrorBody),
            (status = 403, description = "`FORBIDDEN`: the token lacks `ADMIN_SCOPE` in `scope`/`scp`", body = ErrorBody),
            (status = 503, description = "`UPSTREAM_UNAVAILABLE`: the store is down", body = ErrorBody),
        ),
        security(("bearerAuth" = [])))]
    pub fn admin_events_list() {}

    /// One event's definition and live figures
    #[utoipa::path(get, path = "/admin/v1/events/{event_id}", tag = "admin",
        params(EventIdPath),
        responses(
            (status = 200, description = "The event", body = EventWithFigures),
            (status = 400, description = "`BAD_REQUEST`: bad `event_id`", body = ErrorBody),
            (status = 401, description = "`UNAUTHENTICATED`: no valid bearer token", body = ErrorBody),
            (status = 403, description = "`FORBIDDEN`: the token lacks `ADMIN_SCOPE`", body = ErrorBody),
            (status = 404, description = "`EVENT_NOT_FOUND`: nobody defined this event", body = ErrorBody),
            (status = 503, description = "`UPSTREAM_UNAVAILABLE`: the store is down", body = ErrorBody),
        ),
        security(("bearerAuth" = [])))]
    pub fn admin_event_get() {}

    /// Create an event or change the fields sent
    ///
    /// Every replica follows within 1 s. `closed` ends every token of the event at once.
    #[utoipa::path(put, path = "/admin/v1/events/{event_id}", tag = "admin",
        params(EventIdPath),
        request_body = EventPutRequest,
        responses(
            (status = 200, description = "The whole definition", body = EventDefinitionBody),
            (status = 400, description = "`BAD_REQUEST`: a bad value (the message names the field)", body = ErrorBody),
            (status = 401, description = "`UNAUTHENTICATED`: no valid bearer token", body = ErrorBody),
            (status = 403, description = "`FORBIDDEN`: the token lacks `ADMIN_SCOPE`", body = ErrorBody),
            (status = 503, description = "`UPSTREAM_UNAVAILABLE`: the store is down", body = ErrorBody),
        ),
        security(("bearerAuth" = [])))]
    pub fn admin_event_put() {}

    /// Delete an event and everything of it
    ///
    /// Its waiting tokens become `expired` and its reservation tokens invalid at once.
    #[utoipa::path(delete, path = "/admin/v1/events/{event_id}", tag = "admin",
        params(EventIdPath),
        responses(
            (status = 200, description = "Deleted", body = EventDeleted),
            (status = 400, description = "`BAD_REQUEST`: bad `event_id`", body = ErrorBody),
            (status = 401, description = "`UNAUTHENTICATED`: no valid bearer token", body = ErrorBody),
            (status = 403, description = "`FORBIDDEN`: the token lacks `ADMIN_SCOPE`", body = ErrorBody),
            (status = 404, description = "`EVENT_NOT_FOUND`: nobody defined this event", body = ErrorBody),
            (status = 503, description = "`UPSTREAM_UNAVAILABLE`: the store is down", body = ErrorBody),
        ),
        security(("bearerAuth" = [])))]
    pub fn admin_event_delete() {}

    /// Create a reservation
    ///
    /// Forwarded to the reservation API's `POST /v1/reservations`. With
    /// `QUEUE_REQUIRE_ADMISSION=true` a reservation token for the body's `event_id` and the
    /// caller is required (body `reservation_token` or header `X-Reservation-Token`).
    #[utoipa::path(post, path = "/api/v1/reservations/create", tag = "reservations",
        request_body = ReservationCreateRequest,
        params(IdempotencyKeyHeader, ReservationTokenHeader),
        responses(
            (status = 201, description = "Created (the upstream's answer)", body = Reservation),
            (status = 400, description = "`BAD_REQUEST` (bad `event_id`, bad key) or `IDEMPOTENCY_REQUIRED`; or the upstream's validation error", body = ErrorBody),
            (status = 403, description = "`FORBIDDEN`: waiting-room admission missing or not granted", body = ErrorBody),
            (status = 409, description = "`IDEMPOTENCY_CONFLICT` / `IDEMPOTENCY_IN_PROGRESS`, or the upstream's `INVENTORY_CONFLICT`", body = UpstreamErrorBody),
        ),
        security(("bearerAuth" = [])))]
    pub fn reservation_create() {}

    /// Create a reservation (alias of `POST /api/v1/reservations/create`)
    #[utoipa::path(post, path = "/api/v1/reservations", tag = "reservations",
        request_body = ReservationCreateRequest,
        params(IdempotencyKeyHeader, ReservationTokenHeader),
        responses(
            (status = 201, description = "Created (the upstream's answer)", body = Reservation),
            (status = 400, description = "`BAD_REQUEST` (bad `event_id`, bad key) or `IDEMPOTENCY_REQUIRED`; or the upstream's validation error", body = ErrorBody),
            (status = 403, description = "`FORBIDDEN`: waiting-room admission missing or not granted", body = ErrorBody),
            (status = 409, description = "`IDEMPOTENCY_CONFLICT` / `IDEMPOTENCY_IN_PROGRESS`, or the upstream's `INVENTORY_CONFLICT`", body = UpstreamErrorBody),
        ),
        security(("bearerAuth" = [])))]
    pub fn reservation_create_alias() {}

    /// Get a reservation
    #[utoipa::path(get, path = "/api/v1/reservations/{id}", tag = "reservations",
        params(IdPath),
        responses(
            (status = 200, description = "The reservation (the upstream's answer)", body = Reservation),
            (status = 400, description = "`BAD_REQUEST`: bad id", body = ErrorBody),
            (status = 404, description = "The upstream's `RESERVATION_NOT_FOUND`", body = UpstreamErrorBody),
        ),
        security(("bearerAuth" = [])))]
    pub fn reservation_get() {}

    /// Cancel a reservation
    #[utoipa::path(post, path = "/api/v1/reservations/{id}/cancel", tag = "reservations",
        params(IdPath, IdempotencyKeyHeader),
        responses(
            (status = 200, description = "Cancelled (the upstream's answer)", body = Reservation),
            (status = 400, description = "`BAD_REQUEST` (bad id, bad key) or `IDEMPOTENCY_REQUIRED`", body = ErrorBody),
            (status = 404, description = "The upstream's `RESERVATION_NOT_FOUND`", body = UpstreamErrorBody),
            (status = 409, description = "`IDEMPOTENCY_CONFLICT` / `IDEMPOTENCY_IN_PROGRESS`, or the upstream's `INVALID_STATE`", body = UpstreamErrorBody),
        ),
        security(("bearerAuth" = [])))]
    pub fn reservation_cancel() {}

    /// Confirm a reservation
    #[utoipa::path(post, path = "/api/v1/reservations/{id}/confirm", tag = "reservations",
        params(IdPath, IdempotencyKeyHeader),
        responses(
            (status = 200, description = "Confirmed (the upstream's answer)", body = Reservation),
            (status = 400, description = "`BAD_REQUEST` (bad id, bad key) or `IDEMPOTENCY_REQUIRED`", body = ErrorBody),
            (status = 404, description = "The upstream's `RESERVATION_NOT_FOUND`", body = UpstreamErrorBody),
            (status = 409, description = "`IDEMPOTENCY_CONFLICT` / `IDEMPOTENCY_IN_PROGRESS`, or the upstream's `INVALID_STATE`", body = UpstreamErrorBody),
        ),
        security(("bearerAuth" = [])))]
    pub fn reservation_confirm() {}

    /// Create a payment intent
    ///
    /// Forwarded to the payment API's `POST /v1/sim/intent`.
    #[utoipa::path(post, path = "/api/v1/payment/intent", tag = "payments",
        request_body = PaymentIntentRequest,
        params(IdempotencyKeyHeader),
        responses(
            (status = 200, description = "The intent (the upstream's answer)", body = PaymentIntent),
            (status = 400, description = "`BAD_REQUEST` (bad key) or `IDEMPOTENCY_REQUIRED`; or the upstream's validation error", body = ErrorBody),
            (status = 409, description = "`IDEMPOTENCY_CONFLICT` / `IDEMPOTENCY_IN_PROGRESS`", body = ErrorBody),
        ),
        security(("bearerAuth" = [])))]
    pub fn payment_intent_create() {}

    /// Get a payment intent
    #[utoipa::path(get, path = "/api/v1/payment/intent/{id}", tag = "payments",
        params(IdPath),
        responses(
            (status = 200, description = "The intent (the upstream's answer)", body = PaymentIntent),
            (status = 400, description = "`BAD_REQUEST`: bad id", body = ErrorBody),
            (status = 404, description = "The upstream's `PAYMENT_INTENT_NOT_FOUND`", body = UpstreamErrorBody),
        ),
        security(("bearerAuth" = [])))]
    pub fn payment_intent_get() {}
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::error::{ApiError, AuthFailure};
    use serde_json::Value;

    fn document() -> Value {
        serde_json::from_str(document_json()).unwrap()
    }

    /// One of each `ApiError`. The match is exhaustive on purpose: a new variant stops this test
    /// from compiling until it is listed here, and so checked against the documented codes.
    fn every_api_error() -> Vec<ApiError> {
        let all = vec![
            ApiError::BadRequest("x"),
            ApiError::Unauthenticated(AuthFailure::Missing),
            ApiError::Forbidden("x"),
            ApiError::NotFound,
            ApiError::MethodNotAllowed,
            ApiError::IdempotencyConflict,
            ApiError::IdempotencyInProgress,
            ApiError::PayloadTooLarge,
            ApiError::IdempotencyRequired,
            ApiError::RateLimited {
                retry_after: std::time::Duration::from_secs(1),
            },
            ApiError::Internal,
            ApiError::BadGateway,
            ApiError::UpstreamUnavailable("x"),
            ApiError::Overloaded,
            ApiError::UpstreamTimeout,
            ApiError::RequestTimeout,
            ApiError::UriTooLong,
            ApiError::HeadersTooLarge,
            ApiError::InvalidInput("x: missing field".to_owned()),
            ApiError::EventNotFound("x"),
            ApiError::EventClosed,
        ];
        for e in &all {
            match e {
                ApiError::BadRequest(_)
                | ApiError::Unauthenticated(_)
                | ApiError::Forbidden(_)
                | ApiError::NotFound
                | ApiError::MethodNotAllowed
                | ApiError::IdempotencyConflict
                | ApiError::IdempotencyInProgress
                | ApiError::PayloadTooLarge
                | ApiError::IdempotencyRequired
                | ApiError::RateLimited { .. }
                | ApiError::Internal
                | ApiError::BadGateway
                | ApiError::UpstreamUnavailable(_)
                | ApiError::Overloaded
                | ApiError::UpstreamTimeout
                | ApiError::RequestTimeout
                | ApiError::UriTooLong
                | ApiError::HeadersTooLarge
                | ApiError::InvalidInput(_)
                | ApiError::EventNotFound(_)
                | ApiError::EventClosed => {}
            }
        }
        all
    }

    #[test]
    fn every_gateway_error_code_is_documented_and_nothing_more() {
        let doc = document();
        let documented: Vec<&str> = doc["components"]["schemas"]["ErrorCode"]["enum"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect();
        let mut codes: Vec<&str> = every_api_error().iter().map(ApiError::code).collect();
        codes.sort_unstable();
        codes.dedup();
        let mut sorted = documented.clone();
        sorted.sort_unstable();
        assert_eq!(codes, sorted);
    }

    #[tokio::test]
    async fn the_real_error_body_has_the_documented_shape() {
        let doc = document();
        let schemas = &doc["components"]["schemas"];
        for e in every_api_error() {
            let res = axum::response::IntoResponse::into_response(e);
            let bytes = axum::body::to_bytes(res.into_body(), 4096).await.unwrap();
            let body: Value = serde_json::from_slice(&bytes).unwrap();
            let keys = |v: &Value| {
                let mut k: Vec<String> = v.as_object().unwrap().keys().cloned().collect();
                k.sort();
                k
            };
            let required = |name: &str| {
                let mut k: Vec<String> = schemas[name]["required"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|v| v.as_str().unwrap().to_owned())
                    .collect();
                k.sort();
                k
            };
            assert_eq!(keys(&body), required("ErrorBody"));
            assert_eq!(keys(&body["error"]), required("ErrorDetail"));
        }
    }

    #[test]
    fn the_document_is_openapi_3_1_with_shared_answers() {
        let doc = document();
        assert_eq!(doc["openapi"], "3.1.0");
        let paths = doc["paths"].as_object().unwrap();
        for (path, item) in paths {
            for (method, op) in item.as_object().unwrap() {
                let responses = op["responses"].as_object().unwrap();
                let has = |s: &str| responses.contains_key(s);
                if path.starts_with("/api/") {
                    assert!(has("429") && has("503"), "{method} {path}");
                } else {
                    assert!(!has("429"), "{method} {path} is never rate limited");
                }
                let protected = op["security"]
                    .as_array()
                    .is_some_and(|s| s.iter().all(|r| r.get("bearerAuth").is_some()));
                assert_eq!(has("401"), protected, "{method} {path}");
            }
        }
        assert_eq!(documented_routes().len(), 21);
    }
}
