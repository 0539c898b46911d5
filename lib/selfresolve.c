// SPDX-License-Identifier: MIT
/*
 * selfresolve.c - the self-resolve front-end: with UFFD_FEATURE_SIGBUS a fault on a missing
 * page raises SIGBUS in the faulting thread with the exact address; our handler resolves it on
 * that thread (async-signal-safe) and returns, and the access is retried. Signals that are not
 * ours (other addresses, real hardware errors, pages that failed) go to the handler that was
 * installed before us, or to the default action.
 */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <string.h>

#include "internal.h"

#define SELF_SLOTS 64 /* spaces in SELF mode at once, process-wide */

static struct pagein_space *_Atomic self_spaces[SELF_SLOTS];
static struct sigaction self_prev;   /* the SIGBUS action before ours */
static int self_users;               /* spaces attached; guarded by self_lock */
static pthread_mutex_t self_lock = PTHREAD_MUTEX_INITIALIZER;

/* Hand the signal to whoever had it before us (or the default action: death by SIGBUS). */
static void forward(int sig, siginfo_t *si, void *uctx)
{
	if (self_prev.sa_flags & SA_SIGINFO) {
		if (self_prev.sa_sigaction) {
			self_prev.sa_sigaction(sig, si, uctx);
			return;
		}
	} else if (self_prev.sa_handler != SIG_DFL && self_prev.sa_handler != SIG_IGN) {
		self_prev.sa_handler(sig);
		return;
	}
	/* default action: return to the access, which faults again and now kills */
	signal(SIGBUS, SIG_DFL);
}

static void on_sigbus(int sig, siginfo_t *si, void *uctx)
{
	uintptr_t addr = (uintptr_t)si->si_addr;
	int saved = errno, ret = -ENOENT;
	struct pagein_space *s;
	struct pi_region *r;
	unsigned i;

	/* UFFD_FEATURE_SIGBUS raises BUS_ADRERR; poison (BUS_MCEERR_*) is never ours to serve */
	if (si->si_code != BUS_ADRERR)
		goto not_ours;
	for (i = 0; i < SELF_SLOTS; i++) {
		s = atomic_load_explicit(&self_spaces[i], memory_order_acquire);
		if (!s)
			continue;
		r = pi_region_of_host(s, addr);
		if (!r)
			continue;
		uint64_t t0 = pi_now_ns(); /* blocktime.c: this thread is blocked from here */
		ret = pi_fault(s, r, (addr - (uintptr_t)r->host) >> r->page_shift, PI_WHY_SELF);
		pi_blocktime_add(s, (uint32_t)gettid(), pi_now_ns() - t0);
		break;
	}
	if (ret == 0) {
		errno = saved;
		return;
	}
not_ours:
	errno = saved;
	forward(sig, si, uctx);
}

int pi_self_attach(struct pagein_space *s)
{
	struct sigaction sa;
	unsigned i;
	int ret = 0;

	pthread_mutex_lock(&self_lock);
	for (i = 0; i < SELF_SLOTS; i++) {
		struct pagein_space *expect = NULL;

		if (atomic_compare_exchange_strong(&self_spaces[i], &expect, s))
			break;
	}
	if (i == SELF_SLOTS) {
		pi_log(s, PAGEIN_LOG_ERR, "at most %d self-resolve spaces per process", SELF_SLOTS);
		ret = -ENOSPC;
		goto out;
	}
	s->self_slot = (int)i;
	if (self_users++ == 0) {
		memset(&sa, 0, sizeof(sa));
		sa.sa_sigaction = on_sigbus;
		/* SA_NODEFER: a second fault inside the handler (e.g. the source reading guest
		 * memory of another space) must not find SIGBUS blocked, which would kill */
		sa.sa_flags = SA_SIGINFO | SA_NODEFER | SA_RESTART;
		sigemptyset(&sa.sa_mask);
		if (sigaction(SIGBUS, &sa, &self_prev) < 0) {
			ret = -errno;
			self_users--;
			atomic_store(&self_spaces[i], NULL);
			s->self_slot = -1;
		}
	}
out:
	pthread_mutex_unlock(&self_lock);
	return ret;
}

void pi_self_detach(struct pagein_space *s)
{
	struct sigaction cur;

	if (s->self_slot < 0)
		return;
	pthread_mutex_lock(&self_lock);
	atomic_store(&self_spaces[s->self_slot], NULL);
	s->self_slot = -1;
	if (--self_users == 0) {
		/* put the old action back only if nobody replaced ours meanwhile */
		if (sigaction(SIGBUS, NULL, &cur) == 0 && (cur.sa_flags & SA_SIGINFO) &&
		    cur.sa_sigaction == on_sigbus)
			sigaction(SIGBUS, &self_prev, NULL);
	}
	pthread_mutex_unlock(&self_lock);
}
