// SPDX-License-Identifier: MIT
/*
 * t_discard.c - discarded pages are never fetched again: after MADV_DONTNEED an anon page reads
 * zero (what the kernel gives without userfaultfd), a shmem page keeps its page cache bytes,
 * and after MADV_REMOVE (hole punched) a shmem page reads zero; the source is not asked twice
 * and stale source data is never resurrected. Both front-ends (REMOVE events are read).
 * Usage: t_discard self|handler
 */
#include <sys/mman.h>
#include <unistd.h>

#include "helpers.h"

#define SIZE (1ull << 20)
#define SEED 11

static void run(enum pagein_frontend fe, enum pagein_backing b)
{
	struct pagein_config cfg;
	struct pagein_stats st;
	struct t_space T;
	volatile uint64_t *w;
	uint64_t gpa = 5 * 4096, got;

	pagein_config_init(&cfg);
	cfg.frontend = fe;
	cfg.fault_around = 1;
	cfg.log = t_log;
	t_space_make(&T, &cfg, b, SIZE, SEED);
	T_EQ(pagein_space_start(T.s), 0);
	w = (volatile uint64_t *)(T.host + gpa);
	T_EQ(*w, t_word(SEED, gpa));     /* fetched */
	*w = 0x1234;                     /* the guest's own write */
	T_EQ(madvise(T.host + gpa, 4096, MADV_DONTNEED), 0);
	got = *w;                        /* faults again: re-mapped, not re-fetched */
	T_EQ(got, b == PAGEIN_BACKING_ANON ? 0 : 0x1234);
	T_EQ(pagein_read(T.s, gpa, &got, 8), 0);
	T_EQ(got, b == PAGEIN_BACKING_ANON ? 0 : 0x1234);
	if (b == PAGEIN_BACKING_SHMEM) {
		T_EQ(madvise(T.host + gpa, 4096, MADV_REMOVE), 0);
		T_EQ(*w, 0);             /* hole punched: zero, never the source's bytes */
	}
	T_EQ(t_src_fetches(&T.ts, gpa), 1);
	/* a handler counts the re-map after its ioctl has already woken the faulter */
	for (int i = 0; i < 1000; i++) {
		pagein_stats_get(T.s, &st);
		if (st.rezero >= 1)
			break;
		usleep(1000);
	}
	T_ASSERT(st.rezero >= 1);
	printf("  %s %s: discarded page re-mapped (%s), fetched once, remove events %llu\n",
	       pagein_frontend_name(fe), pagein_backing_name(b),
	       b == PAGEIN_BACKING_ANON ? "zero" : "page cache kept, then zero after a punch",
	       (unsigned long long)st.events_remove);
	t_space_free(&T);
}

int main(int argc, char **argv)
{
	enum pagein_frontend fe;

	if (argc != 2) {
		fprintf(stderr, "usage: %s self|handler\n", argv[0]);
		return 1;
	}
	fe = t_frontend(argv[1]);
	t_require_uffd();
	alarm(30);
	run(fe, PAGEIN_BACKING_ANON);
	run(fe, PAGEIN_BACKING_SHMEM);
	printf("PASS discard %s\n", argv[1]);
	return 0;
}
