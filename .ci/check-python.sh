#!/usr/bin/env bash
# Python bindings: the pytest suite (python/tests) in the environment
# .ci/setup-python.sh made. The CLI interop tests need the `shmpipe` binary,
# which the workspace tests already built in release mode.
set -euo pipefail
cd "$(dirname "$0")/.."

cargo build --release -p shmpipe-cli
venv=target/python-venv
if [ ! -x "$venv/bin/python" ]; then
    bash .ci/setup-python.sh
fi
SHMPIPE_CLI="$PWD/target/release/shmpipe" "$venv/bin/python" -m pytest -q python/tests
# The benchmark runs end to end (tiny counts; figures are not checked).
if ! out=$("$venv/bin/python" python/bench.py --count 2000 --rt-count 200 --transports shmpipe,mp.Pipe 2>&1); then
    echo "$out"
    echo "python/bench.py failed"
    exit 1
fi
echo "python/bench.py ran"
