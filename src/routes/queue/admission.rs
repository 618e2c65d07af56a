//! The waiting-room admission reservation create needs when `QUEUE_REQUIRE_ADMISSION=true`
//! (SPEC §5): a reservation token for the body's `event_id` and the caller, claimed before the
//! create is forwarded and settled with the upstream's answer.
use http::request::Parts;
use serde::Deserialize;

use super::store_failed;
use crate::error::ApiError;
use crate::headers::X_RESERVATION_TOKEN;
use crate::middleware::auth::Caller;
use crate::queue::{Identity, ReservationToken};
use crate::routes::input::{self, valid_id};
use crate::state::AppState;
use crate::store::queue::Claim;

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

fn caller(parts: &Parts) -> Option<&str> {
    parts.extensions.get::<Caller>().map(Caller::user_id)
}
