#!/usr/bin/env bash
# Model-check the ring's index and wake-up protocols with loom (tests/loom.rs).
# LOOM_MAX_PREEMPTIONS=3 takes well under a minute here; 4 passes too, in
# about 5 minutes.
set -euo pipefail
cd "$(dirname "$0")/.."

export RUSTFLAGS="--cfg loom"
export LOOM_MAX_PREEMPTIONS="${LOOM_MAX_PREEMPTIONS:-3}"
# Own target directory: --cfg loom rebuilds every crate.
export CARGO_TARGET_DIR="${LOOM_TARGET_DIR:-target/loom}"

echo "=== loom (LOOM_MAX_PREEMPTIONS=$LOOM_MAX_PREEMPTIONS)"
cargo test --release --test loom
