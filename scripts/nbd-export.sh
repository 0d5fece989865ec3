#!/usr/bin/env bash
# Exports a coblk image over NBD in one command (nbdkit + coblk's plugin).
#
#   scripts/nbd-export.sh disk.vmdk                      # unix socket ./coblk-nbd.sock
#   scripts/nbd-export.sh -s /tmp/d.sock -r disk.vmdk    # read-only
#   scripts/nbd-export.sh -p 10809 disk.vmdk             # TCP on localhost:10809
#   scripts/nbd-export.sh 'json:{"driver":"vmdk","file":{"filename":"disk.vmdk"}}'
#   scripts/nbd-export.sh -o driver=vmdk,file.filename=disk.vmdk
#
# Runs in the foreground (Ctrl-C or SIGTERM stops it and closes the image
# cleanly) unless -b is given, which returns once the export is listening
# and prints the server's pid. Prints the URI clients use, e.g.
#   qemu-io -f raw nbd+unix:///?socket=$PWD/coblk-nbd.sock
#
# Options: -s SOCKET  unix socket path (default ./coblk-nbd.sock)
#          -p PORT    listen on TCP instead (-i ADDR to choose the address,
#                     default 127.0.0.1)
#          -r         export read-only (the image is opened read-only)
#          -f FORMAT  format driver (default: probed)
#          -o OPTS    a coblk option string instead of an image name
#          -t N       nbdkit worker threads per connection (default 32)
#          -b         background: return when listening, print the pid
#          -P PLUGIN  plugin path (default build/lib/nbdkit-coblk-plugin.so)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
socket="$PWD/coblk-nbd.sock"
port=""
addr=127.0.0.1
readonly_=0
format=""
opts=""
threads=32
background=0
plugin="$root/build/lib/nbdkit-coblk-plugin.so"

usage() { sed -n '2,/^set /p' "$0" | grep '^#' | sed 's/^# \{0,1\}//'; exit "${1:-2}"; }

while getopts "s:p:i:rf:o:t:bP:h" opt; do
  case "$opt" in
    s) socket=$(realpath -m "$OPTARG") ;;
    p) port=$OPTARG ;;
    i) addr=$OPTARG ;;
    r) readonly_=1 ;;
    f) format=$OPTARG ;;
    o) opts=$OPTARG ;;
    t) threads=$OPTARG ;;
    b) background=1 ;;
    P) plugin=$OPTARG ;;
    h) usage 0 ;;
    *) usage ;;
  esac
done
shift $((OPTIND - 1))

if [ -n "$opts" ]; then
  [ $# -eq 0 ] || { echo "nbd-export: give either -o OPTS or an image, not both" >&2; exit 2; }
  params=("opts=$opts")
else
  [ $# -eq 1 ] || usage
  image=$1
  case "$image" in
    json:*) params=("json=$image") ;;
    *) [ -e "$image" ] || { echo "nbd-export: $image: No such file or directory" >&2; exit 1; }
       params=("image=$(realpath "$image")") ;;
  esac
fi
[ -n "$format" ] && params+=("format=$format")
command -v nbdkit >/dev/null || { echo "nbd-export: nbdkit is not installed (scripts/install-deps.sh)" >&2; exit 1; }
[ -f "$plugin" ] || { echo "nbd-export: $plugin not found; build first: scripts/build.sh release" >&2; exit 1; }

args=(--threads "$threads")
[ "$readonly_" = 1 ] && { args+=(-r); params+=("readonly=true"); }
if [ -n "$port" ]; then
  args+=(-i "$addr" -p "$port")
  uri="nbd://$addr:$port/"
else
  rm -f "$socket"
  args+=(-U "$socket")
  uri="nbd+unix:///?socket=$socket"
fi

if [ "$background" = 1 ]; then
  pidfile=$(mktemp)
  # nbdkit forks once it is listening (after the image opened) and writes its pid.
  nbdkit -P "$pidfile" "${args[@]}" "$plugin" "${params[@]}"
  echo "$uri"
  echo "pid $(cat "$pidfile")  (stop with: kill $(cat "$pidfile"))"
  rm -f "$pidfile"
else
  echo "$uri" >&2
  exec nbdkit -f "${args[@]}" "$plugin" "${params[@]}"
fi
