#!/usr/bin/env bash
# The whole test suite, from a fresh clone, with nothing installed by hand.
# `.ci/run` calls exactly this. It installs what is missing, checks the
# services the tests need, and fails loudly when one is unreachable.
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '\n==> %s\n' "$*"; }

# --- system packages --------------------------------------------------------
need_pkgs=()
command -v taskset >/dev/null || need_pkgs+=(util-linux)
command -v python3 >/dev/null || need_pkgs+=(python3 python3-venv)
command -v cc >/dev/null || need_pkgs+=(build-essential)
if ((${#need_pkgs[@]})); then
  log "installing Debian packages: ${need_pkgs[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q
  apt-get install -y -q "${need_pkgs[@]}"
fi

# --- Rust ---------------------------------------------------------------------
if ! command -v cargo >/dev/null; then
  echo "error: cargo is not installed (the machine's Rust toolchain is required)" >&2
  exit 1
fi

# --- Python (training scripts, onnxruntime reference, benchmarks) ------------
if [[ ! -x .venv/bin/python ]] || ! .venv/bin/python -c 'import onnxruntime, sklearn' 2>/dev/null; then
  log "creating .venv from requirements-dev.txt"
  python3 -m venv .venv
  .venv/bin/pip install -q --upgrade pip
  .venv/bin/pip install -q -r requirements-dev.txt
fi

# --- tests --------------------------------------------------------------------
# One build profile for tests, demo and bench (release), so CI compiles once.
log "the claims demo, as the README runs it"
cargo run --release -q -- demo --events 2000

log "cargo test --release"
# --lib --bins --tests: every test target but doctests (there are none), so
# the run closes on a real test binary's result line.
cargo test --release --no-fail-fast --lib --bins --tests -- --test-threads=2
