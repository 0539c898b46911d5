/* SPDX-License-Identifier: MIT */
/*
 * have.h - the payload of HAVE (docs/protocol.md, version 2): a window of the destination's
 * present-page bitmap, as runs of present pages or as a bitmap, whichever is smaller; and its
 * decoder, which checks every rule of the message before it reports any of it. Pure functions:
 * no I/O, no allocation; any thread.
 */
#ifndef PAGEIN_NET_HAVE_H
#define PAGEIN_NET_HAVE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define PN_HAVE 9u           /* frame type */
#define PN_HAVE_RANGES 1u    /* payload: {start u64, len u64} runs of present pages */
#define PN_HAVE_BITMAP 2u    /* payload: one bit per page of the window, LSB first */

/* HAVE body header; the payload follows. Little-endian, packed. */
struct pn_have {
	uint32_t encoding; /* PN_HAVE_RANGES or PN_HAVE_BITMAP */
	uint32_t last;     /* 1 on the final HAVE of a resume, else 0 */
	uint64_t first;    /* first page index of the window */
	uint64_t count;    /* pages in the window, >= 1 */
} __attribute__((packed));

/*
 * Encode pages [first, first + count) of present (bit i of word i / 64 = page i) as one HAVE body
 * into out (cap bytes), in the smaller encoding. Returns the body's length, or -ENOSPC when
 * neither encoding fits in cap (use a smaller window: pi_have_window), -EINVAL for count 0.
 */
ssize_t pi_have_encode(const uint64_t *present, uint64_t first, uint64_t count, bool last,
		       uint8_t *out, size_t cap);

/* The largest window whose bitmap encoding fits in cap bytes (0 if none). */
uint64_t pi_have_window(size_t cap);

/* Called by pi_have_decode for consecutive runs that together cover the window exactly. */
typedef void (*pi_have_fn)(void *arg, uint64_t start, uint64_t n, bool present);

/*
 * Check one HAVE body (len bytes) of an image of total pages, whose window must start at or after
 * *next (the end of the previous window; 0 at first). Only when every rule holds, report the
 * window's runs of present and absent pages in order through fn, set *next to the window's end
 * and *last. Returns 0, or -EINVAL with the broken rule in why (nothing reported).
 */
int pi_have_decode(const uint8_t *body, size_t len, uint64_t total, uint64_t *next, bool *last,
		   pi_have_fn fn, void *arg, char *why, size_t whylen);

#endif
