//! CORS (SPEC §3): the origins `CORS_ALLOWED_ORIGINS` lists get CORS headers and their
//! preflights are answered by the gateway, before any policy; other origins get none.
use reqwest::Method;

use crate::helpers::{AppOptions, Backend, TestApp, spawn_app_with};

async fn preflight(app: &TestApp, origin: &str) -> reqwest::Response {
    app.client
        .request(Method::OPTIONS, app.url("/api/v1/queue/join"))
        .header("origin", origin)
        .header("access-control-request-method", "POST")
        .send()
        .await
        .unwrap()
}

fn allowed_origin(res: &reqwest::Response) -> Option<&str> {
    res.headers()
        .get("access-control-allow-origin")
        .map(|v| v.to_str().unwrap())
}

#[tokio::test]
async fn listed_origins_get_cors_headers_and_others_none() {
    let app = spawn_app_with(AppOptions::new(Backend::Memory).env(
        "CORS_ALLOWED_ORIGINS",
        "https://tickets.example, http://localhost:3000",
    ))
    .await;
    let res = preflight(&app, "https://tickets.example").await;
    assert!(res.status().is_success(), "{}", res.status());
    assert_eq!(allowed_origin(&res), Some("https://tickets.example"));
    let res = preflight(&app, "https://elsewhere.example").await;
    assert_eq!(allowed_origin(&res), None);
    let res = app
        .get("/healthz")
        .header("origin", "http://localhost:3000")
        .send()
        .await
        .unwrap();
    assert_eq!(allowed_origin(&res), Some("http://localhost:3000"));
}

#[tokio::test]
async fn a_star_allows_any_origin() {
    let app =
        spawn_app_with(AppOptions::new(Backend::Memory).env("CORS_ALLOWED_ORIGINS", "*")).await;
    let res = preflight(&app, "https://anywhere.example").await;
    assert_eq!(allowed_origin(&res), Some("*"));
}

#[tokio::test]
async fn without_the_variable_no_origin_gets_cors_headers() {
    let app = spawn_app_with(AppOptions::new(Backend::Memory)).await;
    let res = preflight(&app, "https://tickets.example").await;
    assert_eq!(allowed_origin(&res), None);
}
