#!/usr/bin/env bash
# qemu-img convert vs coblk-img convert, same flags, from a 1 GiB raw file
# that is half data: every other 1 MiB chunk holds random data, the rest
# are holes. Targets: VMDK streamOptimized (compressed) and monolithicSparse.
# Prints wall-clock seconds side by side, output sizes, and checks that both
# outputs compare equal to the source (qemu-img compare).
#
# Usage: bench/convert_vs_qemu.sh [build-dir]   (default: build)
#   RUNS=3 (best of N), EXTRA="-m 16 -W" (flags added on both sides),
#   COBLK_BENCH_DIR (where the 1 GiB input and outputs go; default build-dir).
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
build=$(cd "${1:-$here/build}" && pwd)  # absolute: works from any directory
coblk_img=$build/bin/coblk-img
runs=${RUNS:-3}  # best of N: single runs on a small VM vary by 2x
dir=${COBLK_BENCH_DIR:-$build}
src=$dir/bench-convert-1g.raw
read -r -a extra <<< "${EXTRA:-}"

command -v qemu-img >/dev/null || { echo "qemu-img not installed (apt-get install qemu-utils)"; exit 1; }
[ -x "$coblk_img" ] || { echo "$coblk_img not built (scripts/build.sh release)"; exit 1; }

if [ ! -f "$src" ] || [ "$(stat -c %s "$src")" -ne $((1 << 30)) ]; then
  echo "writing $src (1 GiB, 512 MiB of random data in every other 1 MiB)..."
  rm -f "$src"
  truncate -s 1G "$src"
  for ((i = 0; i < 1024; i += 2)); do
    dd if=/dev/urandom of="$src" bs=1M seek=$i count=1 conv=notrunc status=none
  done
fi

# Best wall time of $runs runs of "$@" (the last argument is the output).
timeit() {
  local best="" t0 t1 dt out=${*: -1}
  for ((r = 0; r < runs; r++)); do
    rm -f "$out"
    sync
    t0=$(date +%s.%N)
    "$@" >/dev/null
    t1=$(date +%s.%N)
    dt=$(echo "$t1 - $t0" | bc -l)
    if [ -z "$best" ] || (( $(echo "$dt < $best" | bc -l) )); then best=$dt; fi
  done
  printf "%.2f" "$best"
}

printf "%-34s %10s %10s %8s %14s %14s  %s\n" "target (flags: ${EXTRA:-none})" "qemu-img" \
  "coblk-img" "ratio" "qemu size" "coblk size" "compare"
for sub in streamOptimized monolithicSparse; do
  for c in "" "-c"; do
    [ "$sub" = monolithicSparse ] && [ -n "$c" ] && continue
    args=(convert -f raw -O vmdk -o "subformat=$sub" ${c:+"$c"} "${extra[@]}" "$src")
    qout=$dir/bench-convert-q-$sub.vmdk
    cout=$dir/bench-convert-c-$sub.vmdk
    tq=$(timeit qemu-img "${args[@]}" "$qout")
    tc=$(timeit "$coblk_img" "${args[@]}" "$cout")
    sq=$(stat -c %s "$qout")
    sc=$(stat -c %s "$cout")
    if qemu-img compare -q -f raw -F vmdk "$src" "$cout" && qemu-img check -q "$cout"; then
      ok=identical
    else
      ok=MISMATCH
    fi
    printf "%-34s %9ss %9ss %7.2fx %14s %14s  %s\n" "vmdk $sub ${c}" "$tq" "$tc" \
      "$(echo "$tq / $tc" | bc -l)" "$sq" "$sc" "$ok"
    rm -f "$qout" "$cout"
  done
done
