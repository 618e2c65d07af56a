//! What this binary is: crate version, the commit it was built from and the build time, baked
//! in by `build.rs` (vergen-gitcl). Served by `/version` (SPEC §2) and printed by
//! `gateway --version`; nothing here reads the environment at run time.

/// The crate version (`Cargo.toml`).
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
/// The full sha of the commit the binary was built from (`unknown` when it was built without git
/// and without `VERGEN_GIT_SHA`).
pub const GIT_SHA: &str = or_unknown(option_env!("VERGEN_GIT_SHA"));
/// `"true"` when the working tree had uncommitted changes to tracked files at build time.
const GIT_DIRTY: &str = or_unknown(option_env!("VERGEN_GIT_DIRTY"));
/// RFC 3339 UTC build time (`SOURCE_DATE_EPOCH` when set).
pub const BUILD_TIMESTAMP: &str = or_unknown(option_env!("VERGEN_BUILD_TIMESTAMP"));

const fn or_unknown(v: Option<&'static str>) -> &'static str {
    match v {
        Some(v) => v,
        None => "unknown",
    }
}

/// Whether the binary was built from a tree with uncommitted changes.
pub fn git_dirty() -> bool {
    GIT_DIRTY == "true"
}

/// The build time to the second, as `/version` shows it (`2026-12-01T20:31:02Z`).
pub fn build_time() -> String {
    match humantime::parse_rfc3339_weak(BUILD_TIMESTAMP) {
        Ok(t) => humantime::format_rfc3339_seconds(t).to_string(),
        Err(_) => BUILD_TIMESTAMP.to_owned(),
    }
}

/// `gateway --version`: `0.1.0 (a779fcf1b2c3, built 2026-12-01T20:31:02Z)`, with `, dirty`
/// after the sha when the tree was.
pub fn version_line() -> String {
    let sha = GIT_SHA.get(..12).unwrap_or(GIT_SHA);
    let dirty = if git_dirty() { ", dirty" } else { "" };
    format!("{VERSION} ({sha}{dirty}, built {})", build_time())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sha_is_a_full_commit_sha_when_built_from_git() {
        // The tests always run from a checkout.
        assert_eq!(GIT_SHA.len(), 40, "{GIT_SHA}");
        assert!(GIT_SHA.bytes().all(|b| b.is_ascii_hexdigit()), "{GIT_SHA}");
    }

    #[test]
    fn the_version_line_names_version_sha_and_build_time() {
        let line = version_line();
        assert!(line.starts_with(VERSION), "{line}");
        assert!(line.contains(&GIT_SHA[..12]), "{line}");
        assert!(line.contains("built 20"), "{line}");
        assert_eq!(line.contains("dirty"), git_dirty(), "{line}");
    }
}
