//! The `gateway` command line (clap derive): the flags, and the help that lists every
//! environment variable from `config::VARIABLES`, the table the parser is checked against, so
//! `--help` and the parser cannot drift. Runs the one-shot commands (`--check-config`,
//! `--print-openapi`); serving is `main`'s.
use std::io::Write;
use std::process::ExitCode;

use clap::{CommandFactory, FromArgMatches, Parser};

use crate::build_info;
use crate::config::{self, Config, ConfigErrors, VarDefault};

/// The ticket platform's API gateway. Configured by environment variables (below); with no flag
/// it serves on $PORT until SIGTERM or Ctrl-C (a second one exits at once).
#[derive(Debug, Parser)]
#[command(name = "gateway")]
pub struct Cli {
    /// Everything in one process on loopback: in-memory store, mock reservation and payment
    /// APIs, a generated signing key; prints a token and curl lines.
    #[arg(long)]
    pub demo: bool,
    /// Parse the environment, print the effective configuration (secrets as ***) and exit: 0
    /// when it is valid, 2 when not (with every bad or missing variable, one per line).
    #[arg(long)]
    pub check_config: bool,
    /// Print the OpenAPI 3.1 document (JSON) and exit.
    #[arg(long, conflicts_with_all = ["demo", "check_config", "healthcheck"])]
    pub print_openapi: bool,
    /// GET /healthz on 127.0.0.1:$PORT; exit 0 when it answers 200 (the image's HEALTHCHECK).
    #[arg(long, conflicts_with_all = ["demo", "check_config"])]
    pub healthcheck: bool,
}

/// What `main` should do next.
pub enum Parsed {
    Run(Cli),
    /// Help, version or a usage error was printed: exit with this code (0 or 2).
    Exit(ExitCode),
}

/// Parses `args` (with the program name first). `-h` is short, `--help` adds the variables.
pub fn parse<I, T>(args: I) -> Parsed
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    let command = Cli::command()
        .version(build_info::version_line())
        .after_help("Configuration comes from environment variables: `gateway --help` lists them.")
        .after_long_help(variables_help());
    match command
        .try_get_matches_from(args)
        .and_then(|m| Cli::from_arg_matches(&m))
    {
        Ok(cli) => Parsed::Run(cli),
        Err(e) => {
            // A closed pipe (`gateway --help | head -1`) is not worth a panic or a message.
            let _ = e.print();
            Parsed::Exit(ExitCode::from(u8::try_from(e.exit_code()).unwrap_or(2)))
        }
    }
}

/// The environment section of `--help`, one entry per variable of SPEC §8.
pub fn variables_help() -> String {
    let mut out = String::from(
        "Environment (SPEC §8). Durations: 600ms, 10s, 10m. A bad value stops start-up with exit \
         code 2, naming the variable.\n",
    );
    for v in config::VARIABLES {
        let default = match v.default {
            VarDefault::Value(d) => format!("={d}"),
            VarDefault::Unset => " (unset)".to_owned(),
            VarDefault::Computed(how) => format!(" (default: {how})"),
        };
        out.push_str(&format!("\n  {}{default}\n          {}\n", v.name, v.help));
    }
    out
}

/// `--print-openapi`: the document on stdout; a reader that stops early (`| head`) ends it
/// quietly with 0.
pub fn print_openapi() -> ExitCode {
    write_stdout(
        &crate::router::document()
            .to_pretty_json()
            .unwrap_or_default(),
    )
}

/// `--check-config`: the effective configuration, then `configuration OK` (exit 0), or every
/// error on stderr (exit 2). Warnings (unknown variables) go to stderr either way.
pub fn check_config(loaded: &Result<Config, ConfigErrors>) -> ExitCode {
    let mut out = format!(
        "# gateway {} — effective configuration (secrets as ***)\n",
        build_info::version_line()
    );
    let shown = config::effective_env_values();
    let width = shown
        .iter()
        .map(|(v, value, _)| v.name.len() + value.len() + 1)
        .filter(|w| *w <= 48)
        .max()
        .unwrap_or(0);
    for (v, value, set) in &shown {
        let origin = match (set, v.default) {
            (true, _) => "set".to_owned(),
            (false, VarDefault::Computed(how)) => format!("default: {how}"),
            (false, VarDefault::Unset) => "unset".to_owned(),
            (false, VarDefault::Value(_)) => "default".to_owned(),
        };
        let computed = loaded.as_ref().ok().and_then(|c| computed(v.name, c));
        let line = match (set, v.default, computed) {
            (false, VarDefault::Computed(_), Some(now)) => format!("{}={now}", v.name),
            (false, VarDefault::Computed(_) | VarDefault::Unset, _) => format!("{}=", v.name),
            _ => format!("{}={value}", v.name),
        };
        out.push_str(&format!("{line:<width$}  # {origin}\n"));
    }
    match loaded {
        Ok(config) => {
            for w in &config.warnings {
                eprintln!("warning: {w}");
            }
            out.push_str(&format!("# {}\nconfiguration OK\n", summary(config)));
            write_stdout(&out)
        }
        Err(errors) => {
            let _ = write_stdout(&out);
            eprint!("{}", config_errors(errors));
            ExitCode::from(2)
        }
    }
}

/// The message `gateway` prints (once) for a configuration it cannot start with.
pub fn config_errors(errors: &ConfigErrors) -> String {
    let n = errors.0.len();
    let mut text = format!(
        "gateway: configuration error{} ({n}):\n",
        if n == 1 { "" } else { "s" }
    );
    for e in &errors.0 {
        text.push_str(&format!("  {e}\n"));
    }
    text
}

/// What a computed default comes to on this machine, where `--check-config` can know it (the
/// log format depends on the serving process's stdout, so it is not guessed here).
fn computed(name: &str, c: &Config) -> Option<String> {
    match name {
        "SERVICE_VERSION" => Some(c.telemetry.service_version.clone()),
        "WORKER_THREADS" => Some(
            c.worker_threads
                .or_else(|| std::thread::available_parallelism().ok().map(usize::from))
                .unwrap_or(1)
                .to_string(),
        ),
        _ => None,
    }
}

/// One line on what the configuration amounts to.
fn summary(c: &Config) -> String {
    let store = match &c.redis {
        None => "in-memory store (single replica only)".to_owned(),
        Some(r) if r.cluster => format!("Redis Cluster ({} seed nodes)", r.urls.len()),
        Some(_) => "Redis".to_owned(),
    };
    let jwt = if c.demo {
        "demo signing key"
    } else if c.jwt.skip_verify {
        "JWT signatures NOT verified (JWT_SKIP_VERIFY=true)"
    } else {
        "JWT verified against JWT_JWKS_URL"
    };
    format!("store: {store}; auth: {jwt}; listening on port {}", c.port)
}

fn write_stdout(text: &str) -> ExitCode {
    let mut stdout = std::io::stdout().lock();
    match stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
    {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("gateway: cannot write to stdout: {e}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn run(args: &[&str]) -> Option<Cli> {
        match parse(std::iter::once("gateway").chain(args.iter().copied())) {
            Parsed::Run(cli) => Some(cli),
            Parsed::Exit(_) => None,
        }
    }

    #[test]
    fn flags_parse_and_unknown_ones_do_not() {
        assert!(run(&["--demo"]).unwrap().demo);
        let c = run(&["--check-config", "--demo"]).unwrap();
        assert!(c.check_config && c.demo);
        assert!(run(&["--print-openapi"]).unwrap().print_openapi);
        assert!(run(&["--healthcheck"]).unwrap().healthcheck);
        assert!(run(&["--bogus"]).is_none());
        assert!(run(&["--print-openapi", "--demo"]).is_none());
    }

    #[test]
    fn the_long_help_lists_every_variable_with_its_default() {
        let help = variables_help();
        for v in config::VARIABLES {
            assert!(help.contains(&format!("\n  {}", v.name)), "{}", v.name);
            assert!(help.contains(v.help), "{}", v.name);
        }
        assert!(help.contains("PORT=8080"));
        assert!(help.contains("UPSTREAM_PAYMENT_TIMEOUT=400ms"));
        assert!(help.contains("REDIS_ADDR (unset)"));
    }
}
