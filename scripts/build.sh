#!/usr/bin/env bash
# Configures and builds one flavour of coblk.
# Usage: scripts/build.sh [release|debug|asan|tsan] [target...]
#        -> build/, build-debug/, build-asan/, build-tsan/ (all targets, or the ones named)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
flavour=${1:-release}
jobs=${JOBS:-2}
case "$flavour" in
  release) dir=build;       args=(-DCMAKE_BUILD_TYPE=Release) ;;
  debug)   dir=build-debug; args=(-DCMAKE_BUILD_TYPE=Debug) ;;
  # Sanitizer builds keep line tables only (-g1): enough for their reports,
  # and CI compiles the library three times. TSan at -O1 as its docs advise.
  asan)    dir=build-asan;  args=(-DCMAKE_BUILD_TYPE=Debug "-DCMAKE_CXX_FLAGS_DEBUG=-g1"
                                  -DCOBLK_SANITIZE=ON -DCOBLK_BUILD_BENCH=OFF) ;;
  tsan)    dir=build-tsan;  args=(-DCMAKE_BUILD_TYPE=RelWithDebInfo
                                  "-DCMAKE_CXX_FLAGS_RELWITHDEBINFO=-O1 -g1 -DNDEBUG"
                                  -DCOBLK_TSAN=ON -DCOBLK_BUILD_BENCH=OFF) ;;
  *) echo "unknown flavour $flavour" >&2; exit 2 ;;
esac
# ccache, where installed, makes rebuilds in several checkouts cheap; CI
# builds once from scratch and does not need it.
if command -v ccache >/dev/null; then args+=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache); fi
# Ninja, where installed, for a new build directory (one made earlier keeps
# its generator): it starts a test binary's sources while the library is
# still compiling, which keeps both cores busy.
if [ ! -f "$root/$dir/CMakeCache.txt" ] && command -v ninja >/dev/null; then args+=(-G Ninja); fi
# lld, where installed (scripts/install-deps.sh installs it), links in about
# 40 % of the time GNU ld takes (an ASan test binary: 4.1 s -> 1.7 s).
if command -v ld.lld >/dev/null; then
  for kind in EXE SHARED MODULE; do args+=("-DCMAKE_${kind}_LINKER_FLAGS=-fuse-ld=lld"); done
fi
cmake -S "$root" -B "$root/$dir" "${args[@]}" >/dev/null
shift || true
targets=()
for t in "$@"; do targets+=(--target "$t"); done
cmake --build "$root/$dir" -j"$jobs" "${targets[@]}"
