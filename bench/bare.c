// SPDX-License-Identifier: MIT
/*
 * bare.c - the bare-loop baselines of `pagein bench`: each front-end's kernel work without the
 * library (a SIGBUS handler doing one install per fault; one reader thread: poll, read,
 * install), over the same vCPU threads, so a library row can be divided by its bare row.
 */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>
#include <fcntl.h>
#include <linux/userfaultfd.h>
#include <poll.h>
#include <signal.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>

#include "bench.h"

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

__thread uint64_t bare_self_faults;

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

const char *uffd_hint(int err)
{
	if (err == EPERM)
		return " (run as root, or set vm.unprivileged_userfaultfd=1)";
	if (err == ENOSYS)
		return " (the kernel has no userfaultfd: CONFIG_USERFAULTFD)";
	return "";
}

void run_bare(const struct bench_opts *o, const struct bench_case *c,
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
	bare.img = bench_image;
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
 * The kernel's install rate: what a restore is measured against
 */

#define INSTALL_CHUNK ((uint64_t)2 << 20) /* bytes per UFFDIO_COPY */

void run_install(const struct bench_opts *o, const struct bench_case *c, struct bench_result *r)
{
	uint64_t size = c->per_vcpu, off, chunk, n = 0, t0, t, prev, c0;
	struct uffdio_register reg;
	struct uffdio_api api;
	struct uffdio_copy copy;
	uint32_t *lat;
	uint8_t *m;
	int uffd;

	(void)o;
	lat = malloc((size / INSTALL_CHUNK + 1) * sizeof(*lat));
	if (!lat)
		die("out of memory");
	/* the same mapping as a library anon region: private, anonymous, no reserve */
	m = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE,
		 -1, 0);
	if (m == MAP_FAILED)
		die("mmap %" PRIu64 " bytes: %s", size, strerror(errno));
	uffd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK);
	if (uffd < 0)
		die("userfaultfd: %s%s", strerror(errno), uffd_hint(errno));
	memset(&api, 0, sizeof(api));
	api.api = UFFD_API;
	if (ioctl(uffd, UFFDIO_API, &api))
		die("UFFDIO_API: %s", strerror(errno));
	memset(&reg, 0, sizeof(reg));
	reg.range.start = (uintptr_t)m;
	reg.range.len = size;
	reg.mode = UFFDIO_REGISTER_MODE_MISSING;
	if (ioctl(uffd, UFFDIO_REGISTER, &reg))
		die("UFFDIO_REGISTER anon: %s", strerror(errno));

	c0 = cpu_ns();
	t0 = prev = now_ns();
	for (off = 0; off < size; off += chunk) {
		chunk = size - off < INSTALL_CHUNK ? size - off : INSTALL_CHUNK;
		copy.dst = (uintptr_t)m + off;
		copy.src = (uintptr_t)bench_image + off;
		copy.len = chunk;
		copy.mode = 0;
		copy.copy = 0;
		if (ioctl(uffd, UFFDIO_COPY, &copy))
			die("UFFDIO_COPY at offset %" PRIu64 ": %s", off, strerror(errno));
		t = now_ns();
		lat[n++] = t - prev > UINT32_MAX ? UINT32_MAX : (uint32_t)(t - prev);
		prev = t;
	}
	r->cpu_us = (double)(cpu_ns() - c0) / 1e3;
	r->pages = size / BENCH_PAGE;
	r->seconds = (double)(prev - t0 > 0 ? prev - t0 : 1) / 1e9;
	r->pps = (double)r->pages / r->seconds;
	r->vcpu_pps = calloc(1, sizeof(double));
	if (!r->vcpu_pps)
		die("out of memory");
	r->vcpu_pps[0] = r->vcpu_min = r->vcpu_max = r->pps;
	/* latency quantiles here are per ioctl (one 2 MiB chunk), not per page */
	qsort(lat, n, sizeof(*lat), cmp_u32);
	r->p50_us = lat[(n - 1) / 2] / 1e3;
	r->p99_us = lat[(n - 1) * 99 / 100] / 1e3;
	r->faults = 0;
	verify(c, m, size);
	close(uffd);
	munmap(m, size);
	free(lat);
}
