#!/usr/bin/env bash
# Python bindings (python/, issue 18): a virtual environment under
# target/python-venv with pytest, and the module built and installed the way
# users install it (`pip install ./python`: maturin as the PEP 517 backend).
# .ci/check-python.sh runs the tests in it. Needs python3 with venv and pip.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! python3 -c 'import venv, ensurepip' >/dev/null 2>&1; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv python3-pip
fi
venv=target/python-venv
if [ ! -x "$venv/bin/python" ]; then
    mkdir -p target
    python3 -m venv "$venv"
fi
"$venv/bin/python" -m pip install -q --upgrade pytest
# Builds the extension (release, abi3) with the workspace's target directory.
"$venv/bin/python" -m pip install -q --force-reinstall --no-deps ./python
"$venv/bin/python" -c 'import shmpipe; print("shmpipe", shmpipe.__version__, "from", shmpipe.__file__)'
