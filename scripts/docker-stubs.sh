#!/bin/sh
# Creates an empty stub for every target Cargo.toml names, so the Dockerfile can build the
# dependencies alone (a layer cached until Cargo.toml or Cargo.lock change). Run in a directory
# holding only Cargo.toml and Cargo.lock. scripts/validate.sh checks cargo accepts the result.
set -eu
stub() {
    [ -e "$1" ] && return 0
    mkdir -p "$(dirname "$1")"
    echo 'fn main() {}' > "$1"
}
mkdir -p src
: > src/lib.rs
stub src/main.rs
# Targets with an explicit path, and [[bench]]/[[test]]/[[example]] that rely on the default one.
for f in $(sed -n 's/^path *= *"\(.*\.rs\)".*/\1/p' Cargo.toml) $(awk -F'"' '
    /^\[/ { if (dir != "" && name != "" && path == "") print dir "/" name ".rs"; dir = ""; name = ""; path = "" }
    /^\[\[bench\]\]/ { dir = "benches" }
    /^\[\[test\]\]/ { dir = "tests" }
    /^\[\[example\]\]/ { dir = "examples" }
    dir != "" && /^name *=/ { name = $2 }
    dir != "" && /^path *=/ { path = $2 }
    END { if (dir != "" && name != "" && path == "") print dir "/" name ".rs" }
' Cargo.toml); do
    stub "$f"
done
