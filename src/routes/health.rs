//! `/healthz`, `/readyz`, `/version`, `/metrics` (SPEC §2). Never rate limited, shed or
//! authenticated: they sit outside the `/api` route layers.

use axum::Json;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use http::{HeaderValue, StatusCode, header};
use serde_json::json;

use super::SharedState;
use crate::build_info;

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
        "git_sha": build_info::GIT_SHA,
        "git_dirty": build_info::git_dirty(),
        "build_time": build_info::build_time(),
    });
    if state.jwt.skips_verification() {
        v["jwt_verification"] = json!("disabled");
        v["warning"] = json!("JWT_SKIP_VERIFY=true: bearer token signatures are not checked");
    }
    Json(v)
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
