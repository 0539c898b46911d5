// SPDX-License-Identifier: MIT
/*
 * t_pin_freeze.c - pin, unpin, freeze and thaw are each one atomic step. Threads hammer them on
 * one region while checking: a pinned range is never frozen (an accessor on it never fails fast
 * while the pin is held), two racing unpins of one pin never leave the count below zero (a
 * freeze then still sees a later pin), and a thaw racing a FROZEN_FAIL fault never leaves the
 * thawed page poisoned (handler mode).
 */
#include <pthread.h>
#include <sched.h>
#include <setjmp.h>
#include <signal.h>
#include <time.h>
#include <unistd.h>

#include "helpers.h"
#include "internal.h"

#define PAGES 64
#define SIZE (PAGES * 4096ull)
#define SEED 31
#define RUN_MS 1500

static struct t_space T;
static _Atomic int stop, violations;
static _Atomic uint64_t pins_ok, freezes_ok;
static int failed; /* parts that failed (main thread only) */

static void *pinner(void *arg)
{
	uint64_t gpa = (uint64_t)(uintptr_t)arg, w;
	void *h;
	int ret;

	while (!atomic_load(&stop)) {
		if (pagein_pin(T.s, gpa, 4096, &h) != 0)
			continue;
		atomic_fetch_add(&pins_ok, 1);
		ret = pagein_read(T.s, gpa, &w, 8);
		usleep(300); /* hold the pin across a freeze's check-then-act window */
		if ((ret != 0 || pi_test(T.s->regions[0].frozen, gpa / 4096)) &&
		    atomic_fetch_add(&violations, 1) < 3)
			printf("  violation: pinned gpa %#llx is frozen (read %d)\n",
			       (unsigned long long)gpa, ret);
		pagein_unpin(T.s, gpa, 4096);
		/* leave gaps, so that freezes find the region unpinned */
		for (volatile unsigned k = 0; k < (unsigned)(w & 1023) * 8; k++)
			;
		sched_yield();
	}
	return NULL;
}

static void *freezer(void *arg)
{
	while (!atomic_load(&stop)) {
		if (pagein_freeze(T.s, 0, SIZE) != 0)
			continue;
		atomic_fetch_add(&freezes_ok, 1);
		usleep(500); /* stay frozen long enough for a racing pin to see it */
		T_EQ(pagein_thaw(T.s, 0, SIZE), 0);
	}
	return NULL;
}

static pthread_barrier_t bar;

static void *unpinner(void *arg)
{
	unsigned i;

	for (i = 0; i < 200; i++) {
		pthread_barrier_wait(&bar);
		pagein_unpin(T.s, 0, 4096);
		pthread_barrier_wait(&bar);
	}
	return NULL;
}

/* Two unpins race for one pin; a later pin must still block a freeze. */
static void double_unpin(void)
{
	pthread_t a, b;
	unsigned i, bad = 0;
	void *h;

	pthread_barrier_init(&bar, NULL, 3);
	T_EQ(pthread_create(&a, NULL, unpinner, NULL), 0);
	T_EQ(pthread_create(&b, NULL, unpinner, NULL), 0);
	for (i = 0; i < 200; i++) {
		T_EQ(pagein_pin(T.s, 0, 4096, &h), 0);
		pthread_barrier_wait(&bar);
		pthread_barrier_wait(&bar);
		T_EQ(pagein_pin(T.s, 0, 4096, &h), 0);
		if (pagein_freeze(T.s, 0, 4096) == 0) {
			if (!bad++)
				printf("FAIL: two unpins of one pin let a freeze pass a later pin "
				       "(round %u)\n", i);
			T_EQ(pagein_thaw(T.s, 0, 4096), 0);
		}
		pagein_unpin(T.s, 0, 4096);
	}
	pthread_join(a, NULL);
	pthread_join(b, NULL);
	pthread_barrier_destroy(&bar);
	failed += bad > 0;
}

static __thread sigjmp_buf jb;
static __thread volatile int in_touch;

static void on_bus(int sig, siginfo_t *si, void *uc)
{
	if (in_touch)
		siglongjmp(jb, 1);
	signal(SIGBUS, SIG_DFL);
}

/* Touch gpa; 1 = SIGBUS (frozen, FAIL policy), 0 = read. */
static int touch(uint64_t gpa, uint64_t *w)
{
	if (sigsetjmp(jb, 1)) {
		in_touch = 0;
		return 1;
	}
	in_touch = 1;
	*w = *(volatile uint64_t *)(T.host + gpa);
	in_touch = 0;
	return 0;
}

static void *toucher(void *arg)
{
	uint64_t w, p = 1;

	while (!atomic_load(&stop)) {
		touch(p * 4096, &w);
		p = p % (PAGES - 1) + 1;
	}
	return NULL;
}

/* Thaw racing FROZEN_FAIL faults: once thawed, every page reads right. */
static void thaw_race(void)
{
	struct pagein_config cfg;
	struct sigaction sa = { .sa_sigaction = on_bus, .sa_flags = SA_SIGINFO | SA_NODEFER };
	pthread_t th[2];
	uint64_t t0 = t_ms_now(), p, w, rounds = 0;
	int i;

	sigaction(SIGBUS, &sa, NULL);
	pagein_config_init(&cfg);
	cfg.frontend = PAGEIN_FRONTEND_HANDLER;
	cfg.readers = 2;
	cfg.fault_around = 1;
	cfg.frozen_policy = PAGEIN_FROZEN_FAIL;
	cfg.log = NULL;
	while (t_ms_now() - t0 < RUN_MS) {
		t_space_make(&T, &cfg, PAGEIN_BACKING_ANON, SIZE, SEED);
		T_EQ(pagein_space_start(T.s), 0);
		T_EQ(pagein_freeze(T.s, 4096, SIZE - 4096), 0);
		atomic_store(&stop, 0);
		for (i = 0; i < 2; i++)
			T_EQ(pthread_create(&th[i], NULL, toucher, NULL), 0);
		usleep(1000 + (unsigned)(rounds % 7) * 300);
		T_EQ(pagein_thaw(T.s, 4096, SIZE - 4096), 0);
		atomic_store(&stop, 1);
		for (i = 0; i < 2; i++)
			pthread_join(th[i], NULL);
		usleep(20000); /* let the readers finish the faults in flight */
		for (p = 1; p < PAGES; p++) {
			if (touch(p * 4096, &w)) {
				printf("FAIL: page %llu is still poisoned after thaw (round %llu)\n",
				       (unsigned long long)p, (unsigned long long)rounds);
				failed++;
				break;
			}
			T_EQ(w, t_word(SEED, p * 4096));
		}
		t_space_free(&T);
		rounds++;
	}
	printf("  thaw vs FROZEN_FAIL faults: %llu rounds, every thawed page served\n",
	       (unsigned long long)rounds);
}

int main(void)
{
	struct pagein_config cfg;
	pthread_t th[4];
	uint64_t t0;
	int i;

	t_require_uffd();
	alarm(60);
	pi_hooks.race_us = 200; /* widen each check-then-act window */
	pagein_config_init(&cfg);
	cfg.log = NULL;
	t_space_make(&T, &cfg, PAGEIN_BACKING_ANON, SIZE, SEED);
	T_EQ(pagein_space_start(T.s), 0);
	T_EQ(pagein_resolve(T.s, 0, SIZE, NULL), 0);
	for (i = 0; i < 3; i++)
		T_EQ(pthread_create(&th[i], NULL, pinner, (void *)(uintptr_t)(i * 4096 * 7)), 0);
	T_EQ(pthread_create(&th[3], NULL, freezer, NULL), 0);
	t0 = t_ms_now();
	while (t_ms_now() - t0 < RUN_MS && atomic_load(&violations) == 0)
		usleep(10000);
	atomic_store(&stop, 1);
	for (i = 0; i < 4; i++)
		pthread_join(th[i], NULL);
	if (atomic_load(&violations)) {
		printf("FAIL: %d pinned ranges found frozen (%llu pins, %llu freezes)\n",
		       atomic_load(&violations), (unsigned long long)pins_ok,
		       (unsigned long long)freezes_ok);
		failed++;
	} else
	printf("  pin vs freeze: %llu pins, %llu freezes, no pinned range frozen\n",
	       (unsigned long long)pins_ok, (unsigned long long)freezes_ok);
	double_unpin();
	printf("  racing unpins: the pin count never went below zero\n");
	t_space_free(&T);
	thaw_race();
	if (failed)
		return 1;
	t_pass("pin/freeze/thaw/unpin are atomic");
}
