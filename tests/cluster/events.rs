//! Events operators steer (SPEC §5a) on the 3-master cluster with three gateway processes: the
//! admin scope, a change made on one replica followed by another within 1 s, pause, close, a
//! gateway restart keeping the definitions, the prequeue's fair opening and the active cap. Every
//! script keeps the event's keys under its hash tag; the list of events is one more key.
use std::time::{Duration, Instant, SystemTime};

use futures_util::StreamExt;
use serde_json::{Value, json};

use crate::harness::{RedisCluster, Replicas, SERIAL};
use crate::helpers::{GatewayProcess, assert_uniform_shuffle, bearer_with};

const ENV: &[(&str, &str)] = &[("QUEUE_ADMISSION_RPS", "0.01")];

fn admin() -> String {
    bearer_with("ops", json!({"scp": ["gateway:admin"]}))
}

async fn put(r: &Replicas, i: usize, event: &str, body: Value) -> Value {
    let res = r
        .client
        .put(r.url(i, &format!("/admin/v1/events/{event}")))
        .header("authorization", admin())
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200, "PUT {event} {body}");
    res.json().await.unwrap()
}

async fn get(r: &Replicas, i: usize, event: &str) -> Value {
    let res = r
        .client
        .get(r.url(i, &format!("/admin/v1/events/{event}")))
        .header("authorization", admin())
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200, "GET {event}");
    res.json().await.unwrap()
}

async fn join(r: &Replicas, i: usize, event: &str) -> Value {
    let res = r
        .client
        .post(r.url(i, "/api/v1/queue/join"))
        .json(&json!({"event_id": event}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 202);
    res.json().await.unwrap()
}

fn token(v: &Value) -> String {
    v["waiting_token"].as_str().unwrap().to_owned()
}

/// One poll, waiting out the token's own bucket like a client following the contract.
async fn status(r: &Replicas, i: usize, t: &str) -> Value {
    loop {
        let res = r
            .client
            .get(r.url(i, &format!("/api/v1/queue/status?token={t}")))
            .send()
            .await
            .unwrap();
        if res.status() == 429 {
            tokio::time::sleep(Duration::from_secs(1)).await;
            continue;
        }
        assert_eq!(res.status(), 200);
        return res.json().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operators_steer_events_across_replicas_and_restarts() {
    let _serial = SERIAL.lock().await;
    let cluster = tokio::task::spawn_blocking(RedisCluster::start)
        .await
        .unwrap();
    let mut r = Replicas::start(3, &cluster, ENV).await;

    // No scope: 403, nothing defined.
    let res = r
        .client
        .put(r.url(0, "/admin/v1/events/tour"))
        .header("authorization", r.bearer("fan"))
        .json(&json!({"admission_rps": 5}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 403);

    // A rate change on replica 0 reaches replica 1 within a second.
    put(&r, 0, "tour", json!({"admission_rps": 0.01})).await;
    let mut tokens = Vec::new();
    for i in 0..40 {
        tokens.push(token(&join(&r, i, "tour").await));
    }
    assert_eq!(status(&r, 1, &tokens[39]).await["position"], 40);
    put(&r, 0, "tour", json!({"admission_rps": 200})).await;
    let changed = Instant::now();
    while status(&r, 1, &tokens[39]).await["status"] != "ready" {
        assert!(changed.elapsed() < Duration::from_secs(1), "not followed");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Pause on replica 2 holds every place seen from the others.
    put(&r, 2, "hold", json!({"admission_rps": 0.01})).await;
    let mut held = Vec::new();
    for i in 0..10 {
        held.push(token(&join(&r, i, "hold").await));
    }
    put(
        &r,
        2,
        "hold",
        json!({"state": "paused", "admission_rps": 500}),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(1200)).await;
    for (i, t) in held.iter().enumerate() {
        let s = status(&r, i + 1, t).await;
        assert_eq!(
            (s["status"].clone(), s["position"].clone()),
            (json!("waiting"), json!(i + 1))
        );
        assert_eq!(s["eta_sec"], Value::Null);
    }

    // Close on replica 1 expires every token at once, on every replica.
    put(&r, 1, "hold", json!({"state": "closed"})).await;
    for (i, t) in held.iter().enumerate() {
        assert_eq!(status(&r, i, t).await["status"], "expired");
    }
    let res = r
        .client
        .post(r.url(0, "/api/v1/queue/join"))
        .json(&json!({"event_id": "hold"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 410);

    // A restarted gateway reads the same definitions.
    let old = r.gateways.remove(0);
    drop(old);
    r.gateways.push(GatewayProcess::start(&r.env).await);
    let n = r.len();
    r.wait_ready(n - 1, Duration::from_secs(20)).await;
    let d = get(&r, n - 1, "tour").await;
    assert_eq!(d["admission_rps"], 200.0, "{d}");
    assert_eq!(get(&r, n - 1, "hold").await["state"], "closed");
    let list: Value = r
        .client
        .get(r.url(n - 1, "/admin/v1/events"))
        .header("authorization", admin())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(list["events"].as_array().unwrap().len(), 2, "{list}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_prequeue_joins_over_three_replicas_open_shuffled_then_fifo() {
    let _serial = SERIAL.lock().await;
    let cluster = tokio::task::spawn_blocking(RedisCluster::start)
        .await
        .unwrap();
    let r = Replicas::start(3, &cluster, ENV).await;
    let n = 1000usize;
    let opens = SystemTime::now() + Duration::from_secs(10);
    let opens_at = humantime::format_rfc3339_millis(opens).to_string();
    put(&r, 0, "drop", json!({"opens_at": opens_at})).await;
    let r = &r;
    let joined: Vec<Value> = futures_util::stream::iter(0..n)
        .map(|i| join(r, i, "drop"))
        .buffer_unordered(16)
        .collect()
        .await;
    assert!(SystemTime::now() < opens, "joins took too long");
    assert!(joined.iter().all(|j| j["status"] == "prequeue"));
    tokio::time::sleep(
        opens.duration_since(SystemTime::now()).unwrap_or_default() + Duration::from_millis(300),
    )
    .await;
    let mut late = Vec::new();
    for i in 0..10 {
        let j = join(r, i, "drop").await;
        assert_eq!(j["position_hint"], (n + i + 1) as u64, "{j}");
        late.push(token(&j));
    }
    let mut pairs: Vec<(u64, u64)> = futures_util::stream::iter(joined.iter().enumerate())
        .map(|(i, j)| async move {
            let t = token(j);
            let seq = gateway_api::queue::WaitingToken::parse(&t).unwrap().seq;
            (
                seq,
                status(r, i + 1, &t).await["position"].as_u64().unwrap(),
            )
        })
        .buffer_unordered(16)
        .collect()
        .await;
    pairs.sort();
    let positions: Vec<u64> = pairs.iter().map(|(_, p)| *p).collect();
    assert_uniform_shuffle(&positions);
    for (i, t) in late.iter().enumerate() {
        assert_eq!(status(r, i, t).await["position"], (n + i + 1) as u64);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_active_holds_over_three_replicas_and_resumes_as_sessions_end() {
    let _serial = SERIAL.lock().await;
    let cluster = tokio::task::spawn_blocking(RedisCluster::start)
        .await
        .unwrap();
    let r = Replicas::start(3, &cluster, ENV).await;
    let cap = 20u64;
    put(
        &r,
        0,
        "cap",
        json!({"admission_rps": 100, "max_active": cap}),
    )
    .await;
    let mut tokens = Vec::new();
    for i in 0..50 {
        tokens.push(token(&join(&r, i, "cap").await));
    }
    let mut done = vec![false; tokens.len()];
    let mut max_seen = 0;
    let started = Instant::now();
    while done.iter().any(|d| !d) {
        assert!(
            started.elapsed() < Duration::from_secs(25),
            "stuck: {done:?}"
        );
        let mut ready = Vec::new();
        for (i, t) in tokens.iter().enumerate() {
            if done[i] {
                continue;
            }
            let s = status(&r, i, t).await;
            if s["status"] == "ready" {
                ready.push(i);
            } else {
                assert_eq!(s["status"], "waiting", "{s}");
            }
        }
        let active = get(&r, 1, "cap").await["active"].as_u64().unwrap();
        max_seen = max_seen.max(ready.len() as u64).max(active);
        assert!(
            ready.len() as u64 <= cap && active <= cap,
            "{} ready, {active} active",
            ready.len()
        );
        // Sessions end by leave, five per round, on any replica.
        for i in ready.into_iter().take(5) {
            let res = r
                .client
                .delete(r.url(i + 2, &format!("/api/v1/queue/leave?token={}", tokens[i])))
                .send()
                .await
                .unwrap();
            assert_eq!(res.status(), 200);
            done[i] = true;
        }
        tokio::time::sleep(Duration::from_millis(600)).await;
    }
    assert_eq!(max_seen, cap);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn adaptive_admission_follows_upstream_health_over_three_replicas() {
    let _serial = SERIAL.lock().await;
    let cluster = tokio::task::spawn_blocking(RedisCluster::start)
        .await
        .unwrap();
    let r = Replicas::start(3, &cluster, ENV).await;
    let rate = 20.0;
    put(
        &r,
        0,
        "surge",
        json!({"admission_rps": rate, "adaptive": true}),
    )
    .await;
    let r = &r;
    let tokens: Vec<Value> = futures_util::stream::iter(0..2000)
        .map(|i| join(r, i, "surge"))
        .buffer_unordered(16)
        .collect()
        .await;
    let probe = token(&tokens[tokens.len() - 1]);
    let stop = std::sync::atomic::AtomicBool::new(false);
    let bearer = r.bearer("buyer");
    // Creates at ~20/s and a queue poll every 500 ms, round robin over the replicas.
    let traffic = async {
        let mut i = 0usize;
        while !stop.load(std::sync::atomic::Ordering::Relaxed) {
            let _ = r
                .client
                .post(r.url(i, "/api/v1/reservations/create"))
                .header("authorization", &bearer)
                .header("idempotency-key", uuid::Uuid::new_v4().to_string())
                .json(&json!({"event_id": "surge", "seats": 1}))
                .send()
                .await;
            if i.is_multiple_of(10) {
                let _ = r
                    .client
                    .get(r.url(i, &format!("/api/v1/queue/status?token={probe}")))
                    .send()
                    .await;
            }
            i += 1;
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    let check = async {
        // Admissions per second over the last 3 s, from the store's admitted total.
        let mut samples: std::collections::VecDeque<(Instant, u64)> = Default::default();
        let mut sample = async || {
            let g = get(r, 1, "surge").await;
            let now = Instant::now();
            samples.push_back((now, g["admitted_total"].as_u64().unwrap()));
            while samples.len() > 1 && now - samples[0].0 > Duration::from_secs(3) {
                samples.pop_front();
            }
            let (t0, n0) = samples[0];
            let secs = (now - t0).as_secs_f64();
            let measured = if secs >= 2.5 {
                (samples.back().unwrap().1 - n0) as f64 / secs
            } else {
                f64::NAN
            };
            (measured, g["admission_factor"].as_f64().unwrap())
        };
        tokio::time::sleep(Duration::from_secs(1)).await;
        r.reservation.set_status(503);
        let failing = Instant::now();
        loop {
            let (m, f) = sample().await;
            if m <= rate * 0.5 {
                eprintln!(
                    "cluster, 503s: {m:.1}/s (factor {f}) after {:.1} s",
                    failing.elapsed().as_secs_f64()
                );
                break;
            }
            assert!(
                failing.elapsed() < Duration::from_secs(15),
                "{m}/s, factor {f}"
            );
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        r.reservation.set_status(0);
        let healed = Instant::now();
        loop {
            let (m, f) = sample().await;
            if f == 1.0 && m >= rate * 0.85 {
                eprintln!(
                    "cluster, healthy: {m:.1}/s after {:.1} s",
                    healed.elapsed().as_secs_f64()
                );
                break;
            }
            assert!(
                healed.elapsed() < Duration::from_secs(60),
                "{m}/s, factor {f}"
            );
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
    };
    tokio::join!(traffic, check);
}
