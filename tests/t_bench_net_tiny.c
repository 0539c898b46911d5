// SPDX-License-Identifier: MIT
/*
 * t_bench_net_tiny.c - `pagein bench --net --size 8M --json`, so the network bench cannot rot:
 * runs the binary (env PAGEIN_BIN, else ../pagein next to this test, else build/pagein) and
 * checks that every line is a flat JSON object with the required keys and sane values, that
 * every test appears for loopback and for the delayed link (urgent on and off), that loopback has
 * the bytes-on-the-wire row, and the HANDLER rows over plain TCP and TLS.
 */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "helpers.h"

#define RUN_TIMEOUT_MS 90000 /* the run takes 10-20 s at 8M; the test runner allows 120 s */

static char buf[1u << 20]; /* the bench's stdout, one invocation at a time */

/* The bench prints flat objects: no member may be an array or an object. */
static bool flat(const struct t_json_object *o)
{
	unsigned i;

	for (i = 0; i < o->n; i++)
		if (o->m[i].type == 'a' || o->m[i].type == 'o')
			return false;
	return true;
}

/* Check a latency pair: positive, p99 >= p50, under 10 s. */
static void check_lat(const struct t_json_object *o, const char *what)
{
	double p50 = t_json_num(o, "lat_p50_us"), p99 = t_json_num(o, "lat_p99_us");

	T_CHECK(p50 > 0 && p99 >= p50 && p99 < 1e7, "%s: lat_p50_us %g lat_p99_us %g", what, p50,
		p99);
}

/* Check a throughput line: MiB/s and ratios positive and not absurd. */
static void check_rate(const struct t_json_object *o, const char *what, bool paired)
{
	double mibs = t_json_num(o, "mib_per_sec"), ratio = t_json_num(o, "ratio_to_raw");

	T_CHECK(mibs > 0 && mibs < 1e6, "%s: mib_per_sec %g", what, mibs);
	T_CHECK(ratio > 0 && ratio < 100, "%s: ratio_to_raw %g", what, ratio);
	if (paired)
		T_CHECK(t_json_num(o, "raw_mib_per_sec") > 0,
			"%s: raw_mib_per_sec missing or not > 0", what);
}

/* A median ratio of several runs comes with its spread, and lies inside it. */
static void check_spread(const struct t_json_object *o, const char *what, const char *key)
{
	double v = t_json_num(o, key), lo = t_json_num(o, "ratio_min"),
	       hi = t_json_num(o, "ratio_max");

	T_CHECK(lo > 0 && lo <= v && v <= hi, "%s: %s %g outside ratio_min %g .. ratio_max %g",
		what, key, v, lo, hi);
}

static const char *const tests[] = { "raw-tcp", "rtt", "rtt-bulk", "bulk", "fault-idle",
				     "fault-bulk", "residency", "bulk-more", "bytes" };
#define NTESTS (sizeof(tests) / sizeof(tests[0]))
#define NLOOPONLY 2                  /* the last two: loopback only */
#define NTLSTESTS 3          /* the TLS links: bulk, fault-idle, fault-bulk */

static void check_output(char *out)
{
	static const char *const keys[] = { "test", "link", "urgent", "mib_per_sec",
					    "ratio_to_raw", "lat_p50_us", "lat_p99_us", "seconds" };
	unsigned lines = 0, i, t, seen[2][NTESTS] = { { 0 } }, urgent_off = 0, tls[2] = { 0 };
	const struct t_json_member *test, *link, *urg;
	char *line, *save = NULL, what[96];
	static struct t_json_object o;
	int slow;

	for (line = strtok_r(out, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		lines++;
		if (!t_json_parse_line(line, &o) || !flat(&o)) {
			T_CHECK(0, "line %u is not a flat JSON object: %s", lines, line);
			continue;
		}
		for (i = 0; i < sizeof(keys) / sizeof(keys[0]); i++)
			T_CHECK(t_json_get(&o, keys[i]), "line %u has no key %s: %s", lines,
				keys[i], line);
		test = t_json_get(&o, "test");
		link = t_json_get(&o, "link");
		urg = t_json_get(&o, "urgent");
		if (!test || test->type != 's' || !link || link->type != 's' || !urg) {
			T_CHECK(0, "line %u: test, link or urgent missing or of the wrong type",
				lines);
			continue;
		}
		slow = !strcmp(link->str, "netem-100us") || !strcmp(link->str, "relay-100us");
		if (!strcmp(link->str, "loopback-tcp") || !strcmp(link->str, "loopback-tls")) {
			const struct t_json_member *tr = t_json_get(&o, "transport"),
						   *fe = t_json_get(&o, "frontend");
			int k = !strcmp(link->str, "loopback-tls");

			T_CHECK(tr && tr->type == 's' && !strcmp(tr->str, k ? "tls" : "tcp"),
				"line %u: %s without transport %s", lines, link->str,
				k ? "tls" : "tcp");
			T_CHECK(fe && fe->type == 's' && !strcmp(fe->str, "handler"),
				"line %u: %s not with the handler front-end", lines, link->str);
			tls[k]++;
			if (!strcmp(test->str, "bulk"))
				check_rate(&o, link->str, true);
			else
				check_lat(&o, link->str);
			continue;
		}
		T_CHECK(slow || !strcmp(link->str, "loopback"), "line %u: unknown link %s", lines,
			link->str);
		for (t = 0; t < NTESTS && strcmp(tests[t], test->str); t++)
			;
		if (t == NTESTS) {
			T_CHECK(0, "line %u: unknown test %s", lines, test->str);
			continue;
		}
		T_CHECK(t < NTESTS - NLOOPONLY || !slow, "line %u: a %s row on the delayed link",
			lines, tests[t]);
		seen[slow][t]++;
		snprintf(what, sizeof(what), "%s/%s%s", link->str, test->str,
			 urg->type == 'b' && !urg->b ? " (urgent off)" : "");
		T_CHECK(t_json_num(&o, "seconds") > 0 && t_json_num(&o, "seconds") < 600,
			"%s: seconds %g", what, t_json_num(&o, "seconds"));
		T_CHECK(t_json_num(&o, "samples") > 0, "%s: samples missing or not > 0", what);
		if (t <= 2) {
			/* the baseline is not a migration */
			T_CHECK(urg->type == 'z', "%s: urgent should be null", what);
		} else {
			T_CHECK(urg->type == 'b', "%s: urgent is not a bool", what);
			urgent_off += urg->type == 'b' && !urg->b;
		}
		if (!strcmp(test->str, "raw-tcp")) {
			check_rate(&o, what, false);
			T_CHECK(t_json_num(&o, "ratio_to_raw") == 1,
				"%s: ratio_to_raw of the baseline is not 1", what);
		} else if (!strcmp(test->str, "rtt-bulk")) {
			check_lat(&o, what);
			T_CHECK(t_json_num(&o, "p99_ratio_to_idle") > 0,
				"%s: p99_ratio_to_idle missing", what);
		} else if (!strcmp(test->str, "rtt")) {
			check_lat(&o, what);
			if (slow)
				T_CHECK(t_json_num(&o, "added_rtt_p50_us") > 0,
					"%s: added_rtt_p50_us missing", what);
		} else if (!strcmp(test->str, "bulk") || !strcmp(test->str, "bulk-more")) {
			check_rate(&o, what, true);
			check_spread(&o, what, "ratio_to_raw");
			if (!strcmp(test->str, "bulk-more"))
				T_CHECK(t_json_num(&o, "bulk_connections") == 2,
					"%s: bulk_connections %g, want 2", what,
					t_json_num(&o, "bulk_connections"));
		} else if (!strcmp(test->str, "bytes")) {
			double b = t_json_num(&o, "bytes_ratio_to_nonzero");

			/* every page at least once: the image's non-zero bytes and a little framing */
			T_CHECK(b >= 1.0 && b < 3.0, "%s: bytes_ratio_to_nonzero %g", what, b);
			T_CHECK(t_json_get(&o, "dup_pages") && t_json_get(&o, "bulk_pages"),
				"%s: dup_pages or bulk_pages missing", what);
		} else if (!strcmp(test->str, "residency")) {
			check_rate(&o, what, true);
			T_CHECK(t_json_num(&o, "ratio_to_ideal") > 0, "%s: ratio_to_ideal missing",
				what);
		} else {
			check_lat(&o, what);
			T_CHECK(t_json_num(&o, "runq_wait_us_per_fault") >= 0,
				"%s: runq_wait_us_per_fault missing", what);
			if (!strcmp(test->str, "fault-bulk")) {
				T_CHECK(t_json_num(&o, "p99_ratio_to_idle") > 0,
					"%s: p99_ratio_to_idle missing", what);
				check_spread(&o, what, "p99_ratio_to_idle");
			}
		}
	}
	T_CHECK(lines > 0, "no JSON lines");
	for (slow = 0; slow < 2; slow++)
		for (t = 0; t < NTESTS - (slow ? NLOOPONLY : 0); t++)
			T_CHECK(seen[slow][t] >= 1, "no %s line for the %s link", tests[t],
				slow ? "delayed" : "loopback");
	/* TLS rows (OpenSSL is always linked): all three on both transports */
	T_CHECK(tls[0] == NTLSTESTS && tls[1] == NTLSTESTS,
		"TLS rows: %u plain, %u TLS, want %u each", tls[0], tls[1], NTLSTESTS);
	/* the delayed link runs bulk, fault-bulk and residency with the urgent channel off too */
	T_CHECK(urgent_off >= 3, "%u lines with the urgent channel off, want 3", urgent_off);
}

int main(int argc, char **argv)
{
	const char *bin;

	(void)argc;
	bin = t_pagein_bin(argv[0]);
	t_require_uffd();
	{
		char *const a[] = { (char *)bin, "bench", "--net", "--size", "8M", "--runs", "2",
				    "--json", NULL };

		if (!t_run_capture(bin, a, buf, sizeof(buf), RUN_TIMEOUT_MS))
			check_output(buf);
		else
			t_failures++;
	}
	if (t_failures) {
		printf("FAIL: %d checks failed\n", t_failures);
		return 1;
	}
	printf("PASS: pagein bench --net at 8M: every JSON line has the keys with sane values\n");
	return 0;
}
