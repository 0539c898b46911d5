// SPDX-License-Identifier: MIT
/*
 * link.c - the destination's migration state across link loss (link.h): transitions under a
 * lock, waiters on the state word with futex, the backoff schedule.
 */
#include <errno.h>
#include <linux/futex.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "net/link.h"

#define BACKOFF_MIN_NS 20000000ull    /* 20 ms: a link back is found within a few tens of ms */
#define BACKOFF_MAX_NS 5000000000ull  /* 5 s */

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* Sleep while *w == val, at most until deadline_ns (0: no deadline). Async-signal-safe. */
static void futex_wait(_Atomic uint32_t *w, uint32_t val, uint64_t deadline_ns)
{
	struct timespec ts, *tp = NULL;

	if (deadline_ns) {
		uint64_t now = now_ns(), left = deadline_ns > now ? deadline_ns - now : 0;

		if (!left)
			return;
		ts.tv_sec = (time_t)(left / 1000000000ull);
		ts.tv_nsec = (long)(left % 1000000000ull);
		tp = &ts;
	}
	syscall(SYS_futex, w, FUTEX_WAIT_PRIVATE, val, tp, NULL, 0);
}

static void futex_wake_all(_Atomic uint32_t *w)
{
	syscall(SYS_futex, w, FUTEX_WAKE_PRIVATE, 0x7fffffff, NULL, NULL, 0);
}

void pi_link_init(struct pi_link *l, uint64_t limit_ns,
		  void (*on_paused)(void *arg, const char *why),
		  void (*on_resumed)(void *arg, uint64_t paused_ns), void *cb_arg)
{
	memset(l, 0, sizeof(*l));
	atomic_store(&l->state, PI_LINK_RUNNING);
	l->limit_ns = limit_ns;
	l->on_paused = on_paused;
	l->on_resumed = on_resumed;
	l->cb_arg = cb_arg;
	pthread_mutex_init(&l->lock, NULL);
}

void pi_link_destroy(struct pi_link *l)
{
	pthread_mutex_destroy(&l->lock);
}

static void set_state(struct pi_link *l, uint32_t st)
{
	atomic_store(&l->state, st);
	futex_wake_all(&l->state);
}

bool pi_link_pause(struct pi_link *l, const char *why)
{
	uint32_t st;
	bool began = false;

	pthread_mutex_lock(&l->lock);
	st = atomic_load(&l->state);
	if (st == PI_LINK_RUNNING) {
		atomic_store(&l->paused_at, now_ns());
		atomic_fetch_add(&l->pauses, 1);
		snprintf(l->why, sizeof(l->why), "%s", why ? why : "the link was lost");
		set_state(l, PI_LINK_PAUSED);
		began = true;
		if (l->on_paused)
			l->on_paused(l->cb_arg, l->why);
	} else if (st == PI_LINK_RESUMING) {
		set_state(l, PI_LINK_PAUSED); /* lost again while resuming: the same pause */
	}
	pthread_mutex_unlock(&l->lock);
	return began;
}

bool pi_link_resuming(struct pi_link *l)
{
	bool ok;

	pthread_mutex_lock(&l->lock);
	ok = atomic_load(&l->state) == PI_LINK_PAUSED;
	if (ok)
		set_state(l, PI_LINK_RESUMING);
	pthread_mutex_unlock(&l->lock);
	return ok;
}

bool pi_link_resumed(struct pi_link *l)
{
	uint32_t st;
	uint64_t len = 0;
	bool ok;

	pthread_mutex_lock(&l->lock);
	st = atomic_load(&l->state);
	ok = st == PI_LINK_PAUSED || st == PI_LINK_RESUMING;
	if (ok) {
		len = now_ns() - atomic_load(&l->paused_at);
		atomic_fetch_add(&l->paused_ns, len);
		atomic_store(&l->last_pause_ns, len);
		atomic_store(&l->paused_at, 0);
		atomic_store(&l->resumed_at, now_ns());
		set_state(l, PI_LINK_RUNNING);
		if (l->on_resumed)
			l->on_resumed(l->cb_arg, len);
	}
	pthread_mutex_unlock(&l->lock);
	return ok;
}

void pi_link_fail(struct pi_link *l)
{
	pthread_mutex_lock(&l->lock);
	if (atomic_load(&l->state) != PI_LINK_DONE)
		set_state(l, PI_LINK_FAILED);
	pthread_mutex_unlock(&l->lock);
}

void pi_link_done(struct pi_link *l)
{
	pthread_mutex_lock(&l->lock);
	if (atomic_load(&l->state) == PI_LINK_RUNNING)
		set_state(l, PI_LINK_DONE);
	pthread_mutex_unlock(&l->lock);
}

uint64_t pi_link_hold(struct pi_link *l)
{
	uint32_t st = atomic_load(&l->state);

	if (st == PI_LINK_PAUSED || st == PI_LINK_RESUMING)
		return UINT64_MAX;
	return st == PI_LINK_FAILED ? 0 : atomic_load(&l->resumed_at);
}

uint64_t pi_link_pause_deadline(struct pi_link *l)
{
	uint64_t at = atomic_load(&l->paused_at);

	return at && l->limit_ns ? at + l->limit_ns : UINT64_MAX;
}

int pi_link_wait(struct pi_link *l, uint64_t deadline_ns)
{
	for (;;) {
		uint32_t st = atomic_load(&l->state);
		uint64_t end = pi_link_pause_deadline(l), now;

		if (st == PI_LINK_RUNNING || st == PI_LINK_DONE)
			return 0;
		if (st == PI_LINK_FAILED)
			return -ECONNRESET;
		if (deadline_ns && deadline_ns < end)
			end = deadline_ns;
		now = now_ns();
		if (end != UINT64_MAX && now >= end)
			/* the pause limit is the recovery thread's to act on (it fails the link);
			 * a waiter only stops waiting */
			return -ETIMEDOUT;
		futex_wait(&l->state, st, end == UINT64_MAX ? 0 : end);
	}
}

uint64_t pi_link_backoff_ns(unsigned attempt, uint64_t *rng)
{
	uint64_t d = BACKOFF_MIN_NS, j;

	while (attempt-- && d < BACKOFF_MAX_NS)
		d *= 2;
	if (d > BACKOFF_MAX_NS)
		d = BACKOFF_MAX_NS;
	*rng ^= *rng << 13;
	*rng ^= *rng >> 7;
	*rng ^= *rng << 17;
	j = *rng % (d * 2 / 5 + 1); /* 0 .. 40 % of d */
	return d - d / 5 + j;       /* d +- 20 % */
}
