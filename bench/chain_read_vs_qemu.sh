#!/usr/bin/env bash
# 4 KiB reads at queue depth 32 through a 4-deep VMDK backing chain of
# 1 GiB images, each layer holding a quarter of the data (layer i: bytes
# [i GiB/4, (i+1) GiB/4)): qemu-img bench vs coblk-img bench on the same
# chain in the same run, O_DIRECT with native AIO (-t none -n) on both sides,
# identical flags. A read of the base's quarter falls through three layers.
#
# qemu-img bench has no random mode; a step of 1 MiB + 4 KiB (-S 1052672)
# walks the disk with wrap-around and defeats locality/readahead (every
# quarter, so every depth, is visited). The coblk-rand column adds
# coblk-img's -r (random offsets).
#
# Usage: bench/chain_read_vs_qemu.sh [build-dir]   (default: build)
#   COUNT=200000 (requests per run), DEPTH=32, RUNS=3 (best of)
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
build=$(cd "${1:-$here/build}" && pwd)  # absolute: works from any directory
coblk_img=$build/bin/coblk-img
count=${COUNT:-200000}
depth=${DEPTH:-32}
runs=${RUNS:-3}
dir=${COBLK_BENCH_CHAIN_DIR:-$build/bench-chain}
flags=(-c "$count" -d "$depth" -s 4096 -S 1052672 -t none -n -f vmdk)

command -v qemu-img >/dev/null || { echo "qemu-img not installed (apt-get install qemu-utils)"; exit 1; }
[ -x "$coblk_img" ] || { echo "$coblk_img not built (scripts/build.sh release)"; exit 1; }

mkdir -p "$dir"
if [ ! -f "$dir/l3.vmdk" ]; then
  echo "making the chain in $dir (4 x 1 GiB layers, 256 MiB of data each)..."
  rm -f "$dir"/l*.vmdk "$dir/quarter.raw"
  dd if=/dev/urandom of="$dir/quarter.raw" bs=1M count=256 status=none
  for i in 0 1 2 3; do
    if [ "$i" = 0 ]; then
      qemu-img create -q -f vmdk "$dir/l0.vmdk" 1G
    else
      (cd "$dir" && qemu-img create -q -f vmdk -b "l$((i - 1)).vmdk" -F vmdk "l$i.vmdk")
    fi
    # The quarter's data (random bytes) into layer i alone; whole grains, so
    # nothing is read from the layers below.
    qemu-io -c "write -s $dir/quarter.raw $((i << 28)) 256M" \
      "json:{\"driver\":\"vmdk\",\"file\":{\"filename\":\"$dir/l$i.vmdk\"},\"backing\":null}" >/dev/null
  done
  rm -f "$dir/quarter.raw"
  sync "$dir"/l*.vmdk
fi

# IOPS from "Run completed in N seconds." (same output on both tools); best of $runs.
iops() {  # tool extra...
  local tool=$1 best=0
  shift
  for _ in $(seq "$runs"); do
    local out
    if ! out=$("$tool" bench "${flags[@]}" "$@" "$dir/l3.vmdk" 2>&1); then
      echo "$tool bench failed: $out" | tail -1 >&2
      echo "n/a"
      return
    fi
    local v
    v=$(python3 - "$count" "$out" <<'EOF'
import re, sys
m = re.search(r"Run completed in ([0-9.]+) seconds", sys.argv[2])
print(int(int(sys.argv[1]) / float(m.group(1))) if m and float(m.group(1)) > 0 else 0)
EOF
)
    [ "$v" -gt "$best" ] && best=$v
  done
  echo "$best"
}

q=$(iops qemu-img)
c=$(iops "$coblk_img")
r=$(iops "$coblk_img" -r)
printf '%-6s %12s %12s %12s %8s\n' depth qemu-img coblk-img coblk-rand ratio
ratio=$(python3 -c "print(f'{$c/$q:.1f}x' if $q else 'n/a')" 2>/dev/null || echo n/a)
printf '%-6s %12s %12s %12s %8s\n' "$depth" "$q" "$c" "$r" "$ratio"
