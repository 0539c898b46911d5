// SPDX-License-Identifier: MIT
/*
 * t_accessors.c - the choke points: an accessor waits for a page another thread is fetching
 * (fetched once, both see its bytes); reads and writes spanning pages and two regions; pin;
 * a frozen range fails fast naming the page; a fault on a frozen page is reported and waits,
 * and thaw releases it (both front-ends); FROZEN_FAIL gives the faulter SIGBUS.
 */
#include <pthread.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include "helpers.h"

#define SIZE (2ull << 20)
#define SEED 3

static struct t_space T;
static _Atomic int frozen_reports, done;

static void *reader(void *arg)
{
	uint64_t w = 0;

	T_EQ(pagein_read(T.s, 8 * 4096 + 64, &w, 8), 0);
	T_EQ(w, t_word(SEED, 8 * 4096 + 64));
	return NULL;
}

static void on_frozen(void *arg, uint64_t gpa, uint64_t len)
{
	atomic_fetch_add(&frozen_reports, 1);
}

static void *toucher(void *arg)
{
	uint64_t gpa = (uintptr_t)arg;

	if (*(volatile uint64_t *)(T.host + gpa) != t_word(SEED, gpa))
		exit(1);
	atomic_store(&done, 1);
	return NULL;
}

static void wait_across_threads(void)
{
	struct pagein_config cfg;
	struct pagein_stats st;
	pthread_t a, b;

	pagein_config_init(&cfg);
	cfg.log = t_log;
	t_space_make(&T, &cfg, PAGEIN_BACKING_ANON, SIZE, SEED);
	T.ts.slow_gpa = 8 * 4096;
	T.ts.slow_us = 100000;
	T_EQ(pagein_space_start(T.s), 0);
	T_ASSERT(pthread_create(&a, NULL, reader, NULL) == 0);
	usleep(20000);
	T_ASSERT(pthread_create(&b, NULL, reader, NULL) == 0);
	pthread_join(a, NULL);
	pthread_join(b, NULL);
	T_EQ(t_src_fetches(&T.ts, 8 * 4096), 1);
	pagein_stats_get(T.s, &st);
	T_ASSERT(st.blocked_ns > 10 * 1000000ull); /* the second reader really waited */
	printf("  accessor waited %.1f ms for a page in flight; fetched once\n", (double)st.blocked_ns / 1e6);
	t_space_free(&T);
}

static void spanning(void)
{
	struct pagein_config cfg;
	struct pagein_source *src;
	struct pagein_space *s;
	struct t_src ts;
	uint8_t *h0, *h1, *img, buf[3 * 4096], back[3 * 4096];
	void *pin;
	unsigned i;

	pagein_config_init(&cfg);
	cfg.log = t_log;
	img = malloc(2 * SIZE);
	T_ASSERT(img);
	t_fill(img, 0, 2 * SIZE, SEED, 0);
	T_EQ(pagein_space_new(&cfg, &s), 0);
	/* two adjacent regions, different backings */
	T_EQ(pagein_region_add(s, 0, SIZE, PAGEIN_BACKING_ANON, (void **)&h0), 0);
	T_EQ(pagein_region_add(s, SIZE, SIZE, PAGEIN_BACKING_SHMEM, (void **)&h1), 0);
	T_EQ(t_src_new(&ts, img, 0, 2 * SIZE, &src), 0);
	T_EQ(pagein_space_set_source(s, src), 0);
	T_EQ(pagein_space_start(s), 0);
	/* a read over the region boundary, unaligned at both ends */
	T_EQ(pagein_read(s, SIZE - 4096 - 100, buf, sizeof(buf)), 0);
	T_ASSERT(!memcmp(buf, img + SIZE - 4096 - 100, sizeof(buf)));
	/* a write over the boundary, seen through the faulting mappings and read back */
	for (i = 0; i < sizeof(buf); i++)
		buf[i] = (uint8_t)(i * 7 + 1);
	T_EQ(pagein_write(s, SIZE - 2 * 4096 + 10, buf, sizeof(buf)), 0);
	T_EQ(pagein_read(s, SIZE - 2 * 4096 + 10, back, sizeof(back)), 0);
	T_ASSERT(!memcmp(buf, back, sizeof(buf)));
	T_ASSERT(!memcmp(h0 + SIZE - 2 * 4096 + 10, buf, 2 * 4096 - 10));
	T_ASSERT(!memcmp(h1, buf + 2 * 4096 - 10, sizeof(buf) - (2 * 4096 - 10)));
	/* the rest of the touched pages kept the source's bytes */
	T_EQ(t_check(h0 + SIZE - 2 * 4096, SIZE - 2 * 4096, 8, SEED, 0), UINT64_MAX);
	/* pin returns a present range's host address */
	T_EQ(pagein_pin(s, SIZE + 64 * 4096, 3 * 4096, &pin), 0);
	T_ASSERT(pin == h1 + 64 * 4096);
	T_EQ(t_check(pin, SIZE + 64 * 4096, 3 * 4096, SEED, 0), UINT64_MAX);
	T_EQ(pagein_freeze(s, SIZE + 100 * 4096, 4096), -EBUSY); /* pinned region */
	pagein_unpin(s, SIZE + 64 * 4096, 3 * 4096);
	printf("  reads/writes across pages and regions, pin: ok\n");
	pagein_space_free(s);
	pagein_source_free(src);
	free(ts.fetches);
	free(img);
}

static void frozen(enum pagein_frontend fe)
{
	struct pagein_config cfg;
	uint64_t t0, bad = 0, w;
	pthread_t th;

	pagein_config_init(&cfg);
	cfg.frontend = fe;
	cfg.log = t_log;
	cfg.on_frozen_fault = on_frozen;
	cfg.fault_around = 1;
	t_space_make(&T, &cfg, PAGEIN_BACKING_ANON, SIZE, SEED);
	T_EQ(pagein_space_start(T.s), 0);
	T_EQ(pagein_freeze(T.s, 32 * 4096, 4 * 4096), 0);
	/* accessors fail fast and name the page */
	t0 = t_ms_now();
	T_EQ(pagein_read(T.s, 30 * 4096, &w, 8), 0);
	T_EQ(pagein_resolve(T.s, 31 * 4096, 3 * 4096, &bad), -EFAULT);
	T_EQ(bad, 32 * 4096);
	T_EQ(pagein_read(T.s, 33 * 4096, &w, 8), -EFAULT);
	T_ASSERT(t_ms_now() - t0 < 1000);
	T_EQ(t_src_fetches(&T.ts, 32 * 4096), 0);
	/* a fault on a frozen page is reported and held until thaw */
	atomic_store(&done, 0);
	atomic_store(&frozen_reports, 0);
	T_ASSERT(pthread_create(&th, NULL, toucher, (void *)(uintptr_t)(34 * 4096 + 16)) == 0);
	usleep(200000);
	T_ASSERT(!atomic_load(&done));
	T_ASSERT(atomic_load(&frozen_reports) >= 1);
	T_EQ(pagein_thaw(T.s, 32 * 4096, 4 * 4096), 0);
	pthread_join(th, NULL);
	T_ASSERT(atomic_load(&done));
	T_EQ(pagein_read(T.s, 33 * 4096, &w, 8), 0);
	T_EQ(w, t_word(SEED, 33 * 4096));
	printf("  %s: frozen range failed fast, the faulter was reported, held and released by thaw\n",
	       pagein_frontend_name(fe));
	t_space_free(&T);
}

/* FROZEN_FAIL: the faulting thread gets SIGBUS (in a child, which must die of it). */
static void frozen_fail(enum pagein_frontend fe)
{
	struct pagein_config cfg;
	int status;
	pid_t pid = fork();

	T_ASSERT(pid >= 0);
	if (pid == 0) {
		pagein_config_init(&cfg);
		cfg.frontend = fe;
		cfg.frozen_policy = PAGEIN_FROZEN_FAIL;
		t_space_make(&T, &cfg, PAGEIN_BACKING_ANON, SIZE, SEED);
		T_EQ(pagein_space_start(T.s), 0);
		T_EQ(pagein_freeze(T.s, 0, 4096), 0);
		alarm(10);
		(void)*(volatile uint64_t *)T.host;
		_exit(3); /* the read succeeded: wrong */
	}
	T_ASSERT(waitpid(pid, &status, 0) == pid);
	if (!WIFSIGNALED(status) || WTERMSIG(status) != SIGBUS) {
		fprintf(stderr, "FAIL: FROZEN_FAIL (%s): child status %#x, want death by SIGBUS\n",
			pagein_frontend_name(fe), status);
		exit(1);
	}
	printf("  %s: FROZEN_FAIL faulter died of SIGBUS\n", pagein_frontend_name(fe));
}

int main(void)
{
	t_require_uffd();
	alarm(60);
	wait_across_threads();
	spanning();
	frozen(PAGEIN_FRONTEND_SELF);
	frozen(PAGEIN_FRONTEND_HANDLER);
	frozen_fail(PAGEIN_FRONTEND_SELF);
	frozen_fail(PAGEIN_FRONTEND_HANDLER);
	t_pass("accessors and freeze");
}
