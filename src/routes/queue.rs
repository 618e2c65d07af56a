//! The waiting room's routes (SPEC §5): join, status, enter, leave, and the admission check that
//! reservation create runs when `QUEUE_REQUIRE_ADMISSION=true`. Thin: parse and validate, one
//! store call, map the outcome to JSON or an `ApiError`, count it. The rules live in `queue/`
//! and `store/queue.rs`.
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use http::StatusCode;
use http::request::Parts;
use serde::Deserialize;
use serde_json::json;

use super::SharedState;
use super::input::{self, Query, valid_id};
use crate::error::ApiError;
use crate::headers::X_RESERVATION_TOKEN;
use crate::middleware::auth::Caller;
use crate::queue::events::EventState;
use crate::queue::polling::poll_after_secs;
use crate::queue::{Identity, ReservationToken, WaitingToken, eta_secs};
use crate::state::AppState;
use crate::store::StoreError;
use crate::store::queue::{
    Claim, Entry, JoinState, Left, Place, QueueSettings, QueueStats, Status,
};

/// The longest `user_id` a body may claim.
const MAX_USER_ID_LEN: usize = 256;

#[derive(Deserialize)]
pub struct JoinBody {
    event_id: String,
    user_id: Option<String>,
}

#[derive(Deserialize)]
pub struct EnterBody {
    waiting_token: String,
}

#[derive(Deserialize)]
pub struct TokenQuery {
    token: String,
}

/// `POST /api/v1/queue/join` → 202.
pub async fn join(
    State(state): State<SharedState>,
    caller: Option<Extension<Caller>>,
    input::Json(body): input::Json<JoinBody>,
) -> Result<Response, ApiError> {
    let event_id = valid_id(&body.event_id)?;
    if let Some(u) = &body.user_id
        && (u.is_empty() || u.len() > MAX_USER_ID_LEN)
    {
        return Err(ApiError::BadRequest("user_id must be 1-256 characters"));
    }
    let caller = caller.as_ref().map(|c| c.user_id());
    let identity = Identity::resolve(caller, body.user_id.as_deref());
    let user = identity.digest();
    let s = settings(&state, event_id);
    let joined = state
        .store
        .queue_join(&s, event_id, user.as_deref())
        .await
        .map_err(|e| store_failed(&state, "queue_join", e))?;
    let status = match joined.state {
        JoinState::NotFound => {
            return Err(ApiError::EventNotFound(
                "no operator defined this event (QUEUE_EVENTS_OPEN=false)",
            ));
        }
        JoinState::Closed => return Err(ApiError::EventClosed),
        JoinState::Full => {
            return Err(ApiError::UpstreamUnavailable(
                "the waiting room is full, retry shortly",
            ));
        }
        JoinState::Waiting => "waiting",
        JoinState::Prequeue => "prequeue",
        JoinState::Ready => "ready",
        JoinState::Admitted => "admitted",
    };
    let label = state.queue_labels.label(event_id);
    if joined.new_place {
        state.metrics.queue_joins.with_label_values(&[label]).inc();
    }
    record(&state, &joined.stats);
    let body = json!({
        "waiting_token": joined.token.encode(),
        "event_id": event_id,
        "position_hint": joined.position,
        "status": status,
    });
    Ok((StatusCode::ACCEPTED, Json(body)).into_response())
}

/// `GET /api/v1/queue/status?token=` → 200 prequeue | waiting | ready | admitted | expired, with
/// `poll_after_sec`; 429 beyond the token's own poll bucket (SPEC §5).
pub async fn status(
    State(state): State<SharedState>,
    Query(q): Query<TokenQuery>,
) -> Result<Response, ApiError> {
    let token = waiting_token(&q.token)?;
    let s = settings_for(&state, &token);
    let (st, stats) = state
        .store
        .queue_status(&s, &token)
        .await
        .map_err(|e| store_failed(&state, "queue_status", e))?;
    record(&state, &stats);
    let event_id = (!stats.event_id.is_empty()).then_some(stats.event_id);
    Ok(Json(status_body(&st, event_id, s.heartbeat_ttl_ms)?).into_response())
}

/// The status answer (SPEC §5): `eta_sec` is `ceil(people ahead / rate)` with the store's rate
/// (configured until 10 were admitted, then measured), `null` while paused or when no rate is
/// known; `poll_after_sec` follows the eta.
fn status_body(
    st: &Status,
    event_id: Option<String>,
    heartbeat_ttl_ms: u64,
) -> Result<serde_json::Value, ApiError> {
    let rate = (st.event_state == EventState::Open && st.eta_rate > 0.0).then_some(st.eta_rate);
    let (status, position, eta): (&str, Option<u64>, Option<u64>) = match st.place {
        Place::Limited { retry_ms } => {
            return Err(ApiError::RateLimited {
                retry_after: std::time::Duration::from_millis(retry_ms),
            });
        }
        Place::Prequeue { opens_in_ms } => ("prequeue", None, Some(opens_in_ms.div_ceil(1000))),
        Place::Waiting(p) => (
            "waiting",
            Some(p),
            rate.map(|r| eta_secs(p.saturating_sub(1), r)),
        ),
        Place::Ready => ("ready", Some(0), Some(0)),
        Place::Admitted { ttl_ms } => {
            return Ok(json!({
                "status": "admitted",
                "event_id": event_id,
                "position": 0,
                "eta_sec": 0,
                "reservation_token_ttl_sec": ttl_ms.div_ceil(1000),
                "poll_after_sec": poll_after_secs(Some(ttl_ms / 1000), heartbeat_ttl_ms),
            }));
        }
        Place::Expired => ("expired", Some(0), Some(0)),
    };
    let poll_after = match st.place {
        Place::Expired => None,
        _ => Some(poll_after_secs(eta, heartbeat_ttl_ms)),
    };
    Ok(json!({
        "status": status,
        "event_id": event_id,
        "position": position,
        "eta_sec": eta,
        "poll_after_sec": poll_after,
    }))
}

/// `POST /api/v1/queue/enter` → 200 with a reservation token when ready, else 403.
pub async fn enter(
    State(state): State<SharedState>,
    caller: Option<Extension<Caller>>,
    input::Json(body): input::Json<EnterBody>,
) -> Result<Response, ApiError> {
    let token = waiting_token(&body.waiting_token)?;
    let caller = caller.and_then(|c| Identity::Verified(c.user_id().to_owned()).digest());
    let s = settings_for(&state, &token);
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
        Entry::Admitted => Err(ApiError::Forbidden(
            "already admitted: use the reservation token granted on enter",
        )),
    }
}

/// `DELETE /api/v1/queue/leave?token=` → 200 `{"status":"left"}` (also for unknown tokens).
pub async fn leave(
    State(state): State<SharedState>,
    Query(q): Query<TokenQuery>,
) -> Result<Response, ApiError> {
    let token = waiting_token(&q.token)?;
    let (left, stats) = state
        .store
        .queue_leave(&settings_for(&state, &token), &token)
        .await
        .map_err(|e| store_failed(&state, "queue_leave", e))?;
    record(&state, &stats);
    if let Left::Limited { retry_ms } = left {
        return Err(ApiError::RateLimited {
            retry_after: std::time::Duration::from_millis(retry_ms),
        });
    }
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

/// The settings for a call on `event_id`, with this replica's health verdict when it is due.
fn settings(state: &AppState, event_id: &str) -> QueueSettings {
    settings_for_tag(state, crate::queue::EventTag::of(event_id))
}

fn settings_for(state: &AppState, token: &WaitingToken) -> QueueSettings {
    settings_for_tag(state, token.tag)
}

fn settings_for_tag(state: &AppState, tag: crate::queue::EventTag) -> QueueSettings {
    let mut s = QueueSettings::from(&state.config.queue);
    s.observation = state
        .reservation_health
        .observation(tag, &state.config.queue);
    s
}

/// For the admin routes: no health verdict rides along.
pub fn plain_settings(state: &AppState) -> QueueSettings {
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

/// At most every few seconds (in the background, off the request's path): re-reads the defined
/// events and sets their gauges (SPEC §5a metrics), and drops the series of deleted ones.
pub fn refresh_event_metrics(state: &SharedState) {
    let now = crate::queue::events::unix_ms(std::time::SystemTime::now());
    if !state.queue_labels.refresh_due(now) {
        return;
    }
    let state = state.clone();
    tokio::spawn(async move {
        let Ok(ids) = state.store.event_ids().await else {
            return;
        };
        let m = &state.metrics;
        for gone in state.queue_labels.set_defined(&ids) {
            let _ = m.queue_waiting.remove_label_values(&[&gone]);
            let _ = m.queue_prequeue.remove_label_values(&[&gone]);
            let _ = m.queue_active.remove_label_values(&[&gone]);
            let _ = m.queue_admitted.remove_label_values(&[&gone]);
            let _ = m.queue_admission_factor.remove_label_values(&[&gone]);
        }
        let s = plain_settings(&state);
        for id in ids.iter().take(crate::queue::labels::MAX_EVENT_LABELS) {
            let Ok(Some((_, f))) = state.store.event_get(&s, id).await else {
                continue;
            };
            let l = [id.as_str()];
            m.queue_waiting.with_label_values(&l).set(f.waiting as i64);
            m.queue_prequeue
                .with_label_values(&l)
                .set(f.prequeue as i64);
            m.queue_active.with_label_values(&l).set(f.active as i64);
            m.queue_admitted
                .with_label_values(&l)
                .set(f.admitted_total as i64);
            m.queue_admission_factor
                .with_label_values(&l)
                .set(f.admission_factor);
        }
    });
}

/// The waiting room fails closed: without the store there is no fair order to keep.
fn store_failed(state: &AppState, op: &str, e: StoreError) -> ApiError {
    state.metrics.store_errors.with_label_values(&[op]).inc();
    tracing::warn!(error = %e, store.op = op, "waiting-room store call failed");
    ApiError::UpstreamUnavailable("the waiting room is unavailable, retry shortly")
}

fn record(state: &SharedState, stats: &QueueStats) {
    refresh_event_metrics(state);
    if stats.event_id.is_empty() {
        return;
    }
    let label = state.queue_labels.label(&stats.event_id);
    // `other` aggregates many events: a last-seen count of one of them would mislead.
    if label != crate::queue::labels::OTHER {
        state
            .metrics
            .queue_waiting
            .with_label_values(&[label])
            .set(stats.waiting as i64);
    }
    if stats.expired > 0 {
        state
            .metrics
            .queue_expirations
            .with_label_values(&[label])
            .inc_by(stats.expired);
    }
}
