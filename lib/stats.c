// SPDX-License-Identifier: MIT
/*
 * stats.c - counters and the fault-latency histogram. Each thread adds to one of a few
 * cache-line-separated shards (chosen once per thread), so vCPUs never share a counter line;
 * pagein_stats_get() sums the shards.
 */
#include <string.h>

#include "internal.h"

/* initial-exec: no lazy TLS allocation, so it is safe inside a SIGBUS handler */
static __thread unsigned pi_shard_id __attribute__((tls_model("initial-exec")));
static _Atomic unsigned pi_shard_next;

static struct pi_shard *shard(struct pagein_space *s)
{
	if (!pi_shard_id)
		pi_shard_id = atomic_fetch_add_explicit(&pi_shard_next, 1, memory_order_relaxed) + 1;
	return &s->shards[pi_shard_id & (PAGEIN_STAT_SHARDS - 1)];
}

void pi_stat_add(struct pagein_space *s, unsigned idx, uint64_t v)
{
	atomic_fetch_add_explicit(&shard(s)->c[idx], v, memory_order_relaxed);
}

void pi_stat_latency(struct pagein_space *s, uint64_t ns)
{
	struct pi_shard *sh = shard(s);
	unsigned b = ns ? 63 - (unsigned)__builtin_clzll(ns) : 0;

	if (b >= PAGEIN_HIST_BUCKETS)
		b = PAGEIN_HIST_BUCKETS - 1;
	atomic_fetch_add_explicit(&sh->c[PI_STAT(lat_hist) + b], 1, memory_order_relaxed);
	atomic_fetch_add_explicit(&sh->c[PI_STAT(fault_ns)], ns, memory_order_relaxed);
}

void pagein_stats_get(struct pagein_space *s, struct pagein_stats *st)
{
	uint64_t *out = (uint64_t *)st;
	unsigned i, j;

	memset(st, 0, sizeof(*st));
	for (i = 0; i < PAGEIN_STAT_SHARDS; i++)
		for (j = 0; j < sizeof(*st) / sizeof(uint64_t); j++)
			out[j] += atomic_load_explicit(&s->shards[i].c[j], memory_order_relaxed);
}

uint64_t pagein_stats_quantile(const struct pagein_stats *st, double q)
{
	uint64_t total = 0, seen = 0, want;
	unsigned b;

	for (b = 0; b < PAGEIN_HIST_BUCKETS; b++)
		total += st->lat_hist[b];
	if (!total)
		return 0;
	want = (uint64_t)(q * (double)total + 0.5);
	if (want < 1)
		want = 1;
	for (b = 0; b < PAGEIN_HIST_BUCKETS; b++) {
		seen += st->lat_hist[b];
		if (seen >= want)
			return 2ull << b;
	}
	return 2ull << (PAGEIN_HIST_BUCKETS - 1);
}
