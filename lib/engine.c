// SPDX-License-Identifier: MIT
/*
 * engine.c - the page-state machine (states and invariants in pagestate.h): one page's life,
 * whatever brought the fault: claim (fetched at most once), fetch from the source, install
 * through uffd.c (COPY/ZEROPAGE for anon, page cache + CONTINUE for memfds), publish present
 * after the install, wake waiters; failure, poison, unmap and completion. Everything on the
 * fault path is async-signal-safe: atomics, futex, ioctl, pread/pwrite; no malloc, no locks, no
 * stdio (the one lock, a region's pin_lock, is taken by handler threads only).
 */
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "internal.h"
#include "uapi.h"

/* ------------------------------------------------------------------------------------------ */
/* installs (uffd.c holds the ioctls and the kernel's race rules)                             */

/* Install [idx, idx+n) of r (src: the bytes, for COPY). Returns 0 or -errno. */
static int install(struct pagein_space *s, struct pi_region *r, enum pi_uffd_op op, uint64_t idx,
		   uint64_t n, const uint8_t *src, uint64_t deadline)
{
	return pi_uffd_install(s, pi_uffd_of(s, r, idx),
			       op, (uintptr_t)r->host + (idx << r->page_shift), src,
			       n << r->page_shift, r->page_size, deadline, NULL);
}

int pi_poison(struct pagein_space *s, struct pi_region *r, uint64_t idx, uint64_t n)
{
	if (!(s->features & UFFD_FEATURE_POISON))
		return -ENOSYS;
	return install(s, r, PI_UFFD_POISON, idx, n, NULL,
		       pi_now_ns() + (uint64_t)s->cfg.timeout_ms * 1000000ull);
}

/*
 * Fail the access to page idx of r for a thread blocked in the kernel on it: poison wakes it
 * with SIGBUS. Should the poison itself fail (the mapping is gone, or an mm event outlasted
 * the deadline), wake the thread anyway so that it faults again (and then gets SIGSEGV, or a
 * new fault message that finds the page failed) rather than sleeping for ever. The error is
 * kept for the deferred log. Async-signal-safe.
 */
void pi_poison_or_wake(struct pagein_space *s, struct pi_region *r, uint64_t idx)
{
	int ret = pi_poison(s, r, idx, 1);

	if (ret == 0 || ret == -ENOSYS) /* no POISON: SELF mode, whose faulter is not blocked */
		return;
	atomic_store(&s->last_err_gpa, r->gpa + (idx << r->page_shift));
	atomic_store(&s->last_err, ret);
	pi_uffd_wake(pi_uffd_of(s, r, idx), (uintptr_t)r->host + (idx << r->page_shift),
		  r->page_size);
}

/* ------------------------------------------------------------------------------------------ */
/* bounce buffers (for fetches that cannot land in their final place)                         */

static int bounce_get(struct pagein_space *s, uint64_t deadline)
{
	uint64_t f;
	uint32_t seq;
	int i;

	for (;;) {
		f = atomic_load(&s->bounce_free);
		while (f) {
			i = __builtin_ctzll(f);
			if (atomic_compare_exchange_weak(&s->bounce_free, &f, f & ~(1ull << i)))
				return i;
		}
		seq = atomic_load(&s->bounce_seq);
		if (atomic_load(&s->bounce_free))
			continue;
		if (pi_futex_wait(&s->bounce_seq, seq, deadline) == -ETIMEDOUT &&
		    !pi_src_held(s, &deadline))
			return -ETIMEDOUT; /* (held: the buffers are with fetches the pause holds) */
	}
}

static void bounce_put(struct pagein_space *s, int i)
{
	/* sleepers only sleep on an empty mask, so only the put that refills it must wake */
	if (!atomic_fetch_or(&s->bounce_free, 1ull << i)) {
		atomic_fetch_add(&s->bounce_seq, 1);
		pi_futex_wake(&s->bounce_seq);
	}
}

/* ------------------------------------------------------------------------------------------ */
/* waiting and waking                                                                         */

void pi_wake_pages(struct pagein_space *s, struct pi_region *r, uint64_t idx, uint64_t n)
{
	uint64_t i, end;

	for (i = idx; i < idx + n; i++)
		pi_bucket_wake(pi_bucket_of(s, r, i));
	if (!atomic_load(&s->started))
		return;
	/* one UFFDIO_WAKE per userfaultfd stripe the range covers */
	for (i = idx; i < idx + n; i = end) {
		end = (i / r->stripe_pages + 1) * r->stripe_pages;
		if (end > idx + n)
			end = idx + n;
		pi_uffd_wake(pi_uffd_of(s, r, i), (uintptr_t)r->host + (i << r->page_shift),
			     (end - i) << r->page_shift);
	}
}

void pi_wake_all(struct pagein_space *s)
{
	unsigned i;

	for (i = 0; i < PAGEIN_WAIT_BUCKETS; i++)
		pi_bucket_wake(&s->wait[i]);
	atomic_fetch_add(&s->progress, 1);
	pi_futex_wake(&s->progress);
}

/*
 * Wait until page idx is present. Returns 0, -EIO (failed), -ENOENT (unmapped by the program),
 * -ESHUTDOWN, -ETIMEDOUT, or -EAGAIN
 * when the page is no longer claimed (its fetch was abandoned: the caller claims it again).
 * want_thaw: wait for the page to be thawed instead (frozen faults under the WAIT policy).
 */
static int wait_page(struct pagein_space *s, struct pi_region *r, uint64_t idx,
		     uint64_t deadline, bool want_thaw)
{
	struct pi_bucket *b = pi_bucket_of(s, r, idx);
	uint64_t t0 = pi_now_ns();
	uint32_t seq;
	int ret = 0;

	seq = pi_wait_begin(b);
	for (;;) {
		/* seq_cst tests: invariant 8, see pi_wait_begin */
		if (want_thaw ? !pi_test_sc(r->frozen, idx) : pi_test_sc(r->present, idx))
			ret = 0;
		else if (pi_test(r->failed, idx))
			ret = -EIO;
		else if (pi_test(r->unmapped, idx))
			ret = -ENOENT; /* its claimer met the program's unmap: it never comes */
		else if (atomic_load(&s->stopping))
			ret = -ESHUTDOWN;
		else if (!want_thaw && !pi_test(r->claimed, idx))
			ret = -EAGAIN;
		else
			ret = 1;
		if (ret != 1)
			break;
		if (pi_wait_sleep(b, seq, want_thaw ? 0 : deadline) == -ETIMEDOUT) {
			if (!want_thaw && pi_src_held(s, &deadline)) {
				seq = atomic_load(&b->seq);
				continue; /* the source is paused: its fetch of the page waits too */
			}
			ret = -ETIMEDOUT;
			break;
		}
		seq = atomic_load(&b->seq);
	}
	pi_wait_end(b);
	pi_stat_add(s, PI_STAT(blocked_ns), pi_now_ns() - t0);
	return ret;
}

/* ------------------------------------------------------------------------------------------ */
/* fetch + install + publish                                                                  */

static uint64_t deadline_from_now(struct pagein_space *s)
{
	return pi_now_ns() + (uint64_t)s->cfg.timeout_ms * 1000000ull;
}

/* Write the window's bytes into the memfd's page cache (shmem) or its alias (hugetlb). */
static int memfd_fill(struct pi_region *r, uint64_t idx, uint64_t n, const uint8_t *data,
		      uint64_t zmask)
{
	uint64_t ps = r->page_size, i = 0, j;
	off_t off;
	ssize_t w;

	while (i < n) {
		bool zero = zmask >> i & 1;

		for (j = i + 1; j < n && (bool)(zmask >> j & 1) == zero; j++)
			;
		/* offset in the file: an adopted region may start anywhere in it */
		off = (off_t)(r->memfd_off + ((idx + i) << r->page_shift));
		if (zero) {
			/* a zeroed page in the page cache, no bytes copied */
			if (fallocate(r->memfd, 0, off, (off_t)((j - i) * ps)) < 0)
				return -errno;
		} else if (r->backing == PAGEIN_BACKING_HUGETLB) {
			uint8_t *a = r->alias + ((idx + i) << r->page_shift);

			/* hugetlbfs has no write(): the alias mapping is the only way in */
			if (data + i * ps != a)
				memcpy(a, data + i * ps, (j - i) * ps);
		} else {
			uint64_t left = (j - i) * ps;
			const uint8_t *p = data + i * ps;

			while (left) {
				w = pwrite(r->memfd, p, left, off);
				if (w < 0 && errno == EINTR)
					continue;
				if (w <= 0)
					return w < 0 ? -errno : -EIO;
				left -= (uint64_t)w;
				p += w;
				off += w;
			}
		}
		i = j;
	}
	return 0;
}

/*
 * Install n pages from idx of r (claimed by the caller) from data; pages with their bit set in
 * zmask are zero and go in as zero pages, with no copy. For hugetlb, data may already be the
 * alias (the fetch landed in place). *zeros gets the zero-page count. Returns 0 or -errno.
 */
static int install_data(struct pagein_space *s, struct pi_region *r, uint64_t idx, uint64_t n,
			const uint8_t *data, uint64_t zmask, uint64_t deadline, uint64_t *zeros)
{
	uint64_t ps = r->page_size, i, j;
	int ret;

	/* zero pages go in as zero pages: no copy (huge pages already sitting in place excepted) */
	if (r->backing != PAGEIN_BACKING_HUGETLB || data != r->alias + (idx << r->page_shift))
		for (i = 0; i < n; i++)
			if (!(zmask >> i & 1) && pi_is_zero(data + i * ps, ps))
				zmask |= 1ull << i;

	if (r->backing == PAGEIN_BACKING_ANON) {
		for (i = 0; i < n; i = j) {
			bool zero = zmask >> i & 1;

			for (j = i + 1; j < n && (bool)(zmask >> j & 1) == zero; j++)
				;
			ret = install(s, r, zero ? PI_UFFD_ZERO : PI_UFFD_COPY, idx + i, j - i,
				      zero ? NULL : data + i * ps, deadline);
			if (ret < 0)
				return ret;
		}
	} else {
		ret = memfd_fill(r, idx, n, data, zmask);
		if (ret < 0)
			return ret;
		ret = install(s, r, PI_UFFD_CONTINUE, idx, n, NULL, deadline);
		if (ret < 0)
			return ret;
	}
	*zeros = (uint64_t)__builtin_popcountll(zmask);
	return 0;
}

/*
 * A wait on the source timed out at *deadline: may it go on? Yes while the source is paused
 * (pagein_source_ops.hold): the fetch the waiter depends on waits for the pause too, and ends
 * with the page or fails the page at the pause limit, waking the waiter either way. After a
 * resume the time-out runs again from the resume. Sets the new *deadline. Async-signal-safe.
 */
bool pi_src_held(struct pagein_space *s, uint64_t *deadline)
{
	struct pagein_source *src = s->src;
	uint64_t h, now, span = (uint64_t)s->cfg.timeout_ms * 1000000ull;

	if (!src || !src->ops.hold)
		return false;
	h = src->ops.hold(src->ctx);
	if (!h)
		return false;
	now = pi_now_ns();
	if (h == UINT64_MAX) {
		*deadline = now + span;
		return true;
	}
	if (h + span > now && h + span > *deadline) {
		*deadline = h + span;
		return true;
	}
	return false;
}

/* Fetch [idx, idx+n) of r (claimed by the caller) and install it. Returns 0 or -errno. */
static int fetch_install(struct pagein_space *s, struct pi_region *r, uint64_t idx, uint64_t n,
			 uint64_t deadline, uint64_t *zeros)
{
	struct pagein_source *src = s->src;
	uint64_t ps = r->page_size, gpa = r->gpa + (idx << r->page_shift), len = n * ps;
	uint64_t zmask = 0;
	const uint8_t *data = NULL;
	uint8_t *dst;
	int slot = -1, ret;

	if (src->ops.direct)
		data = src->ops.direct(src->ctx, gpa, len);
	if (!data) {
		if (r->backing == PAGEIN_BACKING_HUGETLB) {
			dst = r->alias + (idx << r->page_shift);
		} else {
			slot = bounce_get(s, deadline);
			if (slot < 0)
				return slot;
			dst = s->bounce + (uint64_t)slot * PAGEIN_INSTALL_MAX;
		}
		pi_stat_add(s, PI_STAT(fetches), 1);
		ret = src->ops.fetch(src->ctx, gpa, dst, len, ps, &zmask, deadline);
		if (ret < 0) {
			pi_stat_add(s, PI_STAT(fetch_errors), 1);
			goto out;
		}
		data = dst;
		/* a fetch that waited out a pause of the source may end past the deadline; the
		 * install's own deadline only bounds the kernel's retries (EAGAIN) */
		if (pi_now_ns() > deadline)
			deadline = deadline_from_now(s);
	}
	ret = install_data(s, r, idx, n, data, zmask, deadline, zeros);
out:
	if (slot >= 0)
		bounce_put(s, slot);
	return ret;
}

/*
 * Every page is present (or was unmapped by the program). on_complete is not called here: this
 * may be a SIGBUS handler. The notify thread (space.c) wakes on progress and calls it.
 */
void pi_maybe_complete(struct pagein_space *s)
{
	if (atomic_load(&s->present_pages) + atomic_load(&s->gone_pages) < s->total_pages ||
	    atomic_exchange(&s->completed, true))
		return;
	atomic_fetch_add(&s->progress, 1);
	pi_futex_wake(&s->progress);
}

/*
 * Pages [idx, idx+n) of r are no longer mapped (the program unmapped them, or an install met
 * ENOENT). caller_claimed: the caller holds their claims (an install that failed). Each page
 * still missing is counted as gone once, by whoever holds its claim, so completion and the
 * fill stop waiting for it.
 */
void pi_mark_unmapped(struct pagein_space *s, struct pi_region *r, uint64_t idx, uint64_t n,
		      bool caller_claimed)
{
	uint64_t i, gone = 0;

	for (i = idx; i < idx + n; i++) {
		pi_test_set(r->unmapped, i, memory_order_seq_cst);
		if (caller_claimed || !pi_test_set(r->claimed, i, memory_order_acq_rel))
			gone++;
		pi_bucket_wake(pi_bucket_of(s, r, i));
	}
	if (gone) {
		atomic_fetch_add(&s->gone_pages, gone);
		pi_maybe_complete(s);
	}
}

/* Mark [idx, idx+n) present (after the install: pagestate.h invariant 1) and wake who waits on
 * them. */
static void publish(struct pagein_space *s, struct pi_region *r, uint64_t idx, uint64_t n)
{
	uint64_t i;

	for (i = idx; i < idx + n; i++)
		pi_test_set(r->present, i, memory_order_seq_cst);
	for (i = idx; i < idx + n; i++)
		pi_bucket_wake(pi_bucket_of(s, r, i));
	atomic_fetch_add(&s->present_pages, n);
	pi_maybe_complete(s);
}

void pi_mark_discarded(struct pagein_space *s, uintptr_t start, uintptr_t end)
{
	unsigned nr = atomic_load(&s->nregions), k;
	uint64_t i, a, b;

	for (k = 0; k < nr; k++) {
		struct pi_region *r = &s->regions[k];
		uintptr_t lo = start > (uintptr_t)r->host ? start : (uintptr_t)r->host;
		uintptr_t hi = end < (uintptr_t)r->host + r->size ? end : (uintptr_t)r->host + r->size;

		if (lo >= hi)
			continue;
		/* whole pages only: a page discarded in part still holds bytes */
		a = (lo - (uintptr_t)r->host + r->page_size - 1) >> r->page_shift;
		b = (hi - (uintptr_t)r->host) >> r->page_shift;
		for (i = a; i < b; i++) {
			/* a page in flight keeps its fetch (a race the balloon and a vCPU may run);
			 * a missing one is now the zeros the kernel would give: present, so its
			 * next fault is re-mapped (remap), never fetched */
			if (pi_test(r->present, i) ||
			    pi_test_set(r->claimed, i, memory_order_acq_rel))
				continue;
			publish(s, r, i, 1);
		}
	}
}

/*
 * Give back claims on [idx, idx+n) that were never installed, and wake whoever waits on them
 * (self-resolving threads in the wait table, handler-mode faulters in the kernel), so that they
 * are asked for again on their own.
 */
static void release_run(struct pagein_space *s, struct pi_region *r, uint64_t idx, uint64_t n)
{
	uint64_t i;

	for (i = idx; i < idx + n; i++)
		pi_clear(r->claimed, i);
	pi_wake_pages(s, r, idx, n);
}

/*
 * A fetch or install of page idx failed. It fails for good: it is marked failed and poisoned,
 * so a thread blocked on it (or touching it later) gets SIGBUS and never a page with wrong bytes.
 */
static void fail_pages(struct pagein_space *s, struct pi_region *r, uint64_t idx, int err)
{
	uint64_t gpa = r->gpa + (idx << r->page_shift);

	if (!pi_test_set(r->failed, idx, memory_order_seq_cst))
		atomic_fetch_add(&s->failed_pages, 1);
	atomic_store(&s->last_err_gpa, gpa);
	atomic_store(&s->last_err, err);
	/* report before the poison: the SIGBUS it brings may end the process */
	if (s->cfg.on_fault_error)
		s->cfg.on_fault_error(s->cfg.cb_arg, gpa, r->page_size, err);
	pi_poison_or_wake(s, r, idx);
	pi_bucket_wake(pi_bucket_of(s, r, idx));
	atomic_fetch_add(&s->progress, 1);
	pi_futex_wake(&s->progress);
}

/*
 * Claim more missing pages after idx (up to max in total, inside idx's stripe), stopping at the
 * first one that is present, frozen or claimed by someone else. Returns the run length.
 */
static uint64_t claim_run(struct pi_region *r, uint64_t idx, uint64_t max)
{
	uint64_t end = idx + max, stripe_end = (idx / r->stripe_pages + 1) * r->stripe_pages, j;

	if (end > r->npages)
		end = r->npages;
	if (end > stripe_end)
		end = stripe_end;
	for (j = idx + 1; j < end; j++)
		if (pi_test(r->present, j) || pi_test(r->frozen, j) ||
		    pi_test_set(r->claimed, j, memory_order_acq_rel))
			break;
	return j - idx;
}

/* The largest run a fault or fill may install at once: 64 small pages, one huge page. */
static uint64_t max_run(struct pi_region *r, uint64_t want)
{
	uint64_t cap = PAGEIN_INSTALL_MAX / r->page_size;

	if (!cap)
		cap = 1;
	return want < cap ? want : cap;
}

/* Sequential-fault detector: one slot per expected next page, holding the last window. */
static unsigned recent_slot(struct pagein_space *s, struct pi_region *r, uint64_t p)
{
	return (unsigned)((p ^ (uint64_t)(r - s->regions) * 7) & (PAGEIN_RECENT_SLOTS - 1));
}

static uint64_t recent_key(struct pagein_space *s, struct pi_region *r, uint64_t p)
{
	return (uint64_t)(r - s->regions) << 56 | p << 7;
}

/* The fault-around window for a fault on idx; *stream: idx continues a sequential run of
 * faults (auto only), whose next pages the faulter's own windows will cover. */
static uint64_t around_window(struct pagein_space *s, struct pi_region *r, uint64_t idx,
			      bool *stream)
{
	uint64_t v, prev;

	*stream = false;
	if (s->cfg.fault_around != PAGEIN_AROUND_AUTO)
		return s->cfg.fault_around ? s->cfg.fault_around : 1;
	v = atomic_load_explicit(&s->recent[recent_slot(s, r, idx)], memory_order_relaxed);
	if ((v & ~127ull) != recent_key(s, r, idx))
		return 1;
	*stream = true;
	prev = v & 127;
	/* grows 4, 8, ... 64 while the faults keep following each other */
	return prev * 2 < 4 ? 4 : prev * 2 > PAGEIN_AROUND_MAX ? PAGEIN_AROUND_MAX : prev * 2;
}

/*
 * The runs this thread holds claims on while it fetches them, innermost last. A signal handler
 * that touches one of them on the same thread (a nested fault) would wait for its own fetch,
 * which cannot go on until the handler returns: it fails fast with -EDEADLK instead.
 * initial-exec TLS: no allocation on first use, so safe in a SIGBUS handler.
 */
#define PI_HELD_MAX 4
struct pi_held {
	struct pi_region *r;
	uint64_t idx, n;
};
static __thread struct pi_held held[PI_HELD_MAX] __attribute__((tls_model("initial-exec")));
static __thread unsigned nheld __attribute__((tls_model("initial-exec")));

static bool held_push(struct pi_region *r, uint64_t idx, uint64_t n)
{
	if (nheld == PI_HELD_MAX)
		return false; /* deeper nesting is not tracked (never seen in practice) */
	held[nheld] = (struct pi_held){ r, idx, n };
	/* the entry is complete before a signal handler on this thread can see it counted */
	atomic_signal_fence(memory_order_seq_cst);
	nheld++;
	return true;
}

static void held_pop(void)
{
	nheld--;
	atomic_signal_fence(memory_order_seq_cst);
}

static bool held_by_me(struct pi_region *r, uint64_t idx)
{
	unsigned i;

	for (i = 0; i < nheld; i++)
		if (held[i].r == r && idx - held[i].idx < held[i].n)
			return true;
	return false;
}

/* A nested fault on a page this thread is fetching: report it (async-signal-safe) and fail. */
static int nested_fault(struct pagein_space *s, struct pi_region *r, uint64_t idx)
{
	uint64_t gpa = r->gpa + (idx << r->page_shift);

	atomic_store(&s->last_err_gpa, gpa);
	atomic_store(&s->last_err, -EDEADLK);
	if (s->cfg.on_fault_error)
		s->cfg.on_fault_error(s->cfg.cb_arg, gpa, r->page_size, -EDEADLK);
	return -EDEADLK;
}

/* Fetch+install+publish a run we claimed; account it. Returns the pages installed from idx on
 * (fewer than n when the run failed and only idx could be had alone), or -errno: idx failed. */
static int run_claimed(struct pagein_space *s, struct pi_region *r, uint64_t idx, uint64_t n,
		       enum pi_why why, uint64_t deadline)
{
	uint64_t zeros = 0;
	bool pushed = held_push(r, idx, n);
	int ret;

	/* a touch (not the fill): the working set, noted before the install wakes the toucher,
	 * so a recording saved right after the touch has it. Fault-around neighbours too:
	 * prefetching a few untouched pages costs less than faulting on touched ones */
	if (why != PI_WHY_FILL)
		pi_ws_note(s, r->gpa + (idx << r->page_shift), n, r->page_size);
	ret = fetch_install(s, r, idx, n, deadline, &zeros);
	if (ret < 0 && n > 1) {
		/* the run failed somewhere: give the neighbours back and try the page that was
		 * asked for on its own, so that only its own failure fails it */
		release_run(s, r, idx + 1, n - 1);
		n = 1;
		ret = fetch_install(s, r, idx, n, deadline, &zeros);
	}
	if (pushed)
		held_pop();
	if (ret == -ENOENT) {
		/* not a fetch failure: the program unmapped the page (or mapped something of
		 * its own there); it keeps our claim and is never installed */
		pi_mark_unmapped(s, r, idx, 1, true);
		return ret;
	}
	if (ret < 0) {
		fail_pages(s, r, idx, ret);
		return ret;
	}
	/* counted before publishing, so whoever sees the pages present sees them counted */
	switch (why) {
	case PI_WHY_SELF:
	case PI_WHY_HANDLER:
	case PI_WHY_KVM:
		pi_stat_add(s, PI_STAT(pages_demand), 1);
		if (n > 1)
			pi_stat_add(s, PI_STAT(pages_around), n - 1);
		break;
	case PI_WHY_FILL:
		pi_stat_add(s, PI_STAT(pages_fill), n);
		break;
	case PI_WHY_ACCESS:
		pi_stat_add(s, PI_STAT(pages_accessor), n);
		break;
	}
	if (zeros)
		pi_stat_add(s, PI_STAT(pages_zero), zeros);
	publish(s, r, idx, n);
	return (int)n;
}

/*
 * A fault on a page we already hold as present: in handler mode a stale message (the page was
 * installed after the fault was queued); otherwise the page was discarded (MADV_DONTNEED zaps
 * anon pages to zero and shmem PTEs only). Re-map it the way the kernel would have without
 * userfaultfd: anon gets the zero page, a memfd page its page cache (zero if punched out). The
 * source is never asked again, so discarded data is never resurrected.
 */
static int remap(struct pagein_space *s, struct pi_region *r, uint64_t idx)
{
	uint64_t deadline = deadline_from_now(s), existed = 0;
	int ret;

	for (;;) {
		ret = pi_uffd_install(s, pi_uffd_of(s, r, idx),
				      r->backing == PAGEIN_BACKING_ANON ? PI_UFFD_ZERO
									: PI_UFFD_CONTINUE,
				      (uintptr_t)r->host + (idx << r->page_shift), NULL, r->page_size,
				      r->page_size, deadline, &existed);
		if (ret == -EFAULT && r->memfd >= 0) {
			/* not in the page cache any more (hole punched): a zeroed page */
			if (fallocate(r->memfd, 0, (off_t)(r->memfd_off + (idx << r->page_shift)),
				      (off_t)r->page_size) < 0)
				return -errno;
			continue;
		}
		/* existed: a stale message, the page was installed after the fault was queued */
		if (ret == 0 && !existed)
			pi_stat_add(s, PI_STAT(rezero), 1);
		return ret;
	}
}

/* A fault on a frozen page: report it, then wait for thaw or fail, as configured. Returns 0
 * (done: retry the access), 1 (thawed meanwhile: serve the fault), or -errno. */
static int frozen_fault(struct pagein_space *s, struct pi_region *r, uint64_t idx,
			enum pi_why why)
{
	uint64_t gpa = r->gpa + (idx << r->page_shift);
	int ret;

	pi_stat_add(s, PI_STAT(frozen_faults), 1);
	if (s->cfg.on_frozen_fault)
		s->cfg.on_frozen_fault(s->cfg.cb_arg, gpa, r->page_size);
	if (s->cfg.frozen_policy == PAGEIN_FROZEN_FAIL) {
		if (why == PI_WHY_HANDLER) {
			/*
			 * SIGBUS for the faulter now; thaw lifts the poison (parked marks it).
			 * Under pin_lock, so that a thaw either comes first (the page is not
			 * frozen any more: serve it) or sees parked and removes the poison.
			 * A handler thread may take the lock: this is never a signal handler.
			 */
			pthread_mutex_lock(&r->pin_lock);
			pi_hook_race();
			if (!pi_test(r->frozen, idx)) {
				pthread_mutex_unlock(&r->pin_lock);
				/* thawed meanwhile (and any earlier poison is gone): serve it */
				return 1;
			}
			ret = pi_poison(s, r, idx, 1);
			if (ret == 0)
				pi_test_set(r->parked, idx, memory_order_seq_cst);
			pthread_mutex_unlock(&r->pin_lock);
			if (ret < 0)
				pi_poison_or_wake(s, r, idx); /* records the error, wakes the faulter */
			return 0;
		}
		return -EFAULT;
	}
	if (why == PI_WHY_HANDLER)
		return 0; /* the fault stays queued in the kernel; thaw wakes it to fault again */
	ret = wait_page(s, r, idx, 0, true);
	return ret == -EAGAIN ? 0 : ret;
}

int pi_fault(struct pagein_space *s, struct pi_region *r, uint64_t idx, enum pi_why why)
{
	uint64_t t0 = pi_now_ns(), deadline = t0 + (uint64_t)s->cfg.timeout_ms * 1000000ull;
	uint64_t n;
	bool stream;
	int ret;

	pi_stat_add(s, why == PI_WHY_SELF ? PI_STAT(faults_self) :
		       why == PI_WHY_KVM ? PI_STAT(faults_kvm) : PI_STAT(faults_handler), 1);
again:
	if (pi_test(r->present, idx)) {
		ret = remap(s, r, idx);
		goto out;
	}
	if (pi_test(r->failed, idx)) {
		ret = -EIO;
		goto out;
	}
	if (pi_test(r->frozen, idx)) {
		ret = frozen_fault(s, r, idx, why);
		if (ret == 1 || (ret == 0 && why != PI_WHY_HANDLER))
			goto again;
		goto out;
	}
	if (pi_test_set(r->claimed, idx, memory_order_acq_rel)) {
		if (held_by_me(r, idx)) {
			ret = nested_fault(s, r, idx);
			goto out;
		}
		pi_stat_add(s, PI_STAT(races_lost), 1);
		/* a handler's faulter is woken by the winner's install; a self-resolving thread
		 * waits for the page, then retries its access */
		if (why == PI_WHY_HANDLER) {
			ret = 0;
			goto out;
		}
		ret = wait_page(s, r, idx, deadline, false);
		if (ret == -EAGAIN)
			goto again;
		goto out;
	}
	atomic_fetch_add(&s->inflight, 1);
	if (atomic_load(&s->stopping)) {
		/* not a source error: no callback, not counted failed; the faulter gets SIGBUS
		 * (SELF: from our caller; HANDLER: the reader poisons, as stop does) */
		pi_clear(r->claimed, idx);
		ret = -ESHUTDOWN;
		goto out_inflight;
	}
	atomic_fetch_add_explicit(&s->faulting, 1, memory_order_relaxed);
	n = claim_run(r, idx, max_run(r, around_window(s, r, idx, &stream)));
	atomic_store_explicit(&s->recent[recent_slot(s, r, idx + n)], recent_key(s, r, idx + n) | n,
			      memory_order_relaxed);
	/*
	 * The fill jumps to the pages after a fault, unless the fault continues a sequential
	 * stream: those the faulter's next window takes, and a fill there only claims the pages
	 * the faulter is about to touch, so that it sleeps on the fill's install every window
	 * (measured: 100-300 ms of a 1 GiB restore asleep so). The fill stays out of its way.
	 */
	if (!stream)
		atomic_store_explicit(&s->fill_hint, (uint64_t)(r - s->regions) << 56 | (idx + n),
				      memory_order_relaxed);
	ret = run_claimed(s, r, idx, n, why, deadline);
	if (ret > 0)
		ret = 0;
	atomic_fetch_sub_explicit(&s->faulting, 1, memory_order_relaxed);
out_inflight:
	atomic_fetch_sub(&s->inflight, 1);
out:
	pi_stat_latency(s, pi_now_ns() - t0);
	return ret;
}

int pi_make_present(struct pagein_space *s, struct pi_region *r, uint64_t idx, uint64_t n,
			enum pi_why why, uint64_t *bad)
{
	uint64_t deadline = deadline_from_now(s), i = idx, end = idx + n, run;
	int ret = 0;

	while (i < end) {
		if (pi_test(r->present, i)) {
			i++;
			continue;
		}
		if (pi_test(r->unmapped, i))
			ret = -ENOENT;
		else if (pi_test(r->failed, i))
			ret = -EIO;
		else if (pi_test(r->frozen, i))
			ret = -EFAULT;
		if (ret < 0)
			break;
		if (!pi_test_set(r->claimed, i, memory_order_acq_rel)) {
			atomic_fetch_add(&s->inflight, 1);
			if (atomic_load(&s->stopping)) {
				pi_clear(r->claimed, i);
				atomic_fetch_sub(&s->inflight, 1);
				ret = -ESHUTDOWN;
				break;
			}
			run = claim_run(r, i, max_run(r, end - i));
			ret = run_claimed(s, r, i, run, why, deadline);
			atomic_fetch_sub(&s->inflight, 1);
			if (ret < 0) {
				/* the source's own error went to the log and callback */
				if (ret != -ETIMEDOUT && ret != -ESHUTDOWN && ret != -ENOENT)
					ret = -EIO;
				break;
			}
			i += (uint64_t)ret;
			ret = 0;
			continue;
		}
		if (held_by_me(r, i)) {
			ret = -EDEADLK; /* a nested call on the thread fetching it */
			break;
		}
		ret = wait_page(s, r, i, deadline, false);
		if (ret == -EAGAIN)
			ret = 0; /* abandoned by its claimer: claim it ourselves */
		else if (ret < 0)
			break;
	}
	if (ret < 0 && bad)
		*bad = r->gpa + (i << r->page_shift);
	return ret;
}

int pi_fill_run(struct pagein_space *s, struct pi_region *r, uint64_t idx, uint64_t max)
{
	uint64_t run;
	int ret;

	if (pi_test(r->present, idx) || pi_test(r->frozen, idx) ||
	    pi_test_set(r->claimed, idx, memory_order_acq_rel))
		return 0;
	atomic_fetch_add(&s->inflight, 1);
	if (atomic_load(&s->stopping)) {
		pi_clear(r->claimed, idx);
		atomic_fetch_sub(&s->inflight, 1);
		return -ESHUTDOWN;
	}
	run = claim_run(r, idx, max_run(r, max));
	ret = run_claimed(s, r, idx, run, PI_WHY_FILL, deadline_from_now(s));
	atomic_fetch_sub(&s->inflight, 1);
	return ret;
}

int pagein_supply(struct pagein_space *s, uint64_t gpa, const void *data, uint64_t len,
		  const uint64_t *zero_mask)
{
	struct pi_region *r = pi_region_find(s, gpa);
	uint64_t idx, n, i, run, zeros, done = 0, deadline;
	const uint8_t *p = data;
	int ret = 0;

	if (!r || !len || len > r->gpa + r->size - gpa || (gpa - r->gpa) % r->page_size ||
	    len % r->page_size) {
		pi_log(s, PAGEIN_LOG_ERR,
			   "supply [%#llx, +%#llx): the range must be whole pages inside one region",
			   (unsigned long long)gpa, (unsigned long long)len);
		return -EINVAL;
	}
	if (!atomic_load(&s->started))
		return -EINVAL;
	idx = (gpa - r->gpa) >> r->page_shift;
	n = len >> r->page_shift;
	deadline = deadline_from_now(s);
	for (i = 0; i < n; i += run) {
		uint64_t zm = 0, k;

		run = 1;
		/* not ours to install: present, in flight (its fetch brings it), frozen */
		if (pi_test(r->present, idx + i) || pi_test(r->frozen, idx + i) ||
		    pi_test_set(r->claimed, idx + i, memory_order_acq_rel))
			continue;
		atomic_fetch_add(&s->inflight, 1);
		if (atomic_load(&s->stopping)) {
			pi_clear(r->claimed, idx + i);
			atomic_fetch_sub(&s->inflight, 1);
			return -ESHUTDOWN;
		}
		run = claim_run(r, idx + i, max_run(r, n - i));
		for (k = 0; zero_mask && k < run; k++)
			if (zero_mask[(i + k) / 64] >> ((i + k) % 64) & 1)
				zm |= 1ull << k;
		ret = install_data(s, r, idx + i, run, p + i * r->page_size, zm, deadline, &zeros);
		if (ret < 0) {
			release_run(s, r, idx + i, run);
			atomic_fetch_sub(&s->inflight, 1);
			return ret;
		}
		pi_stat_add(s, PI_STAT(pages_fill), run);
		if (zeros)
			pi_stat_add(s, PI_STAT(pages_zero), zeros);
		publish(s, r, idx + i, run);
		atomic_fetch_sub(&s->inflight, 1);
		done += run;
	}
	return (int)done;
}
