//! `/demo/token` and `/demo/jwks.json` (`--demo` only; 404 otherwise, as routes that do not
//! exist): mint a token for the demo's key, and show the key set the gateway trusts.
use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::routing::get;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::SharedState;
use super::input::Query;
use crate::error::ApiError;
use crate::jwt::dev::DEMO_TOKEN_TTL;
use crate::jwt::{ClaimRules, Claims, check_claims};

/// `/demo/token` and `/demo/jwks.json` when `enabled` (demo mode), nothing otherwise.
pub fn routes(enabled: bool) -> Router<SharedState> {
    if !enabled {
        return Router::new();
    }
    Router::new()
        .route("/demo/token", get(token))
        .route("/demo/jwks.json", get(jwks))
}

#[derive(Deserialize)]
struct TokenQuery {
    sub: Option<String>,
}

/// An OAuth-style token answer, ready to paste into `Authorization: Bearer …`.
// Keys in alphabetical order, as every answer of the gateway's own (see `routes`).
#[derive(Serialize)]
struct DemoToken {
    access_token: String,
    expires_in: u64,
    sub: String,
    token_type: &'static str,
}

async fn token(
    State(state): State<SharedState>,
    Query(q): Query<TokenQuery>,
) -> Result<Json<DemoToken>, ApiError> {
    let issuer = state.demo.as_ref().ok_or(ApiError::NotFound)?;
    let sub = q.sub.unwrap_or_else(|| "user-123".to_owned());
    // The same rule the verifier applies to `sub`, so a minted token always verifies.
    let probe = Claims {
        exp: Some(json!(u64::MAX / 2)),
        sub: Some(json!(sub)),
        ..Claims::default()
    };
    check_claims(&probe, &ClaimRules::default(), 0)
        .map_err(|_| ApiError::BadRequest("sub: 1-256 printable ASCII characters"))?;
    let token = issuer.mint(&sub, DEMO_TOKEN_TTL).map_err(|e| {
        tracing::error!(error = %e, "demo token signing failed");
        ApiError::Internal
    })?;
    Ok(Json(DemoToken {
        access_token: token,
        token_type: "Bearer",
        expires_in: DEMO_TOKEN_TTL.as_secs(),
        sub,
    }))
}

async fn jwks(State(state): State<SharedState>) -> Result<Json<Value>, ApiError> {
    let issuer = state.demo.as_ref().ok_or(ApiError::NotFound)?;
    Ok(Json(issuer.jwks()))
}
