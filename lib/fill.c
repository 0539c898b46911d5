// SPDX-License-Identifier: MIT
/*
 * fill.c - background fill: one thread installs every page still missing, in batches, while
 * faults keep priority (it yields whenever a fault is being served and never holds a page a
 * fault waits for longer than one batch). After a fault it jumps to the pages right after it,
 * then carries on. Also pagein_wait_complete().
 */
#include <errno.h>
#include <sched.h>
#include <string.h>
#include <time.h>

#include "internal.h"

static void *fill_main(void *arg)
{
	struct pagein_space *s = arg;
	unsigned nreg = atomic_load(&s->nregions), ri = 0;
	uint64_t idx = 0, hint_seen = 0, hint;
	unsigned idle = 0; /* region ends reached since the last page installed */
	struct timespec pause = { 0, 200000 };
	int ret;

	while (!atomic_load(&s->fill_stop) && !atomic_load(&s->stopping)) {
		if (atomic_load(&s->present_pages) + atomic_load(&s->failed_pages) +
			    atomic_load(&s->gone_pages) >= s->total_pages)
			break;
		/* faults first: a fault in service means a thread is stalled right now */
		if (atomic_load_explicit(&s->faulting, memory_order_relaxed) > 0) {
			sched_yield();
			continue;
		}
		hint = atomic_load_explicit(&s->fill_hint, memory_order_relaxed);
		if (hint != hint_seen) {
			hint_seen = hint;
			if ((hint >> 56) < nreg) {
				ri = (unsigned)(hint >> 56);
				idx = hint & ((1ull << 56) - 1);
			}
		}
		idx = pi_bits_next_clear(s->regions[ri].claimed, idx, s->regions[ri].npages);
		if (idx >= s->regions[ri].npages) {
			ri = (ri + 1) % nreg;
			idx = 0;
			if (++idle >= 2 * nreg) {
				/* two passes found nothing to claim: what is left is frozen or in
				 * flight; look again a little later */
				idle = 0;
				nanosleep(&pause, NULL);
			}
			continue;
		}
		if (pi_test(s->regions[ri].frozen, idx)) {
			idx++;
			continue;
		}
		ret = pi_fill_run(s, &s->regions[ri], idx, s->cfg.fill_batch);
		if (ret == -ESHUTDOWN)
			break;
		if (ret < 0)
			pi_log(s, PAGEIN_LOG_ERR, "background fill at gpa %#llx: %s",
				   (unsigned long long)(s->regions[ri].gpa +
							(idx << s->regions[ri].page_shift)),
				   strerror(-ret));
		idx += ret > 0 ? (uint64_t)ret : 1;
		if (ret > 0)
			idle = 0;
	}
	atomic_store(&s->fill_running, false);
	return NULL;
}

int pagein_fill_start(struct pagein_space *s)
{
	int ret;

	if (!atomic_load(&s->started) || atomic_load(&s->stopping))
		return -EINVAL;
	if (atomic_exchange(&s->fill_running, true))
		return -EALREADY;
	pagein_fill_stop(s); /* a fill that already finished: reap its thread */
	atomic_store(&s->fill_stop, false);
	ret = -pthread_create(&s->fill_thread, NULL, fill_main, s);
	if (ret < 0) {
		atomic_store(&s->fill_running, false);
		pi_log(s, PAGEIN_LOG_ERR, "starting the fill thread: %s", strerror(-ret));
	}
	return ret;
}

void pagein_fill_stop(struct pagein_space *s)
{
	static const pthread_t none;

	if (!memcmp(&s->fill_thread, &none, sizeof(none)))
		return;
	atomic_store(&s->fill_stop, true);
	pthread_join(s->fill_thread, NULL);
	memset(&s->fill_thread, 0, sizeof(s->fill_thread));
}

int pagein_wait_complete(struct pagein_space *s, int timeout_ms)
{
	uint64_t deadline = timeout_ms < 0 ? 0 : pi_now_ns() + (uint64_t)timeout_ms * 1000000ull;
	uint32_t seq;

	for (;;) {
		seq = atomic_load(&s->progress);
		if (atomic_load(&s->completed))
			return 0;
		/* a page that failed for good before any stop is the answer that says most */
		if (atomic_load(&s->failed_pages))
			return -EIO;
		if (atomic_load(&s->stopping))
			return -ESHUTDOWN;
		if (pi_futex_wait(&s->progress, seq, deadline) == -ETIMEDOUT)
			return -ETIMEDOUT;
	}
}
