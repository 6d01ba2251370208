#!/usr/bin/env bash
# Health-check ingest over HTTP into a fresh database, measured with wrk.
#   bench/health_load.sh [DURATION_SECONDS] [CONNECTIONS] [DATABASE_URL]
# Needs a release build (cargo build --release --bin homepot) and wrk (apt-get install wrk).
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION="${1:-20}"
CONNECTIONS="${2:-64}"
WORK="$(mktemp -d)"
DATABASE_URL="${3:-sqlite://$WORK/bench.db}"
PORT="${BENCH_PORT:-18080}"
DEVICES="${BENCH_DEVICES:-100}"
KEY="bench-admin-$(date +%s%N)"
BIN=target/release/homepot
[ -x "$BIN" ] || { echo "build first: cargo build --release --bin homepot" >&2; exit 1; }
command -v wrk >/dev/null || { echo "install wrk: apt-get install wrk" >&2; exit 1; }

# One client IP sends everything: rate limiting would measure the limiter, so it is off.
HOMEPOT_ADMIN_KEY="$KEY" RATE_LIMIT_REQUESTS_PER_MINUTE=0 RUST_LOG=warn "$BIN" serve --bind "127.0.0.1:$PORT" --database-url "$DATABASE_URL" \
  > "$WORK/server.log" 2>&1 &
SERVER=$!
trap 'kill $SERVER 2>/dev/null; wait $SERVER 2>/dev/null; rm -rf "$WORK"' EXIT
for _ in $(seq 1 100); do curl -sf "http://127.0.0.1:$PORT/health" >/dev/null && break; sleep 0.1; done

PREFIX="bench-pos-$(date +%s)"
for i in $(seq 1 "$DEVICES"); do
  curl -sf -o /dev/null -X POST "http://127.0.0.1:$PORT/api/v1/devices" -H "X-API-Key: $KEY" \
    -H "Content-Type: application/json" -d "{\"device_id\": \"$(printf '%s-%04d' "$PREFIX" "$i")\"}"
done
rss_kb() { awk '/VmRSS/ {print $2}' "/proc/$SERVER/status"; }
echo "idle RSS: $(rss_kb) kB"
BENCH_KEY="$KEY" BENCH_DEVICES="$DEVICES" BENCH_PREFIX="$PREFIX" \
  wrk -t2 -c"$CONNECTIONS" -d"${DURATION}s" --latency -s bench/health.lua "http://127.0.0.1:$PORT" | tee "$WORK/wrk.txt"
echo "RSS after load: $(rss_kb) kB"
curl -sf -H "X-API-Key: $KEY" "http://127.0.0.1:$PORT/api/v1/devices/$PREFIX-0001/health?hours=1&limit=1" \
  | head -c 200; echo
