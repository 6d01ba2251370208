#!/usr/bin/env bash
# Runs every coverage-guided fuzz target (fuzz/fuzz_targets) for SECONDS each with libFuzzer.
#   tests/fuzz/cargo_fuzz.sh [SECONDS]
# Needs a nightly toolchain and cargo-fuzz (cargo install cargo-fuzz).
set -euo pipefail
cd "$(dirname "$0")/../../fuzz"
SECONDS_EACH="${1:-60}"
for target in $(cargo +nightly fuzz list); do
  echo "== $target"
  cargo +nightly fuzz run "$target" -- -max_total_time="$SECONDS_EACH" -rss_limit_mb=2048 2>&1 \
    | grep -E "Done [0-9]+ runs|DONE|ERROR|panicked" || true
done
