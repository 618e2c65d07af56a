//! Bakes the build's identity into the binary for `/version` and `gateway --version` (SPEC §2):
//! the commit's sha, whether the tree was dirty, and the build time, all from `vergen-gitcl`
//! (`VERGEN_GIT_SHA`, `VERGEN_GIT_DIRTY`, `VERGEN_BUILD_TIMESTAMP`; read by `src/build_info.rs`).
//!
//! - Without `.git` (the Docker build context), set `VERGEN_GIT_SHA` (and `VERGEN_GIT_DIRTY`) in
//!   the environment: vergen takes them as they are. Without either, the binary says `unknown`
//!   and cargo prints a warning.
//! - `SOURCE_DATE_EPOCH` fixes the build time (reproducible builds).
//! - Lists the crate's module paths for `LOG_LEVEL`'s target check (`config.rs`).
//! - Reruns when HEAD or the branch it points at moves (a commit, a checkout; also in a git
//!   worktree, whose refs live in the common directory), and when the sources change, so the
//!   dirty flag is the one of the tree the binary was compiled from.
use std::path::Path;
use std::process::Command;

use vergen_gitcl::{Build, Emitter, Gitcl};

fn main() {
    let build = Build::builder().build_timestamp(true).build();
    let git = Gitcl::builder().sha(false).dirty(false).build();
    let emitted = Emitter::default()
        .add_instructions(&build)
        .and_then(|e| e.add_instructions(&git))
        .and_then(|e| e.emit());
    if let Err(e) = emitted {
        println!("cargo:warning=build info unavailable: {e}");
    }
    for path in git_paths() {
        println!("cargo:rerun-if-changed={path}");
    }
    for path in ["src", "Cargo.toml", "Cargo.lock", "build.rs"] {
        println!("cargo:rerun-if-changed={path}");
    }
    if let Err(e) = write_modules() {
        println!("cargo:warning=cannot list the crate's modules: {e}");
    }
    for var in ["VERGEN_GIT_SHA", "VERGEN_GIT_DIRTY", "SOURCE_DATE_EPOCH"] {
        println!("cargo:rerun-if-env-changed={var}");
    }
}

/// HEAD, the ref it names and `packed-refs`, wherever git keeps them (`--git-path` resolves a
/// worktree's per-worktree and common directories).
fn git_paths() -> Vec<String> {
    let git = |args: &[&str]| {
        Command::new("git")
            .args(args)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .map(|s| s.trim().to_owned())
            .filter(|s| !s.is_empty())
    };
    let mut names = vec!["HEAD".to_owned(), "packed-refs".to_owned()];
    if let Some(head_ref) = git(&["symbolic-ref", "-q", "HEAD"]) {
        names.push(head_ref);
    }
    names
        .iter()
        .filter_map(|n| git(&["rev-parse", "--git-path", n]))
        .filter(|p| std::path::Path::new(p).exists())
        .collect()
}

/// `$OUT_DIR/modules.rs`: `&["gateway_api", "gateway_api::app", …]`, one entry per file of the
/// library under `src/` (the binaries in `src/main.rs` and `src/bin/` are not modules of it).
fn write_modules() -> std::io::Result<()> {
    fn walk(dir: &Path, prefix: &str, out: &mut Vec<String>) -> std::io::Result<()> {
        for entry in std::fs::read_dir(dir)? {
            let path = entry?.path();
            let Some(stem) = path.file_stem().and_then(|s| s.to_str()) else {
                continue;
            };
            if path.is_dir() {
                if prefix == "gateway_api" && stem == "bin" {
                    continue;
                }
                walk(&path, &format!("{prefix}::{stem}"), out)?;
            } else if path.extension().is_some_and(|e| e == "rs") {
                match (prefix, stem) {
                    ("gateway_api", "lib" | "main") => {}
                    (_, "mod") => out.push(prefix.to_owned()),
                    _ => out.push(format!("{prefix}::{stem}")),
                }
            }
        }
        Ok(())
    }
    let mut modules = vec!["gateway_api".to_owned()];
    walk(Path::new("src"), "gateway_api", &mut modules)?;
    modules.sort();
    modules.dedup();
    let list: Vec<String> = modules.iter().map(|m| format!("{m:?}")).collect();
    let out = std::env::var("OUT_DIR").map_err(std::io::Error::other)?;
    std::fs::write(
        Path::new(&out).join("modules.rs"),
        format!("&[{}]\n", list.join(", ")),
    )
}
