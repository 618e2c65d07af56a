//! Payment routes (SPEC §2) → the payment API.
use axum::extract::{Request, State};
use axum::response::Response;
use http::Method;

use super::input::ValidId;
use super::{SharedState, forward};
use crate::error::ApiError;
use crate::openapi::schemas::{
    ErrorBody, IdPath, IdempotencyKeyHeader, PaymentIntent, PaymentIntentRequest, UpstreamErrorBody,
};

/// Create a payment intent
///
/// Forwarded to the payment API's `POST /v1/sim/intent`.
#[utoipa::path(post, path = "/api/v1/payment/intent", tag = "payments",
    operation_id = "payment_intent_create",
    request_body = PaymentIntentRequest,
    params(IdempotencyKeyHeader),
    responses(
        (status = 200, description = "The intent (the upstream's answer)", body = PaymentIntent),
        (status = 400, description = "`BAD_REQUEST` (bad key) or `IDEMPOTENCY_REQUIRED`; or the upstream's validation error", body = ErrorBody),
        (status = 409, description = "`IDEMPOTENCY_CONFLICT` / `IDEMPOTENCY_IN_PROGRESS`", body = ErrorBody),
    ),
    security(("bearerAuth" = [])))]
pub async fn create_intent(
    State(state): State<SharedState>,
    req: Request,
) -> Result<Response, ApiError> {
    forward(&state, &state.payment, Method::POST, "/v1/sim/intent", req).await
}

/// Get a payment intent
#[utoipa::path(get, path = "/api/v1/payment/intent/{id}", tag = "payments",
    operation_id = "payment_intent_get",
    params(IdPath),
    responses(
        (status = 200, description = "The intent (the upstream's answer)", body = PaymentIntent),
        (status = 400, description = "`BAD_REQUEST`: bad id", body = ErrorBody),
        (status = 404, description = "The upstream's `PAYMENT_INTENT_NOT_FOUND`", body = UpstreamErrorBody),
    ),
    security(("bearerAuth" = [])))]
pub async fn get_intent(
    State(state): State<SharedState>,
    ValidId(id): ValidId,
    req: Request,
) -> Result<Response, ApiError> {
    let path = format!("/v1/sim/intent/{id}");
    forward(&state, &state.payment, Method::GET, &path, req).await
}
