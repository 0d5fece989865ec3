#!/usr/bin/env bash
# Block-layer overhead and raw-file throughput, coblk vs QEMU, in one run:
#  1. null-co, QD1 and QD32: per-request cost of the layer itself
#     (coblk-img bench vs qemu-img bench, same flags).
#  2. raw file, 4 KiB random reads, QD1 and QD32, O_DIRECT:
#     coblk-img bench -r vs fio (libaio) on the same 1 GiB file.
#     qemu-img bench has no random mode; its sequential figure with a
#     1 MiB+4 KiB stride is printed for reference.
# Usage: bench/layer_vs_qemu.sh [build-dir]
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
build=$(cd "${1:-$here/build}" && pwd)  # absolute: works from any directory
img=$build/bin/coblk-img
file=${COBLK_BENCH_FILE:-$build/bench-1g.img}
if [ ! -f "$file" ] || [ "$(stat -c %s "$file")" -ne $((1 << 30)) ]; then
  echo "writing $file (1 GiB of real data)..."
  dd if=/dev/urandom of="$file" bs=1M count=1024 oflag=direct status=none
fi

secs() { python3 -c 'import re,sys; print(re.search(r"Run completed in ([0-9.]+) seconds", sys.stdin.read()).group(1))'; }
rate() { python3 -c "print(f'{$1/$2:,.0f}')"; }

echo "== null-co: requests per second (higher is better), ns per request =="
count=2000000
printf '%-6s %14s %14s %10s %10s\n' depth coblk qemu coblk-ns qemu-ns
for d in 1 32; do
  c=$("$img" bench -c $count -d $d --image-opts driver=null-co,size=1G | secs)
  q=$(qemu-img bench -c $count -d $d --image-opts driver=null-co,size=1G | secs)
  printf '%-6s %14s %14s %10.0f %10.0f\n' $d "$(rate $count "$c")" "$(rate $count "$q")" \
    "$(python3 -c "print($c/$count*1e9)")" "$(python3 -c "print($q/$count*1e9)")"
done

echo "== raw file, 4 KiB reads, O_DIRECT: IOPS =="
count=200000
printf '%-6s %14s %14s %8s %18s\n' depth coblk-random fio-random ratio qemu-img-strided
for d in 1 32; do
  n=$count; [ $d -eq 1 ] && n=40000
  c=$("$img" bench -f raw -t none -i native -r -c $n -d $d "$file" | secs)
  f=$(fio --name=r --filename="$file" --rw=randread --bs=4k --direct=1 --ioengine=libaio \
        --iodepth=$d --runtime=10 --time_based --output-format=json 2>/dev/null |
      python3 -c 'import json,sys; print(json.load(sys.stdin)["jobs"][0]["read"]["iops"])')
  q=$(qemu-img bench -f raw -t none -i native -c $n -d $d -S 1052672 "$file" | secs)
  ci=$(python3 -c "print($n/$c)")
  printf '%-6s %14.0f %14.0f %8.2f %18.0f\n' $d "$ci" "$f" "$(python3 -c "print($ci/$f)")" \
    "$(python3 -c "print($n/$q)")"
done
