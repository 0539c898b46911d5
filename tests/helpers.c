// SPDX-License-Identifier: MIT
/*
 * helpers.c - shared test helpers: exits, the seeded victim pattern, capability probes and the
 * log sink (see helpers.h).
 */
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "helpers.h"

char t_last_log[512];

void t_skip(const char *fmt, ...)
{
	va_list ap;

	printf("SKIP: ");
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	printf("\n");
	exit(77);
}

void t_pass(const char *name)
{
	printf("PASS %s\n", name);
	exit(0);
}

uint64_t t_word(uint64_t seed, uint64_t gpa)
{
	uint64_t x = (gpa >> 3) * 0x9e3779b97f4a7c15ull ^ seed * 0xbf58476d1ce4e5b9ull;

	x ^= x >> 31;
	x *= 0x94d049bb133111ebull;
	x ^= x >> 29;
	return x | 1; /* never zero: a zero page is always a deliberate one */
}

static bool zero_page(uint64_t gpa, unsigned zero_every)
{
	return zero_every && (gpa >> 12) % zero_every == 0;
}

void t_fill(void *buf, uint64_t gpa, uint64_t len, uint64_t seed, unsigned zero_every)
{
	uint64_t *w = buf, i;

	for (i = 0; i < len / 8; i++)
		w[i] = zero_page(gpa + i * 8, zero_every) ? 0 : t_word(seed, gpa + i * 8);
}

uint64_t t_check(const void *buf, uint64_t gpa, uint64_t len, uint64_t seed, unsigned zero_every)
{
	const uint64_t *w = buf;
	uint64_t i, want;

	for (i = 0; i < len / 8; i++) {
		want = zero_page(gpa + i * 8, zero_every) ? 0 : t_word(seed, gpa + i * 8);
		if (w[i] != want)
			return gpa + i * 8;
	}
	return UINT64_MAX;
}

void t_require_uffd(void)
{
	struct pagein_space *s;
	int ret = pagein_space_new(NULL, &s);

	if (ret == -EPERM)
		t_skip("userfaultfd is not permitted for this user (run as root or set "
		       "vm.unprivileged_userfaultfd=1)");
	if (ret == -ENOSYS)
		t_skip("this kernel lacks userfaultfd or UFFD_FEATURE_SIGBUS");
	if (ret < 0) {
		fprintf(stderr, "FAIL: pagein_space_new: %s\n", strerror(-ret));
		exit(1);
	}
	pagein_space_free(s);
}

static long hugepages_free(void)
{
	char line[128];
	long v = -1;
	FILE *f = fopen("/proc/meminfo", "r");

	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "HugePages_Free: %ld", &v) == 1)
			break;
	fclose(f);
	return v;
}

void t_require_hugepages(unsigned n)
{
	long have = hugepages_free(), total = 0;
	FILE *f;

	if (have >= (long)n)
		return;
	f = fopen("/proc/sys/vm/nr_hugepages", "r+");
	if (f) {
		if (fscanf(f, "%ld", &total) == 1) {
			rewind(f);
			fprintf(f, "%ld\n", total + (long)n - (have > 0 ? have : 0));
		}
		fclose(f);
	}
	have = hugepages_free();
	if (have < (long)n)
		t_skip("needs %u free 2 MiB huge pages, %ld available (as root: echo %u > "
		       "/proc/sys/vm/nr_hugepages)",
		       n, have, n);
}

/* the library logs from its own threads too */
static pthread_mutex_t t_log_lock = PTHREAD_MUTEX_INITIALIZER;

void t_log(void *arg, int level, const char *msg)
{
	pthread_mutex_lock(&t_log_lock);
	snprintf(t_last_log, sizeof(t_last_log), "%s", msg);
	pthread_mutex_unlock(&t_log_lock);
	if (!getenv("T_QUIET"))
		fprintf(stderr, "  [pagein %d] %s\n", level, msg);
}

enum pagein_backing t_backing(const char *s)
{
	if (!strcmp(s, "anon"))
		return PAGEIN_BACKING_ANON;
	if (!strcmp(s, "shmem"))
		return PAGEIN_BACKING_SHMEM;
	if (!strcmp(s, "hugetlb"))
		return PAGEIN_BACKING_HUGETLB;
	fprintf(stderr, "unknown backing %s\n", s);
	exit(1);
}

enum pagein_frontend t_frontend(const char *s)
{
	if (!strcmp(s, "self"))
		return PAGEIN_FRONTEND_SELF;
	if (!strcmp(s, "handler"))
		return PAGEIN_FRONTEND_HANDLER;
	fprintf(stderr, "unknown front-end %s\n", s);
	exit(1);
}

uint64_t t_rand(uint64_t *state, uint64_t n)
{
	*state ^= *state << 13;
	*state ^= *state >> 7;
	*state ^= *state << 17;
	return *state % n;
}

static bool t_holds(uint64_t gpa, uint64_t len, uint64_t x)
{
	return x != UINT64_MAX && x >= gpa && x - gpa < len;
}

/* Async-signal-safe: atomics, nanosleep, memcpy. */
static int t_src_fetch(void *ctx, uint64_t gpa, void *dst, uint64_t len, uint64_t page_size,
		       uint64_t *zero_mask, uint64_t deadline_ns)
{
	struct t_src *t = ctx;
	uint64_t i;

	if (gpa < t->base || gpa + len > t->base + t->len)
		return -EINVAL;
	for (i = 0; i < len; i += 4096)
		atomic_fetch_add(&t->fetches[(gpa - t->base + i) / 4096], 1);
	if (t_holds(gpa, len, t->slow_gpa)) {
		struct timespec ts = { t->slow_us / 1000000, (long)(t->slow_us % 1000000) * 1000 };

		nanosleep(&ts, NULL);
	}
	if (t_holds(gpa, len, t->fail_gpa)) {
		if (!t->hang)
			return t->fail_err;
		for (;;) {
			struct timespec ts = { 0, 1000000 }, now;

			clock_gettime(CLOCK_MONOTONIC, &now);
			if (deadline_ns &&
			    (uint64_t)now.tv_sec * 1000000000ull + (uint64_t)now.tv_nsec >= deadline_ns)
				return -ETIMEDOUT;
			nanosleep(&ts, NULL);
		}
	}
	memcpy(dst, t->buf + (gpa - t->base), len);
	return 0;
}

static bool t_src_covers(void *ctx, uint64_t gpa, uint64_t len)
{
	struct t_src *t = ctx;

	return gpa >= t->base && gpa + len <= t->base + t->len;
}

int t_src_new(struct t_src *t, const void *buf, uint64_t base, uint64_t len,
	      struct pagein_source **out)
{
	static const struct pagein_source_ops ops = { .fetch = t_src_fetch, .covers = t_src_covers };

	t->buf = buf;
	t->base = base;
	t->len = len;
	t->fetches = calloc(len / 4096, sizeof(*t->fetches));
	t->slow_gpa = t->fail_gpa = UINT64_MAX;
	t->slow_us = 0;
	t->fail_err = -EIO;
	t->hang = false;
	if (!t->fetches)
		return -ENOMEM;
	return pagein_source_new(&ops, t, out);
}

unsigned t_src_fetches(struct t_src *t, uint64_t gpa)
{
	return atomic_load(&t->fetches[(gpa - t->base) / 4096]);
}

void t_space_make(struct t_space *t, const struct pagein_config *cfg, enum pagein_backing b,
		  uint64_t size, uint64_t seed)
{
	memset(t, 0, sizeof(*t));
	t->size = size;
	t->img = malloc(size);
	T_ASSERT(t->img);
	t_fill(t->img, 0, size, seed, 0);
	T_EQ(pagein_space_new(cfg, &t->s), 0);
	T_EQ(pagein_region_add(t->s, 0, size, b, (void **)&t->host), 0);
	T_EQ(t_src_new(&t->ts, t->img, 0, size, &t->src), 0);
	T_EQ(pagein_space_set_source(t->s, t->src), 0);
}

void t_space_free(struct t_space *t)
{
	pagein_space_free(t->s);
	pagein_source_free(t->src);
	free(t->ts.fetches);
	free(t->img);
}
