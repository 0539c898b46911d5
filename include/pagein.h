/* SPDX-License-Identifier: MIT */
/*
 * pagein.h - the public header of libpagein: demand paging of VM and process memory (the KVM
 * part is in pagein-kvm.h, which includes this one).
 * A space is a set of guest memory regions whose pages arrive on first touch from a source
 * (memory, snapshot file, network); faults reach one engine through self-resolve (SIGBUS),
 * handler threads, accessors or a KVM exit. Every function returns 0 (or a count) or -errno.
 */
#ifndef PAGEIN_H
#define PAGEIN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define PAGEIN_VERSION_MAJOR 0
#define PAGEIN_VERSION_MINOR 2

/* The library's version as "MAJOR.MINOR.PATCH" (of the libpagein actually loaded, which may be
 * newer than this header). A static string; any thread. */
const char *pagein_version(void);

#define PAGEIN_MAX_REGIONS 64 /* regions one space holds (the protocol and the snapshot format
                               * allow as many) */

struct pagein_space;   /* regions + page state + a fault front-end + a source */
struct pagein_source;  /* where the bytes of missing pages come from */

/* ---------------------------------------------------------------------------------------------
 * Configuration
 */

/* How faults from threads touching guest memory reach the engine. */
enum pagein_frontend {
	PAGEIN_FRONTEND_SELF = 0,    /* UFFD_FEATURE_SIGBUS: the faulting thread resolves its own
	                              * fault in a SIGBUS handler. User-mode accesses only: syscalls
	                              * and KVM on missing pages fail EFAULT, use the accessors. */
	PAGEIN_FRONTEND_HANDLER = 1, /* reader threads on userfaultfd(s); also serves kernel-mode
	                              * accesses (syscalls, KVM's GUP). */
};

/* What backs a region. */
enum pagein_backing {
	PAGEIN_BACKING_ANON = 0,    /* private anonymous, 4 KiB, installed by UFFDIO_COPY/ZEROPAGE */
	PAGEIN_BACKING_SHMEM = 1,   /* memfd, 4 KiB, written through an alias mapping + CONTINUE */
	PAGEIN_BACKING_HUGETLB = 2, /* hugetlb memfd, 2 MiB pages, alias + CONTINUE, one huge page
	                             * per install */
};

/* What a fault on a frozen page does (accessors on frozen pages always fail fast). */
enum pagein_frozen_policy {
	PAGEIN_FROZEN_WAIT = 0, /* report through on_frozen_fault, then wait for pagein_thaw() */
	PAGEIN_FROZEN_FAIL = 1, /* report, then fail the access: the thread gets SIGBUS */
};

/* Log levels passed to the log callback. */
enum pagein_log_level {
	PAGEIN_LOG_ERR = 3,
	PAGEIN_LOG_WARN = 4,
	PAGEIN_LOG_INFO = 6,
	PAGEIN_LOG_DEBUG = 7,
};

/* Fault-around default: 0 = one page per fault, >0 = up to that many pages per install. */
#define PAGEIN_AROUND_AUTO ((unsigned)-1) /* 1 page; 4, 8 .. 64 while faults look sequential */
#define PAGEIN_AROUND_MAX 64u             /* largest window, in pages of the region */

/*
 * Space configuration. Fill it with pagein_config_init() first (it sets size), then change
 * fields; the space copies it. Fields added in later versions go at the end: a program built
 * against an older header passes a smaller size and gets their defaults. Callbacks may be called from any thread, including from inside a SIGBUS handler for
 * on_frozen_fault and on_fault_error (so those must be async-signal-safe in SELF mode);
 * on_complete never is.
 */
struct pagein_config {
	uint32_t size;                 /* sizeof(struct pagein_config) the caller was built with:
	                                * set by pagein_config_init; pagein_space_new refuses 0 */
	enum pagein_frontend frontend; /* default SELF */
	unsigned readers;              /* HANDLER: reader threads in total (default 1) */
	unsigned uffds;                /* HANDLER: userfaultfds the memory is striped over
	                                * (default 1; readers are spread over them) */
	unsigned fault_around;         /* pages per fault install, or PAGEIN_AROUND_AUTO (default) */
	unsigned timeout_ms;           /* longest a fault or accessor waits for a page (default
	                                * 10000); a source fetch gets the same deadline */
	enum pagein_frozen_policy frozen_policy; /* default WAIT */
	unsigned fill_batch;           /* background fill: pages per install (default 64) */
	/* log sink; NULL = silent. msg has no trailing newline. Not called from a signal handler. */
	void (*log)(void *arg, int level, const char *msg);
	void *log_arg;
	/* a fault hit a frozen page (gpa of the page, its size). Async-signal-safe in SELF mode. */
	void (*on_frozen_fault)(void *arg, uint64_t gpa, uint64_t len);
	/* a fault could not be served (source error or time-out): gpa, size, -errno. The faulting
	 * thread then gets SIGBUS (BUS_MCEERR_AR). Also -EDEADLK, without failing the page, for a
	 * nested fault: a signal handler touched a page its own thread is fetching. Not called for
	 * faults refused because the space is stopping. Async-signal-safe in SELF mode. */
	void (*on_fault_error)(void *arg, uint64_t gpa, uint64_t len, int err);
	/* every page is present (or was unmapped by the program). Called once, on a thread of the
	 * library's own (never in signal context, never on the thread that installed the last
	 * page), so it may take locks, allocate, and even stop or free the space. */
	void (*on_complete)(void *arg);
	void *cb_arg; /* passed to on_frozen_fault, on_fault_error, on_complete */
};

/* Fill cfg with the defaults above. */
void pagein_config_init(struct pagein_config *cfg);

/* ---------------------------------------------------------------------------------------------
 * Spaces and regions
 */

/*
 * Create an empty space with a copy of cfg (NULL = defaults). Opens the userfaultfd(s) and
 * checks the features the front-end needs. Returns 0 and *out, or -EPERM (userfaultfd not
 * permitted; the log says which fix applies), -ENOSYS (a feature the front-end needs is missing:
 * SIGBUS for self, POISON, Linux 6.6+, for handler; the log says which), -EINVAL (bad cfg, or
 * cfg->size not set by pagein_config_init), -ENOMEM.
 */
int pagein_space_new(const struct pagein_config *cfg, struct pagein_space **out);

/*
 * Stop the space if running, unmap its regions and free it. The source is not freed.
 * No thread may touch the space's memory or call into it any more.
 */
void pagein_space_free(struct pagein_space *space);

/*
 * Add a region of guest memory [gpa, gpa+size) backed as asked. size and gpa must be multiples
 * of the backing's page size (4 KiB, or 2 MiB for HUGETLB), size > 0, no overlap with another
 * region, and only before pagein_space_start(). The library maps the memory and returns its host
 * address in *host (valid until pagein_space_free). Returns 0, -EINVAL (with a logged reason),
 * -EBUSY (space started), -ENOSPC (more than PAGEIN_MAX_REGIONS regions), -ENOMEM (e.g. no huge pages
 * reserved), or another -errno from mmap.
 */
int pagein_region_add(struct pagein_space *space, uint64_t gpa, uint64_t size,
		      enum pagein_backing backing, void **host);

/* A mapping the program already made, to serve as a region (pagein_region_adopt). */
struct pagein_region_adopt {
	uint32_t size;               /* sizeof(struct pagein_region_adopt) */
	uint32_t flags;              /* reserved, 0 */
	uint64_t gpa;                /* guest address of the region */
	uint64_t len;                /* bytes, a multiple of the backing's page size */
	enum pagein_backing backing; /* ANON: private anonymous memory; SHMEM / HUGETLB: a
	                              * MAP_SHARED mapping of fd (memfd, or hugetlbfs) */
	void *host;                  /* the mapping's first byte, aligned to the page size */
	int fd;                      /* SHMEM / HUGETLB: the file host maps (pagein keeps a dup);
	                              * ANON: -1 */
	uint64_t fd_offset;          /* offset in fd where host's mapping starts */
};

/*
 * Make memory the program mapped itself a region (a VMM's guest RAM), instead of letting
 * pagein map it: the same rules as pagein_region_add, plus a page-aligned host and, for SHMEM
 * and HUGETLB, the fd of the memfd/hugetlbfs file it maps (pagein maps that file a second time
 * to write pages, then CONTINUEs them). Its pages must not have been touched yet (a page
 * already there keeps its bytes). pagein registers it at start and never unmaps it: after
 * pagein_space_free it is the program's again, holding whatever pages arrived. Returns 0,
 * -EINVAL (logged: alignment, wrong kind of fd, size/flags), -EBUSY, -ENOSPC, -errno of mmap.
 */
int pagein_region_adopt(struct pagein_space *space, const struct pagein_region_adopt *a);

/* Another process's userfaultfd, to be served by this space (pagein_space_adopt_uffd). */
struct pagein_uffd_adopt {
	uint32_t size;  /* sizeof(struct pagein_uffd_adopt) */
	uint32_t flags; /* reserved, 0 */
	int uffd;       /* a userfaultfd the peer created, set up (UFFDIO_API) and registered its
	                 * memory with for missing faults; pagein keeps a dup (made non-blocking) */
	int pidfd;      /* the peer's pidfd (pidfd_open), or -1: its exit ends the serving */
};

/*
 * Serve a userfaultfd that another process created and registered (received over SCM_RIGHTS,
 * as a Firecracker-style VMM hands it to its page-fault handler). Call on a new HANDLER space
 * with readers = 1 and uffds = 1 (one reader sees a REMOVE before the faults after it), before
 * regions: then describe the peer's memory with pagein_region_adopt
 * (host = the address in the peer, ANON backing, fd -1), set the source and start. Faults are
 * served through the uffd (COPY, ZEROPAGE; REMOVE events as for local memory); the accessors,
 * freeze/thaw and KVM attach answer -EOPNOTSUPP/-EINVAL (the memory is not ours to touch). When
 * the peer exits, pagein_wait_complete returns -ESRCH; free the space then. Returns 0, -EINVAL,
 * -EBUSY (regions added or started), -EBADF (not a userfaultfd), -errno.
 */
int pagein_space_adopt_uffd(struct pagein_space *space, const struct pagein_uffd_adopt *u);

/*
 * Use src for missing pages. The space does not own src; it must outlive the space's use.
 * Returns -EINVAL when the source does not hold a region (e.g. a snapshot of a smaller VM: the
 * log names the region), -EBUSY after start.
 */
int pagein_space_set_source(struct pagein_space *space, struct pagein_source *src);

/*
 * Register the regions with userfaultfd and start the front-end (handler threads, or the
 * SIGBUS handler). From now on a first touch of a missing page fetches it. Returns 0, -EINVAL
 * (no region or no source), -EPERM, or -errno from the kernel.
 */
int pagein_space_start(struct pagein_space *space);

/*
 * Stop the front-end and the background fill. Threads blocked in a fault are released with
 * SIGBUS (their page is not installed with wrong bytes). Idempotent.
 */
void pagein_space_stop(struct pagein_space *space);

/* Translate a guest address to the host address of its region's memory, or NULL. */
void *pagein_host_addr(struct pagein_space *space, uint64_t gpa);

/* Return the gpa of a host address inside a region; -EINVAL if it is not in one. */
int pagein_gpa_of(struct pagein_space *space, const void *host, uint64_t *gpa);

/* The i-th userfaultfd of the space (for VMMs and tests that watch it), or -ENOENT. */
int pagein_space_uffd(struct pagein_space *space, unsigned i);

/* ---------------------------------------------------------------------------------------------
 * Making pages present
 */

/*
 * Make [gpa, gpa+len) present: fetch and install what is missing, wait for what others are
 * fetching. The range may span regions. For the KVM exit path and prefetch. Returns 0,
 * -EFAULT (a page is frozen; *bad_gpa, if not NULL, gets its address), -EINVAL (outside every
 * region), -ETIMEDOUT (the source did not answer in time), -EIO (the source failed for a page:
 * it stays failed), -ESHUTDOWN (the space is stopping), -ENOENT (the program unmapped that
 * memory), -EDEADLK (called from a signal handler on the thread that is fetching that page).
 * Any thread.
 */
int pagein_resolve(struct pagein_space *space, uint64_t gpa, uint64_t len, uint64_t *bad_gpa);

/* Accessors: choke points for every access that does not come from a faulting thread (device
 * emulation, DMA, syscalls on guest memory in SELF mode). They make the whole range present
 * first (waiting for pages in flight), then copy, so a failing range copies nothing. A range may
 * span pages and regions. Return 0 or the same errors as pagein_resolve; frozen pages fail fast
 * with -EFAULT. Any thread. */
int pagein_read(struct pagein_space *space, uint64_t gpa, void *buf, size_t len);
int pagein_write(struct pagein_space *space, uint64_t gpa, const void *buf, size_t len);

/*
 * Make [gpa, gpa+len) present and return its host address in *host; the range must lie in one
 * region. While pinned, pagein_freeze() of the region fails -EBUSY; pinning a range with a
 * frozen page fails -EFAULT. Pair each successful pin with one pagein_unpin() (an unpin with no
 * pin outstanding is ignored).
 */
int pagein_pin(struct pagein_space *space, uint64_t gpa, uint64_t len, void **host);
void pagein_unpin(struct pagein_space *space, uint64_t gpa, uint64_t len);

/*
 * Freeze [gpa, gpa+len): accessors fail fast with -EFAULT, faults follow the frozen policy,
 * background fill skips the pages. Thaw lifts it and releases waiting faulters. Page-aligned
 * ranges inside regions; -EINVAL otherwise, -EBUSY if a pinned region is touched (freeze).
 */
int pagein_freeze(struct pagein_space *space, uint64_t gpa, uint64_t len);
int pagein_thaw(struct pagein_space *space, uint64_t gpa, uint64_t len);

/*
 * Install bytes the caller already has (a push stream, a prefetch) for the pages of
 * [gpa, gpa+len) that are missing and unclaimed; pages present, being fetched (their fetch brings
 * them) or frozen are left alone. Bit i of zero_mask[i / 64] (NULL: none) says page i is all zero
 * (its bytes in data are not read). Whole pages inside one region. Returns the number of pages
 * installed, -EINVAL, -ESHUTDOWN, or the -errno of an install. Any thread.
 */
int pagein_supply(struct pagein_space *space, uint64_t gpa, const void *data, uint64_t len,
		  const uint64_t *zero_mask);

/* ---------------------------------------------------------------------------------------------
 * Background fill
 */

/* Start a thread that installs every still-missing page, yielding to faults and jumping to the
 * pages after the most recent fault. Returns 0, -EALREADY, -EINVAL (not started). */
int pagein_fill_start(struct pagein_space *space);

/* Stop the fill thread (pages stay as they are). Idempotent. */
void pagein_fill_stop(struct pagein_space *space);

/* Wait until every page is present (pages the program unmapped count as done). timeout_ms < 0
 * waits forever. Returns 0, -ETIMEDOUT, -EIO if a page failed for good, or -ESHUTDOWN when the
 * space was stopped first. */
int pagein_wait_complete(struct pagein_space *space, int timeout_ms);

/* Pages present and pages in total, over all regions. */
void pagein_residency(struct pagein_space *space, uint64_t *present, uint64_t *total);

/* ---------------------------------------------------------------------------------------------
 * Sources
 */

/* Bits a fetch may set in *zero_mask: page i of the fetched range is all zero (dst not written
 * for it), so it is installed as a zero page without copying. */

/*
 * A source's operations. fetch fills dst with len bytes of the image at guest address gpa
 * (len is a whole number of pages, at most 64 of them, in one region) before deadline_ns
 * (CLOCK_MONOTONIC; 0 = none) and returns 0 or -errno (-ETIMEDOUT past the deadline). It may set
 * bit i of *zero_mask for page i (of page_size) that is all zero instead of writing it. It is
 * called from many threads at once and, in SELF mode, from a SIGBUS handler: it must be
 * async-signal-safe there (no malloc, no locks, no stdio). destroy frees ctx.
 */
struct pagein_source_ops {
	int (*fetch)(void *ctx, uint64_t gpa, void *dst, uint64_t len, uint64_t page_size,
		     uint64_t *zero_mask, uint64_t deadline_ns);
	/* optional: a pointer to the bytes of [gpa, gpa+len) that stays valid for the source's
	 * life, or NULL; lets the engine install straight from it without a copy */
	const void *(*direct)(void *ctx, uint64_t gpa, uint64_t len);
	void (*destroy)(void *ctx);
	/* optional: whether the source holds every byte of [gpa, gpa+len); pagein_space_set_source
	 * asks it for each region, so a short or mismatched image is refused up front */
	bool (*covers)(void *ctx, uint64_t gpa, uint64_t len);
	/* optional: whether a wait on this source's pages may outlast the space's timeout_ms.
	 * Returns 0 (no: waits time out as usual), UINT64_MAX (the source is paused, e.g. a
	 * network source whose link is down: a wait's time-out does not run; the page comes, or
	 * fails, when the pause ends), or the CLOCK_MONOTONIC ns at which the source last resumed
	 * (a wait's time-out starts again from there). Async-signal-safe. */
	uint64_t (*hold)(void *ctx);
	/* room for operations added later (the struct's size never changes): leave NULL */
	void (*reserved[3])(void);
};

/* Wrap ops + ctx as a source. Returns 0 and *out or -ENOMEM. */
int pagein_source_new(const struct pagein_source_ops *ops, void *ctx, struct pagein_source **out);

/* Free a source (calls ops->destroy). */
void pagein_source_free(struct pagein_source *src);

/* A source over a caller-owned buffer holding the image of guest addresses [base, base+len).
 * The buffer must outlive the source. */
int pagein_source_mem_new(const void *buf, uint64_t base, uint64_t len, struct pagein_source **out);

/*
 * A source over a pagein snapshot file (format in docs/snapshot.md). Checks the header and that
 * the file holds every byte the header promises. Holes and all-zero pages are installed as zero
 * pages. Returns 0, -EINVAL (not a pagein snapshot, or a corrupt header), -ENODATA (truncated:
 * shorter than its header says), or the -errno of open.
 */
int pagein_source_file_new(const char *path, struct pagein_source **out);

/* ---------------------------------------------------------------------------------------------
 * Snapshot files
 */

/* One region of a snapshot. */
struct pagein_region_desc {
	uint64_t gpa;     /* guest address */
	uint64_t size;    /* bytes, a multiple of page_size */
	uint32_t backing; /* enum pagein_backing the region was saved from */
	uint32_t flags;   /* reserved for later use (the size never changes), 0 */
	uint64_t digest;  /* XXH3-64 of the region's bytes (filled in by save) */
};

/*
 * Write a snapshot of n regions to path: regs[i] describes region i and data[i] points to its
 * bytes. All-zero pages become holes. Fills regs[i].digest. Returns 0 or -errno.
 */
int pagein_snapshot_save(const char *path, struct pagein_region_desc *regs,
			 const void *const *data, unsigned n);

/* Read the region table of a snapshot: up to max descs into regs; returns the region count or
 * -errno (-EINVAL: not a snapshot or a corrupt header; -ENODATA: truncated). */
int pagein_snapshot_regions(const char *path, struct pagein_region_desc *regs, unsigned max);

/* XXH3-64 digest of a buffer (the digest snapshots and the protocol use). */
uint64_t pagein_digest(const void *buf, uint64_t len);

/* The network API (page server, network source) is in pagein-net.h. */

/* ---------------------------------------------------------------------------------------------
 * Statistics
 */

#define PAGEIN_HIST_BUCKETS 40 /* bucket b counts latencies in [2^b, 2^(b+1)) ns */

struct pagein_stats {
	uint64_t faults_self;      /* faults served in a SIGBUS handler */
	uint64_t faults_handler;   /* fault messages served by handler threads */
	uint64_t faults_kvm;       /* ranges resolved for KVM exits (pagein_kvm_*) */
	uint64_t accessor_calls;   /* pagein_read/write/pin/resolve calls */
	uint64_t pages_demand;     /* pages installed for the faulting page itself */
	uint64_t pages_around;     /* pages installed by fault-around */
	uint64_t pages_fill;       /* pages installed by the background fill */
	uint64_t pages_accessor;   /* pages installed for accessors */
	uint64_t pages_zero;       /* of all those, installed as zero pages */
	uint64_t fetches;          /* source fetch calls */
	uint64_t fetch_errors;     /* source fetches that failed */
	uint64_t races_lost;       /* faults that found their page claimed or present */
	uint64_t eexist;           /* installs that met EEXIST (woken explicitly) */
	uint64_t eagain;           /* installs retried after EAGAIN */
	uint64_t frozen_faults;    /* faults on frozen pages */
	uint64_t rezero;           /* present pages faulted again after a discard (re-mapped) */
	uint64_t events_remove;    /* REMOVE events read */
	uint64_t events_unmap;     /* UNMAP events read */
	uint64_t blocked_ns;       /* time threads waited for pages others were fetching */
	uint64_t fault_ns;         /* total time spent serving faults */
	uint64_t lat_hist[PAGEIN_HIST_BUCKETS]; /* fault service latency histogram */
	uint64_t reserved[8];      /* room for counters added later (the size never changes); 0 */
};

/* Copy the space's counters (summed over threads) into *st. Any thread. */
void pagein_stats_get(struct pagein_space *space, struct pagein_stats *st);

/* Time one thread was blocked on faults (pagein_blocktime_get), like QEMU's postcopy-blocktime
 * per vCPU: SELF front-end, from the thread's fault to its page; HANDLER front-end, the time a
 * handler thread served the thread's fault (the kernel's queueing before it is not seen). */
struct pagein_thread_blocked {
	int32_t tid;          /* the thread (gettid); 0: handler faults whose thread the kernel did
	                       * not name (no UFFD_FEATURE_THREAD_ID) */
	uint32_t faults;      /* faults it took */
	uint64_t blocked_ns;  /* time it was blocked on them */
};

/* The faulting threads seen so far into out[0..max). Returns how many there are (possibly more
 * than max: only max are written; at most 256 threads are kept). Any thread. */
int pagein_blocktime_get(struct pagein_space *space, struct pagein_thread_blocked *out,
			 unsigned max);

/* Latency in ns at quantile q (0..1) of the histogram (the upper edge of its bucket). */
uint64_t pagein_stats_quantile(const struct pagein_stats *st, double q);

/* A static string naming a front-end / backing ("self", "handler" / "anon", "shmem", "hugetlb").*/
const char *pagein_frontend_name(enum pagein_frontend fe);
const char *pagein_backing_name(enum pagein_backing b);

/* Page size of a backing in bytes. */
uint64_t pagein_backing_page_size(enum pagein_backing b);

/* KVM: include/pagein-kvm.h (lib/kvm.c), for VMMs; this header does not include it. */

#ifdef __cplusplus
}
#endif

#endif /* PAGEIN_H */
