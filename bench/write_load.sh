#!/usr/bin/env bash
# Line protocol ingest through the InfluxDB-compatible /write, measured with wrk.
#   bench/write_load.sh [DURATION_SECONDS] [CONNECTIONS] [LINES_PER_BATCH] [DATABASE_URL]
# Needs a release build (cargo build --release --bin homepot) and wrk (apt-get install wrk).
# Every 204 means the batch was committed: these are durable points per second.
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION="${1:-20}"
CONNECTIONS="${2:-4}"
LINES="${3:-5000}"
WORK="$(mktemp -d)"
DATABASE_URL="${4:-sqlite://$WORK/bench.db}"
PORT="${BENCH_PORT:-18081}"
KEY="bench-admin-$(date +%s%N)"
BIN=target/release/homepot
[ -x "$BIN" ] || { echo "build first: cargo build --release --bin homepot" >&2; exit 1; }
command -v wrk >/dev/null || { echo "install wrk: apt-get install wrk" >&2; exit 1; }

# One client IP sends everything: rate limiting would measure the limiter, so it is off.
HOMEPOT_ADMIN_KEY="$KEY" RATE_LIMIT_REQUESTS_PER_MINUTE=0 HOMEPOT_MAX_BODY_BYTES=16777216 RUST_LOG=warn \
  "$BIN" serve --bind "127.0.0.1:$PORT" --database-url "$DATABASE_URL" > "$WORK/server.log" 2>&1 &
SERVER=$!
trap 'kill $SERVER 2>/dev/null; wait $SERVER 2>/dev/null; rm -rf "$WORK"' EXIT
for _ in $(seq 1 100); do curl -sf "http://127.0.0.1:$PORT/health" >/dev/null && break; sleep 0.1; done
rss_kb() { awk '/VmRSS/ {print $2}' "/proc/$SERVER/status"; }
echo "idle RSS: $(rss_kb) kB"
BENCH_KEY="$KEY" BENCH_LINES="$LINES" wrk -t2 -c"$CONNECTIONS" -d"${DURATION}s" --latency --timeout 30s \
  -s bench/write.lua "http://127.0.0.1:$PORT" | tee "$WORK/wrk.txt" | grep -E "RESULT|Requests/sec|Non-2xx"
echo "RSS after load: $(rss_kb) kB"
curl -sf -H "X-API-Key: $KEY" "http://127.0.0.1:$PORT/api/v1/stats"; echo
