/* SPDX-License-Identifier: MIT */
/*
 * pagestate.h - the state of every guest page (per-region bitmaps, atomics only) and the hashed
 * futex wait table that threads sleep in until a page changes. engine.c is the state machine
 * over these; every other file only reads the bits or goes through engine.c.
 *
 * Bits per page (one bitmap each in struct pi_region):
 *   present   installed and visible to the guest
 *   claimed   someone won the right to fetch it (a fetch is in flight, or it is done)
 *   failed    its fetch failed for good: poisoned (SIGBUS for a toucher), accessors -EIO
 *   frozen    accessors fail fast (-EFAULT), faults follow the frozen policy, nothing claims it
 *   parked    a FROZEN_FAIL fault poisoned it; thaw removes that poison
 *   unmapped  the program unmapped it (UNMAP event, or an install met ENOENT)
 *
 * States (frozen, parked and unmapped are orthogonal to the first four):
 *
 *   state      claimed present failed   entered by                   left by
 *   missing       0       0      0      (start)                      a claim
 *   in flight     1       0      0      claim (test_set, one winner) publish, fail, release
 *   present       1       1      0      publish, after the install   never (a discard re-maps
 *                                                                     it, engine.c remap)
 *   failed        1       0      1      fail_pages                   never
 *
 * Invariants (DESIGN §3; the comments in lib/ cite them by number):
 *   1. present is set only after the page is installed (seq_cst, after the ioctl returned), and
 *      never cleared. A page is fetched at most once: only the claim's winner fetches it; a
 *      claim is given back (release) only for pages never installed, never once present.
 *   2. The library never touches guest memory through the registered mapping: memfd pages are
 *      written through the alias mapping or the page cache, anonymous ones with ioctls.
 *   3. Everything a fault may run is async-signal-safe: these bits, the wait table, futexes.
 *   4. The kernel's races have one home, uffd.c (EEXIST, EAGAIN, ENOENT/ESRCH).
 *   5. Nothing waits for ever: every wait has the fault's deadline, or is released by stop.
 *   6. failed and unmapped pages keep their claim for ever, so nothing fetches them again; each
 *      missing page that gets unmapped is counted gone once, by whoever holds its claim.
 *   7. frozen, parked and a region's pin count change together under its pin_lock: a pinned
 *      range is never frozen, and a parked page stays frozen until its poison is gone (so no
 *      install meets the poison, whose EEXIST would publish a page that holds no bytes).
 *   8. Wake-ups are never lost: a waiter announces itself (waiters++) before it tests the bit;
 *      a publisher sets the bit before it reads waiters; a full fence on each side (Dekker).
 */
#ifndef PAGEIN_PAGESTATE_H
#define PAGEIN_PAGESTATE_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#define PAGEIN_WAIT_BUCKETS 256 /* wait-table buckets (power of two) */

typedef _Atomic uint64_t pi_bits_t; /* one word of a page bitmap */

/* Bit i (acquire: what the setter wrote before it is visible). */
static inline bool pi_test(pi_bits_t *bm, uint64_t i)
{
	return atomic_load_explicit(&bm[i >> 6], memory_order_acquire) & (1ull << (i & 63));
}

/* Bit i, read in the single total order of seq_cst operations (the Dekker sites). */
static inline bool pi_test_sc(pi_bits_t *bm, uint64_t i)
{
	return atomic_load_explicit(&bm[i >> 6], memory_order_seq_cst) & (1ull << (i & 63));
}

/* Set bit i; return whether it was already set. */
static inline bool pi_test_set(pi_bits_t *bm, uint64_t i, memory_order mo)
{
	return atomic_fetch_or_explicit(&bm[i >> 6], 1ull << (i & 63), mo) & (1ull << (i & 63));
}

static inline void pi_clear(pi_bits_t *bm, uint64_t i)
{
	atomic_fetch_and_explicit(&bm[i >> 6], ~(1ull << (i & 63)), memory_order_release);
}

/*
 * A full memory barrier between a store and a later load of another location. ThreadSanitizer
 * does not model fences (GCC refuses them under -fsanitize=thread); the seq_cst accesses at
 * each site already order it in the C11 model, which is what TSan checks.
 */
#if defined(__SANITIZE_THREAD__)
#define pi_full_fence() ((void)0)
#else
#define pi_full_fence() atomic_thread_fence(memory_order_seq_cst)
#endif

/* nmaps zeroed bitmaps of npages bits each, in one allocation (free the first). */
pi_bits_t *pi_bits_alloc(uint64_t npages, unsigned nmaps);
/* The first clear bit at or after i, below n; n when there is none. Relaxed reads: a hint. */
uint64_t pi_bits_next_clear(pi_bits_t *bm, uint64_t i, uint64_t n);

/* A wait-table bucket: a futex word bumped on every change to a page hashed here. */
struct pi_bucket {
	_Atomic uint32_t seq;     /* futex word */
	_Atomic uint32_t waiters; /* threads sleeping on seq: skip the wake syscall when 0 */
} __attribute__((aligned(64)));

/* The bucket of page idx of region number region. */
static inline struct pi_bucket *pi_bucket_for(struct pi_bucket *table, uint64_t region,
					      uint64_t idx)
{
	uint64_t h = (region << 40 ^ idx) * 0x9e3779b97f4a7c15ull;

	return &table[h >> 56 & (PAGEIN_WAIT_BUCKETS - 1)];
}

/*
 * Waiting on a bucket (invariant 8): seq = pi_wait_begin(b); test the page's bits; if the wait
 * must go on, pi_wait_sleep(b, seq, deadline); then test again, ...; pi_wait_end(b) once done.
 */
uint32_t pi_wait_begin(struct pi_bucket *b);
/* Sleep until the bucket changes after seq, or deadline (0: none). 0 or -ETIMEDOUT. */
int pi_wait_sleep(struct pi_bucket *b, uint32_t seq, uint64_t deadline_ns);
void pi_wait_end(struct pi_bucket *b);
/* After a page's bits changed: wake the bucket's sleepers (no syscall when there are none). */
void pi_bucket_wake(struct pi_bucket *b);

#endif /* PAGEIN_PAGESTATE_H */
