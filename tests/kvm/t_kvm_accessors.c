// SPDX-License-Identifier: MIT
/*
 * t_kvm_accessors.c - the host's own accessors on guest memory while vCPUs run: a host thread
 * reads pages with pagein_read (checking what it sees) and writes a word of others with
 * pagein_write, in a scattered order, racing the vCPUs' first touches. Every byte is then checked,
 * the host's writes included.
 */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kvmvm.h"

#define NVCPUS 2
#define SLICE (8ull << 20)
#define SEED 0x5eed0003ull

struct host_arg {
	struct h_space *hs;
	uint8_t *marks;          /* page i got the host word at H_HOST_OFF */
	atomic_bool stop;
	uint64_t reads, writes, saw_guest, saw_source, errors;
	char err[200];
};

static void *host_thread(void *p)
{
	struct host_arg *a = p;
	uint64_t npages = a->hs->size / H_PAGE;
	uint64_t x = 0x9e3779b97f4a7c15ull;

	for (uint64_t n = 0; n < npages * 2 && !atomic_load(&a->stop); n++) {
		uint64_t pg, gpa, w[2];
		int ret;

		x ^= x << 13, x ^= x >> 7, x ^= x << 17; /* xorshift: a scattered order */
		pg = x % npages;
		gpa = a->hs->gpa + pg * H_PAGE;
		if (n % 3 == 0) {
			uint64_t v = gpa ^ H_HOST_TAG;

			ret = pagein_write(a->hs->space, gpa + H_HOST_OFF, &v, sizeof(v));
			a->writes++;
			if (ret == 0)
				a->marks[pg] = 1;
		} else {
			ret = pagein_read(a->hs->space, gpa, w, sizeof(w));
			a->reads++;
			if (ret == 0) {
				/* word 0: the source's until the guest writes it; word 1 never changes */
				if (w[0] == (gpa ^ H_TAG))
					a->saw_guest++;
				else if (w[0] == h_pattern(SEED, gpa))
					a->saw_source++;
				else
					ret = -EILSEQ;
				if (w[1] != h_pattern(SEED, gpa + 8))
					ret = -EILSEQ;
			}
		}
		if (ret < 0 && !a->errors++)
			snprintf(a->err, sizeof(a->err), "%s at gpa 0x%" PRIx64 ": %s",
				 n % 3 == 0 ? "pagein_write" : "pagein_read", gpa,
				 ret == -EILSEQ ? "wrong bytes" : strerror(-ret));
	}
	return NULL;
}

static int run_backing(enum pagein_backing b)
{
	uint64_t size = NVCPUS * SLICE;
	struct host_arg a;
	struct h_space hs;
	struct h_vm vm;
	pthread_t t;
	char label[64];
	int ret, fail;

	snprintf(label, sizeof(label), "accessors %s", pagein_backing_name(b));
	ret = h_test_open(&vm, &hs, label, NVCPUS, b, size, SEED, NULL, 0);
	if (ret)
		return ret;
	memset(&a, 0, sizeof(a));
	a.hs = &hs;
	a.marks = calloc(size / H_PAGE, 1);
	H_ASSERT(a.marks != NULL);
	H_ASSERT(h_test_walks(&vm, &hs, label, SLICE, false) == 0);
	H_ASSERT(pthread_create(&t, NULL, host_thread, &a) == 0);
	ret = h_vm_run(&vm);
	atomic_store(&a.stop, true);
	pthread_join(t, NULL);
	fail = h_test_report(&vm, &hs, label, ret);
	if (fail)
		goto out;
	printf("%s host thread: %" PRIu64 " pagein_read (saw the guest's word %" PRIu64 ", the "
	       "source's %" PRIu64 "), %" PRIu64 " pagein_write, %" PRIu64 " errors%s%s\n", label,
	       a.reads, a.saw_guest, a.saw_source, a.writes, a.errors, a.errors ? ": " : "",
	       a.err);
	fail |= a.errors != 0 || a.reads + a.writes == 0;
	fail |= h_test_verify(&vm, &hs, label, SEED, a.marks);
out:
	free(a.marks);
	return h_test_close(&vm, &hs, label, fail);
}

int main(void)
{
	h_watchdog("t_kvm_accessors", 45);
	return h_test_anon_shmem("t_kvm_accessors", run_backing);
}
