#!/usr/bin/env bash
# Health checks from DEVICES devices (each with its own key) on PostgreSQL: one instance
# answering wrk directly, then three instances on the same database behind nginx as a
# round-robin proxy, in the default configuration (the rate limit raised so that one address
# can send for all). Prints req/s, latency, and where the CPU went: each instance, PostgreSQL
# (every postgres process) and nginx.
#   BENCH_POSTGRES=postgres://postgres@127.0.0.1:5432/test bench/balanced_load.sh [DURATION_SECONDS] [DEVICES]
# Needs a release build, wrk, nginx and psql. BENCH_BIN picks another binary.
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/server.sh
DURATION="${1:-20}"
DEVICES="${2:-2000}"
PG="${BENCH_POSTGRES:?set BENCH_POSTGRES to a PostgreSQL server URL}"
BIN="${BENCH_BIN:-target/release/homepot}"
NGINX="${BENCH_NGINX:-/usr/sbin/nginx}"
WORK="$(mktemp -d)"
chmod 777 "$WORK"
ADMIN="admin-$(date +%s%N)"
DB="homepot_balanced_$(date +%s)"
PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  psql "$PG" -qc "DROP DATABASE IF EXISTS $DB WITH (FORCE)" >/dev/null 2>&1 || true
  if [ -n "${BENCH_KEEP_LOGS:-}" ]; then cp "$WORK"/*.log "$BENCH_KEEP_LOGS"/ 2>/dev/null || true; fi
  rm -rf "$WORK"
}
trap cleanup EXIT
psql "$PG" -qc "CREATE DATABASE $DB"
URL="${PG%/*}/$DB"

# serve N PORT: an instance named balanced-N; its pid in INSTANCE.
serve() {
  HOMEPOT_ADMIN_KEY="$ADMIN" HOMEPOT_INSTANCE_ID="balanced-$1" RATE_LIMIT_REQUESTS_PER_MINUTE=600000 \
    RATE_LIMIT_BURST=10000 "$BIN" serve --bind "127.0.0.1:$2" --database-url "$URL" > "$WORK/server-$1.log" 2>&1 &
  INSTANCE=$!
  PIDS+=("$INSTANCE")
  for _ in $(seq 1 100); do curl -sf "http://127.0.0.1:$2/health" >/dev/null && return 0; sleep 0.1; done
  echo "instance $1 did not start: $(cat "$WORK/server-$1.log")" >&2
  exit 1
}

postgres_cpu() {
  local total=0
  for pid in $(pgrep -x postgres || true); do
    total=$(awk -v t="$total" -v s="$(cpu_seconds "$pid" 2>/dev/null || echo 0)" 'BEGIN { print t + s }')
  done
  echo "$total"
}

# run NAME URL PID...: one wrk pass at URL, then the CPU each named pid used, PostgreSQL's too.
run() {
  local name="$1" url="$2"
  shift 2
  local before=() pg_before after pg_after result
  for pid in "$@"; do before+=("$(cpu_seconds "$pid")"); done
  pg_before=$(postgres_cpu)
  result=$(BENCH_KEY="$ADMIN" BENCH_KEYS_FILE="$WORK/keys.txt" BENCH_DEVICES="$DEVICES" BENCH_PREFIX=lb \
    BENCH_DEVICE_KEYS=1 wrk -t2 -c64 -d"${DURATION}s" --latency -s bench/health.lua "$url" | grep RESULT)
  pg_after=$(postgres_cpu)
  echo "$result" | sed "s/^RESULT/$name/" | tr -d '\n'
  local i=0
  for pid in "$@"; do
    after=$(cpu_seconds "$pid")
    awk -v a="$after" -v b="${before[$i]}" -v n="$pid" 'BEGIN { printf " cpu_s[%s]=%.1f", n, a - b }'
    i=$((i + 1))
  done
  awk -v a="$pg_after" -v b="$pg_before" 'BEGIN { printf " cpu_s[postgres]=%.1f\n", a - b }'
}

PORTS=(18131 18132 18133)
PROXY=18130
serve 1 "${PORTS[0]}"
FIRST=$INSTANCE
seq 1 "$DEVICES" | xargs -P 8 -I{} sh -c 'printf "%s %s\n" {} "$(curl -sf -X POST "http://127.0.0.1:'"${PORTS[0]}"'/api/v1/devices" \
  -H "X-API-Key: '"$ADMIN"'" -H "Content-Type: application/json" -d "{\"device_id\": \"$(printf "lb-%04d" {})\"}" \
  | grep -o "\"api_key\":\"[^\"]*\"" | cut -d\" -f4)"' | sort -n | cut -d' ' -f2 > "$WORK/keys.txt"

echo "one instance, no proxy ($DEVICES devices, ${DURATION}s, wrk -t2 -c64, PostgreSQL over TCP):"
run one "http://127.0.0.1:${PORTS[0]}" "$FIRST"

serve 2 "${PORTS[1]}"
SECOND=$INSTANCE
serve 3 "${PORTS[2]}"
THIRD=$INSTANCE
cat > "$WORK/nginx.conf" <<EOF
daemon off; master_process off; pid $WORK/nginx.pid; error_log $WORK/nginx-error.log;
events { worker_connections 4096; }
http {
  access_log off; client_body_temp_path $WORK/body; proxy_temp_path $WORK/proxy;
  fastcgi_temp_path $WORK/fastcgi; uwsgi_temp_path $WORK/uwsgi; scgi_temp_path $WORK/scgi;
  upstream homepot { server 127.0.0.1:${PORTS[0]}; server 127.0.0.1:${PORTS[1]}; server 127.0.0.1:${PORTS[2]}; keepalive 64; }
  server { listen 127.0.0.1:$PROXY; location / { proxy_pass http://homepot; proxy_http_version 1.1; proxy_set_header Connection ""; } }
}
EOF
"$NGINX" -p "$WORK" -e "$WORK/nginx-error.log" -c "$WORK/nginx.conf" &
NGINX_PID=$!
PIDS+=("$NGINX_PID")
for _ in $(seq 1 50); do curl -sf "http://127.0.0.1:$PROXY/health" >/dev/null && break; sleep 0.1; done
echo "three instances behind nginx (one worker process), same database, same load:"
run three "http://127.0.0.1:$PROXY" "$FIRST" "$SECOND" "$THIRD" "$NGINX_PID"
echo "pids: instances $FIRST $SECOND $THIRD, nginx $NGINX_PID"
for n in 1 2 3; do
  echo "instance $n: answered 503: $(grep -c 'status=503' "$WORK/server-$n.log" || true); errors: $(grep -c ' ERROR ' "$WORK/server-$n.log" || true)"
done
# Bytes per row on disk (table, indexes and TOAST), once the last minutes' rollups are merged.
sleep 75
psql "$URL" -qAt -F ' ' -c "VACUUM ANALYZE" -c "SELECT relname, n_live_tup, pg_total_relation_size(relid),
  round(pg_total_relation_size(relid)::numeric / greatest(n_live_tup, 1)) FROM pg_stat_user_tables
  WHERE relname IN ('health_checks', 'rollup_buckets', 'rollup_series', 'device_latest', 'device_state_history')
  ORDER BY relname" | awk '{ printf "%s: %s rows, %.1f MB, %s bytes per row\n", $1, $2, $3 / 1048576, $4 }'
psql "$URL" -qAt -F ' ' -c "SELECT n_tup_upd, n_tup_hot_upd FROM pg_stat_user_tables WHERE relname = 'device_latest'" \
  | awk '{ printf "device_latest: %s updates, %s of them HOT\n", $1, $2 }'
