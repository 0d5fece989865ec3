#!/usr/bin/env bash
# One command: install dependencies, build (release), run the demo.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
"$root/scripts/install-deps.sh"
"$root/scripts/build.sh" release
"$root/scripts/demo.sh"
