#!/usr/bin/env bash
# An export over HTTP from an existing database, timed with curl while the server's RSS is
# sampled every 20 ms.
#   bench/export_load.sh DATABASE_URL [EXPORT_QUERY]
# EXPORT_QUERY defaults to the read_side benchmark's 5M points: kind=metrics, first 15 days.
# Retention is off, so the server deletes nothing from the database it is given.
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/server.sh
DATABASE="${1:?database URL, e.g. sqlite://target/bench-data/read-side-YYYYMMDD.db}"
QUERY="${2:-}"
PORT="${BENCH_PORT:-18081}"
start_server "$PORT" "$DATABASE" --raw-retention-days 0 --rollup-1m-retention-days 0 \
  --rollup-1h-retention-days 0 --analytics-retention-days 0
if [ -z "$QUERY" ]; then
  # The benchmark's points span 30 days ending when it was built; the file's date names the day.
  built="$(basename "$DATABASE" .db | grep -o '[0-9]\{8\}$' || date +%Y%m%d)"
  end="$(date -d "$built" +%s)"
  QUERY="kind=metrics&format=csv&from=$((end - 30 * 86400))&to=$((end - 15 * 86400))"
fi
idle="$(rss_kb)"
echo "idle RSS: $idle kB"
( peak=0; while kill -0 "$SERVER" 2>/dev/null; do
    now="$(rss_kb)"; [ "$now" -gt "$peak" ] && peak="$now" && echo "$peak" > "$WORK/peak"; sleep 0.02
  done ) &
SAMPLER=$!
start="$(date +%s.%N)"
rows="$(curl -sf -H "X-API-Key: $KEY" "http://127.0.0.1:$PORT/api/v1/export?$QUERY" | tee >(wc -c > "$WORK/bytes") | wc -l)"
end_time="$(date +%s.%N)"
kill "$SAMPLER" 2>/dev/null || true
peak="$(cat "$WORK/peak" 2>/dev/null || echo "$idle")"
sleep 0.2
awk -v rows="$rows" -v bytes="$(cat "$WORK/bytes")" -v t0="$start" -v t1="$end_time" \
  'BEGIN { s = t1 - t0; printf "exported %d lines (%d bytes) in %.2f s: %.0f rows/s\n", rows, bytes, s, rows / s }'
echo "RSS: idle $idle kB, peak $peak kB, growth $(( (peak - idle) / 1024 )) MB"
