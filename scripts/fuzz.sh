#!/usr/bin/env bash
# Fuzzes modelbus's decoders with cargo-fuzz (libFuzzer + AddressSanitizer,
# nightly Rust): each target in fuzz/ for SECONDS (default 30).
#
#   scripts/fuzz.sh [SECONDS]
#
# Exits non-zero when any target finds something: a panic, a crash, an
# allocation of 512 MB or more (-malloc_limit_mb), a process past 2 GB of
# memory (-rss_limit_mb), or one input running 25 s or more. The input that
# did it is in fuzz/artifacts/<target>/; copy it to fuzz/regressions/<target>/
# so that tests/fuzz_regressions.rs (stable `cargo test`) keeps it fixed.
#
# The committed corpus (fuzz/corpus/<target>/) is only read: new inputs go
# to a scratch directory, so a run leaves the work tree as it was. With
# FUZZ_GROW_CORPUS=1 they go into fuzz/corpus/<target>/ instead; then
# minimise it before committing:
#   cargo +nightly fuzz cmin <target> fuzz/corpus/<target>
#
# The fuzz crate is its own workspace with its own target dir (fuzz/target);
# the first build compiles the whole dependency tree (librdkafka, tract) with
# sanitizer instrumentation and takes a while.
set -euo pipefail
cd "$(dirname "$0")/.."

secs="${1:-30}"
[[ "$secs" =~ ^[0-9]+$ ]] || { echo "usage: $0 [SECONDS]" >&2; exit 2; }
targets=(headers event_record traceparent config)

log() { printf '\n==> %s\n' "$*"; }

if ! cargo +nightly --version >/dev/null 2>&1; then
  echo "error: the nightly toolchain is required (rustup toolchain install nightly)" >&2
  exit 1
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
  log "installing cargo-fuzz"
  cargo install cargo-fuzz --locked
fi
# rdkafka's vendored librdkafka needs these to build (as scripts/test.sh).
need_pkgs=()
command -v cmake >/dev/null || need_pkgs+=(cmake)
command -v c++ >/dev/null || need_pkgs+=(build-essential)
dpkg -s libssl-dev >/dev/null 2>&1 || need_pkgs+=(libssl-dev pkg-config)
dpkg -s libcurl4-openssl-dev >/dev/null 2>&1 || need_pkgs+=(libcurl4-openssl-dev)
if ((${#need_pkgs[@]})); then
  log "installing Debian packages: ${need_pkgs[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q
  apt-get install -y -q "${need_pkgs[@]}"
fi

log "cargo +nightly fuzz build"
cargo +nightly fuzz build

scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT
failed=()
for t in "${targets[@]}"; do
  dirs=()
  if [[ "${FUZZ_GROW_CORPUS:-0}" == 1 ]]; then
    dirs+=("fuzz/corpus/$t")
  else
    mkdir -p "$scratch/$t"
    dirs+=("$scratch/$t" "fuzz/corpus/$t")
  fi
  # Only non-empty directories: libFuzzer refuses a missing one.
  if compgen -G "fuzz/regressions/$t/*" >/dev/null; then
    dirs+=("fuzz/regressions/$t")
  fi
  args=(-max_total_time="$secs" -rss_limit_mb=2048 -malloc_limit_mb=512 -timeout=25 -print_final_stats=1)
  [[ -f "fuzz/dict/$t.dict" ]] && args+=(-dict="fuzz/dict/$t.dict")
  log "fuzzing $t for ${secs}s"
  if ! cargo +nightly fuzz run "$t" "${dirs[@]}" -- "${args[@]}"; then
    echo "FINDING in $t: see fuzz/artifacts/$t/" >&2
    failed+=("$t")
  fi
done

if ((${#failed[@]})); then
  echo "fuzzing found problems in: ${failed[*]}" >&2
  exit 1
fi
echo "fuzzing: ${#targets[@]} targets, ${secs}s each, nothing found"
