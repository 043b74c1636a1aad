#!/usr/bin/env bash
# Replays the same claims backlog through one `modelbus run` worker, for
# comparing the worker's CPU per event between builds without the bench's
# run-to-run noise.
#
#   scripts/replay_profile.sh native    [EVENTS]   # utime+stime per event, worker on core 0
#   scripts/replay_profile.sh callgrind [EVENTS]   # instructions per event (deterministic)
#   scripts/replay_profile.sh perf      [EVENTS]   # cpu-clock samples, for `perf report`
#
# The first run seeds a data dir with `modelbus bench --dir` (kept under
# $SEED); every run copies it, resets the group's position and the results,
# runs the worker until every result is written, then stops it. Start-up is
# measured separately (an empty replay) and subtracted in native mode.
set -euo pipefail
mode=${1:-native}
events=${2:-32000}
root=$(cd "$(dirname "$0")/.." && pwd)
bin=${BIN:-$root/target/release/modelbus}
seed=${SEED:-/tmp/modelbus-replay-seed-$events}
work=${WORK:-/tmp/modelbus-replay}
export ORT_DYLIB_PATH=${ORT_DYLIB_PATH:-$(ls "$root"/.venv/lib/python3*/site-packages/onnxruntime/capi/libonnxruntime.so* 2>/dev/null | head -1)}

if [ ! -f "$seed/modelbus.toml" ]; then
  "$bin" bench --dir "$seed" --events "$events" --duration 1s >/dev/null
fi

reset() { # $1 = keep this many input events (0 = an empty replay)
  rm -rf "$work" && cp -r "$seed" "$work"
  python3 - "$work/data/bus.sqlite" "$1" <<'PY'
import sqlite3, sys
db = sqlite3.connect(sys.argv[1]); keep = int(sys.argv[2])
for t in ("members", "leases", "offsets", "attempts"):
    db.execute(f"DELETE FROM {t}")
for (lid,) in db.execute("SELECT id FROM logs WHERE topic IN ('risk-scored','claims.dlq')").fetchall():
    db.execute(f"DELETE FROM log_{lid}")
db.execute("UPDATE heads SET next_offset = 0 WHERE topic IN ('risk-scored','claims.dlq')")
if keep == 0:  # start-up only: the group starts at the end of the input
    for (topic, part, nxt) in db.execute("SELECT topic, part, next_offset FROM heads WHERE topic='claims'").fetchall():
        db.execute("INSERT INTO offsets VALUES('claims-risk', ?, ?, ?)", (topic, part, nxt))
db.commit()
print(sum(r[0] for r in db.execute("SELECT next_offset FROM heads WHERE topic='claims'")), file=sys.stderr)
db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
PY
}

handled() {
  python3 -c "import sqlite3,sys; db=sqlite3.connect('file:$work/data/bus.sqlite?mode=ro', uri=True); print(db.execute(\"SELECT coalesce(sum(next_offset),0) FROM heads WHERE topic IN ('risk-scored','claims.dlq')\").fetchone()[0])"
}

run_once() { # $1 = expected results; prints "cpu_seconds"
  local want=$1 pid
  case $mode in
    native) taskset -c 0 "$bin" run --config "$work/modelbus.toml" >/dev/null 2>"$work.log" & pid=$! ;;
    perf) perf record -F 4999 ${PERF_ARGS:-} -o "$work.perf" -- "$bin" run --config "$work/modelbus.toml" >/dev/null 2>"$work.log" & pid=$! ;;
    callgrind) valgrind --tool=callgrind --callgrind-out-file="$work.callgrind" "$bin" run --config "$work/modelbus.toml" >/dev/null 2>"$work.log" & pid=$! ;;
  esac
  while [ "$(handled)" -lt "$want" ]; do sleep 0.2; done
  if [ "$want" -eq 0 ]; then
    # Start-up is over once the worker says so: under callgrind loading the
    # model and compiling the schemas takes far longer than a fixed nap, and
    # cutting it short left most of start-up in the per-event figure.
    for _ in $(seq 1 1500); do grep -q "worker started" "$work.log" 2>/dev/null && break; sleep 0.2; done
    grep -q "worker started" "$work.log" || { echo "the worker did not start (see $work.log)" >&2; exit 1; }
    sleep 2
  fi
  local cpu
  cpu=$(awk '{split($0,a,") "); split(a[2],f," "); print (f[12]+f[13])/100}' /proc/$pid/stat)
  # minor faults and context switches of all threads, for the native report
  faults=$(awk '{split($0,a,") "); split(a[2],f," "); print f[8]}' /proc/$pid/stat)
  switches=$(cat /proc/$pid/task/*/status | awk '/ctxt_switches/ {s+=$2} END {print s}')
  echo "$faults $switches" > "$work.counts"
  kill -TERM $pid; wait $pid || true
  echo "$cpu"
}

total=$(reset "$events" 2>&1 >/dev/null | tail -1)
case $mode in
  native)
    reset 0 2>/dev/null; base=$(run_once 0); read bf bs < "$work.counts"
    reset "$events" 2>/dev/null; cpu=$(run_once "$total"); read f s < "$work.counts"
    python3 -c "print(f'{$total} events: {($cpu-$base)*1e6/$total:.2f} µs/event (cpu {$cpu}s, start-up {$base}s); per 1000 events: {($f-$bf)*1000/$total:.1f} minor faults, {($s-$bs)*1000/$total:.1f} context switches (live threads only)')" ;;
  perf)
    run_once "$total" >/dev/null
    echo "profile: perf report -i $work.perf --no-children" ;;
  callgrind)
    reset 0 2>/dev/null; run_once 0 >/dev/null
    ir0=$(grep -m1 '^summary:' "$work.callgrind" | awk '{print $2}')
    reset "$events" 2>/dev/null; run_once "$total" >/dev/null
    ir=$(grep -m1 '^summary:' "$work.callgrind" | awk '{print $2}')
    python3 -c "print(f'{$total} events: {($ir-$ir0)/$total:.0f} instructions per event ({$ir} in all, start-up {$ir0}); profile: $work.callgrind')" ;;
esac
