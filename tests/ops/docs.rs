//! `/docs` in a real headless Chromium: the page renders every operation of the OpenAPI
//! document (so every route of SPEC §2), and nothing the page loads comes from anywhere but the
//! gateway on loopback.
//!
//! How "no request leaves loopback" is checked: Chromium writes every URL request it starts to a
//! net log (`--log-net-log`), each with its initiator. The page's own requests (its navigation,
//! and everything with the page's origin as initiator: scripts, styles, images, the document
//! fetch) must all go to 127.0.0.1. Chromium's own background traffic (update checks, account
//! lookups: initiator "not an origin", not a navigation) is not the page's and is only reported;
//! `--host-resolver-rules` sends every name but 127.0.0.1 nowhere, so even that never leaves the
//! machine. A request blocked by the page's Content-Security-Policy never reaches the net log, so
//! the console is checked for CSP violations too, and a page that could not load its scripts
//! would list no operations.
use std::process::Command;

use gateway_api::{openapi, router};
use serde_json::Value;

use crate::helpers::{Backend, spawn_app_on};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_docs_page_lists_every_operation_and_loads_only_from_loopback() {
    let chromium = crate::require("chromium", "chromium");
    let app = spawn_app_on(Backend::Memory).await;
    let url = app.url("/docs/");
    let dir = tempfile::tempdir().unwrap();
    let netlog = dir.path().join("net.json");
    let profile = dir.path().join("profile");
    let args = [
        "--headless".to_owned(),
        "--no-sandbox".to_owned(),
        "--disable-gpu".to_owned(),
        "--disable-quic".to_owned(),
        "--no-first-run".to_owned(),
        "--disable-background-networking".to_owned(),
        "--disable-component-update".to_owned(),
        "--disable-sync".to_owned(),
        "--disable-features=AutofillServerCommunication".to_owned(),
        "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1".to_owned(),
        format!("--user-data-dir={}", profile.display()),
        format!("--log-net-log={}", netlog.display()),
        "--enable-logging=stderr".to_owned(),
        "--v=0".to_owned(),
        // Lets the page's scripts run and fetch the document before the DOM is dumped.
        "--virtual-time-budget=15000".to_owned(),
        "--dump-dom".to_owned(),
        url.clone(),
    ];
    let out = tokio::task::spawn_blocking(move || Command::new(chromium).args(args).output())
        .await
        .unwrap()
        .expect("chromium runs");
    assert!(out.status.success(), "chromium failed: {out:?}");
    let dom = String::from_utf8_lossy(&out.stdout);
    let console = String::from_utf8_lossy(&out.stderr);

    // Every operation, as Swagger UI renders it: an `opblock-<method>` with its `data-path`.
    let rendered = operations(&dom);
    assert!(!rendered.is_empty(), "no operation rendered: {dom}");
    for (method, path) in openapi::documented_routes(&router::document()) {
        let m = method.as_str().to_ascii_lowercase();
        assert!(
            rendered.iter().any(|(rm, rp)| *rm == m && *rp == path),
            "{method} {path} is not on the page; rendered: {rendered:?}"
        );
    }
    for spec_route in [
        ("post", "/api/v1/queue/join"),
        ("get", "/api/v1/queue/status"),
        ("post", "/api/v1/reservations/create"),
        ("get", "/api/v1/payment/intent/{id}"),
        ("get", "/readyz"),
    ] {
        assert!(
            rendered
                .iter()
                .any(|(m, p)| (m.as_str(), p.as_str()) == spec_route),
            "{spec_route:?} missing: {rendered:?}"
        );
    }
    assert!(
        !console.contains("Content Security Policy"),
        "the page broke its own CSP: {console}"
    );

    let log: Value = serde_json::from_slice(&std::fs::read(&netlog).unwrap()).unwrap();
    let (page, background) = url_requests(&log);
    assert!(
        page.iter().any(|u| u.ends_with("/openapi.json")),
        "the page never fetched the document: {page:?}"
    );
    assert!(
        page.iter()
            .any(|u| u.ends_with("/docs/swagger-ui-bundle.js")),
        "{page:?}"
    );
    let origin = format!("http://{}/", app.addr);
    let elsewhere: Vec<_> = page.iter().filter(|u| !u.starts_with(&origin)).collect();
    assert!(
        elsewhere.is_empty(),
        "the page loaded from outside the gateway: {elsewhere:?} (browser background: {background:?})"
    );
}

/// `(method, path)` of each operation block in Swagger UI's DOM.
fn operations(dom: &str) -> Vec<(String, String)> {
    dom.split("class=\"opblock opblock-")
        .skip(1)
        .filter_map(|block| {
            let method: String = block
                .chars()
                .take_while(char::is_ascii_alphabetic)
                .collect();
            let rest = &block[block.find("data-path=\"")? + "data-path=\"".len()..];
            let path = rest[..rest.find('"')?].replace("&amp;", "&");
            Some((method, path))
        })
        .collect()
}

/// The URLs of every request Chromium started: the page's (its navigation, and those with an
/// origin as initiator), and the browser's own.
fn url_requests(log: &Value) -> (Vec<String>, Vec<String>) {
    let start_job = log["constants"]["logEventTypes"]["URL_REQUEST_START_JOB"]
        .as_u64()
        .expect("URL_REQUEST_START_JOB in the net log's constants");
    let (mut page, mut background) = (Vec::new(), Vec::new());
    for e in log["events"].as_array().expect("net log events") {
        if e["type"].as_u64() != Some(start_job) {
            continue;
        }
        let p = &e["params"];
        let Some(url) = p["url"].as_str() else {
            continue;
        };
        let navigation = matches!(p["request_type"].as_str(), Some("main frame" | "sub frame"));
        let from_a_page = p["initiator"]
            .as_str()
            .is_some_and(|i| i != "not an origin");
        if navigation || from_a_page {
            page.push(url.to_owned());
        } else {
            background.push(url.to_owned());
        }
    }
    (page, background)
}
