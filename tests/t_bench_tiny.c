// SPDX-License-Identifier: MIT
/*
 * t_bench_tiny.c - `pagein bench` at tiny sizes, so the benchmark cannot rot: runs the binary
 * (env PAGEIN_BIN, else ../pagein next to this test, else build/pagein) for both front-ends,
 * shmem and the restore comparison, and checks that every JSON line parses, has the required
 * keys with positive numbers, and that the fault counts add up.
 */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "helpers.h"

#define RUN_TIMEOUT_MS 120000 /* one bench invocation at these sizes takes well under 10 s */

static char buf[1u << 20]; /* the bench's stdout, one invocation at a time */

static const char *const num_keys[] = {
	"vcpus", "pages", "seconds", "pages_per_sec", "lat_p50_us", "lat_p99_us",
};

/* Check one invocation's JSON lines; want lists the frontends that must appear. */
static void check_output(const char *what, char *out, const char *const want[], unsigned nwant)
{
	static struct t_json_object o;
	struct t_json_lines it = { .rest = out };
	unsigned i, seen = 0;
	const struct t_json_member *fe, *ar;
	double pages, faults;
	bool restore, lib;

	while (t_json_next(&it, &o, what)) {
		fe = t_json_get(&o, "frontend");
		T_CHECK(fe && fe->type == 's', "%s: line %u has no frontend", what, it.lines);
		T_CHECK(t_json_get(&o, "backing") && t_json_get(&o, "backing")->type == 's',
			"%s: line %u has no backing", what, it.lines);
		if (!fe || fe->type != 's')
			continue;
		for (i = 0; i < sizeof(num_keys) / sizeof(num_keys[0]); i++)
			T_CHECK(t_json_num(&o, num_keys[i]) > 0,
				"%s: %s: key %s missing or not > 0", what, fe->str, num_keys[i]);
		restore = t_json_get(&o, "mode") && !strcmp(t_json_get(&o, "mode")->str, "restore");
		lib = !strcmp(fe->str, "self") || !strcmp(fe->str, "handler");
		pages = t_json_num(&o, "pages");
		faults = t_json_num(&o, "faults");
		/* with fill on, the fill may install every page before a fault: 0 is honest there
		 */
		T_CHECK(restore ? faults >= 0 : faults > 0, "%s: %s: faults %.0f", what, fe->str,
			faults);
		T_CHECK(restore ? t_json_num(&o, "cpu_us_per_fault") >= 0
				: t_json_num(&o, "cpu_us_per_fault") > 0,
			"%s: %s: cpu_us_per_fault missing or not > 0", what, fe->str);
		ar = t_json_get(&o, "per_vcpu_pages_per_sec");
		T_CHECK(ar && ar->type == 'a' && ar->alen == (unsigned)t_json_num(&o, "vcpus") &&
				ar->amin > 0,
			"%s: %s: per_vcpu_pages_per_sec is not one positive number per vCPU", what,
			fe->str);
		/* one fault per page without the library, and at least one per page with it when
		 * fault-around is off (around 1) and there is no fill */
		if (!lib && !restore)
			T_CHECK(faults == pages, "%s: %s: %.0f faults for %.0f pages", what,
				fe->str, faults, pages);
		if (lib) {
			T_CHECK(t_json_get(&o, "races_lost") && t_json_get(&o, "lib_eexist"),
				"%s: %s: the library's counters are missing", what, fe->str);
			if (!restore && t_json_num(&o, "around") == 1)
				T_CHECK(faults >= pages && faults <= 2 * pages,
					"%s: %s: %.0f faults for %.0f pages with fault-around off",
					what, fe->str, faults, pages);
		}
		for (i = 0; i < nwant; i++)
			if (!strcmp(fe->str, want[i]))
				seen |= 1u << i;
	}
	T_CHECK(it.lines > 0, "%s: no JSON lines", what);
	for (i = 0; i < nwant; i++)
		T_CHECK(seen & (1u << i), "%s: no row for frontend %s", what, want[i]);
}

int main(int argc, char **argv)
{
	static const char *const want_self[] = { "floor", "bare-self", "bare-handler", "self" };
	static const char *const want_handler[] = { "floor", "bare-self", "bare-handler",
						    "handler" };
	static const char *const want_restore[] = { "floor", "self" };
	const char *bin;

	(void)argc;
	bin = t_pagein_bin(argv[0]);
	t_require_uffd();

	{
		char *const a[] = { (char *)bin, "bench", "--vcpus", "2", "-b", "1M", "-f", "self",
				    "--json", NULL };
		if (!t_run_capture(bin, a, buf, sizeof(buf), RUN_TIMEOUT_MS))
			check_output("self, anon", buf, want_self, 4);
		else
			t_failures++;
	}
	{
		char *const a[] = { (char *)bin, "bench", "--vcpus", "2", "-b", "1M", "-f", "handler",
				    "-r", "2", "--json", NULL };
		if (!t_run_capture(bin, a, buf, sizeof(buf), RUN_TIMEOUT_MS))
			check_output("handler, anon", buf, want_handler, 4);
		else
			t_failures++;
	}
	{
		char *const a[] = { (char *)bin, "bench", "--vcpus", "2", "-b", "1M", "-f", "handler",
				    "-s", "shmem", "-a", "rand", "--json", NULL };
		if (!t_run_capture(bin, a, buf, sizeof(buf), RUN_TIMEOUT_MS))
			check_output("handler, shmem, random", buf, want_handler, 4);
		else
			t_failures++;
	}
	{
		char *const a[] = { (char *)bin, "bench", "--restore", "8M", "--json", NULL };
		if (!t_run_capture(bin, a, buf, sizeof(buf), RUN_TIMEOUT_MS))
			check_output("restore 8M", buf, want_restore, 2);
		else
			t_failures++;
	}
	if (t_failures) {
		printf("FAIL: %d checks failed\n", t_failures);
		return 1;
	}
	printf("PASS: pagein bench at tiny sizes: every JSON line parses with the required keys\n");
	return 0;
}
