// SPDX-License-Identifier: MIT
/*
 * fill.c - background fill: one thread installs every page still missing, in batches, while
 * faults keep priority (it yields its CPU whenever the faults in service may need it, and never
 * holds a page a fault waits for longer than one batch). It starts, and after each pass goes on,
 * in the middle of the first gap of missing pages, so that a program restoring sequentially
 * and the fill install disjoint halves instead of colliding window by window. After a fault
 * that does not continue a sequential stream it jumps to the pages right after it, then
 * carries on. Also pagein_wait_complete().
 */
#include <errno.h>
#include <sched.h>
#include <string.h>
#include <time.h>

#include "internal.h"

/*
 * Where the fill goes on in region r after reaching its end: the middle of the first gap of
 * unclaimed pages, when that gap is large. A program restoring from the gap's start meets the
 * fill once, in the middle, instead of following the fill's claims window by window (sleeping
 * on each); the next pass halves the rest the same way.
 */
static uint64_t gap_middle(struct pi_region *r)
{
	uint64_t c = pi_bits_next_clear(r->claimed, 0, r->npages), e = c;

	while (e < r->npages) {
		if (!(e & 63) && !atomic_load_explicit(&r->claimed[e >> 6], memory_order_relaxed))
			e += 64; /* a whole unclaimed word */
		else if (!pi_test(r->claimed, e))
			e++;
		else
			break;
	}
	if (e > r->npages)
		e = r->npages;
	return e - c > 4 * PAGEIN_AROUND_MAX ? c + (e - c) / 2 : c;
}

static void *fill_main(void *arg)
{
	struct pagein_space *s = arg;
	unsigned nreg = atomic_load(&s->nregions), ri = 0;
	/* start half-way into the first region: a program restoring from its start meets the
	 * fill there once, not at every window on the way (it wraps round to the start) */
	uint64_t idx = gap_middle(&s->regions[0]), hint_seen = 0, hint;
	unsigned idle = 0; /* region ends reached since the last page installed */
	struct timespec pause = { 0, 200000 };
	cpu_set_t cpus;
	int ncpu = 1;
	int ret;

	if (!sched_getaffinity(0, sizeof(cpus), &cpus))
		ncpu = CPU_COUNT(&cpus);

	while (!atomic_load(&s->fill_stop) && !atomic_load(&s->stopping)) {
		if (atomic_load(&s->present_pages) + atomic_load(&s->failed_pages) +
			    atomic_load(&s->gone_pages) >= s->total_pages)
			break;
		/*
		 * Faults first: a fault in service means a thread is stalled right now. The fill
		 * yields its CPU to it only when the faulters may need that CPU: with a CPU to
		 * spare, yielding gives the faulter nothing and leaves the fill idle (measured: a
		 * sequential restore's fill then installed 5-20% of the pages).
		 */
		if (atomic_load_explicit(&s->faulting, memory_order_relaxed) >= ncpu) {
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
			idx = gap_middle(&s->regions[ri]);
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
		if (atomic_load(&s->peer_gone))
			return -ESRCH;
		if (pi_futex_wait(&s->progress, seq, deadline) == -ETIMEDOUT)
			return -ETIMEDOUT;
	}
}
