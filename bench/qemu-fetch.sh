#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Fetches QEMU 10 (qemu-system-x86 and the packages its x86 machine needs at run time) from
# Debian bookworm-backports into .cache/qemu10/root, without installing it: the system's QEMU 7.2
# (the KVM tier's) stays as it is. A private apt configuration (kvm/apt.sh) names only
# bookworm-backports; `apt-get download` and `dpkg-deb -x` unpack the packages. Run it as root
# (apt-get with private lists); `scripts/deps.sh qemu10` runs it too.
# Prints the unpacked tree on its last line. Idempotent. Exit 0, 77 when it cannot fetch
# (not root, archive unreachable, no 10.x there: the reason is printed), 1 on other errors.
# Env: QEMU10_CACHE (default .cache/qemu10), QEMU10_REFETCH=1 to fetch again.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
cache=${QEMU10_CACHE:-$root/.cache/qemu10}
tree=$cache/root
apt_dir=$cache/apt
pkgs=(qemu-system-x86 qemu-system-common qemu-system-data seabios)

works() {
	[ -x "$tree/usr/bin/qemu-system-x86_64" ] &&
		"$tree/usr/bin/qemu-system-x86_64" --version 2>/dev/null | grep -q 'version 10\.'
}
if [ -z "${QEMU10_REFETCH:-}" ] && works; then
	echo "qemu-fetch: $("$tree/usr/bin/qemu-system-x86_64" --version | head -n 1) already in $tree" >&2
	echo "$tree"
	exit 0
fi
skip() {
	echo "qemu-fetch: $*" >&2
	exit 77
}
[ "$(id -u)" = 0 ] || skip "not root: run it as root (sudo bash bench/qemu-fetch.sh), or unpack" \
	"Debian bookworm-backports' ${pkgs[*]} into $tree yourself"
for t in apt-get dpkg-deb; do
	command -v "$t" >/dev/null || skip "$t missing: this fetch needs a Debian system"
done
keyring=/usr/share/keyrings/debian-archive-keyring.gpg
[ -r "$keyring" ] || skip "$keyring missing (apt-get install debian-archive-keyring)"

# The mirror the system uses for bookworm (as kvm/fetch-kernel.sh finds it), else Debian's own.
mirror=""
for f in /etc/apt/sources.list.d/*.sources; do
	[ -r "$f" ] || continue
	mirror=$(awk '/^URIs:/{u=$2} /^Suites:/{for(i=2;i<=NF;i++) if($i=="bookworm") {print u; exit}}' "$f")
	[ -n "$mirror" ] && break
done
if [ -z "$mirror" ] && [ -r /etc/apt/sources.list ]; then
	mirror=$(awk '$1=="deb" && $0 ~ / bookworm / {for(i=2;i<=NF;i++) if($i ~ /^(https?|file):/) {print $i; exit}}' \
		/etc/apt/sources.list)
fi
mirror=${mirror:-http://deb.debian.org/debian}

mkdir -p "$apt_dir/lists/partial" "$apt_dir/archives/partial" "$apt_dir/etc/parts"
touch "$apt_dir/status"
# shellcheck source=kvm/apt.sh
. "$root/kvm/apt.sh" # private_apt
echo "deb [signed-by=$keyring] $mirror bookworm-backports main" >"$apt_dir/etc/sources.list"
rm -rf "$apt_dir/lists"/*_dists_* 2>/dev/null || true
if ! private_apt apt-get update -qq >"$apt_dir/update.log" 2>&1 ||
   grep -qE '^(E:|Err:)' "$apt_dir/update.log"; then
	sed 's/^/  /' "$apt_dir/update.log" >&2
	skip "$mirror bookworm-backports is unreachable (above)"
fi
ver=$(private_apt apt-cache policy qemu-system-x86 | awk '/Candidate:/{print $2}')
case "$ver" in
1:10.*) echo "qemu-fetch: qemu-system-x86 $ver from $mirror bookworm-backports" >&2 ;;
*) skip "bookworm-backports offers qemu-system-x86 '${ver:-none}', not 10.x" ;;
esac

(cd "$apt_dir/archives" && rm -f ./*.deb && private_apt apt-get download -qq "${pkgs[@]}" >&2) ||
	skip "apt-get download ${pkgs[*]} failed (above)"
rm -rf "$tree.tmp"
for deb in "$apt_dir"/archives/*.deb; do
	echo "qemu-fetch: unpacking $(basename "$deb")" >&2
	dpkg-deb -x "$deb" "$tree.tmp"
done
# The binary links the system's libraries (bookworm ones: backports builds against bookworm).
missing=$(ldd "$tree.tmp/usr/bin/qemu-system-x86_64" 2>/dev/null | awk '/not found/{print $1}' | tr '\n' ' ')
[ -z "$missing" ] || skip "QEMU 10 needs libraries this system lacks: $missing(apt-get install them)"
rm -rf "$tree"
mv "$tree.tmp" "$tree"
works || { echo "qemu-fetch: $tree/usr/bin/qemu-system-x86_64 does not run" >&2; exit 1; }
echo "$tree"
