// SPDX-License-Identifier: MIT
/*
 * cmd-bench.c - `pagein bench`, the seeds' experiment in the shape of demand_paging_test:
 * vCPU threads each touch one byte per page of their slice, timed per touch. Every run measures,
 * in one process, the kernel floor (first touch of plain anonymous memory), the bare ioctl loop
 * of each front-end without the library, then the library; a table, JSON lines, headline ratios.
 * --kvm runs real vCPUs instead (tools/kvmvm.c) on a pagein space against populated memory.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <linux/userfaultfd.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "kvmvm.h"
#include "pagein.h"
#include "pagein-kvm.h"
#include "tools.h"

#define BENCH_PAGE ((uint64_t)4096)    /* the unit a vCPU touches and every row counts */
#define BENCH_HUGE ((uint64_t)2 << 20) /* hugetlb page size */
#define BENCH_MAX_VCPUS 1024u     /* sanity bound on -v */
#define BENCH_MAX_ROWS 256u       /* results kept for speed-up and ratio look-ups */
#define BENCH_MAX_REPEAT 15u      /* bound on -n */
#define AROUND_AUTO_ARG 0u        /* --around auto, stored as 0 in bench_opts.around */
#define EMULATED_NOTE "(timings inside the emulated guest say nothing about real performance)"

/* What one row measures. */
enum bench_kind {
	KIND_FLOOR,        /* first touch of plain anonymous memory, no userfaultfd */
	KIND_BARE_SELF,    /* SIGBUS handler doing one install per fault, no library */
	KIND_BARE_HANDLER, /* one reader thread: poll + read + install, no library */
	KIND_LIB,          /* libpagein with the configured front-end */
	KIND_KVM_PLAIN,    /* --kvm: the guest on populated memory of the backing, no pagein */
	KIND_KVM_HANDLER,  /* --kvm: the guest on a pagein HANDLER space, vCPU faults through the
	                    * handler threads (pagein_kvm_attach_flags(PAGEIN_KVM_ATTACH_NO_EXIT)) */
	KIND_KVM_EXIT,     /* --kvm: the same space with exit-on-missing: vCPU faults are exits
	                    * resolved on the vCPU thread (needs pagein's KVM patch) */
};

/* Command-line options. */
struct bench_opts {
	unsigned vcpus;                 /* -v: vCPU threads */
	uint64_t per_vcpu;              /* -b: bytes each vCPU touches */
	enum pagein_frontend frontend;  /* -f: library front-end (single runs) */
	unsigned readers;               /* -r: handler reader threads, 0 = one per vCPU */
	unsigned uffds;                 /* -u: userfaultfds the handler memory is striped over,
	                                 * 0 = one per vCPU */
	enum pagein_backing backing;    /* -s: what backs the guest memory */
	unsigned delay_us;              /* -d: injected delay per source fetch */
	bool spin;                      /* --spin: busy-wait the delay instead of sleeping */
	bool rand;                      /* -a rand: random page order per vCPU */
	bool overlap;                   /* -o: every vCPU touches the same memory */
	unsigned around;                /* --around: pages per install, AROUND_AUTO_ARG = auto */
	bool fill;                      /* --fill: background fill during the run */
	bool json;                      /* --json: JSON lines on stdout, table on stderr */
	bool matrix;                    /* --matrix: 1,2,4,8 vCPUs x both front-ends */
	bool baseline;                  /* --baseline: floor and bare rows only, no library */
	uint64_t restore;               /* --restore: bytes to restore, 0 = not asked */
	unsigned repeat;                /* -n: runs per row, the median (by time) is kept */
	unsigned timeout_s;             /* --timeout: longest one run may take */
	uint64_t seed;                  /* --seed: image pattern and random order */
	bool kvm;                       /* --kvm: real vCPUs on /dev/kvm (tools/kvmvm.c) */
	bool frontend_given;            /* -f was on the command line (--kvm refuses self) */
};

/* One configuration (one row). */
struct bench_case {
	enum bench_kind kind;
	enum pagein_frontend frontend; /* KIND_LIB only */
	enum pagein_backing backing;   /* floor rows are always plain anonymous memory */
	unsigned vcpus;
	unsigned readers;              /* KIND_LIB handler only, else 0 */
	unsigned uffds;                /* KIND_LIB handler only, else 0 */
	unsigned around;               /* pages per install; 0 = auto */
	bool fill;                     /* background fill on */
	bool restore;                  /* part of the --restore comparison */
	uint64_t per_vcpu;             /* bytes each vCPU touches */
};

/* What one row measured. */
struct bench_result {
	struct bench_case c;
	uint64_t pages;             /* touches in total (one per 4 KiB page per vCPU) */
	uint64_t faults;            /* faults taken: touches (floor), signals/messages (bare),
	                             * library fault counters (lib) */
	double seconds;             /* wall time of the slowest vCPU */
	double pps;                 /* pages / seconds */
	double vcpu_min, vcpu_max;  /* per-vCPU pages/s, slowest and fastest */
	double *vcpu_pps;           /* per-vCPU pages/s, c.vcpus entries */
	double p50_us, p99_us;      /* per-touch latency quantiles */
	double cpu_us;              /* process CPU time of the run, all threads */
	double cpu_us_per_fault;    /* cpu_us / faults */
	uint64_t eexist;            /* installs that met EEXIST (bare rows; lib from stats) */
	bool have_stats;            /* st is valid (lib rows) */
	struct pagein_stats st;     /* the library's counters for the run */
	struct kvm_vcpu_stat *kvs;  /* kvm rows: c.vcpus entries, else NULL */
	bool kvm_stats;             /* kvm rows: KVM's binary statistics were readable */
	uint64_t verified_pages;    /* kvm rows: pages whose every byte was checked */
};

/* What one vCPU of a kvm row did, from the harness and KVM's binary statistics (0 where the
 * kernel has none). */
struct kvm_vcpu_stat {
	uint64_t pages;    /* pages its guest loop wrote */
	uint64_t ns;       /* from its first KVM_RUN to its "done" exit */
	uint64_t pf_taken; /* KVM's pf_taken: guest page faults KVM handled */
	uint64_t pf_fixed; /* KVM's pf_fixed: ... that mapped a page */
	uint64_t exits;    /* KVM's exits: VM exits of this vCPU */
	uint64_t runs;     /* KVM_RUN calls on this vCPU */
	uint64_t eom_exits;      /* pagein: exit-on-missing exits resolved on this vCPU's thread */
	uint64_t handler_faults; /* pagein: its faults served by the handler threads */
};

/* One vCPU thread. */
struct vcpu {
	pthread_t tid;
	pthread_barrier_t *barrier; /* every vCPU and the main thread start together */
	uint8_t *base;              /* the memory the vCPU touches (page index 0) */
	const uint32_t *order;      /* page indexes to touch, in order */
	uint64_t n;                 /* entries in order */
	uint32_t *lat_ns;           /* per-touch latency, n entries, allocated before the start */
	uint64_t t0, t1;            /* CLOCK_MONOTONIC ns at start and end of the touches */
	uint64_t faults;            /* bare-self: SIGBUS handled on this thread */
};

/* Everything the bare loops share with their signal handler and reader thread. */
static struct bare_state {
	int uffd;              /* the bare loop's own userfaultfd */
	uint8_t *base;         /* registered mapping */
	int memfd;             /* memfd backings: the file behind base and alias */
	uint8_t *alias;        /* hugetlb: second mapping written before CONTINUE */
	const uint8_t *img;    /* source image of the whole region */
	uint64_t size;         /* bytes registered */
	uint64_t psize;        /* install granularity: 4 KiB or 2 MiB */
	enum pagein_backing backing; /* decides COPY or page cache + CONTINUE */
	unsigned delay_us;     /* injected delay per install, as the library's source gets it */
	bool spin;             /* busy-wait the delay */
	int stopfd;            /* eventfd that ends the reader thread */
	uint64_t faults;       /* reader thread: messages served */
	uint64_t eexist;       /* reader thread: installs that met EEXIST */
	int err;               /* reader thread: first fatal -errno */
} bare;

static __thread uint64_t bare_self_faults; /* SIGBUS served on the current thread */

/* Results so far, for speed-up and ratio look-ups. */
static struct bench_result rows[BENCH_MAX_ROWS];
static unsigned nrows;

static const uint8_t *image;   /* the source image, shared by every run of the process */
static FILE *tab;              /* where the table goes: stdout, or stderr with --json */
static char running[160];      /* name of the run in progress, for the watchdog */


static uint64_t cpu_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* The byte a vCPU writes at offset 0 of page pg; the image holds the same byte there, so the
 * touched memory still equals the image afterwards. */
static inline uint8_t touch_byte(uint64_t pg)
{
	return (uint8_t)(pg * 131u + 7u);
}


static const char *kind_name(const struct bench_case *c)
{
	switch (c->kind) {
	case KIND_FLOOR: return "floor";
	case KIND_BARE_SELF: return "bare-self";
	case KIND_BARE_HANDLER: return "bare-handler";
	case KIND_KVM_PLAIN: return "kvm-plain";
	case KIND_KVM_HANDLER: return "kvm-handler";
	case KIND_KVM_EXIT: return "kvm-exit";
	case KIND_LIB: break;
	}
	return pagein_frontend_name(c->frontend);
}

static bool is_kvm(const struct bench_case *c)
{
	return c->kind == KIND_KVM_PLAIN || c->kind == KIND_KVM_HANDLER || c->kind == KIND_KVM_EXIT;
}

static const char *backing_name(const struct bench_case *c)
{
	return c->kind == KIND_FLOOR ? "anon" : pagein_backing_name(c->backing);
}

/* The injected fetch delay: sleep (a network wait leaves the CPU to others) or spin. */
static void bench_delay(unsigned us, bool spin)
{
	struct timespec ts;
	uint64_t end;

	if (!us)
		return;
	if (spin) {
		end = now_ns() + us * 1000ull;
		while (now_ns() < end)
			;
		return;
	}
	ts.tv_sec = us / 1000000u;
	ts.tv_nsec = (long)(us % 1000000u) * 1000;
	while (clock_nanosleep(CLOCK_MONOTONIC, 0, &ts, &ts) == EINTR)
		;
}

static void watchdog(int sig)
{
	static const char pre[] = "pagein bench: run did not finish in time (hung?): ";
	ssize_t r;

	(void)sig;
	r = write(2, pre, sizeof(pre) - 1);
	r = write(2, running, strlen(running));
	r = write(2, "\n", 1);
	(void)r;
	_exit(1);
}

/* ---------------------------------------------------------------------------------------------
 * The vCPU threads and the timed run shared by every kind
 */

static void *vcpu_main(void *arg)
{
	struct vcpu *vc = arg;
	uint8_t *base = vc->base;
	uint64_t prev, t, i, pg;

	bare_self_faults = 0;
	pthread_barrier_wait(vc->barrier);
	prev = now_ns();
	vc->t0 = prev;
	for (i = 0; i < vc->n; i++) {
		pg = vc->order[i];
		*(volatile uint8_t *)(base + pg * BENCH_PAGE) = touch_byte(pg);
		t = now_ns();
		vc->lat_ns[i] = t - prev > UINT32_MAX ? UINT32_MAX : (uint32_t)(t - prev);
		prev = t;
	}
	vc->t1 = prev;
	vc->faults = bare_self_faults;
	return NULL;
}


/* Per-vCPU work: page orders and latency arrays, made before the start. */
struct vcpu_set {
	unsigned n;
	struct vcpu *v;
	uint32_t *order;  /* n * per entries */
	uint32_t *lat;    /* n * per entries */
	uint64_t per;     /* pages per vCPU */
	pthread_barrier_t barrier;
};

static void vcpus_prepare(struct vcpu_set *s, const struct bench_case *c, bool overlap, bool rnd,
			  uint64_t seed)
{
	uint64_t per = c->per_vcpu / BENCH_PAGE, i, j, k, st;
	uint32_t tmp;
	unsigned t;

	s->n = c->vcpus;
	s->per = per;
	s->v = calloc(s->n, sizeof(*s->v));
	s->order = malloc(s->n * per * sizeof(uint32_t));
	s->lat = malloc(s->n * per * sizeof(uint32_t));
	if (!s->v || !s->order || !s->lat)
		die("out of memory for %u vCPUs x %" PRIu64 " pages", s->n, per);
	for (t = 0; t < s->n; t++) {
		uint32_t *o = s->order + t * per;
		uint64_t first = overlap ? 0 : t * per;

		for (i = 0; i < per; i++)
			o[i] = (uint32_t)(first + i);
		st = seed * 0x9e3779b97f4a7c15ull + t + 1;
		for (i = 0; rnd && i + 1 < per; i++) {
			j = per - 1 - i;
			k = xorshift(&st) % (j + 1);
			tmp = o[j];
			o[j] = o[k];
			o[k] = tmp;
		}
		s->v[t].order = o;
		s->v[t].n = per;
		s->v[t].lat_ns = s->lat + t * per;
		/* touch the latency array now so its first-touch faults are not timed */
		memset(s->v[t].lat_ns, 0, per * sizeof(uint32_t));
	}
}

static void vcpus_release(struct vcpu_set *s)
{
	free(s->v);
	free(s->order);
	free(s->lat);
}

/* Run the vCPUs over base once and fill the timing part of r. With fill_space, the background
 * fill starts just before the vCPUs do (the restore case). */
static void vcpus_run(struct vcpu_set *s, uint8_t *base, struct bench_result *r,
		      struct pagein_space *fill_space)
{
	uint64_t c0, c1, slow = 0;
	unsigned t;
	int ret;

	pthread_barrier_init(&s->barrier, NULL, s->n + 1);
	for (t = 0; t < s->n; t++) {
		s->v[t].barrier = &s->barrier;
		s->v[t].base = base;
		ret = pthread_create(&s->v[t].tid, NULL, vcpu_main, &s->v[t]);
		if (ret)
			die("pthread_create: %s", strerror(ret));
	}
	c0 = cpu_ns();
	if (fill_space) {
		ret = pagein_fill_start(fill_space);
		if (ret)
			die("pagein_fill_start: %s", strerror(-ret));
	}
	pthread_barrier_wait(&s->barrier);
	for (t = 0; t < s->n; t++)
		pthread_join(s->v[t].tid, NULL);
	c1 = cpu_ns();
	pthread_barrier_destroy(&s->barrier);

	r->vcpu_pps = calloc(s->n, sizeof(double));
	if (!r->vcpu_pps)
		die("out of memory");
	r->vcpu_min = 1e300;
	r->vcpu_max = 0;
	for (t = 0; t < s->n; t++) {
		uint64_t d = s->v[t].t1 - s->v[t].t0;
		double pps = d ? (double)s->v[t].n * 1e9 / (double)d : 0;

		r->vcpu_pps[t] = pps;
		if (pps < r->vcpu_min)
			r->vcpu_min = pps;
		if (pps > r->vcpu_max)
			r->vcpu_max = pps;
		if (d > slow)
			slow = d;
	}
	r->pages = s->per * s->n;
	r->seconds = (double)(slow ? slow : 1) / 1e9;
	r->pps = (double)r->pages / r->seconds;
	qsort(s->lat, r->pages, sizeof(uint32_t), cmp_u32);
	r->p50_us = s->lat[(r->pages - 1) / 2] / 1e3;
	r->p99_us = s->lat[(r->pages - 1) * 99 / 100] / 1e3;
	r->cpu_us = (double)(c1 - c0) / 1e3;
}

/* Compare every page of [host, host+size) with the image; die naming the first mismatch. */
static void verify(const struct bench_case *c, const uint8_t *host, uint64_t size)
{
	uint64_t off, i;

	for (off = 0; off < size; off += BENCH_PAGE) {
		if (!memcmp(host + off, image + off, BENCH_PAGE))
			continue;
		for (i = 0; i < BENCH_PAGE && host[off + i] == image[off + i]; i++)
			;
		die("VERIFY FAILED: %s/%s, %u vCPUs: page %" PRIu64 " (gpa 0x%" PRIx64 ") byte %" PRIu64
		    " is 0x%02x, the source has 0x%02x", kind_name(c), backing_name(c), c->vcpus,
		    off / BENCH_PAGE, off + i, i, host[off + i], image[off + i]);
	}
}

static uint64_t region_size(const struct bench_case *c, bool overlap)
{
	return overlap ? c->per_vcpu : c->per_vcpu * c->vcpus;
}

/* ---------------------------------------------------------------------------------------------
 * Kernel floor: plain anonymous memory, no userfaultfd
 */

static void run_floor(const struct bench_opts *o, const struct bench_case *c,
		      struct bench_result *r)
{
	uint64_t size = region_size(c, o->overlap), pg;
	struct vcpu_set s;
	uint8_t *m;

	vcpus_prepare(&s, c, o->overlap, o->rand, o->seed);
	m = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE,
		 -1, 0);
	if (m == MAP_FAILED)
		die("mmap %" PRIu64 " bytes: %s", size, strerror(errno));
	/* the floor is the 4 KiB first-touch fault, whatever the THP policy says */
	madvise(m, size, MADV_NOHUGEPAGE);
	vcpus_run(&s, m, r, NULL);
	r->faults = r->pages;
	for (pg = 0; pg < size / BENCH_PAGE; pg++)
		if (m[pg * BENCH_PAGE] != touch_byte(pg) || m[pg * BENCH_PAGE + 1])
			die("VERIFY FAILED: floor page %" PRIu64 " does not hold what was written", pg);
	munmap(m, size);
	vcpus_release(&s);
}

/* ---------------------------------------------------------------------------------------------
 * Bare loops: the front-ends' kernel work without the library
 */

/* Install the page (of the install granularity) holding offset off; 0 or -errno. */
static int bare_install(uint64_t off)
{
	struct uffdio_continue cont;
	struct uffdio_copy copy;

	off &= ~(bare.psize - 1);
	bench_delay(bare.delay_us, bare.spin);
	if (bare.backing == PAGEIN_BACKING_ANON) {
		copy.dst = (uintptr_t)bare.base + off;
		copy.src = (uintptr_t)bare.img + off;
		copy.len = bare.psize;
		copy.mode = 0;
		copy.copy = 0;
		return ioctl(bare.uffd, UFFDIO_COPY, &copy) ? -errno : 0;
	}
	/* the page cache first, the way the library does it: pwrite for shmem (cheaper than
	 * writing through the alias here), the alias for hugetlbfs (it has no write()) */
	if (bare.backing == PAGEIN_BACKING_SHMEM) {
		if (pwrite(bare.memfd, bare.img + off, bare.psize, (off_t)off) != (ssize_t)bare.psize)
			return -EIO;
	} else {
		memcpy(bare.alias + off, bare.img + off, bare.psize);
	}
	cont.range.start = (uintptr_t)bare.base + off;
	cont.range.len = bare.psize;
	cont.mode = 0;
	cont.mapped = 0;
	return ioctl(bare.uffd, UFFDIO_CONTINUE, &cont) ? -errno : 0;
}

static void bare_sigbus(int sig, siginfo_t *si, void *uctx)
{
	static const char msg[] = "pagein bench: bare-self install failed\n";
	uintptr_t a = (uintptr_t)si->si_addr, b = (uintptr_t)bare.base;
	int saved = errno, ret;
	ssize_t w;

	(void)sig;
	(void)uctx;
	if (a < b || a >= b + bare.size) {
		/* not ours: the default action runs when the access is retried */
		signal(SIGBUS, SIG_DFL);
		return;
	}
	ret = bare_install(a - b);
	if (ret && ret != -EEXIST) {
		w = write(2, msg, sizeof(msg) - 1);
		(void)w;
		_exit(1);
	}
	bare_self_faults++;
	errno = saved;
}

static void *bare_reader(void *arg)
{
	struct pollfd pfd[2] = { { .fd = bare.uffd, .events = POLLIN },
				 { .fd = bare.stopfd, .events = POLLIN } };
	struct uffdio_range wake;
	struct uffd_msg msg;
	uint64_t off;
	ssize_t n;
	int ret;

	(void)arg;
	for (;;) {
		if (poll(pfd, 2, -1) < 0) {
			if (errno == EINTR)
				continue;
			bare.err = -errno;
			return NULL;
		}
		if (pfd[1].revents)
			return NULL;
		n = read(bare.uffd, &msg, sizeof(msg));
		if (n < 0) {
			if (errno == EAGAIN || errno == EINTR)
				continue;
			bare.err = -errno;
			return NULL;
		}
		if (n != sizeof(msg) || msg.event != UFFD_EVENT_PAGEFAULT)
			continue;
		off = msg.arg.pagefault.address - (uintptr_t)bare.base;
		ret = bare_install(off);
		if (ret == -EEXIST) {
			/* installed by someone else: a failed install does not wake the faulter */
			bare.eexist++;
			wake.start = (uintptr_t)bare.base + (off & ~(bare.psize - 1));
			wake.len = bare.psize;
			ioctl(bare.uffd, UFFDIO_WAKE, &wake);
		} else if (ret) {
			bare.err = ret;
			return NULL;
		}
		bare.faults++;
	}
}

static const char *uffd_hint(int err)
{
	if (err == EPERM)
		return " (run as root, or set vm.unprivileged_userfaultfd=1)";
	if (err == ENOSYS)
		return " (the kernel has no userfaultfd: CONFIG_USERFAULTFD)";
	return "";
}

static void run_bare(const struct bench_opts *o, const struct bench_case *c,
		     struct bench_result *r)
{
	bool self = c->kind == KIND_BARE_SELF, anon = c->backing == PAGEIN_BACKING_ANON;
	uint64_t size = region_size(c, o->overlap), features = 0;
	struct sigaction sa, old_sa;
	struct uffdio_register reg;
	struct uffdio_api api;
	struct vcpu_set s;
	pthread_t reader;
	unsigned t;
	int memfd = -1, ret;
	uint64_t one = 1;
	ssize_t w;

	memset(&bare, 0, sizeof(bare));
	bare.size = size;
	bare.img = image;
	bare.backing = c->backing;
	bare.psize = c->backing == PAGEIN_BACKING_HUGETLB ? BENCH_HUGE : BENCH_PAGE;
	bare.delay_us = o->delay_us;
	bare.spin = o->spin;
	bare.stopfd = -1;
	bare.memfd = -1;

	if (anon) {
		bare.base = mmap(NULL, size, PROT_READ | PROT_WRITE,
				 MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
		if (bare.base == MAP_FAILED)
			die("mmap %" PRIu64 " bytes: %s", size, strerror(errno));
		madvise(bare.base, size, MADV_NOHUGEPAGE);
	} else {
		bool huge = c->backing == PAGEIN_BACKING_HUGETLB;

		memfd = memfd_create("pagein-bench", MFD_CLOEXEC | (huge ? MFD_HUGETLB : 0));
		if (memfd < 0)
			die("memfd_create: %s", strerror(errno));
		bare.memfd = memfd;
		if (ftruncate(memfd, (off_t)size))
			die("ftruncate memfd to %" PRIu64 " bytes: %s", size, strerror(errno));
		bare.base = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, memfd, 0);
		if (huge)
			bare.alias = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, memfd, 0);
		if (bare.base == MAP_FAILED || bare.alias == MAP_FAILED)
			die("mmap memfd (%" PRIu64 " bytes)%s: %s", size,
			    huge ? "; reserve huge pages with sysctl vm.nr_hugepages=N" : "",
			    strerror(errno));
		features |= huge ? UFFD_FEATURE_MINOR_HUGETLBFS : UFFD_FEATURE_MINOR_SHMEM;
	}
	if (self)
		features |= UFFD_FEATURE_SIGBUS;

	bare.uffd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK);
	if (bare.uffd < 0)
		die("userfaultfd: %s%s", strerror(errno), uffd_hint(errno));
	memset(&api, 0, sizeof(api));
	api.api = UFFD_API;
	api.features = features;
	if (ioctl(bare.uffd, UFFDIO_API, &api))
		die("UFFDIO_API (features 0x%" PRIx64 "): %s", features, strerror(errno));
	memset(&reg, 0, sizeof(reg));
	reg.range.start = (uintptr_t)bare.base;
	reg.range.len = size;
	reg.mode = UFFDIO_REGISTER_MODE_MISSING | (anon ? 0 : UFFDIO_REGISTER_MODE_MINOR);
	if (ioctl(bare.uffd, UFFDIO_REGISTER, &reg))
		die("UFFDIO_REGISTER %s: %s", pagein_backing_name(c->backing), strerror(errno));

	vcpus_prepare(&s, c, o->overlap, o->rand, o->seed);
	if (self) {
		memset(&sa, 0, sizeof(sa));
		sa.sa_sigaction = bare_sigbus;
		sa.sa_flags = SA_SIGINFO;
		sigemptyset(&sa.sa_mask);
		if (sigaction(SIGBUS, &sa, &old_sa))
			die("sigaction SIGBUS: %s", strerror(errno));
	} else {
		bare.stopfd = eventfd(0, EFD_CLOEXEC);
		if (bare.stopfd < 0)
			die("eventfd: %s", strerror(errno));
		ret = pthread_create(&reader, NULL, bare_reader, NULL);
		if (ret)
			die("pthread_create: %s", strerror(ret));
	}

	vcpus_run(&s, bare.base, r, NULL);

	if (self) {
		for (r->faults = 0, t = 0; t < s.n; t++)
			r->faults += s.v[t].faults;
	} else {
		w = write(bare.stopfd, &one, sizeof(one));
		(void)w;
		pthread_join(reader, NULL);
		if (bare.err)
			die("bare-handler: %s", strerror(-bare.err));
		r->faults = bare.faults;
		r->eexist = bare.eexist;
		close(bare.stopfd);
	}
	/* every page was touched, so reading them here takes no fault */
	verify(c, bare.base, size);
	close(bare.uffd);
	if (self)
		sigaction(SIGBUS, &old_sa, NULL);
	munmap(bare.base, size);
	if (bare.alias)
		munmap(bare.alias, size);
	if (memfd >= 0)
		close(memfd);
	vcpus_release(&s);
}

/* ---------------------------------------------------------------------------------------------
 * The library
 */

/* A memory source with an injected delay per fetch (the image is the bytes; no direct path, so
 * every install goes through fetch like a network source's would). */
struct delay_src {
	const uint8_t *img;  /* the bytes of [base, base + len) */
	uint64_t base;       /* guest address of img[0] */
	uint64_t len;
	unsigned delay_us;
	bool spin;
};

static int delay_fetch(void *ctx, uint64_t gpa, void *dst, uint64_t len, uint64_t page_size,
		       uint64_t *zero_mask, uint64_t deadline_ns)
{
	struct delay_src *d = ctx;

	(void)page_size;
	(void)zero_mask;
	if (gpa < d->base || gpa - d->base > d->len || len > d->len - (gpa - d->base))
		return -EINVAL;
	bench_delay(d->delay_us, d->spin);
	if (deadline_ns && now_ns() > deadline_ns)
		return -ETIMEDOUT;
	memcpy(dst, d->img + (gpa - d->base), len);
	return 0;
}

static bool delay_covers(void *ctx, uint64_t gpa, uint64_t len)
{
	const struct delay_src *d = ctx;

	return gpa >= d->base && gpa - d->base + len <= d->len;
}

static void delay_destroy(void *ctx)
{
	(void)ctx; /* static storage */
}

static const struct pagein_source_ops delay_ops = {
	.fetch = delay_fetch,
	.direct = NULL,
	.destroy = delay_destroy,
	.covers = delay_covers,
};

static void run_lib(const struct bench_opts *o, const struct bench_case *c,
		    struct bench_result *r)
{
	static struct delay_src dsrc;
	uint64_t size = region_size(c, o->overlap);
	struct pagein_source *src = NULL;
	struct pagein_space *sp = NULL;
	struct pagein_config cfg;
	struct vcpu_set s;
	void *host = NULL;
	int ret;

	pagein_config_init(&cfg);
	cfg.frontend = c->frontend;
	if (c->frontend == PAGEIN_FRONTEND_HANDLER) {
		cfg.readers = c->readers;
		cfg.uffds = c->uffds;
	}
	cfg.fault_around = c->around ? c->around : PAGEIN_AROUND_AUTO;
	cfg.log = tool_log;
	ret = pagein_space_new(&cfg, &sp);
	if (ret)
		die("pagein_space_new (%s): %s%s", kind_name(c), strerror(-ret), uffd_hint(-ret));
	ret = pagein_region_add(sp, 0, size, c->backing, &host);
	if (ret)
		die("pagein_region_add %" PRIu64 " bytes %s: %s%s", size,
		    pagein_backing_name(c->backing), strerror(-ret),
		    c->backing == PAGEIN_BACKING_HUGETLB ?
		    " (reserve huge pages: sysctl vm.nr_hugepages=N)" : "");
	if (o->delay_us) {
		dsrc.img = image;
		dsrc.base = 0;
		dsrc.len = size;
		dsrc.delay_us = o->delay_us;
		dsrc.spin = o->spin;
		ret = pagein_source_new(&delay_ops, &dsrc, &src);
	} else {
		ret = pagein_source_mem_new(image, 0, size, &src);
	}
	if (ret)
		die("creating the memory source: %s", strerror(-ret));
	ret = pagein_space_set_source(sp, src);
	if (ret)
		die("pagein_space_set_source: %s", strerror(-ret));
	ret = pagein_space_start(sp);
	if (ret)
		die("pagein_space_start (%s): %s%s", kind_name(c), strerror(-ret), uffd_hint(-ret));

	vcpus_prepare(&s, c, o->overlap, o->rand, o->seed);
	vcpus_run(&s, host, r, c->fill ? sp : NULL);
	pagein_stats_get(sp, &r->st);
	r->have_stats = true;
	r->faults = r->st.faults_self + r->st.faults_handler + r->st.faults_kvm;
	r->eexist = r->st.eexist;
	/* every page was touched, so it is present: reading it takes no fault */
	verify(c, host, size);
	if (c->fill)
		pagein_fill_stop(sp);
	pagein_space_free(sp);
	pagein_source_free(src);
	vcpus_release(&s);
}

/* ---------------------------------------------------------------------------------------------
 * --kvm: real vCPUs (tools/kvmvm.c) write one word to every page of their slice of guest memory
 */

/* Guest memory for kvm-plain: size bytes of backing b, mapped the way the library maps it (4 KiB
 * anonymous pages, a memfd, a hugetlb memfd), holding the image: every page present. */
static uint8_t *kvm_plain_mem(enum pagein_backing b, uint64_t size)
{
	uint8_t *m;
	int fd = -1;

	if (b == PAGEIN_BACKING_ANON) {
		m = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		if (m != MAP_FAILED)
			madvise(m, size, MADV_NOHUGEPAGE);
	} else {
		fd = memfd_create("pagein-bench-kvm", MFD_CLOEXEC |
				  (b == PAGEIN_BACKING_HUGETLB ? MFD_HUGETLB : 0));
		if (fd < 0)
			die("memfd_create: %s", strerror(errno));
		if (ftruncate(fd, (off_t)size))
			die("ftruncate memfd to %" PRIu64 " bytes: %s", size, strerror(errno));
		m = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
		close(fd); /* the mapping keeps the file */
	}
	if (m == MAP_FAILED)
		die("mmap %" PRIu64 " bytes of %s: %s%s", size, pagein_backing_name(b),
		    strerror(errno), b == PAGEIN_BACKING_HUGETLB ?
		    " (reserve huge pages: sysctl vm.nr_hugepages=N)" : "");
	memcpy(m, image, size);
	return m;
}

/* Run the guest once: on populated plain memory (kvm-plain) or on a pagein HANDLER space over
 * the seeded image (kvm-handler). Checks the guest's read sums and every byte; dies on a
 * mismatch, as the other rows do. */
static void run_kvm(const struct bench_opts *o, const struct bench_case *c,
		    struct bench_result *r)
{
	static struct delay_src dsrc;
	uint64_t size = c->per_vcpu * c->vcpus, per = c->per_vcpu / BENCH_PAGE, c0, c1, slow = 0;
	struct pagein_source *src = NULL;
	struct pagein_config cfg;
	struct h_space hs = { 0 };
	uint8_t *plain = NULL, *host;
	struct h_vm vm;
	char msg[256];
	unsigned i;
	int ret;

	ret = h_vm_new(&vm, c->vcpus, msg);
	if (ret)
		die("creating the VM: %s", msg);
	if (c->kind == KIND_KVM_PLAIN) {
		/* every page present before the guest runs: KVM only maps them */
		plain = kvm_plain_mem(c->backing, size);
		ret = h_vm_add_mem(&vm, H_SPACE_SLOT, H_MEM_GPA, size, plain);
		if (ret)
			die("KVM_SET_USER_MEMORY_REGION (%" PRIu64 " bytes): %s", size,
			    strerror(-ret));
		host = plain;
	} else {
		pagein_config_init(&cfg);
		cfg.frontend = PAGEIN_FRONTEND_HANDLER;
		cfg.readers = c->readers;
		cfg.uffds = c->uffds;
		cfg.fault_around = c->around ? c->around : PAGEIN_AROUND_AUTO;
		cfg.log = tool_log;
		if (o->delay_us) {
			dsrc.img = image;
			dsrc.base = H_MEM_GPA;
			dsrc.len = size;
			dsrc.delay_us = o->delay_us;
			dsrc.spin = o->spin;
			ret = pagein_source_new(&delay_ops, &dsrc, &src);
		} else {
			ret = pagein_source_mem_new(image, H_MEM_GPA, size, &src);
		}
		if (ret)
			die("creating the memory source: %s", strerror(-ret));
		ret = h_space_new_flags(&hs, &vm, c->backing, size, o->seed, &cfg, src, msg,
					c->kind == KIND_KVM_EXIT ? 0 : PAGEIN_KVM_ATTACH_NO_EXIT);
		if (ret)
			die("guest memory as a pagein space: %s%s%s", msg, uffd_hint(-ret),
			    c->backing == PAGEIN_BACKING_HUGETLB ?
			    " (reserve huge pages: sysctl vm.nr_hugepages=N)" : "");
		host = hs.host;
		if (c->kind == KIND_KVM_EXIT && !pagein_kvm_exit_on_missing(hs.space))
			die("kvm-exit: the kernel took exit-on-missing for the probe, not now");
	}
	for (i = 0; i < c->vcpus; i++) {
		uint64_t lo = H_MEM_GPA + i * c->per_vcpu;

		ret = h_vcpu_setup(&vm, i, lo, per, lo, lo + c->per_vcpu);
		if (ret)
			die("setting up vCPU %u: %s", i, strerror(-ret));
	}

	c0 = cpu_ns();
	ret = h_vm_run(&vm);
	c1 = cpu_ns();
	if (h_report_run(&vm, kind_name(c), ret))
		die("%s/%s, %u vCPUs: the guest did not finish (above)", kind_name(c),
		    backing_name(c), c->vcpus);

	r->vcpu_pps = calloc(c->vcpus, sizeof(double));
	r->kvs = calloc(c->vcpus, sizeof(*r->kvs));
	if (!r->vcpu_pps || !r->kvs)
		die("out of memory");
	r->vcpu_min = 1e300;
	r->vcpu_max = 0;
	r->kvm_stats = true;
	for (i = 0; i < c->vcpus; i++) {
		struct h_vcpu *v = &vm.vcpu[i];
		struct kvm_vcpu_stat *k = &r->kvs[i];
		double pps = v->ns ? (double)v->npages * 1e9 / (double)v->ns : 0;

		if (v->read_sum != h_expected_sum(o->seed, v->first_gpa, v->npages, v->lo, v->hi))
			die("VERIFY FAILED: %s/%s, vCPU %u: the guest read other bytes than the "
			    "source holds (read sum 0x%016" PRIx64 ")", kind_name(c), backing_name(c),
			    i, v->read_sum);
		k->pages = v->npages;
		k->ns = v->ns;
		k->runs = v->runs;
		if (h_vcpu_stat(&vm, i, "pf_taken", &k->pf_taken) ||
		    h_vcpu_stat(&vm, i, "pf_fixed", &k->pf_fixed) ||
		    h_vcpu_stat(&vm, i, "exits", &k->exits))
			r->kvm_stats = false;
		r->vcpu_pps[i] = pps;
		if (pps < r->vcpu_min)
			r->vcpu_min = pps;
		if (pps > r->vcpu_max)
			r->vcpu_max = pps;
		if (v->ns > slow)
			slow = v->ns;
	}
	r->pages = per * c->vcpus;
	r->seconds = (double)(slow ? slow : 1) / 1e9;
	r->pps = (double)r->pages / r->seconds;
	r->cpu_us = (double)(c1 - c0) / 1e3;
	if (c->kind != KIND_KVM_PLAIN) {
		for (i = 0; i < c->vcpus; i++) {
			struct pagein_kvm_vcpu_stats vs;

			pagein_kvm_vcpu_stats(hs.space, i, &vs);
			r->kvs[i].eom_exits = vs.exits;
			r->kvs[i].handler_faults = vs.handler_faults;
		}
		pagein_stats_get(hs.space, &r->st);
		r->have_stats = true;
		r->faults = r->st.faults_self + r->st.faults_handler + r->st.faults_kvm;
		r->eexist = r->st.eexist;
		/* the guest loop cannot time its touches: the library's fault service time */
		r->p50_us = (double)pagein_stats_quantile(&r->st, 0.5) / 1e3;
		r->p99_us = (double)pagein_stats_quantile(&r->st, 0.99) / 1e3;
	} else {
		/* no pagein: the faults are KVM's own (stage-2 misses it fixes from present pages) */
		for (i = 0; i < c->vcpus; i++)
			r->faults += r->kvs[i].pf_taken;
		r->p50_us = r->p99_us = -1;
	}

	/* every page was written by the guest, so it is present: reading it takes no fault */
	if (h_verify(NULL, host, H_MEM_GPA, size, o->seed, NULL))
		die("VERIFY FAILED: %s/%s, %u vCPUs: guest memory differs from the source plus "
		    "the guest's writes (mismatches above)", kind_name(c), backing_name(c), c->vcpus);
	r->verified_pages = size / BENCH_PAGE;

	h_space_free(&hs, &vm);
	h_vm_free(&vm);
	if (src)
		pagein_source_free(src);
	if (plain)
		munmap(plain, size);
}

/* ", pagein: exits E, handler faults H" for a vCPU of a pagein row, "" for kvm-plain. */
static const char *pagein_counts(const struct bench_result *r, const struct kvm_vcpu_stat *k)
{
	static char buf[96];

	if (r->c.kind == KIND_KVM_PLAIN)
		return "";
	snprintf(buf, sizeof(buf), ", pagein: exits %" PRIu64 ", handler faults %" PRIu64,
		 k->eom_exits, k->handler_faults);
	return buf;
}

/* The lines under a kvm row: what each vCPU did and what KVM counted for it. */
static void print_kvm_vcpus(const struct bench_result *r)
{
	unsigned i;

	for (i = 0; i < r->c.vcpus; i++) {
		const struct kvm_vcpu_stat *k = &r->kvs[i];
		char counts[128];

		if (r->kvm_stats)
			snprintf(counts, sizeof(counts), "KVM page faults taken %" PRIu64 " fixed %"
				 PRIu64 ", exits %" PRIu64, k->pf_taken, k->pf_fixed, k->exits);
		else
			snprintf(counts, sizeof(counts), "KVM statistics unavailable");
		fprintf(tab, "  %s vCPU %u: %" PRIu64 " pages, %.0f pages/s, %s, KVM_RUN x%" PRIu64
			"%s %s\n", kind_name(&r->c), i, k->pages, r->vcpu_pps[i], counts, k->runs,
			pagein_counts(r, k), EMULATED_NOTE);
	}
	fprintf(tab, "  %s: verified %" PRIu64 " pages, every byte (guest writes, the source's "
		"pattern elsewhere): ok\n", kind_name(&r->c), r->verified_pages);
}

/* ---------------------------------------------------------------------------------------------
 * Rows: run with repeats, look-ups, output
 */

static bool same_config(const struct bench_case *a, const struct bench_case *b)
{
	return a->kind == b->kind && a->frontend == b->frontend && a->backing == b->backing &&
	       a->readers == b->readers && a->uffds == b->uffds && a->around == b->around &&
	       a->fill == b->fill && a->restore == b->restore && a->per_vcpu == b->per_vcpu;
}

static const struct bench_result *find_row(const struct bench_case *c, enum bench_kind kind,
					   unsigned vcpus)
{
	struct bench_case k = *c;
	unsigned i;

	k.kind = kind;
	if (kind != KIND_LIB && kind != KIND_KVM_HANDLER && kind != KIND_KVM_EXIT) {
		k.frontend = PAGEIN_FRONTEND_SELF;
		k.readers = k.uffds = 0;
		k.around = 1;
		k.fill = false;
	}
	if (kind == KIND_FLOOR)
		k.backing = PAGEIN_BACKING_ANON;
	for (i = 0; i < nrows; i++)
		if (rows[i].c.vcpus == vcpus && same_config(&rows[i].c, &k))
			return &rows[i];
	return NULL;
}

static void print_header(void)
{
	fprintf(tab, "%-12s %-7s %5s %3s %3s %6s %4s %10s %10s %10s %8s %8s %8s %9s %6s %6s\n",
		"frontend", "backing", "vcpus", "rd", "uf", "around", "fill", "pages/s", "vcpu-min",
		"vcpu-max", "p50us", "p99us", "cpuus/f", "faults", "x1vcpu", "xfloor");
	fflush(tab);
}

static void print_row(const struct bench_result *r, double speedup, double vs_floor)
{
	char around[16], rd[8], uf[8], su[16], vf[16], p50[16], p99[16];

	if (r->c.kind == KIND_FLOOR || r->c.kind == KIND_KVM_PLAIN)
		snprintf(around, sizeof(around), "-");
	else if (r->c.around)
		snprintf(around, sizeof(around), "%u", r->c.around);
	else
		snprintf(around, sizeof(around), "auto");
	snprintf(rd, sizeof(rd), r->c.readers ? "%u" : "-", r->c.readers);
	snprintf(uf, sizeof(uf), r->c.uffds ? "%u" : "-", r->c.uffds);
	snprintf(su, sizeof(su), speedup > 0 ? "%.2f" : "-", speedup);
	snprintf(vf, sizeof(vf), vs_floor > 0 ? "%.2f" : "-", vs_floor);
	/* negative: not measured (kvm-plain has no per-page latency) */
	snprintf(p50, sizeof(p50), r->p50_us >= 0 ? "%.1f" : "-", r->p50_us);
	snprintf(p99, sizeof(p99), r->p99_us >= 0 ? "%.1f" : "-", r->p99_us);
	fprintf(tab, "%-12s %-7s %5u %3s %3s %6s %4s %10.0f %10.0f %10.0f %8s %8s %8.2f %9"
		PRIu64 " %6s %6s\n", kind_name(&r->c), backing_name(&r->c), r->c.vcpus, rd, uf,
		around, r->c.fill ? "on" : "off", r->pps, r->vcpu_min, r->vcpu_max, p50, p99,
		r->cpu_us_per_fault, r->faults, su, vf);
	if (r->kvs)
		print_kvm_vcpus(r);
	fflush(tab);
}

/* "key":[v0,v1,...], one value per vCPU of a kvm row, the field at offset off of its stats */
static void json_vcpu_array(const struct bench_result *r, const char *key, size_t off)
{
	unsigned i;

	printf(",\"%s\":[", key);
	for (i = 0; i < r->c.vcpus; i++)
		printf("%s%" PRIu64, i ? "," : "", *(const uint64_t *)((const char *)&r->kvs[i] + off));
	printf("]");
}

static void print_json(const struct bench_opts *o, const struct bench_result *r, double speedup,
		       double vs_floor)
{
	unsigned i;

	printf("{\"frontend\":\"%s\",\"backing\":\"%s\",\"mode\":\"%s\",\"vcpus\":%u,"
	       "\"readers\":%u,\"uffds\":%u,", kind_name(&r->c), backing_name(&r->c),
	       is_kvm(&r->c) ? "kvm" : r->c.restore ? "restore" : "touch", r->c.vcpus, r->c.readers,
	       r->c.uffds);
	if (r->c.around)
		printf("\"around\":%u,", r->c.kind == KIND_FLOOR || r->c.kind == KIND_KVM_PLAIN ? 1 :
		       r->c.around);
	else
		printf("\"around\":\"auto\",");
	printf("\"fill\":%s,\"pattern\":\"%s\",\"overlap\":%s,\"delay_us\":%u,"
	       "\"bytes_per_vcpu\":%" PRIu64 ",\"pages\":%" PRIu64 ",\"faults\":%" PRIu64 ","
	       "\"seconds\":%.6f,\"pages_per_sec\":%.1f,\"per_vcpu_pages_per_sec\":[",
	       r->c.fill ? "true" : "false", o->rand ? "rand" : "seq",
	       o->overlap ? "true" : "false", o->delay_us, r->c.per_vcpu, r->pages, r->faults,
	       r->seconds, r->pps);
	for (i = 0; i < r->c.vcpus; i++)
		printf("%s%.1f", i ? "," : "", r->vcpu_pps[i]);
	printf("],");
	if (r->p50_us >= 0)
		printf("\"lat_p50_us\":%.3f,\"lat_p99_us\":%.3f,", r->p50_us, r->p99_us);
	else
		printf("\"lat_p50_us\":null,\"lat_p99_us\":null,");
	printf("\"cpu_us_per_fault\":%.3f,\"cpu_us_per_page\":%.3f,\"eexist\":%" PRIu64 ",",
	       r->cpu_us_per_fault, r->cpu_us / (double)r->pages, r->eexist);
	if (speedup > 0)
		printf("\"speedup_vs_1\":%.3f,", speedup);
	else
		printf("\"speedup_vs_1\":null,");
	if (vs_floor > 0)
		printf("\"vs_floor\":%.3f", vs_floor);
	else
		printf("\"vs_floor\":null");
	if (r->have_stats) {
		const struct pagein_stats *st = &r->st;

		printf(",\"lib_faults_self\":%" PRIu64 ",\"lib_faults_handler\":%" PRIu64
		       ",\"races_lost\":%" PRIu64 ",\"lib_eexist\":%" PRIu64 ",\"eagain\":%" PRIu64
		       ",\"pages_demand\":%" PRIu64 ",\"pages_around\":%" PRIu64
		       ",\"pages_fill\":%" PRIu64 ",\"fetches\":%" PRIu64 ",\"fetch_errors\":%" PRIu64
		       ",\"blocked_us\":%.1f,\"lib_lat_p50_us\":%.3f,\"lib_lat_p99_us\":%.3f",
		       st->faults_self, st->faults_handler, st->races_lost, st->eexist, st->eagain,
		       st->pages_demand, st->pages_around, st->pages_fill, st->fetches,
		       st->fetch_errors, st->blocked_ns / 1e3,
		       pagein_stats_quantile(st, 0.5) / 1e3, pagein_stats_quantile(st, 0.99) / 1e3);
		printf(",\"lib_faults_kvm\":%" PRIu64, st->faults_kvm);
	}
	if (r->kvs) {
		uint64_t taken = 0, fixed = 0, exits = 0;

		for (i = 0; i < r->c.vcpus; i++) {
			taken += r->kvs[i].pf_taken;
			fixed += r->kvs[i].pf_fixed;
			exits += r->kvs[i].exits;
		}
		printf(",\"kvm_stats\":%s,\"kvm_pf_taken\":%" PRIu64 ",\"kvm_pf_fixed\":%" PRIu64
		       ",\"kvm_exits\":%" PRIu64 ",\"verified_pages\":%" PRIu64,
		       r->kvm_stats ? "true" : "false", taken, fixed, exits, r->verified_pages);
		json_vcpu_array(r, "per_vcpu_pages", offsetof(struct kvm_vcpu_stat, pages));
		json_vcpu_array(r, "per_vcpu_pf_taken", offsetof(struct kvm_vcpu_stat, pf_taken));
		json_vcpu_array(r, "per_vcpu_pf_fixed", offsetof(struct kvm_vcpu_stat, pf_fixed));
		json_vcpu_array(r, "per_vcpu_exits", offsetof(struct kvm_vcpu_stat, exits));
		json_vcpu_array(r, "per_vcpu_kvm_runs", offsetof(struct kvm_vcpu_stat, runs));
		json_vcpu_array(r, "per_vcpu_eom_exits", offsetof(struct kvm_vcpu_stat, eom_exits));
		json_vcpu_array(r, "per_vcpu_handler_faults",
				offsetof(struct kvm_vcpu_stat, handler_faults));
		printf(",\"note\":\"%s\"", EMULATED_NOTE);
	}
	printf("}\n");
	fflush(stdout);
}

static void run_once(const struct bench_opts *o, const struct bench_case *c,
		     struct bench_result *r)
{
	memset(r, 0, sizeof(*r));
	r->c = *c;
	snprintf(running, sizeof(running), "%s/%s, %u vCPUs, %" PRIu64 " bytes each",
		 kind_name(c), backing_name(c), c->vcpus, c->per_vcpu);
	alarm(o->timeout_s);
	switch (c->kind) {
	case KIND_FLOOR:
		run_floor(o, c, r);
		break;
	case KIND_BARE_SELF:
	case KIND_BARE_HANDLER:
		run_bare(o, c, r);
		break;
	case KIND_LIB:
		run_lib(o, c, r);
		break;
	case KIND_KVM_PLAIN:
	case KIND_KVM_HANDLER:
	case KIND_KVM_EXIT:
		run_kvm(o, c, r);
		break;
	}
	alarm(0);
	r->cpu_us_per_fault = r->faults ? r->cpu_us / (double)r->faults : 0;
}

static int cmp_seconds(const void *a, const void *b)
{
	const struct bench_result *x = a, *y = b;

	return x->seconds < y->seconds ? -1 : x->seconds > y->seconds;
}

/* Run each case o->repeat times, interleaved (so drift hits every case alike), keep the run
 * with the median time of each, record and print the rows. */
static void run_group(const struct bench_opts *o, const struct bench_case *cases, unsigned n)
{
	struct bench_result runs[8][BENCH_MAX_REPEAT];
	const struct bench_result *one, *fl;
	struct bench_case key;
	struct bench_result *r;
	double speedup, vs_floor;
	unsigned i, k;

	if (n > 8)
		die("internal: too many cases in one group");
	for (k = 0; k < o->repeat; k++)
		for (i = 0; i < n; i++)
			run_once(o, &cases[i], &runs[i][k]);
	for (i = 0; i < n; i++) {
		qsort(runs[i], o->repeat, sizeof(runs[i][0]), cmp_seconds);
		for (k = 0; k < o->repeat; k++)
			if (k != o->repeat / 2) {
				free(runs[i][k].vcpu_pps);
				free(runs[i][k].kvs);
			}
		if (nrows == BENCH_MAX_ROWS)
			die("too many rows (at most %u)", BENCH_MAX_ROWS);
		r = &rows[nrows++];
		*r = runs[i][o->repeat / 2];
		/* with one reader (uffd) per vCPU, the 1-vCPU row has one of each */
		key = r->c;
		if ((key.kind == KIND_LIB && key.frontend == PAGEIN_FRONTEND_HANDLER) ||
		    key.kind == KIND_KVM_HANDLER || key.kind == KIND_KVM_EXIT) {
			key.readers = o->readers ? o->readers : 1;
			key.uffds = o->uffds ? o->uffds : 1;
		}
		one = find_row(&key, key.kind, 1);
		speedup = one ? r->pps / one->pps : 0;
		fl = find_row(&r->c, is_kvm(&r->c) ? KIND_KVM_PLAIN : KIND_FLOOR, r->c.vcpus);
		vs_floor = fl ? r->pps / fl->pps : 0;
		print_row(r, speedup, vs_floor);
		if (o->json)
			print_json(o, r, speedup, vs_floor);
	}
}

/* The cases of one vCPU count: floor, both bare loops, then the library front-end(s). */
static unsigned make_cases(const struct bench_opts *o, unsigned vcpus, bool both,
			   struct bench_case *cases)
{
	struct bench_case base = {
		.backing = o->backing, .vcpus = vcpus, .around = 1, .per_vcpu = o->per_vcpu,
	};
	unsigned n = 0;

	cases[n] = base;
	cases[n].kind = KIND_FLOOR;
	cases[n++].backing = PAGEIN_BACKING_ANON;
	cases[n] = base;
	cases[n++].kind = KIND_BARE_SELF;
	cases[n] = base;
	cases[n++].kind = KIND_BARE_HANDLER;
	if (o->baseline)
		return n;
	base.kind = KIND_LIB;
	base.around = o->around;
	base.fill = o->fill;
	if (both || o->frontend == PAGEIN_FRONTEND_SELF) {
		cases[n] = base;
		cases[n++].frontend = PAGEIN_FRONTEND_SELF;
	}
	if (both || o->frontend == PAGEIN_FRONTEND_HANDLER) {
		cases[n] = base;
		cases[n].frontend = PAGEIN_FRONTEND_HANDLER;
		cases[n].readers = o->readers ? o->readers : vcpus;
		cases[n++].uffds = o->uffds ? o->uffds : vcpus;
	}
	return n;
}

/* ---------------------------------------------------------------------------------------------
 * Headlines
 */

static double row_pps(const struct bench_case *like, enum bench_kind kind,
		      enum pagein_frontend fe, unsigned vcpus)
{
	struct bench_case k = *like;
	const struct bench_result *r;

	k.frontend = fe;
	if (kind == KIND_LIB && fe == PAGEIN_FRONTEND_SELF)
		k.readers = k.uffds = 0;
	r = find_row(&k, kind, vcpus);
	return r ? r->pps : 0;
}

static void print_headlines(const struct bench_opts *o, const struct bench_case *lib_handler)
{
	struct bench_case ls = *lib_handler, lh = *lib_handler;
	const struct bench_result *s, *b, *h, *bh;
	double f1, f2, s1, s2, h1, h2;
	char ar[16];
	unsigned v;

	ls.frontend = PAGEIN_FRONTEND_SELF;
	ls.readers = ls.uffds = 0;
	snprintf(ar, sizeof(ar), o->around ? "%u" : "auto", o->around);
	f1 = row_pps(&ls, KIND_FLOOR, 0, 1);
	f2 = row_pps(&ls, KIND_FLOOR, 0, 2);
	s1 = row_pps(&ls, KIND_LIB, PAGEIN_FRONTEND_SELF, 1);
	s2 = row_pps(&ls, KIND_LIB, PAGEIN_FRONTEND_SELF, 2);
	lh.readers = o->readers ? o->readers : 1;
	lh.uffds = o->uffds ? o->uffds : 1;
	h1 = row_pps(&lh, KIND_LIB, PAGEIN_FRONTEND_HANDLER, 1);
	lh.readers = o->readers ? o->readers : 2;
	lh.uffds = o->uffds ? o->uffds : 2;
	h2 = row_pps(&lh, KIND_LIB, PAGEIN_FRONTEND_HANDLER, 2);
	fprintf(tab, "\n");
	if (f1 > 0 && f2 > 0 && s1 > 0 && s2 > 0)
		fprintf(tab, "headline: [%s, around %s] self-resolve speed-up 1->2 vCPUs %.2fx / "
			"floor speed-up %.2fx = %.2f (target >= 0.90); handler speed-up %.2fx\n",
			pagein_backing_name(o->backing), ar, s2 / s1, f2 / f1,
			(s2 / s1) / (f2 / f1), h1 > 0 ? h2 / h1 : 0);
	/* the bare loops install one page per fault: only then is the cost comparable */
	for (v = 1; o->around == 1 && v <= 8; v *= 2) {
		ls.vcpus = lh.vcpus = v;
		lh.readers = o->readers ? o->readers : v;
		lh.uffds = o->uffds ? o->uffds : v;
		s = find_row(&ls, KIND_LIB, v);
		b = find_row(&ls, KIND_BARE_SELF, v);
		h = find_row(&lh, KIND_LIB, v);
		bh = find_row(&lh, KIND_BARE_HANDLER, v);
		if (!s || !b || !h || !bh)
			continue;
		fprintf(tab, "headline: [%s, around %s, %u vCPU] library / bare per-fault cost: "
			"self cpu %.2f, time %.2f; handler (rd %u uf %u) cpu %.2f, time %.2f "
			"(target <= 1.20)\n", pagein_backing_name(o->backing), ar, v,
			s->cpu_us_per_fault / b->cpu_us_per_fault, b->pps / s->pps, lh.readers, lh.uffds,
			h->cpu_us_per_fault / bh->cpu_us_per_fault, bh->pps / h->pps);
	}
	fflush(tab);
}

/* ---------------------------------------------------------------------------------------------
 * Options and main
 */

static unsigned bench_uint(const char *s, const char *what, unsigned lo, unsigned hi)
{
	unsigned long v;
	char *end;

	errno = 0;
	v = strtoul(s, &end, 0);
	if (errno || end == s || *end || v < lo || v > hi)
		die("bad %s '%s': want a number in %u..%u", what, s, lo, hi);
	return (unsigned)v;
}

static void usage(FILE *f)
{
	fprintf(f,
"usage: pagein bench [options]\n"
"  vCPU threads touch one byte per 4 KiB page of their memory; the same process measures the\n"
"  kernel floor (plain first touch), the bare loop of each front-end, then the library.\n"
"  -v N            vCPU threads (default 1)\n"
"  -b SIZE         memory per vCPU (default 64M)\n"
"  -f self|handler library front-end (default self)\n"
"  -r N|v          handler reader threads (default 1; v = one per vCPU)\n"
"  -u N|v          handler userfaultfds the memory is striped over (default 1; v = one per\n"
"                  vCPU)\n"
"  -s anon|shmem|hugetlb   backing (default anon)\n"
"  -d USEC         injected delay per source fetch (default 0), slept; --spin busy-waits it\n"
"  -a seq|rand     access pattern (default seq)\n"
"  -o              overlap: every vCPU touches the same memory\n"
"  --around N|auto fault-around window in pages (default 1 = off, the seeds' comparison)\n"
"  --fill          background fill during the run\n"
"  --matrix        1,2,4,8 vCPUs x self,handler with floor and bare rows, and headlines\n"
"  --restore [SIZE] sequential restore of SIZE (default 1G), one thread, fault-around auto,\n"
"                  fill on, against first touch of plain memory; prints the ratio\n"
"  --baseline      floor and bare rows only (no library)\n"
"  -n N            runs per row, the median is kept (default 1)\n"
"  --json          one JSON object per row on stdout (the table goes to stderr)\n"
"  --timeout SEC   longest one run may take before the bench gives up (default 120)\n"
"  --seed N        pattern and random-order seed\n"
"  --kvm           real vCPUs on /dev/kvm instead of threads: each writes one word to every\n"
"                  page of its slice of guest memory; rows kvm-plain (populated memory of the\n"
"                  backing, no pagein: the floor) and kvm-handler (a pagein HANDLER space).\n"
"                  Takes -v (at most 16), -b, -s, -r, -u, -d, --spin, --around, -n,\n"
"                  --json, --seed, --timeout.\n"
"                  Without /dev/kvm it exits 77: make test-kvm runs it in a guest kernel.\n");
}

static void parse_opts(int argc, char **argv, struct bench_opts *o)
{
	enum { OPT_AROUND = 256, OPT_FILL, OPT_JSON, OPT_MATRIX, OPT_RESTORE, OPT_BASELINE,
	       OPT_TIMEOUT, OPT_SEED, OPT_SPIN, OPT_KVM };
	static const struct option lopts[] = {
		{ "around", required_argument, NULL, OPT_AROUND },
		{ "fill", no_argument, NULL, OPT_FILL },
		{ "json", no_argument, NULL, OPT_JSON },
		{ "matrix", no_argument, NULL, OPT_MATRIX },
		{ "restore", optional_argument, NULL, OPT_RESTORE },
		{ "baseline", no_argument, NULL, OPT_BASELINE },
		{ "timeout", required_argument, NULL, OPT_TIMEOUT },
		{ "seed", required_argument, NULL, OPT_SEED },
		{ "spin", no_argument, NULL, OPT_SPIN },
		{ "kvm", no_argument, NULL, OPT_KVM },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	int ch;

	memset(o, 0, sizeof(*o));
	o->vcpus = 1;
	o->per_vcpu = 64ull << 20;
	o->frontend = PAGEIN_FRONTEND_SELF;
	o->readers = 1;
	o->uffds = 1;
	o->backing = PAGEIN_BACKING_ANON;
	o->around = 1;
	o->repeat = 1;
	o->timeout_s = 120;
	o->seed = 0x5eed;
	optind = 1;
	while ((ch = getopt_long(argc, argv, "v:b:f:r:u:s:d:a:on:h", lopts, NULL)) != -1) {
		switch (ch) {
		case 'v': o->vcpus = bench_uint(optarg, "-v", 1, BENCH_MAX_VCPUS); break;
		case 'b': o->per_vcpu = parse_size(optarg); break;
		case 'f':
			o->frontend_given = true;
			if (!strcmp(optarg, "self"))
				o->frontend = PAGEIN_FRONTEND_SELF;
			else if (!strcmp(optarg, "handler"))
				o->frontend = PAGEIN_FRONTEND_HANDLER;
			else
				die("bad -f '%s': want self or handler", optarg);
			break;
		case 'r':
			o->readers = strcmp(optarg, "v") ? bench_uint(optarg, "-r", 1, 1024) : 0;
			break;
		case 'u':
			o->uffds = strcmp(optarg, "v") ? bench_uint(optarg, "-u", 1, 1024) : 0;
			break;
		case 's':
			if (!strcmp(optarg, "anon"))
				o->backing = PAGEIN_BACKING_ANON;
			else if (!strcmp(optarg, "shmem"))
				o->backing = PAGEIN_BACKING_SHMEM;
			else if (!strcmp(optarg, "hugetlb"))
				o->backing = PAGEIN_BACKING_HUGETLB;
			else
				die("bad -s '%s': want anon, shmem or hugetlb", optarg);
			break;
		case 'd': o->delay_us = bench_uint(optarg, "-d", 0, 10000000); break;
		case 'a':
			if (!strcmp(optarg, "seq") || !strcmp(optarg, "rand"))
				o->rand = optarg[0] == 'r';
			else
				die("bad -a '%s': want seq or rand", optarg);
			break;
		case 'o': o->overlap = true; break;
		case 'n': o->repeat = bench_uint(optarg, "-n", 1, BENCH_MAX_REPEAT); break;
		case OPT_AROUND:
			o->around = strcmp(optarg, "auto") ?
				    bench_uint(optarg, "--around", 1, PAGEIN_AROUND_MAX) :
				    AROUND_AUTO_ARG;
			break;
		case OPT_FILL: o->fill = true; break;
		case OPT_JSON: o->json = true; break;
		case OPT_MATRIX: o->matrix = true; break;
		case OPT_RESTORE:
			/* the size may follow as its own word: --restore 1G */
			if (!optarg && optind < argc && argv[optind][0] != '-')
				optarg = argv[optind++];
			o->restore = optarg ? parse_size(optarg) : 1ull << 30;
			break;
		case OPT_BASELINE: o->baseline = true; break;
		case OPT_TIMEOUT: o->timeout_s = bench_uint(optarg, "--timeout", 1, 86400); break;
		case OPT_SEED: o->seed = bench_uint(optarg, "--seed", 1, UINT32_MAX); break;
		case OPT_SPIN: o->spin = true; break;
		case OPT_KVM: o->kvm = true; break;
		case 'h': usage(stdout); exit(0);
		default: usage(stderr); exit(2);
		}
	}
	if (optind < argc)
		die("unexpected argument '%s' (see pagein bench --help)", argv[optind]);
}

/* Allocate and fill the source image: a seeded pattern with no all-zero page, and the byte the
 * vCPUs write at offset 0 of every page. */
static void image_make(uint64_t size, uint64_t seed)
{
	uint64_t pg, j, st, *w;
	uint8_t *m;

	m = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (m == MAP_FAILED)
		die("mmap source image of %" PRIu64 " bytes: %s", size, strerror(errno));
	madvise(m, size, MADV_POPULATE_WRITE);
	for (pg = 0; pg < size / BENCH_PAGE; pg++) {
		w = (uint64_t *)(m + pg * BENCH_PAGE);
		st = (seed ^ (pg * 0x9e3779b97f4a7c15ull)) | 1;
		for (j = 0; j < BENCH_PAGE / 8; j++)
			w[j] = xorshift(&st);
		m[pg * BENCH_PAGE] = touch_byte(pg);
	}
	image = m;
}

static void check_sizes(const struct bench_opts *o, uint64_t per_vcpu)
{
	uint64_t align = o->backing == PAGEIN_BACKING_HUGETLB ? BENCH_HUGE : BENCH_PAGE;

	if (!per_vcpu || per_vcpu % align)
		die("memory per vCPU (%" PRIu64 " bytes) must be a positive multiple of %" PRIu64
		    " for %s", per_vcpu, align, pagein_backing_name(o->backing));
	if (per_vcpu / BENCH_PAGE > UINT32_MAX / BENCH_MAX_VCPUS)
		die("memory per vCPU (%" PRIu64 " bytes) is too large", per_vcpu);
}

/* One untimed floor run over as much memory as the biggest run maps: memory the guest has not
 * used lately (the host may have reclaimed it) costs more on first touch than memory it freed a
 * moment ago, and every timed run should get the same kind. */
static void warm_up(const struct bench_opts *o, unsigned vcpus, uint64_t per_vcpu)
{
	struct bench_case c = {
		.kind = KIND_FLOOR, .backing = PAGEIN_BACKING_ANON, .vcpus = vcpus, .around = 1,
		.per_vcpu = per_vcpu,
	};
	struct bench_result r;

	run_once(o, &c, &r);
	free(r.vcpu_pps);
}

static int bench_restore(const struct bench_opts *o)
{
	struct bench_case cases[2] = {
		{ .kind = KIND_FLOOR, .backing = PAGEIN_BACKING_ANON, .vcpus = 1, .around = 1,
		  .restore = true, .per_vcpu = o->restore },
		{ .kind = KIND_LIB, .frontend = o->frontend, .backing = o->backing, .vcpus = 1,
		  .readers = o->frontend != PAGEIN_FRONTEND_HANDLER ? 0 : o->readers ? o->readers : 1,
		  .uffds = o->frontend != PAGEIN_FRONTEND_HANDLER ? 0 : o->uffds ? o->uffds : 1,
		  .around = AROUND_AUTO_ARG, .fill = true, .restore = true, .per_vcpu = o->restore },
	};
	struct bench_opts ro = *o;

	ro.vcpus = 1;
	ro.rand = false;
	ro.overlap = false;
	check_sizes(&ro, o->restore);
	image_make(o->restore, o->seed);
	warm_up(&ro, 1, o->restore);
	print_header();
	run_group(&ro, cases, 2);
	fprintf(tab, "\nheadline: restore %" PRIu64 " MiB (%s, %s, around auto, fill on): "
		"%.0f pages/s vs first touch of plain memory %.0f pages/s = %.2fx (target >= 3)\n",
		o->restore >> 20, pagein_frontend_name(o->frontend), pagein_backing_name(o->backing),
		rows[1].pps, rows[0].pps, rows[1].pps / rows[0].pps);
	fflush(tab);
	return 0;
}

/* Whether KVM here takes exit-on-missing (pagein's KVM patch): a throw-away VM and space. */
static bool kvm_has_exit_on_missing(void)
{
	struct h_space hs;
	struct h_vm vm;
	char msg[256];
	bool have;

	if (h_vm_new(&vm, 1, msg))
		return false;
	if (h_space_new(&hs, &vm, PAGEIN_BACKING_ANON, 1ull << 20, 1, NULL, NULL, msg)) {
		h_vm_free(&vm);
		return false;
	}
	have = pagein_kvm_exit_on_missing(hs.space);
	h_space_free(&hs, &vm);
	h_vm_free(&vm);
	return have;
}

/* --kvm: kvm-plain, kvm-handler and (where KVM has pagein's patch) kvm-exit, -n times each,
 * interleaved; a headline ratio and the exit / handler-fault counts. Exits 77 where there is no
 * /dev/kvm: a bench without real vCPUs would be a fake result. */
static int bench_kvm(const struct bench_opts *o)
{
	struct bench_case cases[3] = {
		{ .kind = KIND_KVM_PLAIN, .backing = o->backing, .vcpus = o->vcpus,
		  .around = 1, .per_vcpu = o->per_vcpu },
		{ .kind = KIND_KVM_HANDLER, .frontend = PAGEIN_FRONTEND_HANDLER,
		  .backing = o->backing, .vcpus = o->vcpus,
		  .readers = o->readers ? o->readers : o->vcpus,
		  .uffds = o->uffds ? o->uffds : o->vcpus, .around = o->around,
		  .per_vcpu = o->per_vcpu },
		{ .kind = KIND_KVM_EXIT, .frontend = PAGEIN_FRONTEND_HANDLER,
		  .backing = o->backing, .vcpus = o->vcpus,
		  .readers = o->readers ? o->readers : o->vcpus,
		  .uffds = o->uffds ? o->uffds : o->vcpus, .around = o->around,
		  .per_vcpu = o->per_vcpu },
	};
	const struct bench_result *hr = NULL, *er = NULL, *pr = NULL;
	struct bench_result warm;
	unsigned ncases = 3;
	uint64_t size = o->per_vcpu * o->vcpus;
	uint8_t *img;
	char ar[16];

	if (access("/dev/kvm", F_OK)) {
		fprintf(stderr, "pagein bench --kvm: SKIP: no /dev/kvm here: run make test-kvm, which "
			"runs this bench inside a guest kernel under QEMU\n");
		return 77;
	}
	if (o->frontend_given && o->frontend != PAGEIN_FRONTEND_HANDLER)
		die("--kvm uses the handler front-end: KVM touches guest memory from kernel mode, "
		    "which self-resolve cannot serve (docs/kvm.md)");
	if (o->rand || o->overlap || o->fill || o->matrix || o->baseline || o->restore)
		die("--kvm takes -v, -b, -s, -r, -u, -d, --spin, --around, -n, --json, --seed, "
		    "--timeout; not -a, -o, --fill, --matrix, --baseline or --restore");
	if (o->vcpus > H_MAX_VCPUS)
		die("--kvm: at most %u vCPUs", H_MAX_VCPUS);
	check_sizes(o, o->per_vcpu);
	if (size > H_MAPPED - H_MEM_GPA)
		die("--kvm: %u vCPUs x %" PRIu64 " MiB do not fit the guest's %" PRIu64 " MiB of "
		    "test memory", o->vcpus, o->per_vcpu >> 20, (uint64_t)(H_MAPPED - H_MEM_GPA) >> 20);

	img = malloc(size);
	if (!img)
		die("out of memory for the %" PRIu64 " MiB source image", size >> 20);
	h_fill(img, H_MEM_GPA, size, o->seed);
	image = img;
	h_set_output(tab);

	/* untimed: the first VM of a process pays for KVM's and the host's first-use costs */
	run_once(o, &cases[0], &warm);
	free(warm.vcpu_pps);
	free(warm.kvs);

	if (!kvm_has_exit_on_missing()) {
		ncases = 2;
		fprintf(tab, "kvm-exit: not run: this KVM refuses the memslot flag "
			"KVM_MEM_EXIT_ON_MISSING (stock KVM; pagein's patch is kvm/patches/)\n");
	}
	print_header();
	fprintf(tab, "kvm: %u vCPUs x %" PRIu64 " KiB, guest writes one word per 4 KiB page %s\n",
		o->vcpus, o->per_vcpu >> 10, EMULATED_NOTE);
	run_group(o, cases, ncases);
	for (unsigned i = 0; i < nrows; i++) {
		if (rows[i].c.kind == KIND_KVM_PLAIN)
			pr = &rows[i];
		if (rows[i].c.kind == KIND_KVM_HANDLER)
			hr = &rows[i];
		if (rows[i].c.kind == KIND_KVM_EXIT)
			er = &rows[i];
	}
	snprintf(ar, sizeof(ar), o->around ? "%u" : "auto", o->around);
	fprintf(tab, "\nheadline: [kvm, %s, %u vCPUs, rd %u uf %u, around %s, delay %u us] "
		"kvm-handler %.0f pages/s = %.2fx kvm-plain's %.0f pages/s %s\n",
		pagein_backing_name(o->backing), o->vcpus, cases[1].readers, cases[1].uffds, ar,
		o->delay_us, hr->pps, hr->pps / pr->pps, pr->pps, EMULATED_NOTE);
	if (er) {
		uint64_t he = 0, hh = 0, ee = 0, eh = 0;

		for (unsigned i = 0; i < o->vcpus; i++) {
			he += hr->kvs[i].eom_exits;
			hh += hr->kvs[i].handler_faults;
			ee += er->kvs[i].eom_exits;
			eh += er->kvs[i].handler_faults;
		}
		/* the counts are what to trust here: they do not depend on the emulation */
		fprintf(tab, "exits vs handler threads: kvm-handler: %" PRIu64 " vCPU faults at the "
			"handler threads, %" PRIu64 " exits; kvm-exit: %" PRIu64 " exits resolved on "
			"the vCPU threads, %" PRIu64 " at the handler threads (per vCPU above); "
			"kvm-exit %.0f pages/s = %.2fx kvm-handler %s\n", hh, he, ee, eh, er->pps,
			er->pps / hr->pps, EMULATED_NOTE);
	}
	fflush(tab);
	free(img);
	image = NULL;
	return 0;
}

int cmd_bench(int argc, char **argv)
{
	static const unsigned matrix_vcpus[] = { 1, 2, 4, 8 };
	struct bench_case cases[8], handler_like;
	struct bench_opts o;
	unsigned i, n, maxv;

	for (i = 1; i < (unsigned)argc; i++)
		if (!strcmp(argv[i], "--net"))
			return bench_net(argc, argv);
	parse_opts(argc, argv, &o);
	tab = o.json ? stderr : stdout;
	signal(SIGALRM, watchdog);
	if (o.kvm)
		return bench_kvm(&o);
	if (o.restore)
		return bench_restore(&o);

	check_sizes(&o, o.per_vcpu);
	maxv = o.matrix ? 8 : o.vcpus;
	image_make(o.overlap ? o.per_vcpu : o.per_vcpu * maxv, o.seed);
	warm_up(&o, maxv, o.per_vcpu);
	print_header();
	if (!o.matrix) {
		n = make_cases(&o, o.vcpus, false, cases);
		run_group(&o, cases, n);
		return 0;
	}
	for (i = 0; i < sizeof(matrix_vcpus) / sizeof(matrix_vcpus[0]); i++) {
		n = make_cases(&o, matrix_vcpus[i], true, cases);
		run_group(&o, cases, n);
	}
	if (!o.baseline) {
		handler_like = cases[n - 1];
		print_headlines(&o, &handler_like);
	}
	return 0;
}
