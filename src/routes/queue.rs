//! The waiting room's routes (SPEC §5): join, status, enter, leave, with the bodies they take and
//! answer; `admission.rs` is the check reservation create runs when
//! `QUEUE_REQUIRE_ADMISSION=true`. Thin: parse and validate, one store call, map the outcome to a
//! typed answer or an `ApiError`, count it. The rules live in `queue/` and `store/queue.rs`.
use axum::extract::State;
use axum::{Extension, Json};
use http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::SharedState;
use super::input::{self, Query, valid_id};
use crate::error::ApiError;
use crate::middleware::auth::Caller;
use crate::openapi::schemas::{ErrorBody, IdempotencyKeyHeader};
use crate::queue::events::EventState;
use crate::queue::polling::poll_after_secs;
use crate::queue::{Identity, WaitingToken, eta_secs};
use crate::state::AppState;
use crate::store::StoreError;
use crate::store::queue::{Entry, JoinState, Left, Place, QueueSettings, QueueStats, Status};

pub mod admission;

/// The longest `user_id` a body may claim.
const MAX_USER_ID_LEN: usize = 256;

#[derive(Deserialize, ToSchema)]
pub struct QueueJoinRequest {
    #[schema(pattern = "^[A-Za-z0-9_-]{1,128}$", example = "concert-2026")]
    event_id: String,
    /// Used only without a valid bearer token; a verified `sub` is a different namespace.
    user_id: Option<String>,
}

// Keys in alphabetical order, as every answer of the gateway's own (see `routes`).
#[derive(Serialize, ToSchema)]
pub struct QueueJoined {
    event_id: String,
    /// 1-based position at the moment of joining (0 for a returning user who is ready;
    /// `null` in the prequeue, whose order is drawn at the opening).
    #[schema(required = true)]
    position_hint: Option<u64>,
    /// `waiting`, `prequeue` (before `opens_at`), or for a returning user `ready` / `admitted`.
    #[schema(example = "waiting")]
    status: &'static str,
    waiting_token: String,
}

/// The waiting token as a query parameter.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct TokenQuery {
    /// The `waiting_token` from join.
    token: String,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum QueueState {
    Prequeue,
    Waiting,
    Ready,
    Admitted,
    Expired,
}

// Keys in alphabetical order, as every answer of the gateway's own (see `routes`).
#[derive(Serialize, ToSchema)]
pub struct QueueStatus {
    /// `ceil(people ahead / admission rate)` (the configured rate until 10 people were
    /// admitted, then the rate measured over the last 60 s); seconds until the opening in the
    /// prequeue; 0 once ready; `null` while the event is paused.
    #[schema(required = true)]
    eta_sec: Option<u64>,
    /// `null` when the token names no event this gateway knows (an unknown or long-gone token).
    #[schema(required = true)]
    event_id: Option<String>,
    /// When to poll next (1-30 s, always well inside the heartbeat TTL); `null` once expired.
    #[schema(required = true)]
    poll_after_sec: Option<u64>,
    /// People ahead + 1 among those still waiting; 0 once ready or admitted; `null` in the
    /// prequeue.
    #[schema(required = true)]
    position: Option<u64>,
    /// `admitted` only: the reservation token's remaining life.
    #[serde(skip_serializing_if = "Option::is_none")]
    reservation_token_ttl_sec: Option<u64>,
    status: QueueState,
}

#[derive(Deserialize, ToSchema)]
pub struct QueueEnterRequest {
    waiting_token: String,
}

#[derive(Serialize, ToSchema)]
pub struct QueueAdmission {
    #[schema(example = "granted")]
    admission: &'static str,
    /// Bound to the event and the user; send it with the reservation create.
    reservation_token: String,
    /// `QUEUE_RESERVATION_TOKEN_TTL_SECONDS`.
    #[schema(example = 30)]
    ttl_sec: u64,
}

#[derive(Serialize, ToSchema)]
pub struct QueueLeft {
    #[schema(example = "left")]
    status: &'static str,
}

/// Join an event's waiting room
///
/// The user is the bearer token's `sub` when a valid token is sent, else `user_id` from the
/// body, else a fresh anonymous identity. Joining again returns the same token and place.
#[utoipa::path(post, path = "/api/v1/queue/join", tag = "queue", operation_id = "queue_join",
    request_body = QueueJoinRequest,
    responses(
        (status = 202, description = "In the queue (or the prequeue, before the event's `opens_at`)", body = QueueJoined),
        (status = 400, description = "`BAD_REQUEST`: malformed JSON or a bad `event_id`", body = ErrorBody),
        (status = 404, description = "`EVENT_NOT_FOUND`: `QUEUE_EVENTS_OPEN=false` and no operator defined the event", body = ErrorBody),
        (status = 410, description = "`EVENT_CLOSED`: the event is closed", body = ErrorBody),
    ),
    security((), ("bearerAuth" = [])))]
pub async fn join(
    State(state): State<SharedState>,
    caller: Option<Extension<Caller>>,
    input::Json(body): input::Json<QueueJoinRequest>,
) -> Result<(StatusCode, Json<QueueJoined>), ApiError> {
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
    let body = QueueJoined {
        waiting_token: joined.token.encode(),
        event_id: event_id.to_owned(),
        position_hint: joined.position,
        status,
    };
    Ok((StatusCode::ACCEPTED, Json(body)))
}

/// Poll a place in the queue (the heartbeat)
///
/// A token not polled (or entered) for `QUEUE_HEARTBEAT_TTL_SECONDS` expires. Unknown or
/// tampered tokens are `expired`, as is every token of a closed or deleted event. Not counted
/// in the per-client bucket: limited per waiting token (5 at once, 2 per second; 429 with
/// `Retry-After` beyond).
#[utoipa::path(get, path = "/api/v1/queue/status", tag = "queue", operation_id = "queue_status",
    params(TokenQuery),
    responses(
        (status = 200, description = "Where the caller stands", body = QueueStatus),
        (status = 400, description = "`BAD_REQUEST`: malformed token (wrong length or alphabet)", body = ErrorBody),
    ))]
pub async fn status(
    State(state): State<SharedState>,
    Query(q): Query<TokenQuery>,
) -> Result<Json<QueueStatus>, ApiError> {
    let token = waiting_token(&q.token)?;
    let s = settings_for(&state, &token);
    let (st, stats) = state
        .store
        .queue_status(&s, &token)
        .await
        .map_err(|e| store_failed(&state, "queue_status", e))?;
    record(&state, &stats);
    let event_id = (!stats.event_id.is_empty()).then_some(stats.event_id);
    Ok(Json(status_body(&st, event_id, s.heartbeat_ttl_ms)?))
}

/// The status answer (SPEC §5): `eta_sec` is `ceil(people ahead / rate)` with the store's rate
/// (configured until 10 were admitted, then measured), `null` while paused or when no rate is
/// known; `poll_after_sec` follows the eta (the token's remaining life once admitted).
fn status_body(
    st: &Status,
    event_id: Option<String>,
    heartbeat_ttl_ms: u64,
) -> Result<QueueStatus, ApiError> {
    let rate = (st.event_state == EventState::Open && st.eta_rate > 0.0).then_some(st.eta_rate);
    let poll = |eta: Option<u64>| Some(poll_after_secs(eta, heartbeat_ttl_ms));
    let (status, position, eta_sec, poll_after_sec, reservation_token_ttl_sec) = match st.place {
        Place::Limited { retry_ms } => {
            return Err(ApiError::RateLimited {
                retry_after: std::time::Duration::from_millis(retry_ms),
            });
        }
        Place::Prequeue { opens_in_ms } => {
            let eta = Some(opens_in_ms.div_ceil(1000));
            (QueueState::Prequeue, None, eta, poll(eta), None)
        }
        Place::Waiting(p) => {
            let eta = rate.map(|r| eta_secs(p.saturating_sub(1), r));
            (QueueState::Waiting, Some(p), eta, poll(eta), None)
        }
        Place::Ready => (QueueState::Ready, Some(0), Some(0), poll(Some(0)), None),
        Place::Admitted { ttl_ms } => (
            QueueState::Admitted,
            Some(0),
            Some(0),
            poll(Some(ttl_ms / 1000)),
            Some(ttl_ms.div_ceil(1000)),
        ),
        Place::Expired => (QueueState::Expired, Some(0), Some(0), None, None),
    };
    Ok(QueueStatus {
        status,
        event_id,
        position,
        eta_sec,
        poll_after_sec,
        reservation_token_ttl_sec,
    })
}

/// Trade a ready waiting token for a reservation token
#[utoipa::path(post, path = "/api/v1/queue/enter", tag = "queue", operation_id = "queue_enter",
    request_body = QueueEnterRequest,
    params(IdempotencyKeyHeader),
    responses(
        (status = 200, description = "Admitted", body = QueueAdmission),
        (status = 400, description = "`BAD_REQUEST`: malformed JSON or token", body = ErrorBody),
        (status = 403, description = "`FORBIDDEN`: still waiting, or the token expired / is unknown (the message says which)", body = ErrorBody),
    ),
    security((), ("bearerAuth" = [])))]
pub async fn enter(
    State(state): State<SharedState>,
    caller: Option<Extension<Caller>>,
    input::Json(body): input::Json<QueueEnterRequest>,
) -> Result<Json<QueueAdmission>, ApiError> {
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
            Ok(Json(QueueAdmission {
                admission: "granted",
                reservation_token: rtok.as_str().to_owned(),
                ttl_sec: s.reservation_ttl_ms.div_ceil(1000),
            }))
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

/// Leave the queue; the place is freed at once (an entered session ends)
///
/// Not counted in the per-client bucket: limited per waiting token (5 at once, 2 per
/// second; 429 beyond).
#[utoipa::path(delete, path = "/api/v1/queue/leave", tag = "queue", operation_id = "queue_leave",
    params(TokenQuery),
    responses(
        (status = 200, description = "Left", body = QueueLeft),
        (status = 400, description = "`BAD_REQUEST`: malformed token", body = ErrorBody),
    ))]
pub async fn leave(
    State(state): State<SharedState>,
    Query(q): Query<TokenQuery>,
) -> Result<Json<QueueLeft>, ApiError> {
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
    Ok(Json(QueueLeft { status: "left" }))
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
