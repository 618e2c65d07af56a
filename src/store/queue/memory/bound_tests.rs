//! The memory twin's bounds: abandoned events go, new events beyond the bound are refused,
//! the prequeue opens in rank order, and ready plus admitted stays under `max_active`.
#![allow(clippy::unwrap_used)]
use super::*;
use crate::queue::ReservationToken;
use crate::queue::events::EventPatch;
use crate::store::queue::{Entry, JoinState, Place};

fn settings(ttl_ms: u64) -> QueueSettings {
    QueueSettings {
        rate: 0.001,
        heartbeat_ttl_ms: ttl_ms,
        reservation_ttl_ms: 1_000,
        events_open: true,
        observation: None,
    }
}

#[test]
fn memory_drops_abandoned_events_once_their_last_member_expired() {
    // 100,000 one-person events, a 1 s heartbeat, one join per 0.1 ms of store time: the
    // structure never holds much more than a heartbeat's worth of events, and returns to
    // empty once the last member expired.
    let q = MemoryQueues::default();
    let s = settings(1_000);
    let mut peak = 0;
    for i in 0..100_000u64 {
        let now = 1_000_000 + i / 10;
        let id = format!("ev-{i}");
        let j = q.join(&s, EventTag::of(&id), &id, None, [1; 16], 0, now);
        assert_eq!(j.state, JoinState::Waiting);
        if i % 5_000 == 0 {
            peak = peak.max(q.entry_counts().0);
        }
    }
    assert!(peak <= 25_000, "peak {peak} live events");
    // After the TTL, the next call's idle sweep frees everything.
    let later = 1_000_000 + 10_000 + 5_000;
    q.join(&s, EventTag::of("probe"), "probe", None, [2; 16], 0, later);
    let (events, places, tokens) = q.entry_counts();
    assert_eq!((events, places, tokens), (1, 1, 0));
    assert_eq!(q.events.load(Ordering::Relaxed), 1);
}

#[test]
fn memory_refuses_new_events_beyond_its_bound_instead_of_growing() {
    let q = MemoryQueues::default();
    let s = settings(3_600_000);
    for i in 0..MEMORY_MAX_EVENTS {
        let id = format!("e{i}");
        q.join(&s, EventTag::of(&id), &id, None, [1; 16], 0, 1_000);
    }
    let j = q.join(
        &s,
        EventTag::of("one-more"),
        "one-more",
        None,
        [1; 16],
        0,
        1_000,
    );
    assert_eq!(j.state, JoinState::Full);
    assert_eq!(q.entry_counts().0, MEMORY_MAX_EVENTS);
}

#[test]
fn memory_prequeue_opens_in_rank_order_then_fifo() {
    let q = MemoryQueues::default();
    let s = settings(3_600_000);
    let tag = EventTag::of("p");
    let patch = EventPatch {
        opens_at_ms: Some(Some(10_000)),
        admission_rps: Some(1000.0),
        ..EventPatch::default()
    };
    q.put_definition(&s, "p", &patch, 0).unwrap();
    let ranks = [50u64, 10, 40, 20, 30];
    let people: Vec<_> = ranks
        .iter()
        .map(|r| q.join(&s, tag, "p", None, [*r as u8; 16], *r, 1_000))
        .collect();
    assert!(people.iter().all(|p| p.state == JoinState::Prequeue));
    let late = q.join(&s, tag, "p", None, [9; 16], 1, 10_500);
    assert_eq!(late.position, Some(6));
    // Positions follow the ranks, not the join order.
    for (p, want) in people.iter().zip([5, 1, 4, 2, 3]) {
        assert_eq!(q.status(&s, &p.token, 10_500).0.place, Place::Waiting(want));
    }
    // 3 ms at 1000/s: the three best ranks are ready.
    let st: Vec<_> = people
        .iter()
        .map(|p| q.status(&s, &p.token, 10_503).0.place)
        .collect();
    assert_eq!(
        st.iter().filter(|p| **p == Place::Ready).count(),
        3,
        "{st:?}"
    );
    assert_eq!(st[1], Place::Ready);
    assert_eq!(st[0], Place::Waiting(2));
}

#[test]
fn memory_caps_ready_plus_admitted_and_frees_slots_as_sessions_end() {
    let q = MemoryQueues::default();
    let s = settings(3_600_000);
    let tag = EventTag::of("c");
    let patch = EventPatch {
        max_active: Some(Some(2)),
        admission_rps: Some(1000.0),
        ..EventPatch::default()
    };
    q.put_definition(&s, "c", &patch, 0).unwrap();
    let people: Vec<_> = (0..5u8)
        .map(|i| q.join(&s, tag, "c", None, [i; 16], 0, 1_000))
        .collect();
    let ready = |now| {
        people
            .iter()
            .filter(|p| q.status(&s, &p.token, now).0.place == Place::Ready)
            .count()
    };
    assert_eq!(ready(2_000), 2);
    let (e, _) = q.enter(
        &s,
        &people[0].token,
        None,
        ReservationToken::generate(),
        2_100,
    );
    assert!(matches!(e, Entry::Granted(_)));
    // Still two active (one admitted, one ready): nobody new.
    assert_eq!(ready(2_200), 1);
    // The session ends on leave: one more is admitted.
    q.leave(&s, &people[0].token, 2_300);
    assert_eq!(ready(2_400), 2);
    // And on token expiry (reservation TTL 1 s).
    q.enter(
        &s,
        &people[1].token,
        None,
        ReservationToken::generate(),
        2_500,
    );
    assert_eq!(ready(2_600), 1);
    assert_eq!(ready(3_600), 2);
}
