#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# bench/run.sh - what `make bench` runs: the seeds' matrix (1,2,4,8 vCPUs x self, handler, with
# the floor and bare-loop rows) with fault-around off and on, shmem too, and the 1 GiB restore.
# Writes bench/results/bench.txt, bench.jsonl and bench.png, then prints the headline ratios.
# Env: B (build dir), BENCH_SIZE (memory per vCPU; BENCH_HSIZE for the handler-shape sections),
# BENCH_REPEAT (runs per row, the median is kept), BENCH_RESTORE (restore size),
# BENCH_INSTALL_REPEAT (runs per row of the restore-vs-install section, default 5),
# BENCH_WS_SIZE (snapshot size of the working-set section, default 256M), BENCH_NET_SIZE (the
# network section's size, default 256M), BENCH_QEMU (0: skip the QEMU post-copy comparison,
# bench/qemu.sh, when there is one). Ends with the issue 11 target table, also written to
# bench/results/targets.txt.
set -euo pipefail

cd "$(dirname "$0")/.."
B=${B:-build}
BIN=${PAGEIN_BIN:-$B/pagein}
SIZE=${BENCH_SIZE:-64M}
REPEAT=${BENCH_REPEAT:-3}
RESTORE=${BENCH_RESTORE:-1G}
HSIZE=${BENCH_HSIZE:-32M}
out=bench/results
# field(line, key): the value of key in one flat JSON line (both awk programs below use it)
awk_field='function field(line, key,   m) {
	if (match(line, "\"" key "\":\"?[^,\"}]*")) {
		m = substr(line, RSTART + length(key) + 3, RLENGTH - length(key) - 3)
		sub(/^"/, "", m)
		return m
	}
	return ""
}
'
txt=$out/bench.txt
jsonl=$out/bench.jsonl
heads=$out/headlines.txt

if [ ! -x "$BIN" ]; then
	echo "bench/run.sh: $BIN is not built: run make first (or set B / PAGEIN_BIN)" >&2
	exit 1
fi
mkdir -p "$out"
: >"$txt"
: >"$jsonl"
: >"$heads"
{
	echo "pagein bench, $(date -u '+%Y-%m-%d %H:%M UTC'), $(uname -r), $(nproc) CPUs," \
		"load average $(cut -d' ' -f1-3 /proc/loadavg) (other tenants skew every row: compare" \
		"ratios within one run)"
	echo "memory per vCPU $SIZE, median of $REPEAT runs per row; pages/s counts 4 KiB touches"
} | tee -a "$txt"

# One section: the table (stderr of the bench) goes to the terminal and bench.txt, the JSON
# lines (stdout) to bench.jsonl and to a per-section file the plot reads.
section() {
	local name=$1
	shift
	printf '\n== %s: pagein bench %s\n' "$name" "$*" | tee -a "$txt"
	"$BIN" bench "$@" --json 2>&1 >"$out/$name.jsonl" | tee "$out/$name.txt" | tee -a "$txt"
	cat "$out/$name.jsonl" >>"$jsonl"
	sed -n "s/^headline: /$name: /p" "$out/$name.txt" >>"$heads"
}

start=$(date +%s)
section seeds --matrix -b "$SIZE" -n "$REPEAT" --around 1
section around --matrix -b "$SIZE" -n "$REPEAT" --around auto
section shmem --matrix -b "$SIZE" -n "$REPEAT" -s shmem --around 1
# the anchors' handler shape: one userfaultfd, one reader per vCPU; then one userfaultfd each
section readers --matrix -b "$HSIZE" -n "$REPEAT" --around 1 -r v
section uffds --matrix -b "$HSIZE" -n "$REPEAT" --around 1 -r v -u v
section restore --restore "$RESTORE" -n "$REPEAT"
section restore-handler --restore "$RESTORE" -n "$REPEAT" -f handler
# issue 11: restore to full residency against the bare install rate, measured in the same run,
# both front-ends, from memory and from a warm snapshot file; the target wants a median of 5
section restore-install --restore "$RESTORE" --vs-install -n "${BENCH_INSTALL_REPEAT:-5}"
# issue 10: working-set prefetch vs on-demand, eager and warm restores of a snapshot on disk
# (in bench/results, the build's file system, not tmpfs), page cache dropped before each cold run
section ws --ws --size "${BENCH_WS_SIZE:-256M}" -n "$REPEAT" --dir "$out"
# issue 3: migration over TCP against the raw TCP baseline, loopback and 100 us each way (BENCH_NET_SIZE)
section net --net --size "${BENCH_NET_SIZE:-256M}"
# issue 11: pagein demo against QEMU's post-copy (bench/qemu.sh writes bench/results/qemu.txt;
# exit 77 with a reason when it cannot run here)
qemu_rc=none
qemu_why=
rm -f "$out/qemu.txt"
if [ -f bench/qemu.sh ] && [ "${BENCH_QEMU:-1}" != 0 ]; then
	printf '\n== qemu: bash bench/qemu.sh\n' | tee -a "$txt"
	qemu_rc=0
	bash bench/qemu.sh >"$out/qemu.log" 2>&1 || qemu_rc=$?
	tee -a "$txt" <"$out/qemu.log"
	if [ "$qemu_rc" = 77 ]; then
		qemu_why=$(grep -m1 'skipped' "$out/qemu.log" | sed 's/^.*skipped: //' || true)
	fi
fi

# Plot data: pages/s per vCPU count, one column per line of the plot.
awk -v seeds="$out/seeds.jsonl" -v around="$out/around.jsonl" -v readers="$out/readers.jsonl" \
	-v uffds="$out/uffds.jsonl" "$awk_field"'
function load(file, suffix, only,   line, fe) {
	while ((getline line < file) > 0) {
		fe = field(line, "frontend")
		if (only != "" && only !~ "(^| )" fe "( |$)")
			continue
		pps[fe suffix, field(line, "vcpus")] = field(line, "pages_per_sec")
	}
	close(file)
}
BEGIN {
	load(seeds, "", "")
	load(around, "-around", "self handler")
	load(readers, "-rd=v", "handler")
	load(uffds, "-rd=uf=v", "handler")
	n = split("floor bare-self bare-handler self handler self-around handler-around " \
		  "handler-rd=v handler-rd=uf=v", cols, " ")
	printf "vcpus"
	for (i = 1; i <= n; i++)
		printf " %s", cols[i]
	printf "\n"
	for (v = 1; v <= 8; v *= 2) {
		printf "%d", v
		for (i = 1; i <= n; i++)
			printf " %s", ((cols[i], v) in pps) ? pps[cols[i], v] : "NaN"
		printf "\n"
	}
}' >"$out/plot.dat"
if command -v gnuplot >/dev/null; then
	gnuplot -e "data='$out/plot.dat'; outfile='$out/bench.png'" bench/plot.gp
else
	echo "gnuplot not found (scripts/deps.sh bench installs gnuplot-nox): no bench.png" >&2
fi

# The issue 11 targets: each ratio from this run's JSON lines, met or not.
targets() {
	awk -v ri="$out/restore-install.jsonl" -v net="$out/net.jsonl" -v qemu="$out/qemu.txt" \
		-v qrc="$qemu_rc" -v qwhy="$qemu_why" "$awk_field"'
function row(name, v, op, goal, note,   met) {
	if (v == "") {
		printf "  %-44s %10s  %-8s %s\n", name, "-", op " " goal, "not measured"
		return
	}
	met = (op == ">=") ? (v + 0 >= goal + 0) : (v + 0 <= goal + 0)
	printf "  %-44s %9.2fx  %-8s %-8s%s\n", name, v, op " " goal, met ? "met" : "NOT MET",
		note == "" ? "" : "  " note
}
function range(lo, hi) {
	return lo == "" ? "" : sprintf("range %.2f-%.2f", lo, hi)
}
BEGIN {
	printf "  %-44s %10s  %-8s %s\n", "target", "this run", "goal", "result"
	while ((getline line < ri) > 0) {
		if (field(line, "mode") != "restore" || field(line, "vs_install") == "")
			continue
		r[field(line, "frontend") " " field(line, "source")] = field(line, "vs_install")
	}
	row("restore to residency / install, self mem", r["self mem"], ">=", "0.90")
	row("restore to residency / install, handler mem", r["handler mem"], ">=", "0.90")
	row("restore to residency / install, self file", r["self file"], ">=", "0.90")
	row("restore to residency / install, handler file", r["handler file"], ">=", "0.90")
	while ((getline line < net) > 0) {
		t = field(line, "test"); l = field(line, "link"); u = field(line, "urgent")
		if (t == "bytes" && l == "loopback")
			bytes = field(line, "bytes_ratio_to_nonzero")
		if (t == "bulk" && u == "true") {
			bulk[l] = field(line, "ratio_to_raw")
			bspread[l] = range(field(line, "ratio_min"), field(line, "ratio_max"))
		}
		if (t == "fault-bulk" && u == "true") {
			p99[l] = field(line, "p99_ratio_to_idle")
			pspread[l] = range(field(line, "ratio_min"), field(line, "ratio_max"))
		}
		if (t == "rtt-bulk")
			path[l] = field(line, "p99_ratio_to_idle")
		if (t == "bulk-more" && l == "loopback") {
			more = field(line, "ratio_to_raw")
			mspread = range(field(line, "ratio_min"), field(line, "ratio_max"))
			mconn = field(line, "bulk_connections")
		}
	}
	row("bytes received / non-zero bytes (demo-shaped)", bytes, "<=", "1.02")
	row("bulk migration / raw TCP, loopback", bulk["loopback"], ">=", "0.80", bspread["loopback"])
	if (more != "")
		printf "  %-44s %9.2fx  %-8s %-8s  %s\n", "  (the same, " mconn " bulk connections)", more, "-",
			"for reference", mspread
	for (l in bulk)
		if (l != "loopback" && l !~ /^loopback-/)
			row("bulk migration / raw TCP, " l, bulk[l], ">=", "0.80", bspread[l])
	row("fault p99 under bulk / idle p99, loopback", p99["loopback"], "<=", "2.00",
	    pspread["loopback"])
	for (l in p99)
		if (l != "loopback" && l !~ /^loopback-/)
			row("fault p99 under bulk / idle p99, " l, p99[l], "<=", "2.00",
			    pspread[l] (path[l] == "" ? "" : sprintf("; the path alone %.2fx",
			    path[l])))
	q = ""; qp = ""
	while ((getline line < qemu) > 0) {
		if (line ~ /^ratio_vs_qemu_preempt:/) { qp = line; sub(/^[^:]*: */, "", qp) }
		else if (line ~ /^ratio_vs_qemu:/) { q = line; sub(/^[^:]*: */, "", q) }
	}
	if (qp != "") {
		row("pagein demo time / QEMU post-copy (preempt)", qp, "<=", "0.33")
		if (q != "")
			printf "  %-44s %9.2fx  %-8s %s\n", "  (QEMU post-copy without preempt)", q, "-", "for reference"
	} else if (qrc == "77") {
		printf "  %-44s %10s  %-8s skipped: %s\n", "pagein demo time / QEMU post-copy (preempt)", "-", "<= 0.33", qwhy
	} else if (qrc == "none") {
		printf "  %-44s %10s  %-8s %s\n", "pagein demo time / QEMU post-copy (preempt)", "-", "<= 0.33", "not run (no bench/qemu.sh, or BENCH_QEMU=0)"
	} else {
		printf "  %-44s %10s  %-8s %s\n", "pagein demo time / QEMU post-copy (preempt)", "-", "<= 0.33", "failed: bench/qemu.sh exited " qrc " (bench/results/qemu.log)"
	}
}'
}
{
	echo "== issue 11 targets, every ratio from this run ($(date -u '+%Y-%m-%d %H:%M UTC'), load average $(cut -d' ' -f1-3 /proc/loadavg))"
	targets
} >"$out/targets.txt"

{
	echo
	echo "== the three headline ratios (issue 2's targets), all from this run"
	grep -m1 '^seeds: .*self-resolve speed-up' "$heads" | sed 's/^/  1. /'
	grep -m1 '^seeds: .*1 vCPU\] library / bare' "$heads" | sed 's/^/  2. /'
	grep '^restore: ' "$heads" | sed 's/^/  3. /'
	echo "== restore to full residency vs the bare install rate (issue 11), from this run"
	sed -n '/^headline: restore .* vs the bare install rate/,$p' "$out/restore-install.txt" |
		sed 's/^headline: /  /'
	echo "== working-set prefetch vs on-demand and warm (issue 10), from this run"
	grep '^ws: ' "$heads" | sed 's/^/  /'
	echo "== every headline"
	sed 's/^/  /' "$heads"
	cat "$out/targets.txt"
	echo "total time $(($(date +%s) - start)) s; written: $txt $jsonl $out/bench.png"
} >"$out/summary.txt"
cat "$out/summary.txt"
cat "$out/summary.txt" >>"$txt"
