//! The proxy path (SPEC §2, §3, §4): route mapping, header rules, upstream errors, ids, limits.
use serde_json::json;

use crate::helpers::{Backend, assert_error, json, raw_request, spawn_app_on};
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
