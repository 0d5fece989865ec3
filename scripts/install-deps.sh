#!/usr/bin/env bash
# Installs everything coblk needs on Debian 12 (as root, or with sudo).
set -euo pipefail
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO=sudo
pkgs=(g++ cmake make libaio-dev zlib1g-dev libgtest-dev libgmock-dev libbenchmark-dev
      nlohmann-json3-dev qemu-utils fio libvmdk-utils python3
      pkg-config libnbd-dev nbdkit nbdkit-plugin-dev time bc ninja-build lld)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
