# Sourced by the load and fuzz scripts: starts the homepot binary on a fresh database and waits
# until it answers. Sets SERVER (its pid), WORK (a scratch directory removed on exit) and KEY
# (the admin key). Rate limiting is off: one client IP sends everything. The SmartDataFilter
# is off so that every sample is written (the figures measure the durable write path) unless
# BENCH_FILTER=true.
#   start_server PORT [DATABASE_URL] [extra serve flags...]
start_server() {
  local port="$1" database="${2:-}"
  shift 2 || shift $#
  BIN="${BENCH_BIN:-target/release/homepot}"
  [ -x "$BIN" ] || BIN=target/debug/homepot
  [ -x "$BIN" ] || { echo "build first: cargo build --release --bin homepot" >&2; exit 1; }
  WORK="$(mktemp -d)"
  KEY="admin-$(date +%s%N)"
  HOMEPOT_ADMIN_KEY="$KEY" RATE_LIMIT_REQUESTS_PER_MINUTE=0 SMART_FILTER_ENABLED="${BENCH_FILTER:-false}" RUST_LOG=warn \
    "$BIN" serve --bind "127.0.0.1:$port" --database-url "${database:-sqlite://$WORK/homepot.db}" "$@" \
    > "$WORK/server.log" 2>&1 &
  SERVER=$!
  trap 'kill $SERVER 2>/dev/null; wait $SERVER 2>/dev/null; rm -rf "$WORK"' EXIT
  for _ in $(seq 1 100); do curl -sf "http://127.0.0.1:$port/health" >/dev/null && return 0; sleep 0.1; done
  echo "server did not start: $(cat "$WORK/server.log")" >&2
  exit 1
}

rss_kb() { awk '/VmRSS/ {print $2}' "/proc/$SERVER/status"; }

# CPU seconds (user + system) a process has used so far: `cpu_seconds PID`.
cpu_seconds() { awk -v hz="$(getconf CLK_TCK)" '{ printf "%.2f\n", ($14 + $15) / hz }' "/proc/$1/stat"; }
