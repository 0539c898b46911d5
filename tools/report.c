// SPDX-License-Identifier: MIT
/*
 * report.c - how the pagein command reports numbers: fault-latency quantiles interpolated inside
 * the library's log2 histogram buckets, and the JSON lines (one object each, on stdout) that
 * `--json` prints for monitoring systems.
 */
#include <inttypes.h>
#include <math.h>
#include <stdio.h>

#include "tools.h"

double hist_quantile(const uint64_t *hist, unsigned nbuckets, double q)
{
	uint64_t total = 0, seen = 0;
	double rank, lo;
	unsigned b;

	for (b = 0; b < nbuckets; b++)
		total += hist[b];
	if (!total)
		return 0;
	/* the sample of rank ceil(q * total) (1-based), as a nearest-rank quantile */
	rank = ceil(q * (double)total);
	if (rank < 1)
		rank = 1;
	for (b = 0; b < nbuckets; b++) {
		if (hist[b] && (double)(seen + hist[b]) >= rank)
			break;
		seen += hist[b];
	}
	if (b == nbuckets)
		b = nbuckets - 1;
	/* bucket b holds [2^b, 2^(b+1)) ns: spread its samples evenly and take the midpoint of
	 * the wanted one, so a quantile never lands on an edge the histogram cannot resolve */
	lo = ldexp(1.0, (int)b);
	return lo + lo * ((rank - (double)seen) - 0.5) / (double)(hist[b] ? hist[b] : 1);
}

static unsigned json_members; /* members written in the current object */

static void json_key(const char *key)
{
	printf("%s\"%s\":", json_members++ ? "," : "", key);
}

void json_begin(const char *event, const char *state)
{
	json_members = 0;
	printf("{");
	json_str("event", event);
	json_str("state", state);
}

void json_str(const char *key, const char *val)
{
	const char *p;

	json_key(key);
	putchar('"');
	for (p = val; *p; p++) {
		unsigned char c = (unsigned char)*p;

		if (c == '"' || c == '\\')
			printf("\\%c", c);
		else if (c < 0x20)
			printf("\\u%04x", c);
		else
			putchar(c);
	}
	putchar('"');
}

void json_u64(const char *key, uint64_t v)
{
	json_key(key);
	printf("%" PRIu64, v);
}

void json_num(const char *key, double v)
{
	json_key(key);
	/* JSON has no NaN or infinity */
	printf("%.6g", isfinite(v) ? v : 0.0);
}

void json_bool(const char *key, bool v)
{
	json_key(key);
	printf("%s", v ? "true" : "false");
}

void json_u64_array(const char *key, const uint64_t *v, unsigned n)
{
	unsigned i;

	json_key(key);
	putchar('[');
	for (i = 0; i < n; i++)
		printf("%s%" PRIu64, i ? "," : "", v[i]);
	putchar(']');
}

void json_end(void)
{
	printf("}\n");
	fflush(stdout);
}
