#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# bench/run.sh - what `make bench` runs: the seeds' matrix (1,2,4,8 vCPUs x self, handler, with
# the floor and bare-loop rows) with fault-around off and on, shmem too, and the 1 GiB restore.
# Writes bench/results/bench.txt, bench.jsonl and bench.png, then prints the headline ratios.
# Env: B (build dir), BENCH_SIZE (memory per vCPU; BENCH_HSIZE for the handler-shape sections),
# BENCH_REPEAT (runs per row, the median is kept), BENCH_RESTORE (restore size),
# BENCH_INSTALL_REPEAT (runs per row of the restore-vs-install section, default 5).
set -euo pipefail

cd "$(dirname "$0")/.."
B=${B:-build}
BIN=${PAGEIN_BIN:-$B/pagein}
SIZE=${BENCH_SIZE:-64M}
REPEAT=${BENCH_REPEAT:-3}
RESTORE=${BENCH_RESTORE:-1G}
HSIZE=${BENCH_HSIZE:-32M}
out=bench/results
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
# issue 3: migration over TCP against the raw TCP baseline, loopback and 100 us each way (BENCH_NET_SIZE)
section net --net --size "${BENCH_NET_SIZE:-256M}"

# Plot data: pages/s per vCPU count, one column per line of the plot.
awk -v seeds="$out/seeds.jsonl" -v around="$out/around.jsonl" -v readers="$out/readers.jsonl" \
	-v uffds="$out/uffds.jsonl" '
function field(line, key,   m) {
	if (match(line, "\"" key "\":\"?[^,\"}]*")) {
		m = substr(line, RSTART + length(key) + 3, RLENGTH - length(key) - 3)
		sub(/^"/, "", m)
		return m
	}
	return ""
}
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

{
	echo
	echo "== the three headline ratios (issue 2's targets), all from this run"
	grep -m1 '^seeds: .*self-resolve speed-up' "$heads" | sed 's/^/  1. /'
	grep -m1 '^seeds: .*1 vCPU\] library / bare' "$heads" | sed 's/^/  2. /'
	grep '^restore: ' "$heads" | sed 's/^/  3. /'
	echo "== restore to full residency vs the bare install rate (issue 11), from this run"
	sed -n '/^headline: restore .* vs the bare install rate/,$p' "$out/restore-install.txt" |
		sed 's/^headline: /  /'
	echo "== every headline"
	sed 's/^/  /' "$heads"
	echo "total time $(($(date +%s) - start)) s; written: $txt $jsonl $out/bench.png"
} >"$out/summary.txt"
cat "$out/summary.txt"
cat "$out/summary.txt" >>"$txt"
