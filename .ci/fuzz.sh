#!/usr/bin/env bash
# Run every cargo-fuzz target in fuzz/ for FUZZ_SECONDS (default 30) each on
# nightly, starting from the committed seed corpus; fail on any crash, hang
# (>10 s per input), leak or sanitizer report.
# Longer local runs: see the README (fuzz/corpus-local/ keeps what a run finds).
set -euo pipefail
cd "$(dirname "$0")/.."

secs="${FUZZ_SECONDS:-30}"

if ! rustup run nightly rustc --version >/dev/null 2>&1; then
    rustup toolchain install nightly --profile minimal
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
    cargo install cargo-fuzz --locked
fi

cd fuzz
# New inputs go to a scratch directory, so the committed seeds stay as they are.
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

cargo +nightly fuzz build
for t in $(cargo +nightly fuzz list); do
    echo "=== fuzz target $t: ${secs}s"
    mkdir -p "$work/$t" "corpus/$t"
    log="$work/$t.log"
    if ! cargo +nightly fuzz run "$t" "$work/$t" "corpus/$t" -- \
        -max_total_time="$secs" -timeout=10 -rss_limit_mb=4096 -print_final_stats=1 \
        >"$log" 2>&1; then
        tail -n 80 "$log" >&2
        echo "fuzz target $t FAILED; reproducer in fuzz/artifacts/$t/" >&2
        exit 1
    fi
    grep -E '^(Done|stat::number_of_executed_units|stat::average_exec_per_sec|stat::new_units_added)' "$log" || true
done
echo "fuzz: all targets ran ${secs}s without a crash"
