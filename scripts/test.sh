#!/usr/bin/env bash
# The whole test suite: release build, then the ASan+UBSan build, each run
# with CTest. Exits non-zero if anything fails.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
"$root/scripts/install-deps.sh"
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
for flavour in release asan; do
  echo "=== $flavour build ==="
  "$root/scripts/build.sh" "$flavour"
  dir=build; [ "$flavour" = asan ] && dir=build-asan
  echo "=== $flavour tests ==="
  (cd "$root/$dir" && ctest --output-on-failure -j2 --timeout 900)
  if [ "$flavour" = release ]; then
    echo "=== install + out-of-tree examples ==="
    "$root/scripts/check-install.sh" "$root/build"
  fi
done
