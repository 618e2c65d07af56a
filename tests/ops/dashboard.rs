//! `deploy/grafana/gateway-api.json` against a real Prometheus (Debian's `prometheus`) that
//! scrapes a real gateway (Redis store, JWKS, mock upstreams) under a little traffic of every
//! kind the panels show: the waiting room of an event an operator defined (adaptive),
//! reservations and payments with idempotency keys and a
//! replay, refused tokens, upstream 500s, and a short Redis outage (store errors, the rate
//! limiter's local fallback). Then every panel's query goes through Prometheus's HTTP API, with
//! Grafana's `$__rate_interval` as `1m`: each must parse and return at least one series.
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::helpers::{free_port, spawn_app};

struct Prometheus {
    child: Child,
    url: String,
    _dir: tempfile::TempDir,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_prometheus(target: &str) -> Prometheus {
    let binary = crate::require("prometheus", "prometheus");
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n  \
             - job_name: gateway-api\n    static_configs:\n      - targets: [\"{target}\"]\n"
        ),
    )
    .unwrap();
    let port = free_port();
    let child = Command::new(binary)
        .arg(format!("--config.file={}", config.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.path().join("data").display()
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("prometheus starts");
    Prometheus {
        child,
        url: format!("http://127.0.0.1:{port}"),
        _dir: dir,
    }
}

/// Every `(panel title, expr)` of the dashboard.
fn panel_queries() -> Vec<(String, String)> {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/deploy/grafana/gateway-api.json"
    );
    let dash: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let mut out = Vec::new();
    for panel in dash["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().into_iter().flatten() {
            out.push((
                panel["title"].as_str().unwrap().to_owned(),
                target["expr"].as_str().unwrap().to_owned(),
            ));
        }
    }
    out
}

async fn query(client: &reqwest::Client, prom: &str, expr: &str) -> Value {
    let params = form_urlencoded::Serializer::new(String::new())
        .append_pair("query", expr)
        .finish();
    let res = client
        .get(format!("{prom}/api/v1/query?{params}"))
        .send()
        .await
        .unwrap();
    res.json().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_dashboard_panel_query_returns_data_from_a_real_prometheus() {
    let queries = panel_queries();
    let covered = |needle: &str| queries.iter().any(|(_, e)| e.contains(needle));
    for family in [
        "http_server_requests_total",
        "http_server_request_duration_seconds_bucket",
        "upstream_request_duration_seconds_bucket",
        "upstream_ejections_total",
        "upstream_circuit_open",
        "ratelimit_decisions_total",
        "ratelimit_fallback_active",
        "store_up",
        "idempotency_outcomes_total",
        "jwt_verifications_total",
        "jwks_fetches_total",
        "queue_waiting",
        "queue_prequeue",
        "queue_active",
        "queue_admission_factor",
        "queue_admissions_total",
        "process_cpu_seconds_total",
        "process_resident_memory_bytes",
        "process_open_fds",
    ] {
        assert!(covered(family), "no panel shows {family}");
    }

    let mut app = spawn_app().await;
    let prom = start_prometheus(&app.addr.to_string());
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    let bearer = app.bearer("fan-1");

    // An event an operator defined (its gauges are per defined event, SPEC §5a), adaptive.
    let res = app
        .client
        .put(app.url("/admin/v1/events/concert-2026"))
        .header(
            "authorization",
            app.bearer_with("operator", json!({"scope": "gateway:admin"})),
        )
        .json(&json!({"admission_rps": 50, "adaptive": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200, "{}", res.text().await.unwrap());

    let traffic_until = Instant::now() + Duration::from_secs(6);
    let mut round = 0;
    while Instant::now() < traffic_until {
        round += 1;
        let join = app
            .post("/api/v1/queue/join")
            .header("authorization", &bearer)
            .json(&json!({"event_id": "concert-2026"}))
            .send()
            .await
            .unwrap();
        let token = join.json::<Value>().await.unwrap()["waiting_token"]
            .as_str()
            .unwrap()
            .to_owned();
        let _ = app
            .get(&format!("/api/v1/queue/status?token={token}"))
            .send()
            .await;
        let _ = app
            .post_json("/api/v1/queue/enter", &json!({"waiting_token": token}))
            .header("authorization", &bearer)
            .send()
            .await;
        let key = uuid::Uuid::new_v4().to_string();
        for _ in 0..2 {
            // The second one is a replay.
            let _ = app
                .post("/api/v1/reservations/create")
                .header("authorization", &bearer)
                .header("idempotency-key", &key)
                .json(&json!({"event_id": "concert-2026", "seats": 1}))
                .send()
                .await;
        }
        let _ = app
            .post_json("/api/v1/payment/intent", &json!({"amount": 100}))
            .header("authorization", &bearer)
            .send()
            .await;
        let _ = app
            .get("/api/v1/reservations/r1")
            .header("authorization", "Bearer not-a-token")
            .send()
            .await;
        // Upstream 500s, passed through, for a round now and then.
        app.reservation
            .set_status(if round % 3 == 0 { 500 } else { 0 });
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    app.reservation.set_status(0);
    // A short store outage: store errors, the rate limiter's local buckets, 503 on writes.
    app.redis.as_mut().unwrap().stop();
    let outage_until = Instant::now() + Duration::from_secs(3);
    while Instant::now() < outage_until {
        let _ = app
            .post_json("/api/v1/payment/intent", &json!({"amount": 100}))
            .header("authorization", &bearer)
            .send()
            .await;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    app.redis.as_mut().unwrap().restart();

    // Prometheus has scraped the whole run (the gateway's own start included).
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let v = query(
            &client,
            &prom.url,
            "count_over_time(up{job=\"gateway-api\"}[1m])",
        )
        .await;
        let samples = v["data"]["result"][0]["value"][1]
            .as_str()
            .and_then(|s| s.parse::<f64>().ok())
            .unwrap_or(0.0);
        if samples >= 8.0 {
            break;
        }
        assert!(Instant::now() < deadline, "prometheus is not scraping: {v}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }

    let mut empty = Vec::new();
    for (title, expr) in &queries {
        let expr = expr.replace("$__rate_interval", "1m");
        let v = query(&client, &prom.url, &expr).await;
        assert_eq!(v["status"], "success", "{title}: {expr} → {v}");
        let result = v["data"]["result"].as_array().cloned().unwrap_or_default();
        if result.is_empty() {
            empty.push(format!("{title}: {expr}"));
        }
    }
    assert!(empty.is_empty(), "panel queries with no data: {empty:#?}");
}
