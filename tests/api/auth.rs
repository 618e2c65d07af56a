//! JWT authentication (SPEC §2, §3, §4, §8; issue #3), against a real JWKS server over HTTP.
use crate::helpers::{Backend, TestApp, TestKey, assert_error, claims_for, spawn_app_on};

const PROTECTED: &str = "/api/v1/reservations/r-1";

async fn get_with(app: &TestApp, auth: Option<&str>) -> reqwest::Response {
    let mut req = app.get(PROTECTED);
    if let Some(a) = auth {
        req = req.header("authorization", a);
    }
    req.send().await.unwrap()
}

/// Asserts a 401 with the SPEC §4 body and this `WWW-Authenticate`.
async fn assert_401(res: reqwest::Response, www: &str) {
    assert_eq!(
        res.headers()
            .get("www-authenticate")
            .map(|v| v.to_str().unwrap()),
        Some(www)
    );
    assert_error(res, 401, "UNAUTHENTICATED").await;
}

/// The request went through the gateway to the upstream (whose answer for an unknown
/// reservation is its own 404).
async fn assert_accepted(app: &TestApp, auth: &str) {
    let before = app.reservation.count();
    let res = get_with(app, Some(auth)).await;
    let status = res.status();
    let body = res.text().await.unwrap();
    assert!(
        status != 401 && status != 503 && !body.contains("UNAUTHENTICATED"),
        "{status} {body}"
    );
    assert_eq!(app.reservation.count(), before + 1, "reached the upstream");
}

#[tokio::test]
async fn accepts_rs256_es256_and_eddsa_tokens() {
    let app = spawn_app_on(Backend::Memory).await;
    for key in [TestKey::rsa(), TestKey::ec(), TestKey::ed25519()] {
        let token = key.sign(&claims_for("user-7"));
        assert_accepted(&app, &format!("Bearer {token}")).await;
    }
    assert_eq!(app.reservation.count(), 3);
}

#[tokio::test]
async fn the_upstream_sees_the_token_sub_as_x_user_id_never_the_clients() {
    let app = spawn_app_on(Backend::Memory).await;
    let res = app
        .get(PROTECTED)
        .header("authorization", app.bearer("user-42"))
        .header("x-user-id", "admin")
        .send()
        .await
        .unwrap();
    assert_ne!(res.status(), 401);
    let seen = app.reservation.received();
    assert_eq!(seen.len(), 1);
    let users: Vec<&str> = seen[0]
        .headers
        .get_all("x-user-id")
        .iter()
        .map(|v| v.to_str().unwrap())
        .collect();
    assert_eq!(users, vec!["user-42"]);
}

#[tokio::test]
async fn missing_header_and_other_schemes_are_401_without_error_code() {
    let app = spawn_app_on(Backend::Memory).await;
    assert_401(get_with(&app, None).await, "Bearer").await;
    assert_401(get_with(&app, Some("Basic dXNlcjpwYXNz")).await, "Bearer").await;
    assert_eq!(app.reservation.count(), 0);
}
