// SPDX-License-Identifier: MIT
/*
 * fuzz_have.c - libFuzzer target for the HAVE decoder (lib/net/have.c), untrusted bytes from a
 * resuming destination. The first byte picks the mode: decode the rest as a HAVE body (runs
 * reported must be in order and cover the window exactly, or nothing may be reported), or treat
 * the rest as a present bitmap and check that encode + decode gives it back.
 */
#include <endian.h>
#include <stdlib.h>
#include <string.h>

#include "net/have.h"

struct seen {
	uint64_t next, first, n;
	unsigned calls;
	uint64_t *bm;
};

static void apply(void *arg, uint64_t start, uint64_t n, bool present)
{
	struct seen *s = arg;
	uint64_t i;

	if (!n || (s->calls && start != s->next))
		abort();
	if (!s->calls)
		s->first = start;
	s->next = start + n;
	s->n += n;
	s->calls++;
	if (s->bm && present)
		for (i = start; i < start + n; i++)
			s->bm[i / 64] |= 1ull << (i % 64);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char why[256];
	bool last = false;

	if (size < 1)
		return 0;
	if (data[0] & 1) {
		/* a HAVE body against an image of total pages (from the next 4 bytes) */
		struct seen s = { 0 };
		uint64_t next = 0, total = 1u << 20, count;
		uint32_t t;
		int ret;

		if (size >= 5) {
			memcpy(&t, data + 1, 4);
			total = t ? t : 1;
			data += 4;
			size -= 4;
		}
		ret = pi_have_decode(data + 1, size - 1, total, &next, &last, apply, &s, why,
				     sizeof(why));
		if (ret) {
			if (s.calls || !why[0])
				abort();
			return 0;
		}
		memcpy(&count, data + 1 + 16, 8);
		count = le64toh(count);
		if (s.n != count || s.next != next || next > total)
			abort();
		return 0;
	}
	/* round trip: the rest (its first 512 bytes: 4096 pages, plenty for every run shape) is a
	 * bitmap; the window is the whole of it */
	{
		size_t nbytes = size - 1 < 512 ? size - 1 : 512;
		size_t nbits = nbytes * 8, words = (nbits + 63) / 64;
		uint64_t *bm = calloc(words ? words : 1, 8), *back = calloc(words ? words : 1, 8);
		uint8_t *out = malloc(24 + nbytes + 64);
		struct seen s = { .bm = back };
		uint64_t next = 0;
		ssize_t len;

		if (!bm || !back || !out)
			abort();
		memcpy(bm, data + 1, nbytes);
		if (nbits) {
			len = pi_have_encode(bm, 0, nbits, true, out, 24 + nbytes + 64);
			if (len < 0 || (size_t)len > 24 + (nbits + 7) / 8)
				abort();
			if (pi_have_decode(out, (size_t)len, nbits, &next, &last, apply, &s, why,
					   sizeof(why)) || !last || next != nbits ||
			    memcmp(bm, back, words * 8))
				abort();
		}
		free(bm);
		free(back);
		free(out);
	}
	return 0;
}
