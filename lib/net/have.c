// SPDX-License-Identifier: MIT
/*
 * have.c - HAVE payloads (have.h): encode a window of the present bitmap as runs or as a bitmap,
 * and decode one with every rule of docs/protocol.md checked before anything is reported.
 */
#include <endian.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "net/have.h"

static bool bit(const uint64_t *bm, uint64_t i)
{
	return bm[i / 64] >> (i % 64) & 1;
}

/* Runs of present pages in [first, first + count). */
static uint64_t count_runs(const uint64_t *bm, uint64_t first, uint64_t count)
{
	uint64_t i, runs = 0;
	bool prev = false;

	for (i = first; i < first + count; i++) {
		bool b = bit(bm, i);

		if (b && !prev)
			runs++;
		prev = b;
	}
	return runs;
}

uint64_t pi_have_window(size_t cap)
{
	return cap <= sizeof(struct pn_have) ? 0 : (uint64_t)(cap - sizeof(struct pn_have)) * 8;
}

static void put64(uint8_t *p, uint64_t v)
{
	v = htole64(v);
	memcpy(p, &v, 8);
}

static uint64_t get64(const uint8_t *p)
{
	uint64_t v;

	memcpy(&v, p, 8);
	return le64toh(v);
}

ssize_t pi_have_encode(const uint64_t *present, uint64_t first, uint64_t count, bool last,
		       uint8_t *out, size_t cap)
{
	uint64_t runs, rsize, bsize, i, j;
	struct pn_have h;
	uint8_t *p;

	if (!count || first + count < first)
		return -EINVAL;
	runs = count_runs(present, first, count);
	rsize = sizeof(h) + 16 * runs;
	bsize = sizeof(h) + (count + 7) / 8;
	h.last = htole32(last ? 1 : 0);
	h.first = htole64(first);
	h.count = htole64(count);
	p = out + sizeof(h);
	if (rsize <= bsize) {
		if (rsize > cap)
			return -ENOSPC;
		h.encoding = htole32(PN_HAVE_RANGES);
		for (i = first; i < first + count;) {
			if (!bit(present, i)) {
				i++;
				continue;
			}
			for (j = i; j < first + count && bit(present, j); j++)
				;
			put64(p, i);
			put64(p + 8, j - i);
			p += 16;
			i = j;
		}
		memcpy(out, &h, sizeof(h));
		return (ssize_t)rsize;
	}
	if (bsize > cap)
		return -ENOSPC;
	h.encoding = htole32(PN_HAVE_BITMAP);
	memset(p, 0, (count + 7) / 8);
	for (i = 0; i < count; i++)
		if (bit(present, first + i))
			p[i / 8] |= (uint8_t)(1u << (i % 8));
	memcpy(out, &h, sizeof(h));
	return (ssize_t)bsize;
}

/* Report the window's runs (present and absent) from a checked body. */
static void report(const struct pn_have *h, const uint8_t *pl, size_t plen, pi_have_fn fn,
		   void *arg)
{
	uint64_t pos = h->first, end = h->first + h->count, i, s, n;
	size_t k;

	if (h->encoding == PN_HAVE_RANGES) {
		for (k = 0; k < plen / 16; k++) {
			s = get64(pl + 16 * k);
			n = get64(pl + 16 * k + 8);
			if (s > pos)
				fn(arg, pos, s - pos, false);
			fn(arg, s, n, true);
			pos = s + n;
		}
		if (pos < end)
			fn(arg, pos, end - pos, false);
		return;
	}
	for (i = 0; i < h->count;) {
		bool b = pl[i / 8] >> (i % 8) & 1;

		for (n = i + 1; n < h->count && (bool)(pl[n / 8] >> (n % 8) & 1) == b; n++)
			;
		fn(arg, h->first + i, n - i, b);
		i = n;
	}
}

int pi_have_decode(const uint8_t *body, size_t len, uint64_t total, uint64_t *next, bool *last,
		   pi_have_fn fn, void *arg, char *why, size_t whylen)
{
	const uint8_t *pl = body + sizeof(struct pn_have);
	size_t plen = len - sizeof(struct pn_have), k;
	uint64_t prev_end, s, n;
	struct pn_have h;

	if (len < sizeof(h)) {
		snprintf(why, whylen, "HAVE of %zu bytes is shorter than its header", len);
		return -EINVAL;
	}
	memcpy(&h, body, sizeof(h));
	h.encoding = le32toh(h.encoding);
	h.last = le32toh(h.last);
	h.first = le64toh(h.first);
	h.count = le64toh(h.count);
	if (h.last > 1) {
		snprintf(why, whylen, "HAVE with last = %u (0 or 1)", h.last);
		return -EINVAL;
	}
	if (!h.count || h.first < *next || h.first > total || h.count > total - h.first) {
		snprintf(why, whylen, "HAVE window [%llu, +%llu) is empty, overlaps the previous one "
			 "(which ended at %llu) or passes the image's %llu pages",
			 (unsigned long long)h.first, (unsigned long long)h.count,
			 (unsigned long long)*next, (unsigned long long)total);
		return -EINVAL;
	}
	switch (h.encoding) {
	case PN_HAVE_RANGES:
		if (plen % 16) {
			snprintf(why, whylen, "HAVE ranges: %zu payload bytes is not a whole number "
				 "of 16-byte runs", plen);
			return -EINVAL;
		}
		prev_end = h.first;
		for (k = 0; k < plen / 16; k++) {
			s = get64(pl + 16 * k);
			n = get64(pl + 16 * k + 8);
			/* in order, inside the window, not empty, and not touching the previous run
			 * (k > 0: a gap of at least one absent page) */
			if (!n || s < prev_end + (k ? 1 : 0) || s < prev_end ||
			    s - h.first >= h.count || n > h.count - (s - h.first)) {
				snprintf(why, whylen, "HAVE range %zu [%llu, +%llu) is empty, out of "
					 "order, touches the one before or leaves the window "
					 "[%llu, +%llu)", k, (unsigned long long)s,
					 (unsigned long long)n, (unsigned long long)h.first,
					 (unsigned long long)h.count);
				return -EINVAL;
			}
			prev_end = s + n;
		}
		break;
	case PN_HAVE_BITMAP:
		if (plen != (h.count + 7) / 8 || (h.count % 8 && pl[plen - 1] >> (h.count % 8))) {
			snprintf(why, whylen, "HAVE bitmap of %zu bytes for %llu pages (%llu bytes, "
				 "bits past the window clear)", plen, (unsigned long long)h.count,
				 (unsigned long long)((h.count + 7) / 8));
			return -EINVAL;
		}
		break;
	default:
		snprintf(why, whylen, "HAVE with an unknown encoding %u", h.encoding);
		return -EINVAL;
	}
	report(&h, pl, plen, fn, arg);
	*next = h.first + h.count;
	*last = h.last;
	return 0;
}
