// SPDX-License-Identifier: MIT
/*
 * t_cli_p99.c - the fault-latency quantiles `pagein restore` prints are interpolated inside the
 * library's log2 histogram buckets, not the bucket's edge (which printed every p99 as a power of
 * two, such as "8388.6 us"): from the histogram in the --json summary, each quantile lies strictly
 * inside the bucket holding its rank, at the midpoint rule's place, and the human summary on
 * stderr prints the same p50 and p99.
 */
#include <math.h>
#include <unistd.h>

#include "helpers.h"

#define RUN_MS 60000
#define BUCKETS 40

static const char *bin;
static char out[1 << 16], err[1 << 16];

/* The quantile q of hist (ns): the sample of rank ceil(q * n) placed at the midpoint of its
 * share of bucket b, which holds [2^b, 2^(b+1)) ns. *bucket gets b. */
static double expected(const double *hist, double q, int *bucket)
{
	double total = 0, seen = 0, rank;
	int b;

	for (b = 0; b < BUCKETS; b++)
		total += hist[b];
	rank = fmax(1, ceil(q * total));
	for (b = 0; b < BUCKETS - 1 && seen + hist[b] < rank; b++)
		seen += hist[b];
	*bucket = b;
	return ldexp(1, b) * (1 + (rank - seen - 0.5) / hist[b]);
}

int main(int argc, char **argv)
{
	static const double qs[] = { 0.5, 0.9, 0.99, 0.999 };
	static const char *const keys[] = { "fault_p50_us", "fault_p90_us", "fault_p99_us",
					    "fault_p999_us" };
	char dir[] = "/tmp/t_cli_p99.XXXXXX", snap[64], *p, *nl;
	double hist[BUCKETS], want, got, human50, human99;
	struct t_json_object o;
	unsigned i;
	int rc, b;

	bin = t_pagein_bin(argv[0]);
	t_require_uffd();
	T_ASSERT(mkdtemp(dir));
	snprintf(snap, sizeof(snap), "%s/s.snap", dir);
	rc = t_exit_code(t_run_status(bin, (char *[]){ "pagein", "mksnap", "--size", "32M", snap,
						     NULL }, out, sizeof(out), err, sizeof(err),
				      RUN_MS, NULL));
	T_ASSERT(rc == 0);
	rc = t_exit_code(t_run_status(bin, (char *[]){ "pagein", "restore", "--from-file", snap,
						     "--no-fill", "-w", "rand", "--around", "1",
						     "--json", NULL },
				      out, sizeof(out), err, sizeof(err), RUN_MS, NULL));
	T_CHECK(rc == 0, "restore --json: exit %d: %s", rc, err);
	nl = strchr(out, '\n');
	if (nl)
		*nl = 0;
	T_ASSERT(t_json_parse_line(out, &o));
	/* the histogram, read from the line itself (the JSON reader keeps no array elements) */
	p = strstr(out, "\"fault_hist_ns\":[");
	T_ASSERT(p);
	p += strlen("\"fault_hist_ns\":[");
	for (i = 0; i < BUCKETS; i++) {
		hist[i] = strtod(p, &p);
		T_ASSERT(*p == (i == BUCKETS - 1 ? ']' : ','));
		p++;
	}
	T_ASSERT(t_json_num(&o, "faults") > 100);
	for (i = 0; i < 4; i++) {
		want = expected(hist, qs[i], &b);
		got = t_json_num(&o, keys[i]) * 1000;
		T_CHECK(fabs(got - want) <= want * 1e-5 + 1, "%s: %.1f ns, want %.1f ns", keys[i], got,
			want);
		T_CHECK(got > ldexp(1, b) && got < ldexp(1, b + 1),
			"%s: %.1f ns is not strictly inside its bucket [%.0f, %.0f)", keys[i], got,
			ldexp(1, b), ldexp(1, b + 1));
		printf("  %-14s %10.1f us  (bucket %2d: %.1f..%.1f us)\n", keys[i], got / 1000, b,
		       ldexp(1, b) / 1000, ldexp(1, b + 1) / 1000);
	}
	p = strstr(err, "fault p50 ");
	T_CHECK(p && sscanf(p, "fault p50 %lf us p99 %lf us", &human50, &human99) == 2,
		"no p50/p99 in the human summary: %s", err);
	if (p) {
		T_CHECK(fabs(human50 - t_json_num(&o, "fault_p50_us")) < 0.051 &&
			fabs(human99 - t_json_num(&o, "fault_p99_us")) < 0.051,
			"human p50 %.1f p99 %.1f us, JSON %.3f %.3f", human50, human99,
			t_json_num(&o, "fault_p50_us"), t_json_num(&o, "fault_p99_us"));
	}
	unlink(snap);
	rmdir(dir);
	if (t_failures)
		return 1;
	t_pass("t_cli_p99");
}
