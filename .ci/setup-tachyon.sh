#!/usr/bin/env bash
# Compilers for the CLI's opt-in `tachyon` feature, tested by
# .ci/check-tachyon.sh: tachyon-sys builds tachyon's C++23 core with the C++
# compiler cargo finds (GCC 12 fails; Clang >= 17 works) and generates its
# bindings with bindgen (libclang). Debian 12's clang-19 and libclang-19-dev
# (bookworm-updates) provide both. Idempotent; a no-op when installed.
set -euo pipefail
if ! command -v clang++-19 >/dev/null 2>&1 || [ ! -d /usr/lib/llvm-19/lib ]; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq clang-19 libclang-19-dev
fi
clang++-19 --version | head -1
