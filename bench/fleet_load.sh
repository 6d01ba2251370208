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
source bench/server.sh
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
# Each pass also prints the server's CPU time per 1,000 checks (user + system, all threads).
for pass in first steady; do
  before=$(cpu_seconds "$SERVER")
  result=$(BENCH_KEY="$ADMIN" BENCH_KEYS_FILE="$WORK/keys.txt" BENCH_DEVICES="$DEVICES" BENCH_PREFIX=fleet BENCH_DEVICE_KEYS=1 \
    wrk -t2 -c64 -d"${DURATION}s" --latency -s bench/health.lua "http://127.0.0.1:$PORT" | grep RESULT)
  after=$(cpu_seconds "$SERVER")
  requests=$(echo "$result" | sed -E 's/.*requests=([0-9]+).*/\1/')
  echo "$result" | sed "s/^RESULT/$pass/" | tr -d '\n'
  awk -v a="$after" -v b="$before" -v n="$requests" 'BEGIN { printf " server_cpu_s=%.2f cpu_s_per_1000_checks=%.3f\n", a - b, (a - b) * 1000 / n }'
done
sleep 6
echo "answered 503: $(grep -c 'status=503' "$WORK/server.log" || true); database locked: $(grep -c 'database is locked' "$WORK/server.log" || true)"
