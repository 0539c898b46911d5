// SPDX-License-Identifier: MIT
/*
 * pagestate.c - page bitmaps and the futex wait table (the states and invariants are written
 * out in pagestate.h). Async-signal-safe except pi_bits_alloc.
 */
#include <stdlib.h>

#include "internal.h"

pi_bits_t *pi_bits_alloc(uint64_t npages, unsigned nmaps)
{
	return calloc(((npages + 63) / 64) * nmaps, sizeof(pi_bits_t));
}

uint64_t pi_bits_next_clear(pi_bits_t *bm, uint64_t i, uint64_t n)
{
	uint64_t w, bits;

	while (i < n) {
		w = i >> 6;
		bits = ~atomic_load_explicit(&bm[w], memory_order_relaxed) & (~0ull << (i & 63));
		if (bits) {
			i = (w << 6) + (uint64_t)__builtin_ctzll(bits);
			return i < n ? i : n;
		}
		i = (w + 1) << 6;
	}
	return n;
}

uint32_t pi_wait_begin(struct pi_bucket *b)
{
	uint32_t seq = atomic_load(&b->seq);

	atomic_fetch_add(&b->waiters, 1);
	/*
	 * Invariant 8 (Dekker): we store waiters, then the caller loads the page bit; the
	 * publisher stores the bit, then loads waiters (pi_bucket_wake). Unless each side's load
	 * is ordered after its own store, a weakly ordered CPU lets both loads pass, so that we
	 * miss the bit and the publisher misses us: a lost wake-up, slept until the deadline. An
	 * acquire load does not prevent that even after a seq_cst RMW; a full fence does, and so
	 * do seq_cst loads (pi_test_sc: all four accesses in one total order).
	 */
	pi_full_fence();
	return seq;
}

int pi_wait_sleep(struct pi_bucket *b, uint32_t seq, uint64_t deadline_ns)
{
	return pi_futex_wait(&b->seq, seq, deadline_ns);
}

void pi_wait_end(struct pi_bucket *b)
{
	atomic_fetch_sub(&b->waiters, 1);
}

void pi_bucket_wake(struct pi_bucket *b)
{
	/* the publisher's half of the Dekker pair: page bit stored, then waiters read */
	pi_full_fence();
	if (atomic_load_explicit(&b->waiters, memory_order_seq_cst)) {
		atomic_fetch_add(&b->seq, 1);
		pi_futex_wake(&b->seq);
	}
}
