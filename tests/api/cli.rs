//! The `gateway` command line as an operator meets it (issue #18): help, version, exit codes,
//! configuration errors reported once and all at once, `--check-config`, a closed pipe, the
//! unknown-variable warning, and a second signal.
use std::process::{Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use gateway_api::config::VARIABLES;

use crate::helpers::GatewayProcess;

fn gateway(args: &[&str], env: &[(&str, &str)]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_gateway"))
        .args(args)
        .env_clear()
        .envs(env.iter().copied())
        .output()
        .unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn help_lists_every_variable_and_version_names_the_commit() {
    let out = gateway(&["--help"], &[]);
    assert_eq!(out.status.code(), Some(0));
    let help = text(&out.stdout);
    for v in VARIABLES {
        assert!(help.contains(v.name), "{} missing from --help", v.name);
    }
    assert!(help.contains("QUEUE_ADMISSION_RPS=100"), "{help}");
    assert!(help.contains("--check-config"), "{help}");
    let out = gateway(&["-h"], &[]);
    assert_eq!(out.status.code(), Some(0));
    assert!(text(&out.stdout).contains("--demo"));
    let out = gateway(&["--version"], &[]);
    assert_eq!(out.status.code(), Some(0));
    let version = text(&out.stdout);
    assert!(
        version.contains(&gateway_api::build_info::GIT_SHA[..12]),
        "{version}"
    );
    let out = gateway(&["--frobnicate"], &[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("--frobnicate"));
}

#[test]
fn every_bad_or_missing_variable_is_named_once_and_the_exit_code_is_2() {
    let out = gateway(
        &[],
        &[
            ("PORT", "99999"),
            ("RATE_LIMIT_RPS", "fast"),
            ("LOG_LEVEL", "warning"),
        ],
    );
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    for line in [
        "PORT=\"99999\": expected 1–65535",
        "RATE_LIMIT_RPS=\"fast\": expected",
        "LOG_LEVEL=\"warning\"",
        "JWT_JWKS_URL is required",
        "JWT_ISSUER is required",
        "JWT_AUDIENCE is required",
    ] {
        assert_eq!(err.matches(line).count(), 1, "{line:?} once in:\n{err}");
    }
    assert!(text(&out.stdout).is_empty(), "{}", text(&out.stdout));
}

#[test]
fn check_config_prints_the_effective_configuration_without_secrets() {
    let out = gateway(
        &["--check-config"],
        &[
            ("JWT_SKIP_VERIFY", "true"),
            ("REDIS_ADDR", "redis://app:hunter2@redis:6379"),
            ("REDIS_PASSWORD", "hunter2"),
            ("RATE_LIMT_RPS", "5"),
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let shown = text(&out.stdout);
    assert!(!shown.contains("hunter2"), "{shown}");
    assert!(shown.contains("REDIS_PASSWORD=***"), "{shown}");
    assert!(
        shown.contains("REDIS_ADDR=redis://app:***@redis:6379"),
        "{shown}"
    );
    assert!(shown.contains("RATE_LIMIT_RPS=50"), "{shown}");
    assert!(shown.trim_end().ends_with("configuration OK"), "{shown}");
    assert!(
        text(&out.stderr).contains("RATE_LIMT_RPS ignored; did you mean RATE_LIMIT_RPS?"),
        "{}",
        text(&out.stderr)
    );

    let out = gateway(
        &["--check-config"],
        &[("UPSTREAM_PAYMENT_TIMEOUT", "4O0ms")],
    );
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    assert!(err.contains("UPSTREAM_PAYMENT_TIMEOUT=\"4O0ms\""), "{err}");
    assert!(err.contains("JWT_ISSUER is required"), "{err}");
}

#[test]
fn print_openapi_ends_cleanly_on_a_closed_pipe() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_gateway"))
        .arg("--print-openapi")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The reader goes away before the document is written, as `| head -1` does.
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(!text(&out.stderr).contains("panicked"));
    let out = gateway(&["--print-openapi"], &[]);
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["servers"][0]["url"], "/");
}

#[tokio::test]
async fn an_unknown_variable_is_a_start_up_warning_naming_the_closest_known_one() {
    let lines = Arc::new(Mutex::new(Vec::new()));
    let env = [
        ("JWT_SKIP_VERIFY".to_owned(), "true".to_owned()),
        ("RATE_LIMT_RPS".to_owned(), "5".to_owned()),
        ("LOG_FORMAT".to_owned(), "json".to_owned()),
    ];
    let gw = GatewayProcess::start_capturing(&env, lines.clone()).await;
    // Log lines reach stdout within ~100 ms of being logged (the log buffer's flush interval).
    let deadline = Instant::now() + Duration::from_secs(5);
    let warning = loop {
        let found = lines
            .lock()
            .unwrap()
            .iter()
            .find(|l| l.contains("RATE_LIMT_RPS"))
            .cloned();
        if found.is_some() || Instant::now() > deadline {
            break found;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    .expect("a warning about RATE_LIMT_RPS");
    let v: serde_json::Value = serde_json::from_str(&warning).unwrap();
    assert_eq!(v["level"], "WARN");
    assert!(
        v["message"]
            .as_str()
            .unwrap()
            .contains("did you mean RATE_LIMIT_RPS?"),
        "{v}"
    );
    drop(gw);
}

#[tokio::test]
async fn a_second_signal_ends_the_drain_at_once() {
    let env = [
        ("JWT_SKIP_VERIFY".to_owned(), "true".to_owned()),
        // A drain far longer than the test waits.
        ("SHUTDOWN_DELAY".to_owned(), "60s".to_owned()),
    ];
    let mut gw = GatewayProcess::start(&env).await;
    gw.terminate();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(gw.child.try_wait().unwrap().is_none(), "still draining");
    let sent = Instant::now();
    gw.terminate();
    let code = tokio::task::spawn_blocking(move || gw.wait_exit(Duration::from_secs(10)))
        .await
        .unwrap();
    assert_eq!(code, Some(130));
    assert!(
        sent.elapsed() < Duration::from_secs(5),
        "{:?}",
        sent.elapsed()
    );
}

/// Runs the gateway for 2 s (then SIGINT), on a pseudo-terminal when `tty`, and returns what it
/// printed.
fn two_seconds_of_logs(tty: bool) -> String {
    let gateway = env!("CARGO_BIN_EXE_gateway");
    let port = crate::helpers::free_port().to_string();
    let run = format!("timeout -s INT 2 {gateway}");
    let mut cmd = if tty {
        // util-linux `script` gives the child a terminal as stdout, as a person's shell does.
        let mut c = Command::new("script");
        c.args(["-qefc", &run, "/dev/null"]);
        c
    } else {
        let mut c = Command::new("sh");
        c.args(["-c", &run]);
        c
    };
    let out = cmd
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("PORT", port)
        .env("JWT_SKIP_VERIFY", "true")
        .env("SHUTDOWN_DELAY", "0s")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    text(&out.stdout)
}

#[test]
fn logs_are_text_on_a_terminal_and_json_lines_in_a_pipe() {
    let on_tty = two_seconds_of_logs(true);
    let line = on_tty
        .lines()
        .find(|l| l.contains("REDIS_ADDR is unset"))
        .unwrap_or_else(|| panic!("no start-up warning on the terminal:\n{on_tty}"));
    assert!(line.contains("WARN"), "{line}");
    assert!(
        !line.trim_start().starts_with('{'),
        "JSON on a terminal: {line}"
    );

    let piped = two_seconds_of_logs(false);
    let line = piped
        .lines()
        .find(|l| l.contains("REDIS_ADDR is unset"))
        .unwrap_or_else(|| panic!("no start-up warning in the pipe:\n{piped}"));
    let v: serde_json::Value = serde_json::from_str(line).unwrap();
    assert_eq!(v["level"], "WARN");
}
