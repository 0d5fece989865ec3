#!/usr/bin/env bash
# Runs coblk's AioEngine and fio (libaio, O_DIRECT, 4 KiB random reads) on the
# same 1 GiB file at the same queue depths and prints IOPS side by side.
# Usage: bench/aio_vs_fio.sh [build-dir]   (default: build)
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
build=$(cd "${1:-$here/build}" && pwd)  # absolute: works from any directory
file=${COBLK_BENCH_FILE:-$build/bench-1g.img}
export COBLK_BENCH_FILE=$file

if [ ! -f "$file" ] || [ "$(stat -c %s "$file")" -ne $((1 << 30)) ]; then
  echo "writing $file (1 GiB of real data, not a sparse file)..."
  dd if=/dev/urandom of="$file" bs=1M count=1024 oflag=direct status=none
fi

fio_iops() {  # depth
  fio --name=randread --filename="$file" --rw=randread --bs=4k --direct=1 \
      --ioengine=libaio --iodepth="$1" --runtime=10 --time_based \
      --output-format=json 2>/dev/null |
    python3 -c 'import json,sys; print(int(json.load(sys.stdin)["jobs"][0]["read"]["iops"]))'
}

coblk_iops() {  # depth
  "$build/bin/aio_bench" --benchmark_filter="BM_AioRandRead4k/$1/" \
      --benchmark_min_time=10 --benchmark_format=json 2>/dev/null |
    python3 -c 'import json,sys; print(int(json.load(sys.stdin)["benchmarks"][0]["IOPS"]))'
}

printf '%-6s %12s %12s %8s\n' depth coblk-iops fio-iops ratio
for depth in 1 32; do
  c=$(coblk_iops "$depth")
  f=$(fio_iops "$depth")
  printf '%-6s %12s %12s %8s\n' "$depth" "$c" "$f" "$(python3 -c "print(f'{$c/$f:.2f}')")"
done
