#!/usr/bin/env bash
# Prometheus remote write ingest, homepot beside VictoriaMetrics, one after the other on the
# same body and the same wrk settings; prints samples/s for each and the ratio.
#   bench/remote_write_load.sh [DURATION_SECONDS] [CONNECTIONS] [SERIES] [SAMPLES_PER_SERIES]
# Needs a release build (cargo build --release --bin homepot), wrk and, for the comparison,
# Debian's victoria-metrics (skipped with a notice without it). homepot runs as the README
# starts it (SmartDataFilter on) unless BENCH_FILTER=false; every 204 is committed.
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/server.sh
DURATION="${1:-15}"
CONNECTIONS="${2:-4}"
SERIES="${3:-1000}"
PER_SERIES="${4:-10}"
PORT="${BENCH_PORT:-18082}"
command -v wrk >/dev/null || { echo "install wrk: apt-get install wrk" >&2; exit 1; }
export BENCH_FILTER="${BENCH_FILTER:-true}"
start_server "$PORT" "" --max-body-bytes 16777216
BODY="$WORK/body.bin"
cargo run -q --release -p homepot-examples --example remote_write_body -- "$BODY" "$SERIES" "$PER_SERIES"
export BENCH_BODY="$BODY" BENCH_SAMPLES=$((SERIES * PER_SERIES))

run() { # NAME URL KEY
  BENCH_KEY="$3" wrk -t2 -c"$CONNECTIONS" -d"${DURATION}s" --latency --timeout 30s -s bench/remote_write.lua "$2" \
    | grep RESULT | sed "s/^RESULT/$1/" | tee -a "$WORK/results.txt"
}

run homepot "http://127.0.0.1:$PORT/api/v1/write" "$KEY"
echo "homepot RSS after load: $(rss_kb) kB"
kill "$SERVER"; wait "$SERVER" 2>/dev/null || true

if command -v victoria-metrics >/dev/null; then
  VM_PORT=$((PORT + 1))
  victoria-metrics -storageDataPath="$WORK/vm" -httpListenAddr="127.0.0.1:$VM_PORT" -loggerLevel=ERROR >/dev/null 2>&1 &
  VM=$!
  trap 'kill $VM 2>/dev/null; kill $SERVER 2>/dev/null; rm -rf "$WORK"' EXIT
  for _ in $(seq 1 100); do curl -sf "http://127.0.0.1:$VM_PORT/health" >/dev/null && break; sleep 0.1; done
  run victoria-metrics "http://127.0.0.1:$VM_PORT/api/v1/write" ""
  kill "$VM"; wait "$VM" 2>/dev/null || true
  awk '{ for (i = 1; i <= NF; i++) if ($i ~ /^samples_per_s=/) { split($i, kv, "="); rate[$1] = kv[2] } }
       END { if (rate["victoria-metrics"] > 0) printf "ratio homepot/victoria-metrics: %.2f\n", rate["homepot"] / rate["victoria-metrics"] }' \
    "$WORK/results.txt"
else
  echo "SKIPPED victoria-metrics: apt-get install victoria-metrics for the side-by-side figure"
fi
