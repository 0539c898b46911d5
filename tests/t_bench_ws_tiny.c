// SPDX-License-Identifier: MIT
/*
 * t_bench_ws_tiny.c - `pagein bench --ws` (issue 10's working-set bench) at 8 MiB, so the
 * section make bench runs cannot rot. --no-drop: a unit test must not empty the whole machine's
 * page cache, so every run must say it is warm. Checks the four ways and the headline line,
 * that every run verified every page of the set, what each way must do (on-demand and warm
 * fault once per page; the prefetch installs the whole set before the workload and leaves no
 * fault; the eager read installs every page and leaves no fault), and that the bench removed
 * the snapshot and working set it wrote. Self front-end with 4 threads, then handler with 2.
 */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "helpers.h"

#define RUN_TIMEOUT_MS 120000 /* well under 5 s at 8 MiB */
#define IMAGE_PAGES ((8u << 20) / 4096u)

static char out[1u << 16], err[1u << 16];

static const char *const ways[] = { "on-demand", "prefetch", "eager", "warm" };

static void check(const char *bin, const char *fe, const char *threads)
{
	static struct t_json_object o;
	char dir[] = "/tmp/t_bench_ws_tiny.XXXXXX";
	char *a[] = { (char *)bin, "bench", "--ws", "--size", "8M", "--no-drop", "--json",
		      "--dir", dir, "-f", (char *)fe, "--threads", (char *)threads, "-n", "2",
		      NULL };
	struct t_json_lines it = { .rest = out };
	const struct t_json_member *way;
	unsigned seen = 0, i, headline = 0;
	double set = -1, faults;
	int st;

	T_ASSERT(mkdtemp(dir));
	st = t_run_status(bin, a, out, sizeof(out), err, sizeof(err), RUN_TIMEOUT_MS, NULL);
	if (t_exit_code(st) != 0) {
		printf("FAIL: pagein bench --ws -f %s exited %d; stderr:\n%s\n", fe,
		       t_exit_code(st), err);
		exit(1);
	}
	/* the bench removes its own directory under dir: rmdir fails if anything is left */
	T_CHECK(rmdir(dir) == 0, "%s: the bench left files under %s", fe, dir);
	T_CHECK(strstr(err, "every run below is WARM"), "%s: no warm note on stderr:\n%s", fe,
		err);
	T_CHECK(strstr(err, "headline: WARM"), "%s: no headline on stderr:\n%s", fe, err);
	while (t_json_next(&it, &o, "--ws")) {
		const struct t_json_member *c = t_json_get(&o, "cold");

		way = t_json_get(&o, "way");
		if (!way || way->type != 's' || !c || c->type != 'b') {
			T_CHECK(false, "%s: line %u lacks way or cold", fe, it.lines);
			continue;
		}
		T_CHECK(!c->b, "%s %s: cold although the cache was not dropped", fe, way->str);
		if (!strcmp(way->str, "headline")) {
			const struct t_json_member *v = t_json_get(&o, "all_verified");

			headline++;
			T_CHECK(v && v->type == 'b' && v->b, "%s: headline all_verified not true", fe);
			T_CHECK(t_json_num(&o, "speedup_prefetch") > 0 &&
				t_json_get(&o, "fault_reduction_pct") &&
				t_json_get(&o, "prefetch_vs_warm_pct") &&
				t_json_num(&o, "speedup_eager") > 0, "%s: headline ratios missing", fe);
			continue;
		}
		for (i = 0; i < 4 && strcmp(way->str, ways[i]); i++)
			;
		if (i == 4) {
			T_CHECK(false, "%s: unknown way %s", fe, way->str);
			continue;
		}
		seen |= 1u << i;
		if (set < 0)
			set = t_json_num(&o, "set_pages");
		/* the set is a seeded quarter of the image: about 512 of 2048 pages */
		T_CHECK(set > IMAGE_PAGES / 8 && set < IMAGE_PAGES / 2, "%s: set_pages %g", fe, set);
		T_CHECK(t_json_num(&o, "set_pages") == set, "%s %s: another set", fe, way->str);
		T_CHECK(t_json_num(&o, "verified_pages") == set && t_json_num(&o, "wrong_pages") == 0,
			"%s %s: verified %g wrong %g of %g", fe, way->str,
			t_json_num(&o, "verified_pages"), t_json_num(&o, "wrong_pages"), set);
		T_CHECK(t_json_num(&o, "seconds") > 0 && t_json_num(&o, "seconds_min") > 0 &&
			t_json_num(&o, "seconds_max") >= t_json_num(&o, "seconds") &&
			t_json_num(&o, "runs") == 2, "%s %s: times or runs wrong", fe, way->str);
		T_CHECK(t_json_num(&o, "disk_read_bytes") >= 0 &&
			t_json_num(&o, "file_read_bytes") >= 0, "%s %s: byte counts missing", fe,
			way->str);
		faults = t_json_num(&o, "faults");
		if (i == 0 || i == 3) {
			/* one fault per page of the set (a handler may see a duplicate message) */
			T_CHECK(faults >= set && faults <= set * 1.05, "%s %s: %g faults for %g pages",
				fe, way->str, faults, set);
			T_CHECK(t_json_num(&o, "file_read_bytes") >= set * 4096,
				"%s %s: read %g bytes for %g pages", fe, way->str,
				t_json_num(&o, "file_read_bytes"), set);
		} else if (i == 1) {
			T_CHECK(faults == 0 && t_json_num(&o, "prefetch_installed") == set,
				"%s prefetch: %g faults, %g installed of %g", fe, faults,
				t_json_num(&o, "prefetch_installed"), set);
		} else {
			T_CHECK(faults == 0 && t_json_num(&o, "pages_accessor") == IMAGE_PAGES &&
				t_json_num(&o, "file_read_bytes") >= IMAGE_PAGES * 4096.0,
				"%s eager: %g faults, %g pages read of %u", fe, faults,
				t_json_num(&o, "pages_accessor"), IMAGE_PAGES);
		}
	}
	T_CHECK(seen == 15, "%s: ways seen 0x%x, want all four", fe, seen);
	T_CHECK(headline == 1, "%s: %u headline lines", fe, headline);
}

int main(int argc, char **argv)
{
	const char *bin;

	(void)argc;
	bin = t_pagein_bin(argv[0]);
	t_require_uffd();
	check(bin, "self", "4");
	check(bin, "handler", "2");
	if (t_failures) {
		printf("FAIL: %d checks failed\n", t_failures);
		return 1;
	}
	printf("PASS: pagein bench --ws at 8M (self and handler): four ways and the headline, every "
	       "page of the set verified in every run, no fault left by prefetch or eager\n");
	return 0;
}
