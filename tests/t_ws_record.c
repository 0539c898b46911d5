// SPDX-License-Identifier: MIT
/*
 * t_ws_record.c - recording a working set in a pagein space (pagein_ws_record_start/save): the
 * pages a restore touches come out in first-touch order (faults of both front-ends, and
 * accessors; not the background fill), and the file prefetches into the next restore of the
 * same image with no fault and no source fetch for those pages.
 * Usage: t_ws_record [self|handler]   (none: both)
 */
#include <unistd.h>

#include "helpers.h"
#include "pagein-vmm.h"
#include "vmm.h"

#define SIZE (2ull << 20)
#define SEED 61
#define ID 0xabc

static void run(enum pagein_frontend fe)
{
	char path[] = "/tmp/t_ws_rec_XXXXXX", err[256];
	struct pagein_ws_stats st = { .size = sizeof(st) };
	static uint64_t order[SIZE / 4096];
	struct pagein_config cfg;
	struct pagein_stats ps;
	struct t_space A, B;
	struct pi_ws ws;
	uint64_t n = 0, i, k, got, rng = 5;
	int fd;

	fd = mkstemp(path);
	T_ASSERT(fd >= 0);
	close(fd);
	pagein_config_init(&cfg);
	cfg.frontend = fe;
	cfg.fault_around = 1;
	cfg.log = t_log;

	/* the first restore, recorded: a random quarter of the pages, the last one by accessor */
	t_space_make(&A, &cfg, PAGEIN_BACKING_ANON, SIZE, SEED);
	T_EQ(pagein_ws_record_start(A.s, 0), 0);
	T_EQ(pagein_ws_record_start(A.s, 0), -EALREADY);
	T_EQ(pagein_space_start(A.s), 0);
	for (i = 0; i < SIZE / 4096 / 4; i++) {
		uint64_t p = t_rand(&rng, SIZE / 4096);

		for (k = 0; k < n && order[k] != p * 4096; k++)
			;
		if (k < n)
			continue; /* touched before: not a first touch */
		order[n++] = p * 4096;
		if (i + 1 < SIZE / 4096 / 4)
			T_EQ(*(volatile uint64_t *)(A.host + p * 4096), t_word(SEED, p * 4096));
		else
			T_EQ(pagein_read(A.s, p * 4096, &got, 8), 0);
	}
	T_EQ(pagein_ws_record_save(A.s, path, ID, err, sizeof(err)), 0);
	T_EQ(pi_ws_open(path, &ws, err, sizeof(err)), 0);
	T_EQ(ws.npages, n);
	k = 0;
	for (uint32_t r = 0; r < ws.nruns; r++)
		for (i = 0; i < ws.runs[r].npages; i++, k++)
			T_EQ(ws.runs[r].gpa + i * 4096, order[k]); /* first-touch order */
	pi_ws_close(&ws);
	t_space_free(&A);

	/* the next restore: prefetch it, then touch the same pages: no fault, no fetch */
	t_space_make(&B, &cfg, PAGEIN_BACKING_ANON, SIZE, SEED);
	T_EQ(pagein_space_start(B.s), 0);
	T_EQ(pagein_ws_prefetch(B.s, path, ID, &st, err, sizeof(err)), 0);
	T_EQ(st.installed, n);
	for (k = 0; k < n; k++)
		T_EQ(*(volatile uint64_t *)(B.host + order[k]), t_word(SEED, order[k]));
	pagein_stats_get(B.s, &ps);
	T_EQ(ps.faults_self + ps.faults_handler, 0);
	for (k = 0; k < n; k++)
		T_EQ(t_src_fetches(&B.ts, order[k]), 0);
	printf("  %s: %llu first touches recorded in order; the next restore prefetched them all "
	       "and took 0 faults for them\n", pagein_frontend_name(fe), (unsigned long long)n);
	t_space_free(&B);
	unlink(path);
}

int main(int argc, char **argv)
{
	if (argc > 2 || (argc == 2 && strcmp(argv[1], "self") && strcmp(argv[1], "handler"))) {
		fprintf(stderr, "usage: %s [self|handler]   (none: both)\n", argv[0]);
		return 1;
	}
	t_require_uffd();
	alarm(60);
	if (argc == 1 || !strcmp(argv[1], "self"))
		run(PAGEIN_FRONTEND_SELF);
	if (argc == 1 || !strcmp(argv[1], "handler"))
		run(PAGEIN_FRONTEND_HANDLER);
	t_pass("ws_record: first touches recorded in order, prefetched without faults next time");
}
