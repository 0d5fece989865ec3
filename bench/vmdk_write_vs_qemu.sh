#!/usr/bin/env bash
# VMDK write benchmarks, coblk vs QEMU, side by side in one run:
#  1. 64 KiB sequential allocating writes, QD32, into a fresh 1 GiB
#     monolithicSparse image: coblk-img bench -w vs qemu-img bench -w, same
#     flags. Also the whole command's wall time (coblk's includes the final
#     flush that commits the last grain-table entries at close).
#  2. 4 KiB overwrites of allocated grains, QD32, O_DIRECT: coblk on a fully
#     allocated VMDK vs coblk on a raw file with the same data (random
#     offsets, coblk's -r), and qemu-img bench strided on the same VMDK.
# Usage: bench/vmdk_write_vs_qemu.sh [build-dir]
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
build=$(cd "${1:-$here/build}" && pwd)  # absolute: works from any directory
img=$build/bin/coblk-img
work=$build/bench-write
mkdir -p "$work"

secs() { sed -n 's/Run completed in \([0-9.]*\) seconds./\1/p'; }
wall() { local t0 t1; t0=$(date +%s.%N); "$@" >/dev/null; t1=$(date +%s.%N); python3 -c "print(f'{$t1-$t0:.3f}')"; }

echo "== 64 KiB sequential allocating writes, QD32, fresh 1 GiB monolithicSparse =="
rm -f "$work"/alloc-*.vmdk
"$img" create -f vmdk "$work/alloc-coblk.vmdk" 1G >/dev/null
qemu-img create -f vmdk "$work/alloc-qemu.vmdk" 1G >/dev/null
flags=(bench -w -c 16384 -d 32 -s 64k -t none -n -f vmdk)
c=$("$img" "${flags[@]}" "$work/alloc-coblk.vmdk" | secs)
q=$(qemu-img "${flags[@]}" "$work/alloc-qemu.vmdk" | secs)
printf '%-22s %10s %10s %8s\n' "" coblk qemu speedup
printf '%-22s %10s %10s %8.1f\n' "bench seconds" "$c" "$q" "$(python3 -c "print($q/$c)")"
rm -f "$work"/alloc-*.vmdk
"$img" create -f vmdk "$work/alloc-coblk.vmdk" 1G >/dev/null
qemu-img create -f vmdk "$work/alloc-qemu.vmdk" 1G >/dev/null
cw=$(wall "$img" "${flags[@]}" "$work/alloc-coblk.vmdk")
qw=$(wall qemu-img "${flags[@]}" "$work/alloc-qemu.vmdk")
printf '%-22s %10s %10s %8.1f\n' "command wall seconds" "$cw" "$qw" "$(python3 -c "print($qw/$cw)")"
qemu-img check -q "$work/alloc-coblk.vmdk" && qemu-img compare -q "$work/alloc-coblk.vmdk" "$work/alloc-qemu.vmdk" &&
  echo "coblk image: qemu-img check clean, compares equal to qemu's"

echo "== 4 KiB overwrites of allocated grains, QD32, O_DIRECT =="
raw=$work/full.raw
vmdk=$work/full.vmdk
if [ ! -f "$raw" ]; then dd if=/dev/urandom of="$raw" bs=1M count=1024 status=none; fi
rm -f "$vmdk"
qemu-img convert -f raw -O vmdk "$raw" "$vmdk"
# Written through the page cache: write back now, or the first O_DIRECT
# run (vmdk) pays for the dirty pages and looks half as fast as raw.
sync "$raw" "$vmdk"
n=200000
cv=$("$img" bench -w -r -c $n -d 32 -s 4k -t none -n -f vmdk "$vmdk" | secs)
cr=$("$img" bench -w -r -c $n -d 32 -s 4k -t none -n -f raw "$raw" | secs)
qv=$(qemu-img bench -w -c $n -d 32 -s 4k -S 1052672 -t none -n -f vmdk "$vmdk" | secs)
printf '%-28s %12s\n' "" IOPS
printf '%-28s %12.0f\n' "coblk vmdk (random)" "$(python3 -c "print($n/$cv)")"
printf '%-28s %12.0f\n' "coblk raw (random)" "$(python3 -c "print($n/$cr)")"
printf '%-28s %12.0f\n' "qemu-img vmdk (strided)" "$(python3 -c "print($n/$qv)")"
printf 'coblk vmdk / coblk raw: %.2f\n' "$(python3 -c "print($cr/$cv)")"
qemu-img check -q "$vmdk" && echo "overwritten image: qemu-img check clean"
