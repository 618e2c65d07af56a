//! The waiting room (SPEC §5): FIFO positions and eta, admission shared across replicas, leave and
//! heartbeat expiry, enter, reservation tokens, identities, malformed input, and no KEYS/SCAN.
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use serde_json::{Value, json};

use crate::helpers::{
    AppOptions, Backend, GatewayProcess, JwksServer, RedisServer, TestApp, TestKey, assert_error,
    base_env, json, jwt_env, spawn_app_with,
};
use crate::store_contract;

async fn app(b: Backend, env: &[(&str, &str)]) -> TestApp {
    let mut opts = AppOptions::new(b);
    for (k, v) in env {
        opts = opts.env(k, *v);
    }
    spawn_app_with(opts).await
}

async fn join(app: &TestApp, body: Value, bearer: Option<&str>) -> Value {
    let mut req = app.post("/api/v1/queue/join").json(&body);
    if let Some(sub) = bearer {
        req = req.header("authorization", app.bearer(sub));
    }
    let res = req.send().await.unwrap();
    assert_eq!(res.status(), 202);
    json(res).await
}

/// Polls `token` once, as a client following the contract: a 429 from the token's own poll
/// bucket (5 at once, 2 per second) is waited out with its `Retry-After` and retried.
async fn status(app: &TestApp, token: &str) -> Value {
    loop {
        let res = app
            .get(&format!("/api/v1/queue/status?token={token}"))
            .send()
            .await
            .unwrap();
        if res.status() == 429 {
            let wait: u64 = res.headers()["retry-after"]
                .to_str()
                .unwrap()
                .parse()
                .unwrap();
            assert!((1..=3).contains(&wait), "Retry-After {wait}");
            tokio::time::sleep(Duration::from_secs(wait)).await;
            continue;
        }
        assert_eq!(res.status(), 200);
        return json(res).await;
    }
}

fn enter_req(app: &TestApp, token: &str, bearer: Option<&str>) -> reqwest::RequestBuilder {
    let mut req = app.post_json("/api/v1/queue/enter", &json!({"waiting_token": token}));
    if let Some(sub) = bearer {
        req = req.header("authorization", app.bearer(sub));
    }
    req
}

/// Polls until `token` is ready (or panics after `limit`).
async fn wait_ready(app: &TestApp, token: &str, limit: Duration) {
    let deadline = Instant::now() + limit;
    loop {
        if status(app, token).await["status"] == "ready" {
            return;
        }
        assert!(Instant::now() < deadline, "never became ready");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

fn token_of(v: &Value) -> String {
    v["waiting_token"].as_str().unwrap().to_owned()
}

store_contract!(
    thousand_joins_get_positions_in_order_with_honest_eta,
    leave_and_heartbeat_expiry_move_people_forward,
    enter_is_refused_while_waiting_and_granted_when_ready,
    malformed_tokens_are_400_and_unknown_ones_expired,
    joining_again_keeps_the_place_and_namespaces_stay_apart,
    reservation_token_works_once_for_its_event_and_user,
    concurrent_creates_cannot_both_spend_one_token,
);

async fn thousand_joins_get_positions_in_order_with_honest_eta(b: Backend) {
    // One admission per 100 s: nobody is admitted during the test. The event is defined, so
    // its metrics carry its name (SPEC §5a).
    let app = app(b, &[("QUEUE_ADMISSION_RPS", "0.01")]).await;
    let res = app
        .client
        .put(app.url("/admin/v1/events/big-show"))
        .header(
            "authorization",
            app.bearer_with("ops", json!({"scope": "gateway:admin"})),
        )
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let mut tokens = Vec::new();
    for i in 0..1000u64 {
        let j = join(&app, json!({"event_id": "big-show"}), None).await;
        assert_eq!(j["position_hint"], i + 1, "{j}");
        assert_eq!(j["status"], "waiting");
        assert_eq!(j["event_id"], "big-show");
        tokens.push(token_of(&j));
    }
    let statuses: Vec<Value> = futures_util::stream::iter(tokens.iter())
        .map(|t| status(&app, t))
        .buffered(16)
        .collect()
        .await;
    for (i, s) in statuses.iter().enumerate() {
        let ahead = i as u64;
        assert_eq!(s["status"], "waiting", "{s}");
        assert_eq!(s["position"], ahead + 1, "{s}");
        assert_eq!(s["eta_sec"], ahead * 100, "ceil(ahead / 0.01): {s}");
        assert_eq!(s["event_id"], "big-show");
    }
    let metrics = app.metrics_text().await;
    assert!(
        metrics.contains("queue_joins_total{event=\"big-show\"} 1000"),
        "joins counted"
    );
    assert!(metrics.contains("queue_waiting{event=\"big-show\"} 1000"));
}

async fn leave_and_heartbeat_expiry_move_people_forward(b: Backend) {
    let app = app(
        b,
        &[
            ("QUEUE_ADMISSION_RPS", "0.01"),
            ("QUEUE_HEARTBEAT_TTL_SECONDS", "2"),
        ],
    )
    .await;
    let mut t = Vec::new();
    for _ in 0..4 {
        t.push(token_of(&join(&app, json!({"event_id": "ev"}), None).await));
    }
    // Leave frees the place at once.
    let res = app
        .client
        .delete(app.url(&format!("/api/v1/queue/leave?token={}", t[1])))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(json(res).await, json!({"status": "left"}));
    assert_eq!(status(&app, &t[1]).await["status"], "expired");
    assert_eq!(status(&app, &t[2]).await["position"], 2);
    assert_eq!(status(&app, &t[3]).await["position"], 3);

    // Only the last person keeps polling: the two ahead stop and expire (TTL 2 s; the Redis
    // sweep may take up to one more heartbeat bucket).
    let started = Instant::now();
    loop {
        let s = status(&app, &t[3]).await;
        if s["position"] == 1 {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(15), "{s}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert!(started.elapsed() >= Duration::from_millis(1500));
    assert_eq!(status(&app, &t[0]).await["status"], "expired");
    assert_eq!(status(&app, &t[2]).await["status"], "expired");
    assert_eq!(status(&app, &t[3]).await["eta_sec"], 0);
    let metrics = app.metrics_text().await;
    assert!(
        metrics.contains("queue_expirations_total{event=\"other\"} 2"),
        "undefined events count as other: {metrics}"
    );
}

async fn enter_is_refused_while_waiting_and_granted_when_ready(b: Backend) {
    let app = app(b, &[("QUEUE_ADMISSION_RPS", "2")]).await;
    let first = token_of(&join(&app, json!({"event_id": "ev"}), None).await);
    let mut last = String::new();
    for _ in 0..40 {
        last = token_of(&join(&app, json!({"event_id": "ev"}), None).await);
    }
    let res = enter_req(&app, &last, None).send().await.unwrap();
    let body = assert_error(res, 403, "FORBIDDEN").await;
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("waiting")
    );

    wait_ready(&app, &first, Duration::from_secs(10)).await;
    let s = status(&app, &first).await;
    assert_eq!(
        (s["position"].clone(), s["eta_sec"].clone()),
        (json!(0), json!(0))
    );
    let key = uuid::Uuid::new_v4().to_string();
    let enter_with = |key: String| {
        app.post("/api/v1/queue/enter")
            .header("idempotency-key", key)
            .json(&json!({"waiting_token": first}))
            .send()
    };
    let res = enter_with(key.clone()).await.unwrap();
    assert_eq!(res.status(), 200);
    let granted = json(res).await;
    assert_eq!(granted["admission"], "granted");
    assert_eq!(granted["ttl_sec"], 30);
    assert_eq!(granted["reservation_token"].as_str().unwrap().len(), 22);
    // Enter is idempotent: a retry with the same key replays the same grant.
    let res = enter_with(key).await.unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["idempotent-replayed"], "true");
    assert_eq!(json(res).await, granted);
    let res = app
        .post("/api/v1/queue/enter")
        .json(&json!({"waiting_token": first}))
        .send()
        .await
        .unwrap();
    assert_error(res, 400, "IDEMPOTENCY_REQUIRED").await;
    // The waiting token is spent: entering again is refused, and its status is `admitted` with
    // the reservation token's remaining life (SPEC §5), not `expired`.
    let res = enter_req(&app, &first, None).send().await.unwrap();
    let body = assert_error(res, 403, "FORBIDDEN").await;
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("admitted")
    );
    let s = status(&app, &first).await;
    assert_eq!(s["status"], "admitted", "{s}");
    let ttl = s["reservation_token_ttl_sec"].as_u64().unwrap();
    assert!((25..=30).contains(&ttl), "{s}");
    assert!(s["poll_after_sec"].as_u64().unwrap() >= 1, "{s}");
    let metrics = app.metrics_text().await;
    assert!(metrics.contains("queue_admissions_total{event=\"other\"} 1"));
}

async fn malformed_tokens_are_400_and_unknown_ones_expired(b: Backend) {
    let app = app(b, &[("QUEUE_ADMISSION_RPS", "0.01")]).await;
    let real = token_of(&join(&app, json!({"event_id": "ev"}), None).await);
    for bad in ["abc", "%2F%2E%2E", &format!("{real}A"), &real[..42]] {
        let res = app
            .get(&format!("/api/v1/queue/status?token={bad}"))
            .send()
            .await
            .unwrap();
        assert_error(res, 400, "BAD_REQUEST").await;
        let res = app
            .client
            .delete(app.url(&format!("/api/v1/queue/leave?token={bad}")))
            .send()
            .await
            .unwrap();
        assert_error(res, 400, "BAD_REQUEST").await;
        let res = enter_req(&app, bad, None).send().await.unwrap();
        assert_error(res, 400, "BAD_REQUEST").await;
    }
    let res = app.get("/api/v1/queue/status").send().await.unwrap();
    assert_error(res, 400, "BAD_REQUEST").await;

    // Well formed but unknown, or tampered (one character of the secret changed): expired.
    let mut tampered = real.clone().into_bytes();
    tampered[40] = if tampered[40] == b'A' { b'B' } else { b'A' };
    let tampered = String::from_utf8(tampered).unwrap();
    for unknown in ["A".repeat(43), tampered] {
        let s = status(&app, &unknown).await;
        assert_eq!(s["status"], "expired", "{s}");
        assert_eq!(s["position"], 0);
        let res = enter_req(&app, &unknown, None).send().await.unwrap();
        let body = assert_error(res, 403, "FORBIDDEN").await;
        assert!(
            body["error"]["message"]
                .as_str()
                .unwrap()
                .contains("expired")
        );
    }
    assert_eq!(status(&app, &real).await["status"], "waiting");

    // Bodies: malformed JSON, bad event ids, wrong types.
    for body in [
        "{not json",
        r#"{"event_id": "../etc"}"#,
        r#"{"event_id": ""}"#,
        r#"{"event_id": 42}"#,
        r#"{"user_id": "u"}"#,
        r#"{"event_id": "ev", "user_id": ""}"#,
    ] {
        let res = app
            .post("/api/v1/queue/join")
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        assert_error(res, 400, "BAD_REQUEST").await;
    }
    let res = app
        .post("/api/v1/queue/enter")
        .header("idempotency-key", uuid::Uuid::new_v4().to_string())
        .header("content-type", "application/json")
        .body("{")
        .send()
        .await
        .unwrap();
    assert_error(res, 400, "BAD_REQUEST").await;
}

async fn joining_again_keeps_the_place_and_namespaces_stay_apart(b: Backend) {
    let app = app(b, &[("QUEUE_ADMISSION_RPS", "0.01")]).await;
    let alice = join(&app, json!({"event_id": "ev"}), Some("alice")).await;
    let bob = join(&app, json!({"event_id": "ev", "user_id": "bob"}), None).await;
    join(&app, json!({"event_id": "ev"}), None).await;
    let alice_again = join(&app, json!({"event_id": "ev"}), Some("alice")).await;
    let bob_again = join(&app, json!({"event_id": "ev", "user_id": "bob"}), None).await;
    assert_eq!(alice_again["waiting_token"], alice["waiting_token"]);
    assert_eq!(alice_again["position_hint"], 1);
    assert_eq!(bob_again["waiting_token"], bob["waiting_token"]);
    assert_eq!(bob_again["position_hint"], 2);
    // A body claiming "alice" gets a place of its own, behind: never the verified alice's.
    let claimed = join(&app, json!({"event_id": "ev", "user_id": "alice"}), None).await;
    assert_ne!(claimed["waiting_token"], alice["waiting_token"]);
    assert_eq!(claimed["position_hint"], 4);
    // A verified user wins over a body user_id: bearer alice + body "mallory" is alice.
    let both = join(
        &app,
        json!({"event_id": "ev", "user_id": "mallory"}),
        Some("alice"),
    )
    .await;
    assert_eq!(both["waiting_token"], alice["waiting_token"]);
    // A bearer that is sent must be valid: optional auth never downgrades a bad one to anonymous.
    let res = app
        .post("/api/v1/queue/join")
        .header("authorization", "Bearer not-a-jwt")
        .json(&json!({"event_id": "ev"}))
        .send()
        .await
        .unwrap();
    assert_error(res, 401, "UNAUTHENTICATED").await;
    // Anonymous joins are new places every time; other events are other queues.
    let anon = join(&app, json!({"event_id": "ev"}), None).await;
    assert_eq!(anon["position_hint"], 5);
    let other = join(&app, json!({"event_id": "other-ev"}), Some("alice")).await;
    assert_eq!(other["position_hint"], 1);
    assert_ne!(other["waiting_token"], alice["waiting_token"]);
}

/// Joins as `sub`, waits until ready, enters, returns the reservation token.
async fn admitted(app: &TestApp, event: &str, sub: &str) -> String {
    let token = token_of(&join(app, json!({"event_id": event}), Some(sub)).await);
    wait_ready(app, &token, Duration::from_secs(10)).await;
    let res = enter_req(app, &token, Some(sub)).send().await.unwrap();
    assert_eq!(res.status(), 200);
    json(res).await["reservation_token"]
        .as_str()
        .unwrap()
        .to_owned()
}

fn create(app: &TestApp, sub: &str, body: Value) -> reqwest::RequestBuilder {
    app.post_json("/api/v1/reservations/create", &body)
        .header("authorization", app.bearer(sub))
}

async fn reservation_token_works_once_for_its_event_and_user(b: Backend) {
    let app = app(
        b,
        &[
            ("QUEUE_ADMISSION_RPS", "1000"),
            ("QUEUE_REQUIRE_ADMISSION", "true"),
        ],
    )
    .await;
    let rtok = admitted(&app, "ev", "alice").await;

    // Without a token, with a malformed one, another user's, or for another event: 403.
    let res = create(&app, "alice", json!({"event_id": "ev", "seats": 1}))
        .send()
        .await
        .unwrap();
    assert_error(res, 403, "FORBIDDEN").await;
    let res = create(
        &app,
        "alice",
        json!({"event_id": "ev", "reservation_token": "nope"}),
    )
    .send()
    .await
    .unwrap();
    assert_error(res, 403, "FORBIDDEN").await;
    let res = create(
        &app,
        "bob",
        json!({"event_id": "ev", "reservation_token": rtok}),
    )
    .send()
    .await
    .unwrap();
    assert_error(res, 403, "FORBIDDEN").await;
    let res = create(
        &app,
        "alice",
        json!({"event_id": "ev-2", "reservation_token": rtok}),
    )
    .send()
    .await
    .unwrap();
    assert_error(res, 403, "FORBIDDEN").await;
    assert_eq!(app.reservation.count(), 0, "nothing reached the upstream");

    // A failed create (upstream 500) leaves the token valid.
    app.reservation.set_status(500);
    let res = create(
        &app,
        "alice",
        json!({"event_id": "ev", "reservation_token": rtok}),
    )
    .send()
    .await
    .unwrap();
    assert_eq!(res.status(), 500);
    app.reservation.set_status(0);

    // The header works as well as the body field; the token is spent by the first success.
    let res = create(&app, "alice", json!({"event_id": "ev", "seats": 1}))
        .header("x-reservation-token", &rtok)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    let res = create(
        &app,
        "alice",
        json!({"event_id": "ev", "reservation_token": rtok}),
    )
    .send()
    .await
    .unwrap();
    let body = assert_error(res, 403, "FORBIDDEN").await;
    assert!(body["error"]["message"].as_str().unwrap().contains("used"));

    // A token granted to an anonymous joiner never passes for a verified caller.
    let anon = token_of(&join(&app, json!({"event_id": "ev"}), None).await);
    wait_ready(&app, &anon, Duration::from_secs(10)).await;
    let res = enter_req(&app, &anon, None).send().await.unwrap();
    let anon_rtok = json(res).await["reservation_token"].clone();
    let res = create(
        &app,
        "alice",
        json!({"event_id": "ev", "reservation_token": anon_rtok}),
    )
    .send()
    .await
    .unwrap();
    assert_error(res, 403, "FORBIDDEN").await;

    // Another verified user cannot enter alice's place.
    let token = token_of(&join(&app, json!({"event_id": "ev"}), Some("alice")).await);
    wait_ready(&app, &token, Duration::from_secs(10)).await;
    let res = enter_req(&app, &token, Some("bob")).send().await.unwrap();
    assert_error(res, 403, "FORBIDDEN").await;
}

async fn concurrent_creates_cannot_both_spend_one_token(b: Backend) {
    let app = app(
        b,
        &[
            ("QUEUE_ADMISSION_RPS", "1000"),
            ("QUEUE_REQUIRE_ADMISSION", "true"),
        ],
    )
    .await;
    let rtok = admitted(&app, "ev", "alice").await;
    app.reservation.set_delay(Duration::from_millis(300));
    let statuses: Vec<u16> = futures_util::future::join_all((0..10).map(|_| {
        create(
            &app,
            "alice",
            json!({"event_id": "ev", "reservation_token": rtok}),
        )
        .send()
    }))
    .await
    .into_iter()
    .map(|r| r.unwrap().status().as_u16())
    .collect();
    assert_eq!(
        statuses.iter().filter(|s| **s == 201).count(),
        1,
        "{statuses:?}"
    );
    assert_eq!(
        statuses.iter().filter(|s| **s == 403).count(),
        9,
        "{statuses:?}"
    );
    assert_eq!(app.reservation.count(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admission_is_shared_by_two_replicas_at_the_configured_rate_in_join_order() {
    let redis = tokio::task::spawn_blocking(RedisServer::start)
        .await
        .unwrap();
    let loopback = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
    let reservation = gateway_api::mock_upstream::MockUpstream::start(
        gateway_api::mock_upstream::Role::Reservation,
        loopback,
    )
    .await
    .unwrap();
    let payment = gateway_api::mock_upstream::MockUpstream::start(
        gateway_api::mock_upstream::Role::Payment,
        loopback,
    )
    .await
    .unwrap();
    let jwks = JwksServer::start(&TestKey::defaults()).await;
    let mut env = base_env(&reservation, &payment, Some(&redis.addr()));
    env.extend(jwt_env(&jwks));
    env.push(("QUEUE_ADMISSION_RPS".into(), "20".into()));
    let a = GatewayProcess::start(&env).await;
    let b = GatewayProcess::start(&env).await;
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    // Both replicas must be on Redis before the clock starts.
    for g in [&a, &b] {
        let deadline = Instant::now() + Duration::from_secs(10);
        while client.get(g.url("/readyz")).send().await.unwrap().status() != 200 {
            assert!(Instant::now() < deadline, "replica never ready");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    let n = 300u64;
    let t0 = Instant::now();
    let mut tokens = Vec::new();
    for i in 0..n {
        let g = if i % 2 == 0 { &a } else { &b };
        let res = client
            .post(g.url("/api/v1/queue/join"))
            .json(&json!({"event_id": "on-sale"}))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 202);
        tokens.push(token_of(&json(res).await));
    }
    tokio::time::sleep(Duration::from_secs(5).saturating_sub(t0.elapsed())).await;

    // Snapshot: the last person's position tells how many were admitted.
    let sent = t0.elapsed().as_secs_f64();
    let s = json(
        client
            .get(a.url(&format!(
                "/api/v1/queue/status?token={}",
                tokens[n as usize - 1]
            )))
            .send()
            .await
            .unwrap(),
    )
    .await;
    let received = t0.elapsed().as_secs_f64();
    let admitted = n - s["position"].as_u64().unwrap();
    eprintln!("admitted {admitted} in {sent:.2}..{received:.2} s at 20/s over two replicas");
    assert!(
        admitted as f64 >= 20.0 * sent - 20.0 && admitted as f64 <= 20.0 * received + 20.0,
        "admitted {admitted} in {sent:.2}..{received:.2} s"
    );
    assert!((80..=140).contains(&admitted), "{admitted}");

    // In join order: the ready ones are exactly a prefix, the rest wait in order.
    let mut ready = 0;
    let mut seen_waiting = false;
    for (i, t) in tokens.iter().enumerate() {
        let g = if i % 2 == 0 { &b } else { &a };
        let s = json(
            client
                .get(g.url(&format!("/api/v1/queue/status?token={t}")))
                .send()
                .await
                .unwrap(),
        )
        .await;
        match s["status"].as_str().unwrap() {
            "ready" => {
                assert!(
                    !seen_waiting,
                    "person {i} ready after someone still waiting"
                );
                ready += 1;
            }
            "waiting" => seen_waiting = true,
            other => panic!("{other}"),
        }
    }
    assert!(ready >= admitted, "{ready} < {admitted}");

    // No KEYS or SCAN on any request path.
    let stats = redis.cli(&["INFO", "commandstats"]);
    assert!(stats.contains("cmdstat_evalsha"), "{stats}");
    for cmd in ["cmdstat_keys:", "cmdstat_scan:"] {
        assert!(!stats.contains(cmd), "{cmd} was issued: {stats}");
    }
    // Every key of the event shares one hash tag, and every key has a TTL.
    let info = redis.cli(&["INFO", "keyspace"]);
    let line = info.lines().find(|l| l.starts_with("db0:")).unwrap();
    let keys: u64 = line["db0:keys=".len()..]
        .split(',')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    let expires: u64 = line
        .split("expires=")
        .nth(1)
        .unwrap()
        .split(',')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(keys, expires, "every key has a TTL: {line}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_down_fails_closed() {
    let mut app = spawn_app_with(AppOptions::new(Backend::Redis)).await;
    let token = token_of(&join(&app, json!({"event_id": "ev"}), None).await);
    app.redis.as_mut().unwrap().stop();
    let res = app
        .post("/api/v1/queue/join")
        .json(&json!({"event_id": "ev"}))
        .send()
        .await
        .unwrap();
    assert_error(res, 503, "UPSTREAM_UNAVAILABLE").await;
    let res = app
        .get(&format!("/api/v1/queue/status?token={token}"))
        .send()
        .await
        .unwrap();
    assert_error(res, 503, "UPSTREAM_UNAVAILABLE").await;
}

/// The scale benchmark (SPEC §5): a million waiting in one event on a real redis-server.
/// Reports Redis memory per waiting person and join/status latency. Slow: run it by hand with
/// `cargo test --release --test api queue::million_waiting -- --ignored --nocapture`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore]
async fn million_waiting_memory_and_latency() {
    use gateway_api::store::Store;
    use gateway_api::store::queue::QueueSettings;

    let n: usize = std::env::var("QUEUE_BENCH_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let redis = tokio::task::spawn_blocking(RedisServer::start)
        .await
        .unwrap();
    let cfg = gateway_api::config::RedisConfig {
        urls: vec![format!("redis://{}", redis.addr())],
        cluster: false,
        password: None,
        db: 0,
        tls: false,
    };
    let store = Store::from_config(Some(&cfg)).unwrap();
    while store.ping().await.is_err() {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let s = QueueSettings {
        rate: 0.001,
        heartbeat_ttl_ms: 3_600_000,
        reservation_ttl_ms: 30_000,
        events_open: true,
        observation: None,
    };
    let used = |r: &RedisServer| -> u64 {
        let info = r.cli(&["INFO", "memory"]);
        info.lines()
            .find_map(|l| l.strip_prefix("used_memory:"))
            .unwrap()
            .trim()
            .parse()
            .unwrap()
    };
    // Create the event (and load the scripts) before measuring.
    store.queue_join(&s, "bench", None).await.unwrap();
    let before = used(&redis);

    let mut join_lat: Vec<Duration> = Vec::with_capacity(n);
    let mut tokens = Vec::with_capacity(n);
    let store2 = store.clone();
    let mut results = futures_util::stream::iter(0..n - 1)
        .map(|_| {
            let store = store2.clone();
            async move {
                let t = Instant::now();
                let j = loop {
                    // A shared, loaded machine: a 250 ms store timeout now and then is retried.
                    match store.queue_join(&s, "bench", None).await {
                        Ok(j) => break j,
                        Err(e) => eprintln!("retrying a join: {e}"),
                    }
                };
                (t.elapsed(), j.token)
            }
        })
        .buffer_unordered(32);
    while let Some((d, tok)) = results.next().await {
        join_lat.push(d);
        if tokens.len() < 10_000 {
            tokens.push(tok);
        }
    }
    let after = used(&redis);
    let per_person = (after - before) as f64 / (n - 1) as f64;

    let mut status_lat = Vec::new();
    for t in tokens.iter().take(10_000) {
        let at = Instant::now();
        while store.queue_status(&s, t).await.is_err() {}
        status_lat.push(at.elapsed());
    }
    // Identified users cost a user-map entry more.
    let before_users = used(&redis);
    let users: usize = std::env::var("QUEUE_BENCH_USERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    let digests: Vec<String> = (0..users)
        .map(|i| {
            gateway_api::queue::Identity::Verified(format!("user-{i}"))
                .digest()
                .unwrap()
        })
        .collect();
    futures_util::stream::iter(digests.iter())
        .map(|d| {
            let store = store.clone();
            async move {
                while let Err(e) = store.queue_join(&s, "bench", Some(d)).await {
                    eprintln!("retrying a join: {e}");
                }
            }
        })
        .buffer_unordered(32)
        .collect::<Vec<_>>()
        .await;
    let per_user = (used(&redis) - before_users) as f64 / users as f64;

    let pct = |v: &mut Vec<Duration>, p: f64| {
        v.sort();
        v[((v.len() as f64 * p) as usize).min(v.len() - 1)]
    };
    eprintln!(
        "{n} waiting: {per_person:.1} bytes/person anonymous, then {users} identified: {per_user:.1} bytes/person; \
         join p50 {:?} p99 {:?}; status p50 {:?} p99 {:?} (concurrency 32, one event)",
        pct(&mut join_lat, 0.5),
        pct(&mut join_lat, 0.99),
        pct(&mut status_lat, 0.5),
        pct(&mut status_lat, 0.99),
    );
    let stats = redis.cli(&["INFO", "commandstats"]);
    assert!(!stats.contains("cmdstat_keys:") && !stats.contains("cmdstat_scan:"));
}
