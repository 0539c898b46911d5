// SPDX-License-Identifier: MIT
/*
 * t_bench_restore_tiny.c - `pagein bench --restore SIZE --vs-install` (issue 11's restore
 * target) at a tiny size, so that the section make bench runs cannot rot: one install row and
 * four restore rows (self and handler, from memory and from the snapshot file), each the median
 * of -n runs with its spread, the restore rows' vs_install ratio consistent with the rates, and
 * the headline on the table stream.
 */
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "helpers.h"

#define RUN_TIMEOUT_MS 120000 /* 8 MiB x 5 rows x 3 runs takes well under 10 s */
#define RUNS 3
#define PAGES (8u << 20) / 4096u

static char out[1u << 20], err[1u << 16];

int main(int argc, char **argv)
{
	static struct t_json_object o;
	static const char *const rows[] = { "install/mem", "self/mem", "handler/mem", "self/file",
					    "handler/file" };
	char *a[] = { NULL, "bench", "--restore", "8M", "--vs-install", "-n", "3", "--json",
			    NULL };
	struct t_json_lines it = { .rest = out };
	const struct t_json_member *fe, *src, *mode;
	double install_pps = 0, pps, lo, hi, vs;
	char name[80];
	unsigned i, seen = 0;
	const char *bin, *h;
	int st;

	(void)argc;
	bin = t_pagein_bin(argv[0]);
	t_require_uffd();
	a[0] = (char *)bin;
	st = t_run_status(bin, a, out, sizeof(out), err, sizeof(err), RUN_TIMEOUT_MS, NULL);
	if (t_exit_code(st) != 0) {
		printf("FAIL: pagein bench --restore 8M --vs-install exited %d; stderr:\n%s\n",
		       t_exit_code(st), err);
		return 1;
	}
	while (t_json_next(&it, &o, "--vs-install")) {
		fe = t_json_get(&o, "frontend");
		src = t_json_get(&o, "source");
		mode = t_json_get(&o, "mode");
		if (!fe || fe->type != 's' || !src || src->type != 's' || !mode || mode->type != 's') {
			T_CHECK(false, "line %u lacks frontend, source or mode", it.lines);
			continue;
		}
		snprintf(name, sizeof(name), "%s/%s", fe->str, src->str);
		for (i = 0; i < 5; i++)
			if (!strcmp(name, rows[i]))
				seen |= 1u << i;
		pps = t_json_num(&o, "pages_per_sec");
		lo = t_json_num(&o, "pps_min");
		hi = t_json_num(&o, "pps_max");
		T_CHECK(t_json_num(&o, "pages") == PAGES, "%s: pages %.0f, want %u", name,
			t_json_num(&o, "pages"), PAGES);
		T_CHECK(t_json_num(&o, "runs") == RUNS, "%s: runs %.0f, want %u", name,
			t_json_num(&o, "runs"), RUNS);
		T_CHECK(pps > 0 && lo > 0 && lo <= pps && pps <= hi,
			"%s: the median %.0f pages/s is not inside its spread [%.0f, %.0f]", name, pps,
			lo, hi);
		if (!strcmp(fe->str, "install")) {
			T_CHECK(!strcmp(mode->str, "install"), "install row: mode %s", mode->str);
			T_CHECK(t_json_num(&o, "faults") == 0, "install row: %.0f faults, want 0",
				t_json_num(&o, "faults"));
			install_pps = pps;
			continue;
		}
		T_CHECK(!strcmp(mode->str, "restore"), "%s: mode %s", name, mode->str);
		vs = t_json_num(&o, "vs_install");
		/* the install row comes first, and the ratio is of the two medians */
		T_CHECK(install_pps > 0 && fabs(vs - pps / install_pps) < 0.002,
			"%s: vs_install %.3f, but %.0f / %.0f pages/s", name, vs, pps, install_pps);
	}
	for (i = 0; i < 5; i++)
		T_CHECK(seen & 1u << i, "no %s row", rows[i]);
	h = strstr(err, "headline: restore 8 MiB to full residency vs the bare install rate");
	T_CHECK(h, "no headline on stderr:\n%s", err);
	for (i = 0; h && i < 4; i++) {
		h = strstr(h + 1, "x install (per round ");
		T_CHECK(h, "the headline has %u restore rows, want 4", i);
	}
	if (t_failures) {
		printf("FAIL: %d checks failed\n", t_failures);
		return 1;
	}
	printf("PASS: bench --restore --vs-install at 8 MiB: 5 rows with spreads and ratios, and "
	       "the headline\n");
	return 0;
}
