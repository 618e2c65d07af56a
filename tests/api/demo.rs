//! `gateway --demo` on a fresh machine (SPEC §1, issues #2/#3/#18): the banner's command lines,
//! pasted in order into a shell, all work (waiting room → reservation with the reservation token
//! → payment → metrics → docs); the demo exports no traces without a collector named, and Ctrl-C
//! stops it at once.
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use gateway_api::demo::{BANNER_COMMANDS_END, BANNER_COMMANDS_START};

use crate::helpers::{GatewayProcess, free_port};

#[tokio::test]
async fn the_demo_banner_lines_work_when_pasted_in_order() {
    let port = free_port();
    let child = Command::new(env!("CARGO_BIN_EXE_gateway"))
        .arg("--demo")
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("PORT", port.to_string())
        // The gate the banner's reservation token opens: without it the token is not needed.
        .env("QUEUE_REQUIRE_ADMISSION", "true")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Killed and reaped on drop, whatever the test does.
    let mut gw = GatewayProcess {
        addr: ([127, 0, 0, 1], port).into(),
        child,
    };
    let output = Arc::new(Mutex::new(Vec::<String>::new()));
    let (tx, rx) = std::sync::mpsc::channel::<Vec<String>>();
    let stdout = gw.child.stdout.take().unwrap();
    let lines = output.clone();
    std::thread::spawn(move || {
        let mut block: Option<Vec<String>> = None;
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            lines.lock().unwrap().push(line.clone());
            match &mut block {
                None if line.trim() == BANNER_COMMANDS_START => block = Some(Vec::new()),
                Some(b) if line.trim() == BANNER_COMMANDS_END => {
                    let _ = tx.send(std::mem::take(b));
                }
                Some(b) => b.push(line),
                None => {}
            }
        }
    });
    let stderr = gw.child.stderr.take().unwrap();
    let lines = output.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            lines.lock().unwrap().push(line);
        }
    });
    let commands = tokio::task::spawn_blocking(move || rx.recv_timeout(Duration::from_secs(30)))
        .await
        .unwrap()
        .expect("the demo prints its block of commands");
    assert!(commands.len() > 10, "{commands:?}");
    gw.wait_ready().await;

    // As a person would: every line, in order, in one shell; any failing curl (-f) stops it.
    let script = commands.join("\n");
    let run = tokio::task::spawn_blocking(move || {
        Command::new("bash")
            .args(["-euo", "pipefail", "-c", &script])
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .output()
    })
    .await
    .unwrap()
    .unwrap();
    let out = format!(
        "{}\n{}",
        String::from_utf8_lossy(&run.stdout),
        String::from_utf8_lossy(&run.stderr)
    );
    assert!(run.status.success(), "the banner's lines failed:\n{out}");
    for expected in [
        r#""status":"waiting""#,
        // The status poll: first in line, due now (ready, or waiting for the next admission tick).
        r#""eta_sec":0,"event_id":"concert-2026""#,
        r#""admission":"granted""#,
        r#""status":"HELD""#,
        r#""status":"CANCELLED""#,
        r#""payment_intent_id":"pi_"#,
        r#"http_server_requests_total{method="POST",route="/api/v1/reservations/create",status="201"} 1"#,
        &format!("200 http://127.0.0.1:{port}/docs/"),
        "401 without a token",
    ] {
        assert!(out.contains(expected), "missing {expected:?} in:\n{out}");
    }

    // The demo mints tokens for other users too (the banner says how).
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    let res = client
        .get(format!("http://127.0.0.1:{port}/demo/token?sub=user-456"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let minted: serde_json::Value = res.json().await.unwrap();
    assert_eq!(minted["sub"], "user-456");
    assert!(
        minted["access_token"]
            .as_str()
            .is_some_and(|t| t.split('.').count() == 3)
    );

    // Ctrl-C: no SHUTDOWN_DELAY in the demo, so it is gone in well under the production 5 s.
    let sent = Instant::now();
    let _ = Command::new("kill")
        .args(["-INT", &gw.child.id().to_string()])
        .status();
    let code = tokio::task::spawn_blocking(move || gw.wait_exit(Duration::from_secs(20)))
        .await
        .unwrap();
    assert_eq!(code, Some(0), "the demo exits 0 on Ctrl-C");
    assert!(
        sent.elapsed() < Duration::from_secs(3),
        "{:?}",
        sent.elapsed()
    );
    // No collector was named: nothing tried to export traces.
    let logs = output.lock().unwrap().join("\n");
    for word in ["otel-collector", "ExportError", "BatchSpanProcessor"] {
        assert!(!logs.contains(word), "{word} in the demo's output:\n{logs}");
    }
}
