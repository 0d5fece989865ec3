#!/usr/bin/env bash
# 4 KiB reads of a fully allocated 1 GiB monolithicSparse VMDK: qemu-img bench
# (QEMU's vmdk driver) vs coblk-img bench (coblk's vmdk driver) vs coblk-img
# bench on the same data as a raw file, at queue depth 1 and 32, O_DIRECT
# with native AIO (-t none -n) on both sides, identical flags.
#
# qemu-img bench has no random mode; a step of 1 MiB + 4 KiB (-S 1052672)
# walks the disk with wrap-around and defeats locality/readahead. Set
# RANDOM_TOO=1 to add coblk-img's -r (random) column.
#
# Usage: bench/vmdk_read_vs_qemu.sh [build-dir]   (default: build)
#   COUNT=200000 (requests per run), DEPTHS="1 32", QEMU_EXTRA / COBLK_EXTRA
#   for extra flags on one side only.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
build=$(cd "${1:-$here/build}" && pwd)  # absolute: works from any directory
coblk_img=$build/bin/coblk-img
count=${COUNT:-200000}
depths=${DEPTHS:-"1 32"}
raw=${COBLK_BENCH_RAW:-$build/bench-vmdk-1g.raw}
vmdk=${COBLK_BENCH_VMDK:-$build/bench-vmdk-1g.vmdk}
flags=(-c "$count" -s 4096 -S 1052672 -t none -n)

command -v qemu-img >/dev/null || { echo "qemu-img not installed (apt-get install qemu-utils)"; exit 1; }
if [ ! -x "$coblk_img" ]; then
  echo "$coblk_img not built yet (scripts/build.sh release); only qemu-img will run" >&2
fi

if [ ! -f "$raw" ] || [ "$(stat -c %s "$raw")" -ne $((1 << 30)) ]; then
  echo "writing $raw (1 GiB of random data)..."
  dd if=/dev/urandom of="$raw" bs=1M count=1024 status=none
  rm -f "$vmdk"
fi
if [ ! -f "$vmdk" ]; then
  echo "converting to $vmdk (monolithicSparse, every grain allocated)..."
  qemu-img convert -f raw -O vmdk -o subformat=monolithicSparse "$raw" "$vmdk"
fi
# Both were written through the page cache: write them back now, or the
# first O_DIRECT run pays for the other's dirty pages.
sync "$raw" "$vmdk"

# Prints IOPS from "Run completed in N seconds." (same output on both tools).
iops() {  # tool fmt depth extra... file
  local tool=$1 fmt=$2 depth=$3
  shift 3
  local out
  if ! out=$("$tool" bench "${flags[@]}" -d "$depth" -f "$fmt" "$@" 2>&1); then
    echo "n/a"
    echo "$tool bench failed: $out" | tail -1 >&2
    return
  fi
  python3 - "$count" "$out" <<'EOF'
import re, sys
m = re.search(r"Run completed in ([0-9.]+) seconds", sys.argv[2])
print(int(int(sys.argv[1]) / float(m.group(1))) if m and float(m.group(1)) > 0 else "n/a")
EOF
}

printf '%-6s %14s %14s %14s' depth qemu-vmdk coblk-vmdk coblk-raw
[ "${RANDOM_TOO:-0}" = 1 ] && printf ' %16s' coblk-vmdk-rand
printf '\n'
for d in $depths; do
  q=$(iops qemu-img vmdk "$d" ${QEMU_EXTRA:-} "$vmdk")
  if [ -x "$coblk_img" ]; then
    c=$(iops "$coblk_img" vmdk "$d" ${COBLK_EXTRA:-} "$vmdk")
    r=$(iops "$coblk_img" raw "$d" ${COBLK_EXTRA:-} "$raw")
  else
    c=n/a r=n/a
  fi
  printf '%-6s %14s %14s %14s' "$d" "$q" "$c" "$r"
  if [ "${RANDOM_TOO:-0}" = 1 ] && [ -x "$coblk_img" ]; then
    printf ' %16s' "$(iops "$coblk_img" vmdk "$d" -r ${COBLK_EXTRA:-} "$vmdk")"
  fi
  printf '\n'
done
