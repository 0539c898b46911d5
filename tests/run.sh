#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# The test runner `make test` calls: runs every test program in $B/tests (some once per
# configuration), the examples, the install check (tests/install.sh), then the KVM tier when
# QEMU is there, each under a time limit. Exit codes: 0 pass, 77 skip (the program printed
# why), anything else fail. Ends with one line:
# "N passed, N failed, N skipped". SOAK=1 repeats the race tests many more times.
set -uo pipefail
cd "$(dirname "$0")/.."
B=${B:-build}
LIMIT=${T_LIMIT:-120}

# Under ASan, its own SIGBUS handler would be the "previous handler" pagein forwards unserved
# faults to, turning death by SIGBUS (what the tests check) into exit 1: leave SIGBUS alone.
export ASAN_OPTIONS=${ASAN_OPTIONS:-handle_sigbus=0}
export TSAN_OPTIONS=${TSAN_OPTIONS:-handle_sigbus=0 halt_on_error=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}

pass=0 fail=0 skip=0
failed=()

run() { # name, command...
	local name=$1 out rc
	shift
	out=$(timeout -k 5 "$LIMIT" "$@" 2>&1)
	rc=$?
	case $rc in
	0) pass=$((pass + 1)); printf '  ok    %s\n' "$name" ;;
	77) skip=$((skip + 1)); printf '  skip  %s: %s\n' "$name" "$(grep -m1 -i 'skip' <<<"$out" | sed 's/^SKIP: //')" ;;
	*) fail=$((fail + 1)); failed+=("$name")
	   [ $rc = 124 ] && out+=$'\n'"(timed out after ${LIMIT}s)"
	   printf '  FAIL  %s (exit %d)\n' "$name" "$rc"; sed 's/^/        /' <<<"$out" | tail -n 25 ;;
	esac
	[ -n "${VERBOSE:-}" ] && [ $rc = 0 ] && sed 's/^/        /' <<<"$out"
	return 0
}

echo "pagein tests ($B)"
for t in "$B"/tests/t_*; do
	[ -x "$t" ] || continue
	case "$t" in *.d|*.o) continue ;; esac
	name=$(basename "$t")
	case $name in
	t_victim)
		for b in anon shmem hugetlb; do
			for fe in self handler; do
				for fill in fill nofill; do run "$name $b $fe $fill" "$t" $b $fe $fill; done
			done
		done ;;
	t_race)
		reps=1; [ -n "${SOAK:-}" ] && reps=50
		for i in $(seq "$reps"); do
			for b in anon shmem; do for fe in self handler; do run "$name $b $fe" "$t" $b $fe; done; done
		done ;;
	t_discard)
		for fe in self handler; do run "$name $fe" "$t" $fe; done ;;
	t_bench_tiny)
		PAGEIN_BIN="$B/pagein" run "$name" "$t" ;;
	*)
		run "$name" "$t" ;;
	esac
done

# The examples, as a user runs them: from an image in memory, and from a snapshot file.
snapdir=$(mktemp -d /tmp/pagein-examples.XXXXXX)
for e in "$B"/examples/*; do
	[ -x "$e" ] || continue
	case "$e" in *.d|*.o) continue ;; esac
	name="example $(basename "$e")"
	run "$name (memory)" "$e"
	if "$B/pagein" mksnap --size 8M "$snapdir/ex.snap" >/dev/null 2>&1; then
		run "$name (snapshot)" "$e" "$snapdir/ex.snap"
	else
		fail=$((fail + 1)); failed+=("$name (snapshot)"); echo "  FAIL  $name: pagein mksnap failed"
	fi
	rm -f "$snapdir/ex.snap"
done
rm -rf "$snapdir"

# make install into a temporary PREFIX, a program built with pkg-config against it (shared and
# static), and the installed archive's symbols.
run "install (PREFIX, pkg-config, shared and static, public symbols only)" bash tests/install.sh

# The libFuzzer targets (fuzz/), 3 s each from the committed seeds; `make fuzz` runs them longer.
# They are ASan/UBSan builds of their own: run once, from the plain pass.
if [ -n "${SANITIZE_BUILD:-}" ]; then
	skip=$((skip + 1)); echo "  skip  fuzz smoke: run from the plain pass (its targets carry ASan/UBSan)"
elif bash scripts/deps.sh fuzz >/dev/null 2>&1 && command -v clang >/dev/null; then
	# its own limit: on a fresh checkout it first builds the library with clang (7 targets, ~30 s of
	# fuzzing, and the build took 60-90 s at load 9-11)
	LIMIT=300 run "fuzz smoke (fuzz/, 3 s per target)" make -s --no-print-directory fuzz-smoke
else
	skip=$((skip + 1)); echo "  skip  fuzz smoke: clang and libclang-rt-14-dev are missing and could not be installed (run as root: bash scripts/deps.sh fuzz)"
fi

# The KVM tier: a real /dev/kvm in a guest kernel under QEMU's emulation (kvm/, docs/kvm.md).
if [ -n "${SANITIZE_BUILD:-}" ]; then
	skip=$((skip + 1)); echo "  skip  kvm tier: static guest programs cannot link sanitizer runtimes"
else
	reason=$(bash kvm/run.sh --check 2>&1); rc=$?
	if [ $rc = 0 ]; then
		if make -s B="$B" kvm-tests >/dev/null 2>&1; then
			LIMIT=400 run "kvm tier (tests/kvm, under QEMU)" env B="$B" bash kvm/tier.sh
		else
			fail=$((fail + 1)); failed+=("kvm tier build"); echo "  FAIL  kvm tier: make kvm-tests failed"
		fi
	else
		skip=$((skip + 1)); echo "  skip  kvm tier: $reason"
	fi
fi

((${#failed[@]})) && printf 'failed: %s\n' "${failed[@]}"
echo "$pass passed, $fail failed, $skip skipped"
((fail == 0))
