//! `/healthz`, `/readyz`, `/version`, `/metrics` (SPEC §2). Never rate limited, shed or
//! authenticated: they sit outside the `/api` route layers.

use axum::Json;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use http::{HeaderValue, StatusCode, header};
use serde::Serialize;
use utoipa::ToSchema;

use super::SharedState;
use crate::build_info;

#[derive(Serialize, ToSchema)]
pub struct Health {
    #[schema(example = "ok")]
    status: &'static str,
}

/// `/readyz`: 200 `{"status":"ready","store":…,"store_backend":…}` or 503
/// `{"status":"not_ready","reason":…}`.
// Keys in alphabetical order, as every answer of the gateway's own (see `routes`).
#[derive(Serialize, ToSchema)]
pub struct Readiness {
    /// Why not ready: `shutting down`, `JWKS not loaded`, `store has not answered yet`.
    #[schema(example = "store has not answered yet")]
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<&'static str>,
    /// `ready` or `not_ready`.
    #[schema(example = "ready")]
    status: &'static str,
    /// When ready: `up`, or `down` during a store outage after its first answer (which does not
    /// make a replica unready, SPEC §2).
    #[schema(example = "up")]
    #[serde(skip_serializing_if = "Option::is_none")]
    store: Option<&'static str>,
    /// When ready: `redis`, `redis-cluster` or `memory`.
    #[schema(example = "redis")]
    #[serde(skip_serializing_if = "Option::is_none")]
    store_backend: Option<&'static str>,
}

// Keys in alphabetical order, as every answer of the gateway's own (see `routes`).
#[derive(Serialize, ToSchema)]
pub struct Version {
    #[schema(example = "2026-11-28T18:00:00Z", format = DateTime)]
    build_time: String,
    /// The binary was built from a tree with uncommitted changes.
    git_dirty: bool,
    /// The full sha of the commit the binary was built from.
    #[schema(example = "a779fcf1b2c3d4e5f60718293a4b5c6d7e8f9012")]
    git_sha: &'static str,
    /// `disabled` when `JWT_SKIP_VERIFY=true`; absent otherwise.
    #[serde(skip_serializing_if = "Option::is_none")]
    jwt_verification: Option<&'static str>,
    #[schema(example = "gateway-api")]
    service: String,
    #[schema(example = "0.1.0")]
    version: String,
    /// Why `jwt_verification` is shown; absent when tokens are verified.
    #[serde(skip_serializing_if = "Option::is_none")]
    warning: Option<&'static str>,
}

/// Liveness
///
/// 200 while the process serves.
#[utoipa::path(get, path = "/healthz", tag = "operations",
    responses((status = 200, description = "Alive", body = Health)))]
pub async fn healthz() -> Json<Health> {
    Json(Health { status: "ok" })
}

/// Readiness
///
/// 200 when the store answers and (when verifying tokens) a JWKS is loaded; 503 otherwise and
/// from the moment shutdown begins.
#[utoipa::path(get, path = "/readyz", tag = "operations",
    responses(
        (status = 200, description = "Ready to serve", body = Readiness),
        (status = 503, description = "Not ready; `reason` says why", body = Readiness),
    ))]
pub async fn readyz(State(state): State<SharedState>) -> (StatusCode, Json<Readiness>) {
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
    let ready = Readiness {
        status: "ready",
        store: Some(store),
        store_backend: Some(state.store.kind()),
        reason: None,
    };
    (StatusCode::OK, Json(ready))
}

fn not_ready(reason: &'static str) -> (StatusCode, Json<Readiness>) {
    let body = Readiness {
        status: "not_ready",
        store: None,
        store_backend: None,
        reason: Some(reason),
    };
    (StatusCode::SERVICE_UNAVAILABLE, Json(body))
}

/// Build information
#[utoipa::path(get, path = "/version", tag = "operations",
    responses((status = 200, description = "Service, version, git sha, build time", body = Version)))]
pub async fn version(State(state): State<SharedState>) -> Json<Version> {
    let unverified = state.jwt.skips_verification();
    Json(Version {
        service: state.config.telemetry.service_name.clone(),
        version: state.config.telemetry.service_version.clone(),
        git_sha: build_info::GIT_SHA,
        git_dirty: build_info::git_dirty(),
        build_time: build_info::build_time(),
        jwt_verification: unverified.then_some("disabled"),
        warning: unverified
            .then_some("JWT_SKIP_VERIFY=true: bearer token signatures are not checked"),
    })
}

/// Prometheus metrics
#[utoipa::path(get, path = "/metrics", tag = "operations",
    responses((status = 200, description = "Prometheus text exposition format 0.0.4",
        body = String, content_type = "text/plain; version=0.0.4; charset=utf-8")))]
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
