//! Reservation routes (SPEC §2) → the reservation API.
use axum::extract::{Request, State};
use axum::response::Response;
use http::Method;

use std::time::Instant;

use super::input::ValidId;
use super::{SharedState, forward, forward_with_body, queue};
use crate::body::read_body;
use crate::error::ApiError;
use crate::state::AppState;

/// `POST /api/v1/reservations/create` and its alias `POST /api/v1/reservations`. With
/// `QUEUE_REQUIRE_ADMISSION=true` it first claims the caller's reservation token (SPEC §5), spent
/// only if the upstream creates the reservation.
pub async fn create(State(state): State<SharedState>, req: Request) -> Result<Response, ApiError> {
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
    let claim = queue::claim_admission(&state, &parts, &body).await?;
    let res = forward_with_body(
        &state,
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
