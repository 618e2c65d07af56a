//! Reservation routes (SPEC §2) → the reservation API.
use axum::extract::{Path, Request, State};
use axum::response::Response;
use http::Method;

use super::{SharedState, proxy, valid_id};
use crate::error::ApiError;

/// `POST /api/v1/reservations/create` and its alias `POST /api/v1/reservations`.
pub async fn create(State(state): State<SharedState>, req: Request) -> Result<Response, ApiError> {
    proxy(
        &state,
        &state.reservation,
        Method::POST,
        "/v1/reservations",
        req,
    )
    .await
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
