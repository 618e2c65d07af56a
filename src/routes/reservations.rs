//! Reservation routes (SPEC §2) → the reservation API.
use axum::extract::{Path, Request, State};
use axum::response::Response;
use http::Method;

use super::{SharedState, proxy, proxy_parts, queue, valid_id};
use crate::body::read_body;
use crate::error::ApiError;

/// `POST /api/v1/reservations/create` and its alias `POST /api/v1/reservations`. With
/// `QUEUE_REQUIRE_ADMISSION=true` it first claims the caller's reservation token (SPEC §5), spent
/// only if the upstream creates the reservation.
pub async fn create(State(state): State<SharedState>, req: Request) -> Result<Response, ApiError> {
    if !state.config.queue.require_admission {
        return proxy(
            &state,
            &state.reservation,
            Method::POST,
            "/v1/reservations",
            req,
        )
        .await;
    }
    let (parts, body) = req.into_parts();
    let body = read_body(body, state.config.max_body_size).await?;
    let claim = queue::claim_admission(&state, &parts, &body).await?;
    let res = proxy_parts(
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
    res
}

pub async fn get(
    State(state): State<SharedState>,
    Path(id): Path<String>,
    req: Request,
) -> Result<Response, ApiError> {
    let path = format!("/v1/reservations/{}", valid_id(&id)?);
    proxy(&state, &state.reservation, Method::GET, &path, req).await
}

pub async fn cancel(
    State(state): State<SharedState>,
    Path(id): Path<String>,
    req: Request,
) -> Result<Response, ApiError> {
    let path = format!("/v1/reservations/{}/cancel", valid_id(&id)?);
    proxy(&state, &state.reservation, Method::POST, &path, req).await
}

pub async fn confirm(
    State(state): State<SharedState>,
    Path(id): Path<String>,
    req: Request,
) -> Result<Response, ApiError> {
    let path = format!("/v1/reservations/{}/confirm", valid_id(&id)?);
    proxy(&state, &state.reservation, Method::POST, &path, req).await
}
