#!/usr/bin/env bash
# `homepot agent` costs: its RSS and CPU at a 10 s interval, then how long it takes to drain a
# one-hour backlog of 10 s samples (360 batches, queued while the server was stopped) into a
# local server, at the default drain rate.
#   bench/agent.sh [OBSERVE_SECONDS]
# Needs a release build (cargo build --release --bin homepot). The agent runs as the README
# starts it (INFO logging); the server as the load scripts start it (filter off: every sample
# is stored). Beside it, in the same run, the device health API's own psutil reporter
# (bench/psutil_reporter.py; Debian's python3-psutil and python3-requests; skipped with a
# notice without them) at the same interval.
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/server.sh
OBSERVE="${1:-120}"
PORT="${BENCH_PORT:-18090}"
start_server "$PORT"
BASE="http://127.0.0.1:$PORT"
DEVICE_KEY=$(curl -sf -XPOST "$BASE/api/v1/devices" -H "X-API-Key: $KEY" -H 'Content-Type: application/json' \
  -d '{"device_id": "bench-agent"}' | python3 -c 'import json, sys; print(json.load(sys.stdin)["api_key"])')
STATE="$WORK/agent"
TICK=$(getconf CLK_TCK)

agent() { "$BIN" agent --server "$BASE" --device-id bench-agent --key "$DEVICE_KEY" --state-dir "$STATE" "$@" \
  >> "$WORK/agent.log" 2>&1 & AGENT=$!; }
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
counter() { "$BIN" agent status --json --state-dir "$STATE" | python3 -c "import json, sys; print(json.load(sys.stdin)['$1'])"; }

# 1. Steady state at 10 s: CPU over the window after the first reading, peak RSS.
agent --interval 10s
sleep 5
start_ticks=$(cpu_ticks "$AGENT"); start_ns=$(date +%s%N)
sleep "$OBSERVE"
end_ticks=$(cpu_ticks "$AGENT"); end_ns=$(date +%s%N)
rss=$(awk '/VmRSS/ {print $2}' "/proc/$AGENT/status"); hwm=$(awk '/VmHWM/ {print $2}' "/proc/$AGENT/status")
sent=$(counter sent)
kill -TERM "$AGENT"; wait "$AGENT" || true
awk -v t=$((end_ticks - start_ticks)) -v hz="$TICK" -v ns=$((end_ns - start_ns)) -v rss="$rss" -v hwm="$hwm" -v sent="$sent" \
  'BEGIN { printf "steady 10s: cpu_percent_of_one_core=%.3f rss_kb=%d peak_rss_kb=%d batches_sent=%d over %.0f s\n", \
           100 * t / hz / (ns / 1e9), rss, hwm, sent, ns / 1e9 }'

PY=/usr/bin/python3
if "$PY" -c 'import psutil, requests' 2>/dev/null; then
  "$PY" bench/psutil_reporter.py "$BASE" bench-agent "$DEVICE_KEY" 10 >> "$WORK/peer.log" 2>&1 &
  PEER=$!
  sleep 5
  start_ticks=$(cpu_ticks "$PEER"); start_ns=$(date +%s%N)
  sleep "$OBSERVE"
  end_ticks=$(cpu_ticks "$PEER"); end_ns=$(date +%s%N)
  rss=$(awk '/VmRSS/ {print $2}' "/proc/$PEER/status"); hwm=$(awk '/VmHWM/ {print $2}' "/proc/$PEER/status")
  kill "$PEER"; wait "$PEER" 2>/dev/null || true
  awk -v t=$((end_ticks - start_ticks)) -v hz="$TICK" -v ns=$((end_ns - start_ns)) -v rss="$rss" -v hwm="$hwm" \
    'BEGIN { printf "psutil reporter 10s: cpu_percent_of_one_core=%.3f rss_kb=%d peak_rss_kb=%d over %.0f s\n", \
             100 * t / hz / (ns / 1e9), rss, hwm, ns / 1e9 }'
else
  echo "SKIPPED the psutil reporter: apt-get install python3-psutil python3-requests"
fi

# 2. A backlog: 360 batches queued with the server stopped (read every 20 ms, so it takes
#    seconds rather than an hour; each batch is a full reading, as at 10 s).
kill "$SERVER"; wait "$SERVER" 2>/dev/null || true
before=$(counter collected)
agent --interval 20ms
while [ $(( $(counter collected) - before )) -lt 360 ]; do sleep 0.2; done
kill -TERM "$AGENT"; wait "$AGENT" || true
queued=$(counter queued_batches)
HOMEPOT_ADMIN_KEY="$KEY" RATE_LIMIT_REQUESTS_PER_MINUTE=0 SMART_FILTER_ENABLED=false RUST_LOG=warn \
  "$BIN" serve --bind "127.0.0.1:$PORT" --database-url "sqlite://$WORK/homepot.db" >> "$WORK/server.log" 2>&1 &
SERVER=$!
for _ in $(seq 1 100); do curl -sf "$BASE/health" >/dev/null && break; sleep 0.1; done
start_ns=$(date +%s%N)
agent --interval 1h
while [ "$(counter queued_batches)" -gt 0 ]; do sleep 0.05; done
end_ns=$(date +%s%N)
kill -TERM "$AGENT"; wait "$AGENT" || true
awk -v q="$queued" -v ns=$((end_ns - start_ns)) \
  'BEGIN { printf "drain: batches=%d seconds=%.2f batches_per_s=%.0f\n", q, ns / 1e9, q / (ns / 1e9) }'
echo "sent=$(counter sent) dropped=$(counter dropped) rejected=$(counter rejected)"
