//! The invariants a scaled-out deployment must keep, as reusable checks against a set of
//! [`Replicas`]: each sends its traffic round robin over the replicas, asserts the invariant and
//! returns what it measured (for the README's "Scaling out" numbers).
//!
//! Every check speaks for its own clients: the gateways trust loopback as a proxy
//! (`TRUSTED_PROXIES`), so `X-Forwarded-For` names the client and one check's traffic never
//! spends another check's rate-limit bucket.
#![allow(dead_code)] // reports are printed; their fields document what was measured

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::harness::Replicas;

pub const RL_RPS: f64 = 5.0;
pub const RL_BURST: f64 = 10.0;
pub const QUEUE_RPS: f64 = 20.0;

/// Gateway settings for the invariant checks.
pub const ENV: &[(&str, &str)] = &[
    ("RATE_LIMIT_RPS", "5"),
    ("RATE_LIMIT_BURST", "10"),
    ("TRUSTED_PROXIES", "127.0.0.1/32"),
    ("QUEUE_ADMISSION_RPS", "20"),
    // The idempotency check slows the payment mock to 500 ms so that 30 writes overlap.
    ("UPSTREAM_PAYMENT_TIMEOUT", "2s"),
];

/// A client address no other request in this test binary uses.
pub fn fresh_client() -> String {
    static NEXT: AtomicU32 = AtomicU32::new(1);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    format!("10.{}.{}.{}", (n >> 16) & 0xff, (n >> 8) & 0xff, n & 0xff)
}

const LIMITED_ROUTE: &str = "/api/v1/reservations/r1";

#[derive(Debug)]
pub struct RateReport {
    pub allowed: u32,
    pub sent: u32,
    pub secs: f64,
    pub expected: f64,
    pub per_replica: Vec<u32>,
}

/// One client (`client`) sends a request every ~10 ms for `secs`, round robin over the
/// replicas: together they admit BURST + RPS × T (±2).
pub async fn rate_limit(r: &Replicas, client: &str, secs: f64) -> RateReport {
    let auth = r.bearer("rl-user");
    let start = Instant::now();
    let mut last_sent = start;
    let mut per_replica = vec![0u32; r.len()];
    let (mut allowed, mut sent) = (0u32, 0u32);
    while start.elapsed().as_secs_f64() < secs {
        last_sent = Instant::now();
        let i = sent as usize;
        let res = r
            .client
            .get(r.url(i, LIMITED_ROUTE))
            .header("authorization", &auth)
            .header("x-forwarded-for", client)
            .send()
            .await
            .unwrap();
        let status = res.status().as_u16();
        assert!(status < 500, "a {status} on the rate-limited route");
        if status != 429 {
            allowed += 1;
            per_replica[i % r.len()] += 1;
        }
        sent += 1;
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let t = last_sent.duration_since(start).as_secs_f64();
    let expected = RL_BURST + RL_RPS * t;
    let report = RateReport {
        allowed,
        sent,
        secs: t,
        expected,
        per_replica,
    };
    eprintln!("rate limit: {report:?}");
    assert!(
        (f64::from(allowed) - expected).abs() <= 2.0,
        "{allowed} allowed in {t:.2} s over {} replicas, expected {expected:.1} ± 2",
        r.len()
    );
    assert!(report.per_replica.iter().all(|&n| n > 0), "{report:?}");
    report
}

#[derive(Debug)]
pub struct IdempotencyReport {
    pub upstream_calls: usize,
    pub first: u16,
    pub in_progress: u32,
    pub replayed: u32,
}

/// `n` identical writes by `sub` with one Idempotency-Key at once, round robin over the replicas (the
/// upstream slowed down so they overlap): one upstream call; the others are told "in progress"
/// or get the stored answer replayed; afterwards every replica replays it.
pub async fn idempotency(r: &Replicas, n: usize, sub: &str) -> IdempotencyReport {
    let key = uuid::Uuid::new_v4().to_string();
    let auth = r.bearer(sub);
    let body = json!({"reservation_id": "r-idem", "amount": 4200, "currency": "EUR"});
    let before = r.payment.count();
    r.payment.set_delay(Duration::from_millis(500));
    let send = |i: usize| {
        r.client
            .post(r.url(i, "/api/v1/payment/intent"))
            .header("authorization", &auth)
            .header("idempotency-key", &key)
            .header("x-forwarded-for", fresh_client())
            .json(&body)
            .send()
    };
    let results = futures_util::future::join_all((0..n).map(send)).await;
    r.payment.set_delay(Duration::ZERO);
    let mut report = IdempotencyReport {
        upstream_calls: r.payment.count() - before,
        first: 0,
        in_progress: 0,
        replayed: 0,
    };
    let mut answer: Option<Value> = None;
    for res in results {
        let res = res.unwrap();
        let status = res.status().as_u16();
        let replayed = res.headers().contains_key("idempotent-replayed");
        let body: Value = res.json().await.unwrap();
        match status {
            409 => {
                assert_eq!(body["error"]["code"], "IDEMPOTENCY_IN_PROGRESS", "{body}");
                report.in_progress += 1;
            }
            200 if replayed => report.replayed += 1,
            200 => {
                assert_eq!(report.first, 0, "two requests ran the operation");
                report.first = 200;
                answer = Some(body.clone());
            }
            other => panic!("unexpected {other}: {body}"),
        }
        if status == 200 {
            assert_eq!(answer.as_ref(), Some(&body), "one answer for one key");
        }
    }
    // Afterwards each replica replays the one stored answer.
    for i in 0..r.len() {
        let res = send(i).await.unwrap();
        assert_eq!(res.status(), 200);
        assert_eq!(
            res.headers()
                .get("idempotent-replayed")
                .map(|v| v.to_str().unwrap()),
            Some("true")
        );
        let body: Value = res.json().await.unwrap();
        assert_eq!(answer.as_ref(), Some(&body));
    }
    report.upstream_calls = r.payment.count() - before;
    eprintln!(
        "idempotency: {n} concurrent over {} replicas: {report:?}",
        r.len()
    );
    assert_eq!(report.upstream_calls, 1, "{report:?}");
    assert_eq!(report.first, 200, "{report:?}");
    report
}

#[derive(Debug)]
pub struct QueueReport {
    pub joined: usize,
    pub window_secs: f64,
    pub admitted_in_window: u64,
    pub rate: f64,
    pub ready_at_end: usize,
}

async fn status(r: &Replicas, i: usize, token: &str) -> Value {
    let res = r
        .client
        .get(r.url(i, &format!("/api/v1/queue/status?token={token}")))
        .header("x-forwarded-for", fresh_client())
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    res.json().await.unwrap()
}

/// People admitted so far, from the last joiner's position (everyone ahead of them who is no
/// longer waiting was admitted), sampled at the midpoint of the status call.
async fn admitted(r: &Replicas, i: usize, tokens: &[String], t0: Instant) -> (u64, f64) {
    let sent = t0.elapsed().as_secs_f64();
    let s = status(r, i, tokens.last().unwrap()).await;
    let received = t0.elapsed().as_secs_f64();
    assert_eq!(
        s["status"], "waiting",
        "the queue must not drain during the check: {s}"
    );
    let position = s["position"].as_u64().unwrap();
    (tokens.len() as u64 - position, (sent + received) / 2.0)
}

/// `n` people join `event` through the replicas in turn; over a window of `window` the event
/// admits QUEUE_ADMISSION_RPS people per second (±5 %) whichever replica is asked, and the ready
/// ones are always a prefix of the join order.
pub async fn queue(r: &Replicas, event: &str, n: usize, window: Duration) -> QueueReport {
    let t0 = Instant::now();
    let mut tokens = Vec::with_capacity(n);
    for i in 0..n {
        let res = r
            .client
            .post(r.url(i, "/api/v1/queue/join"))
            .header("x-forwarded-for", fresh_client())
            .json(&json!({"event_id": event}))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 202);
        let v: Value = res.json().await.unwrap();
        tokens.push(v["waiting_token"].as_str().unwrap().to_owned());
    }
    let (a0, t_a) = admitted(r, 0, &tokens, t0).await;
    tokio::time::sleep(window).await;
    let (a1, t_b) = admitted(r, 1, &tokens, t0).await;
    let rate = (a1 - a0) as f64 / (t_b - t_a);

    // FIFO: polled from the back, so admissions during the pass can only make earlier people
    // ready: a ready person behind a waiting one would be a real violation.
    let mut ready = 0;
    let mut seen_ready = false;
    for (i, t) in tokens.iter().enumerate().rev() {
        let s = status(r, i, t).await;
        match s["status"].as_str().unwrap() {
            "ready" => {
                seen_ready = true;
                ready += 1;
            }
            "waiting" => assert!(!seen_ready, "person {i} waits behind someone ready"),
            other => panic!("person {i}: {other}"),
        }
    }
    let report = QueueReport {
        joined: n,
        window_secs: t_b - t_a,
        admitted_in_window: a1 - a0,
        rate,
        ready_at_end: ready,
    };
    eprintln!("waiting room: {report:?} (configured {QUEUE_RPS}/s)");
    assert!(
        (rate - QUEUE_RPS).abs() <= QUEUE_RPS * 0.05,
        "admission rate {rate:.2}/s over {} replicas, configured {QUEUE_RPS}/s: {report:?}",
        r.len()
    );
    assert!(ready as u64 >= a1, "{report:?}");
    report
}
