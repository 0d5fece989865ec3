#!/usr/bin/env bash
# qemu-img vs coblk-img: `commit` of a 1 GiB VMDK child holding 50 % data
# (every other 1 MiB, random) into its empty 1 GiB base, and `compare` of two
# identical 1 GiB images: raw and VMDK, each with 50 % data (raw: holes) and
# fully written with random data. Both tools run on fresh copies of the same
# files; compare runs with the files' page cache dropped before every run
# (cold) and with both files read into it (warm), in each tool's default
# cache mode (qemu-img: writeback, its -T default; coblk: O_DIRECT, whose
# large reads of ranges the page cache holds are copied from it), then with
# -T none and -T writeback given to both. Last, the floors: how fast `dd`
# copies the compared bytes out of the page cache, how fast they compare in
# place (mapped, no copy), and how fast fio reads them from storage. Prints the best wall time of RUNS
# runs side by side and checks each commit result with qemu-img compare
# against the source data.
#
# Usage: bench/commit_compare_vs_qemu.sh [build-dir]   (default: build)
#   RUNS=5, COBLK_BENCH_DIR (where the files go; default build-dir),
#   COMPARE_ONLY=1 (skip the commit row), COMPARE_CACHE_ROWS=0 (only the
#   default-mode rows).
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
build=$(cd "${1:-$here/build}" && pwd)  # absolute: works from any directory
coblk_img=$build/bin/coblk-img
runs=${RUNS:-5}
dir=${COBLK_BENCH_DIR:-$build}/bench-commit
mkdir -p "$dir"
src=$dir/src-1g.raw

command -v qemu-img >/dev/null || { echo "qemu-img not installed (apt-get install qemu-utils)"; exit 1; }
[ -x "$coblk_img" ] || { echo "$coblk_img not built (scripts/build.sh release)"; exit 1; }

if [ ! -f "$src" ] || [ "$(stat -L -c %s "$src")" -ne $((1 << 30)) ]; then
  echo "writing $src (1 GiB, 512 MiB of random data in every other 1 MiB)..."
  rm -f "$src"
  truncate -s 1G "$src"
  for ((i = 0; i < 1024; i += 2)); do
    dd if=/dev/urandom of="$src" bs=1M seek=$i count=1 conv=notrunc status=none
  done
fi
full=$dir/full-1g.raw
if [ ! -f "$full" ] || [ "$(stat -L -c %s "$full")" -ne $((1 << 30)) ]; then
  echo "writing $full (1 GiB of random data)..."
  head -c 1G /dev/urandom >"$full"
fi
if [ ! -f "$dir/fb.vmdk" ]; then
  cp "$full" "$dir/full-copy.raw"
  qemu-img convert -O vmdk "$full" "$dir/fa.vmdk"
  qemu-img convert -O vmdk "$full" "$dir/fb.vmdk"
fi
# Templates: an empty base and a child holding the data (convert -B writes
# only what differs from the backing file).
if [ ! -f "$dir/child.tmpl" ]; then
  (cd "$dir" && qemu-img create -q -f vmdk base.vmdk 1G && cp base.vmdk base.tmpl &&
    qemu-img convert -O vmdk -B base.vmdk -F vmdk src-1g.raw child.vmdk &&
    cp child.vmdk child.tmpl)
  cp "$src" "$dir/copy-1g.raw"
  qemu-img convert -O vmdk "$src" "$dir/a.vmdk"
  qemu-img convert -O vmdk "$src" "$dir/b.vmdk"
fi

# Drops the page cache of the given files (posix_fadvise DONTNEED).
dropcache() {
  sync
  python3 - "$@" <<'PY'
import os, sys
for p in sys.argv[1:]:
    fd = os.open(p, os.O_RDONLY)
    os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    os.close(fd)
PY
}

# Best wall time of $runs runs; "setup" (a function name) runs before each.
timeit() {
  local setup=$1 best="" t0 t1 dt
  shift
  for ((r = 0; r < runs; r++)); do
    $setup
    t0=$(date +%s.%N)
    "$@" >/dev/null
    t1=$(date +%s.%N)
    dt=$(echo "$t1 - $t0" | bc -l)
    if [ -z "$best" ] || (( $(echo "$dt < $best" | bc -l) )); then best=$dt; fi
  done
  printf "%.2f" "$best"
}

fresh_chain() {
  cp "$dir/base.tmpl" "$dir/base.vmdk"
  cp "$dir/child.tmpl" "$dir/child.vmdk"
  dropcache "$dir/base.vmdk" "$dir/child.vmdk"
}

printf "%-44s %10s %10s %8s  %s\n" "operation (1 GiB, best of $runs)" "qemu-img" "coblk-img" \
  "speedup" "result"
row() {
  printf "%-44s %9ss %9ss %7.2fx  %s\n" "$1" "$2" "$3" "$(echo "$2 / $3" | bc -l)" "$4"
}

cd "$dir"
if [ "${COMPARE_ONLY:-0}" != 1 ]; then
  tq=$(timeit fresh_chain qemu-img commit child.vmdk)
  okq=$(qemu-img compare -q base.vmdk "$src" && echo identical || echo MISMATCH)
  tc=$(timeit fresh_chain "$coblk_img" commit child.vmdk)
  okc=$(qemu-img compare -q base.vmdk "$src" && qemu-img check -q base.vmdk && echo identical ||
    echo MISMATCH)
  row "commit child (50% data) into base (vmdk)" "$tq" "$tc" "qemu $okq, coblk $okc"
fi

# compare: each pair of identical images, cold (page cache of both files
# dropped) and warm (both files read into it) before every run, in each
# tool's default modes, then with -T none / -T writeback forced on both.
cmp_case() {  # label, format, file1, file2
  local label=$1 fmt=$2 f1=$3 f2=$4 tq tc
  cold() { dropcache "$f1" "$f2"; }
  warm() { cat "$f1" "$f2" >/dev/null; }
  tq=$(timeit cold qemu-img compare -f "$fmt" -F "$fmt" "$f1" "$f2")
  tc=$(timeit cold "$coblk_img" compare -f "$fmt" -F "$fmt" "$f1" "$f2")
  row "compare $label, cold" "$tq" "$tc" \
    "$("$coblk_img" compare -q -f "$fmt" -F "$fmt" "$f1" "$f2"; echo "exit $?")"
  tq=$(timeit warm qemu-img compare -f "$fmt" -F "$fmt" "$f1" "$f2")
  tc=$(timeit warm "$coblk_img" compare -f "$fmt" -F "$fmt" "$f1" "$f2")
  row "  same, warm" "$tq" "$tc" ""
  if [ "${COMPARE_CACHE_ROWS:-1}" = 1 ]; then
    tq=$(timeit cold qemu-img compare -T none -f "$fmt" -F "$fmt" "$f1" "$f2")
    tc=$(timeit cold "$coblk_img" compare -T none -f "$fmt" -F "$fmt" "$f1" "$f2")
    row "  same, cold, -T none (O_DIRECT) for both" "$tq" "$tc" ""
    tq=$(timeit warm qemu-img compare -T writeback -f "$fmt" -F "$fmt" "$f1" "$f2")
    tc=$(timeit warm "$coblk_img" compare -T writeback -f "$fmt" -F "$fmt" "$f1" "$f2")
    row "  same, warm, -T writeback for both" "$tq" "$tc" ""
  fi
}
cmp_case "raw (50% data, 50% holes)" raw "$src" "$dir/copy-1g.raw"
cmp_case "raw (100% random data)" raw "$full" "$dir/full-copy.raw"
cmp_case "vmdk (50% data)" vmdk "$dir/a.vmdk" "$dir/b.vmdk"
cmp_case "vmdk (100% random data)" vmdk "$dir/fa.vmdk" "$dir/fb.vmdk"

# The floor under any warm compare that reads (both tools must copy every
# compared byte out of the page cache): dd's copy rate, one stream and two
# in parallel (this machine's cores), on the fully written pair.
warm_full() { cat "$full" "$dir/full-copy.raw" >/dev/null; }
dd1() { dd if="$full" of=/dev/null bs=2M status=none; dd if="$dir/full-copy.raw" of=/dev/null bs=2M status=none; }
dd2() {
  dd if="$full" of=/dev/null bs=2M status=none &
  dd if="$dir/full-copy.raw" of=/dev/null bs=2M status=none
  wait
}
t1=$(timeit warm_full dd1)
t2=$(timeit warm_full dd2)
printf "%-44s %9ss %9ss  (2 GiB: %.1f / %.1f GB/s)\n" "page-cache copy floor, 1 / 2 dd streams" \
  "$t1" "$t2" "$(echo "2.147 / $t1" | bc -l)" "$(echo "2.147 / $t2" | bc -l)"

# Two more floors, no copy at all: the warm pair mapped and compared with
# memcmp on 1 and 2 threads (bench/compare_floor_bench.cc), and the cold
# pair read by fio, O_DIRECT, both files at once, 2 MiB at depth 8 each.
if [ -x "$build/bin/compare_floor_bench" ]; then
  warm_full
  COBLK_FLOOR_A=$full COBLK_FLOOR_B=$dir/full-copy.raw "$build/bin/compare_floor_bench" \
    --benchmark_repetitions="$runs" --benchmark_report_aggregates_only=false 2>/dev/null |
    awk '/^BM_MappedCompare\/[12]\/real_time / { t = $2 / 1000; k = $1; sub(/\/real_time/, "", k);
           if (!(k in best) || t < best[k]) best[k] = t }
         END { printf "%-44s %9.2fs %9.2fs  (memcmp of the mapped pair, 1 / 2 threads)\n",
               "page-cache zero-copy floor, warm", best["BM_MappedCompare/1"], best["BM_MappedCompare/2"] }'
fi
if command -v fio >/dev/null; then
  cold_full() { dropcache "$full" "$dir/full-copy.raw"; }
  fio2() {
    fio --name=a --filename="$full" --rw=read --bs=2M --iodepth=8 --ioengine=libaio --direct=1 \
      --name=b --filename="$dir/full-copy.raw" --rw=read --bs=2M --iodepth=8 --ioengine=libaio \
      --direct=1 >/dev/null 2>&1
  }
  tf=$(timeit cold_full fio2)
  printf "%-44s %9ss %9s   (2 GiB: %.1f GB/s)\n" "storage floor, cold: fio reads both files" "$tf" "" \
    "$(echo "2.147 / $tf" | bc -l)"
fi
