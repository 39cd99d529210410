#!/usr/bin/env bash
# The C ABI's per-message overhead: capi/bench/abi_stream.c (through the ABI)
# next to capi/examples/rust_stream.rs (the Rust API), same ring, same CPUs,
# alternating, RUNS times each per size; prints the medians and the ratio.
#   bash capi/bench/run.sh            # sizes 8 64, 10M messages, 5 runs
#   SIZES="8 64 1024" COUNT=2000000 RUNS=3 bash capi/bench/run.sh
#   MODE=local bash capi/bench/run.sh  # one thread sends and receives in turn:
#                                       # the ABI's own cost, robust to a busy machine
# Measure on a quiet machine (nothing else running).
set -euo pipefail
cd "$(dirname "$0")/../.."
SIZES=${SIZES:-"8 64"}
COUNT=${COUNT:-10000000}
RUNS=${RUNS:-5}
MODE=${MODE:-}
cargo build --release -p shmpipe-capi >/dev/null 2>&1   # target/release/libshmpipe_capi.{a,so}
cargo build --release -p shmpipe-capi --example rust_stream >/dev/null 2>&1
mkdir -p target/capi-bench
capi/install.sh target/capi-bench/prefix target/release >/dev/null
export PKG_CONFIG_PATH=target/capi-bench/prefix/lib/pkgconfig
# shellcheck disable=SC2046 # word splitting of the flags is intended
cc -std=c99 -O2 capi/bench/abi_stream.c $(pkg-config --cflags --libs shmpipe-static) \
    -o target/capi-bench/abi_stream
rust=target/release/examples/rust_stream
c=target/capi-bench/abi_stream
median() { sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
for size in $SIZES; do
    : >target/capi-bench/rust.$size
    : >target/capi-bench/c.$size
    for _ in $(seq "$RUNS"); do
        "$rust" "$size" "$COUNT" ${MODE:+"$MODE"} | sed 's/.*ns\/msg=//' >>target/capi-bench/rust.$size
        "$c" "$size" "$COUNT" ${MODE:+"$MODE"} | sed 's/.*ns\/msg=//' >>target/capi-bench/c.$size
    done
    r=$(median <target/capi-bench/rust.$size)
    a=$(median <target/capi-bench/c.$size)
    awk -v m="$MODE" -v s="$size" -v r="$r" -v a="$a" 'BEGIN {
        printf "%s size %5d B: rust %.2f ns/msg (%.1f M/s), C ABI %.2f ns/msg (%.1f M/s), ABI overhead %+.1f%% (%+.2f ns/msg)\n",
            (m == "" ? "stream" : m), s, r, 1000/r, a, 1000/a, (a/r-1)*100, a-r }'
done
