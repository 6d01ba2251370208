#!/usr/bin/env bash
# The HTTP ceiling: the same wrk load as health_load.sh against a bare hyper server that only
# parses the health JSON (examples/http_ceiling.rs). Run it in the same sitting as
# health_load.sh and read homepot's req/s as a fraction of this one.
#   bench/ceiling_load.sh [DURATION_SECONDS] [CONNECTIONS]
# Needs: cargo build --release -p homepot-examples --example http_ceiling; wrk.
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION="${1:-20}"
CONNECTIONS="${2:-64}"
PORT="${BENCH_PORT:-18090}"
BIN="${BENCH_CEILING_BIN:-target/release/examples/http_ceiling}"
command -v wrk >/dev/null || { echo "install wrk: apt-get install wrk" >&2; exit 1; }
[ -x "$BIN" ] || { echo "build first: cargo build --release -p homepot-examples --example http_ceiling" >&2; exit 1; }
"$BIN" "127.0.0.1:$PORT" 2>/dev/null &
SERVER=$!
trap 'kill $SERVER 2>/dev/null; wait $SERVER 2>/dev/null' EXIT
for _ in $(seq 1 50); do (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && break; sleep 0.1; done
BENCH_KEY=unused wrk -t2 -c"$CONNECTIONS" -d"${DURATION}s" --latency -s bench/health.lua "http://127.0.0.1:$PORT"
