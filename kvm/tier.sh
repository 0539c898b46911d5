#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Runs the KVM test tier from already built static programs ($B/kvm/t_kvm_*, $B/kvm/pagein):
# checks the tools, fetches the kernel, builds the initramfs, boots it. On a host without
# /dev/kvm it first checks that `pagein bench --kvm` refuses with exit 77 (no fake result). Exit 0
# pass, 1 fail, 77 skip (reason printed): the main test runner calls it after `make kvm-tests`.
set -uo pipefail

cd "$(dirname "$0")/.."
B=${B:-build}

bash kvm/run.sh --check || exit $?
# One tier at a time per build directory: a second one would rewrite the initramfs and the
# console log under the first one's QEMU.
mkdir -p "$B/kvm"
if command -v flock >/dev/null; then
	exec 9>"$B/kvm/tier.lock"
	if ! flock -n 9; then
		echo "KVM tier: another one is running with $B/kvm; waiting for it (at most 300 s)"
		flock -w 300 9 || { echo "KVM tier: $B/kvm/tier.lock still held after 300 s"; exit 1; }
	fi
fi
vmlinuz=$(bash kvm/fetch-kernel.sh | tail -n 1)
if [ -z "$vmlinuz" ] || [ ! -r "$vmlinuz" ]; then
	echo "KVM tier skipped: no guest kernel could be fetched (messages above)"
	exit 77
fi
tests=()
for t in "$B"/kvm/t_kvm_*; do
	case "$t" in *.d|*.o) continue ;; esac
	[ -x "$t" ] && tests+=("$t")
done
if ((${#tests[@]} == 0)); then
	echo "KVM tier: no test programs in $B/kvm (run: make kvm-tests)"
	exit 1
fi
if [ ! -x "$B/kvm/pagein" ]; then
	echo "KVM tier: no static $B/kvm/pagein (run: make kvm-tests)"
	exit 1
fi
if [ ! -e /dev/kvm ]; then
	msg=$("$B/kvm/pagein" bench --kvm --vcpus 1 -b 64K 2>&1); rc=$?
	if [ "$rc" != 77 ] || ! grep -q 'no /dev/kvm here' <<<"$msg"; then
		echo "FAIL host without /dev/kvm: pagein bench --kvm exited $rc, want 77 and a reason:"
		sed 's/^/  /' <<<"$msg"
		exit 1
	fi
	echo "host without /dev/kvm: pagein bench --kvm exits 77: ${msg#pagein bench --kvm: }"
fi
tree=$(dirname "$(dirname "$vmlinuz")")
# Our KVM patch (kvm/patches/, GPL-2.0), built against this kernel. KVM_STOCK=1 boots the
# kernel's own modules instead: the exit-on-missing tests then skip and say why.
kvm_mods=()
if [ -z "${KVM_STOCK:-}" ]; then
	kodir=$(bash kvm/build-kvm.sh | tail -n 1); rc=${PIPESTATUS[0]}
	case "$rc" in
	0) kvm_mods=(-k "$kodir") ;;
	77) echo "KVM tier: the patched KVM cannot be built here (above); stock modules, the" \
		"exit-on-missing tests will skip" ;;
	*) echo "FAIL building the patched kvm.ko/kvm-amd.ko (kvm/build-kvm.sh exit $rc)"; exit 1 ;;
	esac
else
	echo "KVM tier: KVM_STOCK set: the kernel's own kvm.ko/kvm-amd.ko"
fi
bash kvm/mkinitramfs.sh -p "$B/kvm/pagein" "${kvm_mods[@]}" "$tree" "$B/kvm/initramfs.cpio.gz" \
	"${tests[@]}" || exit 1
exec bash kvm/run.sh "$vmlinuz" "$B/kvm/initramfs.cpio.gz" "$B/kvm/console.log"
