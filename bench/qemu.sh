#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# bench/qemu.sh - issue 11's QEMU target, measured in one run: `pagein demo --size 1G` against
# QEMU 10's post-copy of a 1 GiB guest on loopback, without and with QEMU's preempt channel,
# in pairs run back to back (the two halves of a pair alternate which goes first).
#
# QEMU side (bench/qemu-run.py): QEMU 10 from bookworm-backports, unpacked into .cache/qemu10
# (bench/qemu-fetch.sh; the system's QEMU is not touched), TCG, 1 vCPU, 1280 MiB, the KVM tier's
# Debian kernel (kvm/fetch-kernel.sh) with bench/qemu/guest.c as the whole initramfs: it fills
# 1 GiB with the image `pagein demo` serves (same pattern, same zero pages), then reads one word
# of every page in order, again and again, checking each. Once it is filled: `migrate` and at
# once `migrate-start-postcopy`. Timed: from migrate-start-postcopy to the destination's
# MIGRATION "completed" event (its last page is in place). pagein side: `elapsed_s` of the demo's
# JSON summary: from the destination's start to full residency (two threads reading in order).
#
# Writes bench/results/qemu.txt (table, raw times, `ratio_vs_qemu:` and
# `ratio_vs_qemu_preempt:`, each the median over the pairs of pagein's time / QEMU's) and
# bench/results/qemu.jsonl (every run). Exit 0, 1 when a run failed, 77 when it cannot run here
# (reason printed). Env: B (build dir), PAGEIN_BIN, BENCH_QEMU_PAIRS (default 5),
# BENCH_QEMU_MEM (guest RAM, default 1280M), BENCH_QEMU_GUEST (busy: the guest reads without
# pause, the default; idle: one checking pass every 10 s), KVM_CACHE and QEMU10_CACHE (where the
# kernel and QEMU 10 are kept).
set -uo pipefail

cd "$(dirname "$0")/.." || exit 1
B=${B:-build}
BIN=${PAGEIN_BIN:-$B/pagein}
PAIRS=${BENCH_QEMU_PAIRS:-5}
MEM=${BENCH_QEMU_MEM:-1280M}
GUEST=${BENCH_QEMU_GUEST:-busy}
out=bench/results
txt=$out/qemu.txt
jsonl=$out/qemu.jsonl
work=$B/qemu

skip() {
	echo "bench/qemu.sh: skipped: $*"
	exit 77
}

# One run per build directory: the trap below kills the QEMUs whose pid files are in $work, so
# a second run there would kill the first one's.
mkdir -p "$work"
if command -v flock >/dev/null; then
	exec 9>"$work/lock"
	flock -n 9 || { echo "bench/qemu.sh: another run is using $work (set B to another build dir)" >&2; exit 1; }
fi

# Everything this script starts runs under `timeout`; QEMU is started only by
# qemu-run.py, which kills it on every way out and gives it PR_SET_PDEATHSIG. The trap is the
# last line: kill the QEMU whose pid files are still there (by their own pids only).
# shellcheck disable=SC2317 # called by the trap
cleanup() {
	local f pid
	for f in "$work"/run-*/src.pid "$work"/run-*/dst.pid; do
		[ -r "$f" ] || continue
		pid=$(cat "$f" 2>/dev/null)
		[ -n "$pid" ] && [ -d "/proc/$pid" ] && grep -q qemu "/proc/$pid/comm" 2>/dev/null &&
			kill -9 "$pid" 2>/dev/null
		rm -f "$f"
	done
}
# The current run goes in the background and is waited for, so that a signal reaches the trap
# at once (bash runs traps only between foreground commands); the trap passes it on.
child=""
run_bg() { # OUTFILE CMD...: run CMD with its stdout in OUTFILE, and wait for it
	local o=$1
	shift
	"$@" >"$o" &
	child=$!
	wait "$child"
	local rc=$?
	child=""
	return "$rc"
}
# shellcheck disable=SC2317 # called by the trap
on_signal() {
	[ -n "$child" ] && kill -TERM "$child" 2>/dev/null && wait "$child" 2>/dev/null
	exit 130
}
trap cleanup EXIT
trap on_signal INT TERM

[[ "$PAIRS" =~ ^[1-9][0-9]?$ ]] || { echo "bench/qemu.sh: BENCH_QEMU_PAIRS must be 1..99" >&2; exit 2; }
[[ "$GUEST" =~ ^(busy|idle)$ ]] || { echo "bench/qemu.sh: BENCH_QEMU_GUEST must be busy or idle" >&2; exit 2; }
[ -x "$BIN" ] || { echo "bench/qemu.sh: $BIN is not built: run make first (or set B / PAGEIN_BIN)" >&2; exit 1; }
for t in python3 gcc cpio gzip timeout; do
	command -v "$t" >/dev/null || skip "$t missing"
done
avail_kib=$(awk '/^MemAvailable:/{print $2}' /proc/meminfo)
# two 1280 MiB guests at once, or the demo's image plus its copy, and room
((avail_kib > 4 * 1024 * 1024)) || skip "less than 4 GiB of memory available ($((avail_kib >> 10)) MiB)"

vmlinuz=$(bash kvm/fetch-kernel.sh | tail -n 1)
if [ -z "$vmlinuz" ] || [ ! -r "$vmlinuz" ]; then
	skip "no guest kernel could be fetched (kvm/fetch-kernel.sh, above)"
fi
qtree=$(bash bench/qemu-fetch.sh | tail -n 1); rc=${PIPESTATUS[0]}
case "$rc" in
0) ;;
77) skip "QEMU 10 could not be fetched (bench/qemu-fetch.sh, above)" ;;
*) echo "bench/qemu.sh: bench/qemu-fetch.sh failed (exit $rc)" >&2; exit 1 ;;
esac
qemu=$qtree/usr/bin/qemu-system-x86_64
# its own modules, never the system QEMU 7.2's in /usr/lib/x86_64-linux-gnu/qemu
export QEMU_MODULE_DIR=$qtree/usr/lib/x86_64-linux-gnu/qemu
qver=$("$qemu" --version | head -n 1)

# The guest: one static program as /init, nothing else.
mkdir -p "$work/initrd"
rm -rf "$work"/run-*
if ! gcc -static -O2 -Wall -Wextra -Itools bench/qemu/guest.c -o "$work/initrd/init" 2>"$work/guest.log"; then
	cat "$work/guest.log" >&2
	skip "cannot link bench/qemu/guest.c statically (libc6-dev's libc.a?)"
fi
(cd "$work/initrd" && echo init | cpio -o -H newc --quiet | gzip -1 >../initrd.gz) ||
	{ echo "bench/qemu.sh: building the initramfs failed" >&2; exit 1; }

mkdir -p "$out"
: >"$jsonl"
failed=0
pagein_run() { # pair variant
	local j
	run_bg "$work/demo-$1-$2.json" timeout -k 5 300 "$BIN" demo --size 1G --json \
		2>"$work/demo-$1-$2.log"
	j=$(grep '"event":"summary"' "$work/demo-$1-$2.json" | tail -n 1)
	if [ -z "$j" ] || ! grep -q '"state":"verified"' <<<"$j"; then
		echo "  pair $1 $2: pagein demo failed (log: $work/demo-$1-$2.log)" >&2
		tail -n 5 "$work/demo-$1-$2.log" >&2
		failed=1
		j='{"error":"pagein demo failed"}'
	fi
	echo "{\"pair\":$1,\"variant\":\"$2\",\"side\":\"pagein\",\"load\":\"$(cut -d' ' -f1 /proc/loadavg)\",\"run\":$j}" >>"$jsonl"
}
qemu_run() { # pair variant
	local j d=$work/run-$1-$2
	mkdir -p "$d"
	run_bg "$d/result.json" timeout -k 10 500 python3 bench/qemu-run.py --qemu "$qemu" \
		--datadir "$qtree/usr/share/qemu" --datadir "$qtree/usr/share/seabios" \
		--kernel "$vmlinuz" --initrd "$work/initrd.gz" --mem "$MEM" --variant "$2" --guest "$GUEST" \
		--workdir "$d" --timeout 480
	j=$(tail -n 1 "$d/result.json")
	if [ -z "$j" ] || grep -q '"error"' <<<"$j"; then
		echo "  pair $1 $2: the QEMU run failed (logs in $d)" >&2
		failed=1
		[ -n "$j" ] || j='{"error":"qemu-run.py gave no result"}'
	fi
	echo "{\"pair\":$1,\"variant\":\"$2\",\"side\":\"qemu\",\"load\":\"$(cut -d' ' -f1 /proc/loadavg)\",\"run\":$j}" >>"$jsonl"
}

{
	echo "pagein demo vs QEMU post-copy, $(date -u '+%Y-%m-%d %H:%M UTC'), $(uname -r), $(nproc) CPUs," \
		"load average $(cut -d' ' -f1-3 /proc/loadavg) (other tenants skew both halves of a pair alike)"
	echo "$qver, TCG, 1 vCPU, $MEM; guest fills 1 GiB (the demo's image), then reads every page" \
		"in order ($GUEST: $([ "$GUEST" = busy ] && echo "without pause" || echo "one pass every 10 s"))"
	echo "$PAIRS pairs per variant; each pair back to back, the first half alternating"
} | tee "$txt"
for ((p = 1; p <= PAIRS; p++)); do
	for v in plain preempt; do
		echo "pair $p ($v): running" >&2
		if ((p % 2)); then pagein_run "$p" "$v"; qemu_run "$p" "$v"
		else qemu_run "$p" "$v"; pagein_run "$p" "$v"; fi
	done
done

python3 - "$jsonl" "$PAIRS" <<'EOF' | tee -a "$txt"
import json, statistics, sys
runs = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
def rec(p, v, side):
    for r in runs:
        if r["pair"] == p and r["variant"] == v and r["side"] == side:
            return r
    return {}
def get(p, v, side):
    return rec(p, v, side).get("run", {})
print()
print("%-4s %-8s %9s %9s %7s %9s %9s %8s %9s %9s %5s" % ("pair", "QEMU", "pagein s", "QEMU s", "ratio",
      "pg MiB rx", "Q MiB tx", "Q reqs", "Q block", "switch ms", "load"))
ratios = {"plain": [], "preempt": []}
for v in ("plain", "preempt"):
    for p in range(1, int(sys.argv[2]) + 1):
        pg, q = get(p, v, "pagein"), get(p, v, "qemu")
        if "elapsed_s" not in pg or "postcopy_s" not in q:
            print("%-4d %-8s failed: %s" % (p, v, pg.get("error") or q.get("error")))
            continue
        r = pg["elapsed_s"] / q["postcopy_s"]
        ratios[v].append(r)
        print("%-4d %-8s %9.3f %9.3f %7.3f %9.1f %9.1f %8s %7s ms %9.1f %5s" % (
            p, v, pg["elapsed_s"], q["postcopy_s"], r, pg.get("net_bytes_received", 0) / 2**20,
            q["ram_transferred_mib"], q["postcopy_requests"], q["blocktime_ms"],
            (q["switchover_s"] or 0) * 1e3, rec(p, v, "qemu").get("load", "?")))
print()
print("raw_pagein_s_plain: " + " ".join("%.3f" % get(p, "plain", "pagein").get("elapsed_s", float("nan")) for p in range(1, int(sys.argv[2]) + 1)))
print("raw_qemu_s: " + " ".join("%.3f" % get(p, "plain", "qemu").get("postcopy_s", float("nan")) for p in range(1, int(sys.argv[2]) + 1)))
print("raw_pagein_s_preempt: " + " ".join("%.3f" % get(p, "preempt", "pagein").get("elapsed_s", float("nan")) for p in range(1, int(sys.argv[2]) + 1)))
print("raw_qemu_preempt_s: " + " ".join("%.3f" % get(p, "preempt", "qemu").get("postcopy_s", float("nan")) for p in range(1, int(sys.argv[2]) + 1)))
for v, key in (("plain", "ratio_vs_qemu"), ("preempt", "ratio_vs_qemu_preempt")):
    rs = ratios[v]
    if rs:
        print("%s: %.3f (median of %d pairs; range %.3f-%.3f; target <= 0.33)" % (
            key, statistics.median(rs), len(rs), min(rs), max(rs)))
    else:
        print("%s: none (no pair measured)" % key)
EOF
exit "$failed"
