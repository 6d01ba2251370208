#!/usr/bin/env bash
# Health checks from a fleet of DEVICES devices, each with its own key, in the default
# configuration (as the README starts the server; the rate limit raised so that one address
# can send for all): two passes of DURATION seconds on one fresh server. The first meets every
# device for the first time (each one's state becomes online, a state change stored before
# its check is answered); the second is the steady fleet.
#   bench/fleet_load.sh [DURATION_SECONDS] [DEVICES]
# Needs a release build and wrk. BENCH_BIN picks another binary (a before/after comparison).
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION="${1:-15}"
DEVICES="${2:-10000}"
PORT="${BENCH_PORT:-18110}"
BIN="${BENCH_BIN:-target/release/homepot}"
WORK="$(mktemp -d)"
ADMIN="admin-$(date +%s%N)"
HOMEPOT_ADMIN_KEY="$ADMIN" RATE_LIMIT_REQUESTS_PER_MINUTE=600000 RATE_LIMIT_BURST=10000 \
  "$BIN" serve --bind "127.0.0.1:$PORT" --database-url "sqlite://$WORK/homepot.db" > "$WORK/server.log" 2>&1 &
SERVER=$!
trap 'kill $SERVER 2>/dev/null; wait $SERVER 2>/dev/null; rm -rf "$WORK"' EXIT
for _ in $(seq 1 100); do curl -sf "http://127.0.0.1:$PORT/health" >/dev/null && break; sleep 0.1; done
seq 1 "$DEVICES" | xargs -P 8 -I{} sh -c 'printf "%s %s\n" {} "$(curl -sf -X POST "http://127.0.0.1:'"$PORT"'/api/v1/devices" \
  -H "X-API-Key: '"$ADMIN"'" -H "Content-Type: application/json" -d "{\"device_id\": \"$(printf "fleet-%04d" {})\"}" \
  | grep -o "\"api_key\":\"[^\"]*\"" | cut -d\" -f4)"' | sort -n | cut -d' ' -f2 > "$WORK/keys.txt"
for pass in first steady; do
  BENCH_KEY="$ADMIN" BENCH_KEYS_FILE="$WORK/keys.txt" BENCH_DEVICES="$DEVICES" BENCH_PREFIX=fleet BENCH_DEVICE_KEYS=1 \
    wrk -t2 -c64 -d"${DURATION}s" --latency -s bench/health.lua "http://127.0.0.1:$PORT" | grep RESULT | sed "s/^RESULT/$pass/"
done
sleep 6
echo "answered 503: $(grep -c 'status=503' "$WORK/server.log" || true); database locked: $(grep -c 'database is locked' "$WORK/server.log" || true)"
