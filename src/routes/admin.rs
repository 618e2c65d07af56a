//! The admin routes for events (SPEC §5a): create or patch, read with live figures, list,
//! delete. Thin: the router has already checked the bearer token and its admin scope; the rules
//! live in `queue/events.rs` and `store/events.rs`.
use axum::Json;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::SharedState;
use super::input::{self, ValidId};
use super::queue::plain_settings;
use crate::error::ApiError;
use crate::queue::events::{EventDefinition, EventFigures, EventPatch};
use crate::state::AppState;
use crate::store::StoreError;
use crate::store::events::PutRefused;

/// `PUT /admin/v1/events/{event_id}` → 200 with the whole definition.
pub async fn put_event(
    State(state): State<SharedState>,
    ValidId(event_id): ValidId,
    input::Json(body): input::Json<Value>,
) -> Result<Response, ApiError> {
    let event_id = event_id.as_str();
    let patch = EventPatch::parse(&body).map_err(ApiError::BadRequest)?;
    if body
        .get("event_id")
        .is_some_and(|v| v.as_str() != Some(event_id))
    {
        return Err(ApiError::BadRequest(
            "event_id in the body differs from the path",
        ));
    }
    let def = state
        .store
        .event_put(&plain_settings(&state), event_id, &patch)
        .await
        .map_err(|e| store_failed(&state, "event_put", e))?
        .map_err(|PutRefused::TooMany| ApiError::BadRequest("too many events defined"))?;
    state.queue_labels.add(event_id);
    tracing::info!(event.id = event_id, "event definition changed");
    Ok(Json(def.to_json()).into_response())
}

/// `GET /admin/v1/events/{event_id}` → 200 definition and live figures, or 404.
pub async fn get_event(
    State(state): State<SharedState>,
    ValidId(event_id): ValidId,
) -> Result<Response, ApiError> {
    let event_id = event_id.as_str();
    match one(&state, event_id).await? {
        Some(v) => Ok(Json(v).into_response()),
        None => Err(unknown()),
    }
}

/// `GET /admin/v1/events` → 200 `{"events": [...]}`, each with its live figures.
pub async fn list_events(State(state): State<SharedState>) -> Result<Response, ApiError> {
    let ids = state
        .store
        .event_ids()
        .await
        .map_err(|e| store_failed(&state, "event_ids", e))?;
    let mut events = Vec::with_capacity(ids.len());
    for id in ids {
        if let Some(v) = one(&state, &id).await? {
            events.push(v);
        }
    }
    Ok(Json(json!({ "events": events })).into_response())
}

/// `DELETE /admin/v1/events/{event_id}` → 200; every token of the event ends at once.
pub async fn delete_event(
    State(state): State<SharedState>,
    ValidId(event_id): ValidId,
) -> Result<Response, ApiError> {
    let event_id = event_id.as_str();
    let existed = state
        .store
        .event_delete(event_id)
        .await
        .map_err(|e| store_failed(&state, "event_delete", e))?;
    if !existed {
        return Err(unknown());
    }
    state.queue_labels.remove(event_id);
    tracing::info!(event.id = event_id, "event deleted");
    Ok(Json(json!({"event_id": event_id, "status": "deleted"})).into_response())
}

async fn one(state: &AppState, event_id: &str) -> Result<Option<Value>, ApiError> {
    let got = state
        .store
        .event_get(&plain_settings(state), event_id)
        .await
        .map_err(|e| store_failed(state, "event_get", e))?;
    Ok(got.map(|(def, fig)| body(&def, &fig)))
}

fn body(def: &EventDefinition, fig: &EventFigures) -> Value {
    let mut v = def.to_json();
    fig.extend(&mut v);
    v
}

fn unknown() -> ApiError {
    ApiError::EventNotFound("no event with this id is defined")
}

fn store_failed(state: &AppState, op: &str, e: StoreError) -> ApiError {
    state.metrics.store_errors.with_label_values(&[op]).inc();
    tracing::warn!(error = %e, store.op = op, "event store call failed");
    ApiError::UpstreamUnavailable("the event store is unavailable, retry shortly")
}
