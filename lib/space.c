// SPDX-License-Identifier: MIT
/*
 * space.c - a space's life: creation, opening and probing userfaultfds (with errors that name
 * the fix), adding and validating regions, registering them, start and stop, and the lookups
 * from guest and host addresses to regions.
 */
#include <errno.h>
#include <fcntl.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <linux/memfd.h>
#include <sys/mman.h>
#include <sys/statfs.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "internal.h"
#include "vmm.h"
#include "uapi.h"

/* What a failed open means, and what the user can do about it. */
static void log_perm(struct pagein_space *s, int err)
{
	int sysctl = -1;
	int fd = open("/proc/sys/vm/unprivileged_userfaultfd", O_RDONLY | O_CLOEXEC);
	char c;

	if (fd >= 0) {
		if (read(fd, &c, 1) == 1)
			sysctl = c - '0';
		close(fd);
	}
	pi_log(s, PAGEIN_LOG_ERR,
		   "userfaultfd is not permitted (%s): run as root, or set "
		   "vm.unprivileged_userfaultfd=1 (now %d), or grant read/write access to "
		   "/dev/userfaultfd (%s)%s",
		   strerror(-err), sysctl, access("/dev/userfaultfd", R_OK | W_OK) ? "not accessible to you" : "accessible",
		   s->cfg.frontend == PAGEIN_FRONTEND_HANDLER
			   ? "; handler threads serve kernel-mode faults, which unprivileged "
			     "user-mode-only userfaultfds cannot catch"
			   : "");
}

/* Features each front-end needs; the backings' ones are added when regions are registered. */
static uint64_t wanted_features(const struct pagein_space *s, uint64_t avail)
{
	uint64_t f = UFFD_FEATURE_EVENT_REMOVE | UFFD_FEATURE_EVENT_UNMAP |
		     UFFD_FEATURE_MISSING_SHMEM | UFFD_FEATURE_MISSING_HUGETLBFS |
		     UFFD_FEATURE_MINOR_SHMEM | UFFD_FEATURE_MINOR_HUGETLBFS | UFFD_FEATURE_POISON |
		     UFFD_FEATURE_THREAD_ID; /* per-vCPU counts of handler faults (kvm.c) */

	if (s->cfg.frontend == PAGEIN_FRONTEND_SELF)
		f |= UFFD_FEATURE_SIGBUS;
	return f & (avail | UFFD_FEATURE_SIGBUS);
}

static int open_uffds(struct pagein_space *s)
{
	uint64_t avail = 0, granted;
	int flags = O_CLOEXEC | O_NONBLOCK;
	unsigned i;
	int fd, ret;

	fd = pi_uffd_open(flags);
	if (fd == -EPERM && s->cfg.frontend == PAGEIN_FRONTEND_SELF) {
		/* SIGBUS mode only ever sees user-mode faults: this works unprivileged */
		flags |= UFFD_USER_MODE_ONLY;
		fd = pi_uffd_open(flags);
		s->user_mode_only = fd >= 0;
	}
	if (fd < 0) {
		if (fd == -EPERM || fd == -EACCES) {
			log_perm(s, fd);
			return -EPERM;
		}
		pi_log(s, PAGEIN_LOG_ERR, "userfaultfd: %s (the kernel needs CONFIG_USERFAULTFD)",
			   strerror(-fd));
		return fd;
	}
	/* a probe: features=0 reports everything the kernel offers; an fd takes one UFFDIO_API */
	ret = pi_uffd_api(fd, 0, &avail);
	close(fd);
	if (ret < 0) {
		pi_log(s, PAGEIN_LOG_ERR, "UFFDIO_API failed: %s", strerror(-ret));
		return ret;
	}
	avail &= ~pi_hooks.hide_features;
	if (s->cfg.frontend == PAGEIN_FRONTEND_SELF && !(avail & UFFD_FEATURE_SIGBUS)) {
		pi_log(s, PAGEIN_LOG_ERR,
			   "this kernel lacks UFFD_FEATURE_SIGBUS: use the handler front-end");
		return -ENOSYS;
	}
	if (s->cfg.frontend == PAGEIN_FRONTEND_HANDLER && !(avail & UFFD_FEATURE_POISON)) {
		/* without UFFDIO_POISON a fault that cannot be served could only end on a zero
		 * page (or never): refuse, rather than hand a thread bytes that were never its */
		pi_log(s, PAGEIN_LOG_ERR,
			   "handler threads need UFFD_FEATURE_POISON (Linux 6.6 or later) to fail a "
			   "fault without handing the thread a zero page; this kernel lacks it: use "
			   "the self front-end, or a newer kernel");
		return -ENOSYS;
	}
	s->nuffds = s->cfg.frontend == PAGEIN_FRONTEND_HANDLER ? s->cfg.uffds : 1;
	for (i = 0; i < s->nuffds; i++) {
		fd = pi_uffd_open(flags);
		if (fd < 0)
			return fd;
		s->uffds[i] = fd;
		ret = pi_uffd_api(fd, wanted_features(s, avail), &granted);
		if (ret < 0) {
			pi_log(s, PAGEIN_LOG_ERR, "UFFDIO_API(features %#llx): %s",
				   (unsigned long long)wanted_features(s, avail), strerror(-ret));
			return ret;
		}
		/* UFFDIO_API succeeded, so exactly the features asked for are enabled; what it
		 * writes back is every feature the kernel knows, not what this fd has */
		s->features = wanted_features(s, avail);
	}
	return 0;
}

/*
 * Take the caller's configuration: cfg->size bytes of it over our defaults, so a program built
 * with an older (smaller) struct gets the defaults of the fields it does not know. A newer,
 * larger one is accepted when the fields this library does not know are all zero.
 */
static int config_copy(struct pagein_space *s, const struct pagein_config *cfg)
{
	const uint8_t *p = (const uint8_t *)cfg;
	size_t i, n = cfg->size;

	/* the first versioned layout ends at cb_arg; less is a config never initialised (its log
	 * sink cannot be trusted either, so this refusal is silent) */
	if (n < offsetof(struct pagein_config, cb_arg) + sizeof(cfg->cb_arg))
		return -EINVAL;
	for (i = sizeof(*cfg); i < n; i++)
		if (p[i])
			return -EINVAL;
	memcpy(&s->cfg, cfg, n < sizeof(*cfg) ? n : sizeof(*cfg));
	s->cfg.size = sizeof(*cfg);
	return 0;
}

int pagein_space_new(const struct pagein_config *cfg, struct pagein_space **out)
{
	struct pagein_space *s;
	unsigned i;
	int ret;

	s = aligned_alloc(64, sizeof(*s));
	if (!s)
		return -ENOMEM;
	memset(s, 0, sizeof(*s));
	pagein_config_init(&s->cfg);
	s->stop_efd = -1;
	s->self_slot = -1;
	s->peer_pidfd = -1;
	for (i = 0; i < PAGEIN_MAX_UFFDS; i++)
		s->uffds[i] = -1;

	ret = -EINVAL;
	if (cfg) {
		ret = config_copy(s, cfg);
		if (ret < 0)
			goto err_free;
	}
	ret = -EINVAL;
	if (s->cfg.frontend != PAGEIN_FRONTEND_SELF && s->cfg.frontend != PAGEIN_FRONTEND_HANDLER) {
		pi_log(s, PAGEIN_LOG_ERR, "unknown front-end %d", s->cfg.frontend);
		goto err_free;
	}
	if (!s->cfg.readers || s->cfg.readers > PAGEIN_MAX_READERS || !s->cfg.uffds ||
	    s->cfg.uffds > PAGEIN_MAX_UFFDS) {
		pi_log(s, PAGEIN_LOG_ERR, "readers must be 1..%d and uffds 1..%d (got %u, %u)",
			   PAGEIN_MAX_READERS, PAGEIN_MAX_UFFDS, s->cfg.readers, s->cfg.uffds);
		goto err_free;
	}
	if (s->cfg.fault_around != PAGEIN_AROUND_AUTO && s->cfg.fault_around > PAGEIN_AROUND_MAX) {
		pi_log(s, PAGEIN_LOG_ERR, "fault_around %u is over the maximum %u",
			   s->cfg.fault_around, PAGEIN_AROUND_MAX);
		goto err_free;
	}
	if (!s->cfg.timeout_ms)
		s->cfg.timeout_ms = 10000;
	if (!s->cfg.fill_batch || s->cfg.fill_batch > PAGEIN_AROUND_MAX)
		s->cfg.fill_batch = PAGEIN_AROUND_MAX;

	ret = open_uffds(s);
	if (ret < 0)
		goto err_close;
	s->stop_efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (s->stop_efd < 0) {
		ret = -errno;
		goto err_close;
	}
	s->bounce = mmap(NULL, PAGEIN_BOUNCE_SLOTS * PAGEIN_INSTALL_MAX, PROT_READ | PROT_WRITE,
			 MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (s->bounce == MAP_FAILED) {
		ret = -errno;
		s->bounce = NULL;
		goto err_close;
	}
	s->bounce_free = PAGEIN_BOUNCE_SLOTS == 64 ? ~0ull : (1ull << PAGEIN_BOUNCE_SLOTS) - 1;
	*out = s;
	return 0;

err_close:
	for (i = 0; i < PAGEIN_MAX_UFFDS; i++)
		if (s->uffds[i] >= 0)
			close(s->uffds[i]);
	if (s->stop_efd >= 0)
		close(s->stop_efd);
err_free:
	free(s);
	return ret;
}

static int bitmaps_alloc(struct pi_region *r)
{
	uint64_t words = (r->npages + 63) / 64;
	pi_bits_t *all = pi_bits_alloc(r->npages, 6);

	if (!all)
		return -ENOMEM;
	r->present = all;
	r->claimed = all + words;
	r->frozen = all + 2 * words;
	r->failed = all + 3 * words;
	r->parked = all + 4 * words;
	r->unmapped = all + 5 * words;
	return 0;
}

static void region_unmap(struct pi_region *r)
{
	uint64_t i, j;

	/* never what the program unmapped itself: it may have mapped something new there; and
	 * never a mapping the program made itself (adopted): it stays the program's */
	for (i = 0; r->host && !r->adopted && i < r->npages; i = j) {
		bool gone = r->unmapped && pi_test(r->unmapped, i);

		for (j = i + 1; j < r->npages && (r->unmapped && pi_test(r->unmapped, j)) == gone; j++)
			;
		if (!gone)
			munmap(r->host + (i << r->page_shift), (j - i) << r->page_shift);
	}
	if (r->alias)
		munmap(r->alias, r->size);
	if (r->memfd >= 0)
		close(r->memfd);
	free((void *)r->present);
	r->host = r->alias = NULL;
	r->memfd = -1;
	r->present = NULL;
	pthread_mutex_destroy(&r->pin_lock);
}

/* Map the region's memory: anonymous, or a memfd mapped twice (registered + alias). */
static int region_map(struct pagein_space *s, struct pi_region *r)
{
	unsigned mfd_flags = MFD_CLOEXEC;
	int ret;

	if (r->backing == PAGEIN_BACKING_ANON) {
		r->host = mmap(NULL, r->size, PROT_READ | PROT_WRITE,
			       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
		if (r->host == MAP_FAILED) {
			r->host = NULL;
			return -errno;
		}
		goto dontfork;
	}
	if (r->backing == PAGEIN_BACKING_HUGETLB)
		mfd_flags |= MFD_HUGETLB | MFD_HUGE_2MB;
	r->memfd = memfd_create("pagein-guest", mfd_flags);
	if (r->memfd < 0)
		return -errno;
	if (ftruncate(r->memfd, (off_t)r->size) < 0)
		return -errno;
	r->host = mmap(NULL, r->size, PROT_READ | PROT_WRITE, MAP_SHARED, r->memfd, 0);
	if (r->host == MAP_FAILED) {
		ret = -errno;
		r->host = NULL;
		if (r->backing == PAGEIN_BACKING_HUGETLB && ret == -ENOMEM)
			pi_log(s, PAGEIN_LOG_ERR,
				   "cannot reserve %llu huge pages of 2 MiB: raise vm.nr_hugepages "
				   "(echo N > /proc/sys/vm/nr_hugepages as root)",
				   (unsigned long long)r->npages);
		return ret;
	}
	r->alias = mmap(NULL, r->size, PROT_READ | PROT_WRITE, MAP_SHARED, r->memfd, 0);
	if (r->alias == MAP_FAILED) {
		r->alias = NULL;
		return -errno;
	}
	madvise(r->alias, r->size, MADV_DONTFORK);
dontfork:
	/* as QEMU does for guest RAM: a child must never see a half-arrived memory (without
	 * EVENT_FORK it would read missing pages as zeros, silently) */
	madvise(r->host, r->size, MADV_DONTFORK);
	return 0;
}

/* The checks every new region passes, added or adopted. Returns 0 or -errno (logged). */
static int region_check(struct pagein_space *s, uint64_t gpa, uint64_t size,
			enum pagein_backing backing)
{
	unsigned n = atomic_load(&s->nregions), i;
	struct pi_region *r;
	uint64_t ps;

	if (atomic_load(&s->started)) {
		pi_log(s, PAGEIN_LOG_ERR, "regions can only be added before pagein_space_start");
		return -EBUSY;
	}
	if (backing != PAGEIN_BACKING_ANON && backing != PAGEIN_BACKING_SHMEM &&
	    backing != PAGEIN_BACKING_HUGETLB) {
		pi_log(s, PAGEIN_LOG_ERR, "unknown backing %d", backing);
		return -EINVAL;
	}
	ps = pagein_backing_page_size(backing);
	if (!size) {
		pi_log(s, PAGEIN_LOG_ERR, "region at gpa %#llx has zero size",
			   (unsigned long long)gpa);
		return -EINVAL;
	}
	if (gpa % ps || size % ps) {
		pi_log(s, PAGEIN_LOG_ERR,
			   "region gpa %#llx size %#llx is not aligned to the %s page size %#llx",
			   (unsigned long long)gpa, (unsigned long long)size,
			   pagein_backing_name(backing), (unsigned long long)ps);
		return -EINVAL;
	}
	if (gpa + size < gpa) {
		pi_log(s, PAGEIN_LOG_ERR, "region gpa %#llx size %#llx wraps the address space",
			   (unsigned long long)gpa, (unsigned long long)size);
		return -EINVAL;
	}
	for (i = 0; i < n; i++) {
		r = &s->regions[i];
		if (gpa < r->gpa + r->size && r->gpa < gpa + size) {
			pi_log(s, PAGEIN_LOG_ERR,
				   "region [%#llx, %#llx) overlaps region %u [%#llx, %#llx)",
				   (unsigned long long)gpa, (unsigned long long)(gpa + size), i,
				   (unsigned long long)r->gpa,
				   (unsigned long long)(r->gpa + r->size));
			return -EINVAL;
		}
	}
	if (n == PAGEIN_MAX_REGIONS) {
		pi_log(s, PAGEIN_LOG_ERR, "a space holds at most %d regions", PAGEIN_MAX_REGIONS);
		return -ENOSPC;
	}
	return 0;
}

/* The next region slot, initialised (bitmaps allocated) for [gpa, gpa+size). */
static int region_init(struct pagein_space *s, struct pi_region *r, uint64_t gpa, uint64_t size,
		       enum pagein_backing backing)
{
	uint64_t ps = pagein_backing_page_size(backing);

	memset(r, 0, sizeof(*r));
	r->gpa = gpa;
	r->size = size;
	r->page_size = ps;
	r->page_shift = (unsigned)__builtin_ctzll(ps);
	r->npages = size / ps;
	r->backing = backing;
	r->memfd = -1;
	pthread_mutex_init(&r->pin_lock, NULL);
	return bitmaps_alloc(r);
}

int pagein_region_add(struct pagein_space *s, uint64_t gpa, uint64_t size,
		      enum pagein_backing backing, void **host)
{
	unsigned n = atomic_load(&s->nregions);
	struct pi_region *r = &s->regions[n];
	int ret;

	if (s->remote) {
		pi_log(s, PAGEIN_LOG_ERR, "a space serving another process's userfaultfd holds that "
		       "process's memory: describe it with pagein_region_adopt");
		return -EINVAL;
	}
	ret = region_check(s, gpa, size, backing);
	if (ret < 0)
		return ret;
	ret = region_init(s, r, gpa, size, backing);
	if (ret < 0)
		return ret;
	ret = region_map(s, r);
	if (ret < 0) {
		if (ret != -ENOMEM || backing != PAGEIN_BACKING_HUGETLB)
			pi_log(s, PAGEIN_LOG_ERR, "mapping %llu bytes of %s memory: %s",
				   (unsigned long long)size, pagein_backing_name(backing),
				   strerror(-ret));
		region_unmap(r);
		return ret;
	}
	s->total_pages += r->npages;
	atomic_store(&s->nregions, n + 1);
	if (host)
		*host = r->host;
	return 0;
}

int pagein_region_adopt(struct pagein_space *s, const struct pagein_region_adopt *a)
{
	unsigned n = atomic_load(&s->nregions);
	struct pi_region *r = &s->regions[n];
	struct statfs fs;
	uint64_t ps;
	int ret;

	if (!a || a->size < sizeof(*a) || a->flags)
		return -EINVAL;
	ret = region_check(s, a->gpa, a->len, a->backing);
	if (ret < 0)
		return ret;
	ps = pagein_backing_page_size(a->backing);
	if (s->remote && (a->backing != PAGEIN_BACKING_ANON || a->fd >= 0)) {
		/* the peer's pages are installed with COPY/ZEROPAGE through its uffd, which
		 * serves private anonymous memory; the rest is the Firecracker handler's
		 * (pagein-vmm.h) for now */
		pi_log(s, PAGEIN_LOG_ERR, "another process's memory is adopted as anonymous 4 KiB "
		       "memory without an fd (got %s, fd %d)", pagein_backing_name(a->backing),
		       a->fd);
		return -EOPNOTSUPP;
	}
	if (!a->host || (uintptr_t)a->host % ps) {
		pi_log(s, PAGEIN_LOG_ERR, "adopted memory at %p is not aligned to its page size "
		       "%#llx", a->host, (unsigned long long)ps);
		return -EINVAL;
	}
	if (a->backing == PAGEIN_BACKING_ANON && a->fd >= 0) {
		pi_log(s, PAGEIN_LOG_ERR, "anonymous memory is adopted without an fd (fd %d given): "
		       "for a memfd use the shmem or hugetlb backing", a->fd);
		return -EINVAL;
	}
	if (a->backing != PAGEIN_BACKING_ANON) {
		/* the library writes pages through its own mapping of the file, then maps them
		 * in the program's with CONTINUE: it needs the file, and it must be one whose
		 * page cache CONTINUE can use */
		long want = a->backing == PAGEIN_BACKING_HUGETLB ? 0x958458f6 /* HUGETLBFS_MAGIC */
								  : 0x01021994; /* TMPFS_MAGIC */

		if (a->fd < 0 || fstatfs(a->fd, &fs) < 0 || fs.f_type != want || a->fd_offset % ps) {
			pi_log(s, PAGEIN_LOG_ERR, "adopted %s memory needs the %s fd it maps (fd %d, "
			       "offset %#llx, page-aligned)", pagein_backing_name(a->backing),
			       a->backing == PAGEIN_BACKING_HUGETLB ? "hugetlbfs (memfd MFD_HUGETLB)"
								    : "memfd/shmem",
			       a->fd, (unsigned long long)a->fd_offset);
			return -EINVAL;
		}
	}
	ret = region_init(s, r, a->gpa, a->len, a->backing);
	if (ret < 0)
		return ret;
	r->host = a->host;
	r->adopted = true;
	r->memfd_off = a->fd_offset;
	if (a->backing != PAGEIN_BACKING_ANON) {
		r->memfd = fcntl(a->fd, F_DUPFD_CLOEXEC, 0);
		if (r->memfd < 0) {
			ret = -errno;
			goto err;
		}
		r->alias = mmap(NULL, r->size, PROT_READ | PROT_WRITE, MAP_SHARED, r->memfd,
				(off_t)a->fd_offset);
		if (r->alias == MAP_FAILED) {
			ret = -errno;
			r->alias = NULL;
			pi_log(s, PAGEIN_LOG_ERR, "mapping the adopted fd a second time: %s",
			       strerror(-ret));
			goto err;
		}
		madvise(r->alias, r->size, MADV_DONTFORK);
	}
	s->total_pages += r->npages;
	atomic_store(&s->nregions, n + 1);
	return 0;

err:
	region_unmap(r);
	return ret;
}

int pagein_space_adopt_uffd(struct pagein_space *s, const struct pagein_uffd_adopt *u)
{
	int fd, pidfd = -1, fl;

	if (!u || u->size < sizeof(*u) || u->flags || u->uffd < 0)
		return -EINVAL;
	if (atomic_load(&s->started) || atomic_load(&s->nregions) || s->remote) {
		pi_log(s, PAGEIN_LOG_ERR, "adopt a userfaultfd before adding regions or starting");
		return -EBUSY;
	}
	if (s->cfg.frontend != PAGEIN_FRONTEND_HANDLER || s->nuffds != 1 ||
	    s->cfg.readers != 1) {
		/* one reader: the peer's madvise returns once its REMOVE is read, and the fault
		 * that follows on the discarded page must not be served (from the source) by a
		 * second reader before the first has marked the page */
		pi_log(s, PAGEIN_LOG_ERR, "another process's faults are served by one handler "
		       "thread on its one userfaultfd: create the space with "
		       "PAGEIN_FRONTEND_HANDLER, readers = 1 and uffds = 1");
		return -EINVAL;
	}
	if (pi_uffd_check(u->uffd) < 0) {
		pi_log(s, PAGEIN_LOG_ERR, "fd %d is not a userfaultfd", u->uffd);
		return -EBADF;
	}
	fd = fcntl(u->uffd, F_DUPFD_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	/* the readers drain it until EAGAIN: it must not block (the file description is shared
	 * with the peer, which does not read it) */
	fl = fcntl(fd, F_GETFL);
	if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0)
		goto err_errno;
	if (u->pidfd >= 0) {
		pidfd = fcntl(u->pidfd, F_DUPFD_CLOEXEC, 0);
		if (pidfd < 0)
			goto err_errno;
	}
	close(s->uffds[0]);
	s->uffds[0] = fd;
	s->peer_pidfd = pidfd;
	s->remote = true;
	return 0;

err_errno:
	fl = -errno;
	close(fd);
	return fl;
}

int pagein_space_set_source(struct pagein_space *s, struct pagein_source *src)
{
	unsigned i, n = atomic_load(&s->nregions);
	struct pi_region *r;

	if (atomic_load(&s->started))
		return -EBUSY;
	if (!src)
		return -EINVAL;
	for (i = 0; i < n && src->ops.covers; i++) {
		r = &s->regions[i];
		if (!src->ops.covers(src->ctx, r->gpa, r->size)) {
			pi_log(s, PAGEIN_LOG_ERR,
				   "the source does not hold region %u [%#llx, %#llx) (a truncated "
				   "snapshot, or one of another machine?)",
				   i, (unsigned long long)r->gpa, (unsigned long long)(r->gpa + r->size));
			return -EINVAL;
		}
	}
	s->src = src;
	return 0;
}

/* Register region r with its userfaultfd(s), one stripe each. */
static int region_register(struct pagein_space *s, struct pi_region *r, unsigned base)
{
	uint64_t off, len, stripe_bytes;
	unsigned k;
	int ret;

	r->uffd_base = base;
	r->stripe_pages = (r->npages + s->nuffds - 1) / s->nuffds;
	stripe_bytes = r->stripe_pages * r->page_size;
	if (s->remote)
		return 0; /* the peer registered its memory itself */
	for (k = 0, off = 0; off < r->size; k++, off += stripe_bytes) {
		len = r->size - off < stripe_bytes ? r->size - off : stripe_bytes;
		ret = pi_uffd_register(s->uffds[base + k], (uintptr_t)r->host + off, len,
				       r->backing != PAGEIN_BACKING_ANON);
		if (ret == -ENOSYS) {
			pi_log(s, PAGEIN_LOG_ERR, "the kernel offers no %s for %s memory",
			       r->backing == PAGEIN_BACKING_ANON ? "UFFDIO_COPY" : "UFFDIO_CONTINUE",
			       pagein_backing_name(r->backing));
			return ret;
		}
		if (ret < 0) {
			pi_log(s, PAGEIN_LOG_ERR, "UFFDIO_REGISTER of %s region at gpa %#llx: %s%s",
			       pagein_backing_name(r->backing), (unsigned long long)r->gpa,
			       strerror(-ret),
			       r->backing != PAGEIN_BACKING_ANON && ret == -EINVAL
				       ? " (this kernel lacks MINOR faults on shmem/hugetlb)"
				       : "");
			return ret;
		}
	}
	return 0;
}

/* Undo region_register (whole stripes or none; a range never registered is skipped by the
 * kernel). Wakes whoever the kernel holds on those pages: they fault again, unserved. */
static void region_unregister(struct pagein_space *s, struct pi_region *r)
{
	uint64_t off, stripe_bytes = r->stripe_pages * r->page_size;
	unsigned k;
	int ret;

	if (s->remote)
		return; /* the peer's registration: it goes with its process */

	for (k = 0, off = 0; stripe_bytes && off < r->size; k++, off += stripe_bytes) {
		ret = pi_uffd_unregister(s->uffds[r->uffd_base + k], (uintptr_t)r->host + off,
					 r->size - off < stripe_bytes ? r->size - off : stripe_bytes);
		if (ret < 0)
			pi_log(s, PAGEIN_LOG_WARN, "UFFDIO_UNREGISTER of the region at gpa %#llx: %s",
			       (unsigned long long)r->gpa, strerror(-ret));
	}
}

/* Calls on_complete once every page is in: never from the fault path, which may be a SIGBUS
 * handler. Returns without touching the space after the callback (which may free it). */
static void *notify_main(void *arg)
{
	struct pagein_space *s = arg;
	uint32_t seq;

	for (;;) {
		seq = atomic_load(&s->progress);
		if (atomic_load(&s->completed)) {
			s->cfg.on_complete(s->cfg.cb_arg);
			return NULL;
		}
		if (atomic_load(&s->stopping))
			return NULL;
		pi_futex_wait(&s->progress, seq, 0);
	}
}

static void notify_stop(struct pagein_space *s)
{
	if (!s->notify_running)
		return;
	s->notify_running = false;
	/* on_complete itself may stop or free the space: do not join ourselves */
	if (pthread_equal(pthread_self(), s->notify_thread))
		pthread_detach(s->notify_thread);
	else
		pthread_join(s->notify_thread, NULL);
}

int pagein_space_start(struct pagein_space *s)
{
	unsigned i, n = atomic_load(&s->nregions);
	int ret;

	if (atomic_load(&s->started) || atomic_load(&s->stopping)) {
		pi_log(s, PAGEIN_LOG_ERR, "space already started (a stopped space cannot restart)");
		return -EBUSY;
	}
	if (!n || !s->src) {
		pi_log(s, PAGEIN_LOG_ERR, "start needs at least one region and a source");
		return -EINVAL;
	}
	for (i = 0; i < n; i++) {
		ret = region_register(s, &s->regions[i], 0);
		if (ret < 0) {
			n = i + 1; /* the failing one may be registered in part */
			goto err_unregister;
		}
	}
	atomic_store(&s->started, true);
	if (s->cfg.frontend == PAGEIN_FRONTEND_SELF) {
		ret = pi_self_attach(s);
		if (ret < 0)
			goto err_started;
	}
	ret = pi_readers_start(s);
	if (ret < 0)
		goto err_self;
	if (s->cfg.on_complete) {
		ret = -pthread_create(&s->notify_thread, NULL, notify_main, s);
		if (ret < 0) {
			pi_log(s, PAGEIN_LOG_ERR, "starting the on_complete thread: %s",
				   strerror(-ret));
			goto err_readers;
		}
		s->notify_running = true;
	}
	return 0;

err_readers:
	pi_readers_stop(s);
err_self:
	/* unregister before the SIGBUS handler goes: a touch then finds plain memory */
	for (i = 0; i < n; i++)
		region_unregister(s, &s->regions[i]);
	n = 0;
	pi_self_detach(s);
err_started:
	atomic_store(&s->started, false);
err_unregister:
	for (i = 0; i < n; i++)
		region_unregister(s, &s->regions[i]);
	return ret;
}

void pagein_space_stop(struct pagein_space *s)
{
	uint64_t deadline, i, j, n, unpoisoned = 0;
	struct pi_region *r;
	int ret = 0;

	if (!atomic_load(&s->started) || atomic_exchange(&s->stopping, true))
		return;
	pagein_fill_stop(s);
	/* no new claims from here on; let the fetches already running finish (bounded) */
	deadline = pi_now_ns() + (uint64_t)s->cfg.timeout_ms * 1000000ull;
	while (atomic_load(&s->inflight) > 0 && pi_now_ns() < deadline)
		usleep(100);
	/* every page still missing becomes poison: a thread blocked on it, or touching it later,
	 * gets SIGBUS rather than a zero page that was never the guest's (not when the peer whose
	 * memory it is has exited: nobody is left to touch it) */
	n = atomic_load(&s->peer_gone) ? 0 : atomic_load(&s->nregions);
	for (i = 0; i < n; i++) {
		r = &s->regions[i];
		for (j = 0; j < r->npages;) {
			uint64_t k = j;

			while (k < r->npages && !pi_test(r->present, k) && !pi_test(r->unmapped, k) &&
			       k / r->stripe_pages == j / r->stripe_pages)
				k++;
			if (k > j) {
				int err = pi_poison(s, r, j, k - j);

				if (err < 0 && err != -ENOSYS) {
					unpoisoned += k - j;
					ret = err;
				}
			}
			j = k > j ? k : j + 1;
		}
	}
	if (unpoisoned)
		pi_log(s, PAGEIN_LOG_WARN,
			   "stop could not poison %llu missing pages (%s): a thread touching them "
			   "before pagein_space_free is not failed cleanly",
			   (unsigned long long)unpoisoned, strerror(-ret));
	pi_wake_all(s);
	pi_readers_stop(s);
	pi_self_detach(s);
	notify_stop(s);
	atomic_store(&s->started, false);
}

void pagein_space_free(struct pagein_space *s)
{
	unsigned i, n;

	if (!s)
		return;
	pagein_space_stop(s);
	n = atomic_load(&s->nregions);
	/* close the userfaultfds first: with EVENT_UNMAP, a munmap() waits until a reader reads
	 * the event, and the readers are gone. Closing is safe now: stop poisoned every missing
	 * page, so no faulter is left to resume on a zero-filled page. */
	for (i = 0; i < PAGEIN_MAX_UFFDS; i++)
		if (s->uffds[i] >= 0)
			close(s->uffds[i]);
	for (i = 0; i < n; i++)
		region_unmap(&s->regions[i]);
	if (s->stop_efd >= 0)
		close(s->stop_efd);
	if (s->bounce)
		munmap(s->bounce, PAGEIN_BOUNCE_SLOTS * PAGEIN_INSTALL_MAX);
	free(atomic_load(&s->ws_rec));
	if (s->peer_pidfd >= 0)
		close(s->peer_pidfd);
	free(s);
}

struct pi_region *pi_region_find(struct pagein_space *s, uint64_t gpa)
{
	unsigned i, n = atomic_load_explicit(&s->nregions, memory_order_acquire);

	for (i = 0; i < n; i++)
		if (gpa - s->regions[i].gpa < s->regions[i].size)
			return &s->regions[i];
	return NULL;
}

struct pi_region *pi_region_of_host(struct pagein_space *s, uintptr_t addr)
{
	unsigned i, n = atomic_load_explicit(&s->nregions, memory_order_acquire);

	for (i = 0; i < n; i++)
		if (addr - (uintptr_t)s->regions[i].host < s->regions[i].size)
			return &s->regions[i];
	return NULL;
}

void *pagein_host_addr(struct pagein_space *s, uint64_t gpa)
{
	struct pi_region *r = pi_region_find(s, gpa);

	return r ? r->host + (gpa - r->gpa) : NULL;
}

int pagein_gpa_of(struct pagein_space *s, const void *host, uint64_t *gpa)
{
	struct pi_region *r = pi_region_of_host(s, (uintptr_t)host);

	if (!r)
		return -EINVAL;
	*gpa = r->gpa + ((uintptr_t)host - (uintptr_t)r->host);
	return 0;
}

int pagein_space_uffd(struct pagein_space *s, unsigned i)
{
	return i < s->nuffds ? s->uffds[i] : -ENOENT;
}

void pagein_residency(struct pagein_space *s, uint64_t *present, uint64_t *total)
{
	if (present)
		*present = atomic_load(&s->present_pages);
	if (total)
		*total = s->total_pages;
}
