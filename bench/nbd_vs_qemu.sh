#!/usr/bin/env bash
# NBD side by side, over unix sockets, 4 KiB reads of a fully allocated
# 1 GiB monolithicSparse VMDK (random data), O_DIRECT on the server side:
#
#  1. Servers: coblk's nbdkit plugin vs qemu-nbd (--cache=none --aio=native)
#     exporting the same VMDK read-only, read by the same clients: fio's nbd
#     engine (libnbd; randread) and qemu-img bench (QEMU's NBD client; it has
#     no random mode, so a 1 MiB + 4 KiB stride walks the disk).
#  2. Clients: coblk-img bench (coblk's nbd driver on libnbd) vs qemu-img
#     bench, identical flags, reading the same qemu-nbd export: the VMDK
#     above (disk-bound: QEMU's vmdk serialises the reads) and the raw file
#     from the page cache (--cache=writeback, warmed first), where the
#     clients' own cost shows.
#
# Each figure is the best of RUNS runs (default 3; the servers run one at a
# time, the runs interleaved). IOPS.
#
# Usage: bench/nbd_vs_qemu.sh [build-dir]   (default: build)
#   COUNT=100000 requests per bench run, SECONDS_FIO=5, DEPTHS="32", RUNS=3,
#   THREADS=32 (nbdkit worker threads)
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
build=$(cd "${1:-$here/build}" && pwd)  # absolute: works from any directory
coblk_img=$build/bin/coblk-img
plugin=$build/lib/nbdkit-coblk-plugin.so
count=${COUNT:-100000}
fio_secs=${SECONDS_FIO:-5}
depths=${DEPTHS:-32}
runs=${RUNS:-3}
threads=${THREADS:-32}
raw=${COBLK_BENCH_RAW:-$build/bench-vmdk-1g.raw}
vmdk=${COBLK_BENCH_VMDK:-$build/bench-vmdk-1g.vmdk}

for p in qemu-img qemu-nbd nbdkit fio; do
  command -v $p >/dev/null || { echo "$p not installed (scripts/install-deps.sh)"; exit 1; }
done
[ -x "$coblk_img" ] && [ -f "$plugin" ] || { echo "build first: scripts/build.sh release"; exit 1; }

if [ ! -f "$raw" ] || [ "$(stat -c %s "$raw")" -ne $((1 << 30)) ]; then
  echo "writing $raw (1 GiB of random data)..."
  dd if=/dev/urandom of="$raw" bs=1M count=1024 status=none
  rm -f "$vmdk"
fi
if [ ! -f "$vmdk" ]; then
  echo "converting to $vmdk (monolithicSparse, every grain allocated)..."
  qemu-img convert -f raw -O vmdk -o subformat=monolithicSparse "$raw" "$vmdk"
fi
sync "$raw" "$vmdk"

tmp=$(mktemp -d)
server_pid=""
stop_server() {
  if [ -n "$server_pid" ]; then
    kill "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
    server_pid=""
  fi
}
trap 'stop_server; rm -rf "$tmp"' EXIT

wait_listening() {  # socket
  for _ in $(seq 500); do
    grep -q " $1\$" /proc/net/unix 2>/dev/null && return 0
    sleep 0.02
  done
  echo "server did not start on $1" >&2
  exit 1
}
start_coblk() {
  rm -f "$tmp/coblk.sock"
  nbdkit -f -r --threads "$threads" -U "$tmp/coblk.sock" "$plugin" image="$vmdk" readonly=true &
  server_pid=$!
  wait_listening "$tmp/coblk.sock"
  sleep 0.2
}
start_qemu() {
  rm -f "$tmp/qemu.sock"
  qemu-nbd -r -t -e 8 --cache=none --aio=native -f vmdk -k "$tmp/qemu.sock" "$vmdk" &
  server_pid=$!
  wait_listening "$tmp/qemu.sock"
  sleep 0.2
}
start_qemu_raw() {
  rm -f "$tmp/qraw.sock"
  qemu-nbd -r -t -e 8 --cache=writeback -f raw -k "$tmp/qraw.sock" "$raw" &
  server_pid=$!
  wait_listening "$tmp/qraw.sock"
  cat "$raw" >/dev/null  # into the page cache
}
uri() { echo "nbd+unix:///?socket=$tmp/$1.sock"; }

bench_iops() {  # tool depth uri [extra...]
  local tool=$1 depth=$2 u=$3
  shift 3
  local out
  out=$("$tool" bench -f raw -c "$count" -d "$depth" -s 4096 -S 1052672 "$@" "$u" 2>&1) || {
    echo "n/a"; echo "$tool: $out" | tail -1 >&2; return; }
  python3 - "$count" "$out" <<'EOF'
import re, sys
m = re.search(r"Run completed in ([0-9.]+) seconds", sys.argv[2])
print(int(int(sys.argv[1]) / float(m.group(1))) if m and float(m.group(1)) > 0 else "n/a")
EOF
}
fio_iops() {  # depth uri
  fio --name=nbd --ioengine=nbd --uri="$2" --rw=randread --bs=4k --iodepth="$1" \
      --size=1g --time_based --runtime="$fio_secs" --output-format=json 2>/dev/null |
    python3 -c 'import json,sys; t=sys.stdin.read(); print(int(json.loads(t[t.index("{"):])["jobs"][0]["read"]["iops"]))' ||
    echo n/a
}
best() {
  local b
  b=$(printf '%s\n' "$@" | { grep -v n/a || true; } | sort -n | tail -1)
  echo "${b:-n/a}"
}
ratio() { python3 -c "print(f'{$1/$2:.2f}x')" 2>/dev/null || echo n/a; }

for d in $depths; do
  declare -a fc=() fq=() bc=() bq=() cc=() cr=() rc=() rq=()
  for _ in $(seq "$runs"); do
    start_coblk
    fc+=("$(fio_iops "$d" "$(uri coblk)")")
    bc+=("$(bench_iops qemu-img "$d" "$(uri coblk)")")
    stop_server
    start_qemu
    fq+=("$(fio_iops "$d" "$(uri qemu)")")
    bq+=("$(bench_iops qemu-img "$d" "$(uri qemu)")")
    cc+=("$(bench_iops "$coblk_img" "$d" "$(uri qemu)")")
    cr+=("$(bench_iops "$coblk_img" "$d" "$(uri qemu)" -r)")
    stop_server
    start_qemu_raw
    rq+=("$(bench_iops qemu-img "$d" "$(uri qraw)")")
    rc+=("$(bench_iops "$coblk_img" "$d" "$(uri qraw)")")
    stop_server
  done
  echo "== QD$d, 4 KiB reads, 1 GiB fully allocated VMDK, best of $runs =="
  printf '%-44s %12s %12s %8s\n' "servers (same client)" coblk-nbdkit qemu-nbd ratio
  for row in "fio nbd engine (libnbd), randread|fc|fq" "qemu-img bench (QEMU client), stride|bc|bq"; do
    IFS='|' read -r label a b <<<"$row"
    declare -n A=$a B=$b
    x=$(best "${A[@]}"); y=$(best "${B[@]}")
    printf '%-44s %12s %12s %8s\n' "$label" "$x" "$y" "$(ratio "$x" "$y")"
  done
  printf '%-44s %12s %12s %8s\n' "clients (qemu-nbd export)" coblk-img qemu-img ratio
  x=$(best "${cc[@]}"); y=$(best "${bq[@]}")
  printf '%-44s %12s %12s %8s\n' "bench, stride 1 MiB + 4 KiB" "$x" "$y" "$(ratio "$x" "$y")"
  printf '%-44s %12s %12s\n' "coblk-img bench -r (random)" "$(best "${cr[@]}")" "-"
  x=$(best "${rc[@]}"); y=$(best "${rq[@]}")
  printf '%-44s %12s %12s %8s\n' "bench, raw export from page cache" "$x" "$y" "$(ratio "$x" "$y")"
done
