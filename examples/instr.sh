#!/usr/bin/env bash
# Instructions per send + receive, counted by callgrind (deterministic: load
# does not matter), for shmpipe (try_send + try_recv_into) and ringfire 0.5.2
# (try_push + try_recv) at 8 B and 64 B, through the same harness
# (examples/instr_loop.rs: one thread, 16 sends then 16 receives, each
# message copied out and its sequence number checked).
#
# The figure is the difference of two runs, R1 and R2 rounds of 16 messages,
# divided by the difference in messages, so set-up and tear-down cancel out.
#   bash examples/instr.sh
#   METHODS="try_recv_into drain recv_with ringfire" SIZES="8 64 1024" bash examples/instr.sh
#   METHODS="empty_poll ringfire_empty_poll full_poll ringfire_full_poll" bash examples/instr.sh
#     (failed polls, examples/instr_poll.rs: the figure is per poll)
#   METHODS="try_recv_into any" bash examples/instr.sh   # the run-time variant's cost
set -euo pipefail
cd "$(dirname "$0")/.."
command -v valgrind >/dev/null || { echo "needs valgrind (apt-get install valgrind)" >&2; exit 1; }
R1=${R1:-2000}
R2=${R2:-12000}
SIZES=${SIZES:-"8 64"}
METHODS=${METHODS:-"try_recv_into ringfire"}
cargo build --release --example instr_loop --example instr_poll >&2
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# Total instructions of one run (callgrind's "summary:" line).
count() {
    local bin=target/release/examples/instr_loop
    case "$2" in *_poll) bin=target/release/examples/instr_poll ;; esac
    valgrind --tool=callgrind --callgrind-out-file="$tmp/cg" "$bin" "$@" >"$tmp/out" 2>"$tmp/err" || {
        cat "$tmp/out" "$tmp/err" >&2
        exit 1
    }
    awk '/^summary:/ { print $2; exit }' "$tmp/cg"
}

printf '%-6s %-14s %14s\n' size method "instr/message"
for size in $SIZES; do
    for method in $METHODS; do
        a=$(count "$size" "$method" "$R1")
        b=$(count "$size" "$method" "$R2")
        awk -v a="$a" -v b="$b" -v r1="$R1" -v r2="$R2" -v s="$size B" -v m="$method" \
            'BEGIN { printf "%-6s %-14s %14.1f\n", s, m, (b - a) / ((r2 - r1) * 16) }'
    done
done
