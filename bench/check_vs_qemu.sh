#!/usr/bin/env bash
# check of a 64 GiB monolithicSparse VMDK with 10 % of its grains allocated:
# qemu-img check (QEMU's vmdk: one lookup per grain, entries below EOF
# only) vs coblk-img check (every table read once; leaks, duplicates,
# entries into metadata, redundant tables compared), same image, same run.
#
# The image is made by qemu-img create; then a random 10 % of the grains
# (seeded) get table entries, primary and redundant, pointing at grains
# appended in guest order, and the file is extended sparsely over them:
# no data is written (neither check reads uncompressed grain data), so the
# image costs seconds and no disk space. Both checks must report it clean.
#
# Usage: bench/check_vs_qemu.sh [build-dir]   (default: build)
#   SIZE=64G PERCENT=10 RUNS=5 SEED=13; COBLK_BENCH_DIR=dir for the image.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
build=$(cd "${1:-$here/build}" && pwd)  # absolute: works from any directory
coblk_img=$build/bin/coblk-img
size=${SIZE:-64G}
percent=${PERCENT:-10}
runs=${RUNS:-5}
seed=${SEED:-13}
command -v qemu-img >/dev/null || { echo "qemu-img not installed (apt-get install qemu-utils)"; exit 1; }
[ -x "$coblk_img" ] || { echo "$coblk_img not built (scripts/build.sh release)"; exit 1; }
dir=$(mktemp -d "${COBLK_BENCH_DIR:-$build}/check-bench-XXXXXX")
trap 'rm -rf "$dir"' EXIT
img=$dir/sparse.vmdk

qemu-img create -q -f vmdk "$img" "$size"
python3 - "$img" "$percent" "$seed" <<'EOF'
import os, random, struct, sys
path, percent, seed = sys.argv[1], float(sys.argv[2]), int(sys.argv[3])
with open(path, 'r+b') as f:
    h = f.read(512)
    capacity, granularity = struct.unpack_from('<QQ', h, 12)
    gtes, = struct.unpack_from('<I', h, 44)
    rgd, gd = struct.unpack_from('<QQ', h, 48)
    grains = capacity // granularity
    tables = (grains + gtes - 1) // gtes
    chosen = sorted(random.Random(seed).sample(range(grains), int(grains * percent / 100)))
    end = os.fstat(f.fileno()).st_size
    next_sector = (end + granularity * 512 - 1) // (granularity * 512) * granularity
    for base in (gd, rgd):
        f.seek(base * 512)
        dir_entries = struct.unpack('<%dI' % tables, f.read(4 * tables))
        first = dir_entries[0]
        assert list(dir_entries) == [first + i * (gtes * 4 // 512) for i in range(tables)], 'tables not contiguous'
        f.seek(first * 512)
        area = bytearray(f.read(tables * gtes * 4))
        sector = next_sector
        for g in chosen:
            struct.pack_into('<I', area, g * 4, sector)
            sector += granularity
        f.seek(first * 512)
        f.write(area)
    f.truncate(sector * 512)
print('%d of %d grains allocated, file %d bytes (sparse)' % (len(chosen), grains, sector * 512))
EOF

run() {  # prints seconds of the best of $runs runs; fails unless the check is clean
  local best=
  for _ in $(seq "$runs"); do
    local t0 t1
    t0=$(date +%s.%N)
    "$@" >/dev/null 2>&1 || { echo "FAILED: $* (exit $?)" >&2; "$@" >&2 || true; exit 1; }
    t1=$(date +%s.%N)
    best=$(echo "$t0 $t1 $best" | awk '{d = $2 - $1; if ($3 == "" || d < $3) print d; else print $3}')
  done
  echo "$best"
}
# Warm the page cache for both.
qemu-img check -f vmdk "$img" >/dev/null
"$coblk_img" check -f vmdk "$img" >/dev/null
q=$(run qemu-img check -f vmdk "$img")
c=$(run "$coblk_img" check -f vmdk "$img")
"$coblk_img" check -f vmdk "$img" | sed 's/^/coblk-img: /'
printf 'check, %s VMDK, %s%% grains allocated, best of %d runs:\n' "$size" "$percent" "$runs"
printf '  qemu-img check   %8.3f s\n' "$q"
printf '  coblk-img check  %8.3f s   (%.1fx qemu-img)\n' "$c" "$(echo "$c $q" | awk '{print $1 / $2}')"
