#!/usr/bin/env bash
# Checks coblk as a package, the way users get it (run by scripts/test.sh
# after the release build):
#  1. cmake --install into a fresh prefix;
#  2. examples/ built out of tree against that prefix with find_package(coblk):
#     an embedding program and driver plugins, then run: the program on an
#     image, the installed coblk-io with a plugin, the installed
#     conformance kit with the throttle filter plugin;
#  3. an embedding program and a driver plugin built with pkg-config only;
#  4. with COBLK_CHECK_SUBDIR=1 (not in CI: it compiles coblk once more),
#     a project that add_subdirectory()s coblk.
# Usage: scripts/check-install.sh [build-dir]   (default build/)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-$root/build}
work=$(mktemp -d "${TMPDIR:-/tmp}/coblk-install-XXXXXX")
trap 'rm -rf "$work"' EXIT
prefix=$work/prefix
launcher=()
if command -v ccache >/dev/null; then launcher=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache); fi

echo "--- install into $prefix"
cmake --install "$build" --prefix "$prefix" >/dev/null
test -f "$prefix/include/coblk/block/block_backend.h"
test -f "$prefix/include/coblk/block/plugin.h"
test ! -e "$prefix/include/coblk/drivers"   # driver internals stay private

echo "--- relocatable: the package names no library by a build-machine path"
if grep -rnE '(^|[ ;"])/[^ ;"]*[.](so|a)([.0-9]*)([ ;"]|$)' "$prefix/lib/pkgconfig" "$prefix/lib/cmake"; then
  echo "the installed package names libraries by absolute path (above)" >&2
  exit 1
fi
if "$prefix/bin/coblk-img" --list-drivers | grep -q '^nbd '; then
  # libnbd by its pkg-config name, so pkg-config --libs links it.
  PKG_CONFIG_PATH="$prefix/lib/pkgconfig" pkg-config --print-requires coblk | grep -qx libnbd
  PKG_CONFIG_PATH="$prefix/lib/pkgconfig" pkg-config --libs coblk | grep -q -- '-lnbd'
fi

echo "--- examples/ out of tree (find_package(coblk))"
cmake -S "$root/examples" -B "$work/examples" -DCMAKE_PREFIX_PATH="$prefix" \
  -DCMAKE_BUILD_TYPE=Release "${launcher[@]}" >/dev/null
cmake --build "$work/examples" -j"${JOBS:-2}" >/dev/null
img=$work/disk.img
"$prefix/bin/coblk-img" create -q -f raw "$img" 16M
"$work/examples/bin/coblk-example-embed" "$img" >/dev/null
mkdir -p "$work/snap" && "$work/examples/bin/coblk-example-snapshot_commit" "$work/snap" >/dev/null
plugin=$work/examples/lib/coblk-plugin-xor.so
out=$("$prefix/bin/coblk-io" --plugin "$plugin" --image-opts \
  -c "write -P 0x11 0 4k" -c "read -P 0x11 0 4k" "driver=xor,key=90,file.filename=$img")
grep -q "read 4096/4096" <<<"$out"
"$prefix/bin/coblk-img" --plugin "$plugin" --list-drivers | grep -q "^xor .*$plugin"
# The installed conformance kit against an out-of-tree plugin, through the
# one CMake line (coblk_add_conformance_test) in examples/CMakeLists.txt.
(cd "$work/examples" && ctest -R conformance.exthrottle --output-on-failure >/dev/null) || {
  (cd "$work/examples" && ctest -R conformance.exthrottle --output-on-failure | tail -40); exit 1; }

echo "--- embedding program built with pkg-config"
# shellcheck disable=SC2046
g++ -O1 -o "$work/embed-pc" "$root/examples/read_image.cc" \
  $(PKG_CONFIG_PATH="$prefix/lib/pkgconfig" pkg-config --cflags --libs coblk)
"$work/embed-pc" "$img" "$work/copy.raw" >/dev/null
cmp "$img" "$work/copy.raw"

echo "--- driver plugin built with pkg-config (README's command)"
# shellcheck disable=SC2046
g++ -O1 -shared -fPIC $(PKG_CONFIG_PATH="$prefix/lib/pkgconfig" pkg-config --cflags coblk) \
  "$root/examples/plugins/xor_format.cc" -o "$work/xor-pc.so"
out=$("$prefix/bin/coblk-io" --plugin "$work/xor-pc.so" --image-opts \
  -c "write -P 0x22 0 4k" -c "read -P 0x22 0 4k" "driver=xor,key=7,file.filename=$img")
grep -q "read 4096/4096" <<<"$out"

if [ "${COBLK_CHECK_SUBDIR:-0}" = 1 ]; then
  echo "--- add_subdirectory(coblk)"
  cmake -S "$root/tests/consumer" -B "$work/consumer" -DCOBLK_DIR="$root" \
    -DCMAKE_BUILD_TYPE=Release "${launcher[@]}" >/dev/null
  cmake --build "$work/consumer" -j"${JOBS:-2}" --target consumer >/dev/null
  "$work/consumer/consumer" "$img"
fi
echo "install check passed"
