#!/usr/bin/env bash
# Run the heap-ring model tests (tests/miri_model.rs) under Miri.
#  -Zmiri-disable-isolation: the locked variant reads CLOCK_REALTIME.
#  -Zmiri-disable-weak-memory-emulation: the current nightly's Miri crashes
#   (ICE "cannot have empty store buffer when previous write was atomic") when
#   a non-atomic write covers part of a word that was stored atomically and
#   the word is then stored atomically again, which the ring does when a
#   payload overwrites part of an old record header. Data-race detection
#   stays on.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! rustup run nightly rustc --version >/dev/null 2>&1; then
    rustup toolchain install nightly --profile minimal
fi
rustup component add miri rust-src --toolchain nightly

export MIRIFLAGS="-Zmiri-disable-isolation -Zmiri-disable-weak-memory-emulation ${MIRIFLAGS:-}"
cargo +nightly miri setup
echo "=== miri"
cargo +nightly miri test --test miri_model
