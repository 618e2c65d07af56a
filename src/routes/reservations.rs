//! Reservation routes (SPEC §2) → the reservation API. The bodies are the upstream's, passed
//! through (their schemas are in `openapi::schemas`).
use axum::extract::{Request, State};
use axum::response::Response;
use http::Method;

use std::time::Instant;

use super::input::ValidId;
use super::{SharedState, forward, forward_with_body, queue};
use crate::body::read_body;
use crate::error::ApiError;
use crate::openapi::schemas::{
    ErrorBody, IdPath, IdempotencyKeyHeader, Reservation, ReservationCreateRequest,
    ReservationTokenHeader, UpstreamErrorBody,
};
use crate::state::AppState;

/// Create a reservation
///
/// Forwarded to the reservation API's `POST /v1/reservations`. With
/// `QUEUE_REQUIRE_ADMISSION=true` a reservation token for the body's `event_id` and the
/// caller is required (body `reservation_token` or header `X-Reservation-Token`).
#[utoipa::path(post, path = "/api/v1/reservations/create", tag = "reservations",
    operation_id = "reservation_create",
    request_body = ReservationCreateRequest,
    params(IdempotencyKeyHeader, ReservationTokenHeader),
    responses(
        (status = 201, description = "Created (the upstream's answer)", body = Reservation),
        (status = 400, description = "`BAD_REQUEST` (bad `event_id`, bad key) or `IDEMPOTENCY_REQUIRED`; or the upstream's validation error", body = ErrorBody),
        (status = 403, description = "`FORBIDDEN`: waiting-room admission missing or not granted", body = ErrorBody),
        (status = 409, description = "`IDEMPOTENCY_CONFLICT` / `IDEMPOTENCY_IN_PROGRESS`, or the upstream's `INVENTORY_CONFLICT`", body = UpstreamErrorBody),
    ),
    security(("bearerAuth" = [])))]
pub async fn create(State(state): State<SharedState>, req: Request) -> Result<Response, ApiError> {
    // With admission required, the caller's reservation token (SPEC §5) is claimed first and
    // spent only if the upstream creates the reservation.
    let started = Instant::now();
    if !state.config.queue.require_admission {
        let res = forward(
            &state,
            &state.reservation,
            Method::POST,
            "/v1/reservations",
            req,
        )
        .await;
        return observed(&state, started, res);
    }
    let (parts, body) = req.into_parts();
    let body = read_body(body, state.config.max_body_size).await?;
    let claim = queue::admission::claim_admission(&state, &parts, &body).await?;
    let res = forward_with_body(
        &state.reservation,
        Method::POST,
        "/v1/reservations",
        &parts,
        body,
    )
    .await;
    let created = matches!(&res, Ok(r) if r.status().is_success());
    claim.settle(&state, created).await;
    observed(&state, started, res)
}

/// Create a reservation (alias of `POST /api/v1/reservations/create`)
#[utoipa::path(post, path = "/api/v1/reservations", tag = "reservations",
    operation_id = "reservation_create_alias",
    request_body = ReservationCreateRequest,
    params(IdempotencyKeyHeader, ReservationTokenHeader),
    responses(
        (status = 201, description = "Created (the upstream's answer)", body = Reservation),
        (status = 400, description = "`BAD_REQUEST` (bad `event_id`, bad key) or `IDEMPOTENCY_REQUIRED`; or the upstream's validation error", body = ErrorBody),
        (status = 403, description = "`FORBIDDEN`: waiting-room admission missing or not granted", body = ErrorBody),
        (status = 409, description = "`IDEMPOTENCY_CONFLICT` / `IDEMPOTENCY_IN_PROGRESS`, or the upstream's `INVENTORY_CONFLICT`", body = UpstreamErrorBody),
    ),
    security(("bearerAuth" = [])))]
pub async fn create_alias(state: State<SharedState>, req: Request) -> Result<Response, ApiError> {
    create(state, req).await
}

/// Counts a reservation call for adaptive admission (SPEC §5a): 5xx answers and the gateway's
/// own upstream failures (timeout, unreachable, circuit open) are failures.
fn observed(
    state: &AppState,
    started: Instant,
    res: Result<Response, ApiError>,
) -> Result<Response, ApiError> {
    let failed = match &res {
        Ok(r) => r.status().is_server_error(),
        Err(e) => e.status().is_server_error(),
    };
    state.reservation_health.record(started.elapsed(), failed);
    res
}

/// Get a reservation
#[utoipa::path(get, path = "/api/v1/reservations/{id}", tag = "reservations",
    operation_id = "reservation_get",
    params(IdPath),
    responses(
        (status = 200, description = "The reservation (the upstream's answer)", body = Reservation),
        (status = 400, description = "`BAD_REQUEST`: bad id", body = ErrorBody),
        (status = 404, description = "The upstream's `RESERVATION_NOT_FOUND`", body = UpstreamErrorBody),
    ),
    security(("bearerAuth" = [])))]
pub async fn get(
    State(state): State<SharedState>,
    ValidId(id): ValidId,
    req: Request,
) -> Result<Response, ApiError> {
    let path = format!("/v1/reservations/{id}");
    let started = Instant::now();
    let res = forward(&state, &state.reservation, Method::GET, &path, req).await;
    observed(&state, started, res)
}

/// Cancel a reservation
#[utoipa::path(post, path = "/api/v1/reservations/{id}/cancel", tag = "reservations",
    operation_id = "reservation_cancel",
    params(IdPath, IdempotencyKeyHeader),
    responses(
        (status = 200, description = "Cancelled (the upstream's answer)", body = Reservation),
        (status = 400, description = "`BAD_REQUEST` (bad id, bad key) or `IDEMPOTENCY_REQUIRED`", body = ErrorBody),
        (status = 404, description = "The upstream's `RESERVATION_NOT_FOUND`", body = UpstreamErrorBody),
        (status = 409, description = "`IDEMPOTENCY_CONFLICT` / `IDEMPOTENCY_IN_PROGRESS`, or the upstream's `INVALID_STATE`", body = UpstreamErrorBody),
    ),
    security(("bearerAuth" = [])))]
pub async fn cancel(
    State(state): State<SharedState>,
    ValidId(id): ValidId,
    req: Request,
) -> Result<Response, ApiError> {
    let path = format!("/v1/reservations/{id}/cancel");
    let started = Instant::now();
    let res = forward(&state, &state.reservation, Method::POST, &path, req).await;
    observed(&state, started, res)
}

/// Confirm a reservation
#[utoipa::path(post, path = "/api/v1/reservations/{id}/confirm", tag = "reservations",
    operation_id = "reservation_confirm",
    params(IdPath, IdempotencyKeyHeader),
    responses(
        (status = 200, description = "Confirmed (the upstream's answer)", body = Reservation),
        (status = 400, description = "`BAD_REQUEST` (bad id, bad key) or `IDEMPOTENCY_REQUIRED`", body = ErrorBody),
        (status = 404, description = "The upstream's `RESERVATION_NOT_FOUND`", body = UpstreamErrorBody),
        (status = 409, description = "`IDEMPOTENCY_CONFLICT` / `IDEMPOTENCY_IN_PROGRESS`, or the upstream's `INVALID_STATE`", body = UpstreamErrorBody),
    ),
    security(("bearerAuth" = [])))]
pub async fn confirm(
    State(state): State<SharedState>,
    ValidId(id): ValidId,
    req: Request,
) -> Result<Response, ApiError> {
    let path = format!("/v1/reservations/{id}/confirm");
    let started = Instant::now();
    let res = forward(&state, &state.reservation, Method::POST, &path, req).await;
    observed(&state, started, res)
}
