//! Idempotency-Key (SPEC §6): exactly one upstream call per (caller, key), replays, conflicts,
//! what is and is not stored, store faults, expiry, and several replicas on one Redis.
use std::time::Duration;

use serde_json::{Value, json};

use crate::helpers::{
    AppOptions, Backend, GatewayProcess, RedisServer, TestApp, assert_error, base_env, json,
    jwt_env, spawn_app_on, spawn_app_with,
};
use crate::store_contract;

const INTENT: &str = "/api/v1/payment/intent";
const CREATE: &str = "/api/v1/reservations/create";

fn new_key() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// A write as `user` with `key` and a JSON body.
fn write(
    app: &TestApp,
    path: &str,
    user: &str,
    key: &str,
    body: &Value,
) -> reqwest::RequestBuilder {
    app.post(path)
        .header("authorization", app.bearer(user))
        .header("idempotency-key", key)
        .json(body)
}

fn replayed(res: &reqwest::Response) -> bool {
    res.headers()
        .get("idempotent-replayed")
        .is_some_and(|v| v == "true")
}

/// Fires `n` identical requests at once through `send` and returns (status, replayed, body).
async fn burst<F, Fut>(n: usize, send: F) -> Vec<(u16, bool, Value)>
where
    F: Fn(usize) -> Fut,
    Fut: std::future::Future<Output = reqwest::Result<reqwest::Response>> + Send + 'static,
{
    let tasks: Vec<_> = (0..n)
        .map(|i| {
            let fut = send(i);
            tokio::spawn(async move {
                let res = fut.await.unwrap();
                let status = res.status().as_u16();
                let rep = replayed(&res);
                (status, rep, json(res).await)
            })
        })
        .collect();
    let mut out = Vec::new();
    for t in tasks {
        out.push(t.await.unwrap());
    }
    out
}

/// Every answer is the original (once), a replay of it, or 409 in progress.
fn assert_one_outcome(answers: &[(u16, bool, Value)], status: u16) -> Value {
    let originals: Vec<_> = answers.iter().filter(|a| a.0 == status && !a.1).collect();
    assert_eq!(originals.len(), 1, "exactly one original: {answers:?}");
    let body = originals[0].2.clone();
    for (s, rep, b) in answers {
        match (s, rep) {
            (s, true) if *s == status => assert_eq!(b, &body, "a replay is the same answer"),
            (s, false) if *s == status => {}
            (409, false) => assert_eq!(b["error"]["code"], "IDEMPOTENCY_IN_PROGRESS", "{b}"),
            other => panic!("unexpected answer {other:?}: {b}"),
        }
    }
    body
}

store_contract!(concurrent_identical_writes_reach_the_upstream_once);

async fn concurrent_identical_writes_reach_the_upstream_once(b: Backend) {
    let app = spawn_app_with(AppOptions::new(b).env("UPSTREAM_PAYMENT_TIMEOUT", "10s")).await;
    // Slow enough that the burst overlaps the first request.
    app.payment.set_delay(Duration::from_millis(500));
    let key = new_key();
    let body = json!({"reservation_id": "r1", "amount": 100});
    let answers = burst(50, |_| write(&app, INTENT, "user-1", &key, &body).send()).await;
    let original = assert_one_outcome(&answers, 200);
    assert_eq!(app.payment.count(), 1);
    assert!(answers.iter().any(|a| a.0 == 409), "the burst overlapped");

    // After completion every repeat is the replay, byte for byte.
    for _ in 0..5 {
        let res = write(&app, INTENT, "user-1", &key, &body)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200);
        assert!(replayed(&res));
        assert_eq!(res.headers()["content-type"], "application/json");
        assert_eq!(json(res).await, original);
    }
    assert_eq!(app.payment.count(), 1);
    // The upstream received the key.
    assert_eq!(
        app.payment.received()[0].headers["idempotency-key"],
        key.as_str()
    );

    let metrics = app.metrics_text().await;
    for outcome in ["new", "replayed", "in_progress"] {
        assert!(
            metrics.contains(&format!(
                "idempotency_outcomes_total{{outcome=\"{outcome}\"}}"
            )),
            "{outcome}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_sharing_one_redis_run_a_write_once() {
    let redis = tokio::task::spawn_blocking(RedisServer::start)
        .await
        .unwrap();
    // One gateway in process (its mocks are the shared upstreams) and two as separate processes.
    let slow = ("UPSTREAM_RESERVATION_TIMEOUT", "10s");
    let app = spawn_app_with(
        AppOptions::new(Backend::Redis)
            .redis(redis.addr())
            .env(slow.0, slow.1),
    )
    .await;
    app.reservation.set_delay(Duration::from_millis(500));
    let mut env = base_env(&app.reservation, &app.payment, Some(&redis.addr()));
    env.push((slow.0.to_owned(), slow.1.to_owned()));
    env.extend(jwt_env(&app.jwks));
    let a = GatewayProcess::start(&env).await;
    let b = GatewayProcess::start(&env).await;
    let urls = [a.url(CREATE), b.url(CREATE), app.url(CREATE)];
    let key = new_key();
    let token = app.bearer("user-1");
    let body = json!({"event_id": "e1", "seats": 2});
    let client = app.client.clone();
    let send = |i: usize| {
        client
            .post(&urls[i % urls.len()])
            .header("authorization", &token)
            .header("idempotency-key", &key)
            .json(&body)
            .send()
    };
    let answers = burst(50, send).await;
    let original = assert_one_outcome(&answers, 201);
    assert_eq!(app.reservation.count(), 1);

    let repeats = burst(12, send).await;
    for (status, rep, b) in repeats {
        assert_eq!((status, rep), (201, true));
        assert_eq!(b, original);
    }
    assert_eq!(app.reservation.count(), 1);
}

store_contract!(one_key_for_another_request_is_a_conflict);

async fn one_key_for_another_request_is_a_conflict(b: Backend) {
    let app = spawn_app_on(b).await;
    let key = new_key();
    let res = write(&app, INTENT, "user-1", &key, &json!({"amount": 100}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let res = write(&app, INTENT, "user-1", &key, &json!({"amount": 999}))
        .send()
        .await
        .unwrap();
    assert_error(res, 409, "IDEMPOTENCY_CONFLICT").await;
    // Same body, another route: also another request.
    let res = write(
        &app,
        "/api/v1/reservations/r1/cancel",
        "user-1",
        &key,
        &json!({"amount": 100}),
    )
    .send()
    .await
    .unwrap();
    assert_error(res, 409, "IDEMPOTENCY_CONFLICT").await;
    assert_eq!(app.payment.count(), 1);
    assert_eq!(app.reservation.count(), 0);
}

store_contract!(another_user_with_the_same_key_is_independent);

async fn another_user_with_the_same_key_is_independent(b: Backend) {
    let app = spawn_app_on(b).await;
    let key = new_key();
    let body = json!({"amount": 100});
    let first = write(&app, INTENT, "user-1", &key, &body)
        .send()
        .await
        .unwrap();
    assert_eq!(first.status(), 200);
    let first = json(first).await;
    let second = write(&app, INTENT, "user-2", &key, &body)
        .send()
        .await
        .unwrap();
    assert_eq!(second.status(), 200);
    assert!(!replayed(&second), "user-2 must not see user-1's answer");
    let second = json(second).await;
    assert_ne!(first["payment_intent_id"], second["payment_intent_id"]);
    assert_eq!(app.payment.count(), 2);
    // Each replays its own.
    for (user, own) in [("user-1", &first), ("user-2", &second)] {
        let res = write(&app, INTENT, user, &key, &body).send().await.unwrap();
        assert!(replayed(&res));
        assert_eq!(&json(res).await, own);
    }
    assert_eq!(app.payment.count(), 2);
}

store_contract!(bare_and_quoted_keys_are_one_key);

async fn bare_and_quoted_keys_are_one_key(b: Backend) {
    let app = spawn_app_on(b).await;
    let key = new_key();
    let body = json!({"amount": 1});
    let res = write(&app, INTENT, "user-1", &key, &body)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let quoted = format!("\"{}\"", key.to_uppercase());
    let res = write(&app, INTENT, "user-1", &quoted, &body)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert!(replayed(&res));
    assert_eq!(app.payment.count(), 1);
}

store_contract!(upstream_5xx_is_not_stored_and_the_retry_runs);

async fn upstream_5xx_is_not_stored_and_the_retry_runs(b: Backend) {
    let app = spawn_app_on(b).await;
    let key = new_key();
    let body = json!({"amount": 1});
    app.payment.set_status(500);
    let res = write(&app, INTENT, "user-1", &key, &body)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 500);
    app.payment.set_status(0);
    let res = write(&app, INTENT, "user-1", &key, &body)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert!(!replayed(&res));
    assert_eq!(app.payment.count(), 2);
    // 429 from the upstream: not an outcome either.
    let key = new_key();
    app.payment.set_status(429);
    let res = write(&app, INTENT, "user-1", &key, &body)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 429);
    app.payment.set_status(0);
    let res = write(&app, INTENT, "user-1", &key, &body)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(app.payment.count(), 4);
}

store_contract!(upstream_201_and_404_are_stored_and_replayed);

async fn upstream_201_and_404_are_stored_and_replayed(b: Backend) {
    let app = spawn_app_on(b).await;
    let body = json!({"event_id": "e1"});
    let key = new_key();
    let res = write(&app, CREATE, "user-1", &key, &body)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    let created = json(res).await;
    let res = write(&app, CREATE, "user-1", &key, &body)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    assert!(replayed(&res));
    assert_eq!(json(res).await, created);

    let key = new_key();
    let path = "/api/v1/reservations/unknown/confirm";
    let res = write(&app, path, "user-1", &key, &json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 404);
    let missing = json(res).await;
    assert_eq!(missing["error"]["code"], "RESERVATION_NOT_FOUND");
    let res = write(&app, path, "user-1", &key, &json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 404);
    assert!(replayed(&res));
    assert_eq!(json(res).await, missing);
    assert_eq!(app.reservation.count(), 2);
}

store_contract!(gateway_rejections_are_not_stored);

async fn gateway_rejections_are_not_stored(b: Backend) {
    let app = spawn_app_on(b).await;
    let key = new_key();
    // A bad id is refused by the handler after the record was acquired: released, not replayed.
    let path = "/api/v1/reservations/a%20b/cancel";
    for _ in 0..2 {
        let res = write(&app, path, "user-1", &key, &json!({}))
            .send()
            .await
            .unwrap();
        assert!(!replayed(&res));
        assert_error(res, 400, "BAD_REQUEST").await;
    }
    assert_eq!(app.reservation.count(), 0);
}

store_contract!(upstream_timeout_frees_the_key);

async fn upstream_timeout_frees_the_key(b: Backend) {
    let app = spawn_app_with(AppOptions::new(b).env("UPSTREAM_PAYMENT_TIMEOUT", "300ms")).await;
    let key = new_key();
    let body = json!({"amount": 1});
    app.payment.set_delay(Duration::from_millis(1500));
    let res = write(&app, INTENT, "user-1", &key, &body)
        .send()
        .await
        .unwrap();
    assert_error(res, 504, "UPSTREAM_TIMEOUT").await;
    app.payment.set_delay(Duration::ZERO);
    let res = write(&app, INTENT, "user-1", &key, &body)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert!(!replayed(&res));
    assert_eq!(app.payment.count(), 2);
}

store_contract!(a_client_that_hangs_up_still_gets_its_record_completed);

async fn a_client_that_hangs_up_still_gets_its_record_completed(b: Backend) {
    let app = spawn_app_with(AppOptions::new(b).env("UPSTREAM_PAYMENT_TIMEOUT", "10s")).await;
    let key = new_key();
    let body = json!({"amount": 1});
    app.payment.set_delay(Duration::from_millis(800));
    let gone = write(&app, INTENT, "user-1", &key, &body)
        .timeout(Duration::from_millis(200))
        .send()
        .await;
    assert!(gone.is_err(), "the client gave up first");
    // The operation finishes without the client and its answer is kept for the retry.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let res = write(&app, INTENT, "user-1", &key, &body)
            .send()
            .await
            .unwrap();
        if res.status() == 200 {
            assert!(replayed(&res));
            break;
        }
        assert_error(res, 409, "IDEMPOTENCY_IN_PROGRESS").await;
        assert!(
            std::time::Instant::now() < deadline,
            "record never completed"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(app.payment.count(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_down_refuses_writes_and_forwards_nothing() {
    let mut app = spawn_app_on(Backend::Redis).await;
    app.redis.as_mut().unwrap().stop();
    let res = write(&app, INTENT, "user-1", &new_key(), &json!({"amount": 1}))
        .send()
        .await
        .unwrap();
    assert_error(res, 503, "UPSTREAM_UNAVAILABLE").await;
    assert_eq!(app.payment.count(), 0);
}

store_contract!(records_expire_after_the_ttl);

async fn records_expire_after_the_ttl(b: Backend) {
    let app = spawn_app_with(AppOptions::new(b).env("IDEMPOTENCY_TTL_SECONDS", "1")).await;
    let key = new_key();
    let body = json!({"amount": 1});
    let res = write(&app, INTENT, "user-1", &key, &body)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let res = write(&app, INTENT, "user-1", &key, &body)
        .send()
        .await
        .unwrap();
    assert!(replayed(&res));
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let res = write(&app, INTENT, "user-1", &key, &body)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert!(!replayed(&res));
    assert_eq!(app.payment.count(), 2);
}

store_contract!(missing_or_malformed_keys_forward_nothing);

async fn missing_or_malformed_keys_forward_nothing(b: Backend) {
    let app = spawn_app_on(b).await;
    let res = app
        .post(INTENT)
        .header("authorization", app.bearer("user-1"))
        .json(&json!({"amount": 1}))
        .send()
        .await
        .unwrap();
    assert_error(res, 400, "IDEMPOTENCY_REQUIRED").await;
    for bad in [
        "nope",
        "\"nope\"",
        "123",
        "6f9619ff8b86d011b42d00c04fc964ff",
    ] {
        let res = write(&app, INTENT, "user-1", bad, &json!({"amount": 1}))
            .send()
            .await
            .unwrap();
        assert_error(res, 400, "BAD_REQUEST").await;
    }
    // Over MAX_BODY_SIZE: 413 before the store or the upstream.
    let big = "x".repeat(1_048_577);
    let res = app
        .post(INTENT)
        .header("authorization", app.bearer("user-1"))
        .header("idempotency-key", new_key())
        .body(big)
        .send()
        .await
        .unwrap();
    assert_error(res, 413, "PAYLOAD_TOO_LARGE").await;
    assert_eq!(app.payment.count(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_records_hide_the_caller_and_carry_a_ttl() {
    let app = spawn_app_with(
        AppOptions::new(Backend::Redis)
            .env("UPSTREAM_PAYMENT_TIMEOUT", "2s")
            .env("IDEMPOTENCY_TTL_SECONDS", "60"),
    )
    .await;
    let key = new_key();
    let body = json!({"amount": 1});
    // While in flight: a TTL of at most the upstream timeout plus the margin.
    app.payment.set_delay(Duration::from_millis(1000));
    let pending = tokio::spawn(write(&app, INTENT, "user-1@example.com", &key, &body).send());
    let redis = app.redis.as_ref().unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    let record = loop {
        let keys = redis.cli(&["--scan", "--pattern", "idem:*"]);
        if let Some(k) = keys.lines().next() {
            break k.trim().to_owned();
        }
        assert!(std::time::Instant::now() < deadline, "no record appeared");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(record.starts_with("idem:{"), "{record}");
    assert!(record.ends_with(&format!("}}:{key}")), "{record}");
    assert!(!record.contains("user-1"), "{record}");
    let in_flight_ttl: i64 = redis.cli(&["PTTL", &record]).trim().parse().unwrap();
    assert!((1..=7_000).contains(&in_flight_ttl), "{in_flight_ttl}");
    assert_eq!(pending.await.unwrap().unwrap().status(), 200);
    let done_ttl: i64 = redis.cli(&["PTTL", &record]).trim().parse().unwrap();
    assert!((7_000..=60_000).contains(&done_ttl), "{done_ttl}");
}

store_contract!(a_write_whose_answer_is_over_max_body_size_runs_once);

/// Issue #15 finding 5: exactly-once must not depend on the size of the answer. The first
/// answer passes in full; the record keeps its status without the body (SPEC §6).
async fn a_write_whose_answer_is_over_max_body_size_runs_once(b: Backend) {
    let app = spawn_app_with(AppOptions::new(b).env("MAX_BODY_SIZE", "4096")).await;
    app.reservation.set_padding(8 * 1024);
    let key = new_key();
    let body = json!({"event_id": "e1", "seats": 1});
    let res = write(&app, CREATE, "user-1", &key, &body)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    assert!(!replayed(&res));
    let first = res.bytes().await.unwrap();
    assert!(first.len() > 8 * 1024, "the client gets the whole answer");
    let res = write(&app, CREATE, "user-1", &key, &body)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    assert!(replayed(&res));
    assert_eq!(
        res.headers()["content-type"].to_str().unwrap(),
        "application/json"
    );
    assert!(
        res.bytes().await.unwrap().is_empty(),
        "status without the body"
    );
    assert_eq!(app.reservation.count(), 1, "the reservation was made once");
}

/// Redis forgets its scripts (`SCRIPT FLUSH`, as a restart or a new cluster node does) while the
/// gateway runs: the next calls get NOSCRIPT, load the script and run it, so the rate limit and
/// exactly-once go on as before: a new key is forwarded once, an old key still replays.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flushed_script_cache_is_loaded_again() {
    let app = spawn_app_with(AppOptions::new(Backend::Redis)).await;
    let body = json!({"amount": 7, "currency": "EUR"});
    let first = new_key();
    let res = write(&app, INTENT, "user-1", &first, &body)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert!(
        res.headers().contains_key("ratelimit"),
        "limited through Redis"
    );
    let redis = app.redis.as_ref().unwrap();
    assert_eq!(redis.cli(&["SCRIPT", "FLUSH"]).trim(), "OK");
    let second = new_key();
    let res = write(&app, INTENT, "user-1", &second, &body)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert!(!replayed(&res));
    let res = write(&app, INTENT, "user-1", &first, &body)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert!(
        replayed(&res),
        "the record of before the flush still replays"
    );
    assert_eq!(app.payment.count(), 2, "each key ran once");
    // Every decision came from the store, none from the local fallback.
    let decisions = &app.state.metrics.ratelimit_decisions;
    assert_eq!(decisions.with_label_values(&["allowed", "store"]).get(), 3);
    assert_eq!(
        decisions.with_label_values(&["allowed", "fallback"]).get(),
        0
    );
    assert_eq!(
        app.state
            .metrics
            .store_errors
            .with_label_values(&["ratelimit"])
            .get(),
        0
    );
}

/// Waits (up to 5 s) until the payment upstream has received `n` requests, then empties Redis.
async fn flush_once_forwarded(app: &TestApp, n: usize) {
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while app.payment.count() < n {
        assert!(std::time::Instant::now() < deadline, "never forwarded");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let redis = app.redis.as_ref().unwrap();
    assert_eq!(redis.cli(&["FLUSHALL"]).trim(), "OK");
}

/// Issue #15 finding 6: Redis loses its data (FLUSHALL, a restart without persistence, a
/// failover to a replica that never saw the record) while the write is at the upstream. The
/// completion writes the record anew, so the retry replays instead of paying twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_lost_while_the_write_is_upstream_is_written_anew() {
    let app =
        spawn_app_with(AppOptions::new(Backend::Redis).env("UPSTREAM_PAYMENT_TIMEOUT", "10s"))
            .await;
    app.payment.set_delay(Duration::from_millis(1500));
    let key = new_key();
    let body = json!({"amount": 4200, "currency": "EUR"});
    let first = tokio::spawn(write(&app, INTENT, "user-1", &key, &body).send());
    // Once the payment is at the upstream, the store forgets everything.
    flush_once_forwarded(&app, 1).await;
    let res = first.await.unwrap().unwrap();
    assert_eq!(res.status(), 200);
    let original = json(res).await;
    app.payment.set_delay(Duration::ZERO);
    let res = write(&app, INTENT, "user-1", &key, &body)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert!(replayed(&res), "the retry is a replay");
    assert_eq!(json(res).await, original);
    assert_eq!(app.payment.count(), 1, "the payment ran once");
    let outcomes = &app.state.metrics.idempotency_outcomes;
    assert_eq!(outcomes.with_label_values(&["restored"]).get(), 1);
}

/// The other side of finding 6: when another request took the key after the record vanished,
/// the late completion leaves the newer record alone, and says so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_completion_never_overwrites_a_newer_record() {
    let app =
        spawn_app_with(AppOptions::new(Backend::Redis).env("UPSTREAM_PAYMENT_TIMEOUT", "10s"))
            .await;
    app.payment.set_delay(Duration::from_millis(1500));
    let key = new_key();
    let body = json!({"amount": 1, "currency": "EUR"});
    let first = tokio::spawn(write(&app, INTENT, "user-1", &key, &body).send());
    flush_once_forwarded(&app, 1).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    // The key is free again: a retry now takes it (and is forwarded; the store forgot).
    app.payment.set_delay(Duration::from_millis(3000));
    let second = tokio::spawn(write(&app, INTENT, "user-1", &key, &body).send());
    while app.payment.count() < 2 {
        assert!(
            std::time::Instant::now() < deadline,
            "retry never forwarded"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(first.await.unwrap().unwrap().status(), 200);
    let outcomes = &app.state.metrics.idempotency_outcomes;
    assert_eq!(outcomes.with_label_values(&["superseded"]).get(), 1);
    let second = second.await.unwrap().unwrap();
    assert_eq!(second.status(), 200);
    let newer = json(second).await;
    let res = write(&app, INTENT, "user-1", &key, &body)
        .send()
        .await
        .unwrap();
    assert!(replayed(&res));
    assert_eq!(json(res).await, newer, "the newer record stayed");
}

/// `REDIS_WAIT_REPLICAS` (SPEC §6): with a replica the write goes through; without one to
/// acknowledge, 503 and nothing forwarded (and the key is free for the retry).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_wait_replicas_forwards_only_what_replicas_hold() {
    let app = spawn_app_with(AppOptions::new(Backend::Redis).env("REDIS_WAIT_REPLICAS", "1")).await;
    let body = json!({"amount": 1, "currency": "EUR"});
    let key = new_key();
    let res = write(&app, INTENT, "user-1", &key, &body)
        .send()
        .await
        .unwrap();
    assert_error(res, 503, "UPSTREAM_UNAVAILABLE").await;
    assert_eq!(
        app.payment.count(),
        0,
        "nothing forwarded without a replica"
    );
    let master = app.redis.as_ref().unwrap().port;
    let replica = tokio::task::spawn_blocking(move || RedisServer::start_replica_of(master))
        .await
        .unwrap();
    // Wait for the replica to be in sync, as both ends see it: the master counts a replica for
    // `WAIT` only once it calls it `online` (a replica's link is up a moment earlier).
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let master_server = app.redis.as_ref().unwrap();
    while !replica
        .cli(&["INFO", "replication"])
        .contains("master_link_status:up")
        || !master_server
            .cli(&["INFO", "replication"])
            .contains("state=online")
    {
        assert!(std::time::Instant::now() < deadline, "replica never synced");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let res = write(&app, INTENT, "user-1", &key, &body)
        .send()
        .await
        .unwrap();
    assert_eq!(
        res.status(),
        200,
        "the same key runs once a replica holds the record"
    );
    assert_eq!(app.payment.count(), 1);
    drop(replica);
}
