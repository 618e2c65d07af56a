//! Routes: one doc-only function per (method, path), in SPEC §2 order. Only what is particular
//! to the route is written here; `shared` adds what its class shares.
use super::schemas::*;

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
