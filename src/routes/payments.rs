//! Payment routes (SPEC §2) → the payment API.
use axum::extract::{Request, State};
use axum::response::Response;
use http::Method;

use super::input::ValidId;
use super::{SharedState, forward};
use crate::error::ApiError;

pub async fn create_intent(
    State(state): State<SharedState>,
    req: Request,
) -> Result<Response, ApiError> {
    forward(&state, &state.payment, Method::POST, "/v1/sim/intent", req).await
}

pub async fn get_intent(
    State(state): State<SharedState>,
    ValidId(id): ValidId,
    req: Request,
) -> Result<Response, ApiError> {
    let path = format!("/v1/sim/intent/{id}");
    forward(&state, &state.payment, Method::GET, &path, req).await
}
