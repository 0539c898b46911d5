#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Runs the KVM test tier from already built static programs ($B/kvm/t_kvm_*): checks the tools,
# fetches the kernel, builds the initramfs, boots it. Exit 0 pass, 1 fail, 77 skip (reason
# printed): the main test runner calls it after `make kvm-tests`.
set -uo pipefail

cd "$(dirname "$0")/.."
B=${B:-build}

bash kvm/run.sh --check || exit $?
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
tree=$(dirname "$(dirname "$vmlinuz")")
bash kvm/mkinitramfs.sh "$tree" "$B/kvm/initramfs.cpio.gz" "${tests[@]}" || exit 1
exec bash kvm/run.sh "$vmlinuz" "$B/kvm/initramfs.cpio.gz" "$B/kvm/console.log"
