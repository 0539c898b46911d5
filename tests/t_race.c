// SPDX-License-Identifier: MIT
/*
 * t_race.c - races on one page: many threads fault the same pages at the same instant (each page
 * must be fetched exactly once and everybody must see its bytes), then faults racing the
 * background fill (still once per page, all bytes right).
 * Usage: t_race anon|shmem self|handler
 */
#include <pthread.h>
#include <unistd.h>

#include "helpers.h"

#define THREADS 8
#define SIZE (4ull << 20)
#define SEED 77

static pthread_barrier_t go;
static struct t_space T;
static _Atomic unsigned bad_reads;

static void *same_pages(void *arg)
{
	uint64_t p;

	pthread_barrier_wait(&go);
	for (p = 0; p < 64; p++) {
		volatile uint64_t *w = (volatile uint64_t *)(T.host + p * 4096 + 8 * (uintptr_t)arg);

		if (*w != t_word(SEED, p * 4096 + 8 * (uintptr_t)arg))
			atomic_fetch_add(&bad_reads, 1);
	}
	return NULL;
}

static void *random_pages(void *arg)
{
	uint64_t st = (uintptr_t)arg * 31 + 7, i, p;

	pthread_barrier_wait(&go);
	for (i = 0; i < SIZE / 4096 / 2; i++) {
		p = t_rand(&st, SIZE / 4096);
		if (*(volatile uint64_t *)(T.host + p * 4096) != t_word(SEED, p * 4096))
			atomic_fetch_add(&bad_reads, 1);
	}
	return NULL;
}

static void run(enum pagein_backing b, enum pagein_frontend fe, bool fill)
{
	struct pagein_config cfg;
	struct pagein_stats st;
	pthread_t th[THREADS];
	uint64_t p, bad;
	unsigned i, nth = fill ? 4 : THREADS;

	pagein_config_init(&cfg);
	cfg.frontend = fe;
	cfg.readers = 2;
	cfg.log = t_log;
	t_space_make(&T, &cfg, b, SIZE, SEED);
	/* the first page arrives slowly, so that every thread is surely waiting on it */
	T.ts.slow_gpa = 0;
	T.ts.slow_us = 20000;
	T_EQ(pagein_space_start(T.s), 0);
	T_ASSERT(pthread_barrier_init(&go, NULL, nth) == 0);
	if (fill)
		T_EQ(pagein_fill_start(T.s), 0);
	for (i = 0; i < nth; i++)
		T_ASSERT(pthread_create(&th[i], NULL, fill ? random_pages : same_pages,
					(void *)(uintptr_t)i) == 0);
	for (i = 0; i < nth; i++)
		pthread_join(th[i], NULL);
	T_EQ(pagein_resolve(T.s, 0, SIZE, NULL), 0);
	T_EQ(atomic_load(&bad_reads), 0);
	/* invariant 1: fetched at most once (and, here, exactly once) */
	for (p = 0; p < SIZE; p += 4096)
		if (t_src_fetches(&T.ts, p) != 1) {
			fprintf(stderr, "FAIL: page gpa %#llx fetched %u times\n", (unsigned long long)p,
				t_src_fetches(&T.ts, p));
			exit(1);
		}
	bad = t_check(T.host, 0, SIZE, SEED, 0);
	T_EQ(bad, UINT64_MAX);
	pagein_stats_get(T.s, &st);
	printf("  %s %s %s: faults %llu, races lost %llu, blocked %.1f ms, eexist %llu\n",
	       pagein_backing_name(b), pagein_frontend_name(fe), fill ? "vs fill" : "same pages",
	       (unsigned long long)(st.faults_self + st.faults_handler),
	       (unsigned long long)st.races_lost, (double)st.blocked_ns / 1e6,
	       (unsigned long long)st.eexist);
	/* the race really happened: as a lost claim, or (handler mode, when one reader read all the
	 * messages in one batch) as stale messages for a page installed meanwhile, woken via EEXIST.
	 * The winner's install already woke every faulter, so a handler may count its copies of the
	 * message after our threads are done: give the counters a moment. */
	for (i = 0; !fill && i < 1000 && st.races_lost + st.eexist == 0; i++) {
		usleep(1000);
		pagein_stats_get(T.s, &st);
	}
	if (!fill)
		T_ASSERT(st.races_lost + st.eexist > 0);
	pthread_barrier_destroy(&go);
	t_space_free(&T);
}

int main(int argc, char **argv)
{
	if (argc != 3) {
		fprintf(stderr, "usage: %s anon|shmem self|handler\n", argv[0]);
		return 1;
	}
	t_require_uffd();
	alarm(60);
	run(t_backing(argv[1]), t_frontend(argv[2]), false);
	run(t_backing(argv[1]), t_frontend(argv[2]), true);
	printf("PASS race %s %s\n", argv[1], argv[2]);
	return 0;
}
