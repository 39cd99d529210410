#!/usr/bin/env bash
# Install the shmpipe C API under PREFIX:
#   PREFIX/include/shmpipe.h
#   PREFIX/lib/libshmpipe.a, PREFIX/lib/libshmpipe.so
#   PREFIX/lib/pkgconfig/shmpipe.pc (shared) and shmpipe-static.pc (static)
# from what `cargo build --release -p shmpipe-capi` made in BUILD_DIR
# (default: target/release of this workspace). Cargo names the crate's
# outputs libshmpipe_capi.{a,so} (the Rust library `shmpipe` is the core
# crate); they are installed as libshmpipe.{a,so}.
#
# Usage: capi/install.sh PREFIX [BUILD_DIR]
# Then:  export PKG_CONFIG_PATH=PREFIX/lib/pkgconfig
#        cc app.c $(pkg-config --cflags --libs shmpipe-static)   # static
#        cc app.c $(pkg-config --cflags --libs shmpipe)          # shared
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
prefix=${1:?usage: capi/install.sh PREFIX [BUILD_DIR]}
build=${2:-$here/../target/release}
prefix=$(mkdir -p "$prefix" && cd "$prefix" && pwd)

# `cargo build` copies the libraries up into BUILD_DIR; `cargo test` (which
# builds them as a dependency of the C tests) leaves them in BUILD_DIR/deps.
# Take the newer of the two.
if [ -f "$build/deps/libshmpipe_capi.a" ] &&
    { [ ! -f "$build/libshmpipe_capi.a" ] || [ "$build/deps/libshmpipe_capi.a" -nt "$build/libshmpipe_capi.a" ]; }; then
    build="$build/deps"
fi
for f in libshmpipe_capi.a libshmpipe_capi.so; do
    if [ ! -f "$build/$f" ]; then
        echo "capi/install.sh: $build/$f is missing; run cargo build --release -p shmpipe-capi first" >&2
        exit 1
    fi
done
version=$(sed -n 's/^version = "\(.*\)"$/\1/p' "$here/Cargo.toml" | head -n 1)
# What the Rust standard library inside libshmpipe.a links against on
# Linux/glibc (`cargo rustc -p shmpipe-capi --release --crate-type staticlib
# -- --print native-static-libs`); capi/tests/c_api.rs links with exactly
# these flags, through this file.
native_libs="-lgcc_s -lutil -lrt -lpthread -lm -ldl -lc"

install -d "$prefix/include" "$prefix/lib/pkgconfig"
install -m 0644 "$here/include/shmpipe.h" "$prefix/include/shmpipe.h"
install -m 0644 "$build/libshmpipe_capi.a" "$prefix/lib/libshmpipe.a"
install -m 0755 "$build/libshmpipe_capi.so" "$prefix/lib/libshmpipe.so"
for pc in shmpipe shmpipe-static; do
    sed -e "s|@PREFIX@|$prefix|g" -e "s|@VERSION@|$version|g" \
        -e "s|@NATIVE_LIBS@|$native_libs|g" \
        "$here/$pc.pc.in" >"$prefix/lib/pkgconfig/$pc.pc"
done
echo "installed the shmpipe C API $version under $prefix"
