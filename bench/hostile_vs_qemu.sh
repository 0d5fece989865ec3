#!/usr/bin/env bash
# Issue 10's measurement: peak RSS and wall time of `info`, `map`, `check`
# and `-c "read 0 512"` on each hostile file of the corpus, for coblk-img /
# coblk-io (this build, and optionally an older one: BEFORE=<dir>) side by
# side with qemu-img / qemu-io, in the same run.
#
# The files come from the hostile corpus test's generators
# (HostileTest.WriteCorpusForMeasurement in
# tests/drivers/vmdk/hostile_corpus_test.cc), written to $OUT:
#   confine/in/child.vmdk   confined child whose parent hint leaves its directory
#                           (coblk opens it with confine-extents=on; QEMU has no such option)
#   loop/self.vmdk, a.vmdk  backing loops (self, A -> B -> A)
#   huge/zero8e.vmdk        one 8 EiB ZERO extent
#   huge/huge.vmdk          2^40-sector monolithicSparse, one grain (64 MiB directory, a hole)
#   many/flat4k, flat40k    4,000 / 40,000 one-sector FLAT lines of one file
#   many/zero100k           100,000 ZERO lines
#   many/flat65k            65,000 FLAT lines of one file (the most a 1 MiB
#                           descriptor holds; QEMU 7.2 opens the file per line)
#   vmdk3/v3.vmdk           1 KiB VMDK3 declaring 2^32 sectors
#   stream/bigrain.vmdk     streamOptimized, one 1 GiB grain holding 4 KiB of data
#   deep/l0.vmdk            a 2,000-level backing chain
#
# Each command runs under `timeout $TIMEOUT` (default 30 s; QEMU loops
# forever on some of these) and /usr/bin/time. A cell is "seconds/MB" of
# the best of RUNS runs (default 1), then the exit status when it is not 0
# ("!124" = timed out; an error exit is often the right answer, e.g. a loop
# refused at open).
#
# Usage: bench/hostile_vs_qemu.sh [build-dir]   (default: build)
#   BEFORE=<dir holding older coblk-img and coblk-io> adds a "before" column
#   OUT=<dir> (default build-dir/bench-hostile), TIMEOUT=30, RUNS=1,
#   FILES="huge/huge.vmdk ..." to measure only some files, OPS="info map check read"
#   (rread: the read with -r, a read-only open).
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
build=$(cd "${1:-$here/build}" && pwd)  # absolute: works from any directory
out=${OUT:-$build/bench-hostile}
timeout_s=${TIMEOUT:-30}
runs=${RUNS:-1}
ops=${OPS:-"info map check read"}
before=${BEFORE:-}

[ -x /usr/bin/time ] || { echo "/usr/bin/time not installed (apt-get install time)"; exit 1; }
command -v qemu-img >/dev/null || { echo "qemu-img not installed (apt-get install qemu-utils)"; exit 1; }
for t in coblk-img coblk-io drivers_vmdk_test; do
  [ -x "$build/bin/$t" ] || { echo "$build/bin/$t not built (scripts/build.sh release)"; exit 1; }
done

if [ ! -f "$out/deep/l0.vmdk" ] || [ ! -f "$out/many/flat65k.vmdk" ]; then
  echo "writing the hostile corpus to $out ..." >&2
  mkdir -p "$out"
  COBLK_HOSTILE_OUT=$out "$build/bin/drivers_vmdk_test" \
    --gtest_filter=HostileTest.WriteCorpusForMeasurement >/dev/null
fi

files=${FILES:-"confine/in/child.vmdk loop/self.vmdk loop/a.vmdk huge/zero8e.vmdk huge/huge.vmdk
  many/flat4k.vmdk many/flat40k.vmdk many/zero100k.vmdk many/flat65k.vmdk vmdk3/v3.vmdk
  stream/bigrain.vmdk
  deep/l0.vmdk"}

stats=$(mktemp)
trap 'rm -f "$stats"' EXIT

# measure <cmd...>: "seconds/MB[!status]", best time of $runs runs.
measure() {
  local best="" rss="" st=0 line t m s
  for ((r = 0; r < runs; r++)); do
    /usr/bin/time -o "$stats" -f "@@ %e %M %x" timeout "$timeout_s" "$@" >/dev/null 2>&1 || true
    line=$(grep '^@@' "$stats" | tail -1)
    read -r _ t m s <<<"$line"
    if [ -z "$best" ] || (($(echo "$t < $best" | bc -l))); then best=$t rss=$m st=$s; fi
  done
  local cell
  cell=$(printf "%.2fs/%dMB" "$best" $(((rss + 512) / 1024)))
  [ "$st" != 0 ] && cell="$cell!$st"
  printf "%s" "$cell"
}

# The command for one tool flavour (coblk dir or "qemu"), operation and file.
run_op() {
  local who=$1 op=$2 file=$3
  local img io spec=("$file")
  if [ "$who" = qemu ]; then
    img=qemu-img io=qemu-io
  else
    img=$who/coblk-img io=$who/coblk-io
    case "$file" in
      confine/*) spec=(--image-opts "driver=vmdk,confine-extents=on,file.filename=$file") ;;
    esac
  fi
  case "$op" in
    info) measure "$img" info "${spec[@]}" ;;
    map) measure "$img" map "${spec[@]}" ;;
    check) measure "$img" check "${spec[@]}" ;;
    read) measure "$io" -c "read 0 512" "${spec[@]}" ;;
    rread) measure "$io" -r -c "read 0 512" "${spec[@]}" ;;
  esac
}

cd "$out"
header=$(printf "%-24s %-6s" file op)
[ -n "$before" ] && header+=$(printf " %-18s" "coblk before")
header+=$(printf " %-18s %-18s" "coblk" "qemu 7.2")
echo "$header"
echo "(cells: best wall time / peak RSS; !N = exit status N, !124 = killed after ${timeout_s}s)"
for f in $files; do
  for op in $ops; do
    row=$(printf "%-24s %-6s" "$f" "$op")
    [ -n "$before" ] && row+=$(printf " %-18s" "$(run_op "$before" "$op" "$f")")
    row+=$(printf " %-18s" "$(run_op "$build/bin" "$op" "$f")")
    row+=$(printf " %-18s" "$(run_op qemu "$op" "$f")")
    echo "$row"
  done
done
