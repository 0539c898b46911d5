/* SPDX-License-Identifier: MIT */
/*
 * helpers.h - what the test programs share: an assert that prints file:line, the expression and
 * errno; skip/pass exits (0 pass, 1 fail, 77 skip with the reason printed); the seeded victim
 * pattern; capability probes (userfaultfd, huge pages); a log sink that keeps the last message.
 */
#ifndef PAGEIN_TEST_HELPERS_H
#define PAGEIN_TEST_HELPERS_H

#include <errno.h>
#include <stdbool.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pagein.h"

#define T_ASSERT(expr)                                                                         \
	do {                                                                                   \
		if (!(expr)) {                                                                 \
			int e_ = errno;                                                        \
			fprintf(stderr, "FAIL %s:%d: %s (errno %d %s)\n", __FILE__, __LINE__,  \
				#expr, e_, strerror(e_));                                      \
			exit(1);                                                               \
		}                                                                              \
	} while (0)

/* Assert a -errno style call returned want; print both on mismatch. */
#define T_EQ(got, want)                                                                        \
	do {                                                                                   \
		long long g_ = (long long)(got), w_ = (long long)(want);                       \
		if (g_ != w_) {                                                                \
			fprintf(stderr, "FAIL %s:%d: %s = %lld (%s), want %lld\n", __FILE__,   \
				__LINE__, #got, g_, g_ < 0 ? strerror((int)-g_) : "", w_);     \
			exit(1);                                                               \
		}                                                                              \
	} while (0)

/* Print why and exit 77. */
void t_skip(const char *fmt, ...) __attribute__((noreturn, format(printf, 1, 2)));
/* Print "PASS name" and exit 0. */
void t_pass(const char *name) __attribute__((noreturn));

/* The victim pattern: 8 bytes at guest address gpa for seed. Never all-zero pages unless
 * zero_every divides the page number (to exercise zero pages). */
uint64_t t_word(uint64_t seed, uint64_t gpa);
/* Fill buf (guest addresses [gpa, gpa+len)) with the pattern; every zero_every-th 4 KiB page
 * stays zero (0 = none). */
void t_fill(void *buf, uint64_t gpa, uint64_t len, uint64_t seed, unsigned zero_every);
/* Check buf against the pattern; returns the first bad gpa, or UINT64_MAX when all match. */
uint64_t t_check(const void *buf, uint64_t gpa, uint64_t len, uint64_t seed, unsigned zero_every);

/* Skip unless userfaultfd with the SIGBUS feature works here. */
void t_require_uffd(void);
/* Make sure n huge pages of 2 MiB can be had (raising vm.nr_hugepages as root), else skip. */
void t_require_hugepages(unsigned n);

/* Log sink for pagein_config.log: prints to stderr and keeps the last message. */
void t_log(void *arg, int level, const char *msg);
extern char t_last_log[512];

/* Parse "anon|shmem|hugetlb" and "self|handler"; exit 1 on anything else. */
enum pagein_backing t_backing(const char *s);
enum pagein_frontend t_frontend(const char *s);

/* Random number in [0, n) from a per-caller state. */
uint64_t t_rand(uint64_t *state, uint64_t n);

#endif

/* A test source over a buffer that counts fetches per 4 KiB page and can be slow, fail, or hang
 * (until the fetch's deadline, then -ETIMEDOUT) for ranges holding chosen addresses. */
struct t_src {
	const uint8_t *buf;        /* image of [base, base+len) */
	uint64_t base, len;
	_Atomic unsigned *fetches; /* per 4 KiB page; allocated by t_src_new */
	uint64_t slow_gpa;         /* fetches holding it sleep slow_us (UINT64_MAX: none) */
	unsigned slow_us;
	uint64_t fail_gpa;         /* fetches holding it fail with fail_err (UINT64_MAX: none) */
	int fail_err;
	bool hang;                 /* fail_gpa hangs until the deadline instead */
};
/* Set defaults (nothing slow, nothing failing) and wrap t as a source. */
int t_src_new(struct t_src *t, const void *buf, uint64_t base, uint64_t len,
	      struct pagein_source **out);
/* Fetches of the page holding gpa so far. */
unsigned t_src_fetches(struct t_src *t, uint64_t gpa);
/* A simple space: one region of size bytes at gpa 0 with backing b, the pattern in a t_src.
 * Returns the host address; *img gets the image. */
struct t_space {
	struct pagein_space *s;
	struct pagein_source *src;
	struct t_src ts;
	uint8_t *host;
	void *img;
	uint64_t size;
};
void t_space_make(struct t_space *t, const struct pagein_config *cfg, enum pagein_backing b,
		  uint64_t size, uint64_t seed);
void t_space_free(struct t_space *t);
