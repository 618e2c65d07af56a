//! The document's shared and doc-only schemas: the gateway's error body as the document shows it
//! (`error::ApiError` writes it; a test checks the two agree), the upstreams' bodies (passed
//! through unparsed, SPEC §2: these describe what the bundled mock upstreams answer; the real APIs
//! own their contracts), and the headers and path parameters several routes take. The bodies the
//! gateway writes itself are typed next to their handlers (`routes/*.rs`).
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

#[derive(IntoParams)]
#[into_params(parameter_in = Path)]
pub struct EventIdPath {
    #[param(pattern = "^[A-Za-z0-9_-]{1,128}$", example = "concert-2026")]
    pub event_id: String,
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
