// SPDX-License-Identifier: MIT
/*
 * util.c - small shared helpers: the log sink, clocks, futex wait/wake, zero-page detection,
 * configuration defaults and the names of front-ends and backings.
 */
#include <errno.h>
#include <linux/futex.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "internal.h"

/* The build passes the VERSION file's contents; a bare build of this file still says which. */
#ifndef PAGEIN_VERSION_STR
#define PAGEIN_VERSION_STR "0.2.0"
#endif

struct pi_test_hooks pi_hooks;

const char *pagein_version(void)
{
	return PAGEIN_VERSION_STR;
}

void pagein_config_init(struct pagein_config *cfg)
{
	memset(cfg, 0, sizeof(*cfg));
	cfg->size = sizeof(*cfg);
	cfg->frontend = PAGEIN_FRONTEND_SELF;
	cfg->readers = 1;
	cfg->uffds = 1;
	cfg->fault_around = PAGEIN_AROUND_AUTO;
	cfg->timeout_ms = 10000;
	cfg->frozen_policy = PAGEIN_FROZEN_WAIT;
	cfg->fill_batch = 64;
}

/* Formats into a stack buffer: never called from a signal handler (vsnprintf is not safe). */
void pi_log(struct pagein_space *s, int level, const char *fmt, ...)
{
	char msg[512];
	va_list ap;

	if (!s || !s->cfg.log)
		return;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	s->cfg.log(s->cfg.log_arg, level, msg);
}

uint64_t pi_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/*
 * Sleep while *word == val, until deadline_ns (CLOCK_MONOTONIC, 0 = forever). Returns 0 when
 * woken or the word changed, -ETIMEDOUT past the deadline. Async-signal-safe.
 */
int pi_futex_wait(_Atomic uint32_t *word, uint32_t val, uint64_t deadline_ns)
{
	struct timespec ts, *tsp = NULL;

	if (deadline_ns) {
		ts.tv_sec = (time_t)(deadline_ns / 1000000000ull);
		ts.tv_nsec = (long)(deadline_ns % 1000000000ull);
		tsp = &ts;
	}
	/* FUTEX_WAIT_BITSET takes an absolute CLOCK_MONOTONIC deadline */
	if (syscall(SYS_futex, word, FUTEX_WAIT_BITSET | FUTEX_PRIVATE_FLAG, val, tsp, NULL,
		    FUTEX_BITSET_MATCH_ANY) < 0 && errno == ETIMEDOUT)
		return -ETIMEDOUT;
	return 0;
}

void pi_futex_wake(_Atomic uint32_t *word)
{
	syscall(SYS_futex, word, FUTEX_WAKE | FUTEX_PRIVATE_FLAG, INT32_MAX, NULL, NULL, 0);
}

/* Whole-page zero test; non-zero data usually exits at the first word. */
bool pi_is_zero(const void *p, uint64_t len)
{
	const uint64_t *w = p;
	uint64_t i, acc = 0;

	if (w[0] || w[len / 8 - 1])
		return false;
	for (i = 0; i < len / 8; i += 8) {
		acc |= w[i] | w[i + 1] | w[i + 2] | w[i + 3] | w[i + 4] | w[i + 5] | w[i + 6] | w[i + 7];
		if (acc)
			return false;
	}
	return true;
}

const char *pagein_frontend_name(enum pagein_frontend fe)
{
	switch (fe) {
	case PAGEIN_FRONTEND_SELF:
		return "self";
	case PAGEIN_FRONTEND_HANDLER:
		return "handler";
	}
	return "?";
}

const char *pagein_backing_name(enum pagein_backing b)
{
	switch (b) {
	case PAGEIN_BACKING_ANON:
		return "anon";
	case PAGEIN_BACKING_SHMEM:
		return "shmem";
	case PAGEIN_BACKING_HUGETLB:
		return "hugetlb";
	}
	return "?";
}

uint64_t pagein_backing_page_size(enum pagein_backing b)
{
	return b == PAGEIN_BACKING_HUGETLB ? 2ull << 20 : 4096;
}

int pi_say(char *err, size_t errlen, int ret, const char *fmt, ...)
{
	va_list ap;

	if (err && errlen) {
		va_start(ap, fmt);
		vsnprintf(err, errlen, fmt, ap);
		va_end(ap);
	}
	return ret;
}
