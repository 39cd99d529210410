#!/usr/bin/env bash
# The CLI's opt-in `tachyon` transport (compilers: .ci/setup-tachyon.sh):
# lint it, and run its functional test (one verified session per size and
# mode, a fraction of a second each), not a benchmark.
set -euo pipefail
cd "$(dirname "$0")/.."
export CXX=clang++-19 CC=clang-19 LIBCLANG_PATH=/usr/lib/llvm-19/lib
cargo clippy -p shmpipe-cli --features tachyon --all-targets -- -D warnings
cargo test -p shmpipe-cli --release --features tachyon --bin shmpipe -- peers_run_verified_sessions every_transport_kind
