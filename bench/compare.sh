#!/usr/bin/env bash
# homepot beside InfluxDB and VictoriaMetrics on the same generated loads, one after the other
# in one run, with the ratios at the end.
#   bench/compare.sh [DURATION_SECONDS]
# Loads (current timestamps throughout):
#   write-400     bench/write.lua, 5,000-line batches over 400 series, 4 connections
#   write-100k    the same over 100,000 series
#   health-10k    health checks from 10,000 devices, each with its own key, 64 connections
# homepot runs twice per load: `default` as the README starts it (INFO logging, request log,
# rate limiting, SmartDataFilter on; the limit raised to 600,000 requests a minute per key so
# that the limiter runs but refuses nothing: the loads come from one address; and the live
# view's series limits raised to 250,000 for the 100k load), and `durable`
# as the other load scripts run it (filter off: every point stored; logging at WARN). Every
# answer counted is a 2xx. The health load also runs against the bare hyper ceiling
# (examples/http_ceiling.rs), and, with BENCH_POSTGRES set to a server's URL
# (postgres://postgres@127.0.0.1:5432/test), against homepot's default configuration on a
# fresh PostgreSQL database over TCP. A peer that is not installed is skipped with a notice
# (Debian: influxdb, victoria-metrics).
# Needs: cargo build --release --bin homepot; cargo build --release -p homepot-examples
# --example http_ceiling; wrk; curl; python3.
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION="${1:-15}"
PORT="${BENCH_PORT:-18100}"
BIN="${BENCH_BIN:-target/release/homepot}"
CEILING="${BENCH_CEILING_BIN:-target/release/examples/http_ceiling}"
DEVICES="${BENCH_DEVICES:-10000}"
for tool in wrk curl python3; do command -v "$tool" >/dev/null || { echo "install $tool" >&2; exit 1; }; done
[ -x "$BIN" ] || { echo "build first: cargo build --release --bin homepot" >&2; exit 1; }
WORK="$(mktemp -d)"
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$WORK"; }
trap cleanup EXIT
RESULTS="$WORK/results.txt"
: > "$RESULTS"
ADMIN="admin-$(date +%s%N)"

wait_http() { for _ in $(seq 1 200); do curl -sf "$1" >/dev/null && return 0; sleep 0.1; done; echo "no answer from $1" >&2; exit 1; }
stop() { kill "$1" 2>/dev/null || true; wait "$1" 2>/dev/null || true; }

homepot() { # MODE (default|durable) [DATABASE_URL] -> SERVER
  local url="${2:-sqlite://$WORK/homepot-$1-$RANDOM.db}"
  # The live view's series limits (100,000, and 25,000 per key) would refuse the 100k load.
  export HOMEPOT_METRICS_MAX_SERIES=250000 HOMEPOT_METRICS_MAX_SERIES_PER_KEY=250000
  if [ "$1" = default ]; then
    HOMEPOT_ADMIN_KEY="$ADMIN" RATE_LIMIT_REQUESTS_PER_MINUTE=600000 RATE_LIMIT_BURST=10000 \
      "$BIN" serve --bind "127.0.0.1:$PORT" --database-url "$url" --max-body-bytes 16777216 > "$WORK/homepot.log" 2>&1 &
  else
    HOMEPOT_ADMIN_KEY="$ADMIN" RATE_LIMIT_REQUESTS_PER_MINUTE=0 SMART_FILTER_ENABLED=false RUST_LOG=warn \
      "$BIN" serve --bind "127.0.0.1:$PORT" --database-url "$url" --max-body-bytes 16777216 > "$WORK/homepot.log" 2>&1 &
  fi
  SERVER=$!; PIDS+=("$SERVER")
  wait_http "http://127.0.0.1:$PORT/health"
}

write_load() { # LABEL SERIES URL_BASE KEY
  BENCH_KEY="$4" BENCH_LINES=5000 BENCH_SERIES="$2" BENCH_NOW=1 \
    wrk -t2 -c4 -d"${DURATION}s" --latency --timeout 30s -s bench/write.lua "$3" \
    | grep RESULT | sed "s/^RESULT/$1/" | tee -a "$RESULTS"
}

health_load() { # LABEL URL_BASE
  BENCH_KEY="$ADMIN" BENCH_KEYS_FILE="$WORK/keys.txt" BENCH_DEVICES="$DEVICES" BENCH_PREFIX=cmp BENCH_DEVICE_KEYS=1 \
    wrk -t2 -c64 -d"${DURATION}s" --latency -s bench/health.lua "$2" \
    | grep RESULT | sed "s/^RESULT/$1/" | tee -a "$RESULTS"
}

register_fleet() { # registers cmp-0001... with their own keys into keys.txt, in order
  seq 1 "$DEVICES" | xargs -P 8 -I{} sh -c 'printf "%s %s\n" {} "$(curl -sf -X POST "http://127.0.0.1:'"$PORT"'/api/v1/devices" \
    -H "X-API-Key: '"$ADMIN"'" -H "Content-Type: application/json" -d "{\"device_id\": \"$(printf "cmp-%04d" {})\"}" \
    | grep -o "\"api_key\":\"[^\"]*\"" | cut -d\" -f4)"' \
    | sort -n | cut -d' ' -f2 > "$WORK/keys.txt"
  [ "$(grep -c hpk_ "$WORK/keys.txt")" -eq "$DEVICES" ] || { echo "fleet registration failed" >&2; exit 1; }
}

echo "== homepot"
for mode in default durable; do
  homepot "$mode"
  write_load "homepot-$mode write-400" 400 "http://127.0.0.1:$PORT" "$ADMIN"
  stop "$SERVER"; homepot "$mode"
  write_load "homepot-$mode write-100k" 100000 "http://127.0.0.1:$PORT" "$ADMIN"
  stop "$SERVER"; homepot "$mode"
  register_fleet
  health_load "homepot-$mode health-10k" "http://127.0.0.1:$PORT"
  stop "$SERVER"
done

echo "== homepot on PostgreSQL over TCP"
if [ -n "${BENCH_POSTGRES:-}" ] && command -v psql >/dev/null; then
  pgdb="homepot_compare_$(date +%s)"
  psql "$BENCH_POSTGRES" -qc "CREATE DATABASE $pgdb"
  homepot default "${BENCH_POSTGRES%/*}/$pgdb"
  register_fleet
  health_load "homepot-postgres health-10k" "http://127.0.0.1:$PORT"
  stop "$SERVER"
  psql "$BENCH_POSTGRES" -qc "DROP DATABASE $pgdb WITH (FORCE)"
else
  echo "SKIPPED PostgreSQL: set BENCH_POSTGRES=postgres://postgres@127.0.0.1:5432/test"
fi

echo "== bare hyper ceiling"
if [ -x "$CEILING" ]; then
  "$CEILING" "127.0.0.1:$PORT" 2>/dev/null & CEIL=$!; PIDS+=("$CEIL")
  for _ in $(seq 1 50); do (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && break; sleep 0.1; done
  health_load "ceiling health-10k" "http://127.0.0.1:$PORT"
  stop "$CEIL"
else
  echo "SKIPPED the ceiling: cargo build --release -p homepot-examples --example http_ceiling"
fi

echo "== InfluxDB"
if command -v influxd >/dev/null; then
  mkdir -p "$WORK/influx"
  cat > "$WORK/influx.conf" <<EOF
reporting-disabled = true
bind-address = "127.0.0.1:$((PORT + 2))"
[meta]
  dir = "$WORK/influx/meta"
[data]
  dir = "$WORK/influx/data"
  wal-dir = "$WORK/influx/wal"
  wal-fsync-delay = "0s"
  max-series-per-database = 0
[http]
  bind-address = "127.0.0.1:$((PORT + 1))"
  log-enabled = false
EOF
  for series in 400 100000; do
    rm -rf "$WORK/influx"/*
    influxd -config "$WORK/influx.conf" > "$WORK/influx.log" 2>&1 & INFLUX=$!; PIDS+=("$INFLUX")
    wait_http "http://127.0.0.1:$((PORT + 1))/ping"
    curl -sf -XPOST "http://127.0.0.1:$((PORT + 1))/query" --data-urlencode 'q=CREATE DATABASE bench' >/dev/null
    label="write-400"; [ "$series" = 100000 ] && label="write-100k"
    # write.lua posts to /write?precision=ns; InfluxDB needs the database as well.
    BENCH_KEY=unused BENCH_LINES=5000 BENCH_SERIES="$series" BENCH_NOW=1 BENCH_DB=bench \
      wrk -t2 -c4 -d"${DURATION}s" --latency --timeout 30s -s bench/write.lua "http://127.0.0.1:$((PORT + 1))" \
      | grep RESULT | sed "s/^RESULT/influxdb $label/" | tee -a "$RESULTS"
    stop "$INFLUX"
  done
else
  echo "SKIPPED InfluxDB: apt-get install influxdb"
fi

echo "== VictoriaMetrics"
if command -v victoria-metrics >/dev/null; then
  for series in 400 100000; do
    rm -rf "$WORK/vm"
    victoria-metrics -storageDataPath="$WORK/vm" -httpListenAddr="127.0.0.1:$((PORT + 3))" -loggerLevel=ERROR > /dev/null 2>&1 &
    VM=$!; PIDS+=("$VM")
    wait_http "http://127.0.0.1:$((PORT + 3))/health"
    label="write-400"; [ "$series" = 100000 ] && label="write-100k"
    write_load "victoria-metrics $label" "$series" "http://127.0.0.1:$((PORT + 3))" unused
    stop "$VM"
  done
else
  echo "SKIPPED VictoriaMetrics: apt-get install victoria-metrics"
fi

echo "== ratios (homepot / peer; field values per second for writes, requests per second for health)"
python3 - "$RESULTS" <<'EOF'
import re, sys
rates = {}
for line in open(sys.argv[1]):
    name, load = line.split()[:2]
    fields = dict(kv.split("=") for kv in line.split()[2:] if "=" in kv)
    rates[(name, load)] = float(fields.get("field_values_per_s") or fields.get("req_per_s"))
for (name, load), rate in sorted(rates.items()):
    print(f"{name:24} {load:12} {rate:14,.0f}")
for mode in ("default", "durable", "postgres"):
    for load, peer in (("write-400", "influxdb"), ("write-100k", "influxdb"), ("write-400", "victoria-metrics"),
                       ("write-100k", "victoria-metrics"), ("health-10k", "ceiling")):
        ours, theirs = rates.get((f"homepot-{mode}", load)), rates.get((peer, load))
        if ours and theirs:
            print(f"homepot-{mode} / {peer} {load}: {ours / theirs:.2f}")
EOF
