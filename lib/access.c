// SPDX-License-Identifier: MIT
/*
 * access.c - the choke points: every access to guest memory that does not come from a faulting
 * thread (device emulation, DMA, syscalls in SELF mode, KVM exits) goes through resolve, read,
 * write or pin, which make the range present first (notify-and-wait on pages in flight). Also
 * freeze/thaw, which make accessors fail fast and hold faults back.
 */
#include <errno.h>
#include <string.h>
#include <sys/mman.h>

#include "internal.h"

/* Visit the parts of [gpa, gpa+len) region by region; fn gets (region, first page, pages, the
 * part's gpa and length). Stops at the first error; -EINVAL (logged) when a byte lies outside
 * every region. */
typedef int (*part_fn)(struct pagein_space *s, struct pi_region *r, uint64_t gpa, uint64_t len,
		       void *arg);

static int for_each_part(struct pagein_space *s, uint64_t gpa, uint64_t len, part_fn fn,
			 void *arg)
{
	uint64_t cur = gpa, end = gpa + len, part;
	struct pi_region *r;
	int ret;

	if (end < gpa) {
		pi_log(s, PAGEIN_LOG_ERR, "range at gpa %#llx length %#llx wraps",
			   (unsigned long long)gpa, (unsigned long long)len);
		return -EINVAL;
	}
	while (cur < end) {
		r = pi_region_find(s, cur);
		if (!r) {
			pi_log(s, PAGEIN_LOG_ERR, "gpa %#llx is outside every region",
				   (unsigned long long)cur);
			return -EINVAL;
		}
		part = r->gpa + r->size - cur;
		if (part > end - cur)
			part = end - cur;
		ret = fn(s, r, cur, part, arg);
		if (ret < 0)
			return ret;
		cur += part;
	}
	return 0;
}

struct present_arg {
	uint64_t *bad; /* first failing gpa */
};

static int present_part(struct pagein_space *s, struct pi_region *r, uint64_t gpa, uint64_t len,
			void *arg)
{
	struct present_arg *a = arg;
	uint64_t first = (gpa - r->gpa) >> r->page_shift;
	uint64_t last = (gpa - r->gpa + len - 1) >> r->page_shift;
	uint64_t bad = 0;
	int ret;

	if (!atomic_load(&s->started))
		return -EINVAL;
	ret = pi_make_present(s, r, first, last - first + 1, PI_WHY_ACCESS, &bad);
	if (ret < 0) {
		if (a->bad)
			*a->bad = bad;
		if (ret == -EFAULT)
			pi_log(s, PAGEIN_LOG_INFO,
				   "access to [%#llx, %#llx) fails fast: gpa %#llx is frozen",
				   (unsigned long long)gpa, (unsigned long long)(gpa + len),
				   (unsigned long long)bad);
	}
	return ret;
}

int pagein_resolve(struct pagein_space *s, uint64_t gpa, uint64_t len, uint64_t *bad_gpa)
{
	struct present_arg a = { bad_gpa };

	pi_stat_add(s, PI_STAT(accessor_calls), 1);
	if (!len)
		return 0;
	return for_each_part(s, gpa, len, present_part, &a);
}

struct copy_arg {
	uint8_t *buf;  /* caller's buffer, advanced part by part */
	bool write;    /* copy into guest memory */
	uint64_t *bad; /* first failing gpa */
};

static int copy_part(struct pagein_space *s, struct pi_region *r, uint64_t gpa, uint64_t len,
		     void *arg)
{
	struct copy_arg *a = arg;
	struct present_arg pa = { a->bad };
	uint8_t *mem;
	int ret;

	ret = present_part(s, r, gpa, len, &pa);
	if (ret < 0)
		return ret;
	/* memfds through the alias (pagestate.h invariant 2); anon pages are present, so no fault */
	mem = (r->alias ? r->alias : r->host) + (gpa - r->gpa);
	if (a->write)
		memcpy(mem, a->buf, len);
	else
		memcpy(a->buf, mem, len);
	a->buf += len;
	return 0;
}

/* All or nothing: the whole range is made present before a byte is copied. */
static int access_range(struct pagein_space *s, uint64_t gpa, void *buf, size_t len, bool write)
{
	if (s->remote)
		return -EOPNOTSUPP; /* the memory is another process's: pagein cannot copy it */
	struct present_arg pa = { NULL };
	struct copy_arg a = { buf, write, NULL };
	int ret;

	pi_stat_add(s, PI_STAT(accessor_calls), 1);
	if (!len)
		return 0;
	ret = for_each_part(s, gpa, len, present_part, &pa);
	if (ret < 0)
		return ret;
	return for_each_part(s, gpa, len, copy_part, &a);
}

int pagein_read(struct pagein_space *s, uint64_t gpa, void *buf, size_t len)
{
	return access_range(s, gpa, buf, len, false);
}

int pagein_write(struct pagein_space *s, uint64_t gpa, const void *buf, size_t len)
{
	return access_range(s, gpa, (void *)buf, len, true);
}

/* Whether any page of [first, first+n) of r is frozen. */
static bool any_frozen(struct pi_region *r, uint64_t first, uint64_t n)
{
	uint64_t i;

	for (i = first; i < first + n; i++)
		if (pi_test(r->frozen, i))
			return true;
	return false;
}

/*
 * pin, unpin, freeze and thaw each take the region's pin_lock for their check and their
 * action together: a range is never both pinned and frozen, the pin count never goes below
 * zero, and a thaw never leaves poison that a FROZEN_FAIL fault put there (see frozen_fault).
 */
int pagein_pin(struct pagein_space *s, uint64_t gpa, uint64_t len, void **host)
{
	struct pi_region *r = pi_region_find(s, gpa);
	struct present_arg a = { NULL };
	uint64_t first, last;
	int ret;

	if (s->remote)
		return -EOPNOTSUPP; /* another process's memory */

	pi_stat_add(s, PI_STAT(accessor_calls), 1);
	if (!r || !len || len > r->gpa + r->size - gpa) {
		pi_log(s, PAGEIN_LOG_ERR, "pin [%#llx, +%#llx) must lie inside one region",
			   (unsigned long long)gpa, (unsigned long long)len);
		return -EINVAL;
	}
	first = (gpa - r->gpa) >> r->page_shift;
	last = (gpa - r->gpa + len - 1) >> r->page_shift;
	pthread_mutex_lock(&r->pin_lock);
	if (any_frozen(r, first, last - first + 1)) {
		pthread_mutex_unlock(&r->pin_lock);
		pi_log(s, PAGEIN_LOG_INFO, "pin [%#llx, +%#llx) fails fast: part of it is frozen",
			   (unsigned long long)gpa, (unsigned long long)len);
		return -EFAULT;
	}
	pi_hook_race();
	r->pins++;
	pthread_mutex_unlock(&r->pin_lock);
	/* no freeze can come now: the fetch runs without the lock */
	ret = present_part(s, r, gpa, len, &a);
	if (ret < 0) {
		pagein_unpin(s, gpa, len);
		return ret;
	}
	*host = r->host + (gpa - r->gpa);
	return 0;
}

void pagein_unpin(struct pagein_space *s, uint64_t gpa, uint64_t len)
{
	struct pi_region *r = pi_region_find(s, gpa);

	if (!r)
		return;
	pthread_mutex_lock(&r->pin_lock);
	if (r->pins > 0) {
		pi_hook_race();
		r->pins--;
	}
	pthread_mutex_unlock(&r->pin_lock);
}

#define THAW_TRIES 100 /* zaps of one page's poison before thaw gives up on it */

/* Freeze and thaw take whole pages inside regions. */
static int check_pages(struct pagein_space *s, uint64_t gpa, uint64_t len, const char *what)
{
	struct pi_region *r = pi_region_find(s, gpa);

	if (!r || !len || len > r->gpa + r->size - gpa || (gpa - r->gpa) % r->page_size ||
	    len % r->page_size) {
		pi_log(s, PAGEIN_LOG_ERR,
			   "%s [%#llx, +%#llx): the range must be whole pages inside one region",
			   what, (unsigned long long)gpa, (unsigned long long)len);
		return -EINVAL;
	}
	return 0;
}

int pagein_freeze(struct pagein_space *s, uint64_t gpa, uint64_t len)
{
	struct pi_region *r;
	uint64_t i, first;
	int ret;

	if (s->remote)
		return -EOPNOTSUPP; /* another process's memory */

	ret = check_pages(s, gpa, len, "freeze");
	if (ret < 0)
		return ret;
	r = pi_region_find(s, gpa);
	pthread_mutex_lock(&r->pin_lock);
	if (r->pins > 0) {
		pthread_mutex_unlock(&r->pin_lock);
		pi_log(s, PAGEIN_LOG_ERR, "freeze at gpa %#llx: the region has pinned ranges",
			   (unsigned long long)gpa);
		return -EBUSY;
	}
	pi_hook_race();
	first = (gpa - r->gpa) >> r->page_shift;
	for (i = first; i < first + (len >> r->page_shift); i++)
		pi_test_set(r->frozen, i, memory_order_seq_cst);
	pthread_mutex_unlock(&r->pin_lock);
	return 0;
}

int pagein_thaw(struct pagein_space *s, uint64_t gpa, uint64_t len)
{
	struct pi_region *r;
	uint64_t i, first, n;
	unsigned tries;
	bool parked;
	int ret;

	if (s->remote)
		return -EOPNOTSUPP; /* another process's memory */

	ret = check_pages(s, gpa, len, "thaw");
	if (ret < 0)
		return ret;
	r = pi_region_find(s, gpa);
	first = (gpa - r->gpa) >> r->page_shift;
	n = len >> r->page_shift;
	for (i = first; i < first + n; i++) {
		/* page by page, and the madvise outside the lock: it waits until a reader reads
		 * the REMOVE event, and a reader may be waiting for the lock in frozen_fault */
		/*
		 * A fault refused under FROZEN_FAIL left poison (parked): zap it so the page
		 * faults anew. The page stays frozen until no poison is left: nothing claims a
		 * frozen page, and an install over poison would meet EEXIST and publish a page
		 * that holds no bytes. A fault between the zap and the check poisons it again
		 * (parked again): zap again, a bounded number of times.
		 */
		for (tries = 0;; tries++) {
			pthread_mutex_lock(&r->pin_lock);
			parked = pi_test(r->parked, i);
			if (!parked || tries == THAW_TRIES)
				pi_clear(r->frozen, i);
			else
				pi_clear(r->parked, i);
			pthread_mutex_unlock(&r->pin_lock);
			if (!parked)
				break;
			if (tries == THAW_TRIES) {
				pi_log(s, PAGEIN_LOG_WARN,
					   "thaw: gpa %#llx kept being faulted while its poison was "
					   "removed; it may still give SIGBUS",
					   (unsigned long long)(r->gpa + (i << r->page_shift)));
				break;
			}
			madvise(r->host + (i << r->page_shift), r->page_size, MADV_DONTNEED);
		}
	}
	/* self-resolving faulters sleep in the wait table; handler-mode faults sit queued in
	 * the kernel: wake them to fault again, now served */
	pi_wake_all(s);
	pi_wake_pages(s, r, first, n);
	return 0;
}
