#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Installs (as root, with apt-get) the Debian packages a build target needs, or says exactly
# what is missing. Usage: scripts/deps.sh build|bench|kvm|fuzz|qemu10
# qemu10: QEMU 10 from bookworm-backports unpacked into .cache/qemu10 (bench/qemu.sh), not installed.
set -euo pipefail

want=()
case "${1:-build}" in
build) want=(gcc make pkg-config libxxhash-dev liblz4-dev libssl-dev) ;;
bench) want=(gcc make pkg-config libxxhash-dev liblz4-dev libssl-dev gnuplot-nox python3 cpio) ;;
kvm)   want=(qemu-system-x86 busybox-static cpio kmod zstd xz-utils pahole) ;;
fuzz)  want=(clang libclang-rt-14-dev bc) ;;
qemu10) exec bash "$(dirname "$0")/../bench/qemu-fetch.sh" ;;
*) echo "deps.sh: unknown set '$1' (build|bench|kvm|fuzz|qemu10)" >&2; exit 2 ;;
esac

missing=()
for p in "${want[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
((${#missing[@]})) || exit 0

if [ "$(id -u)" != 0 ]; then
	echo "missing Debian packages: ${missing[*]}" >&2
	echo "install them with: sudo apt-get install -y ${missing[*]}" >&2
	exit 1
fi
echo "installing Debian packages: ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >/dev/null || true
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
