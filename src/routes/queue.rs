//! The waiting room's routes (SPEC §5): join, status, enter, leave, and the admission check that
//! reservation create runs when `QUEUE_REQUIRE_ADMISSION=true`. Thin: parse and validate, one
//! store call, map the outcome to JSON or an `ApiError`, count it. The rules live in `queue/`
//! and `store/queue.rs`.
use axum::Json;
use axum::extract::{RawQuery, Request, State};
use axum::response::{IntoResponse, Response};
use http::StatusCode;
use http::request::Parts;
use serde::Deserialize;
use serde_json::json;

use super::{SharedState, input, valid_id};
use crate::body::read_body;
use crate::error::ApiError;
use crate::headers::X_RESERVATION_TOKEN;
use crate::middleware::auth::Caller;
use crate::queue::{Identity, ReservationToken, WaitingToken, eta_secs};
use crate::state::AppState;
use crate::store::StoreError;
use crate::store::queue::{Claim, Entry, Place, QueueSettings, QueueStats};

/// The longest `user_id` a body may claim.
const MAX_USER_ID_LEN: usize = 256;

#[derive(Deserialize)]
struct JoinBody {
    event_id: String,
    user_id: Option<String>,
}

#[derive(Deserialize)]
struct EnterBody {
    waiting_token: String,
}

#[derive(Deserialize)]
pub struct TokenQuery {
    token: String,
}

/// `POST /api/v1/queue/join` → 202.
pub async fn join(State(state): State<SharedState>, req: Request) -> Result<Response, ApiError> {
    let (parts, body) = req.into_parts();
    let body: JoinBody = parse_json(&state, body).await?;
    let event_id = valid_id(&body.event_id)?;
    if let Some(u) = &body.user_id
        && (u.is_empty() || u.len() > MAX_USER_ID_LEN)
    {
        return Err(ApiError::BadRequest("user_id must be 1-256 characters"));
    }
    let identity = Identity::resolve(caller(&parts), body.user_id.as_deref());
    let user = identity.digest();
    let joined = state
        .store
        .queue_join(&settings(&state), event_id, user.as_deref())
        .await
        .map_err(|e| store_failed(&state, "queue_join", e))?;
    let label = state.queue_labels.label(event_id);
    if joined.new_place {
        state.metrics.queue_joins.with_label_values(&[label]).inc();
    }
    record(&state, &joined.stats);
    let body = json!({
        "waiting_token": joined.token.encode(),
        "event_id": event_id,
        "position_hint": joined.position,
        "status": "waiting",
    });
    Ok((StatusCode::ACCEPTED, Json(body)).into_response())
}

/// `GET /api/v1/queue/status?token=` → 200 waiting | ready | expired.
pub async fn status(
    State(state): State<SharedState>,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    let q: TokenQuery = input::query(query.as_deref())?;
    let token = waiting_token(&q.token)?;
    let s = settings(&state);
    let (place, stats) = state
        .store
        .queue_status(&s, &token)
        .await
        .map_err(|e| store_failed(&state, "queue_status", e))?;
    record(&state, &stats);
    let (status, position, eta) = match place {
        Place::Waiting(p) => ("waiting", p, eta_secs(p.saturating_sub(1), s.rate)),
        Place::Ready => ("ready", 0, 0),
        Place::Expired => ("expired", 0, 0),
    };
    let event_id = (!stats.event_id.is_empty()).then_some(stats.event_id);
    Ok(Json(json!({
        "status": status,
        "event_id": event_id,
        "position": position,
        "eta_sec": eta,
    }))
    .into_response())
}

/// `POST /api/v1/queue/enter` → 200 with a reservation token when ready, else 403.
pub async fn enter(State(state): State<SharedState>, req: Request) -> Result<Response, ApiError> {
    let (parts, body) = req.into_parts();
    let body: EnterBody = parse_json(&state, body).await?;
    let token = waiting_token(&body.waiting_token)?;
    let caller = caller(&parts).and_then(|sub| Identity::Verified(sub.to_owned()).digest());
    let s = settings(&state);
    let (entry, stats) = state
        .store
        .queue_enter(&s, &token, caller.as_deref())
        .await
        .map_err(|e| store_failed(&state, "queue_enter", e))?;
    record(&state, &stats);
    match entry {
        Entry::Granted(rtok) => {
            if !stats.event_id.is_empty() {
                let label = state.queue_labels.label(&stats.event_id);
                state
                    .metrics
                    .queue_admissions
                    .with_label_values(&[label])
                    .inc();
            }
            Ok(Json(json!({
                "admission": "granted",
                "reservation_token": rtok.as_str(),
                "ttl_sec": s.reservation_ttl_ms.div_ceil(1000),
            }))
            .into_response())
        }
        Entry::Waiting(_) => Err(ApiError::Forbidden(
            "admission not granted yet: still waiting in the queue",
        )),
        Entry::Expired => Err(ApiError::Forbidden(
            "the waiting token has expired or is unknown: join the queue again",
        )),
        Entry::OtherUser => Err(ApiError::Forbidden(
            "the waiting token belongs to another user",
        )),
    }
}

/// `DELETE /api/v1/queue/leave?token=` → 200 `{"status":"left"}` (also for unknown tokens).
pub async fn leave(
    State(state): State<SharedState>,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    let q: TokenQuery = input::query(query.as_deref())?;
    let token = waiting_token(&q.token)?;
    let stats = state
        .store
        .queue_leave(&settings(&state), &token)
        .await
        .map_err(|e| store_failed(&state, "queue_leave", e))?;
    record(&state, &stats);
    Ok(Json(json!({"status": "left"})).into_response())
}

/// A reservation token claimed for one create: settle it with the upstream's answer.
pub struct AdmissionClaim {
    event_id: String,
    token: ReservationToken,
    caller: String,
}

#[derive(Deserialize)]
struct CreateFields {
    event_id: Option<serde_json::Value>,
    reservation_token: Option<serde_json::Value>,
}

/// With `QUEUE_REQUIRE_ADMISSION=true`, reservation create needs a reservation token for its
/// `event_id` and caller (body `reservation_token` or header `X-Reservation-Token`), else 403.
/// The token is marked in use here, so two concurrent creates cannot both spend it.
pub async fn claim_admission(
    state: &AppState,
    parts: &Parts,
    body: &[u8],
) -> Result<AdmissionClaim, ApiError> {
    let fields: CreateFields = input::json(body)?;
    let event_id = match &fields.event_id {
        Some(serde_json::Value::String(e)) => valid_id(e)?.to_owned(),
        Some(_) => return Err(ApiError::BadRequest("event_id: expected a string")),
        None => return Err(ApiError::BadRequest("event_id: missing field")),
    };
    let header = parts
        .headers
        .get(&X_RESERVATION_TOKEN)
        .and_then(|v| v.to_str().ok());
    let raw = header.or(match &fields.reservation_token {
        Some(serde_json::Value::String(t)) => Some(t.as_str()),
        _ => None,
    });
    const MISSING: ApiError = ApiError::Forbidden("waiting-room admission required");
    let token = raw.and_then(ReservationToken::parse).ok_or(MISSING)?;
    let caller = caller(parts)
        .and_then(|sub| Identity::Verified(sub.to_owned()).digest())
        .ok_or(MISSING)?;
    let claim = state
        .store
        .reservation_claim(&event_id, &token, &caller)
        .await
        .map_err(|e| store_failed(state, "reservation_claim", e))?;
    match claim {
        Claim::Claimed => Ok(AdmissionClaim {
            event_id,
            token,
            caller,
        }),
        Claim::Missing => Err(ApiError::Forbidden(
            "the reservation token is unknown, expired or already used",
        )),
        Claim::OtherUser => Err(ApiError::Forbidden(
            "the reservation token is for another user or event",
        )),
        Claim::InUse => Err(ApiError::Forbidden(
            "the reservation token is being used by another request",
        )),
    }
}

impl AdmissionClaim {
    /// Consumes the token when the upstream created the reservation (2xx); otherwise releases
    /// it, valid again until its TTL.
    pub async fn settle(self, state: &AppState, created: bool) {
        if let Err(e) = state
            .store
            .reservation_settle(&self.event_id, &self.token, &self.caller, created)
            .await
        {
            // Left marked in use: it cannot be spent twice, and it expires with its TTL.
            state
                .metrics
                .store_errors
                .with_label_values(&["reservation_settle"])
                .inc();
            tracing::warn!(error = %e, "could not settle a reservation token");
        }
    }
}

fn settings(state: &AppState) -> QueueSettings {
    QueueSettings::from(&state.config.queue)
}

fn caller(parts: &Parts) -> Option<&str> {
    parts.extensions.get::<Caller>().map(Caller::user_id)
}

fn waiting_token(raw: &str) -> Result<WaitingToken, ApiError> {
    WaitingToken::parse(raw).ok_or(ApiError::BadRequest(
        "malformed waiting token: expected 43 characters of A-Z a-z 0-9 _ -",
    ))
}

async fn parse_json<T: serde::de::DeserializeOwned>(
    state: &AppState,
    body: axum::body::Body,
) -> Result<T, ApiError> {
    let bytes = read_body(body, state.config.max_body_size).await?;
    input::json(&bytes)
}

/// The waiting room fails closed: without the store there is no fair order to keep.
fn store_failed(state: &AppState, op: &str, e: StoreError) -> ApiError {
    state.metrics.store_errors.with_label_values(&[op]).inc();
    tracing::warn!(error = %e, store.op = op, "waiting-room store call failed");
    ApiError::UpstreamUnavailable("the waiting room is unavailable, retry shortly")
}

fn record(state: &AppState, stats: &QueueStats) {
    if stats.event_id.is_empty() {
        return;
    }
    let label = state.queue_labels.label(&stats.event_id);
    state
        .metrics
        .queue_waiting
        .with_label_values(&[label])
        .set(stats.waiting as i64);
    if stats.expired > 0 {
        state
            .metrics
            .queue_expirations
            .with_label_values(&[label])
            .inc_by(stats.expired);
    }
}
