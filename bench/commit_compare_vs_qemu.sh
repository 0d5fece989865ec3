#!/usr/bin/env bash
# qemu-img vs coblk-img: `commit` of a 1 GiB VMDK child holding 50 % data
# (every other 1 MiB, random) into its empty 1 GiB base, and `compare` of two
# identical 1 GiB images (raw with holes, and VMDK). Both tools run on fresh
# copies of the same files, with the files' page cache dropped before every
# run (cold reads for both: qemu-img reads through the page cache, coblk
# with O_DIRECT); compare runs again with both files read into the page
# cache before every run (warm for both: qemu-img then copies from memory,
# while coblk's default O_DIRECT still reads the disk). Prints the best wall
# time of RUNS runs side by side and checks each commit result with
# qemu-img compare against the source data.
#
# Usage: bench/commit_compare_vs_qemu.sh [build-dir]   (default: build)
#   RUNS=3, COBLK_BENCH_DIR (where the files go; default build-dir),
#   COMPARE_ONLY=1 (skip the commit row).
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-$here/build}
coblk_img=$build/bin/coblk-img
runs=${RUNS:-3}
dir=${COBLK_BENCH_DIR:-$build}/bench-commit
mkdir -p "$dir"
src=$dir/src-1g.raw

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
cold_raw() { dropcache "$src" "$dir/copy-1g.raw"; }
cold_vmdk() { dropcache "$dir/a.vmdk" "$dir/b.vmdk"; }
warm_raw() { cat "$src" "$dir/copy-1g.raw" >/dev/null; }
warm_vmdk() { cat "$dir/a.vmdk" "$dir/b.vmdk" >/dev/null; }

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

tq=$(timeit cold_raw qemu-img compare -f raw -F raw "$src" "$dir/copy-1g.raw")
tc=$(timeit cold_raw "$coblk_img" compare -f raw -F raw "$src" "$dir/copy-1g.raw")
row "compare raw vs raw (50% data, 50% holes)" "$tq" "$tc" \
  "$("$coblk_img" compare -q "$src" "$dir/copy-1g.raw" 2>/dev/null; echo "exit $?")"
tq=$(timeit warm_raw qemu-img compare -f raw -F raw "$src" "$dir/copy-1g.raw")
tc=$(timeit warm_raw "$coblk_img" compare -f raw -F raw "$src" "$dir/copy-1g.raw")
row "  same, page cache warm for both" "$tq" "$tc" ""
tq=$(timeit warm_raw qemu-img compare -T writeback -f raw -F raw "$src" "$dir/copy-1g.raw")
tc=$(timeit warm_raw "$coblk_img" compare -T writeback -f raw -F raw "$src" "$dir/copy-1g.raw")
row "  same, warm, -T writeback for both" "$tq" "$tc" ""
tq=$(timeit cold_raw qemu-img compare -T none -f raw -F raw "$src" "$dir/copy-1g.raw")
tc=$(timeit cold_raw "$coblk_img" compare -T none -f raw -F raw "$src" "$dir/copy-1g.raw")
row "  same, cold, -T none (O_DIRECT) for both" "$tq" "$tc" ""

tq=$(timeit cold_vmdk qemu-img compare a.vmdk b.vmdk)
tc=$(timeit cold_vmdk "$coblk_img" compare a.vmdk b.vmdk)
row "compare vmdk vs vmdk (50% data)" "$tq" "$tc" \
  "$("$coblk_img" compare -q a.vmdk b.vmdk; echo "exit $?")"
tq=$(timeit warm_vmdk qemu-img compare a.vmdk b.vmdk)
tc=$(timeit warm_vmdk "$coblk_img" compare a.vmdk b.vmdk)
row "  same, page cache warm for both" "$tq" "$tc" ""
