#!/usr/bin/env bash
# The README's first command: the claims example end to end on the embedded
# bus. On a machine that has only the Rust toolchain it first installs the
# Debian packages the build needs (scripts/build_deps.sh), then runs
# `cargo run --release -- demo`, passing its arguments on (e.g. `--events 2000`).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/build_deps.sh
if ! command -v cargo >/dev/null; then
  echo "error: cargo is not installed: modelbus needs the Rust toolchain (https://rustup.rs)" >&2
  exit 1
fi
install_missing_packages
exec cargo run --release -- demo "$@"
