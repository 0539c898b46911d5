// SPDX-License-Identifier: MIT
/*
 * t_mm_events.c - in handler mode with one reader, mm events that arrive while a fault's fetch
 * is slow (MADV_DONTNEED, munmap, mremap of other pages of the region) never stall it: the
 * install that meets EAGAIN goes back and reads the pending event, then serves the fault. Each
 * operation and the fault end well under the time-out, and the fault sees the right bytes.
 */
#include <pthread.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "helpers.h"

#define PAGES 64
#define SIZE (PAGES * 4096ull)
#define SEED 17
#define SLOW_US 300000
#define LIMIT_MS 1500 /* the fetch takes 300 ms; the time-out is 5000 ms */

static struct t_space T;
static _Atomic int fault_done;
static uint64_t fault_gpa, fault_word;

static void *faulter(void *arg)
{
	fault_word = *(volatile uint64_t *)(T.host + fault_gpa);
	atomic_store(&fault_done, 1);
	return NULL;
}

/* Touch fault_gpa (slow) on a thread, run op 50 ms into its fetch, check both end in time. */
static void round_with(const char *name, uint64_t slow_page, int (*op)(void), uint64_t *op_ms)
{
	pthread_t th;
	uint64_t t0, t1;
	int ret;

	struct pagein_config cfg;
	uint64_t p;

	/* a space of its own per round: the test source's slow page is set before any reader
	 * thread exists (it is a plain field the readers read) */
	pagein_config_init(&cfg);
	cfg.frontend = PAGEIN_FRONTEND_HANDLER;
	cfg.readers = 1;
	cfg.fault_around = 1;
	cfg.timeout_ms = 5000;
	cfg.log = t_log;
	t_space_make(&T, &cfg, PAGEIN_BACKING_ANON, SIZE, SEED);
	fault_gpa = slow_page * 4096;
	T.ts.slow_gpa = fault_gpa;
	T.ts.slow_us = SLOW_US;
	T_EQ(pagein_space_start(T.s), 0);
	/* the pages the operations act on are present first */
	for (p = 8; p < PAGES; p++)
		T_EQ(*(volatile uint64_t *)(T.host + p * 4096), t_word(SEED, p * 4096));
	atomic_store(&fault_done, 0);
	T_EQ(pthread_create(&th, NULL, faulter, NULL), 0);
	usleep(50000);
	t0 = t_ms_now();
	ret = op();
	t1 = t_ms_now();
	T_EQ(ret, 0);
	*op_ms = t1 - t0;
	while (!atomic_load(&fault_done) && t_ms_now() - t0 < 4 * LIMIT_MS)
		usleep(1000);
	if (!atomic_load(&fault_done)) {
		printf("FAIL %s: the faulting thread has not returned after %llu ms (op took %llu ms)\n",
		       name, (unsigned long long)(t_ms_now() - t0), (unsigned long long)*op_ms);
		exit(1);
	}
	pthread_join(th, NULL);
	if (*op_ms > LIMIT_MS) {
		printf("FAIL %s: the operation took %llu ms\n", name, (unsigned long long)*op_ms);
		exit(1);
	}
	T_EQ(fault_word, t_word(SEED, fault_gpa));
	printf("  %s during a 300 ms fetch: op %llu ms, fault served with the right bytes in %llu ms\n",
	       name, (unsigned long long)*op_ms, (unsigned long long)(t_ms_now() - t0 + 50));
	t_space_free(&T);
}

static int op_dontneed(void)
{
	return madvise(T.host + 10 * 4096, 4096, MADV_DONTNEED);
}

static int op_munmap(void)
{
	return munmap(T.host + (PAGES - 1) * 4096, 4096);
}

static int op_mremap(void)
{
	void *dst = mmap(NULL, 4096, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	void *got;

	if (dst == MAP_FAILED)
		return -1;
	got = mremap(T.host + (PAGES - 2) * 4096, 4096, 4096, MREMAP_MAYMOVE | MREMAP_FIXED, dst);
	if (got == MAP_FAILED)
		return -1;
	/* the page moved with its bytes: it was present */
	if (*(volatile uint64_t *)got != t_word(SEED, (PAGES - 2) * 4096)) {
		printf("FAIL mremap: the moved page lost its bytes\n");
		exit(1);
	}
	return munmap(got, 4096);
}

int main(void)
{
	uint64_t ms;

	t_require_uffd();
	alarm(60);
	round_with("MADV_DONTNEED", 0, op_dontneed, &ms);
	round_with("munmap", 1, op_munmap, &ms);
	round_with("mremap", 2, op_mremap, &ms);
	t_pass("mm events during slow fetches (handler, 1 reader)");
}
