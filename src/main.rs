//! `gateway`: parse flags, load config, start telemetry, run the App. Wiring and exit codes only.
use std::process::ExitCode;

use gateway_api::app::{healthcheck, shutdown_signal};
use gateway_api::{App, Config, demo};

#[tokio::main]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "--healthcheck") {
        return healthcheck().await;
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
    let traces = gateway_api::telemetry::logs::init_with_traces(&config.telemetry);
    let result = if demo_mode {
        demo::run(config).await
    } else {
        run(config).await
    };
    if let Some(t) = traces {
        t.shutdown().await; // the last spans, after the last request
    }
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
