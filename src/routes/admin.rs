//! The admin routes for events (SPEC §5a): create or patch, read with live figures, list,
//! delete, with the bodies they answer. Thin: the router has already checked the bearer token
//! and its admin scope; the rules live in `queue/events.rs` and `store/events.rs`.
use axum::Json;
use axum::extract::State;
use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;

use super::SharedState;
use super::input::{self, ValidId};
use super::queue::plain_settings;
use crate::error::ApiError;
use crate::openapi::schemas::{ErrorBody, EventIdPath};
use crate::queue::events::{EventDefinition, EventFigures, EventPatch, EventState, format_rfc3339};
use crate::state::AppState;
use crate::store::StoreError;
use crate::store::events::PutRefused;

/// An event's definition (SPEC §5a).
// Keys in alphabetical order, as every answer of the gateway's own (see `routes`).
#[derive(Serialize, ToSchema)]
pub struct EventDefinitionBody {
    adaptive: bool,
    /// People admitted per second (before the adaptive factor).
    #[schema(example = 100.0)]
    admission_rps: f64,
    #[schema(pattern = "^[A-Za-z0-9_-]{1,128}$", example = "concert-2026")]
    event_id: String,
    /// At most this many people `ready` or `admitted` at once; `null` = no cap.
    #[schema(required = true, minimum = 1)]
    max_active: Option<u64>,
    /// Before this instant joins go to the prequeue; `null` = open since defined.
    #[schema(required = true, format = DateTime)]
    opens_at: Option<String>,
    state: EventStateBody,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum EventStateBody {
    Open,
    Paused,
    Closed,
}

/// A `PUT` body: any of the fields; those not sent keep their value.
// Doc-only: the handler reads the body as JSON and `EventPatch::parse` checks it, naming the bad
// field.
#[derive(ToSchema)]
#[expect(
    dead_code,
    reason = "the request body's schema; EventPatch::parse reads the body"
)]
pub struct EventPutRequest {
    #[schema(exclusive_minimum = 0.0)]
    admission_rps: Option<f64>,
    #[schema(minimum = 1)]
    max_active: Option<u64>,
    #[schema(format = DateTime)]
    opens_at: Option<String>,
    state: Option<EventStateBody>,
    adaptive: Option<bool>,
}

/// A definition with its live figures.
// Flat, like the definition it extends (one JSON object, keys in alphabetical order).
#[derive(Serialize, ToSchema)]
pub struct EventWithFigures {
    /// `ready` + `admitted` now.
    active: u64,
    adaptive: bool,
    /// The adaptive factor (1 when not adaptive).
    admission_factor: f64,
    /// People per second over the last 60 s.
    admission_rate_measured: f64,
    /// People admitted per second (before the adaptive factor).
    #[schema(example = 100.0)]
    admission_rps: f64,
    admitted_total: u64,
    #[schema(pattern = "^[A-Za-z0-9_-]{1,128}$", example = "concert-2026")]
    event_id: String,
    /// At most this many people `ready` or `admitted` at once; `null` = no cap.
    #[schema(required = true, minimum = 1)]
    max_active: Option<u64>,
    /// Before this instant joins go to the prequeue; `null` = open since defined.
    #[schema(required = true, format = DateTime)]
    opens_at: Option<String>,
    prequeue: u64,
    state: EventStateBody,
    waiting: u64,
}

#[derive(Serialize, ToSchema)]
pub struct EventList {
    events: Vec<EventWithFigures>,
}

#[derive(Serialize, ToSchema)]
pub struct EventDeleted {
    event_id: String,
    #[schema(example = "deleted")]
    status: &'static str,
}

impl From<&EventDefinition> for EventDefinitionBody {
    fn from(def: &EventDefinition) -> Self {
        EventDefinitionBody {
            event_id: def.event_id.clone(),
            admission_rps: def.admission_rps,
            max_active: def.max_active,
            opens_at: def.opens_at_ms.map(format_rfc3339),
            state: match def.state {
                EventState::Open => EventStateBody::Open,
                EventState::Paused => EventStateBody::Paused,
                EventState::Closed => EventStateBody::Closed,
            },
            adaptive: def.adaptive,
        }
    }
}

impl EventWithFigures {
    fn new(def: &EventDefinition, fig: &EventFigures) -> Self {
        let EventDefinitionBody {
            adaptive,
            admission_rps,
            event_id,
            max_active,
            opens_at,
            state,
        } = def.into();
        EventWithFigures {
            active: fig.active,
            adaptive,
            admission_factor: fig.admission_factor,
            admission_rate_measured: (fig.admission_rate_measured * 1000.0).round() / 1000.0,
            admission_rps,
            admitted_total: fig.admitted_total,
            event_id,
            max_active,
            opens_at,
            prequeue: fig.prequeue,
            state,
            waiting: fig.waiting,
        }
    }
}

/// Create an event or change the fields sent
///
/// Every replica follows within 1 s. `closed` ends every token of the event at once.
#[utoipa::path(put, path = "/admin/v1/events/{event_id}", tag = "admin",
    operation_id = "admin_event_put",
    params(EventIdPath),
    request_body = EventPutRequest,
    responses(
        (status = 200, description = "The whole definition", body = EventDefinitionBody),
        (status = 400, description = "`BAD_REQUEST`: a bad value (the message names the field)", body = ErrorBody),
        (status = 401, description = "`UNAUTHENTICATED`: no valid bearer token", body = ErrorBody),
        (status = 403, description = "`FORBIDDEN`: the token lacks `ADMIN_SCOPE`", body = ErrorBody),
        (status = 503, description = "`UPSTREAM_UNAVAILABLE`: the store is down", body = ErrorBody),
    ),
    security(("bearerAuth" = [])))]
pub async fn put_event(
    State(state): State<SharedState>,
    ValidId(event_id): ValidId,
    input::Json(body): input::Json<Value>,
) -> Result<Json<EventDefinitionBody>, ApiError> {
    let patch = EventPatch::parse(&body).map_err(ApiError::BadRequest)?;
    if body
        .get("event_id")
        .is_some_and(|v| v.as_str() != Some(event_id.as_str()))
    {
        return Err(ApiError::BadRequest(
            "event_id in the body differs from the path",
        ));
    }
    let def = state
        .store
        .event_put(&plain_settings(&state), &event_id, &patch)
        .await
        .map_err(|e| store_failed(&state, "event_put", e))?
        .map_err(|PutRefused::TooMany| ApiError::BadRequest("too many events defined"))?;
    state.queue_labels.add(&event_id);
    tracing::info!(event.id = event_id.as_str(), "event definition changed");
    Ok(Json((&def).into()))
}

/// One event's definition and live figures
#[utoipa::path(get, path = "/admin/v1/events/{event_id}", tag = "admin",
    operation_id = "admin_event_get",
    params(EventIdPath),
    responses(
        (status = 200, description = "The event", body = EventWithFigures),
        (status = 400, description = "`BAD_REQUEST`: bad `event_id`", body = ErrorBody),
        (status = 401, description = "`UNAUTHENTICATED`: no valid bearer token", body = ErrorBody),
        (status = 403, description = "`FORBIDDEN`: the token lacks `ADMIN_SCOPE`", body = ErrorBody),
        (status = 404, description = "`EVENT_NOT_FOUND`: nobody defined this event", body = ErrorBody),
        (status = 503, description = "`UPSTREAM_UNAVAILABLE`: the store is down", body = ErrorBody),
    ),
    security(("bearerAuth" = [])))]
pub async fn get_event(
    State(state): State<SharedState>,
    ValidId(event_id): ValidId,
) -> Result<Json<EventWithFigures>, ApiError> {
    match one(&state, &event_id).await? {
        Some(v) => Ok(Json(v)),
        None => Err(unknown()),
    }
}

/// List the defined events with their live figures
#[utoipa::path(get, path = "/admin/v1/events", tag = "admin",
    operation_id = "admin_events_list",
    responses(
        (status = 200, description = "Every defined event", body = EventList),
        (status = 401, description = "`UNAUTHENTICATED`: no valid bearer token", body = ErrorBody),
        (status = 403, description = "`FORBIDDEN`: the token lacks `ADMIN_SCOPE` in `scope`/`scp`", body = ErrorBody),
        (status = 503, description = "`UPSTREAM_UNAVAILABLE`: the store is down", body = ErrorBody),
    ),
    security(("bearerAuth" = [])))]
pub async fn list_events(State(state): State<SharedState>) -> Result<Json<EventList>, ApiError> {
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
    Ok(Json(EventList { events }))
}

/// Delete an event and everything of it
///
/// Its waiting tokens become `expired` and its reservation tokens invalid at once.
#[utoipa::path(delete, path = "/admin/v1/events/{event_id}", tag = "admin",
    operation_id = "admin_event_delete",
    params(EventIdPath),
    responses(
        (status = 200, description = "Deleted", body = EventDeleted),
        (status = 400, description = "`BAD_REQUEST`: bad `event_id`", body = ErrorBody),
        (status = 401, description = "`UNAUTHENTICATED`: no valid bearer token", body = ErrorBody),
        (status = 403, description = "`FORBIDDEN`: the token lacks `ADMIN_SCOPE`", body = ErrorBody),
        (status = 404, description = "`EVENT_NOT_FOUND`: nobody defined this event", body = ErrorBody),
        (status = 503, description = "`UPSTREAM_UNAVAILABLE`: the store is down", body = ErrorBody),
    ),
    security(("bearerAuth" = [])))]
pub async fn delete_event(
    State(state): State<SharedState>,
    ValidId(event_id): ValidId,
) -> Result<Json<EventDeleted>, ApiError> {
    let existed = state
        .store
        .event_delete(&event_id)
        .await
        .map_err(|e| store_failed(&state, "event_delete", e))?;
    if !existed {
        return Err(unknown());
    }
    state.queue_labels.remove(&event_id);
    tracing::info!(event.id = event_id.as_str(), "event deleted");
    Ok(Json(EventDeleted {
        event_id,
        status: "deleted",
    }))
}

async fn one(state: &AppState, event_id: &str) -> Result<Option<EventWithFigures>, ApiError> {
    let got = state
        .store
        .event_get(&plain_settings(state), event_id)
        .await
        .map_err(|e| store_failed(state, "event_get", e))?;
    Ok(got.map(|(def, fig)| EventWithFigures::new(&def, &fig)))
}

fn unknown() -> ApiError {
    ApiError::EventNotFound("no event with this id is defined")
}

fn store_failed(state: &AppState, op: &str, e: StoreError) -> ApiError {
    state.metrics.store_errors.with_label_values(&[op]).inc();
    tracing::warn!(error = %e, store.op = op, "event store call failed");
    ApiError::UpstreamUnavailable("the event store is unavailable, retry shortly")
}
