#!/usr/bin/env bash
# PromQL range queries, homepot beside VictoriaMetrics on the same data: 1,000 series with a
# sample a minute for 24 hours (1.44 M samples) are remote-written to both, then the same
# query_range at a 60 s step over the whole day runs 5 times on each; prints the median times
# and the ratio. homepot runs as the README starts it.
#   bench/query_compare.sh [SERIES] [HOURS]
# Needs a release build (cargo build --release --bin homepot) and Debian's victoria-metrics.
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/server.sh
SERIES="${1:-1000}"
HOURS="${2:-24}"
PORT="${BENCH_PORT:-18084}"
VM_PORT=$((PORT + 1))
command -v victoria-metrics >/dev/null || { echo "install victoria-metrics" >&2; exit 1; }
export BENCH_FILTER="${BENCH_FILTER:-true}"
start_server "$PORT" "" --max-body-bytes 67108864
victoria-metrics -storageDataPath="$WORK/vm" -httpListenAddr="127.0.0.1:$VM_PORT" -loggerLevel=ERROR >/dev/null 2>&1 &
VM=$!
trap 'kill $VM 2>/dev/null; kill $SERVER 2>/dev/null; wait 2>/dev/null; rm -rf "$WORK"' EXIT
for _ in $(seq 1 100); do curl -sf "http://127.0.0.1:$VM_PORT/health" >/dev/null && break; sleep 0.1; done
SAMPLES=$((HOURS * 60))
cargo run -q --release -p homepot-examples --example remote_write_body -- "$WORK/day" "$SERIES" "$SAMPLES" 60 "$HOURS"
post() { # URL FILE [KEY]
  curl -sf -o /dev/null -X POST "$1" ${3:+-H "Authorization: Bearer $3"} -H "Content-Type: application/x-protobuf" \
    -H "Content-Encoding: snappy" -H "X-Prometheus-Remote-Write-Version: 0.1.0" --data-binary "@$2"
}
for chunk in $(seq 0 $((HOURS - 1))); do
  post "http://127.0.0.1:$PORT/api/v1/write" "$WORK/day.$chunk" "$KEY"
  post "http://127.0.0.1:$VM_PORT/api/v1/write" "$WORK/day.$chunk"
done
curl -sf "http://127.0.0.1:$VM_PORT/internal/force_flush" >/dev/null || true
# The rollups gathered in memory reach storage within the flush interval (10 s).
sleep 12
END=$(date +%s)
START=$((END - HOURS * 3600))
QUERY='{__name__=~"node_metric_.*"}'
time_query() { # NAME BASE [KEY]
  local times=()
  for _ in 1 2 3 4 5; do
    times+=("$(curl -s -o "$WORK/answer.json" -w '%{time_total}' ${3:+-H "Authorization: Bearer $3"} \
      --data-urlencode "query=$QUERY" --data-urlencode "start=$START" --data-urlencode "end=$END" \
      --data-urlencode "step=60" "$2/api/v1/query_range")")
  done
  local series points
  series=$(python3 -c "import json,sys; d=json.load(open(sys.argv[1])); print(len(d['data']['result']))" "$WORK/answer.json")
  points=$(python3 -c "import json,sys; d=json.load(open(sys.argv[1])); print(sum(len(s['values']) for s in d['data']['result']))" "$WORK/answer.json")
  local median
  median=$(printf '%s\n' "${times[@]}" | sort -n | sed -n 3p)
  echo "$1 query_range median_s=$median runs_s=${times[*]} series=$series points=$points" | tee -a "$WORK/results.txt"
}
time_query homepot "http://127.0.0.1:$PORT" "$KEY"
time_query victoria-metrics "http://127.0.0.1:$VM_PORT"
awk '{ for (i = 1; i <= NF; i++) if ($i ~ /^median_s=/) { split($i, kv, "="); t[$1] = kv[2] } }
     END { if (t["victoria-metrics"] > 0) printf "ratio homepot/victoria-metrics time: %.1f\n", t["homepot"] / t["victoria-metrics"] }' \
  "$WORK/results.txt"
