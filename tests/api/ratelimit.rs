//! Rate limiting and overload protection (SPEC §7, issue #4): exactness on both stores, one
//! shared bucket across three gateway processes, client identity, Redis failure and recovery,
//! load shedding.
//!
//! The limiter runs before authentication, so these tests count "429 or not": a 401 from a
//! stricter auth layer still consumed a token and still carries the headers.
use std::time::{Duration, Instant};

use gateway_api::mock_upstream::{MockUpstream, Role};

use crate::helpers::{
    AppOptions, Backend, GatewayProcess, JwksServer, RedisServer, TestApp, TestKey, assert_error,
    base_env, bearer_for, jwt_env, spawn_app_with,
};
use crate::store_contract;

const ROUTE: &str = "/api/v1/reservations/r1";

async fn limited_app(b: Backend, rps: &str, burst: &str) -> TestApp {
    spawn_app_with(
        AppOptions::new(b)
            .env("RATE_LIMIT_RPS", rps)
            .env("RATE_LIMIT_BURST", burst),
    )
    .await
}

fn header(res: &reqwest::Response, name: &str) -> String {
    res.headers()
        .get(name)
        .unwrap_or_else(|| panic!("missing {name}"))
        .to_str()
        .unwrap()
        .to_owned()
}

async fn get_as(app: &TestApp, xff: Option<&str>) -> reqwest::Response {
    let mut req = app.get(ROUTE).header("authorization", app.bearer("u"));
    if let Some(ip) = xff {
        req = req.header("x-forwarded-for", ip);
    }
    req.send().await.unwrap()
}

store_contract!(one_client_gets_exactly_burst_plus_rate_times_t);

/// BURST=10, RPS=5, four seconds of steady requests: 10 + 5 × T allowed (±1), every refusal a
/// proper 429 with honest headers.
async fn one_client_gets_exactly_burst_plus_rate_times_t(b: Backend) {
    let app = limited_app(b, "5", "10").await;
    let start = Instant::now();
    let (mut allowed, mut limited) = (0u32, 0u32);
    let mut last_sent = start;
    while start.elapsed() < Duration::from_secs(4) {
        last_sent = Instant::now();
        let res = get_as(&app, None).await;
        assert_eq!(header(&res, "ratelimit-policy"), "\"default\";q=10;w=2");
        assert_eq!(header(&res, "x-ratelimit-limit"), "10");
        let remaining: u64 = header(&res, "x-ratelimit-remaining").parse().unwrap();
        let reset: u64 = header(&res, "x-ratelimit-reset").parse().unwrap();
        assert!(
            remaining < 10 && (1..=2).contains(&reset),
            "{remaining} {reset}"
        );
        assert_eq!(
            header(&res, "ratelimit"),
            format!("\"default\";r={remaining};t={reset}")
        );
        if res.status() == 429 {
            limited += 1;
            assert_eq!(remaining, 0);
            assert_eq!(header(&res, "retry-after"), "1");
            assert_error(res, 429, "RATE_LIMITED").await;
        } else {
            assert!(res.status().as_u16() < 500, "{}", res.status());
            allowed += 1;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let t = last_sent.duration_since(start).as_secs_f64();
    let expected = 10.0 + 5.0 * t;
    println!(
        "exactness ({b:?}): {allowed} allowed, {limited} limited in {t:.2} s; expected {expected:.1}"
    );
    assert!(
        (f64::from(allowed) - expected).abs() <= 1.5,
        "{allowed} allowed in {t:.2} s, expected {expected:.1}"
    );
    assert!(limited > 50, "{limited}");
    let decisions = &app.state.metrics.ratelimit_decisions;
    assert_eq!(
        decisions.with_label_values(&["allowed", "store"]).get(),
        u64::from(allowed)
    );
    assert_eq!(
        decisions.with_label_values(&["limited", "store"]).get(),
        u64::from(limited)
    );
}

store_contract!(a_retry_after_retry_after_succeeds);

async fn a_retry_after_retry_after_succeeds(b: Backend) {
    let app = limited_app(b, "0.5", "1").await;
    assert_ne!(get_as(&app, None).await.status(), 429);
    let res = get_as(&app, None).await;
    assert_eq!(res.status(), 429);
    let wait: u64 = header(&res, "retry-after").parse().unwrap();
    assert_eq!(wait, 2);
    tokio::time::sleep(Duration::from_secs(wait)).await;
    assert_ne!(get_as(&app, None).await.status(), 429);
}

store_contract!(clients_are_told_apart_only_through_trusted_proxies);

async fn clients_are_told_apart_only_through_trusted_proxies(b: Backend) {
    // Untrusted peer: X-Forwarded-For is ignored, every "client" is 127.0.0.1.
    let app = limited_app(b, "0.1", "3").await;
    for i in 0..3 {
        let res = get_as(&app, Some(&format!("198.51.100.{i}"))).await;
        assert_ne!(res.status(), 429);
    }
    assert_eq!(get_as(&app, Some("203.0.113.99")).await.status(), 429);
    assert_eq!(get_as(&app, None).await.status(), 429);
    drop(app);

    // Behind a trusted proxy: the right-most untrusted hop is the client.
    let app = spawn_app_with(
        AppOptions::new(b)
            .env("RATE_LIMIT_RPS", "0.1")
            .env("RATE_LIMIT_BURST", "3")
            .env("TRUSTED_PROXIES", "127.0.0.1/32"),
    )
    .await;
    for _ in 0..3 {
        assert_ne!(get_as(&app, Some("198.51.100.1")).await.status(), 429);
    }
    assert_eq!(get_as(&app, Some("198.51.100.1")).await.status(), 429);
    // A spoofed left-most hop does not make a new client.
    assert_eq!(
        get_as(&app, Some("6.6.6.6, 198.51.100.1")).await.status(),
        429
    );
    // Another client has its own bucket.
    assert_ne!(get_as(&app, Some("198.51.100.2")).await.status(), 429);
    // IPv6: one bucket per /64.
    for _ in 0..3 {
        assert_ne!(get_as(&app, Some("2001:db8:0:1::1")).await.status(), 429);
    }
    assert_eq!(
        get_as(&app, Some("2001:db8:0:1:ffff::2")).await.status(),
        429
    );
    assert_ne!(get_as(&app, Some("2001:db8:0:2::1")).await.status(), 429);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_and_metrics_are_never_limited() {
    let app = limited_app(Backend::Memory, "0.1", "1").await;
    assert_ne!(get_as(&app, None).await.status(), 429);
    assert_eq!(get_as(&app, None).await.status(), 429);
    for path in ["/healthz", "/readyz", "/metrics", "/version"] {
        let res = app.get(path).send().await.unwrap();
        assert_eq!(res.status(), 200, "{path}");
        assert!(res.headers().get("ratelimit").is_none(), "{path}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limit_enabled_false_turns_it_off() {
    let app = spawn_app_with(
        AppOptions::new(Backend::Memory)
            .env("RATE_LIMIT_RPS", "0.1")
            .env("RATE_LIMIT_BURST", "1")
            .env("RATE_LIMIT_ENABLED", "false"),
    )
    .await;
    for _ in 0..5 {
        let res = get_as(&app, None).await;
        assert_ne!(res.status(), 429);
        assert!(res.headers().get("ratelimit").is_none());
    }
}

/// Redis killed mid-test: the replica limits with local buckets (no 5xx, never unlimited);
/// Redis back: the shared bucket is used again without restarting the gateway.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_down_limits_locally_and_shared_limiting_resumes() {
    let mut app = limited_app(Backend::Redis, "0.2", "5").await;
    let metrics = app.state.metrics.clone();
    for _ in 0..5 {
        assert_ne!(get_as(&app, None).await.status(), 429);
    }
    assert_eq!(get_as(&app, None).await.status(), 429);
    let redis = app.redis.as_mut().unwrap();
    assert!(redis.cli(&["EXISTS", "rl:{127.0.0.1}"]).starts_with('1'));
    let ttl: i64 = redis
        .cli(&["PTTL", "rl:{127.0.0.1}"])
        .trim()
        .parse()
        .unwrap();
    assert!(ttl > 0 && ttl <= 30_000, "idle keys expire: {ttl}");

    redis.stop();
    let (mut allowed, mut limited) = (0, 0);
    for _ in 0..20 {
        let res = get_as(&app, None).await;
        match res.status().as_u16() {
            429 => limited += 1,
            s if s >= 500 => panic!("a {s} while the store is down"),
            _ => allowed += 1,
        }
    }
    println!("redis down: {allowed} allowed, {limited} limited locally");
    assert!(allowed <= 6, "never unlimited: {allowed}");
    assert!(limited >= 14);
    assert_eq!(metrics.ratelimit_fallback_active.get(), 1);
    assert!(
        metrics
            .ratelimit_decisions
            .with_label_values(&["limited", "fallback"])
            .get()
            >= 14
    );
    let errors = metrics.store_errors.with_label_values(&["ratelimit"]).get();
    assert!(errors < 10, "not every request retries the store: {errors}");

    app.redis.as_mut().unwrap().restart();
    let deadline = Instant::now() + Duration::from_secs(20);
    while metrics.ratelimit_fallback_active.get() == 1 {
        assert!(Instant::now() < deadline, "shared limiting never resumed");
        let res = get_as(&app, None).await;
        assert!(res.status().as_u16() < 500);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The fresh Redis holds this client's bucket again.
    let _ = get_as(&app, None).await;
    let redis = app.redis.as_ref().unwrap();
    assert!(redis.cli(&["EXISTS", "rl:{127.0.0.1}"]).starts_with('1'));
}

/// Three gateway processes on one redis-server; one client spread over all three: together they
/// admit BURST + RPS × T (±2), not three times that.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_replicas_share_one_bucket() {
    let loopback = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
    let reservation = MockUpstream::start(Role::Reservation, loopback)
        .await
        .unwrap();
    let payment = MockUpstream::start(Role::Payment, loopback).await.unwrap();
    let redis = tokio::task::spawn_blocking(RedisServer::start)
        .await
        .unwrap();
    let jwks = JwksServer::start(&TestKey::defaults()).await;
    let mut env = base_env(&reservation, &payment, Some(&redis.addr()));
    env.extend(jwt_env(&jwks));
    env.push(("RATE_LIMIT_RPS".to_owned(), "5".to_owned()));
    env.push(("RATE_LIMIT_BURST".to_owned(), "10".to_owned()));
    let mut gateways = Vec::new();
    for _ in 0..3 {
        gateways.push(GatewayProcess::start(&env).await);
    }
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    // Ready = connected to Redis, so no replica starts on its local fallback.
    for g in &gateways {
        let deadline = Instant::now() + Duration::from_secs(20);
        while client
            .get(g.url("/readyz"))
            .send()
            .await
            .map_or(true, |r| r.status() != 200)
        {
            assert!(Instant::now() < deadline, "replica never ready");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    let start = Instant::now();
    let mut last_sent = start;
    let (mut allowed, mut per_replica) = (0u32, [0u32; 3]);
    let mut i = 0;
    while start.elapsed() < Duration::from_secs(4) {
        last_sent = Instant::now();
        let res = client
            .get(gateways[i % 3].url(ROUTE))
            .header("authorization", bearer_for(&env, "u"))
            .send()
            .await
            .unwrap();
        assert!(res.status().as_u16() < 500, "{}", res.status());
        if res.status() != 429 {
            allowed += 1;
            per_replica[i % 3] += 1;
        }
        i += 1;
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let t = last_sent.duration_since(start).as_secs_f64();
    let expected = 10.0 + 5.0 * t;
    println!(
        "global: {allowed} allowed of {i} over 3 replicas {per_replica:?} in {t:.2} s; expected {expected:.1}"
    );
    assert!(
        (f64::from(allowed) - expected).abs() <= 2.0,
        "{allowed} allowed in {t:.2} s, expected {expected:.1}"
    );
    assert!(per_replica.iter().all(|&n| n > 0), "{per_replica:?}");
}

/// `MAX_IN_FLIGHT=4` and a slow upstream: the fifth concurrent request is shed at once with 503
/// `OVERLOADED`, while health still answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_fifth_concurrent_request_is_shed() {
    let app = spawn_app_with(
        AppOptions::new(Backend::Memory)
            .env("MAX_IN_FLIGHT", "4")
            .env("UPSTREAM_RESERVATION_TIMEOUT", "20s"),
    )
    .await;
    app.reservation.set_delay(Duration::from_secs(5));
    let mut slow = Vec::new();
    for _ in 0..4 {
        let req = app.get(ROUTE).header("authorization", app.bearer("u"));
        slow.push(tokio::spawn(req.send()));
    }
    let deadline = Instant::now() + Duration::from_secs(4);
    while app.state.in_flight.available_permits() > 0 {
        assert!(Instant::now() < deadline, "the four never got in flight");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let started = Instant::now();
    let res = get_as(&app, None).await;
    assert!(res.headers().get("retry-after").is_some());
    assert_error(res, 503, "OVERLOADED").await;
    assert!(started.elapsed() < Duration::from_secs(2), "shed at once");
    for path in ["/healthz", "/readyz", "/metrics"] {
        assert_eq!(app.get(path).send().await.unwrap().status(), 200, "{path}");
    }
    assert_eq!(app.state.metrics.overload_shed.get(), 1);
    for s in slow {
        let status = s.await.unwrap().unwrap().status();
        assert!(status.as_u16() < 500, "{status}");
    }
    app.reservation.set_delay(Duration::ZERO);
    assert!(get_as(&app, None).await.status().as_u16() < 500);
}
