#!/usr/bin/env bash
# qemu-img/qemu-io vs coblk-img/coblk-io on short commands, where a tool's
# fixed costs (start, open, exit) are most of its time: info, map, check and
# compare of a 1 GiB VMDK holding 64 MiB, and a 4 KiB read. coblk runs with
# its fast exit (the default) and with COBLK_NO_FAST_EXIT=1 (the kernel's
# AIO context teardown inside the tool's run; see README "Tools"). Prints
# the best wall time of RUNS runs side by side, all in one run.
#
# Usage: bench/short_commands_vs_qemu.sh [build-dir]   (default: build)
#   RUNS=20, COBLK_BENCH_DIR (where the images go; default build-dir)
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
build=$(cd "${1:-$here/build}" && pwd)  # absolute: the script cd-s into its work dir
runs=${RUNS:-20}
dir=${COBLK_BENCH_DIR:-$build}/bench-short
command -v qemu-img >/dev/null || { echo "qemu-img not installed (apt-get install qemu-utils)"; exit 1; }
[ -x "$build/bin/coblk-img" ] || { echo "$build/bin/coblk-img not built (scripts/build.sh release)"; exit 1; }
mkdir -p "$dir"
cd "$dir"
rm -f a.vmdk b.vmdk
qemu-img create -q -f vmdk a.vmdk 1G
qemu-io -c "write -P 0x5a 0 32M" -c "write -P 0xa5 512M 32M" a.vmdk >/dev/null
cp a.vmdk b.vmdk

# Best wall time of $runs runs of the command, in milliseconds.
best_ms() {
  local best="" t0 t1 dt
  for ((r = 0; r < runs; r++)); do
    t0=$(date +%s%N)
    "$@" >/dev/null 2>&1
    t1=$(date +%s%N)
    dt=$(((t1 - t0) / 1000))
    if [ -z "$best" ] || [ "$dt" -lt "$best" ]; then best=$dt; fi
  done
  printf "%d.%01d" $((best / 1000)) $((best % 1000 / 100))
}

printf "%-28s %10s %12s %14s\n" "command (best of $runs, ms)" "qemu" "coblk" "coblk no-fast"
row() {  # label, qemu command..., --, coblk tool, args...
  local label=$1 q=() c=()
  shift
  while [ "$1" != -- ]; do q+=("$1"); shift; done
  shift
  c=("$@")
  printf "%-28s %10s %12s %14s\n" "$label" "$(best_ms "${q[@]}")" "$(best_ms "${c[@]}")" \
    "$(COBLK_NO_FAST_EXIT=1 best_ms "${c[@]}")"
}
row "info" qemu-img info a.vmdk -- "$build/bin/coblk-img" info a.vmdk
row "map --output=json" qemu-img map --output=json a.vmdk -- "$build/bin/coblk-img" map --output=json a.vmdk
row "check" qemu-img check a.vmdk -- "$build/bin/coblk-img" check a.vmdk
row "compare" qemu-img compare a.vmdk b.vmdk -- "$build/bin/coblk-img" compare a.vmdk b.vmdk
row "io -r -c 'read 0 4k'" qemu-io -r -c "read 0 4k" a.vmdk -- "$build/bin/coblk-io" -r -c "read 0 4k" a.vmdk
