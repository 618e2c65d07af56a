//! The OpenAPI document (issue #9) against the routes the gateway really serves.
//!
//! Two directions, each checked the cheapest honest way:
//! - documented → served: every documented `(method, path)` is sent to a running gateway and must
//!   not be answered by the router's own 404 `NOT_FOUND` or 405 (a request that reaches a route
//!   gets anything else: the upstream's answer, 400, 401, …);
//! - served → documented: axum cannot list a router's routes, so every `.route("path", get(..))`
//!   call in the crate's non-test source (the mocks excepted) is read and must be documented.
//!   Routes must be written with full paths and `get`/`post`/`delete`/…; `nest` is refused so
//!   nothing can hide from the scan.
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use gateway_api::openapi;
use serde_json::{Value, json};

use crate::helpers::{Backend, json, spawn_app_on};

/// Served, but not part of the public API.
const NOT_PUBLIC: &[(&str, &str)] = &[
    // `--demo` only: a ready-made bearer token for the demo's own key, and that key's JWKS
    // (SPEC §1).
    ("GET", "/demo/token"),
    ("GET", "/demo/jwks.json"),
    // Swagger UI's redirect and assets; the page itself, `/docs/`, is documented.
    ("GET", "/docs"),
    ("GET", "/docs/{*rest}"),
];

/// Documented from SPEC §5 before their handlers exist (issue #6, the waiting room). The tests
/// below fail as soon as one of these is served: then delete it from this list.
const NOT_YET_ROUTED: &[(&str, &str)] = &[];

fn listed(list: &[(&str, &str)], method: &str, path: &str) -> bool {
    list.iter().any(|(m, p)| *m == method && *p == path)
}

fn documented() -> BTreeSet<(String, String)> {
    openapi::documented_routes()
        .into_iter()
        .map(|(m, p)| (m.to_string(), p))
        .collect()
}

#[tokio::test]
async fn the_served_document_is_the_built_one() {
    let app = spawn_app_on(Backend::Memory).await;
    let res = app.get("/openapi.json").send().await.unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["content-type"], "application/json");
    let served = json(res).await;
    assert_eq!(served["openapi"], "3.1.0");
    let built: Value = serde_json::from_str(&openapi::document_pretty()).unwrap();
    assert_eq!(served, built);
}

#[tokio::test]
async fn every_documented_route_is_served() {
    let app = spawn_app_on(Backend::Memory).await;
    let mut unserved = Vec::new();
    for (method, template) in documented() {
        let path = template.replace("{id}", "probe-1");
        let url = app.url(&format!("{path}?token=probe"));
        let res = app
            .client
            .request(method.parse().unwrap(), url)
            .header("authorization", app.bearer("probe-user"))
            .header("idempotency-key", uuid::Uuid::new_v4().to_string())
            .json(&json!({"event_id": "probe-1", "waiting_token": "probe"}))
            .send()
            .await
            .unwrap();
        let status = res.status().as_u16();
        let body: Value = res.json().await.unwrap_or(Value::Null);
        let routed = status != 405 && !(status == 404 && body["error"]["code"] == "NOT_FOUND");
        match (routed, listed(NOT_YET_ROUTED, &method, &template)) {
            (true, true) => panic!(
                "{method} {template} is served now: delete it from NOT_YET_ROUTED in {}",
                file!()
            ),
            (false, false) => unserved.push(format!("{method} {template} → {status} {body}")),
            _ => {}
        }
    }
    assert!(
        unserved.is_empty(),
        "documented in src/openapi.rs but not served: {unserved:#?}"
    );
}

#[test]
fn every_served_route_is_documented() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let in_source = routes_in_source(&src);
    assert!(
        in_source
            .iter()
            .any(|(m, p, _)| m == "GET" && p == "/healthz"),
        "the scan found no routes: has router.rs changed shape? {in_source:?}"
    );
    let documented = documented();
    let mut undocumented = Vec::new();
    let mut seen = BTreeSet::new();
    for (method, path, file) in in_source {
        if listed(NOT_YET_ROUTED, &method, &path) {
            panic!(
                "{method} {path} is routed in {file} now: delete it from NOT_YET_ROUTED in {}",
                file!()
            );
        }
        if !listed(NOT_PUBLIC, &method, &path)
            && !documented.contains(&(method.clone(), path.clone()))
        {
            undocumented.push(format!("{method} {path} ({file})"));
        }
        seen.insert((method, path));
    }
    assert!(
        undocumented.is_empty(),
        "routed but not in the OpenAPI document (add a #[utoipa::path] fn to src/openapi.rs): {undocumented:#?}"
    );
    let missing: Vec<_> = documented
        .iter()
        .filter(|(m, p)| !seen.contains(&(m.clone(), p.clone())) && !listed(NOT_YET_ROUTED, m, p))
        .collect();
    assert!(
        missing.is_empty(),
        "documented but routed nowhere in src/: {missing:#?}"
    );
}

#[test]
fn the_route_scan_reads_every_form_the_router_uses() {
    let text = r#"
        let r = Router::new()
            .route("/a", get(h::a))
            // .route("/commented", get(h::c))
            .route(
                "/b/{id}/cancel",
                post(h::b),
            )
            .route("/c", get(h::c).delete(h::d))
            .route_layer(x);
        #[cfg(test)]
        mod tests { fn t() { Router::new().route("/test-only", get(ok)); } }
    "#;
    let found = routes_in_text(text, "t.rs");
    let found: Vec<(&str, &str)> = found
        .iter()
        .map(|(m, p, _)| (m.as_str(), p.as_str()))
        .collect();
    assert_eq!(
        found,
        vec![
            ("GET", "/a"),
            ("POST", "/b/{id}/cancel"),
            ("GET", "/c"),
            ("DELETE", "/c"),
        ]
    );
}

#[test]
#[should_panic(expected = "nest")]
fn the_route_scan_refuses_nested_routers() {
    routes_in_text(r#"Router::new().nest("/api", api)"#, "t.rs");
}

#[test]
#[should_panic(expected = "no get/post")]
fn the_route_scan_refuses_methods_it_cannot_read() {
    routes_in_text(r#"Router::new().route("/x", on(filter, h))"#, "t.rs");
}

/// `(METHOD, path, file)` for every `.route(..)` in the non-test source under `dir`, the mock
/// upstreams excepted (they are not the gateway's routes).
fn routes_in_source(dir: &Path) -> Vec<(String, String, String)> {
    let mut files = Vec::new();
    collect_rs(dir, &mut files);
    files.sort();
    let mut routes = Vec::new();
    for file in files {
        let name = file.display().to_string();
        if name.contains("mock_upstream") || name.contains("mock-upstream") {
            continue;
        }
        let text = std::fs::read_to_string(&file).unwrap();
        routes.extend(routes_in_text(&text, &name));
    }
    routes
}

fn collect_rs(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            collect_rs(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

const METHODS: [&str; 7] = ["get", "post", "put", "delete", "patch", "head", "options"];

fn routes_in_text(text: &str, file: &str) -> Vec<(String, String, String)> {
    // Non-test code only: unit tests build throwaway routers.
    let code = match text.find("#[cfg(test)]") {
        Some(i) if text[i + 12..].trim_start().starts_with("mod ") => &text[..i],
        _ => text,
    };
    let code: String = code
        .lines()
        .filter(|l| !l.trim_start().starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n");
    for refused in [".nest(", ".nest_service(", ".route_service("] {
        assert!(
            !code.contains(refused),
            "{file}: the route scan in {} cannot read `{refused}`; use .route with full paths",
            file!()
        );
    }
    let mut routes = Vec::new();
    let mut rest = code.as_str();
    while let Some(i) = rest.find(".route(") {
        rest = &rest[i + ".route(".len()..];
        let args = balanced(rest);
        let Some((path, method_router)) = args
            .trim_start()
            .strip_prefix('"')
            .and_then(|s| s.split_once('"'))
        else {
            panic!("{file}: a .route( whose first argument is not a string literal: {args}");
        };
        let methods: Vec<&str> = METHODS
            .into_iter()
            .filter(|m| calls(method_router, m))
            .collect();
        assert!(
            !methods.is_empty(),
            "{file}: route {path}: no get/post/put/delete/patch call the scan can read in {method_router}"
        );
        for m in methods {
            routes.push((m.to_uppercase(), path.to_owned(), file.to_owned()));
        }
    }
    routes
}

/// The text up to the `)` that closes the call whose `(` was just consumed.
fn balanced(s: &str) -> &str {
    let mut depth = 1;
    let mut in_str = false;
    for (i, c) in s.char_indices() {
        match c {
            '"' => in_str = !in_str,
            '(' if !in_str => depth += 1,
            ')' if !in_str => {
                depth -= 1;
                if depth == 0 {
                    return &s[..i];
                }
            }
            _ => {}
        }
    }
    s
}

/// Whether `code` calls `name(` as a whole word (`get(`, `.get(`, `routing::get(`).
fn calls(code: &str, name: &str) -> bool {
    let needle = format!("{name}(");
    code.match_indices(&needle).any(|(i, _)| {
        code[..i]
            .chars()
            .next_back()
            .is_none_or(|c| !(c.is_alphanumeric() || c == '_'))
    })
}
