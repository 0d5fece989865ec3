#!/usr/bin/env bash
# The whole test suite: the release build runs every test, then the ASan+UBSan
# build the core and driver tests, then a ThreadSanitizer build the
# concurrency tests (README "Sanitizer flavours" says which run where).
# Exits non-zero if anything fails.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
"$root/scripts/install-deps.sh"
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
# Most tests wait on storage latency (O_DIRECT writes, flushes), not on the
# CPU. Where /dev/shm is a tmpfs that accepts O_DIRECT (Linux 6.6 and later)
# and has 2 GiB free (the suite peaks near 100 MB; containers often give
# /dev/shm only 64 MB), the tests' files go there and the suite runs several
# times faster; elsewhere they stay in the build tree. A COBLK_TEST_TMPDIR
# set by the caller wins.
probe=/dev/shm/coblk-odirect-probe.$$
shm_free_kb=$(df -Pk /dev/shm 2>/dev/null | awk 'NR == 2 { print $4 }')
if [ -z "${COBLK_TEST_TMPDIR:-}" ] && [ "${shm_free_kb:-0}" -ge $((2 << 20)) ] &&
   dd if=/dev/zero of="$probe" bs=4096 count=1 oflag=direct status=none 2>/dev/null; then
  COBLK_TEST_TMPDIR=$(mktemp -d /dev/shm/coblk-test.XXXXXX)
  export COBLK_TEST_TMPDIR
  trap 'rm -rf "$COBLK_TEST_TMPDIR"' EXIT
fi
rm -f "$probe"
echo "test files in ${COBLK_TEST_TMPDIR:-the build tree}"
echo "=== release build ==="
"$root/scripts/build.sh" release
echo "=== release tests (every test) ==="
(cd "$root/build" && ctest --output-on-failure -j2 --timeout 900)
echo "=== install + out-of-tree examples ==="
"$root/scripts/check-install.sh" "$root/build"

# ASan+UBSan: the library, the tools and every test binary of the core and
# the drivers (the malformed and hostile image corpora, fuzz replay, crash
# safety, the nbd client and export), not the tool-parity suite, the
# conformance runs, the SIGKILL and differential tests (the release build
# runs those, and the example programs; they check behaviour, and under
# ASan they would take most of the CI budget). Tests of targets not built show up as *_NOT_BUILT.
asan_targets=(coroutine_test io_test block_test coblk-img coblk-io)
for d in "$root"/tests/drivers/*/; do asan_targets+=("drivers_$(basename "$d")_test"); done
echo "=== asan build ==="
"$root/scripts/build.sh" asan "${asan_targets[@]}"
echo "=== asan tests ==="
(cd "$root/build-asan" && ctest --output-on-failure -j2 --timeout 900 \
  -E '_NOT_BUILT|^conformance[.]|^example[.]|^Sigkill|Differential|Interop')

# ThreadSanitizer: only the tests that exercise threads and coroutine
# hand-offs (coroutine, io, block, the file driver, and the VMDK concurrency
# tests), and only their targets are built, to keep CI time down.
echo "=== tsan build ==="
"$root/scripts/build.sh" tsan coroutine_test io_test block_test drivers_file_test \
  drivers_vmdk_concurrency_test
echo "=== tsan tests ==="
export TSAN_OPTIONS=${TSAN_OPTIONS:-halt_on_error=1:second_deadlock_stack=1}
for t in coroutine_test block_test; do
  "$root/build-tsan/bin/$t" --gtest_brief=1
done
for t in io_test drivers_file_test; do  # on a real disk, as in tests/CMakeLists.txt
  COBLK_TEST_TMPDIR= "$root/build-tsan/bin/$t" --gtest_brief=1
done
"$root/build-tsan/bin/drivers_vmdk_concurrency_test" --gtest_brief=1 \
  --gtest_filter='ConcurrentWrite.*:WriteOrder.*:CrashSafety.TableUpdateFailsOrPowerLostAtL2Update'

