// SPDX-License-Identifier: MIT
/*
 * vcpus.c - the vCPU threads of `pagein bench` (each touches one byte per page of its slice,
 * timed per touch) and the two runs that are nothing but them: the kernel floor on plain
 * memory and the library with a memory source (optionally delayed per fetch).
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

#include "bench.h"

uint64_t cpu_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}


/* The injected fetch delay: sleep (a network wait leaves the CPU to others) or spin. */
void bench_delay(unsigned us, bool spin)
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


void vcpus_prepare(struct vcpu_set *s, const struct bench_case *c, bool overlap, bool rnd,
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

void vcpus_release(struct vcpu_set *s)
{
	free(s->v);
	free(s->order);
	free(s->lat);
}

/* Run the vCPUs over base once and fill the timing part of r. With fill_space, the background
 * fill starts just before the vCPUs do (the restore case). */
void vcpus_run(struct vcpu_set *s, uint8_t *base, struct bench_result *r,
		      struct pagein_space *fill_space)
{
	uint64_t c0, c1, slow = 0, start = 0, done = 0;
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
		start = now_ns();
		ret = pagein_fill_start(fill_space);
		if (ret)
			die("pagein_fill_start: %s", strerror(-ret));
	}
	pthread_barrier_wait(&s->barrier);
	for (t = 0; t < s->n; t++)
		pthread_join(s->v[t].tid, NULL);
	if (fill_space) {
		/* a restore is timed from the fill's start to full residency (every page present),
		 * which the vCPUs' last touch normally is */
		ret = pagein_wait_complete(fill_space, 600000);
		if (ret)
			die("pagein_wait_complete: %s", strerror(-ret));
		done = now_ns();
	}
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
	if (fill_space)
		slow = done - start;
	r->seconds = (double)(slow ? slow : 1) / 1e9;
	r->pps = (double)r->pages / r->seconds;
	qsort(s->lat, r->pages, sizeof(uint32_t), cmp_u32);
	r->p50_us = s->lat[(r->pages - 1) / 2] / 1e3;
	r->p99_us = s->lat[(r->pages - 1) * 99 / 100] / 1e3;
	r->cpu_us = (double)(c1 - c0) / 1e3;
}

/* Compare every page of [host, host+size) with the bench_image; die naming the first mismatch. */
void verify(const struct bench_case *c, const uint8_t *host, uint64_t size)
{
	uint64_t off, i;

	for (off = 0; off < size; off += BENCH_PAGE) {
		if (!memcmp(host + off, bench_image + off, BENCH_PAGE))
			continue;
		for (i = 0; i < BENCH_PAGE && host[off + i] == bench_image[off + i]; i++)
			;
		die("VERIFY FAILED: %s/%s, %u vCPUs: page %" PRIu64 " (gpa 0x%" PRIx64 ") byte %" PRIu64
		    " is 0x%02x, the source has 0x%02x", kind_name(c), backing_name(c), c->vcpus,
		    off / BENCH_PAGE, off + i, i, host[off + i], bench_image[off + i]);
	}
}

uint64_t region_size(const struct bench_case *c, bool overlap)
{
	return overlap ? c->per_vcpu : c->per_vcpu * c->vcpus;
}

/* ---------------------------------------------------------------------------------------------
 * Kernel floor: plain anonymous memory, no userfaultfd
 */

void run_floor(const struct bench_opts *o, const struct bench_case *c,
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
 * The library
 */


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

const struct pagein_source_ops delay_ops = {
	.fetch = delay_fetch,
	.direct = NULL,
	.destroy = delay_destroy,
	.covers = delay_covers,
};

void run_lib(const struct bench_opts *o, const struct bench_case *c,
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
		dsrc.img = bench_image;
		dsrc.base = 0;
		dsrc.len = size;
		dsrc.delay_us = o->delay_us;
		dsrc.spin = o->spin;
		ret = pagein_source_new(&delay_ops, &dsrc, &src);
	} else if (c->from_file) {
		ret = pagein_source_file_new(bench_snap_path, &src);
	} else {
		ret = pagein_source_mem_new(bench_image, 0, size, &src);
	}
	if (ret)
		die("creating the %s source: %s", c->from_file ? "snapshot file" : "memory",
		    strerror(-ret));
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
