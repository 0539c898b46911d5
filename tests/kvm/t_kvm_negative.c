// SPDX-License-Identifier: MIT
/*
 * t_kvm_negative.c - proves the verification can fail: a source serves two pages with one wrong
 * byte each (one where only the host's byte-by-byte check looks, one in the word the guest reads).
 * Passes when both are caught, and only those. With KVMTIER_RAW=1 in the environment it exits
 * with the verification's own verdict instead, so the tier is seen to fail on bad bytes.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kvmvm.h"

#define NVCPUS 2
#define SLICE (4ull << 20)
#define SEED 0x5eed0004ull
#define BAD_HOST (H_MEM_GPA + 777 * H_PAGE + 1234)                 /* seen by the host only */
#define BAD_GUEST (H_MEM_GPA + SLICE + 99 * H_PAGE + H_GUEST_READ_OFF) /* vCPU 1 reads it */

/* The pattern, except one flipped byte at each BAD_* address. No direct(): every page is
 * fetched, so the engine installs exactly what fetch returns. */
static int bad_fetch(void *ctx, uint64_t gpa, void *dst, uint64_t len, uint64_t page_size,
		     uint64_t *zero_mask, uint64_t deadline_ns)
{
	static const uint64_t bad[] = { BAD_HOST, BAD_GUEST };

	(void)ctx, (void)page_size, (void)zero_mask, (void)deadline_ns;
	h_fill(dst, gpa, len, SEED);
	for (unsigned i = 0; i < 2; i++)
		if (bad[i] - gpa < len)
			((uint8_t *)dst)[bad[i] - gpa] ^= 0x40;
	return 0;
}

static void bad_destroy(void *ctx)
{
	(void)ctx;
}

int main(void)
{
	static const struct pagein_source_ops ops = { .fetch = bad_fetch, .destroy = bad_destroy };
	const char *raw = getenv("KVMTIER_RAW");
	uint64_t size = NVCPUS * SLICE, bad_pages;
	struct pagein_source *src;
	struct h_space hs;
	struct h_vm vm;
	char msg[256];
	int ret, sums_bad = 0, caught;

	h_watchdog("t_kvm_negative", 45);
	ret = h_vm_new(&vm, NVCPUS, msg);
	if (ret < 0) {
		printf("t_kvm_negative: %s: %s\n", ret == -ENODEV ? "SKIP" : "FAIL", msg);
		return ret == -ENODEV ? 77 : 1;
	}
	H_ASSERT(pagein_source_new(&ops, NULL, &src) == 0);
	ret = h_space_new(&hs, &vm, PAGEIN_BACKING_ANON, size, SEED, NULL, src, msg);
	if (ret < 0) {
		printf("t_kvm_negative: FAIL: %s\n", msg);
		return 1;
	}
	for (unsigned i = 0; i < NVCPUS; i++)
		H_ASSERT(h_vcpu_setup(&vm, i, hs.gpa + i * SLICE, SLICE / H_PAGE, hs.gpa + i * SLICE,
				      hs.gpa + (i + 1) * SLICE) == 0);
	ret = h_vm_run(&vm);
	if (h_report_run(&vm, "negative", ret))
		return 1;
	h_print_vcpus(&vm, "negative");
	sums_bad = h_check_sums(&vm, "negative", SEED);
	printf("negative: the source served wrong bytes at gpa 0x%llx and 0x%llx; the check must "
	       "report exactly those\n", (unsigned long long)BAD_HOST,
	       (unsigned long long)BAD_GUEST);
	bad_pages = h_verify("negative", hs.host, hs.gpa, size, SEED, NULL);
	/* the two bad pages and nothing else; the guest's sum catches only vCPU 1's */
	caught = bad_pages == 2 && sums_bad == 1 && vm.vcpu[1].read_sum !=
		 h_expected_sum(SEED, vm.vcpu[1].first_gpa, vm.vcpu[1].npages, vm.vcpu[1].lo,
				vm.vcpu[1].hi);
	h_space_free(&hs, &vm);
	pagein_source_free(src);
	h_vm_free(&vm);

	if (raw && strcmp(raw, "1") == 0) {
		printf("t_kvm_negative: KVMTIER_RAW=1: exiting with the verification's verdict: %s\n",
		       bad_pages ? "FAIL" : "PASS");
		return bad_pages ? 1 : 0;
	}
	printf("t_kvm_negative: %s (verification found %" PRIu64 " bad pages of 2 planted, the "
	       "guest's sums %d of 1)\n", caught ? "PASS: the wrong bytes were caught" :
	       "FAIL: the check missed planted bytes or blamed good ones", bad_pages, sums_bad);
	return caught ? 0 : 1;
}
