//! `gateway --demo` on a fresh machine: the README's curl round trip (create, get, cancel) works
//! with the token the demo prints, and `/demo/token` mints more (SPEC §1, issue #2/#3).
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::json;

use crate::helpers::{GatewayProcess, free_port, json};

#[tokio::test]
async fn the_demo_serves_a_reservation_round_trip_with_its_printed_token() {
    let port = free_port();
    let child = Command::new(env!("CARGO_BIN_EXE_gateway"))
        .arg("--demo")
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("PORT", port.to_string())
        .env("LOG_LEVEL", "warn")
        .env("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:9")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Killed and reaped on drop, whatever the test does.
    let mut gw = GatewayProcess {
        addr: ([127, 0, 0, 1], port).into(),
        child,
    };
    let stdout = gw.child.stdout.take().unwrap();
    // The banner's `export TOKEN='…'` line, as a person would copy it.
    // Keep reading stdout for the whole run (the gateway logs there too).
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some(rest) = line.trim().strip_prefix("export TOKEN='") {
                let _ = tx.send(rest.trim_end_matches('\'').to_owned());
            }
        }
    });
    let token = tokio::task::spawn_blocking(move || rx.recv_timeout(Duration::from_secs(30)))
        .await
        .unwrap()
        .expect("the demo prints a token");

    let base = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        match client.get(format!("{base}/readyz")).send().await {
            Ok(r) if r.status() == 200 => break,
            _ => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
    let auth = format!("Bearer {token}");
    let res = client
        .post(format!("{base}/api/v1/reservations/create"))
        .header("authorization", &auth)
        .header("idempotency-key", uuid::Uuid::new_v4().to_string())
        .json(&json!({"event_id": "concert-2026", "seats": 2}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    let id = json(res).await["reservation_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let res = client
        .get(format!("{base}/api/v1/reservations/{id}"))
        .header("authorization", &auth)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(json(res).await["status"], "HELD");
    let res = client
        .post(format!("{base}/api/v1/reservations/{id}/cancel"))
        .header("authorization", &auth)
        .header("idempotency-key", uuid::Uuid::new_v4().to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(json(res).await["status"], "CANCELLED");
    // Without the token the same call is refused.
    let res = client
        .get(format!("{base}/api/v1/reservations/{id}"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);
    // The demo mints tokens for other users too.
    let res = client
        .get(format!("{base}/demo/token?sub=user-456"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);

    gw.terminate();
    let code = tokio::task::spawn_blocking(move || gw.wait_exit(Duration::from_secs(20)))
        .await
        .unwrap();
    assert_eq!(code, Some(0), "the demo exits 0 on SIGTERM");
}
