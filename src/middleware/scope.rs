//! The admin scope check (SPEC §5a): after `AuthLayer::required` has verified the bearer token,
//! its `scope` claim (space-separated string) or `scp` claim (array of strings) must contain
//! `ADMIN_SCOPE`, else 403. The claims are read from the very token the auth layer verified (the
//! same `Authorization` header), so nothing unverified is trusted; `jwt.rs` stays about
//! verification only.
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http::header;
use serde_json::Value;

use crate::error::ApiError;

/// `from_fn_with_state(scope, require)`: 403 unless the verified token carries `scope`.
pub async fn require(State(scope): State<Arc<str>>, req: Request, next: Next) -> Response {
    let claims = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .and_then(|(_, token)| claims_of(token.trim()));
    match claims {
        Some(c) if has_scope(&c, &scope) => next.run(req).await,
        _ => {
            tracing::info!(auth.reason = "missing_scope", "admin call refused");
            ApiError::Forbidden("this token lacks the admin scope").into_response()
        }
    }
}

fn claims_of(token: &str) -> Option<Value> {
    let payload = token.split('.').nth(1)?;
    let bytes = URL_SAFE_NO_PAD.decode(payload).ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// `scope` as a space-separated string, or `scp` as an array of strings (or a string).
pub fn has_scope(claims: &Value, want: &str) -> bool {
    let in_str = |v: &Value| {
        v.as_str()
            .is_some_and(|s| s.split_ascii_whitespace().any(|x| x == want))
    };
    let in_array = |v: &Value| {
        v.as_array()
            .is_some_and(|a| a.iter().any(|x| x.as_str() == Some(want)))
    };
    claims
        .get("scope")
        .is_some_and(|v| in_str(v) || in_array(v))
        || claims.get("scp").is_some_and(|v| in_array(v) || in_str(v))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn scope_is_found_in_a_string_or_an_array() {
        let want = "gateway:admin";
        assert!(has_scope(&json!({"scope": "read gateway:admin"}), want));
        assert!(has_scope(&json!({"scp": ["x", "gateway:admin"]}), want));
        assert!(!has_scope(&json!({"scope": "gateway:administrator"}), want));
        assert!(!has_scope(&json!({"scp": ["gateway"]}), want));
        assert!(!has_scope(&json!({"sub": "a"}), want));
        assert!(!has_scope(&json!({"scope": 7}), want));
    }
}
