#!/usr/bin/env bash
# The example sparse format plugin (exsparse) beside vmdk, for format authors:
#  1. coblk-driver-bench (the conformance kit's Google Benchmark fixture) on
#     exsparse and vmdk: lookup cost, 4 KiB random read/overwrite QD1/QD32;
#  2. 4 KiB reads at QD1/QD32 of the same 256 MiB of data as vmdk through
#     qemu-img bench (QEMU's driver, the reference), and as vmdk and exsparse
#     through coblk-img bench, identical flags (-t none -n, a step of
#     1 MiB + 4 KiB as in vmdk_read_vs_qemu.sh).
# Usage: bench/plugin_format_vs_vmdk.sh [build-dir]   (COUNT=50000)
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
build=$(cd "${1:-$here/build}" && pwd)  # absolute: works from any directory
count=${COUNT:-50000}
plugin=$build/lib/coblk-plugin-sparse.so
work=$(mktemp -d "$build/plugin-bench-XXXXXX")
trap 'rm -rf "$work"' EXIT

echo "== coblk-driver-bench (Google Benchmark)"
for d in "--plugin $plugin --driver exsparse" "--driver vmdk"; do
  echo "-- $d"
  # shellcheck disable=SC2086
  "$build/bin/coblk-driver-bench" $d --dir "$work" --benchmark_min_time=1 2>&1 | grep BM_
done

echo "== 4 KiB reads, 256 MiB of data, qemu-img bench vs coblk-img bench"
dd if=/dev/urandom of="$work/data.raw" bs=1M count=256 status=none
qemu-img convert -f raw -O vmdk "$work/data.raw" "$work/d.vmdk"
"$build/bin/coblk-img" --plugin "$plugin" convert -f raw -O exsparse "$work/data.raw" "$work/d.exs"
sync
flags=(-c "$count" -s 4096 -S 1052672 -t none -n)
secs() { "$@" 2>&1 | sed -n 's/.*Run completed in \([0-9.]*\) seconds.*/\1/p'; }
printf "%-6s %-28s %-28s %-28s\n" depth "qemu-img vmdk (IOPS)" "coblk vmdk (IOPS)" "coblk exsparse (IOPS)"
for depth in 1 32; do
  q=$(secs qemu-img bench "${flags[@]}" -d "$depth" -f vmdk "$work/d.vmdk")
  c=$(secs "$build/bin/coblk-img" bench "${flags[@]}" -d "$depth" -f vmdk "$work/d.vmdk")
  e=$(secs "$build/bin/coblk-img" --plugin "$plugin" bench "${flags[@]}" -d "$depth" -f exsparse "$work/d.exs")
  printf "%-6s %-28s %-28s %-28s\n" "$depth" "$(awk "BEGIN{print int($count / $q)}")" \
    "$(awk "BEGIN{print int($count / $c)}")" "$(awk "BEGIN{print int($count / $e)}")"
done
