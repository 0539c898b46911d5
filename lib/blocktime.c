// SPDX-License-Identifier: MIT
/*
 * blocktime.c - blocked time per faulting thread (pagein_blocktime_get), QEMU's postcopy-blocktime
 * per vCPU for any thread: a fixed open-addressed table in the space, filled lock-free from the
 * fault paths (a SIGBUS handler among them), read by any thread.
 */
#include "internal.h"

void pi_blocktime_add(struct pagein_space *s, uint32_t tid, uint64_t ns)
{
	uint32_t key = tid + 1, h = (key * 2654435761u) % PI_BT_SLOTS, i, k;
	struct pi_bt_slot *b;

	for (i = 0; i < PI_BT_SLOTS; i++) {
		b = &s->blocktime[(h + i) % PI_BT_SLOTS];
		k = atomic_load_explicit(&b->key, memory_order_acquire);
		if (!k) {
			uint32_t zero = 0;

			/* claim the free slot, or find who took it first */
			if (!atomic_compare_exchange_strong(&b->key, &zero, key))
				k = zero;
			else
				k = key;
		}
		if (k == key) {
			atomic_fetch_add_explicit(&b->faults, 1, memory_order_relaxed);
			atomic_fetch_add_explicit(&b->ns, ns, memory_order_relaxed);
			return;
		}
	}
	atomic_fetch_add_explicit(&s->blocktime_lost, 1, memory_order_relaxed);
}

int pagein_blocktime_get(struct pagein_space *s, struct pagein_thread_blocked *out, unsigned max)
{
	unsigned i, n = 0;
	uint32_t k;

	for (i = 0; i < PI_BT_SLOTS; i++) {
		k = atomic_load_explicit(&s->blocktime[i].key, memory_order_acquire);
		if (!k)
			continue;
		if (n < max)
			out[n] = (struct pagein_thread_blocked){
				.tid = (int32_t)(k - 1),
				.faults = atomic_load_explicit(&s->blocktime[i].faults,
							       memory_order_relaxed),
				.blocked_ns = atomic_load_explicit(&s->blocktime[i].ns,
								   memory_order_relaxed),
			};
		n++;
	}
	return (int)n;
}
