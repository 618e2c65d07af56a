//! `/healthz`, `/readyz`, `/version`, `/metrics` (SPEC §2). Never rate limited, shed or
//! authenticated: they sit outside the `/api` route layers.
use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use http::{HeaderValue, StatusCode, header};
use serde_json::json;

use super::SharedState;
use crate::build_info;

/// How long `/readyz` waits for the store before calling it down.
const STORE_PING_TIMEOUT: Duration = Duration::from_millis(500);

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
    match tokio::time::timeout(STORE_PING_TIMEOUT, state.store.ping()).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "readiness: store ping failed");
            return not_ready("store unavailable");
        }
        Err(_) => return not_ready("store did not answer"),
    }
    (
        StatusCode::OK,
        Json(json!({"status": "ready", "store": state.store.kind()})),
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
