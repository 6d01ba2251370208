#!/usr/bin/env bash
# Line protocol ingest through the InfluxDB-compatible /write, measured with wrk.
#   bench/write_load.sh [DURATION_SECONDS] [CONNECTIONS] [LINES_PER_BATCH] [DATABASE_URL]
# Needs a release build (cargo build --release --bin homepot) and wrk (apt-get install wrk).
# Every 204 means the batch was committed: these are durable points per second.
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/server.sh
DURATION="${1:-20}"
CONNECTIONS="${2:-4}"
LINES="${3:-5000}"
PORT="${BENCH_PORT:-18081}"
command -v wrk >/dev/null || { echo "install wrk: apt-get install wrk" >&2; exit 1; }
start_server "$PORT" "${4:-}" --max-body-bytes 16777216

echo "idle RSS: $(rss_kb) kB"
before=$(cpu_seconds "$SERVER")
BENCH_KEY="$KEY" BENCH_LINES="$LINES" wrk -t2 -c"$CONNECTIONS" -d"${DURATION}s" --latency --timeout 30s \
  -s bench/write.lua "http://127.0.0.1:$PORT" | tee "$WORK/wrk.txt" | grep -E "RESULT|Requests/sec|Non-2xx"
after=$(cpu_seconds "$SERVER")
# Server CPU (user + system, all threads) per million field values stored.
sed -nE 's/^RESULT batches=([0-9]+) non2xx=([0-9]+).*/\1 \2/p' "$WORK/wrk.txt" | awk -v a="$after" -v b="$before" -v l="$LINES" \
  '{ printf "server_cpu_s=%.2f cpu_s_per_million_field_values=%.3f\n", a - b, (a - b) * 1e6 / (($1 - $2) * l * 5) }' 
echo "RSS after load: $(rss_kb) kB"
curl -sf -H "X-API-Key: $KEY" "http://127.0.0.1:$PORT/api/v1/stats"; echo
