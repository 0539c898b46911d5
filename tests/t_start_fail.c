// SPDX-License-Identifier: MIT
/*
 * t_start_fail.c - a pagein_space_start that fails (a reader thread or its epoll cannot be made;
 * injected through the library's internal hooks) leaves nothing behind: it returns the error,
 * the regions are no longer registered (touching them in a SELF space does not kill the
 * process), and a later start works (its readers serve faults: no stale stop signal).
 */
#include <pthread.h>
#include <signal.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "helpers.h"
#include "internal.h"

#define SIZE (16 * 4096ull)
#define SEED 37

static struct t_space T;
static _Atomic int touched;

static void on_bus(int sig)
{
	static const char msg[] = "FAIL: SIGBUS touching a region after a failed start\n";

	if (write(1, msg, sizeof(msg) - 1) < 0)
		_exit(2);
	_exit(1);
}

static void *toucher(void *arg)
{
	uint64_t gpa = (uint64_t)(uintptr_t)arg;

	if (*(volatile uint64_t *)(T.host + gpa) == t_word(SEED, gpa))
		atomic_store(&touched, 1);
	else
		atomic_store(&touched, 2);
	return NULL;
}

/* Touch gpa on a thread; fail if it is not served with the right bytes within 2 s. */
static void touch_served(const char *what, uint64_t gpa)
{
	pthread_t th;
	int i;

	atomic_store(&touched, 0);
	T_EQ(pthread_create(&th, NULL, toucher, (void *)(uintptr_t)gpa), 0);
	for (i = 0; i < 2000 && !atomic_load(&touched); i++)
		usleep(1000);
	if (atomic_load(&touched) != 1) {
		printf("FAIL %s: a fault after the second start was %s\n", what,
		       atomic_load(&touched) ? "served with wrong bytes" : "not served in 2 s");
		exit(1);
	}
	pthread_join(th, NULL);
}

static void run(enum pagein_frontend fe, enum pi_inject inject, const char *what)
{
	struct pagein_config cfg;
	int ret;

	pagein_config_init(&cfg);
	cfg.frontend = fe;
	cfg.readers = 2;
	cfg.log = t_log;
	t_space_make(&T, &cfg, PAGEIN_BACKING_ANON, SIZE, SEED);
	pi_hooks.inject = inject;
	pi_hooks.inject_err = EAGAIN;
	ret = pagein_space_start(T.s);
	pi_hooks.inject = PI_INJECT_NONE;
	if (ret == 0) {
		printf("FAIL %s: start succeeded although %s failed\n", pagein_frontend_name(fe), what);
		exit(1);
	}
	T_EQ(ret, -EAGAIN);
	if (fe == PAGEIN_FRONTEND_SELF) {
		/* not started: plain memory, no SIGBUS (no pagein handler is there to catch it) */
		signal(SIGBUS, on_bus);
		(void)*(volatile uint64_t *)(T.host + SIZE - 4096);
		signal(SIGBUS, SIG_DFL);
		T_EQ(madvise(T.host + SIZE - 4096, 4096, MADV_DONTNEED), 0);
	}
	T_EQ(pagein_space_start(T.s), 0);
	touch_served(what, 4096);
	touch_served(what, 2 * 4096);
	t_space_free(&T);
	printf("  %s, %s failed: start returned %d, the second start serves faults\n",
	       pagein_frontend_name(fe), what, ret);
}

int main(void)
{
	t_require_uffd();
	alarm(60);
	run(PAGEIN_FRONTEND_SELF, PI_INJECT_READER_THREAD, "the event thread");
	run(PAGEIN_FRONTEND_HANDLER, PI_INJECT_READER_THREAD, "a reader thread");
	run(PAGEIN_FRONTEND_HANDLER, PI_INJECT_EPOLL, "a reader's epoll_create1");
	run(PAGEIN_FRONTEND_SELF, PI_INJECT_EPOLL, "the event thread's epoll_create1");
	t_pass("a failed start leaves nothing behind");
}
