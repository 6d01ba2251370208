#!/usr/bin/env bash
# Fuzzes the HTTP API from its own OpenAPI document with schemathesis (PyPI): no 5xx, and
# every answer must match the document.
#   tests/fuzz/schemathesis.sh [MAX_EXAMPLES]
# Needs `pip install schemathesis` and a debug or release build of homepot.
set -euo pipefail
cd "$(dirname "$0")/../.."
EXAMPLES="${1:-50}"
BIN=target/release/homepot
[ -x "$BIN" ] || BIN=target/debug/homepot
[ -x "$BIN" ] || { echo "build first: cargo build --bin homepot" >&2; exit 1; }
WORK="$(mktemp -d)"
PORT="${FUZZ_PORT:-18090}"
KEY="fuzz-admin-$(date +%s%N)"
# One client IP sends everything, so rate limiting is off; the simulator is on to be fuzzed too.
HOMEPOT_ADMIN_KEY="$KEY" RATE_LIMIT_REQUESTS_PER_MINUTE=0 RUST_LOG=warn \
  "$BIN" serve --simulator --bind "127.0.0.1:$PORT" --database-url "sqlite://$WORK/fuzz.db" > "$WORK/server.log" 2>&1 &
SERVER=$!
trap 'kill $SERVER 2>/dev/null; wait $SERVER 2>/dev/null; rm -rf "$WORK"' EXIT
for _ in $(seq 1 100); do curl -sf "http://127.0.0.1:$PORT/health" >/dev/null && break; sleep 0.1; done
curl -sf -o /dev/null -X POST "http://127.0.0.1:$PORT/api/v1/devices" -H "X-API-Key: $KEY" \
  -H "Content-Type: application/json" -d '{"device_id": "pos-terminal-001"}'
# The stream and the WebSocket never end, so they are not fuzzed; undeclared methods answer a
# plain 405 (without an Allow header).
st run "http://127.0.0.1:$PORT/openapi.json" -H "X-API-Key: $KEY" -c all -n "$EXAMPLES" \
  --exclude-path /metrics/stream --exclude-path /ws --exclude-checks unsupported_method || status=$?
echo "server errors logged: $(grep -c ' ERROR ' "$WORK/server.log" || true)"
exit "${status:-0}"
