//! `/healthz`, `/readyz`, `/version`, `/metrics` (SPEC §2). Never rate limited, shed or
//! authenticated: they sit outside the `/api` route layers.
use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use http::{HeaderValue, StatusCode, header};
use serde_json::json;

use super::SharedState;

pub async fn healthz() -> Json<serde_json::Value> {
    Json(json!({"status": "ok"}))
}

pub async fn readyz(State(state): State<SharedState>) -> Response {
    if state.is_shutting_down() {
        return not_ready("shutting down");
    }
    if !state.jwt.is_ready() {
        return not_ready("JWKS not loaded");
    }
    // Ready once the store has answered since start; a later outage is reported, not a verdict
    // (SPEC §2): every replica shares the store, and reads still work on local rate limits.
    if !state.store_health.has_answered() {
        return not_ready("store has not answered yet");
    }
    let store = if state.store_health.is_up() {
        "up"
    } else {
        "down"
    };
    (
        StatusCode::OK,
        Json(json!({"status": "ready", "store": store, "store_backend": state.store.kind()})),
    )
        .into_response()
}

fn not_ready(reason: &'static str) -> Response {
    (
        StatusCode::SERVICE_UNAVAILABLE,
        Json(json!({"status": "not_ready", "reason": reason})),
    )
        .into_response()
}

pub async fn version(State(state): State<SharedState>) -> Json<serde_json::Value> {
    let mut v = json!({
        "service": state.config.telemetry.service_name,
        "version": state.config.telemetry.service_version,
        "git_sha": env!("GATEWAY_GIT_SHA"),
        "build_time": build_time(),
    });
    if state.jwt.skips_verification() {
        v["jwt_verification"] = json!("disabled");
        v["warning"] = json!("JWT_SKIP_VERIFY=true: bearer token signatures are not checked");
    }
    Json(v)
}

/// RFC 3339 UTC of the build epoch baked in by `build.rs`.
fn build_time() -> String {
    let secs: u64 = env!("GATEWAY_BUILD_EPOCH").parse().unwrap_or(0);
    humantime::format_rfc3339_seconds(std::time::UNIX_EPOCH + Duration::from_secs(secs)).to_string()
}

pub async fn metrics(State(state): State<SharedState>) -> Response {
    let body = state.metrics.render();
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
        )],
        body,
    )
        .into_response()
}
