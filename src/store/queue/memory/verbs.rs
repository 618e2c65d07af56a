//! The in-memory twin of each queue script: join, status, enter, leave, and the
//! reservation-token claim and settle, with the same answers as the Lua.
use super::{MemoryQueues, Reservation, Seat};
use crate::queue::events::EventState;
use crate::queue::polling;
use crate::queue::{EventTag, ReservationToken, WaitingToken};
use crate::store::queue::{
    Claim, Entry, JoinState, Joined, Left, MEMORY_MAX_PLACES, Place, QueueSettings, QueueStats,
    Status,
};

impl MemoryQueues {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn join(
        &self,
        s: &QueueSettings,
        tag: EventTag,
        event_id: &str,
        user: Option<&str>,
        fresh: [u8; 16],
        rank: u64,
        now: u64,
    ) -> Joined {
        self.maybe_drop_idle(s, now);
        let (defined, e) = self.effective(s, &tag, now);
        let refused = |state| Joined {
            token: WaitingToken::new(tag, 0, fresh),
            position: None,
            state,
            new_place: false,
            stats: QueueStats::default(),
        };
        if !defined && !s.events_open {
            return refused(JoinState::NotFound);
        }
        if e.state == EventState::Closed {
            return refused(JoinState::Closed);
        }
        let Some(queue) = self.get_or_create(s, tag, event_id, now) else {
            return refused(JoinState::Full);
        };
        self.with_event(s, &e, queue, now, |q, expired| {
            let existing = user
                .and_then(|u| q.users.get(u).copied())
                .filter(|seq| q.seats.contains_key(seq));
            let (seq, new_place) = match existing {
                Some(seq) => {
                    let seen = q.seats.get(&seq).map(|x| x.seen_ms).unwrap_or(now);
                    if q.seats.get(&seq).is_some_and(|x| x.admitted.is_none()) {
                        q.touch(seq, seen.max(now));
                    }
                    (seq, false)
                }
                None if q.seats.len() >= MEMORY_MAX_PLACES => {
                    return Joined {
                        token: WaitingToken::new(tag, 0, fresh),
                        position: None,
                        state: JoinState::Full,
                        new_place: false,
                        stats: q.stats(expired),
                    };
                }
                None => {
                    q.last += 1;
                    let seq = q.last;
                    let rank = q.opened_at_seq.is_none().then_some(rank);
                    q.seats.insert(
                        seq,
                        Seat {
                            secret: fresh,
                            seen_ms: now,
                            user: user.map(str::to_owned),
                            rank,
                            admitted: None,
                        },
                    );
                    if let Some(r) = rank {
                        q.prequeue.insert((r, seq));
                    }
                    q.by_seen.insert((now, seq));
                    if let Some(u) = user {
                        q.users.insert(u.to_owned(), seq);
                    }
                    (seq, true)
                }
            };
            let seat = q.seats.get(&seq);
            let secret = seat.map(|s| s.secret).unwrap_or(fresh);
            let admitted = seat.is_some_and(|s| s.admitted.is_some());
            let position = if admitted { Some(0) } else { q.position(seq) };
            let state = match position {
                _ if admitted => JoinState::Admitted,
                None => JoinState::Prequeue,
                Some(0) => JoinState::Ready,
                Some(_) => JoinState::Waiting,
            };
            Joined {
                token: WaitingToken::new(tag, seq, secret),
                position,
                state,
                new_place,
                stats: q.stats(expired),
            }
        })
    }

    pub(crate) fn status(
        &self,
        s: &QueueSettings,
        token: &WaitingToken,
        now: u64,
    ) -> (Status, QueueStats) {
        let (_, e) = self.effective(s, &token.tag, now);
        let expired_status = Status {
            place: Place::Expired,
            eta_rate: 0.0,
            event_state: e.state,
        };
        let Some(queue) = self.get(&token.tag) else {
            return (expired_status, QueueStats::default());
        };
        if e.state == EventState::Closed {
            let q = queue.lock().unwrap_or_else(|e| e.into_inner());
            return (
                expired_status,
                QueueStats {
                    event_id: q.event_id.clone(),
                    ..QueueStats::default()
                },
            );
        }
        self.with_event(s, &e, queue, now, |q, mut expired| {
            let before = q.seats.len();
            let place = match q.lookup(s, token, now) {
                None => Place::Expired,
                Some(seq) => {
                    let seat = q.seats.get(&seq);
                    let admitted = seat.and_then(|x| x.admitted.as_ref()).map(|(exp, _)| *exp);
                    let seen = seat.map(|x| x.seen_ms).unwrap_or(now);
                    match (admitted, polling::poll(seen, now)) {
                        (Some(exp), _) => Place::Admitted {
                            ttl_ms: exp.saturating_sub(now),
                        },
                        (None, Err(retry_ms)) => Place::Limited { retry_ms },
                        (None, Ok(v)) => {
                            q.touch(seq, v);
                            match q.position(seq) {
                                None => Place::Prequeue {
                                    opens_in_ms: e.opens_ms.saturating_sub(now),
                                },
                                Some(0) => Place::Ready,
                                Some(p) => Place::Waiting(p),
                            }
                        }
                    }
                }
            };
            expired += (before - q.seats.len()) as u64;
            let eta_rate = match e.state {
                EventState::Open if q.total >= 10 => q.window.rate(now),
                EventState::Open => e.eff(),
                _ => 0.0,
            };
            (
                Status {
                    place,
                    eta_rate,
                    event_state: e.state,
                },
                q.stats(expired),
            )
        })
    }

    pub(crate) fn enter(
        &self,
        s: &QueueSettings,
        token: &WaitingToken,
        caller: Option<&str>,
        rtok: ReservationToken,
        now: u64,
    ) -> (Entry, QueueStats) {
        let (_, e) = self.effective(s, &token.tag, now);
        let Some(queue) = self.get(&token.tag) else {
            return (Entry::Expired, QueueStats::default());
        };
        if e.state == EventState::Closed {
            return (Entry::Expired, QueueStats::default());
        }
        self.with_event(s, &e, queue, now, |q, mut expired| {
            let before = q.seats.len();
            let entry = match q.lookup(s, token, now) {
                None => Entry::Expired,
                Some(seq) if q.seats.get(&seq).is_some_and(|x| x.admitted.is_some()) => {
                    Entry::Admitted
                }
                Some(seq) => match q.position(seq) {
                    None | Some(1..) => {
                        let seen = q.seats.get(&seq).map(|x| x.seen_ms).unwrap_or(now);
                        q.touch(seq, seen.max(now));
                        Entry::Waiting(q.position(seq).unwrap_or(0))
                    }
                    Some(0) => {
                        let owner = q.seats.get(&seq).and_then(|s| s.user.clone());
                        match (owner, caller) {
                            (Some(o), Some(c)) if o != c => Entry::OtherUser,
                            (owner, _) => {
                                let exp = now + s.reservation_ttl_ms;
                                if let Some(seat) = q.seats.get_mut(&seq) {
                                    let seen = seat.seen_ms;
                                    let rank = seat.rank.take();
                                    seat.admitted = Some((exp, rtok.as_str().to_owned()));
                                    q.by_seen.remove(&(seen, seq));
                                    if let Some(r) = rank {
                                        q.prequeue.remove(&(r, seq));
                                    }
                                }
                                q.ready = q.ready.saturating_sub(1);
                                q.sessions.insert((exp, seq));
                                q.reservations.insert(
                                    rtok.as_str().to_owned(),
                                    Reservation {
                                        user: owner.unwrap_or_default(),
                                        seq,
                                        expires_ms: exp,
                                        in_use: false,
                                    },
                                );
                                Entry::Granted(rtok)
                            }
                        }
                    }
                },
            };
            expired += (before - q.seats.len()) as u64;
            (entry, q.stats(expired))
        })
    }

    pub(crate) fn leave(
        &self,
        s: &QueueSettings,
        token: &WaitingToken,
        now: u64,
    ) -> (Left, QueueStats) {
        let (_, e) = self.effective(s, &token.tag, now);
        let Some(queue) = self.get(&token.tag) else {
            return (Left::Left, QueueStats::default());
        };
        self.with_event(s, &e, queue, now, |q, expired| {
            if let Some(seq) = q.lookup(s, token, now) {
                let seat = q.seats.get(&seq);
                let admitted = seat.is_some_and(|x| x.admitted.is_some());
                let seen = seat.map(|x| x.seen_ms).unwrap_or(now);
                if !admitted && let Err(retry_ms) = polling::poll(seen, now) {
                    return (Left::Limited { retry_ms }, q.stats(expired));
                }
                q.drop_seat(seq);
            }
            (Left::Left, q.stats(expired))
        })
    }

    pub(crate) fn claim(
        &self,
        tag: EventTag,
        token: &ReservationToken,
        caller: &str,
        now: u64,
    ) -> Claim {
        let closed = self
            .defs
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(&tag)
            .is_some_and(|d| d.def.state == EventState::Closed);
        let Some(queue) = self.get(&tag) else {
            return Claim::Missing;
        };
        if closed {
            return Claim::Missing;
        }
        let mut q = queue.lock().unwrap_or_else(|e| e.into_inner());
        match q.reservations.get_mut(token.as_str()) {
            None => Claim::Missing,
            Some(r) if r.expires_ms <= now => Claim::Missing,
            Some(r) if r.user != caller => Claim::OtherUser,
            Some(r) if r.in_use => Claim::InUse,
            Some(r) => {
                r.in_use = true;
                Claim::Claimed
            }
        }
    }

    pub(crate) fn settle(&self, tag: EventTag, token: &ReservationToken, caller: &str, used: bool) {
        let Some(queue) = self.get(&tag) else {
            return;
        };
        let mut q = queue.lock().unwrap_or_else(|e| e.into_inner());
        let ours =
            matches!(q.reservations.get(token.as_str()), Some(r) if r.in_use && r.user == caller);
        if !ours {
            return;
        }
        if used {
            if let Some(r) = q.reservations.remove(token.as_str()) {
                // The session ends: its active slot and its place are freed.
                q.drop_seat(r.seq);
            }
        } else if let Some(r) = q.reservations.get_mut(token.as_str()) {
            r.in_use = false;
        }
    }
}
