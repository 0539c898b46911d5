#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Builds kvm.ko + kvm-amd.ko with our patches (kvm/patches/*.patch, GPL-2.0) out of tree, from
# Debian's linux-source at the tier kernel's exact version, against Debian's headers for it, so
# the modules load into the tier's stock kernel (same vermagic, same export CRCs). Everything
# lives in .cache/kvm/kvm-src (packages, unpacked sources) and .cache/kvm/kvm-build (the tree
# that is built): a warm rebuild recompiles only the files whose content changed.
# Prints the directory holding the stripped kvm.ko and kvm-amd.ko on its last line.
# Exit 0 built; 77 (reason printed) when it cannot build here: no 6.12 tier kernel, no pahole.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
cache=${KVM_CACHE:-$root/.cache/kvm}
apt_dir=$cache/apt
src=$cache/kvm-src
bld=$cache/kvm-build
out=${KVM_MODULES_OUT:-$cache/kvm-modules}
patches=${KVM_PATCHES:-$root/kvm/patches} # KVM_PATCHES: another patch directory (experiments)

kver=$(ls -1 "$cache/kernel/lib/modules" 2>/dev/null | sort -V | tail -n 1)
if [ -z "$kver" ]; then
	echo "build-kvm: no tier kernel in $cache/kernel (run kvm/fetch-kernel.sh)" >&2
	exit 77
fi
# The mmu.c hook is 6.12's (6.13 rewrote kvm_faultin_pfn): the patch is for 6.12 only.
case "$kver" in
6.12.*) ;;
*) echo "build-kvm: the tier kernel is $kver; kvm/patches/ is written for 6.12" >&2; exit 77 ;;
esac
for tool in pahole patch objcopy modinfo dpkg-deb tar; do
	if ! command -v "$tool" >/dev/null; then
		echo "build-kvm: $tool missing (bash scripts/deps.sh kvm)" >&2
		exit 77
	fi
done
base=${kver%-amd64}     # 6.12.95+deb12
major=${kver%%.*}.$(echo "$kver" | cut -d. -f2)   # 6.12

# shellcheck source=kvm/apt.sh
. "$root/kvm/apt.sh" # private_apt: the lists fetch-kernel.sh left in $apt_dir

# 1. Packages, at the version of the image fetch-kernel.sh unpacked (its lists are still there).
mkdir -p "$src/debs"
if [ ! -e "$src/debs/.done" ]; then
	ver=$(private_apt apt-cache show "linux-image-$kver" 2>/dev/null |
		awk '/^Version:/{print $2; exit}')
	[ -n "$ver" ] || { echo "build-kvm: no version of linux-image-$kver in $apt_dir's lists" >&2; exit 77; }
	echo "build-kvm: downloading linux-source-$major $ver and the headers for $kver" >&2
	(cd "$src/debs" && rm -f ./*.deb &&
	 private_apt apt-get download -qq "linux-source-$major=$ver" "linux-headers-$kver=$ver" \
		"linux-headers-$base-common=$ver" "linux-kbuild-$base=$ver" >&2)
	touch "$src/debs/.done"
fi

# 2. Unpacked packages, and from the 153 MB tarball only what kvm.ko is made of.
hdr=$src/root/usr/src/linux-headers-$kver
if [ ! -e "$src/.unpacked" ]; then
	echo "build-kvm: unpacking" >&2
	rm -rf "$src/root" "$src/pristine"
	mkdir -p "$src/root" "$src/pristine"
	for d in "$src"/debs/*.deb; do dpkg-deb -x "$d" "$src/root"; done
	# The amd64 headers include the common ones by an absolute /usr/src path.
	sed -i "s|^include /usr/src/|include $src/root/usr/src/|" "$hdr/Makefile"
	tar -xJf "$src/root/usr/src/linux-source-$major.tar.xz" -C "$src/pristine" \
		--strip-components=1 "linux-source-$major/arch/x86/kvm" "linux-source-$major/virt/kvm" \
		"linux-source-$major/include/uapi/linux/kvm.h"
	rm -f "$src/root/usr/src/linux-source-$major.tar.xz" # 153 MB, no longer needed
	touch "$src/.unpacked"
fi

# 3. The tree to build: pristine + patches, staged, then copied over the build tree file by file
# where the content differs, so make sees new mtimes exactly on what changed.
stage=$cache/kvm-stage
rm -rf "$stage"
cp -a "$src/pristine" "$stage"
for p in "$patches"/*.patch; do
	[ -e "$p" ] || continue
	patch -s -d "$stage" -p1 --no-backup-if-mismatch < "$p" ||
		{ echo "build-kvm: $p does not apply to linux-source-$major" >&2; exit 1; }
done
kdir=$bld/arch/x86/kvm
# Out of tree, $(srctree) is the common headers, which have no arch/x86/kvm or virt/kvm.
sed -i -e "s|-I \$(srctree)/arch/x86/kvm|-I $kdir -I $bld/virt/kvm|" \
	-e "s|^include \$(srctree)/virt/kvm/Makefile.kvm|include $bld/virt/kvm/Makefile.kvm|" \
	"$stage/arch/x86/kvm/Makefile"
# The patched uapi kvm.h must win over the headers' copy: NOSTDINC_FLAGS precede LINUXINCLUDE.
echo "NOSTDINC_FLAGS += -I$bld/include/uapi" >> "$stage/arch/x86/kvm/Makefile"
(cd "$stage" && find . -type f) | while read -r f; do
	if ! cmp -s "$stage/$f" "$bld/$f"; then
		mkdir -p "$(dirname "$bld/$f")"
		cp "$stage/$f" "$bld/$f"
	fi
done
rm -rf "$stage"

# 4. Build. CONFIG_KVM_INTEL= : the tier's guest has AMD SVM only (QEMU TCG emulates it).
echo "build-kvm: building kvm.ko kvm-amd.ko for $kver" >&2
start=$(date +%s)
make -s -C "$hdr" M="$kdir" CONFIG_KVM_INTEL= -j"${KVM_JOBS:-2}" modules >&2
echo "build-kvm: built in $(($(date +%s) - start)) s" >&2

# 5. Checks: same vermagic as the stock modules; export CRCs compared with Debian's.
stock=$cache/kernel/lib/modules/$kver/kernel/arch/x86/kvm
for m in kvm kvm-amd; do
	want=$(modinfo -F vermagic "$stock"/$m.ko* | head -n 1)
	got=$(modinfo -F vermagic "$kdir/$m.ko")
	if [ "$want" != "$got" ]; then
		echo "build-kvm: $m.ko vermagic '$got' differs from the kernel's '$want'" >&2
		exit 1
	fi
done
# symbol, our CRC, Debian's CRC for every kvm export both have
crcs=$(awk '$4=="EXPORT_SYMBOL_GPL"||$4=="EXPORT_SYMBOL"{print $2, $1}' "$kdir/Module.symvers" | sort |
	join - <(awk '$3 ~ /arch\/x86\/kvm\/kvm$/{print $2, $1}' "$hdr/Module.symvers" | sort))
ncmp=$(wc -l <<<"$crcs")
ncrc=$(awk '$2!=$3' <<<"$crcs" | wc -l)
echo "build-kvm: vermagic '$got'; $ncrc of $ncmp kvm export CRCs differ from Debian's" \
	"(kvm-amd.ko is always rebuilt with kvm.ko)" >&2
mkdir -p "$out"
for m in kvm kvm-amd; do
	objcopy --strip-debug "$kdir/$m.ko" "$out/$m.ko.tmp"
	mv "$out/$m.ko.tmp" "$out/$m.ko"
done
echo "$out"
