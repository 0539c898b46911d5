/* SPDX-License-Identifier: MIT */
/*
 * pattern.h - the one seeded page pattern of the tree: what `pagein mksnap`, `serve --generate`
 * and `demo` generate, what the benchmark serves and the tests and the vCPU harness check.
 * Header-only (static inline) so the command, the bench, the test helpers and the static KVM
 * programs all use the same code without another object to link. It lives with the command
 * because the command ships it (the snapshots it writes); tests and bench only consume it.
 */
#ifndef PAGEIN_PATTERN_H
#define PAGEIN_PATTERN_H

#include <stdbool.h>
#include <stdint.h>

/* The 8 bytes at guest address gpa (8-aligned) for seed: a mix of both (splitmix64's
 * finalizer), different for every word and seed, and never zero, so a zero page is always a
 * deliberate one. */
static inline uint64_t pattern_word(uint64_t seed, uint64_t gpa)
{
	uint64_t x = (gpa >> 3) * 0x9e3779b97f4a7c15ull ^ seed * 0xbf58476d1ce4e5b9ull;

	x ^= x >> 31;
	x *= 0x94d049bb133111ebull;
	x ^= x >> 29;
	return x | 1;
}

/* Whether the 4 KiB page holding gpa is one of the deliberate zero pages: every zero_every-th
 * page (0 = none). */
static inline bool pattern_zero_page(uint64_t gpa, unsigned zero_every)
{
	return zero_every && (gpa >> 12) % zero_every == 0;
}

/* The word at gpa, zero pages included. */
static inline uint64_t pattern_at(uint64_t seed, uint64_t gpa, unsigned zero_every)
{
	return pattern_zero_page(gpa, zero_every) ? 0 : pattern_word(seed, gpa);
}

/* Fill buf, the image of guest addresses [gpa, gpa + len) (len a multiple of 8), with the
 * pattern. */
static inline void pattern_fill(void *buf, uint64_t gpa, uint64_t len, uint64_t seed,
				unsigned zero_every)
{
	uint64_t *w = buf;

	for (uint64_t i = 0; i < len / 8; i++)
		w[i] = pattern_at(seed, gpa + i * 8, zero_every);
}

/* The first guest address in [gpa, gpa + len) whose word differs from the pattern, or
 * UINT64_MAX when every word matches. */
static inline uint64_t pattern_check(const void *buf, uint64_t gpa, uint64_t len, uint64_t seed,
				     unsigned zero_every)
{
	const uint64_t *w = buf;

	for (uint64_t i = 0; i < len / 8; i++)
		if (w[i] != pattern_at(seed, gpa + i * 8, zero_every))
			return gpa + i * 8;
	return UINT64_MAX;
}

#endif
