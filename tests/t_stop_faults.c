// SPDX-License-Identifier: MIT
/*
 * t_stop_faults.c - faults that arrive while a space stops are not source errors: the faulting
 * thread gets SIGBUS (never a zero page), but on_fault_error is not called, no page is counted
 * as failed, and pagein_wait_complete returns -ESHUTDOWN (not -EIO). Handler mode, 2 readers:
 * one is busy with a slow fetch that holds the stop back while the other meets the new fault.
 */
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <time.h>
#include <unistd.h>

#include "helpers.h"

#define SIZE (64 * 4096ull)
#define SEED 41

static struct t_space T;
static _Atomic int errors, wait_ret = 1, bus;
static sigjmp_buf jb;

static void on_error(void *arg, uint64_t gpa, uint64_t len, int err)
{
	atomic_fetch_add(&errors, 1);
}

static void on_bus(int sig)
{
	atomic_store(&bus, 1);
	siglongjmp(jb, 1);
}

static void *slow(void *arg)
{
	(void)*(volatile uint64_t *)T.host; /* page 0: a 400 ms fetch */
	return NULL;
}

static void *waiter(void *arg)
{
	atomic_store(&wait_ret, pagein_wait_complete(T.s, 5000));
	return NULL;
}

static void *stopper(void *arg)
{
	pagein_space_stop(T.s);
	return NULL;
}

static void *late(void *arg)
{
	struct sigaction sa = { .sa_handler = on_bus };

	sigaction(SIGBUS, &sa, NULL);
	if (!sigsetjmp(jb, 1))
		(void)*(volatile uint64_t *)(T.host + 20 * 4096);
	return NULL;
}

int main(void)
{
	struct pagein_config cfg;
	pthread_t a, b, c, d;
	uint64_t present, total;

	t_require_uffd();
	alarm(30);
	pagein_config_init(&cfg);
	cfg.frontend = PAGEIN_FRONTEND_HANDLER;
	cfg.readers = 2;
	cfg.fault_around = 1;
	cfg.on_fault_error = on_error;
	cfg.log = t_log;
	t_space_make(&T, &cfg, PAGEIN_BACKING_ANON, SIZE, SEED);
	T.ts.slow_gpa = 0;
	T.ts.slow_us = 400000;
	T_EQ(pagein_space_start(T.s), 0);
	T_EQ(pthread_create(&b, NULL, waiter, NULL), 0);
	T_EQ(pthread_create(&a, NULL, slow, NULL), 0);
	usleep(50000);
	T_EQ(pthread_create(&c, NULL, stopper, NULL), 0);
	usleep(50000); /* stopping: the slow fetch holds the stop back */
	T_EQ(pthread_create(&d, NULL, late, NULL), 0);
	pthread_join(d, NULL);
	pthread_join(a, NULL);
	pthread_join(c, NULL);
	pthread_join(b, NULL);
	T_EQ(atomic_load(&bus), 1);
	pagein_residency(T.s, &present, &total);
	if (atomic_load(&errors) || atomic_load(&wait_ret) != -ESHUTDOWN) {
		printf("FAIL: a fault during stop was reported as an error (on_fault_error %d "
		       "times) and wait_complete returned %d, not -ESHUTDOWN\n",
		       atomic_load(&errors), atomic_load(&wait_ret));
		return 1;
	}
	t_space_free(&T);
	t_pass("faults during stop are not errors");
}
