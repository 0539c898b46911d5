// SPDX-License-Identifier: MIT
/*
 * t_eexist.c - the EEXIST-without-wake trap: a thread is blocked in a fault (handler mode) while
 * its page is installed by somebody else with DONTWAKE. The handler's own UFFDIO_COPY then fails
 * with EEXIST, which wakes nobody: unless the library wakes the page explicitly, the thread
 * sleeps for ever (this test then fails by time-out).
 */
#include <linux/userfaultfd.h>
#include <pthread.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "helpers.h"

#define SIZE (1ull << 20)
#define SEED 9
#define PAGE_GPA (16 * 4096ull)

static struct t_space T;
static _Atomic int done;
static uint64_t seen;

static void *toucher(void *arg)
{
	seen = *(volatile uint64_t *)(T.host + PAGE_GPA);
	atomic_store(&done, 1);
	return NULL;
}

int main(void)
{
	struct pagein_config cfg;
	struct pagein_stats st;
	struct uffdio_copy copy;
	pthread_t th;
	int i, uffd;

	t_require_uffd();
	alarm(30);
	pagein_config_init(&cfg);
	cfg.frontend = PAGEIN_FRONTEND_HANDLER;
	cfg.fault_around = 1;
	cfg.log = t_log;
	t_space_make(&T, &cfg, PAGEIN_BACKING_ANON, SIZE, SEED);
	T.ts.slow_gpa = PAGE_GPA;
	T.ts.slow_us = 300000; /* the handler's fetch takes 300 ms: our window */
	T_EQ(pagein_space_start(T.s), 0);
	T_ASSERT(pthread_create(&th, NULL, toucher, NULL) == 0);
	for (i = 0; i < 2000 && !t_src_fetches(&T.ts, PAGE_GPA); i++)
		usleep(1000);
	T_ASSERT(t_src_fetches(&T.ts, PAGE_GPA) == 1);

	/* someone else installs the page, waking nobody */
	uffd = pagein_space_uffd(T.s, 0);
	T_ASSERT(uffd >= 0);
	memset(&copy, 0, sizeof(copy));
	copy.dst = (uintptr_t)T.host + PAGE_GPA;
	copy.src = (uintptr_t)T.img + PAGE_GPA;
	copy.len = 4096;
	copy.mode = UFFDIO_COPY_MODE_DONTWAKE;
	T_ASSERT(ioctl(uffd, UFFDIO_COPY, &copy) == 0);
	usleep(50000);
	T_ASSERT(!atomic_load(&done)); /* DONTWAKE really left it asleep */

	/* the handler's COPY meets EEXIST and must wake the thread */
	for (i = 0; i < 5000 && !atomic_load(&done); i++)
		usleep(1000);
	if (!atomic_load(&done)) {
		fprintf(stderr, "FAIL: the faulting thread was never woken after EEXIST\n");
		return 1;
	}
	pthread_join(th, NULL);
	T_EQ(seen, t_word(SEED, PAGE_GPA));
	pagein_stats_get(T.s, &st);
	T_ASSERT(st.eexist >= 1);
	printf("  woken after EEXIST (eexist %llu) with the right bytes\n", (unsigned long long)st.eexist);
	t_space_free(&T);
	t_pass("eexist wakes the faulter");
}
