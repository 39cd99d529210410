#!/usr/bin/env bash
# Tools for the C API tests and checks (.ci/check-capi.sh): cbindgen, to
# regenerate capi/include/shmpipe.h, valgrind, to run the C test under it,
# and pkg-config, through which the tests link (capi/install.sh's files). The C
# compilers (cc, c++) come with the machine. Idempotent; a no-op when both
# are installed.
set -euo pipefail

CBINDGEN_VERSION=0.29.4   # the header is committed as this version writes it
if [ "$(cbindgen --version 2>/dev/null)" != "cbindgen $CBINDGEN_VERSION" ]; then
    cargo install --locked cbindgen --version "$CBINDGEN_VERSION"
fi

missing=()
command -v valgrind >/dev/null 2>&1 || missing+=(valgrind)
command -v pkg-config >/dev/null 2>&1 || missing+=(pkg-config)
if [ ${#missing[@]} -gt 0 ]; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"
fi
command -v cc >/dev/null && command -v c++ >/dev/null
