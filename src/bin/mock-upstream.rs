//! `mock-upstream`: the fake reservation and payment APIs as a process (docker-compose, benchmarks).
//!
//! `mock-upstream [--role reservation|payment|both|fixed] [--port N]`; env `MOCK_LATENCY_MS`,
//! `MOCK_FAILURE_RATE` (0..1), `MOCK_RECORD` (default false here: a long-running mock keeps nothing).
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::atomic::Ordering;
use std::time::Duration;

use gateway_api::mock_upstream::{MockUpstream, Role};

#[tokio::main]
async fn main() -> ExitCode {
    match run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("mock-upstream: {e}");
            ExitCode::from(2)
        }
    }
}

async fn run() -> Result<(), String> {
    let mut role = Role::Both;
    let mut port: u16 = std::env::var("PORT")
        .ok()
        .and_then(|p| p.parse().ok())
        .unwrap_or(8081);
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--role" => role = args.next().ok_or("--role needs a value")?.parse()?,
            "--port" => {
                port = args
                    .next()
                    .and_then(|p| p.parse().ok())
                    .ok_or("--port needs a number")?
            }
            other => {
                return Err(format!(
                    "unknown argument {other:?}; usage: mock-upstream [--role reservation|payment|both|fixed] [--port N]"
                ));
            }
        }
    }
    let mock = MockUpstream::start(role, SocketAddr::from(([0, 0, 0, 0], port)))
        .await
        .map_err(|e| format!("bind :{port}: {e}"))?;
    let env_num = |name: &str| {
        std::env::var(name).ok().map(|v| {
            v.parse::<f64>()
                .map_err(|_| format!("{name}={v:?}: expected a number"))
        })
    };
    if let Some(ms) = env_num("MOCK_LATENCY_MS").transpose()? {
        mock.set_delay(Duration::from_millis(ms as u64));
    }
    if let Some(rate) = env_num("MOCK_FAILURE_RATE").transpose()? {
        mock.control
            .failure_permille
            .store((rate.clamp(0.0, 1.0) * 1000.0) as u32, Ordering::SeqCst);
    }
    let record = std::env::var("MOCK_RECORD")
        .map(|v| v == "true")
        .unwrap_or(false);
    mock.control.record.store(record, Ordering::SeqCst);
    println!("mock-upstream: {role:?} API on {}", mock.addr);
    gateway_api::app::shutdown_signal().await;
    mock.stop().await;
    Ok(())
}
