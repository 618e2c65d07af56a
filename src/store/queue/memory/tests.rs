//! The memory twin's queue semantics: FIFO positions, admission at the rate, known users,
//! reservation tokens claimed once.
#![allow(clippy::unwrap_used)]
use super::*;
use crate::queue::ReservationToken;
use crate::store::queue::{Claim, Entry, Place};

fn settings(rate: f64, ttl_ms: u64) -> QueueSettings {
    QueueSettings {
        rate,
        heartbeat_ttl_ms: ttl_ms,
        reservation_ttl_ms: 30_000,
        events_open: true,
        observation: None,
    }
}

#[test]
fn memory_positions_are_fifo_and_close_up_when_people_leave_or_expire() {
    let q = MemoryQueues::default();
    let s = settings(0.001, 10_000);
    let tag = EventTag::of("e");
    let people: Vec<_> = (0..5)
        .map(|i| q.join(&s, tag, "e", None, [i as u8; 16], 0, 0))
        .collect();
    for (i, p) in people.iter().enumerate() {
        assert_eq!(p.position, Some(i as u64 + 1));
    }
    q.leave(&s, &people[1].token, 10);
    assert_eq!(
        q.status(&s, &people[2].token, 20).0.place,
        Place::Waiting(2)
    );
    // Only person 4 keeps polling; 0, 2 and 3 stop and expire after the TTL.
    q.status(&s, &people[4].token, 9_000);
    let (place, stats) = q.status(&s, &people[4].token, 12_000);
    assert_eq!(place.place, Place::Waiting(1));
    assert_eq!(stats.expired, 3);
    assert_eq!(
        q.status(&s, &people[0].token, 12_001).0.place,
        Place::Expired
    );
}

#[test]
fn memory_admits_at_the_rate_in_order() {
    let q = MemoryQueues::default();
    let s = settings(10.0, 600_000);
    let tag = EventTag::of("e");
    let people: Vec<_> = (0..50)
        .map(|i| q.join(&s, tag, "e", None, [i as u8; 16], 0, 0))
        .collect();
    // 2 s later: 20 admitted, the first 20.
    let ready: Vec<bool> = people
        .iter()
        .map(|p| q.status(&s, &p.token, 2_000).0.place == Place::Ready)
        .collect();
    assert_eq!(ready.iter().filter(|r| **r).count(), 20);
    assert!(ready[..20].iter().all(|r| *r));
}

#[test]
fn memory_known_users_keep_their_place() {
    let q = MemoryQueues::default();
    let s = settings(0.001, 600_000);
    let tag = EventTag::of("e");
    let a = q.join(&s, tag, "e", Some("alice"), [1; 16], 0, 0);
    q.join(&s, tag, "e", None, [2; 16], 0, 0);
    let again = q.join(&s, tag, "e", Some("alice"), [3; 16], 0, 5);
    assert_eq!(again.token, a.token);
    assert_eq!(again.position, Some(1));
    assert!(!again.new_place);
}

#[test]
fn memory_reservation_tokens_are_claimed_once() {
    let q = MemoryQueues::default();
    let s = settings(1000.0, 600_000);
    let tag = EventTag::of("e");
    let a = q.join(&s, tag, "e", Some("alice"), [1; 16], 0, 0);
    let (entry, _) = q.enter(
        &s,
        &a.token,
        Some("alice"),
        ReservationToken::generate(),
        1_000,
    );
    let Entry::Granted(rtok) = entry else {
        panic!("{entry:?}")
    };
    assert_eq!(q.claim(tag, &rtok, "bob", 1_001), Claim::OtherUser);
    assert_eq!(q.claim(tag, &rtok, "alice", 1_001), Claim::Claimed);
    assert_eq!(q.claim(tag, &rtok, "alice", 1_001), Claim::InUse);
    q.settle(tag, &rtok, "alice", false);
    assert_eq!(q.claim(tag, &rtok, "alice", 1_002), Claim::Claimed);
    q.settle(tag, &rtok, "alice", true);
    assert_eq!(q.claim(tag, &rtok, "alice", 1_003), Claim::Missing);
}
