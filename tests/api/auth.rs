//! JWT authentication (SPEC §2, §3, §4, §8; issue #3), against a real JWKS server over HTTP.
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};

use crate::helpers::{
    AppOptions, Backend, JwksServer, TestApp, TestKey, assert_error, claims_for, free_port, json,
    spawn_app_on, spawn_app_with, unix_now,
};

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

const INVALID: &str = "Bearer error=\"invalid_token\"";

fn b64(v: &Value) -> String {
    URL_SAFE_NO_PAD.encode(v.to_string())
}

fn with(claims: &Value, k: &str, v: Value) -> Value {
    let mut c = claims.clone();
    c[k] = v;
    c
}

fn without(claims: &Value, k: &str) -> Value {
    let mut c = claims.clone();
    c.as_object_mut().unwrap().remove(k);
    c
}

#[tokio::test]
async fn bad_tokens_are_401_invalid_token_and_never_reach_the_upstream() {
    let app = spawn_app_on(Backend::Memory).await;
    let good = claims_for("user-1");
    let ed = TestKey::ed25519();
    let now = unix_now();
    let rsa_public_pem = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/rsa_pub.pem"
    ))
    .unwrap();
    // The classic key-confusion attack: HS256 keyed with the RSA public key the JWKS publishes.
    let mut hs_header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
    hs_header.kid = Some(TestKey::rsa().kid.clone());
    let hs256 = jsonwebtoken::encode(
        &hs_header,
        &good,
        &jsonwebtoken::EncodingKey::from_secret(&rsa_public_pem).unwrap(),
    )
    .unwrap();
    let alg_none = format!(
        "{}.{}.",
        b64(&json!({"alg": "none", "typ": "JWT", "kid": ed.kid})),
        b64(&good)
    );
    // Signed by a key the JWKS does not hold.
    let unknown_kid = TestKey::rsa2().sign(&good);
    // A valid signature over other claims, with this token's claims swapped in.
    let forged = {
        let t = ed.sign(&good);
        let parts: Vec<&str> = t.split('.').collect();
        format!(
            "{}.{}.{}",
            parts[0],
            b64(&with(&good, "sub", json!("admin"))),
            parts[2]
        )
    };
    let big = ed.sign(&with(&good, "pad", json!("x".repeat(11_800))));
    assert!((15_000..16_100).contains(&big.len()), "{}", big.len());
    let cases: Vec<(&str, String)> = vec![
        ("empty bearer", "Bearer ".to_owned()),
        (
            "two segments",
            format!("Bearer {}.{}", b64(&json!({"alg": "EdDSA"})), b64(&good)),
        ),
        ("bad base64", "Bearer !!!.@@@.###".to_owned()),
        (
            "bad JSON",
            format!(
                "Bearer {}.{}.c2ln",
                URL_SAFE_NO_PAD.encode("{\"alg\": EdDSA"),
                URL_SAFE_NO_PAD.encode("not json")
            ),
        ),
        ("alg none", format!("Bearer {alg_none}")),
        ("HS256 with the RSA public key", format!("Bearer {hs256}")),
        ("unknown kid", format!("Bearer {unknown_kid}")),
        ("forged claims", format!("Bearer {forged}")),
        (
            "expired",
            format!("Bearer {}", ed.sign(&with(&good, "exp", json!(now - 120)))),
        ),
        (
            "nbf in the future",
            format!("Bearer {}", ed.sign(&with(&good, "nbf", json!(now + 600)))),
        ),
        (
            "wrong iss",
            format!(
                "Bearer {}",
                ed.sign(&with(&good, "iss", json!("https://evil.example/")))
            ),
        ),
        (
            "wrong aud",
            format!(
                "Bearer {}",
                ed.sign(&with(&good, "aud", json!("other-api")))
            ),
        ),
        (
            "missing exp",
            format!("Bearer {}", ed.sign(&without(&good, "exp"))),
        ),
        (
            "missing sub",
            format!("Bearer {}", ed.sign(&without(&good, "sub"))),
        ),
        (
            "missing iss",
            format!("Bearer {}", ed.sign(&without(&good, "iss"))),
        ),
        (
            "missing aud",
            format!("Bearer {}", ed.sign(&without(&good, "aud"))),
        ),
        (
            "exp as a string",
            format!(
                "Bearer {}",
                ed.sign(&with(&good, "exp", json!((now + 3600).to_string())))
            ),
        ),
        // ~16 000 bytes: over the 8 KiB token limit, under the 16 KiB head limit (not a 431).
        ("16 KB token", format!("Bearer {big}")),
    ];
    for (name, auth) in &cases {
        let res = get_with(&app, Some(auth)).await;
        assert_eq!(res.status(), 401, "{name}");
        assert_eq!(
            res.headers()
                .get("www-authenticate")
                .map(|v| v.to_str().unwrap()),
            Some(INVALID),
            "{name}"
        );
        let body = assert_error(res, 401, "UNAUTHENTICATED").await;
        // The client reads a generic message, never the reason.
        assert_eq!(
            body["error"]["message"], "invalid or expired token",
            "{name}"
        );
    }
    assert_eq!(app.reservation.count(), 0);
    // The reasons are counted by label.
    let m = &app.state.metrics.jwt_verifications;
    for label in [
        "malformed",
        "alg_none",
        "alg_symmetric",
        "unknown_kid",
        "bad_signature",
        "expired",
        "not_yet_valid",
        "wrong_issuer",
        "wrong_audience",
        "missing_claim",
        "bad_claim",
        "too_large",
        "empty",
    ] {
        assert!(m.with_label_values(&[label]).get() >= 1, "{label}");
    }
}

/// Issue #15, findings 1 and 2: validly signed by a trusted key, yet not a JWT the gateway may
/// accept. serde fills a struct from an array in field order, and a `sub` with a space at either
/// end would reach the upstream as another user (`X-User-ID:  alice` is read as `alice`).
#[tokio::test]
async fn signed_tokens_with_non_object_parts_or_padded_subs_are_401() {
    let app = spawn_app_on(Backend::Memory).await;
    let ed = TestKey::ed25519();
    let now = unix_now();
    let header = json!({"alg": "EdDSA", "typ": "JWT", "kid": ed.kid}).to_string();
    let array_claims = json!([
        now + 3600,
        null,
        crate::helpers::TEST_ISSUER,
        crate::helpers::TEST_AUDIENCE,
        "alice"
    ]);
    let claims = claims_for("alice").to_string();
    let dup_sub = claims.replacen('{', "{\"sub\":\"mallory\",", 1);
    let cases: Vec<(&str, String)> = vec![
        (
            "claims set is an array",
            ed.sign_raw(&header, &array_claims.to_string()),
        ),
        (
            "header is an array",
            ed.sign_raw(&json!(["EdDSA", ed.kid]).to_string(), &claims),
        ),
        ("claims set is a string", ed.sign_raw(&header, "\"alice\"")),
        ("duplicate sub", ed.sign_raw(&header, &dup_sub)),
        ("leading space in sub", ed.sign(&claims_for(" alice"))),
        ("trailing space in sub", ed.sign(&claims_for("alice "))),
        ("tab in sub", ed.sign(&claims_for("\talice"))),
    ];
    for (name, token) in &cases {
        let res = get_with(&app, Some(&format!("Bearer {token}"))).await;
        assert_eq!(res.status(), 401, "{name}");
        assert_401(res, INVALID).await;
    }
    assert_eq!(app.reservation.count(), 0, "nothing forwarded");
    // The same key and claims as an object are accepted: the refusals above are about shape.
    assert_accepted(&app, &format!("Bearer {}", ed.sign_raw(&header, &claims))).await;
}

#[tokio::test]
async fn a_hot_token_is_served_from_the_cache() {
    let app = spawn_app_on(Backend::Memory).await;
    let token = format!("Bearer {}", TestKey::rsa().sign(&claims_for("hot")));
    for _ in 0..5 {
        assert_accepted(&app, &token).await;
    }
    assert_eq!(app.state.metrics.jwt_cache_hits.get(), 4);
    assert_eq!(
        app.state
            .metrics
            .jwt_verifications
            .with_label_values(&["ok"])
            .get(),
        5
    );
}

#[tokio::test]
async fn a_rotated_in_key_works_without_restart() {
    let app =
        spawn_app_with(AppOptions::new(Backend::Memory).env("JWT_REFRESH_MIN_INTERVAL", "1s"))
            .await;
    let new_key = TestKey::rsa2();
    let token = format!("Bearer {}", new_key.sign(&claims_for("rotated")));
    assert_401(get_with(&app, Some(&token)).await, INVALID).await;
    app.jwks
        .set_keys(&[TestKey::rsa(), TestKey::ec(), TestKey::ed25519(), new_key]);
    // The unknown kid triggers a refresh (at most once per JWT_REFRESH_MIN_INTERVAL).
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let res = get_with(&app, Some(&token)).await;
        if res.status() != 401 {
            break;
        }
        assert!(Instant::now() < deadline, "rotated-in key never accepted");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    assert_accepted(&app, &token).await;
}

#[tokio::test]
async fn a_removed_key_stops_working_after_the_next_refresh_even_if_cached() {
    let app = spawn_app_with(AppOptions::new(Backend::Memory).env("JWT_CACHE_TTL", "1s")).await;
    let token = format!("Bearer {}", TestKey::rsa().sign(&claims_for("old-key")));
    assert_accepted(&app, &token).await;
    assert_accepted(&app, &token).await; // now cached
    app.jwks.set_keys(&[TestKey::ec(), TestKey::ed25519()]);
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let res = get_with(&app, Some(&token)).await;
        if res.status() == 401 {
            assert_401(res, INVALID).await;
            break;
        }
        assert!(Instant::now() < deadline, "removed key still accepted");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    // The keys still in the set keep working.
    assert_accepted(&app, &app.bearer("still-fine")).await;
}

#[tokio::test]
async fn a_flood_of_unknown_kids_costs_one_jwks_fetch() {
    let app =
        spawn_app_with(AppOptions::new(Backend::Memory).env("JWT_REFRESH_MIN_INTERVAL", "5s"))
            .await;
    // Let the start-up fetch age past the minimum interval, so an unknown kid may refetch once.
    tokio::time::sleep(Duration::from_millis(5500)).await;
    let before = app.jwks.fetches();
    let mut tasks = Vec::new();
    for i in 0..100 {
        let client = app.client.clone();
        let url = app.url(PROTECTED);
        let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::EdDSA);
        header.kid = Some(format!("random-kid-{i}"));
        let token =
            jsonwebtoken::encode(&header, &claims_for("x"), &TestKey::ed25519().key).unwrap();
        tasks.push(tokio::spawn(async move {
            client
                .get(url)
                .header("authorization", format!("Bearer {token}"))
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap(), 401);
    }
    assert_eq!(app.jwks.fetches(), before + 1);
    assert_eq!(app.reservation.count(), 0);
}

#[tokio::test]
async fn a_slow_jwks_never_holds_a_request_for_long() {
    let app =
        spawn_app_with(AppOptions::new(Backend::Memory).env("JWT_REFRESH_MIN_INTERVAL", "1s"))
            .await;
    tokio::time::sleep(Duration::from_millis(1200)).await;
    app.jwks.set_delay(Duration::from_secs(10));
    let token = format!("Bearer {}", TestKey::rsa2().sign(&claims_for("slow")));
    let started = Instant::now();
    assert_401(get_with(&app, Some(&token)).await, INVALID).await;
    // The request waits a short bound (500 ms) for the refresh it started, not the 10 s.
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    // Known keys are unaffected while the refresh hangs.
    assert_accepted(&app, &app.bearer("meanwhile")).await;
}

#[tokio::test]
async fn jwks_down_at_start_means_503_and_not_ready_until_it_comes_up() {
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}/.well-known/jwks.json");
    let app = spawn_app_with(
        AppOptions::new(Backend::Memory)
            .env("JWT_JWKS_URL", url)
            .no_wait_ready(),
    )
    .await;
    let res = app.get("/readyz").send().await.unwrap();
    assert_eq!(res.status(), 503);
    assert_eq!(json(res).await["reason"], "JWKS not loaded");
    let res = get_with(&app, Some(&app.bearer("early"))).await;
    assert_error(res, 503, "UPSTREAM_UNAVAILABLE").await;
    // A missing token is still plainly unauthenticated.
    assert_401(get_with(&app, None).await, "Bearer").await;
    assert_eq!(app.reservation.count(), 0);

    let jwks = JwksServer::start_on(port, &TestKey::defaults()).await;
    // Backoff from 1 s: the next attempts come within a few seconds.
    let deadline = Instant::now() + Duration::from_secs(40);
    while app.get("/readyz").send().await.unwrap().status() != 200 {
        assert!(Instant::now() < deadline, "never became ready");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(jwks.fetches() >= 1);
    assert_accepted(&app, &app.bearer("late")).await;
}

#[tokio::test]
async fn a_failing_refresh_keeps_the_last_good_keys() {
    let app = spawn_app_with(AppOptions::new(Backend::Memory).env("JWT_CACHE_TTL", "1s")).await;
    app.jwks.set_failing(true);
    let before = app.jwks.fetches();
    let deadline = Instant::now() + Duration::from_secs(15);
    while app.jwks.fetches() < before + 2 {
        assert!(Instant::now() < deadline, "no refresh attempts");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(app.get("/readyz").send().await.unwrap().status(), 200);
    // A fresh (uncached) token still verifies against the last good set.
    let token = format!(
        "Bearer {}",
        TestKey::ec().sign(&claims_for("during-outage"))
    );
    assert_accepted(&app, &token).await;
    assert!(
        app.state
            .metrics
            .jwks_fetches
            .with_label_values(&["error"])
            .get()
            >= 2
    );
}

#[tokio::test]
async fn skip_verify_ignores_signatures_but_still_checks_exp_iss_aud_and_says_so() {
    let app = spawn_app_with(AppOptions::new(Backend::Memory).env("JWT_SKIP_VERIFY", "true")).await;
    let v = json(app.get("/version").send().await.unwrap()).await;
    assert_eq!(v["jwt_verification"], "disabled", "{v}");
    let unsigned = |claims: &Value| {
        format!(
            "Bearer {}.{}.c2lnbmF0dXJl",
            b64(&json!({"alg": "RS256", "kid": "whatever"})),
            b64(claims)
        )
    };
    let good = claims_for("dev-user");
    assert_accepted(&app, &unsigned(&good)).await;
    let now = unix_now();
    for bad in [
        with(&good, "exp", json!(now - 300)),
        with(&good, "iss", json!("https://evil/")),
        with(&good, "aud", json!("nope")),
    ] {
        assert_401(get_with(&app, Some(&unsigned(&bad))).await, INVALID).await;
    }
    // No JWKS was fetched: verification is off.
    assert_eq!(app.jwks.fetches(), 0);
}

#[tokio::test]
async fn version_has_no_warning_when_verifying() {
    let app = spawn_app_on(Backend::Memory).await;
    let v = json(app.get("/version").send().await.unwrap()).await;
    assert!(v.get("jwt_verification").is_none(), "{v}");
}

#[tokio::test]
async fn demo_token_route_is_absent_outside_demo_mode() {
    let app = spawn_app_on(Backend::Memory).await;
    assert_error(
        app.get("/demo/token?sub=a").send().await.unwrap(),
        404,
        "NOT_FOUND",
    )
    .await;
    assert_error(
        app.get("/demo/jwks.json").send().await.unwrap(),
        404,
        "NOT_FOUND",
    )
    .await;
}

#[tokio::test]
async fn demo_mode_mints_tokens_its_gateway_accepts() {
    use gateway_api::mock_upstream::{MockUpstream, Role};
    use gateway_api::{App, Config, demo};
    let loopback = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
    let reservation = MockUpstream::start(Role::Reservation, loopback)
        .await
        .unwrap();
    let payment = MockUpstream::start(Role::Payment, loopback).await.unwrap();
    let mut config =
        Config::from_vars(crate::helpers::base_env(&reservation, &payment, None)).unwrap();
    demo::configure(&mut config);
    let app = App::build_on(config, loopback).await.unwrap();
    let base = format!("http://{}", app.local_addr().unwrap());
    let state = app.state();
    let server = tokio::spawn(app.run(std::future::pending()));
    let client = reqwest::Client::builder().no_proxy().build().unwrap();

    assert_eq!(
        client
            .get(format!("{base}/readyz"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    let res = client
        .get(format!("{base}/demo/token?sub=alice"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let body = json(res).await;
    assert_eq!(body["token_type"], "Bearer");
    let token = body["access_token"].as_str().unwrap().to_owned();
    let res = client
        .get(format!("{base}{PROTECTED}"))
        .header("authorization", format!("Bearer {token}"))
        .send()
        .await
        .unwrap();
    assert_ne!(res.status(), 401);
    assert_eq!(reservation.received()[0].headers["x-user-id"], "alice");
    // The banner's token (user-123) works too.
    let banner_token = state
        .demo
        .as_ref()
        .unwrap()
        .mint("user-123", Duration::from_secs(60))
        .unwrap();
    let res = client
        .get(format!("{base}{PROTECTED}"))
        .header("authorization", format!("Bearer {banner_token}"))
        .send()
        .await
        .unwrap();
    assert_ne!(res.status(), 401);
    // A sub that could not be an X-User-ID is refused.
    let res = client
        .get(format!("{base}/demo/token?sub=%0Aadmin"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400);
    // Tokens from another issuer (the test IdP) are not trusted by the demo.
    let res = client
        .get(format!("{base}{PROTECTED}"))
        .header("authorization", crate::helpers::bearer("mallory"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);
    server.abort();
}
