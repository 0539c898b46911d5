// SPDX-License-Identifier: MIT
/*
 * t_link.c - the destination's pause state (lib/net/link.c): threads waiting through a pause wake
 * when it resumes (0) or fails (-ECONNRESET), and no earlier; a waiter's own deadline and the pause
 * limit bound the wait; callbacks come once per pause, in order, with the pause's length; a pause
 * while resuming is the same pause; the backoff grows from 20 ms to 5 s within +-20 %.
 */
#include <pthread.h>
#include <time.h>
#include <unistd.h>

#include "helpers.h"
#include "net/link.h"

static struct pi_link lk; /* "link" is unistd.h's */
static _Atomic int woke;
static _Atomic unsigned paused_cb, resumed_cb;
static _Atomic uint64_t resumed_len;

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void on_paused(void *arg, const char *why)
{
	T_ASSERT(arg == &lk);
	T_ASSERT(why && why[0]);
	paused_cb++;
}

static void on_resumed(void *arg, uint64_t ns)
{
	resumed_cb++;
	resumed_len = ns;
}

static void *waiter(void *arg)
{
	int r = pi_link_wait(&lk, 0);

	atomic_store((_Atomic int *)arg, r == 0 ? 1 : r);
	atomic_fetch_add(&woke, 1);
	return NULL;
}

int main(void)
{
	_Atomic int res[4];
	pthread_t th[4];
	uint64_t t0, rng = 99, d;
	unsigned i;

	alarm(30);
	pi_link_init(&lk, 0, on_paused, on_resumed, &lk);
	T_EQ(pi_link_wait(&lk, 0), 0); /* running: no wait */
	T_ASSERT(!pi_link_resuming(&lk));

	/* a pause: waiters sleep through PAUSED and RESUMING, wake at RUNNING */
	T_ASSERT(pi_link_pause(&lk, "test cut"));
	T_ASSERT(!pi_link_pause(&lk, "again")); /* the same pause */
	T_EQ(paused_cb, 1);
	for (i = 0; i < 4; i++) {
		res[i] = 0;
		T_ASSERT(pthread_create(&th[i], NULL, waiter, (void *)&res[i]) == 0);
	}
	usleep(100000);
	T_EQ(woke, 0);
	T_ASSERT(pi_link_resuming(&lk));
	T_EQ(pi_link_state(&lk), PI_LINK_RESUMING);
	usleep(50000);
	T_EQ(woke, 0);
	/* lost again while resuming: back to PAUSED, still one pause */
	T_ASSERT(!pi_link_pause(&lk, "lost while resuming"));
	T_EQ(pi_link_state(&lk), PI_LINK_PAUSED);
	T_EQ(paused_cb, 1);
	T_ASSERT(pi_link_resumed(&lk));
	for (i = 0; i < 4; i++) {
		pthread_join(th[i], NULL);
		T_EQ(res[i], 1);
	}
	T_EQ(resumed_cb, 1);
	T_ASSERT(resumed_len >= 150000000ull); /* the pause lasted 150 ms or more */
	T_EQ(atomic_load(&lk.pauses), 1);

	/* a waiter's own deadline ends its wait; the pause goes on */
	T_ASSERT(pi_link_pause(&lk, "second"));
	t0 = now_ns();
	T_EQ(pi_link_wait(&lk, t0 + 100000000ull), -ETIMEDOUT);
	T_ASSERT(now_ns() - t0 >= 100000000ull && now_ns() - t0 < 2000000000ull);
	/* failure wakes everybody with -ECONNRESET */
	woke = 0;
	for (i = 0; i < 2; i++)
		T_ASSERT(pthread_create(&th[i], NULL, waiter, (void *)&res[i]) == 0);
	usleep(50000);
	T_EQ(woke, 0);
	pi_link_fail(&lk);
	for (i = 0; i < 2; i++) {
		pthread_join(th[i], NULL);
		T_EQ(res[i], -ECONNRESET);
	}
	T_ASSERT(!pi_link_resumed(&lk)); /* failed is final */
	pi_link_destroy(&lk);

	/* the pause limit bounds a wait without a deadline of its own */
	pi_link_init(&lk, 200000000ull, NULL, NULL, NULL);
	T_EQ(pi_link_pause_deadline(&lk), UINT64_MAX);
	T_ASSERT(pi_link_pause(&lk, "limited"));
	t0 = now_ns();
	T_ASSERT(pi_link_pause_deadline(&lk) <= t0 + 200000000ull);
	T_EQ(pi_link_wait(&lk, 0), -ETIMEDOUT);
	T_ASSERT(now_ns() - t0 >= 150000000ull && now_ns() - t0 < 2000000000ull);
	pi_link_resumed(&lk);
	pi_link_done(&lk);
	T_EQ(pi_link_state(&lk), PI_LINK_DONE);
	T_EQ(pi_link_wait(&lk, 0), 0);
	pi_link_destroy(&lk);

	/* backoff: 20 ms doubling to 5 s, +-20 % */
	for (i = 0; i < 12; i++) {
		uint64_t base = 20000000ull << (i < 9 ? i : 9);

		if (base > 5000000000ull)
			base = 5000000000ull;
		d = pi_link_backoff_ns(i, &rng);
		T_ASSERT(d >= base - base / 5 && d <= base + base / 5);
	}
	t_pass("t_link");
}
