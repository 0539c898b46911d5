// SPDX-License-Identifier: MIT
/*
 * t_kvm_bench.c - `pagein bench --kvm` at tiny sizes inside the tier's guest, so the KVM bench
 * cannot rot: runs the static pagein (env PAGEIN_BIN, else /bin/pagein) for anon, shmem striped
 * with an injected delay, and hugetlb, and checks every JSON line with the tests' shared reader
 * (tests/helpers.h) for the kvm rows' keys: per-vCPU pages/s and KVM fault counts, every page
 * verified. Where KVM has exit-on-missing (pagein's patch) the kvm-exit row must be there too,
 * with every vCPU fault an exit (per vCPU) and none at the handler threads; the kvm-handler row
 * then has handler faults on every vCPU and no exit.
 */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "helpers.h"
#include "eom.h"

static bool want_exit_row; /* KVM here has exit-on-missing: kvm-exit must be there */

#define RUN_TIMEOUT_MS 120000 /* one bench invocation at these sizes takes well under 10 s */
#define PAGE 4096.0           /* what the bench counts as a page */

static char buf[1u << 20]; /* the bench's stdout, one invocation at a time */

/* An array member with n entries whose smallest is at least min (-1: any, numbers or not). */
static bool array_ok(const struct t_json_object *o, const char *key, unsigned n, double min)
{
	const struct t_json_member *m = t_json_get(o, key);

	return m && m->type == 'a' && m->alen == n && (min < 0 || m->amin >= min);
}

/* Check one invocation: a kvm-plain and a kvm-handler row (and a kvm-exit row where KVM has
 * exit-on-missing) for vcpus x per_vcpu of backing. */
static void check_kvm(const char *what, char *out, unsigned vcpus, double per_vcpu,
		      const char *backing, double around)
{
	static struct t_json_object o;
	const struct t_json_member *fe, *m;
	struct t_json_lines it = { .rest = out };
	unsigned seen = 0;
	double pages = vcpus * per_vcpu / PAGE, faults;
	bool handler, exit_row, stats;

	while (t_json_next(&it, &o, what)) {
		fe = t_json_get(&o, "frontend");
		if (!fe || fe->type != 's' ||
		    (strcmp(fe->str, "kvm-plain") && strcmp(fe->str, "kvm-handler") &&
		     strcmp(fe->str, "kvm-exit"))) {
			T_CHECK(0, "%s: line %u: frontend is not kvm-plain, kvm-handler or kvm-exit",
				what, it.lines);
			continue;
		}
		exit_row = !strcmp(fe->str, "kvm-exit");
		handler = exit_row || !strcmp(fe->str, "kvm-handler");
		seen |= exit_row ? 4 : handler ? 2 : 1;
		m = t_json_get(&o, "mode");
		T_CHECK(m && m->type == 's' && !strcmp(m->str, "kvm"), "%s: %s: mode is not kvm",
			what, fe->str);
		m = t_json_get(&o, "backing");
		T_CHECK(m && m->type == 's' && !strcmp(m->str, backing),
			"%s: %s: backing is not %s", what, fe->str, backing);
		T_CHECK(t_json_num(&o, "vcpus") == vcpus, "%s: %s: vcpus %.0f, want %u", what,
			fe->str, t_json_num(&o, "vcpus"), vcpus);
		T_CHECK(t_json_num(&o, "pages") == pages, "%s: %s: pages %.0f, want %.0f", what,
			fe->str, t_json_num(&o, "pages"), pages);
		T_CHECK(t_json_num(&o, "verified_pages") == pages,
			"%s: %s: verified_pages %.0f of %.0f", what, fe->str,
			t_json_num(&o, "verified_pages"), pages);
		T_CHECK(t_json_num(&o, "seconds") > 0 && t_json_num(&o, "pages_per_sec") > 0 &&
				t_json_num(&o, "cpu_us_per_page") > 0,
			"%s: %s: timings missing or not > 0", what, fe->str);
		T_CHECK(array_ok(&o, "per_vcpu_pages_per_sec", vcpus, 1e-9),
			"%s: %s: per_vcpu_pages_per_sec is not one positive number per vCPU", what,
			fe->str);
		T_CHECK(array_ok(&o, "per_vcpu_pages", vcpus, per_vcpu / PAGE),
			"%s: %s: per_vcpu_pages is not %.0f per vCPU", what, fe->str,
			per_vcpu / PAGE);
		T_CHECK(array_ok(&o, "per_vcpu_kvm_runs", vcpus, 1),
			"%s: %s: per_vcpu_kvm_runs is not one count >= 1 per vCPU", what, fe->str);
		/* KVM's binary statistics exist on 6.12 and 6.1: every vCPU took faults, exits */
		m = t_json_get(&o, "kvm_stats");
		stats = m && m->type == 'b' && m->b;
		T_CHECK(stats, "%s: %s: KVM statistics unavailable", what, fe->str);
		T_CHECK(array_ok(&o, "per_vcpu_pf_taken", vcpus, stats ? 1 : 0) &&
				array_ok(&o, "per_vcpu_pf_fixed", vcpus, 0) &&
				array_ok(&o, "per_vcpu_exits", vcpus, stats ? 1 : 0),
			"%s: %s: per-vCPU KVM fault counts missing or zero", what, fe->str);
		m = t_json_get(&o, "note");
		T_CHECK(m && m->type == 's', "%s: %s: the emulation note is missing", what,
			fe->str);
		faults = t_json_num(&o, "faults");
		if (!handler) {
			/* no pagein: the faults are KVM's, and there is no per-page latency */
			T_CHECK(faults == t_json_num(&o, "kvm_pf_taken") && faults > 0,
				"%s: kvm-plain: faults %.0f, kvm_pf_taken %.0f", what, faults,
				t_json_num(&o, "kvm_pf_taken"));
			m = t_json_get(&o, "lat_p50_us");
			T_CHECK(m && m->type == 'z', "%s: kvm-plain: lat_p50_us should be null",
				what);
			T_CHECK(t_json_num(&o, "vs_floor") == 1,
				"%s: kvm-plain: vs_floor %.3f, want 1", what,
				t_json_num(&o, "vs_floor"));
			continue;
		}
		/* exits against handler threads, per vCPU: the counts do not depend on timing */
		if (exit_row) {
			T_CHECK(t_json_num(&o, "lib_faults_handler") == 0 &&
					array_ok(&o, "per_vcpu_handler_faults", vcpus, 0) &&
					t_json_get(&o, "per_vcpu_handler_faults")->amin == 0 &&
					array_ok(&o, "per_vcpu_eom_exits", vcpus, 1),
				"%s: kvm-exit: want exits on every vCPU and no handler fault "
				"(lib_faults_handler %.0f)", what,
				t_json_num(&o, "lib_faults_handler"));
		} else {
			T_CHECK(array_ok(&o, "per_vcpu_eom_exits", vcpus, 0) &&
					t_json_get(&o, "per_vcpu_eom_exits")->amin == 0 &&
					array_ok(&o, "per_vcpu_handler_faults", vcpus, 1),
				"%s: kvm-handler: want handler faults on every vCPU and no exit",
				what);
		}
		T_CHECK(t_json_num(&o, "lat_p50_us") > 0 &&
				t_json_num(&o, "lat_p99_us") >= t_json_num(&o, "lat_p50_us"),
			"%s: kvm-handler: fault latency missing", what);
		T_CHECK(t_json_num(&o, "vs_floor") > 0, "%s: kvm-handler: vs_floor missing", what);
		T_CHECK(t_json_get(&o, "races_lost") && t_json_get(&o, "lib_eexist") &&
				t_json_get(&o, "lib_faults_kvm"),
			"%s: kvm-handler: the library's counters are missing", what);
		T_CHECK(t_json_num(&o, "lib_faults_handler") ==
				faults - t_json_num(&o, "lib_faults_kvm"),
			"%s: kvm-handler: faults %.0f are not handler %.0f + kvm %.0f", what,
			faults, t_json_num(&o, "lib_faults_handler"),
			t_json_num(&o, "lib_faults_kvm"));
		/* every page is missing until a vCPU touches it: one userfaultfd fault per page
		 * (per huge page for hugetlb) with fault-around off, never more than two */
		if (!strcmp(backing, "hugetlb"))
			T_CHECK(faults >= pages * PAGE / (2 << 20) && faults <= 2 * pages,
				"%s: kvm-handler: %.0f faults for %.0f huge pages", what, faults,
				pages * PAGE / (2 << 20));
		else if (around == 1)
			T_CHECK(faults >= pages && faults <= 2 * pages,
				"%s: kvm-handler: %.0f faults for %.0f pages with fault-around off",
				what, faults, pages);
		else
			T_CHECK(faults > 0 && faults <= 2 * pages, "%s: kvm-handler: %.0f faults",
				what, faults);
	}
	T_CHECK(it.lines == (want_exit_row ? 3u : 2u), "%s: %u JSON lines, want %s", what, it.lines,
		want_exit_row ? "3 (kvm-plain, kvm-handler, kvm-exit)" : "2 (kvm-plain, kvm-handler)");
	T_CHECK(seen == (want_exit_row ? 7u : 3u), "%s: a row is missing", what);
}

/* Huge pages the guest reserved (the tier's /init asks for 64). */
static long huge_pages(void)
{
	FILE *f = fopen("/proc/sys/vm/nr_hugepages", "r");
	long n = 0;

	if (!f)
		return 0;
	if (fscanf(f, "%ld", &n) != 1)
		n = 0;
	fclose(f);
	return n;
}

int main(void)
{
	const char *bin = getenv("PAGEIN_BIN");

	if (!bin || !*bin)
		bin = "/bin/pagein";
	if (access("/dev/kvm", F_OK)) {
		printf("t_kvm_bench: SKIP: no /dev/kvm\n");
		return 77;
	}
	if (access(bin, X_OK)) {
		printf("t_kvm_bench: FAIL: %s is not an executable (kvm/mkinitramfs.sh -p puts the "
		       "static pagein there; set PAGEIN_BIN otherwise)\n", bin);
		return 1;
	}
	{
		char why[256];
		int have = eom_available(why);

		if (have < 0) {
			printf("t_kvm_bench: FAIL: %s\n", why);
			return 1;
		}
		want_exit_row = have > 0;
		printf("t_kvm_bench: %s\n", want_exit_row ? "exit-on-missing here: want the kvm-exit "
		       "row" : why);
	}
	/* the tables go to stderr (the console), the JSON lines here */
	{
		char *const a[] = { (char *)bin, "bench", "--kvm", "--vcpus", "2", "-b", "1M", "--json",
				    NULL };
		if (!t_run_capture(bin, a, buf, sizeof(buf), RUN_TIMEOUT_MS))
			check_kvm("anon", buf, 2, 1 << 20, "anon", 1);
		else
			t_failures++;
	}
	{
		char *const a[] = { (char *)bin, "bench", "--kvm", "--vcpus", "2", "-b", "1M", "-s",
				    "shmem", "-r", "v", "-u", "v", "-d", "20", "--json", NULL };
		if (!t_run_capture(bin, a, buf, sizeof(buf), RUN_TIMEOUT_MS))
			check_kvm("shmem, reader and userfaultfd per vCPU, 20 us delay", buf, 2,
				  1 << 20, "shmem", 1);
		else
			t_failures++;
	}
	if (huge_pages() >= 4) {
		char *const a[] = { (char *)bin, "bench", "--kvm", "--vcpus", "2", "-b", "2M", "-s",
				    "hugetlb", "--around", "auto", "--json", NULL };
		if (!t_run_capture(bin, a, buf, sizeof(buf), RUN_TIMEOUT_MS))
			check_kvm("hugetlb, around auto", buf, 2, 2 << 20, "hugetlb", 0);
		else
			t_failures++;
	} else {
		printf("t_kvm_bench: hugetlb run skipped: %ld huge pages reserved, want 4\n",
		       huge_pages());
	}
	if (t_failures) {
		printf("t_kvm_bench: FAIL: %d checks failed\n", t_failures);
		return 1;
	}
	printf("t_kvm_bench: PASS: pagein bench --kvm at tiny sizes: every JSON line parses, both "
	       "rows, per-vCPU counts, every page verified\n");
	return 0;
}
