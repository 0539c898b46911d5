/* SPDX-License-Identifier: MIT */
/*
 * internal.h - what the files of lib/ share: the space and region structures, sharded
 * statistics, and the entry points of uffd.c (ioctls), engine.c (the page-state machine over
 * pagestate.h), the front-ends and the test hooks. Internal names use the pi_ prefix; nothing
 * here is exported from libpagein.so (the version script lists pagein.h alone).
 */
#ifndef PAGEIN_INTERNAL_H
#define PAGEIN_INTERNAL_H

#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/resource.h>
#include <unistd.h>

#include "pagein.h"

/* Everything declared from here on is internal: hidden, so that a program or library that links
 * libpagein.a does not export (or collide with) the library's pi_ names. */
#pragma GCC visibility push(hidden)

#include "pagestate.h"

/* PAGEIN_MAX_REGIONS (pagein.h): fixed, so the SIGBUS handler can walk them without locks */
#define PAGEIN_MAX_UFFDS 64     /* userfaultfds one space may stripe its memory over */
#define PAGEIN_MAX_READERS 256  /* handler threads one space may run */
#define PAGEIN_STAT_SHARDS 16   /* statistics shards (power of two) */
#define PAGEIN_BOUNCE_SLOTS 32  /* bounce buffers for fetches that cannot land in place */
#define PAGEIN_INSTALL_MAX (PAGEIN_AROUND_MAX * 4096ull) /* largest 4 KiB-page install */
#define PAGEIN_RECENT_SLOTS 16  /* sequential-fault detector slots */

/*
 * Threads that stream bulk pages (the server's bulk senders, the destination's bulk receivers)
 * run at this nice value: when CPUs are short, the threads on a fault's path (the faulting
 * thread, the urgent receiver, the request answerer) win the scheduler, so the stream yields to
 * faults there too. Raising one's own nice value needs no privilege.
 */
#define PI_BULK_NICE 10
static inline void pi_bulk_thread_nice(void)
{
	setpriority(PRIO_PROCESS, (id_t)gettid(), PI_BULK_NICE);
}

/* One guest memory region and the state of its pages. */
struct pi_region {
	uint64_t gpa;            /* first guest address */
	uint64_t size;           /* bytes */
	uint64_t page_size;      /* 4 KiB or 2 MiB */
	unsigned page_shift;     /* log2(page_size) */
	uint64_t npages;         /* size / page_size */
	enum pagein_backing backing;
	uint8_t *host;           /* the mapping threads touch (registered with userfaultfd) */
	uint8_t *alias;          /* second mapping of the memfd (NULL for anon): the library writes here */
	int memfd;               /* -1 for anon */
	uint64_t memfd_off;      /* file offset of the region's first byte (0 unless adopted) */
	uint64_t stripe_pages;   /* pages per userfaultfd stripe */
	unsigned uffd_base;      /* index in space->uffds of stripe 0 */
	pi_bits_t *present;      /* installed and visible; set with release order after the install */
	pi_bits_t *claimed;      /* a fetch was started; never cleared once the page is present */
	pi_bits_t *frozen;       /* accessors fail fast, faults follow the frozen policy */
	pi_bits_t *failed;       /* fetch failed for good: accessors -EIO, faults get SIGBUS */
	pi_bits_t *parked;       /* a FROZEN_FAIL fault poisoned it: thaw removes the poison */
	pi_bits_t *unmapped;     /* the program unmapped it (EVENT_UNMAP, or an install met
	                          * ENOENT): never installed, accessed or unmapped by us again */
	pthread_mutex_t pin_lock; /* makes each pin/unpin/freeze/thaw (and a FROZEN_FAIL fault's
	                           * park) one step: never taken on the SIGBUS path */
	int pins;                /* outstanding pagein_pin()s; under pin_lock */
	bool adopted;            /* host is the program's own mapping: never unmapped by us */
};

/* One counter shard, padded to its own cache lines so threads do not share lines. */
struct pi_shard {
	_Atomic uint64_t c[sizeof(struct pagein_stats) / sizeof(uint64_t)];
} __attribute__((aligned(64)));

/* Index of a counter in struct pagein_stats, for pi_stat_add(). */
#define PI_STAT(field) (offsetof(struct pagein_stats, field) / sizeof(uint64_t))

/* Why a page is being resolved: selects counters and what a lost race does. */
enum pi_why {
	PI_WHY_SELF,    /* SIGBUS handler of the faulting thread */
	PI_WHY_HANDLER, /* handler thread serving a fault message */
	PI_WHY_ACCESS,  /* accessor / pagein_resolve / pin */
	PI_WHY_FILL,    /* background fill */
	PI_WHY_KVM,     /* a KVM exit-on-missing exit, on the vCPU thread (lib/kvm.c) */
};

/* KVM state of a space (lib/kvm.c): the memslots it attached and per-vCPU counters. */
#define PI_KVM_MAX_VCPUS 64 /* = PAGEIN_KVM_MAX_VCPUS */
struct pi_kvm_vcpu {
	_Atomic int tid;                 /* the bound vCPU thread, 0 if none */
	_Atomic uint64_t exits;          /* exit-on-missing exits resolved on it */
	_Atomic uint64_t exit_pages;     /* pages made present or mapped for them */
	_Atomic uint64_t handler_faults; /* its userfaultfd faults served by handler threads */
	_Atomic uint64_t other_exits;    /* other annotated memory faults resolved */
};
struct pi_kvm {
	_Atomic bool attached;          /* pagein_kvm_attach succeeded (and no detach since) */
	int vm_fd;                      /* the attached VM */
	uint32_t first_slot;            /* its first memslot */
	bool region2;                   /* KVM_SET_USER_MEMORY_REGION2 is used */
	_Atomic bool exit_on_missing;   /* the memslots have KVM_MEM_EXIT_ON_MISSING */
	_Atomic unsigned nbound;        /* highest bound vCPU index + 1 */
	struct pi_kvm_vcpu vcpu[PI_KVM_MAX_VCPUS];
};

struct pi_reader; /* handler.c */

/* Blocked time of one faulting thread (lib/blocktime.c); key 0 = a free slot. */
#define PI_BT_SLOTS 256
struct pi_bt_slot {
	_Atomic uint32_t key;  /* the thread id + 1 (0 + 1: handler faults of unknown threads) */
	_Atomic uint32_t faults;
	_Atomic uint64_t ns;   /* time it was blocked on faults */
};

struct pagein_space {
	struct pagein_config cfg;
	struct pi_region regions[PAGEIN_MAX_REGIONS];
	_Atomic unsigned nregions;
	struct pagein_source *src;
	uint64_t features;              /* UFFD_FEATURE_* granted */
	int uffds[PAGEIN_MAX_UFFDS];
	unsigned nuffds;
	bool user_mode_only;            /* uffds opened with UFFD_USER_MODE_ONLY */
	_Atomic bool started;
	_Atomic bool stopping;
	_Atomic int inflight;           /* fetch+install sequences in progress */
	int stop_efd;                   /* eventfd that tells readers to exit */
	struct pi_reader *readers;      /* handler threads (and the SELF event thread) */
	unsigned nreaders;
	int self_slot;                  /* index in the SIGBUS registry, -1 when not there */
	uint64_t total_pages;
	_Atomic uint64_t present_pages;
	_Atomic uint64_t failed_pages;
	_Atomic uint64_t gone_pages;    /* missing pages the program unmapped: never coming */
	_Atomic uint32_t progress;      /* futex word: bumped on completion, failure and thaw */
	_Atomic bool completed;         /* every page is present (on_complete is due) */
	pthread_t notify_thread;        /* calls on_complete, outside any signal handler */
	bool notify_running;            /* notify_thread was created and is not joined yet */
	_Atomic uint64_t fill_hint;     /* (region << 56 | page) just after the latest fault */
	_Atomic int faulting;           /* faults being served now: the fill yields to them */
	pthread_t fill_thread;
	_Atomic bool fill_running;
	_Atomic bool fill_stop;
	_Atomic uint64_t recent[PAGEIN_RECENT_SLOTS]; /* sequential-fault detector */
	uint8_t *bounce;                /* PAGEIN_BOUNCE_SLOTS x PAGEIN_INSTALL_MAX bytes */
	_Atomic uint64_t bounce_free;   /* bit i set: slot i is free */
	_Atomic uint32_t bounce_seq;    /* futex word for slot waiters */
	struct pi_bucket wait[PAGEIN_WAIT_BUCKETS];
	struct pi_shard shards[PAGEIN_STAT_SHARDS];
	_Atomic uint64_t last_err_gpa;  /* latest fault error, logged later from a normal thread */
	_Atomic int last_err;
	struct pi_kvm kvm;              /* lib/kvm.c; zeroed with the space */
	struct pi_ws_rec *_Atomic ws_rec; /* working-set recorder (wsfile.c), NULL when off */
	bool remote;                    /* the memory and its userfaultfd are another process's
	                                 * (pagein_space_adopt_uffd): install by ioctl only */
	int peer_pidfd;                 /* remote: the peer's pidfd (its exit), or -1 */
	_Atomic bool peer_gone;         /* remote: the peer exited */
	struct pi_bt_slot blocktime[PI_BT_SLOTS]; /* per faulting thread (blocktime.c) */
	_Atomic uint64_t blocktime_lost; /* faults of threads past PI_BT_SLOTS, not counted */
};

/* Add ns of blocked time to thread tid (0: unknown). Async-signal-safe (a SIGBUS handler). */
void pi_blocktime_add(struct pagein_space *s, uint32_t tid, uint64_t ns);

/* The working-set recorder: pages made present for a touch, in order. Appending is one atomic
 * add and a store, so it is allowed on the SIGBUS path; pages past cap are dropped (counted). */
struct pi_ws_rec {
	_Atomic uint64_t n;  /* appends so far (may exceed cap) */
	_Atomic uint64_t cap; /* appends kept: room in gpa[], lowered by pagein_ws_record_stop */
	_Atomic uint64_t gpa[]; /* page addresses, first touch first; UINT64_MAX: not written yet */
};

static inline void pi_ws_note(struct pagein_space *s, uint64_t gpa, uint64_t n, uint64_t ps)
{
	struct pi_ws_rec *rec = atomic_load_explicit(&s->ws_rec, memory_order_acquire);
	uint64_t k, i;

	if (!rec)
		return;
	k = atomic_fetch_add_explicit(&rec->n, n, memory_order_relaxed);
	for (i = 0; i < n && k + i < atomic_load_explicit(&rec->cap, memory_order_relaxed); i++)
		atomic_store_explicit(&rec->gpa[k + i], gpa + i * ps, memory_order_relaxed);
}

struct pagein_source {
	struct pagein_source_ops ops;
	void *ctx;
};

/*
 * Fault injection for the tests (they include this header); the library never sets these.
 * hide_features: UFFD_FEATURE_* bits treated as not offered by the kernel (e.g. POISON, to act
 * like Linux before 6.6). inject: the one internal call that fails, with -inject_err.
 */
enum pi_inject {
	PI_INJECT_NONE = 0,
	PI_INJECT_READER_THREAD, /* pthread_create of the last reader thread of a start */
	PI_INJECT_EPOLL,         /* epoll_create1 for a reader */
};
struct pi_test_hooks {
	uint64_t hide_features;
	enum pi_inject inject;
	int inject_err;          /* positive errno */
	unsigned race_us;        /* sleep this long between a check and its action in pin,
	                          * unpin, freeze and frozen faults, to widen their races */
};
extern struct pi_test_hooks pi_hooks;

static inline void pi_hook_race(void)
{
	if (pi_hooks.race_us)
		usleep(pi_hooks.race_us);
}

/* ---- uffd.c: every userfaultfd ioctl and the kernel's race rules ---- */
enum pi_uffd_op {
	PI_UFFD_COPY,     /* UFFDIO_COPY: bytes into private anonymous memory */
	PI_UFFD_ZERO,     /* UFFDIO_ZEROPAGE */
	PI_UFFD_CONTINUE, /* UFFDIO_CONTINUE: map what the memfd's page cache holds */
	PI_UFFD_POISON,   /* UFFDIO_POISON: a touch gets SIGBUS */
};
/* A userfaultfd: /dev/userfaultfd first, then the syscall. Returns the fd or -errno. */
int pi_uffd_open(int flags);
/* UFFDIO_API asking for want; *offered gets what the kernel knows (not what was enabled). */
int pi_uffd_api(int fd, uint64_t want, uint64_t *offered);
/* Register [start, start+len) for MISSING faults (and MINOR for memfds). -ENOSYS when the
 * install ioctl the backing needs (COPY, or CONTINUE) is not offered there. */
int pi_uffd_register(int fd, uintptr_t start, uint64_t len, bool minor);
int pi_uffd_unregister(int fd, uintptr_t start, uint64_t len);
/* Wake the threads the kernel holds on [start, start+len). */
void pi_uffd_wake(int fd, uintptr_t start, uint64_t len);
/*
 * Install len bytes at dst (src for COPY, else NULL) with the race rules: partial progress goes
 * on; EEXIST wakes that page and skips it (counted in *existed, if not NULL); EAGAIN reads the
 * queued event (on a reader thread of fd) or yields, until deadline (-ETIMEDOUT); ENOENT/ESRCH
 * return -ENOENT. Async-signal-safe.
 */
int pi_uffd_install(struct pagein_space *s, int fd, enum pi_uffd_op op, uintptr_t dst,
		    const void *src, uint64_t len, uint64_t page_size, uint64_t deadline,
		    uint64_t *existed);

/* Format a message into err[errlen] (when err is non-NULL) and return ret: the error helper of
 * the parsers and checkers that report to a caller's buffer instead of a log (fcsock, rawsrc,
 * wsfile). */
int pi_say(char *err, size_t errlen, int ret, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

/* ---- util.c ---- */
void pi_log(struct pagein_space *s, int level, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
uint64_t pi_now_ns(void);
int pi_futex_wait(_Atomic uint32_t *word, uint32_t val, uint64_t deadline_ns);
void pi_futex_wake(_Atomic uint32_t *word);
bool pi_is_zero(const void *p, uint64_t len);

/* ---- stats.c ---- */
void pi_stat_add(struct pagein_space *s, unsigned idx, uint64_t v);
void pi_stat_latency(struct pagein_space *s, uint64_t ns);

/* ---- page state (pagestate.h) of a space's region ---- */
static inline struct pi_bucket *pi_bucket_of(struct pagein_space *s, struct pi_region *r,
					     uint64_t idx)
{
	return pi_bucket_for(s->wait, (uint64_t)(r - s->regions), idx);
}

static inline int pi_uffd_of(struct pagein_space *s, struct pi_region *r, uint64_t idx)
{
	return s->uffds[r->uffd_base + idx / r->stripe_pages];
}

/* ---- space.c ---- */
struct pi_region *pi_region_find(struct pagein_space *s, uint64_t gpa);
/* A remote space's peer discarded host range [start, end) (balloon): its missing whole pages
 * become present zeros (engine.c). */
void pi_mark_discarded(struct pagein_space *s, uintptr_t start, uintptr_t end);
struct pi_region *pi_region_of_host(struct pagein_space *s, uintptr_t addr);

/* ---- engine.c ---- */
/* A wait on the source timed out: go on while the source is paused (engine.c). */
bool pi_src_held(struct pagein_space *s, uint64_t *deadline);
/*
 * Serve a fault (SELF or HANDLER) on page idx of r. Returns 0 when the faulting access may be
 * retried, or -errno when it must fail (the caller then delivers SIGBUS: SELF forwards the
 * signal, HANDLER poisons the page, which wakes the faulter with SIGBUS).
 */
int pi_fault(struct pagein_space *s, struct pi_region *r, uint64_t idx, enum pi_why why);
/* Make pages [idx, idx+n) of r present for an accessor/fill. *bad gets the failing page. */
int pi_make_present(struct pagein_space *s, struct pi_region *r, uint64_t idx, uint64_t n,
			enum pi_why why, uint64_t *bad);
/* Fill: claim up to max missing pages from idx; fetch and install them. Returns pages done. */
int pi_fill_run(struct pagein_space *s, struct pi_region *r, uint64_t idx, uint64_t max);
/* Poison [idx, idx+n) of r so that touching it gets SIGBUS; wakes faulters. */
int pi_poison(struct pagein_space *s, struct pi_region *r, uint64_t idx, uint64_t n);
/* Wake everybody waiting on any page (thaw, stop, failure). */
void pi_wake_all(struct pagein_space *s);
/* Wake who waits on [idx, idx+n) of r: the wait table, and (once started) the kernel's queue. */
void pi_wake_pages(struct pagein_space *s, struct pi_region *r, uint64_t idx, uint64_t n);
/* Poison page idx for a handler-mode faulter; if that fails, wake it anyway (records why). */
void pi_poison_or_wake(struct pagein_space *s, struct pi_region *r, uint64_t idx);
/* Mark [idx, idx+n) of r unmapped by the program; count the missing ones gone. */
void pi_mark_unmapped(struct pagein_space *s, struct pi_region *r, uint64_t idx, uint64_t n,
		      bool caller_claimed);
/* Signal completion (once) when every page is present or gone. */
void pi_maybe_complete(struct pagein_space *s);

/* ---- kvm.c ---- */
/* A handler thread serves a fault of thread ptid (0: unknown): count it for its vCPU, if bound. */
void pi_kvm_note_fault(struct pagein_space *s, uint32_t ptid);

/* ---- selfresolve.c ---- */
int pi_self_attach(struct pagein_space *s);
void pi_self_detach(struct pagein_space *s);

/* ---- handler.c ---- */
int pi_readers_start(struct pagein_space *s);
void pi_readers_stop(struct pagein_space *s);
/* Called by an install that met EAGAIN on uffd: on a reader thread of uffd, read the queued
 * messages (events handled, faults kept for later); returns false on any other thread. */
bool pi_reader_read_events(struct pagein_space *s, int uffd);

#pragma GCC visibility pop

#endif /* PAGEIN_INTERNAL_H */
