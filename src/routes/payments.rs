//! Payment routes (SPEC §2) → the payment API.
use axum::extract::{Path, Request, State};
use axum::response::Response;
use http::Method;

use super::{SharedState, forward, valid_id};
use crate::error::ApiError;

pub async fn create_intent(
    State(state): State<SharedState>,
    req: Request,
) -> Result<Response, ApiError> {
    forward(&state, &state.payment, Method::POST, "/v1/sim/intent", req).await
}

pub async fn get_intent(
    State(state): State<SharedState>,
    Path(id): Path<String>,
    req: Request,
) -> Result<Response, ApiError> {
    let path = format!("/v1/sim/intent/{}", valid_id(&id)?);
    forward(&state, &state.payment, Method::GET, &path, req).await
}
