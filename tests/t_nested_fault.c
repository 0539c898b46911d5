// SPDX-License-Identifier: MIT
/*
 * t_nested_fault.c - a nested fault on the thread that is fetching the same page (a signal
 * handler touching guest memory while its thread is inside an accessor's fetch) fails fast with
 * -EDEADLK instead of waiting on its own claim until the deadline: an accessor gets -EDEADLK, a
 * touch gets SIGBUS (forwarded to the program's handler), both well under the time-out, and the
 * outer fetch then completes with the right bytes (the page is not failed).
 */
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <time.h>
#include <unistd.h>

#include "helpers.h"

#define SIZE (16 * 4096ull)
#define SEED 43
#define TIMEOUT_MS 2000

static struct t_space T;
static uint64_t page_gpa;
static int mode; /* 0: nested accessor, 1: nested touch */
static _Atomic int nested_ret = 1, nested_err;
static _Atomic uint64_t nested_ms;
static sigjmp_buf jb;
static _Atomic int in_nested;

static void on_error(void *arg, uint64_t gpa, uint64_t len, int err)
{
	atomic_store(&nested_err, err);
}

/* The program's own SIGBUS handler: pagein forwards the faults it does not serve here. */
static void on_bus(int sig)
{
	if (atomic_load(&in_nested))
		siglongjmp(jb, 1);
	signal(SIGBUS, SIG_DFL);
}

static void on_usr1(int sig)
{
	uint64_t t0 = t_ms_now(), w;

	atomic_store(&in_nested, 1);
	if (mode == 0) {
		atomic_store(&nested_ret, pagein_read(T.s, page_gpa, &w, 8));
	} else if (!sigsetjmp(jb, 1)) {
		w = *(volatile uint64_t *)(T.host + page_gpa);
		atomic_store(&nested_ret, 0);
	} else {
		atomic_store(&nested_ret, -EFAULT); /* SIGBUS */
	}
	atomic_store(&in_nested, 0);
	atomic_store(&nested_ms, t_ms_now() - t0);
}

static void *outer(void *arg)
{
	uint64_t w = 0;

	T_EQ(pagein_read(T.s, page_gpa, &w, 8), 0);
	T_EQ(w, t_word(SEED, page_gpa));
	return NULL;
}

static int round_(int m, uint64_t page)
{
	pthread_t th;

	mode = m;
	page_gpa = page * 4096;
	T.ts.slow_gpa = page_gpa;
	T.ts.slow_us = 300000;
	atomic_store(&nested_ret, 1);
	atomic_store(&nested_err, 0);
	T_EQ(pthread_create(&th, NULL, outer, NULL), 0);
	usleep(50000);
	pthread_kill(th, SIGUSR1);
	pthread_join(th, NULL);
	printf("  nested %s on the fetching thread: %d after %llu ms (error reported %d)\n",
	       m ? "touch" : "accessor", atomic_load(&nested_ret),
	       (unsigned long long)atomic_load(&nested_ms), atomic_load(&nested_err));
	if (atomic_load(&nested_ms) > TIMEOUT_MS / 4) {
		printf("FAIL: the nested %s waited %llu ms on its own thread's fetch\n",
		       m ? "touch" : "accessor", (unsigned long long)atomic_load(&nested_ms));
		return 1;
	}
	T_EQ(atomic_load(&nested_ret), m ? -EFAULT : -EDEADLK);
	if (m)
		T_EQ(atomic_load(&nested_err), -EDEADLK);
	return 0;
}

int main(void)
{
	struct pagein_config cfg;
	struct sigaction sa = { .sa_handler = on_usr1 };
	int failed = 0;

#if defined(__SANITIZE_THREAD__)
	/* TSan defers asynchronous signals to its own safe points and wraps every handler, so a
	 * nested fault from a SIGUSR1 handler cannot be staged the way a real program meets it */
	t_skip("ThreadSanitizer build: it defers asynchronous signal handlers");
#endif
	t_require_uffd();
	alarm(30);
	sigaction(SIGUSR1, &sa, NULL);
	signal(SIGBUS, on_bus); /* before start: pagein forwards what it does not serve */
	pagein_config_init(&cfg);
	cfg.fault_around = 1;
	cfg.timeout_ms = TIMEOUT_MS;
	cfg.on_fault_error = on_error;
	cfg.log = t_log;
	t_space_make(&T, &cfg, PAGEIN_BACKING_ANON, SIZE, SEED);
	T_EQ(pagein_space_start(T.s), 0);
	failed |= round_(0, 3);
	failed |= round_(1, 5);
	if (failed)
		return 1;
	T_EQ(*(volatile uint64_t *)(T.host + 5 * 4096), t_word(SEED, 5 * 4096));
	t_space_free(&T);
	t_pass("nested faults on the fetching thread fail fast");
}
