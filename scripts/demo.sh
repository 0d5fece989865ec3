#!/usr/bin/env bash
# The main job, as a short demo on the release build.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
bin=$root/build/bin
work=$root/build/demo
mkdir -p "$work"
"$bin/coblk-example-aio_demo" "$work/aio-demo.img"
