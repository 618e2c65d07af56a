//! The document's schemas. Doc-only types: the gateway builds these bodies with `serde_json`
//! where it answers itself; a test checks the real bodies against these shapes.
use utoipa::{IntoParams, ToSchema};

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
