//! The OpenAPI document (issue #9) against the routes the gateway really serves.
//!
//! Two directions, each checked the cheapest honest way:
//! - documented → served: every documented `(method, path)` is sent to a running gateway and must
//!   not be answered by the router's own 404 `NOT_FOUND` or 405 (a request that reaches a route
//!   gets anything else: the upstream's answer, 400, 401, …);
//! - served → documented: axum cannot list a router's routes, so the crate's non-test source (the
//!   mocks excepted) is read: every `.route("path", get(..))` call, and every handler registered
//!   with `.routes(routes!(module::handler, ..))`, resolved to the method and path of its
//!   `#[utoipa::path]`, must be documented. Routes must be written with full paths and
//!   `get`/`post`/`delete`/…; `nest` is refused so nothing can hide from the scan.
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use gateway_api::{openapi, router};
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
    openapi::documented_routes(&router::document())
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
    let built = serde_json::to_value(router::document()).unwrap();
    assert_eq!(served, built);
}

/// The gateway's own answers, sent by a running gateway, have the shape their route documents
/// for that status: every key is a documented property, every required property is there.
#[tokio::test]
async fn the_gateways_own_answers_have_their_documented_shapes() {
    let app = spawn_app_on(Backend::Memory).await;
    let doc = serde_json::to_value(router::document()).unwrap();
    let admin = app.bearer_with("ops", json!({"scope": "gateway:admin"}));
    let put = app
        .client
        .put(app.url("/admin/v1/events/shape-1"))
        .header("authorization", &admin)
        .json(&json!({"admission_rps": 5}))
        .send()
        .await
        .unwrap();
    check_shape(&doc, "put", "/admin/v1/events/{event_id}", put).await;
    let joined = app
        .post("/api/v1/queue/join")
        .json(&json!({"event_id": "shape-1"}))
        .send()
        .await
        .unwrap();
    let joined = check_shape(&doc, "post", "/api/v1/queue/join", joined).await;
    let token = joined["waiting_token"].as_str().unwrap().to_owned();
    let status = app
        .get(&format!("/api/v1/queue/status?token={token}"))
        .send()
        .await
        .unwrap();
    check_shape(&doc, "get", "/api/v1/queue/status", status).await;
    let enter = app
        .post_json("/api/v1/queue/enter", &json!({"waiting_token": token}))
        .send()
        .await
        .unwrap();
    check_shape(&doc, "post", "/api/v1/queue/enter", enter).await;
    for (path, route) in [
        ("/healthz", "/healthz"),
        ("/readyz", "/readyz"),
        ("/version", "/version"),
        ("/admin/v1/events", "/admin/v1/events"),
        ("/admin/v1/events/shape-1", "/admin/v1/events/{event_id}"),
        (
            "/admin/v1/events/nobody-defined",
            "/admin/v1/events/{event_id}",
        ),
        ("/api/v1/reservations/%FF", "/api/v1/reservations/{id}"),
    ] {
        let res = app
            .get(path)
            .header("authorization", &admin)
            .send()
            .await
            .unwrap();
        check_shape(&doc, "get", route, res).await;
    }
    let leave = app
        .client
        .delete(app.url(&format!("/api/v1/queue/leave?token={token}")))
        .send()
        .await
        .unwrap();
    check_shape(&doc, "delete", "/api/v1/queue/leave", leave).await;
    let deleted = app
        .client
        .delete(app.url("/admin/v1/events/shape-1"))
        .header("authorization", &admin)
        .send()
        .await
        .unwrap();
    check_shape(&doc, "delete", "/admin/v1/events/{event_id}", deleted).await;
}

/// Checks `res`'s JSON body against the schema `method route` documents for its status, and
/// returns the body.
async fn check_shape(doc: &Value, method: &str, route: &str, res: reqwest::Response) -> Value {
    let status = res.status().as_u16().to_string();
    let body = json(res).await;
    let answer = &doc["paths"][route][method]["responses"][&status];
    let schema = &answer["content"]["application/json"]["schema"];
    assert!(
        schema.is_object(),
        "{method} {route} does not document a JSON {status}: {body}"
    );
    let (properties, required) = shape(doc, schema);
    let keys: BTreeSet<String> = body.as_object().unwrap().keys().cloned().collect();
    assert!(
        keys.is_subset(&properties),
        "{method} {route} {status}: undocumented {:?} in {body}",
        keys.difference(&properties).collect::<Vec<_>>()
    );
    assert!(
        required.is_subset(&keys),
        "{method} {route} {status}: missing {:?} in {body}",
        required.difference(&keys).collect::<Vec<_>>()
    );
    body
}

/// An object schema's property names and required ones, through `$ref`, `allOf` and arrays'
/// `items` (the shape of the first item is not checked).
fn shape(doc: &Value, schema: &Value) -> (BTreeSet<String>, BTreeSet<String>) {
    if let Some(r) = schema["$ref"].as_str() {
        let name = r.trim_start_matches("#/components/schemas/");
        return shape(doc, &doc["components"]["schemas"][name]);
    }
    let mut properties = BTreeSet::new();
    let mut required = BTreeSet::new();
    for part in schema["allOf"].as_array().into_iter().flatten() {
        let (p, r) = shape(doc, part);
        properties.extend(p);
        required.extend(r);
    }
    if let Some(p) = schema["properties"].as_object() {
        properties.extend(p.keys().cloned());
    }
    for r in schema["required"].as_array().into_iter().flatten() {
        required.insert(r.as_str().unwrap().to_owned());
    }
    (properties, required)
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
        "documented but not served: {unserved:#?}"
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
        "routed but not in the OpenAPI document (give the handler a #[utoipa::path] and register it with routes!): {undocumented:#?}"
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
fn the_route_scan_reads_handlers_registered_with_routes() {
    let text = r#"
        /// Doc
        #[utoipa::path(get, path = "/x/{id}", tag = "t",
            responses((status = 200, description = "fine, (really)")))]
        pub async fn get_x(id: Path<String>) -> Json<X> {}
        #[utoipa::path(delete, path = "/x/{id}")]
        async fn delete_x() {}
        fn routes() -> OpenApiRouter {
            OpenApiRouter::new()
                .routes(routes!(t::get_x, delete_x))
                // .routes(routes!(commented))
        }
    "#;
    let found = routes_in_text(text, "src/t.rs");
    let found: Vec<(&str, &str)> = found
        .iter()
        .map(|(m, p, _)| (m.as_str(), p.as_str()))
        .collect();
    assert_eq!(found, vec![("GET", "/x/{id}"), ("DELETE", "/x/{id}")]);
}

#[test]
#[should_panic(expected = "no #[utoipa::path]")]
fn the_route_scan_refuses_handlers_it_cannot_resolve() {
    routes_in_text("OpenApiRouter::new().routes(routes!(elsewhere::h))", "t.rs");
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

/// `(METHOD, path, file)` for every `.route(..)` and every handler of a `routes!(..)` in the
/// non-test source under `dir`, the mock upstreams excepted (they are not the gateway's routes).
fn routes_in_source(dir: &Path) -> Vec<(String, String, String)> {
    let mut files = Vec::new();
    collect_rs(dir, &mut files);
    files.sort();
    let files: Vec<(String, String)> = files
        .into_iter()
        .map(|f| {
            (
                f.display().to_string(),
                std::fs::read_to_string(&f).unwrap(),
            )
        })
        .filter(|(name, _)| !(name.contains("mock_upstream") || name.contains("mock-upstream")))
        .collect();
    let mut handlers = Handlers::new();
    for (name, text) in &files {
        handlers.extend(handlers_in(&non_test_code(text), name));
    }
    let mut routes = Vec::new();
    for (name, text) in &files {
        routes.extend(routes_in(text, name, &handlers));
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

/// `(module, fn)` → the `(METHOD, path)`s of its `#[utoipa::path]`; the module is the file's
/// stem (`reservations` for `src/routes/reservations.rs`), as `routes!(reservations::get)`
/// names it.
type Handlers = std::collections::BTreeMap<(String, String), Vec<(String, String)>>;

fn routes_in_text(text: &str, file: &str) -> Vec<(String, String, String)> {
    routes_in(text, file, &handlers_in(&non_test_code(text), file))
}

/// Non-test code only (unit tests build throwaway routers), without comment lines.
fn non_test_code(text: &str) -> String {
    let code = match text.find("#[cfg(test)]") {
        Some(i) if text[i + 12..].trim_start().starts_with("mod ") => &text[..i],
        _ => text,
    };
    code.lines()
        .filter(|l| !l.trim_start().starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n")
}

fn module_of(file: &str) -> String {
    Path::new(file)
        .file_stem()
        .unwrap()
        .to_string_lossy()
        .into_owned()
}

/// Every `#[utoipa::path(method, path = "..")]` in `code` with the fn it is on.
fn handlers_in(code: &str, file: &str) -> Handlers {
    let mut handlers = Handlers::new();
    let mut rest = code;
    while let Some(i) = rest.find("#[utoipa::path(") {
        rest = &rest[i + "#[utoipa::path(".len()..];
        let args = balanced(rest);
        let method = args.split(',').next().unwrap().trim();
        assert!(
            METHODS.contains(&method),
            "{file}: a #[utoipa::path] whose first argument is not a method: {args}"
        );
        let path = args
            .split_once("path = \"")
            .and_then(|(_, p)| p.split_once('"'))
            .map(|(p, _)| p)
            .unwrap_or_else(|| panic!("{file}: a #[utoipa::path] without `path = \"..\"`"));
        let after = &rest[args.len()..];
        let name = after
            .split_once("fn ")
            .and_then(|(_, f)| f.split_once('('))
            .map(|(name, _)| name.trim().to_owned())
            .unwrap_or_else(|| panic!("{file}: a #[utoipa::path] on no fn: {args}"));
        handlers
            .entry((module_of(file), name))
            .or_default()
            .push((method.to_uppercase(), path.to_owned()));
    }
    handlers
}

fn routes_in(text: &str, file: &str, handlers: &Handlers) -> Vec<(String, String, String)> {
    let code = non_test_code(text);
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
    let mut rest = code.as_str();
    while let Some(i) = rest.find("routes!(") {
        rest = &rest[i + "routes!(".len()..];
        for handler in balanced(rest)
            .split(',')
            .map(str::trim)
            .filter(|h| !h.is_empty())
        {
            let (module, name) = match handler.rsplit_once("::") {
                Some((path, name)) => (path.rsplit("::").next().unwrap().to_owned(), name),
                None => (module_of(file), handler),
            };
            let found = handlers
                .get(&(module.clone(), name.to_owned()))
                .unwrap_or_else(|| {
                    panic!("{file}: routes!({handler}): no #[utoipa::path] fn {name} in a file {module}.rs")
                });
            for (method, path) in found {
                routes.push((method.clone(), path.clone(), file.to_owned()));
            }
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
