//! The waiting room's `Store` methods: each either calls the in-memory twin or runs its Lua
//! script and decodes the reply (one round trip, on the Redis server clock).
use super::scripts::{CLAIM, ENTER, JOIN, LEAVE, SETTLE, STATUS, event_invocation};
use super::{
    Claim, Entry, JoinState, Joined, Left, Place, QueueSettings, QueueStats, Status, now_ms,
    prequeue_rank,
};
use crate::queue::events::EventState;
use crate::queue::token::{decode_secret, encode_secret};
use crate::queue::{EventTag, ReservationToken, WaitingToken};
use crate::store::redis::ScriptCall;
use crate::store::{Store, StoreError};

impl Store {
    /// Joins `event_id` as `user` (a digest from `Identity::digest`, `None` = anonymous).
    pub async fn queue_join(
        &self,
        s: &QueueSettings,
        event_id: &str,
        user: Option<&str>,
    ) -> Result<Joined, StoreError> {
        let tag = EventTag::of(event_id);
        let fresh = WaitingToken::fresh_secret();
        let rank = prequeue_rank();
        match self {
            Store::Memory(m) => Ok(m.queue.join(s, tag, event_id, user, fresh, rank, now_ms())),
            Store::Redis(r) => {
                let (seq, secret, position, waiting, expired, new_place, state): (
                    u64,
                    String,
                    i64,
                    u64,
                    u64,
                    u8,
                    String,
                ) = r
                    .eval(
                        event_invocation(&JOIN, &tag, s)
                            .arg(event_id)
                            .arg(user.unwrap_or(""))
                            .arg(encode_secret(&fresh))
                            .arg(if s.events_open { "1" } else { "0" })
                            .arg(rank),
                    )
                    .await?;
                let state = match state.as_str() {
                    "waiting" => JoinState::Waiting,
                    "prequeue" => JoinState::Prequeue,
                    "ready" => JoinState::Ready,
                    "admitted" => JoinState::Admitted,
                    "not_found" => JoinState::NotFound,
                    "closed" => JoinState::Closed,
                    other => return Err(StoreError::Protocol(format!("join state {other:?}"))),
                };
                let secret = if matches!(state, JoinState::NotFound | JoinState::Closed) {
                    fresh
                } else {
                    decode_secret(&secret)
                        .ok_or_else(|| StoreError::Protocol("bad waiting-token secret".into()))?
                };
                Ok(Joined {
                    token: WaitingToken::new(tag, seq, secret),
                    position: u64::try_from(position).ok(),
                    state,
                    new_place: new_place == 1,
                    stats: QueueStats {
                        event_id: event_id.to_owned(),
                        waiting,
                        expired,
                    },
                })
            }
        }
    }

    /// Where `token` stands; a poll is the heartbeat, limited per token.
    pub async fn queue_status(
        &self,
        s: &QueueSettings,
        token: &WaitingToken,
    ) -> Result<(Status, QueueStats), StoreError> {
        match self {
            Store::Memory(m) => Ok(m.queue.status(s, token, now_ms())),
            Store::Redis(r) => {
                let (state, position, event_id, waiting, expired, rate, extra, estate): (
                    String,
                    u64,
                    String,
                    u64,
                    u64,
                    String,
                    i64,
                    String,
                ) = r
                    .eval(
                        event_invocation(&STATUS, &token.tag, s)
                            .arg(token.seq)
                            .arg(token.secret()),
                    )
                    .await?;
                let extra = extra.max(0) as u64;
                let place = match state.as_str() {
                    "prequeue" => Place::Prequeue { opens_in_ms: extra },
                    "waiting" => Place::Waiting(position),
                    "ready" => Place::Ready,
                    "admitted" => Place::Admitted { ttl_ms: extra },
                    "expired" => Place::Expired,
                    "limited" => Place::Limited { retry_ms: extra },
                    other => return Err(StoreError::Protocol(format!("queue state {other:?}"))),
                };
                Ok((
                    Status {
                        place,
                        eta_rate: rate.parse().unwrap_or(0.0),
                        event_state: EventState::parse(&estate).unwrap_or(EventState::Open),
                    },
                    QueueStats {
                        event_id,
                        waiting,
                        expired,
                    },
                ))
            }
        }
    }

    /// Trades a ready place for a reservation token bound to the event and the joiner. `caller`
    /// is the verified caller's digest, if any: a verified user's place cannot be entered by
    /// another verified user.
    pub async fn queue_enter(
        &self,
        s: &QueueSettings,
        token: &WaitingToken,
        caller: Option<&str>,
    ) -> Result<(Entry, QueueStats), StoreError> {
        let rtok = ReservationToken::generate();
        match self {
            Store::Memory(m) => Ok(m.queue.enter(s, token, caller, rtok, now_ms())),
            Store::Redis(r) => {
                let (state, position, event_id, waiting, expired): (String, u64, String, u64, u64) =
                    r.eval(
                        event_invocation(&ENTER, &token.tag, s)
                            .arg(token.seq)
                            .arg(token.secret())
                            .arg(caller.unwrap_or(""))
                            .arg(rtok.as_str())
                            .arg(s.reservation_ttl_ms),
                    )
                    .await?;
                let entry = match state.as_str() {
                    "granted" => Entry::Granted(rtok),
                    "waiting" => Entry::Waiting(position),
                    "other" => Entry::OtherUser,
                    "admitted" => Entry::Admitted,
                    _ => Entry::Expired,
                };
                Ok((
                    entry,
                    QueueStats {
                        event_id,
                        waiting,
                        expired,
                    },
                ))
            }
        }
    }

    /// Frees the place at once, or ends the session of an entered one (unknown tokens are fine:
    /// leaving twice is leaving).
    pub async fn queue_leave(
        &self,
        s: &QueueSettings,
        token: &WaitingToken,
    ) -> Result<(Left, QueueStats), StoreError> {
        match self {
            Store::Memory(m) => Ok(m.queue.leave(s, token, now_ms())),
            Store::Redis(r) => {
                let (state, event_id, waiting, expired, retry): (String, String, u64, u64, u64) = r
                    .eval(
                        event_invocation(&LEAVE, &token.tag, s)
                            .arg(token.seq)
                            .arg(token.secret()),
                    )
                    .await?;
                let left = if state == "limited" {
                    Left::Limited { retry_ms: retry }
                } else {
                    Left::Left
                };
                Ok((
                    left,
                    QueueStats {
                        event_id,
                        waiting,
                        expired,
                    },
                ))
            }
        }
    }

    /// Checks a reservation token for `event_id` and the caller (a digest) and marks it in use,
    /// so two concurrent creates cannot both pass. Settle it with [`Store::reservation_settle`].
    pub async fn reservation_claim(
        &self,
        event_id: &str,
        token: &ReservationToken,
        caller: &str,
    ) -> Result<Claim, StoreError> {
        let tag = EventTag::of(event_id);
        match self {
            Store::Memory(m) => Ok(m.queue.claim(tag, token, caller, now_ms())),
            Store::Redis(r) => {
                let out: String = r
                    .eval(
                        ScriptCall::new(&CLAIM, &[tag.key_prefix()])
                            .arg(token.as_str())
                            .arg(caller),
                    )
                    .await?;
                Ok(match out.as_str() {
                    "ok" => Claim::Claimed,
                    "other" => Claim::OtherUser,
                    "in_use" => Claim::InUse,
                    _ => Claim::Missing,
                })
            }
        }
    }

    /// After the create: `used` (upstream said 2xx) consumes the token and ends the session,
    /// otherwise it is released and stays valid until its TTL.
    pub async fn reservation_settle(
        &self,
        event_id: &str,
        token: &ReservationToken,
        caller: &str,
        used: bool,
    ) -> Result<(), StoreError> {
        let tag = EventTag::of(event_id);
        match self {
            Store::Memory(m) => {
                m.queue.settle(tag, token, caller, used);
                Ok(())
            }
            Store::Redis(r) => {
                let _: i64 = r
                    .eval(
                        ScriptCall::new(&SETTLE, &[tag.key_prefix()])
                            .arg(token.as_str())
                            .arg(caller)
                            .arg(if used { "1" } else { "0" }),
                    )
                    .await?;
                Ok(())
            }
        }
    }
}
