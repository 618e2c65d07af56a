//! `gateway`: parse flags, load config, start telemetry, run the App. Wiring and exit codes only.
use std::process::ExitCode;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use gateway_api::app::{healthcheck, shutdown_signal};
use gateway_api::{App, Config, demo};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "--healthcheck") {
        return match runtime(Some(1)) {
            Ok(rt) => rt.block_on(healthcheck()),
            Err(_) => ExitCode::FAILURE,
        };
    }
    if args.iter().any(|a| a == "--print-openapi") {
        println!("{}", gateway_api::openapi::document_pretty());
        return ExitCode::SUCCESS;
    }
    let demo_mode = args.iter().any(|a| a == "--demo");
    if let Some(bad) = args.iter().find(|a| *a != "--demo") {
        eprintln!(
            "unknown argument {bad:?}; usage: gateway [--demo | --healthcheck | --print-openapi]"
        );
        return ExitCode::from(2);
    }
    let config = match Config::from_env() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("configuration error: {e}");
            return ExitCode::from(2);
        }
    };
    match runtime(config.worker_threads) {
        Ok(rt) => rt.block_on(serve(config, demo_mode)),
        Err(e) => {
            eprintln!("gateway: cannot start the runtime: {e}");
            ExitCode::FAILURE
        }
    }
}

/// `WORKER_THREADS` (default: the CPUs this process may use, which honours `taskset` and a
/// cgroup CPU limit). One thread gets Tokio's single-threaded scheduler: with one CPU the
/// work-stealing scheduler only adds cross-thread wake-ups (BENCHMARKS.md measures the gain).
fn runtime(workers: Option<usize>) -> std::io::Result<tokio::runtime::Runtime> {
    let workers = workers.unwrap_or_else(|| {
        std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
    });
    if workers == 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(workers)
            .enable_all()
            .build()
    }
}

async fn serve(config: Config, demo_mode: bool) -> ExitCode {
    // Dropped at the end of this function: the last log lines are written out after everything.
    let mut logs = gateway_api::telemetry::logs::init_with_traces(&config.telemetry);
    let result = if demo_mode {
        demo::run(config).await
    } else {
        run(config).await
    };
    logs.shutdown_traces().await; // the last spans, after the last request
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "gateway stopped");
            eprintln!("gateway: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(config: Config) -> Result<(), Box<dyn std::error::Error>> {
    config.validate_jwt()?;
    let app = App::build(config).await?;
    tracing::info!(addr = %app.local_addr()?, "gateway listening");
    app.run(shutdown_signal()).await;
    Ok(())
}
