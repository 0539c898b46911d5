// SPDX-License-Identifier: MIT
/*
 * helpers.c - shared test helpers: exits, the seeded victim pattern, capability probes and the
 * log sink (see helpers.h).
 */
#include <fcntl.h>
#include <stdarg.h>
#include <sys/mman.h>
#include <sys/syscall.h>
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

void t_log(void *arg, int level, const char *msg)
{
	snprintf(t_last_log, sizeof(t_last_log), "%s", msg);
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
