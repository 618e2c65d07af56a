//! Events operators define and steer (SPEC §5a), against both stores: the admin API and its
//! scope, definitions in the store (another replica follows, a restart keeps them), pause,
//! close, delete, `QUEUE_EVENTS_OPEN`, the prequeue's fair opening, the `max_active` cap, and
//! polling limited per waiting token instead of per client address.
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use serde_json::{Value, json};

use crate::helpers::{
    AppOptions, Backend, TestApp, assert_error, assert_uniform_shuffle, json, spawn_app_with,
};
use crate::store_contract;

const ADMIN: &str = "/admin/v1/events";

async fn app(b: Backend, env: &[(&str, &str)]) -> TestApp {
    let mut opts = AppOptions::new(b);
    for (k, v) in env {
        opts = opts.env(k, *v);
    }
    spawn_app_with(opts).await
}

fn admin(app: &TestApp) -> String {
    app.bearer_with("ops", json!({"scope": "openid gateway:admin"}))
}

async fn put(app: &TestApp, event: &str, body: Value) -> Value {
    let res = app
        .client
        .put(app.url(&format!("{ADMIN}/{event}")))
        .header("authorization", admin(app))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200, "PUT {event} {body}");
    json(res).await
}

async fn get(app: &TestApp, event: &str) -> Value {
    let res = app
        .get(&format!("{ADMIN}/{event}"))
        .header("authorization", admin(app))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200, "GET {event}");
    json(res).await
}

async fn join_as(app: &TestApp, event: &str, sub: Option<&str>) -> Value {
    let mut req = app
        .post("/api/v1/queue/join")
        .json(&json!({"event_id": event}));
    if let Some(sub) = sub {
        req = req.header("authorization", app.bearer(sub));
    }
    let res = req.send().await.unwrap();
    assert_eq!(res.status(), 202);
    json(res).await
}

async fn join(app: &TestApp, event: &str) -> String {
    token_of(&join_as(app, event, None).await)
}

fn token_of(v: &Value) -> String {
    v["waiting_token"].as_str().unwrap().to_owned()
}

/// One poll, waiting out the token's own poll bucket as a client following the contract would.
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
            tokio::time::sleep(Duration::from_secs(wait)).await;
            continue;
        }
        assert_eq!(res.status(), 200);
        return json(res).await;
    }
}

async fn enter(app: &TestApp, token: &str, sub: Option<&str>) -> reqwest::Response {
    let mut req = app.post_json("/api/v1/queue/enter", &json!({"waiting_token": token}));
    if let Some(sub) = sub {
        req = req.header("authorization", app.bearer(sub));
    }
    req.send().await.unwrap()
}

fn seq_of(token: &str) -> u64 {
    gateway_api::queue::WaitingToken::parse(token).unwrap().seq
}

store_contract!(
    admin_routes_need_a_verified_token_with_the_admin_scope,
    definitions_are_created_patched_listed_and_deleted,
    a_paused_event_holds_every_place_and_admits_nobody,
    closing_expires_every_token_and_refuses_joins,
    deleting_an_event_ends_everything_of_it,
    undefined_events_are_404_when_events_are_not_open,
    a_rate_change_takes_effect_within_a_second,
    prequeue_opens_in_a_uniformly_random_order_then_fifo,
    max_active_caps_ready_and_admitted_and_resumes_as_sessions_end,
    polls_are_limited_per_waiting_token_not_per_address,
);

async fn admin_routes_need_a_verified_token_with_the_admin_scope(b: Backend) {
    // A tiny per-client bucket: admin calls must never meet it.
    let app = app(b, &[("RATE_LIMIT_RPS", "1"), ("RATE_LIMIT_BURST", "2")]).await;
    let url = app.url(&format!("{ADMIN}/ev"));
    let res = app.client.get(&url).send().await.unwrap();
    assert_error(res, 401, "UNAUTHENTICATED").await;
    let res = app
        .client
        .get(&url)
        .header("authorization", "Bearer not-a-jwt")
        .send()
        .await
        .unwrap();
    assert_error(res, 401, "UNAUTHENTICATED").await;
    for no_scope in [
        app.bearer("alice"),
        app.bearer_with("alice", json!({"scope": "openid gateway:administrator"})),
        app.bearer_with("alice", json!({"scp": ["gateway"]})),
    ] {
        let res = app
            .client
            .put(&url)
            .header("authorization", no_scope)
            .json(&json!({"admission_rps": 5}))
            .send()
            .await
            .unwrap();
        assert_error(res, 403, "FORBIDDEN").await;
    }
    // The 403s changed nothing.
    let res = app
        .client
        .get(&url)
        .header("authorization", admin(&app))
        .send()
        .await
        .unwrap();
    assert_error(res, 404, "EVENT_NOT_FOUND").await;
    // `scp` as an array works as well as `scope`; thirty calls, no 429.
    let scp = app.bearer_with("ops", json!({"scp": ["gateway:admin"]}));
    for i in 0..30 {
        let res = app
            .client
            .put(&url)
            .header("authorization", &scp)
            .json(&json!({"admission_rps": i + 1}))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200, "call {i}");
        assert!(res.headers().get("ratelimit").is_none());
    }
}

async fn definitions_are_created_patched_listed_and_deleted(b: Backend) {
    let app = app(b, &[("QUEUE_ADMISSION_RPS", "7")]).await;
    // Defaults: the configured rate, no cap, open now, open, not adaptive.
    let d = put(&app, "gig", json!({})).await;
    assert_eq!(
        d,
        json!({"event_id": "gig", "admission_rps": 7.0, "max_active": null, "opens_at": null,
               "state": "open", "adaptive": false})
    );
    let d = put(
        &app,
        "gig",
        json!({"max_active": 20, "opens_at": "2030-01-01T10:00:00+01:00"}),
    )
    .await;
    assert_eq!(d["admission_rps"], 7.0, "unsent fields keep their value");
    assert_eq!(d["max_active"], 20);
    assert_eq!(d["opens_at"], "2030-01-01T09:00:00Z");
    let d = put(&app, "gig", json!({"max_active": null, "adaptive": true})).await;
    assert_eq!(
        (d["max_active"].clone(), d["adaptive"].clone()),
        (json!(null), json!(true))
    );
    put(
        &app,
        "zoo",
        json!({"admission_rps": 2.5, "state": "paused"}),
    )
    .await;

    // Bad values: 400 naming the field; nothing changed.
    for (body, field) in [
        (json!({"admission_rps": 0}), "admission_rps"),
        (json!({"admission_rps": -1}), "admission_rps"),
        (json!({"max_active": 0}), "max_active"),
        (json!({"opens_at": "next friday"}), "opens_at"),
        (json!({"state": "sold-out"}), "state"),
        (json!({"adaptive": 1}), "adaptive"),
    ] {
        let res = app
            .client
            .put(app.url(&format!("{ADMIN}/gig")))
            .header("authorization", admin(&app))
            .json(&body)
            .send()
            .await
            .unwrap();
        let e = assert_error(res, 400, "BAD_REQUEST").await;
        assert!(
            e["error"]["message"].as_str().unwrap().contains(field),
            "{body}: {e}"
        );
    }
    let res = app
        .client
        .put(app.url(&format!("{ADMIN}/bad..id")))
        .header("authorization", admin(&app))
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_error(res, 400, "BAD_REQUEST").await;

    // One event with its live figures; the list has both.
    join(&app, "gig").await;
    let g = get(&app, "gig").await;
    assert_eq!(g["event_id"], "gig");
    assert_eq!(g["opens_at"], "2030-01-01T09:00:00Z");
    assert_eq!(g["prequeue"], 1, "{g}");
    assert_eq!(g["waiting"], 0, "{g}");
    assert_eq!(g["admission_factor"], 1.0);
    for k in ["active", "admitted_total", "admission_rate_measured"] {
        assert!(g[k].is_number(), "{k}: {g}");
    }
    let res = app
        .get(ADMIN)
        .header("authorization", admin(&app))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let list = json(res).await;
    let ids: Vec<&str> = list["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["event_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["gig", "zoo"]);
    assert_eq!(list["events"][1]["state"], "paused");

    // Delete: gone from GET and the list; deleting again is 404.
    let del = |ev: &'static str| {
        app.client
            .delete(app.url(&format!("{ADMIN}/{ev}")))
            .header("authorization", admin(&app))
            .send()
    };
    assert_eq!(del("zoo").await.unwrap().status(), 200);
    assert_error(del("zoo").await.unwrap(), 404, "EVENT_NOT_FOUND").await;
    let res = app
        .get(&format!("{ADMIN}/zoo"))
        .header("authorization", admin(&app))
        .send()
        .await
        .unwrap();
    assert_error(res, 404, "EVENT_NOT_FOUND").await;
    let list = json(
        app.get(ADMIN)
            .header("authorization", admin(&app))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(list["events"].as_array().unwrap().len(), 1);
}

async fn a_paused_event_holds_every_place_and_admits_nobody(b: Backend) {
    let app = app(b, &[]).await;
    put(&app, "drop", json!({"admission_rps": 0.01})).await;
    let mut tokens = Vec::new();
    for _ in 0..20 {
        tokens.push(join(&app, "drop").await);
    }
    put(
        &app,
        "drop",
        json!({"state": "paused", "admission_rps": 100}),
    )
    .await;
    // Paused at 100/s for 1.5 s: nobody admitted, every place kept in order, eta unknown.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    for (i, t) in tokens.iter().enumerate() {
        let s = status(&app, t).await;
        assert_eq!(s["status"], "waiting", "{s}");
        assert_eq!(s["position"], i as u64 + 1, "{s}");
        assert_eq!(s["eta_sec"], Value::Null, "{s}");
        assert!(s["poll_after_sec"].as_u64().unwrap() >= 1, "{s}");
    }
    assert_eq!(get(&app, "drop").await["waiting"], 20);
    // Resumed: admitted at the rate, in order, with no burst from the paused time.
    put(&app, "drop", json!({"state": "open"})).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let s = status(&app, &tokens[19]).await;
    assert_eq!(s["status"], "ready", "{s}");
}

async fn closing_expires_every_token_and_refuses_joins(b: Backend) {
    let app = app(
        b,
        &[
            ("QUEUE_REQUIRE_ADMISSION", "true"),
            ("QUEUE_ADMISSION_RPS", "1000"),
        ],
    )
    .await;
    put(&app, "show", json!({})).await;
    // Alice is admitted at 1000/s and enters; then the rate drops and five wait.
    let alice = token_of(&join_as(&app, "show", Some("alice")).await);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(status(&app, &alice).await["status"], "ready");
    let res = enter(&app, &alice, Some("alice")).await;
    assert_eq!(res.status(), 200);
    let rtok = json(res).await["reservation_token"].clone();
    put(&app, "show", json!({"admission_rps": 0.01})).await;
    let mut waiting = Vec::new();
    for _ in 0..5 {
        waiting.push(join(&app, "show").await);
    }

    put(&app, "show", json!({"state": "closed"})).await;
    for t in waiting.iter().chain([&alice]) {
        let s = status(&app, t).await;
        assert_eq!(s["status"], "expired", "{s}");
    }
    let res = app
        .post("/api/v1/queue/join")
        .json(&json!({"event_id": "show"}))
        .send()
        .await
        .unwrap();
    assert_error(res, 410, "EVENT_CLOSED").await;
    let create = || {
        app.post_json(
            "/api/v1/reservations/create",
            &json!({"event_id": "show", "reservation_token": rtok}),
        )
        .header("authorization", app.bearer("alice"))
        .send()
    };
    assert_error(create().await.unwrap(), 403, "FORBIDDEN").await;
    // Reopened: the old tokens stay expired (closing ended them), new joins queue again.
    put(&app, "show", json!({"state": "open"})).await;
    assert_eq!(status(&app, &waiting[0]).await["status"], "expired");
    assert_error(create().await.unwrap(), 403, "FORBIDDEN").await;
    let fresh = join_as(&app, "show", None).await;
    assert_eq!(fresh["position_hint"], 1, "{fresh}");
    assert_eq!(app.reservation.count(), 0);
}

async fn deleting_an_event_ends_everything_of_it(b: Backend) {
    let app = app(b, &[("QUEUE_ADMISSION_RPS", "1000")]).await;
    put(&app, "fest", json!({})).await;
    let first = join(&app, "fest").await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(status(&app, &first).await["status"], "ready");
    put(&app, "fest", json!({"admission_rps": 0.01})).await;
    let second = join(&app, "fest").await;
    let res = app
        .client
        .delete(app.url(&format!("{ADMIN}/fest")))
        .header("authorization", admin(&app))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    for t in [&first, &second] {
        assert_eq!(status(&app, t).await["status"], "expired");
        assert_eq!(enter(&app, t, None).await.status(), 403);
    }
    // Undefined again: queued with the defaults (QUEUE_EVENTS_OPEN=true), from the front.
    let again = join_as(&app, "fest", None).await;
    assert_eq!(again["position_hint"], 1, "{again}");
}

async fn undefined_events_are_404_when_events_are_not_open(b: Backend) {
    let app = app(b, &[("QUEUE_EVENTS_OPEN", "false")]).await;
    let res = app
        .post("/api/v1/queue/join")
        .json(&json!({"event_id": "made-up"}))
        .send()
        .await
        .unwrap();
    assert_error(res, 404, "EVENT_NOT_FOUND").await;
    put(&app, "real", json!({})).await;
    let j = join_as(&app, "real", None).await;
    assert_eq!(j["status"], "waiting");
}

async fn a_rate_change_takes_effect_within_a_second(b: Backend) {
    // Two replicas on one Redis; the memory store has one replica.
    let a = app(b, &[]).await;
    let other;
    let b_app = match b {
        Backend::Redis => {
            let addr = a.redis.as_ref().unwrap().addr();
            other = spawn_app_with(AppOptions::new(Backend::Redis).redis(addr)).await;
            &other
        }
        Backend::Memory => &a,
    };
    put(&a, "sale", json!({"admission_rps": 0.01})).await;
    let mut tokens = Vec::new();
    for _ in 0..50 {
        tokens.push(join(b_app, "sale").await);
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(status(b_app, &tokens[49]).await["position"], 50);
    // Changed on replica A; replica B admits at the new rate within a second.
    put(&a, "sale", json!({"admission_rps": 200})).await;
    let changed = Instant::now();
    loop {
        let s = status(b_app, &tokens[49]).await;
        if s["status"] == "ready" {
            break;
        }
        assert!(
            changed.elapsed() < Duration::from_secs(1),
            "not ready 1 s after the change: {s}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The shuffle check itself: FIFO, reversed and a half-sorted order fail it, a permutation drawn
/// by a seeded shuffle passes, and a repeated place is not a permutation. (Seeded, so the
/// passing case cannot be the one run in a million that a correct shuffle fails.)
#[test]
fn the_shuffle_check_refuses_orders_by_arrival() {
    use rand::SeedableRng;
    use rand::seq::SliceRandom;
    let mut rng = rand::rngs::StdRng::seed_from_u64(17);
    let n = 1000u64;
    let fifo: Vec<u64> = (1..=n).collect();
    let reversed: Vec<u64> = (1..=n).rev().collect();
    let mut half = fifo.clone();
    half[..500].shuffle(&mut rng);
    for order in [fifo.clone(), reversed, half] {
        let r = std::panic::catch_unwind(|| assert_uniform_shuffle(&order));
        assert!(r.is_err(), "passed an order by arrival");
    }
    let mut dup = fifo.clone();
    dup[0] = 2;
    dup.shuffle(&mut rng);
    assert!(std::panic::catch_unwind(|| assert_uniform_shuffle(&dup)).is_err());
    let mut shuffled = fifo;
    shuffled.shuffle(&mut rng);
    assert_uniform_shuffle(&shuffled);
}

async fn prequeue_opens_in_a_uniformly_random_order_then_fifo(b: Backend) {
    let app = app(b, &[]).await;
    let n = 1000usize;
    let opens = std::time::SystemTime::now() + Duration::from_secs(8);
    let opens_at = humantime::format_rfc3339_millis(opens).to_string();
    put(
        &app,
        "drop",
        json!({"admission_rps": 0.01, "opens_at": opens_at}),
    )
    .await;
    let joined: Vec<Value> = futures_util::stream::iter(0..n)
        .map(|_| join_as(&app, "drop", None))
        .buffer_unordered(16)
        .collect()
        .await;
    assert!(
        std::time::SystemTime::now() < opens,
        "the joins took too long"
    );
    for j in &joined {
        assert_eq!(j["status"], "prequeue", "{j}");
        assert_eq!(j["position_hint"], Value::Null, "{j}");
    }
    let s = status(&app, &token_of(&joined[0])).await;
    assert_eq!(s["status"], "prequeue", "{s}");
    assert_eq!(s["position"], Value::Null);
    let eta = s["eta_sec"].as_u64().unwrap();
    assert!((1..=8).contains(&eta), "seconds until the opening: {s}");
    assert_eq!(get(&app, "drop").await["prequeue"], n as u64);

    let wait = opens
        .duration_since(std::time::SystemTime::now())
        .unwrap_or_default();
    tokio::time::sleep(wait + Duration::from_millis(300)).await;
    // Later joins: FIFO behind the whole prequeue.
    let mut late = Vec::new();
    for i in 0..20 {
        let j = join_as(&app, "drop", None).await;
        assert_eq!(j["status"], "waiting", "{j}");
        assert_eq!(j["position_hint"], (n + i + 1) as u64, "{j}");
        late.push(token_of(&j));
    }
    // The order of admission (the position after opening) against the order of joining.
    let app = &app;
    let mut by_join: Vec<(u64, u64)> = futures_util::stream::iter(joined.iter())
        .map(|j| async move {
            let t = token_of(j);
            let s = status(app, &t).await;
            assert_eq!(s["status"], "waiting", "{s}");
            (seq_of(&t), s["position"].as_u64().unwrap())
        })
        .buffer_unordered(16)
        .collect()
        .await;
    by_join.sort();
    let positions: Vec<u64> = by_join.iter().map(|(_, p)| *p).collect();
    assert_uniform_shuffle(&positions);
    for (i, t) in late.iter().enumerate() {
        assert_eq!(status(app, t).await["position"], (n + i + 1) as u64);
    }
}

async fn max_active_caps_ready_and_admitted_and_resumes_as_sessions_end(b: Backend) {
    let cap = 20u64;
    let app = app(b, &[("QUEUE_REQUIRE_ADMISSION", "true")]).await;
    put(
        &app,
        "cap",
        json!({"admission_rps": 100, "max_active": cap}),
    )
    .await;
    let people = 60usize;
    let mut tokens = Vec::new();
    for i in 0..people {
        tokens.push(token_of(
            &join_as(&app, "cap", Some(&format!("fan-{i}"))).await,
        ));
    }
    // state per person: 0 waiting, 1 ready, 2 admitted (with its reservation token), 3 done.
    let mut state = vec![0u8; people];
    let mut rtoks: Vec<Option<String>> = vec![None; people];
    let mut max_seen = 0;
    let started = Instant::now();
    let mut round = 0;
    while state.iter().any(|s| *s < 3) {
        assert!(
            started.elapsed() < Duration::from_secs(25),
            "admission never resumed: {state:?}"
        );
        round += 1;
        // Poll everyone not done; nobody's session ends during a round, so what one round sees
        // ready or admitted was active at once.
        let mut active = 0;
        for i in 0..people {
            if state[i] == 3 {
                continue;
            }
            let s = status(&app, &tokens[i]).await;
            match s["status"].as_str().unwrap() {
                "ready" => {
                    active += 1;
                    state[i] = state[i].max(1);
                }
                "admitted" => active += 1,
                "waiting" => assert_eq!(state[i], 0, "{i} went back to waiting: {s}"),
                other => panic!("{i}: {other} {s}"),
            }
        }
        let figure = get(&app, "cap").await["active"].as_u64().unwrap();
        max_seen = max_seen.max(active).max(figure);
        assert!(active <= cap, "round {round}: {active} ready or admitted");
        assert!(figure <= cap, "round {round}: store says {figure} active");
        // Slow enters: the ready ones enter one round after they were seen ready.
        for i in 0..people {
            if state[i] == 1 && rtoks[i].is_none() && round % 2 == 0 {
                let res = enter(&app, &tokens[i], Some(&format!("fan-{i}"))).await;
                assert_eq!(res.status(), 200);
                rtoks[i] = json(res).await["reservation_token"]
                    .as_str()
                    .map(str::to_owned);
                state[i] = 2;
            }
        }
        // Between rounds, up to five sessions end: by a 2xx create, or by leave.
        let mut ended = 0;
        for i in 0..people {
            if ended == 5 {
                break;
            }
            if state[i] != 2 {
                continue;
            }
            if i % 2 == 0 {
                let res = app
                    .post_json(
                        "/api/v1/reservations/create",
                        &json!({"event_id": "cap", "reservation_token": rtoks[i]}),
                    )
                    .header("authorization", app.bearer(&format!("fan-{i}")))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(res.status(), 201);
            } else {
                let res = app
                    .client
                    .delete(app.url(&format!("/api/v1/queue/leave?token={}", tokens[i])))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(res.status(), 200);
            }
            state[i] = 3;
            ended += 1;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    eprintln!(
        "max_active {cap}: at most {max_seen} active, all {people} through in {round} rounds"
    );
    assert_eq!(max_seen, cap, "the cap was reached");
    assert_eq!(app.reservation.count(), people.div_ceil(2));
}

async fn polls_are_limited_per_waiting_token_not_per_address(b: Backend) {
    // A per-client bucket of 10: 300 polls from one address would be 290 × 429 if counted.
    let app = app(
        b,
        &[
            ("RATE_LIMIT_RPS", "5"),
            ("RATE_LIMIT_BURST", "10"),
            ("TRUSTED_PROXIES", "127.0.0.1/32"),
            ("QUEUE_ADMISSION_RPS", "0.01"),
        ],
    )
    .await;
    // 300 fans join from addresses of their own, then all poll from behind one NAT.
    let mut tokens = Vec::new();
    for i in 0..300u32 {
        let res = app
            .post("/api/v1/queue/join")
            .header(
                "x-forwarded-for",
                format!("10.1.{}.{}", i / 250, i % 250 + 1),
            )
            .json(&json!({"event_id": "nat"}))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 202);
        tokens.push(token_of(&json(res).await));
    }
    let nat = "203.0.113.7";
    let statuses: Vec<(u16, bool)> = futures_util::future::join_all(tokens.iter().map(|t| {
        app.get(&format!("/api/v1/queue/status?token={t}"))
            .header("x-forwarded-for", nat)
            .send()
    }))
    .await
    .into_iter()
    .map(|r| {
        let r = r.unwrap();
        (r.status().as_u16(), r.headers().contains_key("ratelimit"))
    })
    .collect();
    let limited = statuses.iter().filter(|(s, _)| *s == 429).count();
    assert_eq!(limited, 0, "{limited} of 300 polls got 429");
    assert!(statuses.iter().all(|(s, h)| *s == 200 && !h));

    // Each token has its own bucket: 5 at once (once refilled), then 429 with Retry-After.
    tokio::time::sleep(Duration::from_millis(2600)).await;
    let t = &tokens[7];
    let mut codes = Vec::new();
    for _ in 0..8 {
        let res = app
            .get(&format!("/api/v1/queue/status?token={t}"))
            .send()
            .await
            .unwrap();
        codes.push(res.status().as_u16());
        if res.status() == 429 {
            let e = res.headers()["retry-after"].to_str().unwrap().to_owned();
            assert_eq!(e, "1");
            assert_error(res, 429, "RATE_LIMITED").await;
        }
    }
    assert_eq!(codes[..5], [200; 5], "{codes:?}");
    assert_eq!(codes[5..], [429; 3], "{codes:?}");
    // Leave is limited per token too, and a refill lets it through.
    tokio::time::sleep(Duration::from_millis(600)).await;
    let res = app
        .client
        .delete(app.url(&format!("/api/v1/queue/leave?token={t}")))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    // The address's own bucket is still there for join (10 then 429).
    let mut joined = 0;
    for _ in 0..15 {
        let res = app
            .post("/api/v1/queue/join")
            .header("x-forwarded-for", nat)
            .json(&json!({"event_id": "nat"}))
            .send()
            .await
            .unwrap();
        joined += u32::from(res.status() == 202);
    }
    assert!((10..=11).contains(&joined), "{joined}");
}

store_contract!(metrics_name_defined_events_and_fold_the_rest_into_other);

async fn metrics_name_defined_events_and_fold_the_rest_into_other(b: Backend) {
    let app = app(b, &[("QUEUE_ADMISSION_RPS", "0.01")]).await;
    let opens = std::time::SystemTime::now() + Duration::from_secs(3600);
    put(
        &app,
        "gig",
        json!({"opens_at": humantime::format_rfc3339_seconds(opens).to_string(), "adaptive": true}),
    )
    .await;
    for _ in 0..3 {
        join(&app, "gig").await;
    }
    for ev in ["x1", "x2", "x3"] {
        join(&app, ev).await;
    }
    // The gauges come from the store, re-read every 5 s by a queue call.
    tokio::time::sleep(Duration::from_millis(5200)).await;
    join(&app, "x1").await;
    let deadline = Instant::now() + Duration::from_secs(5);
    let metrics = loop {
        let m = app.metrics_text().await;
        if m.contains("queue_prequeue{event=\"gig\"} 3") || Instant::now() > deadline {
            break m;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    for want in [
        "queue_prequeue{event=\"gig\"} 3",
        "queue_active{event=\"gig\"} 0",
        "queue_admitted{event=\"gig\"} 0",
        "queue_admission_factor{event=\"gig\"} 1",
        "queue_joins_total{event=\"gig\"} 3",
        "queue_joins_total{event=\"other\"} 4",
    ] {
        assert!(metrics.contains(want), "{want} missing in {metrics}");
    }
    for ev in ["x1", "x2", "x3"] {
        assert!(
            !metrics.contains(&format!("event=\"{ev}\"")),
            "{ev} labelled"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_keeps_the_definitions() {
    let redis = tokio::task::spawn_blocking(crate::helpers::RedisServer::start)
        .await
        .unwrap();
    let first = spawn_app_with(AppOptions::new(Backend::Redis).redis(redis.addr())).await;
    let opens_at = "2031-06-01T18:00:00Z";
    put(
        &first,
        "tour",
        json!({"admission_rps": 12.5, "max_active": 300, "opens_at": opens_at, "state": "paused"}),
    )
    .await;
    let token = join(&first, "tour").await;
    first.shutdown().await;
    let second = spawn_app_with(AppOptions::new(Backend::Redis).redis(redis.addr())).await;
    let d = get(&second, "tour").await;
    assert_eq!(d["admission_rps"], 12.5, "{d}");
    assert_eq!(d["max_active"], 300);
    assert_eq!(d["opens_at"], opens_at);
    assert_eq!(d["state"], "paused");
    assert_eq!(d["prequeue"], 1);
    assert_eq!(status(&second, &token).await["status"], "prequeue");
}

store_contract!(adaptive_admission_follows_the_reservation_upstreams_health);

async fn adaptive_admission_follows_the_reservation_upstreams_health(b: Backend) {
    let app = app(b, &[]).await;
    adaptive_run(&[&app]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn adaptive_admission_is_shared_by_two_replicas() {
    let a = app(Backend::Redis, &[]).await;
    let addr = a.redis.as_ref().unwrap().addr();
    let b = spawn_app_with(AppOptions::new(Backend::Redis).redis(addr)).await;
    adaptive_run(&[&a, &b]).await;
}

/// Configured 20/s, adaptive. Creates flow at ~20/s over the replicas; the reservation mocks
/// answer 503 until the measured admission rate is at most half the configured one (asserted
/// within 15 s), then healthy again: back to the configured rate within 60 s.
async fn adaptive_run(apps: &[&TestApp]) {
    let rate = 20.0;
    let first = apps[0];
    put(
        first,
        "surge",
        json!({"admission_rps": rate, "adaptive": true}),
    )
    .await;
    let s = gateway_api::store::queue::QueueSettings::from(&first.state.config.queue);
    let store = first.state.store.clone();
    futures_util::stream::iter(0..2500)
        .map(|_| {
            let store = store.clone();
            async move { store.queue_join(&s, "surge", None).await.unwrap() }
        })
        .buffer_unordered(32)
        .collect::<Vec<_>>()
        .await;
    let probe = join(first, "surge").await;

    // Traffic: a create every 50 ms and a queue poll every 500 ms, round robin.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let traffic = {
        let stop = stop.clone();
        let targets: Vec<(reqwest::Client, String, String)> = apps
            .iter()
            .map(|a| (a.client.clone(), a.url(""), a.bearer("buyer")))
            .collect();
        let probe = probe.clone();
        tokio::spawn(async move {
            let mut i = 0usize;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let (client, base, bearer) = &targets[i % targets.len()];
                let _ = client
                    .post(format!("{base}/api/v1/reservations/create"))
                    .header("authorization", bearer)
                    .header("idempotency-key", uuid::Uuid::new_v4().to_string())
                    .json(&json!({"event_id": "surge", "seats": 1}))
                    .send()
                    .await;
                if i.is_multiple_of(10) {
                    let _ = client
                        .get(format!("{base}/api/v1/queue/status?token={probe}"))
                        .send()
                        .await;
                }
                i += 1;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
    };
    // Admissions per second over the last 3 s, from the store's admitted total.
    let mut samples: std::collections::VecDeque<(Instant, u64)> = Default::default();
    let sample = async |samples: &mut std::collections::VecDeque<(Instant, u64)>| {
        let g = get(first, "surge").await;
        let now = Instant::now();
        samples.push_back((now, g["admitted_total"].as_u64().unwrap()));
        while samples.len() > 1 && now - samples[0].0 > Duration::from_secs(3) {
            samples.pop_front();
        }
        let (t0, n0) = samples[0];
        let secs = (now - t0).as_secs_f64();
        let r = if secs >= 2.5 {
            (samples.back().unwrap().1 - n0) as f64 / secs
        } else {
            f64::NAN
        };
        (r, g["admission_factor"].as_f64().unwrap())
    };
    // Healthy: the configured rate.
    let t = Instant::now();
    let mut healthy_rate = f64::NAN;
    while t.elapsed() < Duration::from_secs(4) {
        healthy_rate = sample(&mut samples).await.0;
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert!(
        (rate * 0.8..=rate * 1.2).contains(&healthy_rate),
        "healthy: {healthy_rate}/s"
    );
    // Failing: within 15 s at most half the configured rate.
    for a in apps {
        a.reservation.set_status(503);
    }
    let failing = Instant::now();
    samples.clear();
    loop {
        let (r, f) = sample(&mut samples).await;
        if r <= rate * 0.5 {
            eprintln!(
                "503s: {r:.1}/s (factor {f}) after {:.1} s",
                failing.elapsed().as_secs_f64()
            );
            break;
        }
        assert!(
            failing.elapsed() < Duration::from_secs(15),
            "still {r}/s (factor {f}) 15 s after the upstream began failing"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    // Healthy again: the configured rate within 60 s.
    for a in apps {
        a.reservation.set_status(0);
    }
    let healed = Instant::now();
    samples.clear();
    loop {
        let (r, f) = sample(&mut samples).await;
        if f == 1.0 && r >= rate * 0.85 {
            eprintln!(
                "healthy again: {r:.1}/s (factor {f}) after {:.1} s",
                healed.elapsed().as_secs_f64()
            );
            break;
        }
        assert!(
            healed.elapsed() < Duration::from_secs(60),
            "only {r}/s (factor {f}) 60 s after the upstream recovered"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let _ = traffic.await;
}

store_contract!(eta_uses_the_measured_rate_once_ten_were_admitted);

async fn eta_uses_the_measured_rate_once_ten_were_admitted(b: Backend) {
    let app = app(b, &[]).await;
    // Configured 20/s, but a cap of 10 that nobody frees: after ten admissions the measured
    // rate falls while the configured one stays 20/s.
    put(&app, "slow", json!({"admission_rps": 20, "max_active": 10})).await;
    let mut tokens = Vec::new();
    for _ in 0..40 {
        tokens.push(join(&app, "slow").await);
    }
    // Before ten admissions: the configured rate (29 ahead / 20 per s → 2 s).
    let s = status(&app, &tokens[39]).await;
    assert_eq!(s["eta_sec"], 2, "{s}");
    assert_eq!(s["poll_after_sec"], 1, "{s}");
    // Fans keep polling (admission is evaluated on each call).
    for _ in 0..5 {
        tokio::time::sleep(Duration::from_millis(600)).await;
        status(&app, &tokens[39]).await;
    }
    let g = get(&app, "slow").await;
    assert_eq!(g["admitted_total"], 10, "{g}");
    let measured = g["admission_rate_measured"].as_f64().unwrap();
    assert!(measured > 0.5 && measured < 10.0, "{g}");
    // 29 ahead at the measured rate (about 10 in 3 s): several times the configured eta.
    let s = status(&app, &tokens[39]).await;
    assert_eq!(s["position"], 30, "{s}");
    let eta = s["eta_sec"].as_u64().unwrap();
    assert!(eta >= 6, "eta {eta} s: still the configured rate? {s} {g}");
}
