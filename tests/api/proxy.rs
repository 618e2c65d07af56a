//! The proxy path (SPEC §2, §3, §4): route mapping, header rules, upstream errors, ids, limits.
use std::time::{Duration, Instant};

use gateway_api::mock_upstream::{MockUpstream, Role};
use serde_json::json;

use crate::helpers::{
    AppOptions, Backend, GatewayProcess, JwksServer, TestKey, assert_error, base_env, free_port,
    json, jwt_env, raw_request, spawn_app_on, spawn_app_with,
};
use crate::store_contract;

store_contract!(reservation_round_trip_maps_every_route);

async fn reservation_round_trip_maps_every_route(b: Backend) {
    let app = spawn_app_on(b).await;
    let res = app
        .post_json(
            "/api/v1/reservations/create",
            &json!({"event_id": "e1", "seats": 2}),
        )
        .header("authorization", app.bearer("user-1"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    let created = json(res).await;
    let id = created["reservation_id"].as_str().unwrap().to_owned();

    let res = app
        .get(&format!("/api/v1/reservations/{id}?expand=seats"))
        .header("authorization", app.bearer("user-1"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(json(res).await["status"], "HELD");

    let res = app
        .post(&format!("/api/v1/reservations/{id}/confirm"))
        .header("idempotency-key", uuid::Uuid::new_v4().to_string())
        .header("authorization", app.bearer("user-1"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    // Cancelling a confirmed reservation: the upstream's 409 body comes back as it is.
    let res = app
        .post(&format!("/api/v1/reservations/{id}/cancel"))
        .header("idempotency-key", uuid::Uuid::new_v4().to_string())
        .header("authorization", app.bearer("user-1"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 409);
    assert_eq!(json(res).await["error"]["code"], "INVALID_STATE");

    let seen: Vec<(String, String)> = app
        .reservation
        .received()
        .iter()
        .map(|r| (r.method.clone(), r.path.clone()))
        .collect();
    assert_eq!(
        seen,
        vec![
            ("POST".to_owned(), "/v1/reservations".to_owned()),
            (
                "GET".to_owned(),
                format!("/v1/reservations/{id}?expand=seats")
            ),
            ("POST".to_owned(), format!("/v1/reservations/{id}/confirm")),
            ("POST".to_owned(), format!("/v1/reservations/{id}/cancel")),
        ]
    );
}

#[tokio::test]
async fn alias_and_payment_routes_map_to_their_upstreams() {
    let app = spawn_app_on(Backend::Memory).await;
    let res = app
        .post_json("/api/v1/reservations", &json!({"event_id": "e1"}))
        .header("authorization", app.bearer("user-1"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    let res = app
        .post_json(
            "/api/v1/payment/intent",
            &json!({"reservation_id": "r1", "amount": 100}),
        )
        .header("authorization", app.bearer("user-1"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let intent = json(res).await;
    assert_eq!(intent["status"], "PENDING");
    let id = intent["payment_intent_id"].as_str().unwrap();
    let res = app
        .get(&format!("/api/v1/payment/intent/{id}"))
        .header("authorization", app.bearer("user-1"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let res = app
        .get("/api/v1/payment/intent/unknown")
        .header("authorization", app.bearer("user-1"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 404);
    assert_eq!(json(res).await["error"]["code"], "PAYMENT_INTENT_NOT_FOUND");
    let paths: Vec<String> = app
        .payment
        .received()
        .iter()
        .map(|r| r.path.clone())
        .collect();
    assert_eq!(
        paths,
        vec![
            "/v1/sim/intent".to_owned(),
            format!("/v1/sim/intent/{id}"),
            "/v1/sim/intent/unknown".to_owned()
        ]
    );
    assert_eq!(app.reservation.received()[0].path, "/v1/reservations");
}

#[tokio::test]
async fn bad_ids_never_reach_an_upstream() {
    let app = spawn_app_on(Backend::Memory).await;
    let long = "a".repeat(200);
    for path in [
        "/api/v1/reservations/a%2Fb",
        "/api/v1/reservations/a%20b",
        "/api/v1/reservations/a%00",
    ] {
        let res = app
            .get(path)
            .header("authorization", app.bearer("user-1"))
            .send()
            .await
            .unwrap();
        assert_error(res, 400, "BAD_REQUEST").await;
    }
    // An HTTP client would normalise `..` away; send it raw.
    for path in [
        "/api/v1/reservations/..",
        "/api/v1/reservations/%2E%2E",
        "/api/v1/reservations/%2e.",
    ] {
        let req = format!(
            "GET {path} HTTP/1.1\r\nHost: x\r\nAuthorization: {}\r\nConnection: close\r\n\r\n",
            app.bearer("user-1")
        );
        let answer = raw_request(app.addr, req.as_bytes()).await;
        assert!(answer.starts_with("HTTP/1.1 400"), "{path}: {answer}");
        assert!(answer.contains("BAD_REQUEST"), "{answer}");
    }
    let res = app
        .get(&format!("/api/v1/reservations/{long}"))
        .header("authorization", app.bearer("user-1"))
        .send()
        .await
        .unwrap();
    assert_error(res, 400, "BAD_REQUEST").await;
    assert_eq!(app.reservation.count(), 0);
}

/// A path segment that does not percent-decode to UTF-8 is refused by the path extractor, before
/// any id rule runs: it must still be the JSON error of SPEC §4, not axum's plain-text 400.
#[tokio::test]
async fn a_path_segment_that_does_not_decode_is_a_json_400() {
    let app = spawn_app_on(Backend::Memory).await;
    let admin = app.bearer_with("ops", json!({"scope": "gateway:admin"}));
    for (path, bearer) in [
        ("/api/v1/reservations/%FF", app.bearer("user-1")),
        ("/api/v1/payment/intent/%C3%28", app.bearer("user-1")),
        ("/admin/v1/events/%FF", admin),
    ] {
        let res = app
            .get(path)
            .header("authorization", bearer)
            .send()
            .await
            .unwrap();
        let body = assert_error(res, 400, "BAD_REQUEST").await;
        assert!(
            body["error"]["message"].as_str().unwrap().contains("id"),
            "{path}: {body}"
        );
    }
    assert_eq!(app.reservation.count(), 0);
    assert_eq!(app.payment.count(), 0);
}

#[tokio::test]
async fn unknown_route_and_wrong_method_are_json() {
    let app = spawn_app_on(Backend::Memory).await;
    assert_error(app.get("/nope").send().await.unwrap(), 404, "NOT_FOUND").await;
    let res = app
        .client
        .delete(app.url("/api/v1/payment/intent"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.headers()["allow"], "POST");
    assert_error(res, 405, "METHOD_NOT_ALLOWED").await;
}

#[tokio::test]
async fn health_version_and_security_headers() {
    let app = spawn_app_on(Backend::Memory).await;
    let res = app.get("/healthz").send().await.unwrap();
    assert_eq!(res.status(), 200);
    for (h, v) in [
        ("x-content-type-options", "nosniff"),
        ("x-frame-options", "DENY"),
        ("referrer-policy", "no-referrer"),
        (
            "content-security-policy",
            "default-src 'none'; frame-ancestors 'none'",
        ),
    ] {
        assert_eq!(res.headers()[h], v);
    }
    assert_eq!(res.headers()["x-trace-id"].len(), 32);
    assert_eq!(json(res).await, json!({"status": "ok"}));
    let v = json(app.get("/version").send().await.unwrap()).await;
    for k in ["service", "version", "git_sha", "build_time"] {
        assert!(v[k].as_str().is_some_and(|s| !s.is_empty()), "{k}: {v}");
    }
    let res = app.get("/readyz").send().await.unwrap();
    assert_eq!(res.status(), 200);
}

#[tokio::test]
async fn headers_cross_the_gateway_as_the_spec_says() {
    let app = spawn_app_on(Backend::Memory).await;
    app.reservation
        .add_response_header("connection", "x-internal");
    app.reservation.add_response_header("x-internal", "secret");
    app.reservation
        .add_response_header("keep-alive", "timeout=5");
    app.reservation
        .add_response_header("x-upstream-note", "kept");
    let key = uuid::Uuid::new_v4().to_string();
    let bearer = app.bearer("user-123");
    let res = app
        .post("/api/v1/reservations/create?source=web")
        .header("authorization", &bearer)
        .header("idempotency-key", &key)
        .header("content-type", "application/json")
        .header("x-user-id", "admin")
        .header("x-request-id", "client-req.42")
        .header("connection", "x-client-hop")
        .header("x-client-hop", "1")
        .header("cookie", "session=abc")
        .header("proxy-authorization", "Basic Zm9vOmJhcg==")
        .header("x-forwarded-for", "203.0.113.7")
        .body(r#"{"event_id":"e1",  "seats": 1}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    // Back to the client: the upstream's end-to-end headers, never its hop-by-hop ones.
    assert_eq!(res.headers()["x-request-id"], "client-req.42");
    assert_eq!(res.headers()["x-upstream-note"], "kept");
    assert!(res.headers().get("x-internal").is_none());
    assert!(res.headers().get("keep-alive").is_none());
    assert_eq!(res.headers()["content-type"], "application/json");

    let got = &app.reservation.received()[0];
    assert_eq!(got.path, "/v1/reservations?source=web");
    // Body bytes unchanged, whitespace and all.
    assert_eq!(&got.body[..], br#"{"event_id":"e1",  "seats": 1}"#);
    let h = &got.headers;
    assert_eq!(h["authorization"], bearer.as_str());
    assert_eq!(h["idempotency-key"], key.as_str());
    assert_eq!(h["content-type"], "application/json");
    assert_eq!(h["x-request-id"], "client-req.42");
    assert_eq!(h["x-forwarded-for"], "203.0.113.7, 127.0.0.1");
    assert_eq!(h["x-forwarded-proto"], "http");
    assert_ne!(
        h.get("x-user-id").map(|v| v.to_str().unwrap()),
        Some("admin"),
        "a client never chooses who it is"
    );
    for absent in ["x-client-hop", "cookie", "proxy-authorization"] {
        assert!(
            h.get(absent).is_none(),
            "{absent} must not reach the upstream"
        );
    }
    // `connection` on the upstream side is the gateway's own keep-alive, never the client's.
    assert!(
        h.get("connection")
            .is_none_or(|v| !v.to_str().unwrap().contains("x-client-hop"))
    );
}

#[tokio::test]
async fn a_malformed_request_id_is_replaced() {
    let app = spawn_app_on(Backend::Memory).await;
    let res = app
        .get("/api/v1/reservations/r1")
        .header("authorization", app.bearer("u"))
        .header("x-request-id", "bad id with spaces")
        .send()
        .await
        .unwrap();
    let echoed = res.headers()["x-request-id"].to_str().unwrap().to_owned();
    assert!(uuid::Uuid::parse_str(&echoed).is_ok(), "{echoed}");
    assert_eq!(
        app.reservation.received()[0].headers["x-request-id"],
        echoed.as_str()
    );
}

#[tokio::test]
async fn incoming_traceparent_sets_the_trace_id() {
    let app = spawn_app_on(Backend::Memory).await;
    let res = app
        .get("/nope")
        .header(
            "traceparent",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        )
        .send()
        .await
        .unwrap();
    assert_eq!(
        res.headers()["x-trace-id"],
        "4bf92f3577b34da6a3ce929d0e0e4736"
    );
    let body = assert_error(res, 404, "NOT_FOUND").await;
    assert_eq!(
        body["error"]["trace_id"],
        "4bf92f3577b34da6a3ce929d0e0e4736"
    );
}

#[tokio::test]
async fn upstream_statuses_and_bodies_pass_through() {
    let app = spawn_app_on(Backend::Memory).await;
    let res = app
        .post_json(
            "/api/v1/reservations/create",
            &json!({"event_id": "sold-out"}),
        )
        .header("authorization", app.bearer("u"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 409);
    let body = json(res).await;
    assert_eq!(body["error"]["code"], "INVENTORY_CONFLICT");
    let res = app
        .get("/api/v1/reservations/missing")
        .header("authorization", app.bearer("u"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 404);
    assert_eq!(json(res).await["error"]["code"], "RESERVATION_NOT_FOUND");
}

#[tokio::test]
async fn upstream_refused_is_503() {
    let closed = format!("http://127.0.0.1:{}", free_port());
    let app =
        spawn_app_with(AppOptions::new(Backend::Memory).env("UPSTREAM_RESERVATION_BASE", closed))
            .await;
    let res = app
        .get("/api/v1/reservations/r1")
        .header("authorization", app.bearer("u"))
        .send()
        .await
        .unwrap();
    let body = assert_error(res, 503, "UPSTREAM_UNAVAILABLE").await;
    assert!(
        !body.to_string().contains("127.0.0.1"),
        "error bodies never reveal upstream addresses: {body}"
    );
}

#[tokio::test]
async fn slow_upstream_is_504_at_the_configured_timeout() {
    let app = spawn_app_with(
        AppOptions::new(Backend::Memory).env("UPSTREAM_RESERVATION_TIMEOUT", "500ms"),
    )
    .await;
    app.reservation.set_delay(Duration::from_secs(10));
    let started = Instant::now();
    let res = app
        .get("/api/v1/reservations/r1")
        .header("authorization", app.bearer("u"))
        .send()
        .await
        .unwrap();
    assert_error(res, 504, "UPSTREAM_TIMEOUT").await;
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "answered after {:?}, not at the 500ms timeout",
        started.elapsed()
    );
}

/// A fake upstream that answers every connection with `reply` and closes.
async fn broken_upstream(reply: &'static [u8]) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                use tokio::io::{AsyncReadExt, AsyncWriteExt};
                let mut buf = [0u8; 4096];
                let _ = s.read(&mut buf).await;
                let _ = s.write_all(reply).await;
                let _ = s.shutdown().await;
            });
        }
    });
    format!("http://{addr}")
}

/// Issue #17: the upstream's body passes through as it came, so a sized answer keeps its
/// `Content-Length` (it was re-chunked before), a chunked one stays chunked, and an upstream that
/// sends fewer bytes than it announced never turns into a complete-looking answer.
#[tokio::test]
async fn an_upstream_answer_keeps_its_framing() {
    let sized =
        &b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 11\r\n\r\nhello world"[..];
    let chunked = &b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"[..];
    let short =
        &b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 50\r\n\r\nhello world"[..];
    for (reply, length) in [(sized, Some("11")), (chunked, None), (short, Some("50"))] {
        let url = broken_upstream(reply).await;
        let app =
            spawn_app_with(AppOptions::new(Backend::Memory).env("UPSTREAM_PAYMENT_BASE", url))
                .await;
        let res = app
            .get("/api/v1/payment/intent/pi_1")
            .header("authorization", app.bearer("u"))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200);
        let h = res.headers();
        assert_eq!(
            h.get("content-length").map(|v| v.to_str().unwrap()),
            length,
            "{h:?}"
        );
        let chunks = h
            .get("transfer-encoding")
            .map(|v| v.to_str().unwrap().to_owned());
        assert_eq!(chunks.is_some(), length.is_none(), "{h:?}");
        let body = res.bytes().await;
        if reply == short {
            assert!(
                body.is_err(),
                "a short body must not look complete: {body:?}"
            );
        } else {
            assert_eq!(&body.unwrap()[..], b"hello world");
        }
    }
}

#[tokio::test]
async fn an_upstream_that_does_not_speak_http_is_502() {
    for reply in [&b"SSH-2.0-OpenSSH_9.2\r\n\r\n"[..], &b""[..]] {
        let url = broken_upstream(reply).await;
        let app =
            spawn_app_with(AppOptions::new(Backend::Memory).env("UPSTREAM_PAYMENT_BASE", url))
                .await;
        let res = app
            .get("/api/v1/payment/intent/pi_1")
            .header("authorization", app.bearer("u"))
            .send()
            .await
            .unwrap();
        assert_error(res, 502, "UPSTREAM_ERROR").await;
    }
}

#[tokio::test]
async fn bodies_over_max_body_size_are_413_and_never_forwarded() {
    let app = spawn_app_with(AppOptions::new(Backend::Memory).env("MAX_BODY_SIZE", "1024")).await;
    let big = format!(r#"{{"event_id":"e1","pad":"{}"}}"#, "x".repeat(2048));
    let res = app
        .post("/api/v1/reservations/create")
        .header("authorization", app.bearer("u"))
        .header("idempotency-key", uuid::Uuid::new_v4().to_string())
        .header("content-type", "application/json")
        .body(big.clone())
        .send()
        .await
        .unwrap();
    assert_error(res, 413, "PAYLOAD_TOO_LARGE").await;
    // Chunked, with no Content-Length to refuse up front.
    let stream = futures_util::stream::iter(vec![Ok::<_, std::io::Error>(bytes::Bytes::from(big))]);
    let res = app
        .post("/api/v1/payment/intent")
        .header("authorization", app.bearer("u"))
        .header("idempotency-key", uuid::Uuid::new_v4().to_string())
        .body(reqwest::Body::wrap_stream(stream))
        .send()
        .await
        .unwrap();
    assert_error(res, 413, "PAYLOAD_TOO_LARGE").await;
    assert_eq!(app.reservation.count() + app.payment.count(), 0);
    // Just under the limit still goes through.
    let res = app
        .post_json("/api/v1/reservations/create", &json!({"event_id": "e1"}))
        .header("authorization", app.bearer("u"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
}

/// SPEC §2: a store outage after start is reported (body, gauge), not a readiness verdict, so
/// Kubernetes does not take every replica out of rotation at once.
#[tokio::test]
async fn a_store_outage_shows_in_readyz_but_keeps_the_replica_ready() {
    let mut app = spawn_app_on(Backend::Redis).await;
    let res = app.get("/readyz").send().await.unwrap();
    assert_eq!(res.status(), 200);
    let body = json(res).await;
    assert_eq!(body["store"], "up");
    assert_eq!(body["store_backend"], "redis");
    let mut redis = app.redis.take().unwrap();
    tokio::task::spawn_blocking(move || {
        redis.stop();
        redis
    })
    .await
    .map(|r| app.redis = Some(r))
    .unwrap();
    // The probe runs every second: within a few the outage shows, and the replica stays ready.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let res = app.get("/readyz").send().await.unwrap();
        assert_eq!(
            res.status(),
            200,
            "a store outage never makes the replica unready"
        );
        if json(res).await["store"] == "down" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the outage never showed in /readyz"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(app.metrics_text().await.contains("\nstore_up 0\n"));
    // Liveness does not depend on the store.
    assert_eq!(app.get("/healthz").send().await.unwrap().status(), 200);
    let mut redis = app.redis.take().unwrap();
    app.redis = Some(
        tokio::task::spawn_blocking(move || {
            redis.restart();
            redis
        })
        .await
        .unwrap(),
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while json(app.get("/readyz").send().await.unwrap()).await["store"] != "up" {
        assert!(Instant::now() < deadline, "the store never showed as back");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(app.metrics_text().await.contains("\nstore_up 1\n"));
}

/// SPEC §2: before the store has answered once, the replica is not ready.
#[tokio::test]
async fn a_replica_whose_store_never_answered_is_not_ready() {
    let mut redis = crate::helpers::RedisServer::start();
    redis.stop();
    let app = spawn_app_with(
        AppOptions::new(Backend::Redis)
            .redis(format!("127.0.0.1:{}", redis.port))
            .no_wait_ready(),
    )
    .await;
    // Once the JWKS is in, the store is what it waits for.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let res = app.get("/readyz").send().await.unwrap();
        assert_eq!(res.status(), 503);
        if json(res).await["reason"] == "store has not answered yet" {
            break;
        }
        assert!(Instant::now() < deadline, "never waited for the store");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let redis = tokio::task::spawn_blocking(move || {
        redis.restart();
        redis
    })
    .await
    .unwrap();
    app.wait_ready().await;
    drop(redis);
}

#[tokio::test]
async fn sigterm_drains_in_flight_requests_then_exits_zero() {
    let reservation = MockUpstream::start(Role::Reservation, "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let payment = MockUpstream::start(Role::Payment, "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    reservation.set_delay(Duration::from_secs(2));
    let jwks = JwksServer::start(&TestKey::defaults()).await;
    let mut env = base_env(&reservation, &payment, None);
    env.extend(jwt_env(&jwks));
    env.retain(|(k, _)| k != "SHUTDOWN_DELAY" && k != "PORT");
    env.push(("SHUTDOWN_DELAY".into(), "1s".into()));
    env.push(("UPSTREAM_RESERVATION_TIMEOUT".into(), "10s".into()));
    let mut gw = GatewayProcess::start(&env).await;
    gw.wait_ready().await;
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    let token = crate::helpers::bearer_for(&env, "user-1");
    let slow = {
        let client = client.clone();
        let url = gw.url("/api/v1/reservations/r1");
        tokio::spawn(async move { client.get(url).header("authorization", token).send().await })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    gw.terminate();
    tokio::time::sleep(Duration::from_millis(300)).await;
    // During SHUTDOWN_DELAY: still accepting, but not ready.
    let res = client.get(gw.url("/readyz")).send().await.unwrap();
    assert_eq!(res.status(), 503);
    // The in-flight request completes with the upstream's answer (404: unknown id), not an error.
    let res = slow.await.unwrap().unwrap();
    assert_eq!(res.status(), 404);
    assert_eq!(json(res).await["error"]["code"], "RESERVATION_NOT_FOUND");
    let code = tokio::task::spawn_blocking(move || gw.wait_exit(Duration::from_secs(15)))
        .await
        .unwrap();
    assert_eq!(code, Some(0));
}

#[tokio::test]
async fn a_bad_setting_stops_start_up_naming_the_variable() {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_gateway"))
        .env_clear()
        .env("UPSTREAM_PAYMENT_TIMEOUT", "4O0ms")
        .env("JWT_SKIP_VERIFY", "true")
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("UPSTREAM_PAYMENT_TIMEOUT") && stderr.contains("4O0ms"),
        "{stderr}"
    );
}
