#!/usr/bin/env bash
# Health-check ingest over HTTP into a fresh database, measured with wrk.
#   bench/health_load.sh [DURATION_SECONDS] [CONNECTIONS] [DATABASE_URL]
# Needs a release build (cargo build --release --bin homepot) and wrk (apt-get install wrk).
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/server.sh
DURATION="${1:-20}"
CONNECTIONS="${2:-64}"
PORT="${BENCH_PORT:-18080}"
DEVICES="${BENCH_DEVICES:-100}"
command -v wrk >/dev/null || { echo "install wrk: apt-get install wrk" >&2; exit 1; }
start_server "$PORT" "${3:-}"

PREFIX="bench-pos-$(date +%s)"
# Each device's own key, one per line, for BENCH_DEVICE_KEYS=1 (as a real fleet sends them).
: > "$WORK/keys.txt"
for i in $(seq 1 "$DEVICES"); do
  curl -sf -X POST "http://127.0.0.1:$PORT/api/v1/devices" -H "X-API-Key: $KEY" \
    -H "Content-Type: application/json" -d "{\"device_id\": \"$(printf '%s-%04d' "$PREFIX" "$i")\"}" \
    | grep -o '"api_key":"[^"]*"' | cut -d'"' -f4 >> "$WORK/keys.txt"
done
echo "idle RSS: $(rss_kb) kB"
BENCH_KEY="$KEY" BENCH_KEYS_FILE="$WORK/keys.txt" BENCH_DEVICES="$DEVICES" BENCH_PREFIX="$PREFIX" \
  wrk -t2 -c"$CONNECTIONS" -d"${DURATION}s" --latency -s bench/health.lua "http://127.0.0.1:$PORT" | tee "$WORK/wrk.txt"
echo "RSS after load: $(rss_kb) kB"
sleep 1
echo "request log: $(curl -sf "http://127.0.0.1:$PORT/api/v1/stats" | grep -o '"analytics_requests_[a-z]*":[0-9]*' | tr '\n' ' ')"
curl -sf -H "X-API-Key: $KEY" "http://127.0.0.1:$PORT/api/v1/devices/$PREFIX-0001/health?hours=1&limit=1" \
  | head -c 200; echo
