#!/usr/bin/env bash
# C API checks after the tests:
#  1. capi/include/shmpipe.h is what cbindgen makes of capi/src (no drift);
#  2. the C test program runs clean under valgrind (no invalid access, no
#     definite leak), once per subcommand, at a small message count.
set -euo pipefail
cd "$(dirname "$0")/.."

echo "--- header drift"
fresh=$(mktemp)
trap 'rm -f "$fresh"' EXIT
cbindgen --quiet --config capi/cbindgen.toml --crate shmpipe-capi --output "$fresh"
if ! diff -u capi/include/shmpipe.h "$fresh"; then
    echo "capi/include/shmpipe.h is stale: regenerate it with"
    echo "  cbindgen --config capi/cbindgen.toml --crate shmpipe-capi --output capi/include/shmpipe.h"
    exit 1
fi

echo "--- C test under valgrind"
cargo build --release -p shmpipe-capi
out=target/capi-valgrind
mkdir -p "$out"
capi/install.sh "$out/prefix" target/release >/dev/null
export PKG_CONFIG_PATH="$out/prefix/lib/pkgconfig"
# shellcheck disable=SC2046 # word splitting of the flags is intended
cc -std=c99 -O1 -g -Wall -Wextra -Werror capi/tests/c/capi_test.c \
    $(pkg-config --cflags --libs shmpipe-static) -o "$out/capi_test"
vg() {
    echo "valgrind capi_test $*"
    valgrind -q --error-exitcode=99 --leak-check=full --errors-for-leak-kinds=definite \
        --show-leak-kinds=definite "$out/capi_test" "$@"
}
vg errors
for v in lockfree locked; do
    vg claim "$v"
    vg peek "$v"
    vg drain "$v"
    vg peer-died "$v"
    vg stream "$v" futex 5000
done
echo "C API checks passed"
