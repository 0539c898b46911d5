#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Boots the KVM tier's kernel + initramfs under QEMU TCG (emulated AMD SVM gives a real /dev/kvm),
# with a hard time limit, logs the serial console and turns the KVMTIER-RESULT lines into
# pass/fail/skip. Exit 0: every test passed or skipped; 1: a failure, a guest crash or a time-out.
# Usage: kvm/run.sh VMLINUZ INITRD [LOG]    |    kvm/run.sh --check (exit 77 + reason if unusable)
# KVM_TIMEOUT (seconds, default 240) bounds the boot; KVM_APPEND adds kernel arguments (NAME=value
# ones reach the tests as environment variables, e.g. KVMTIER_RAW=1).
set -uo pipefail

QEMU=${QEMU:-qemu-system-x86_64}
LIMIT=${KVM_TIMEOUT:-240} # seconds for the whole boot; the tier must stay under 5 minutes

check() {
	local p missing=()
	command -v "$QEMU" >/dev/null || missing+=("$QEMU (package qemu-system-x86)")
	command -v busybox >/dev/null || missing+=("busybox (package busybox-static)")
	command -v cpio >/dev/null || missing+=("cpio")
	command -v depmod >/dev/null || missing+=("depmod (package kmod)")
	command -v timeout >/dev/null || missing+=("timeout (package coreutils)")
	if ((${#missing[@]})); then
		echo "KVM tier skipped: missing ${missing[*]}; install with: bash scripts/deps.sh kvm"
		return 77
	fi
	return 0
}

if [ "${1:-}" = "--check" ]; then
	check
	exit $?
fi
if [ $# -lt 2 ]; then
	echo "usage: $0 VMLINUZ INITRD [LOG] | $0 --check" >&2
	exit 2
fi
check || exit $?
kernel=$1
initrd=$2
log=${3:-$(dirname "$initrd")/console.log}
[ -r "$kernel" ] || { echo "kvm/run.sh: no kernel at $kernel (run kvm/fetch-kernel.sh)" >&2; exit 1; }
[ -r "$initrd" ] || { echo "kvm/run.sh: no initramfs at $initrd (run kvm/mkinitramfs.sh)" >&2; exit 1; }

# thread=single: multi-threaded TCG with -smp 2 crashed or froze the guest in ~1 boot of 4 when
# VMs were created and destroyed (REFERENCE.md §2); single-threaded TCG has not.
echo "kvm/run.sh: booting $(basename "$kernel") under QEMU TCG (limit ${LIMIT}s), console -> $log"
start=$(date +%s)
timeout -k 10 "$LIMIT" "$QEMU" -accel tcg,thread=single -cpu max -m 2G -smp 2 \
	-nographic -no-reboot -monitor none -serial stdio -nodefaults \
	-kernel "$kernel" -initrd "$initrd" \
	-append "console=ttyS0 quiet panic=-1 oops=panic ${KVM_APPEND:-}" </dev/null >"$log" 2>&1
qrc=$?
secs=$(($(date +%s) - start))
# Drop carriage returns and the firmware's terminal escapes so markers start their lines.
sed -E 's/\r//g; s/\x1b\[[0-9;?]*[A-Za-z]//g; s/\x1bc//g' "$log" > "$log.txt" && mv "$log.txt" "$log"

# The tests' own output, without the markers, so failures can be read in place.
grep -vE '^KVMTIER-(START|BEGIN|END)|^SeaBIOS|^Booting from|^$' "$log" | sed 's/^/  | /'

pass=0 fail=0 skip=0
fails=()
while read -r _ name rc; do
	case "$rc" in
	0)  echo "PASS $name"; pass=$((pass + 1)) ;;
	77) echo "SKIP $name"; skip=$((skip + 1)) ;;
	*)  echo "FAIL $name (exit $rc)"; fail=$((fail + 1)); fails+=("$name") ;;
	esac
done < <(grep -E '^KVMTIER-RESULT [^ ]+ [0-9]+$' "$log")

bad=0
started=$(grep -c '^KVMTIER-START ' "$log")
finished=$(grep -c '^KVMTIER-RESULT ' "$log")
# timeout: 124 after SIGTERM did it, 137 when QEMU needed the SIGKILL 10 s later
if [ "$qrc" = 124 ] || [ "$qrc" = 137 ]; then
	echo "FAIL guest timed out after ${LIMIT}s (QEMU killed)"
	bad=1
fi
# WARNING: too (a WARN_ON's line; under `quiet` it reaches the log through /init's dmesg dump)
if grep -qE 'Oops|Kernel panic|BUG:|general protection fault|Call Trace|WARNING:' "$log"; then
	echo "FAIL guest kernel crashed or complained:"
	grep -E 'Oops|Kernel panic|BUG:|general protection fault|Call Trace|WARNING:' "$log" | head -n 10 | sed 's/^/  /'
	bad=1
fi
if ! grep -q '^KVMTIER-BEGIN' "$log"; then
	echo "FAIL the guest never reached /init (see $log)"
	bad=1
elif ! grep -q '^KVMTIER-END' "$log"; then
	echo "FAIL /init did not finish: $started tests started, $finished finished (see $log)"
	bad=1
fi
if [ "$started" = 0 ] && [ "$bad" = 0 ]; then
	echo "FAIL no test ran in the guest"
	bad=1
fi
echo "KVM tier: $pass passed, $fail failed, $skip skipped; boot+tests+poweroff ${secs}s" \
	"(timings inside the emulated guest say nothing about real performance)"
if [ "$fail" != 0 ] || [ "$bad" != 0 ]; then
	exit 1
fi
exit 0
