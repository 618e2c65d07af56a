//! `gateway`: parse flags, load config, start telemetry, run the App. Wiring and exit codes only:
//! 0 after a clean shutdown, 2 for a bad command line or configuration, 1 when serving failed.
use std::process::ExitCode;

#[cfg(not(feature = "dhat-heap"))]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// `bench/counts.sh`: every allocation counted (allocations per request, issue #17).
#[cfg(feature = "dhat-heap")]
#[global_allocator]
static GLOBAL: dhat::Alloc = dhat::Alloc;

use gateway_api::app::{exit_on_second_signal, healthcheck, shutdown_signal};
use gateway_api::cli::{self, Cli, Parsed};
use gateway_api::{App, Config, demo};

fn main() -> ExitCode {
    let cli = match cli::parse(std::env::args_os()) {
        Parsed::Run(cli) => cli,
        Parsed::Exit(code) => return code,
    };
    if cli.healthcheck {
        return match runtime(Some(1)) {
            Ok(rt) => rt.block_on(healthcheck()),
            Err(_) => ExitCode::FAILURE,
        };
    }
    if cli.print_openapi {
        return cli::print_openapi();
    }
    let loaded = Config::load_env(cli.demo);
    if cli.check_config {
        return cli::check_config(&loaded);
    }
    let config = match loaded {
        Ok(c) => c,
        Err(e) => {
            eprint!("{}", cli::config_errors(&e));
            return ExitCode::from(2);
        }
    };
    match runtime(config.worker_threads) {
        Ok(rt) => rt.block_on(serve(config, &cli)),
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

async fn serve(mut config: Config, cli: &Cli) -> ExitCode {
    if cli.demo {
        // Before the logger starts: the demo decides whether traces are exported.
        demo::configure(&mut config);
    }
    #[cfg(feature = "dhat-heap")]
    let _heap = heap_counts();
    // Dropped at the end of this function: the last log lines are written out after everything.
    let mut logs = gateway_api::telemetry::logs::init_with_traces(&config.telemetry);
    for warning in &config.warnings {
        tracing::warn!("{warning}");
    }
    let signal = async {
        shutdown_signal().await;
        tokio::spawn(exit_on_second_signal());
    };
    let result = if cli.demo {
        demo::run(config, signal).await
    } else {
        run(config, signal).await
    };
    logs.shutdown_traces().await; // the last spans, after the last request
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // Logged once, where a person and a collector both see it.
            tracing::error!(error = %e, "gateway stopped");
            ExitCode::FAILURE
        }
    }
}

async fn run(
    config: Config,
    signal: impl std::future::Future<Output = ()> + Send,
) -> Result<(), Box<dyn std::error::Error>> {
    let app = App::build(config).await?;
    tracing::info!(addr = %app.local_addr()?, "gateway listening");
    app.run(signal).await;
    Ok(())
}

/// Counts allocations from here on; each `SIGUSR1` prints the totals so far on stderr, as
/// `heap: blocks=… bytes=…`, for `bench/counts.sh` to take differences of; the profile by
/// call site is written at exit.
#[cfg(feature = "dhat-heap")]
fn heap_counts() -> dhat::Profiler {
    // Written at exit (`DHAT_FILE`, default dhat-heap.json): where the allocations come from.
    let file = std::env::var("DHAT_FILE").unwrap_or_else(|_| "dhat-heap.json".to_owned());
    let profiler = dhat::Profiler::builder().file_name(file).build();
    tokio::spawn(async {
        use tokio::signal::unix::{SignalKind, signal};
        let Ok(mut usr1) = signal(SignalKind::user_defined1()) else {
            return;
        };
        while usr1.recv().await.is_some() {
            let s = dhat::HeapStats::get();
            eprintln!("heap: blocks={} bytes={}", s.total_blocks, s.total_bytes);
        }
    });
    profiler
}
