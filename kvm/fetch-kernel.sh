#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Fetches a Debian kernel for the KVM test tier into .cache/kvm/ without touching the system:
# a private apt configuration names bookworm-backports (Linux 6.12) on the mirror the system
# already uses; bookworm's own 6.1 is the fallback when backports cannot be reached.
# Prints the path of the unpacked tree's vmlinuz on its last line. Idempotent.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
cache=${KVM_CACHE:-$root/.cache/kvm}
apt_dir=$cache/apt
mkdir -p "$cache" "$apt_dir/lists/partial" "$apt_dir/archives/partial" "$apt_dir/etc/parts"

# Already unpacked: the newest vmlinuz under cache/kernel, unless a refetch is asked for.
existing() {
	ls -1 "$cache"/kernel/boot/vmlinuz-* 2>/dev/null | sort -V | tail -n 1
}
if [ -z "${KVM_REFETCH:-}" ] && [ -n "$(existing)" ]; then
	echo "kernel already unpacked: $(existing)" >&2
	existing
	exit 0
fi

# The mirror the system uses: first deb URI in deb822 .sources files, else sources.list.
mirror=""
for f in /etc/apt/sources.list.d/*.sources; do
	[ -r "$f" ] || continue
	# the stanza that carries the plain bookworm suite (not -security)
	mirror=$(awk '/^URIs:/{u=$2} /^Suites:/{for(i=2;i<=NF;i++) if($i=="bookworm") {print u; exit}}' "$f")
	[ -n "$mirror" ] && break
done
if [ -z "$mirror" ] && [ -r /etc/apt/sources.list ]; then
	mirror=$(awk '$1=="deb" && $0 ~ / bookworm / {for(i=2;i<=NF;i++) if($i ~ /^(https?|file):/) {print $i; exit}}' \
		/etc/apt/sources.list)
fi
if [ -z "$mirror" ]; then
	echo "fetch-kernel: no Debian bookworm mirror found in /etc/apt/sources.list{,.d}" >&2
	exit 1
fi
keyring=/usr/share/keyrings/debian-archive-keyring.gpg
[ -r "$keyring" ] || { echo "fetch-kernel: $keyring missing (apt-get install debian-archive-keyring)" >&2; exit 1; }

# apt with nothing of the system's own state: sources, lists, cache and status are private.
touch "$apt_dir/status"
# shellcheck source=kvm/apt.sh
. "$root/kvm/apt.sh" # private_apt

# Try one suite; on success set $pkg to the newest linux-image-<want>*-amd64 it offers.
try_suite() {
	local suite=$1 want=$2
	echo "deb [signed-by=$keyring] $mirror $suite main" > "$apt_dir/etc/sources.list"
	rm -rf "$apt_dir/lists"/*_dists_* 2>/dev/null || true
	if ! private_apt apt-get update -qq >"$apt_dir/update.log" 2>&1 ||
	   grep -qE '^(E:|Err:)' "$apt_dir/update.log"; then
		echo "fetch-kernel: $mirror $suite unreachable:" >&2
		sed 's/^/  /' "$apt_dir/update.log" >&2
		return 1
	fi
	# newest generic flavour by version: linux-image-6.12.95+deb12-amd64 (backports) or
	# linux-image-6.1.0-47-amd64 (bookworm); not -rt, -cloud, -dbg, -unsigned
	pkg=$(private_apt apt-cache pkgnames "linux-image-$want." |
		grep -E "^linux-image-${want//./\\.}\.[0-9]+(-[0-9]+)?(\+[a-z0-9.]+)?-amd64\$" |
		sort -V | tail -n 1)
	[ -n "$pkg" ] || { echo "fetch-kernel: no linux-image-$want*-amd64 in $suite" >&2; return 1; }
	return 0
}

pkg=""
if try_suite bookworm-backports 6.12; then
	echo "fetch-kernel: using $pkg from bookworm-backports ($mirror)" >&2
elif try_suite bookworm 6.1; then
	echo "fetch-kernel: WARNING: bookworm-backports unreachable, falling back to bookworm's $pkg;" \
		"Linux 6.1 has no KVM_CAP_MEMORY_FAULT_INFO and its tests will say so" >&2
else
	echo "fetch-kernel: no kernel package could be fetched from $mirror" >&2
	exit 1
fi

# apt-get download writes into the current directory.
(cd "$apt_dir/archives" && rm -f ./*.deb && private_apt apt-get download -qq "$pkg" >&2)
deb=$(ls -1 "$apt_dir"/archives/*.deb | head -n 1)
echo "fetch-kernel: unpacking $(basename "$deb")" >&2
rm -rf "$cache/kernel.tmp"
dpkg-deb -x "$deb" "$cache/kernel.tmp"
rm -rf "$cache/kernel"
mv "$cache/kernel.tmp" "$cache/kernel"
existing
