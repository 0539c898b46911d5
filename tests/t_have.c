// SPDX-License-Identifier: MIT
/*
 * t_have.c - HAVE payloads (lib/net/have.c): every kind of present bitmap (empty, full, sparse,
 * dense, alternating, random) survives encode + decode exactly, in the smaller encoding, split
 * into windows; and each broken rule of docs/protocol.md is refused with nothing reported.
 */
#include <endian.h>

#include "helpers.h"
#include "net/have.h"

#define TOTAL 70000u /* pages: not a multiple of 8 or 64 */

static uint64_t got[(TOTAL + 63) / 64];
static uint64_t reported; /* pages reported so far */
static uint64_t expect_next;
static unsigned calls;

static void apply(void *arg, uint64_t start, uint64_t n, bool present)
{
	uint64_t i;

	T_ASSERT(n > 0);
	T_EQ(start, expect_next); /* runs come in order and cover the window */
	expect_next = start + n;
	for (i = start; i < start + n; i++)
		if (present)
			got[i / 64] |= 1ull << (i % 64);
	reported += n;
	calls++;
}

/* Encode bm in windows of `win` pages, decode each, compare. Returns total encoded bytes. */
static size_t roundtrip(const uint64_t *bm, uint64_t win)
{
	static uint8_t buf[1 << 16];
	uint64_t first, next = 0;
	size_t total = 0;
	char why[256];
	bool last = false;

	memset(got, 0, sizeof(got));
	reported = 0;
	expect_next = 0;
	for (first = 0; first < TOTAL; first += win) {
		uint64_t n = TOTAL - first < win ? TOTAL - first : win;
		ssize_t len = pi_have_encode(bm, first, n, first + n == TOTAL, buf, sizeof(buf));
		uint32_t enc;

		T_ASSERT(len > 0);
		memcpy(&enc, buf, 4);
		/* the smaller encoding: ranges never longer than the bitmap would be */
		if (le32toh(enc) == PN_HAVE_RANGES)
			T_ASSERT((size_t)len <= sizeof(struct pn_have) + (n + 7) / 8);
		total += (size_t)len;
		T_EQ(pi_have_decode(buf, (size_t)len, TOTAL, &next, &last, apply, NULL, why,
				    sizeof(why)), 0);
		T_EQ(next, first + n);
	}
	T_ASSERT(last);
	T_EQ(reported, TOTAL);
	T_ASSERT(memcmp(got, bm, sizeof(got)) == 0);
	return total;
}

static void refused(const uint8_t *b, size_t len, uint64_t next, const char *what)
{
	char why[256] = "";
	bool last = false;
	uint64_t n = next;
	unsigned before = calls;

	T_EQ(pi_have_decode(b, len, TOTAL, &n, &last, apply, NULL, why, sizeof(why)), -EINVAL);
	T_EQ(calls, before); /* nothing reported */
	T_EQ(n, next);
	T_ASSERT(why[0]);
	printf("refused (%s): %s\n", what, why);
}

struct body {
	struct pn_have h;
	uint64_t r[8];
} __attribute__((packed));

static size_t mk(struct body *b, uint32_t enc, uint64_t first, uint64_t count, unsigned nr,
		 const uint64_t *r)
{
	unsigned i;

	memset(b, 0, sizeof(*b));
	b->h.encoding = htole32(enc);
	b->h.first = htole64(first);
	b->h.count = htole64(count);
	for (i = 0; i < 2 * nr; i++)
		b->r[i] = htole64(r[i]);
	return sizeof(b->h) + 16 * nr;
}

int main(void)
{
	static uint64_t bm[(TOTAL + 63) / 64];
	uint64_t rng = 7, i;
	struct body b;
	size_t sz;

	/* empty, full, sparse, dense, alternating, random; windows of several sizes */
	sz = roundtrip(bm, TOTAL);
	T_EQ(sz, sizeof(struct pn_have)); /* no run at all */
	for (i = 0; i < TOTAL; i++)
		bm[i / 64] |= 1ull << (i % 64);
	T_EQ(roundtrip(bm, TOTAL), sizeof(struct pn_have) + 16); /* one run */
	roundtrip(bm, 1000);
	memset(bm, 0, sizeof(bm));
	for (i = 0; i < TOTAL; i += 997)
		bm[i / 64] |= 1ull << (i % 64);
	roundtrip(bm, 4096);
	for (i = 0; i < TOTAL; i++)
		if (i % 1000)
			bm[i / 64] |= 1ull << (i % 64);
	roundtrip(bm, 33333);
	for (i = 0; i < TOTAL; i++)
		if (i % 2)
			bm[i / 64] |= 1ull << (i % 64);
		else
			bm[i / 64] &= ~(1ull << (i % 64));
	sz = roundtrip(bm, 65536);
	T_ASSERT(sz <= 2 * sizeof(struct pn_have) + TOTAL / 8 + 1); /* bitmaps, not runs */
	for (i = 0; i < TOTAL; i++)
		if (t_rand(&rng, 3) == 0)
			bm[i / 64] ^= 1ull << (i % 64);
	roundtrip(bm, 7);
	roundtrip(bm, 50000);
	T_EQ(pi_have_encode(bm, 0, 50000, true, (uint8_t *)&b, sizeof(b)), -ENOSPC);
	T_EQ(pi_have_encode(bm, 0, 0, true, (uint8_t *)&b, sizeof(b)), -EINVAL);

	/* each broken rule */
	{
		uint64_t ok[] = { 10, 5, 20, 5 }, touch[] = { 10, 5, 15, 5 }, order[] = { 20, 5, 10, 5 },
			 empty[] = { 10, 0 }, out[] = { 95, 10 }, before[] = { 99, 1 },
			 wrap[] = { 100, UINT64_MAX };

		sz = mk(&b, PN_HAVE_RANGES, 0, 100, 2, ok);
		refused((uint8_t *)&b, sz - 1, 0, "ranges not whole");
		refused((uint8_t *)&b, 10, 0, "shorter than the header");
		sz = mk(&b, PN_HAVE_RANGES, 0, 100, 2, touch);
		refused((uint8_t *)&b, sz, 0, "touching runs");
		sz = mk(&b, PN_HAVE_RANGES, 0, 100, 2, order);
		refused((uint8_t *)&b, sz, 0, "runs out of order");
		sz = mk(&b, PN_HAVE_RANGES, 0, 100, 1, empty);
		refused((uint8_t *)&b, sz, 0, "an empty run");
		sz = mk(&b, PN_HAVE_RANGES, 0, 100, 1, out);
		refused((uint8_t *)&b, sz, 0, "a run past the window");
		sz = mk(&b, PN_HAVE_RANGES, 100, 100, 1, before);
		refused((uint8_t *)&b, sz, 0, "a run before the window");
		sz = mk(&b, PN_HAVE_RANGES, 100, 100, 1, wrap);
		refused((uint8_t *)&b, sz, 0, "a run that wraps");
		sz = mk(&b, PN_HAVE_RANGES, 0, 100, 0, NULL);
		refused((uint8_t *)&b, sz, 50, "a window overlapping the previous one");
		sz = mk(&b, PN_HAVE_RANGES, TOTAL - 10, 11, 0, NULL);
		refused((uint8_t *)&b, sz, 0, "a window past the image");
		sz = mk(&b, PN_HAVE_RANGES, 0, 0, 0, NULL);
		refused((uint8_t *)&b, sz, 0, "an empty window");
		sz = mk(&b, 3, 0, 100, 0, NULL);
		refused((uint8_t *)&b, sz, 0, "an unknown encoding");
		sz = mk(&b, PN_HAVE_RANGES, 0, 100, 0, NULL);
		b.h.last = htole32(2);
		refused((uint8_t *)&b, sz, 0, "last = 2");
		/* a bitmap of 12 pages: 2 bytes, bits past 12 clear */
		sz = mk(&b, PN_HAVE_BITMAP, 0, 12, 0, NULL);
		refused((uint8_t *)&b, sz + 1, 0, "a bitmap one byte short");
		refused((uint8_t *)&b, sz + 3, 0, "a bitmap one byte long");
		((uint8_t *)&b)[sz + 1] = 0x10;
		refused((uint8_t *)&b, sz + 2, 0, "a bit past the window");
	}
	t_pass("t_have");
}
