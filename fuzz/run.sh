#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Runs every libFuzzer target in $FB for $FUZZ_TIME seconds each from its committed seed corpus
# (fuzz/corpus/<target>/, read only; new inputs go to $FB/corpus/<target>/). Prints one line per
# target with its executions and speed; exits non-zero when a target finds a crash (its input is
# left in $FB/crash-<target>-*). FUZZ_RUNS=N runs N executions instead of a time.
set -uo pipefail
cd "$(dirname "$0")/.."
FB=${FB:-build-fuzz}
T=${FUZZ_TIME:-60}
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:handle_sigbus=0}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
fail=0
for bin in "$FB"/fuzz_*; do
	[ -x "$bin" ] || continue
	case "$bin" in *.d|*.o) continue ;; esac
	name=$(basename "$bin")
	mkdir -p "$FB/corpus/$name" "fuzz/corpus/$name"
	if [ -n "${FUZZ_RUNS:-}" ]; then lim=(-runs="$FUZZ_RUNS"); else lim=(-max_total_time="$T"); fi
	start=$(date +%s.%N)
	log=$("$bin" "${lim[@]}" -timeout=10 -rss_limit_mb=4096 -artifact_prefix="$FB/crash-$name-" \
		-print_final_stats=1 "$FB/corpus/$name" "fuzz/corpus/$name" 2>&1)
	rc=$?
	secs=$(echo "$(date +%s.%N) - $start" | bc)
	runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' <<<"$log" | grep -o '[0-9]*$')
	if [ $rc = 0 ]; then
		printf '  ok    %-22s %12s runs in %6.1f s\n' "$name" "${runs:-?}" "$secs"
	else
		fail=1
		printf '  FAIL  %-22s (exit %d)\n' "$name" "$rc"
		grep -E 'ERROR|SUMMARY|runtime error|artifact|abort' <<<"$log" | head -n 15 | sed 's/^/        /'
	fi
done
exit $fail
