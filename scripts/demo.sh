#!/usr/bin/env bash
# The main job, as a short demo on the release build: create a VMDK image,
# write to it, read it back with pattern verification, print its info and
# map, and check it — with coblk's tools (and qemu-img's check, if present).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
bin=$root/build/bin
work=$root/build/demo
mkdir -p "$work"
img=$work/demo.vmdk
rm -f "$img"

set -x
"$bin/coblk-img" create -f vmdk -o zeroed_grain=on "$img" 1G
"$bin/coblk-io" -c "write -P 0xab 0 1M" -c "write -P 0xcd 5M 100k" -c "write -z 64M 2M" "$img"
"$bin/coblk-io" -r -c "read -P 0xab 0 1M" -c "read -P 0xcd 5M 100k" -c "read -P 0 64M 2M" "$img"
"$bin/coblk-img" info "$img"
"$bin/coblk-img" map "$img"
"$bin/coblk-img" check "$img"
{ set +x; } 2>/dev/null
if command -v qemu-img >/dev/null; then
  echo "+ qemu-img check (interop)"
  qemu-img check "$img"
fi
"$bin/coblk-example-aio_demo" "$work/aio-demo.img"
