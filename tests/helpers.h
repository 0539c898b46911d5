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
