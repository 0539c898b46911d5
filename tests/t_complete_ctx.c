// SPDX-License-Identifier: MIT
/*
 * t_complete_ctx.c - on_complete is never called in signal context: the faulting thread holds a
 * mutex while it touches the last missing page (SELF mode, so the install happens inside its
 * SIGBUS handler), and the callback takes that mutex. It must finish, on another thread.
 */
#include <pthread.h>
#include <time.h>
#include <unistd.h>

#include "helpers.h"

#define SIZE (16 * 4096ull)
#define SEED 23

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static _Atomic int called, locked_ok;
static _Atomic pid_t cb_tid;

static void on_complete(void *arg)
{
	struct timespec dl;

	atomic_store(&cb_tid, gettid());
	clock_gettime(CLOCK_REALTIME, &dl);
	dl.tv_sec += 2;
	if (pthread_mutex_timedlock(&lock, &dl) == 0) {
		atomic_store(&locked_ok, 1);
		pthread_mutex_unlock(&lock);
	}
	atomic_store(&called, 1);
}

int main(void)
{
	struct pagein_config cfg;
	struct t_space T;
	uint64_t p;
	int i;

	t_require_uffd();
	alarm(30);
	pagein_config_init(&cfg);
	cfg.fault_around = 1;
	cfg.on_complete = on_complete;
	cfg.log = t_log;
	t_space_make(&T, &cfg, PAGEIN_BACKING_ANON, SIZE, SEED);
	T_EQ(pagein_space_start(T.s), 0);
	for (p = 0; p + 4096 < SIZE; p += 4096)
		T_EQ(*(volatile uint64_t *)(T.host + p), t_word(SEED, p));
	T_EQ(called, 0);
	pthread_mutex_lock(&lock);
	T_EQ(*(volatile uint64_t *)(T.host + SIZE - 4096), t_word(SEED, SIZE - 4096));
	usleep(20000);
	pthread_mutex_unlock(&lock);
	for (i = 0; i < 5000 && !atomic_load(&called); i++)
		usleep(1000);
	T_ASSERT(atomic_load(&called));
	if (!atomic_load(&locked_ok) || atomic_load(&cb_tid) == gettid()) {
		printf("FAIL: on_complete ran on the faulting thread (tid %d, ours %d) and %s the "
		       "mutex it holds\n", (int)atomic_load(&cb_tid), (int)gettid(),
		       atomic_load(&locked_ok) ? "took" : "could not take");
		return 1;
	}
	T_EQ(pagein_wait_complete(T.s, 1000), 0);
	t_space_free(&T);
	t_pass("on_complete runs outside signal context");
}
