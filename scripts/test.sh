#!/usr/bin/env bash
# The whole test suite: release build, then the ASan+UBSan build, each run
# with CTest, then a ThreadSanitizer build of the concurrency tests.
# Exits non-zero if anything fails.
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
# ThreadSanitizer: only the tests that exercise threads and coroutine
# hand-offs (coroutine, io, block, the file driver, and the VMDK concurrency
# tests), and only their targets are built, to keep CI time down.
echo "=== tsan build ==="
"$root/scripts/build.sh" tsan coroutine_test io_test block_test drivers_file_test drivers_vmdk_test
echo "=== tsan tests ==="
export TSAN_OPTIONS=${TSAN_OPTIONS:-halt_on_error=1:second_deadlock_stack=1}
for t in coroutine_test io_test block_test drivers_file_test; do
  "$root/build-tsan/bin/$t" --gtest_brief=1
done
"$root/build-tsan/bin/drivers_vmdk_test" --gtest_brief=1 \
  --gtest_filter='ConcurrentWrite.*:WriteOrder.*:CrashSafety.TableUpdateFailsOrPowerLostAtL2Update'

