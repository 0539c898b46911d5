#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Builds the KVM tier's initramfs (newc cpio, gzip): busybox-static, the modules that give a
# /dev/kvm under QEMU's emulated AMD SVM (irqbypass kvm ccp kvm-amd and their dependencies), the
# static test binaries given, the static pagein command as /bin/pagein (-p; the tests run
# `pagein bench --kvm` with it), and an /init that runs each test, printing
# "KVMTIER-RESULT name rc". -k DIR: kvm.ko and kvm-amd.ko from DIR (kvm/build-kvm.sh's patched
# modules) instead of the kernel package's.
# Usage: kvm/mkinitramfs.sh [-p PAGEIN] [-k KODIR] KERNEL_TREE OUT.cpio.gz TEST_BINARY...
set -euo pipefail

pagein=""
kodir=""
while [ $# -gt 0 ]; do
	case "$1" in
	-p) pagein=${2:?"-p needs the static pagein binary"}; shift 2 ;;
	-k) kodir=${2:?"-k needs the directory of the patched modules"}; shift 2 ;;
	*) break ;;
	esac
done
if [ $# -lt 2 ]; then
	echo "usage: $0 [-p PAGEIN] [-k KODIR] KERNEL_TREE OUT.cpio.gz TEST_BINARY..." >&2
	exit 2
fi
tree=$(cd "$1" && pwd)
out=$2
shift 2

for tool in busybox cpio depmod modprobe xz zstd gzip readelf; do
	command -v "$tool" >/dev/null || { echo "mkinitramfs: $tool missing (bash scripts/deps.sh kvm)" >&2; exit 1; }
done
busybox=$(command -v busybox)
# /bin/busybox from busybox-static; a dynamic busybox would need its libraries in the image.
if readelf -d "$busybox" 2>/dev/null | grep -q NEEDED; then
	echo "mkinitramfs: $busybox is dynamically linked; install busybox-static" >&2
	exit 1
fi

kver=$(ls -1 "$tree/lib/modules" | sort -V | tail -n 1)
[ -n "$kver" ] || { echo "mkinitramfs: no lib/modules/<version> under $tree" >&2; exit 1; }

# The kernel package ships no modules.dep: make one inside the unpacked tree.
[ -s "$tree/lib/modules/$kver/modules.dep" ] || depmod -b "$tree" "$kver"

stage=$(mktemp -d "${TMPDIR:-/tmp}/pagein-initramfs.XXXXXX")
trap 'rm -rf "$stage"' EXIT
mkdir -p "$stage"/{bin,sbin,proc,sys,dev,tmp,modules,tests,mnt/huge}
cp "$busybox" "$stage/bin/busybox"
for applet in sh mount umount insmod cat echo ls mkdir sleep poweroff reboot dmesg grep timeout \
	      uname head tail date sync ifconfig; do
	ln -s busybox "$stage/bin/$applet"
done

# Modules in load order, decompressed (busybox insmod reads plain .ko only).
: > "$stage/modules/order"
seen=" "
# tls and the AEAD it takes for TLS_AES_128_GCM_SHA256 (gcm, ghash; aes and ctr are built in):
# the kernel asks for crypto templates by request_module, which this initramfs cannot answer
for m in irqbypass kvm ccp kvm-amd tls gcm ghash-generic; do
	while read -r verb path _; do
		[ "$verb" = insmod ] || continue
		name=$(basename "$path")
		name=${name%.xz}; name=${name%.zst}; name=${name%.gz}
		case "$seen" in *" $name "*) continue ;; esac
		seen="$seen$name "
		if [ -n "$kodir" ] && [ -r "$kodir/$name" ]; then
			path=$kodir/$name # the patched build (plain .ko)
		fi
		case "$path" in
		*.xz)  xz -dc "$path" > "$stage/modules/$name" ;;
		*.zst) zstd -qdc "$path" > "$stage/modules/$name" ;;
		*.gz)  gzip -dc "$path" > "$stage/modules/$name" ;;
		*)     cp "$path" "$stage/modules/$name" ;;
		esac
		echo "$name" >> "$stage/modules/order"
	done < <(modprobe -d "$tree" -S "$kver" --show-depends "$m")
done

static_only() { # path: the guest has no libc
	if readelf -d "$1" 2>/dev/null | grep -q NEEDED; then
		echo "mkinitramfs: $1 is dynamically linked; the guest has no libc: link it -static" >&2
		exit 1
	fi
}
if [ -n "$pagein" ]; then
	static_only "$pagein"
	cp "$pagein" "$stage/bin/pagein"
fi
n=0
for t in "$@"; do
	static_only "$t"
	cp "$t" "$stage/tests/$(basename "$t")"
	n=$((n + 1))
done

cat > "$stage/init" <<'INIT'
#!/bin/sh
# pagein KVM tier: load KVM, run every program in /tests, report, power off.
export PATH=/bin:/sbin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
mount -t tmpfs tmp /tmp
echo
echo "KVMTIER-BEGIN kernel $(uname -r)"
for m in $(cat /modules/order); do
	insmod "/modules/$m" || echo "KVMTIER-INFO insmod $m failed"
done
if [ -c /dev/kvm ]; then
	# taint OE: the out-of-tree (patched) build of kvm.ko is loaded
	echo "KVMTIER-INFO /dev/kvm present; kvm.ko taint '$(cat /sys/module/kvm/taint 2>/dev/null)'"
else
	echo "KVMTIER-INFO /dev/kvm missing: the tests will skip; module messages follow"
	dmesg | grep -iE 'kvm|svm|ccp' | tail -n 20
fi
# Loopback for the network tests (t_kvm_ktls: kernel TLS over 127.0.0.1).
ifconfig lo 127.0.0.1 up 2>/dev/null || echo "KVMTIER-INFO loopback could not be brought up"
# Huge pages for the hugetlb backing; the tests skip it when none could be reserved.
echo 64 > /proc/sys/vm/nr_hugepages 2>/dev/null
echo "KVMTIER-INFO hugepages $(cat /proc/sys/vm/nr_hugepages)"
for t in /tests/*; do
	[ -x "$t" ] || continue
	name=${t##*/}
	echo "KVMTIER-START $name"
	timeout -s KILL 120 "$t"
	rc=$?
	echo "KVMTIER-RESULT $name $rc"
done
# Kernel complaints during the run (quiet hides WARN/BUG lines from the console).
dmesg | grep -E 'WARNING:|BUG:|Oops|Call Trace|general protection|kernel panic' |
	sed 's/^/KVMTIER-DMESG /'
echo "KVMTIER-END"
sync
poweroff -f
reboot -f
INIT
chmod 755 "$stage/init"

mkdir -p "$(dirname "$out")"
(cd "$stage" && find . -print0 | sort -z | cpio --null -o -H newc --quiet -R 0:0) | gzip -6 > "$out.tmp"
mv "$out.tmp" "$out"
nmod=$(wc -l < "$stage/modules/order")
echo "mkinitramfs: $out: kernel $kver, $nmod modules${kodir:+ (kvm.ko, kvm-amd.ko patched)}," \
	"$n tests${pagein:+, /bin/pagein}" >&2
