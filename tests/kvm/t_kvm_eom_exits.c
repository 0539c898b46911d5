// SPDX-License-Identifier: MIT
/*
 * t_kvm_eom_exits.c - with exit-on-missing (pagein's KVM patch), every vCPU fault is an exit
 * resolved on the vCPU's own thread: for each backing (anon, shmem, hugetlb), with 1 vCPU, with 4
 * vCPUs on their own slices and with 4 vCPUs on the same pages, the handler threads take no fault
 * (counted per vCPU through the userfaultfd's thread ids, and in total), the exits counted per
 * vCPU match the ones resolved, exits carry READ/WRITE and the backing's page size, and the
 * guest's reads and every byte verify. Skips, saying why, on stock KVM.
 */
#include "eom.h"

#define SEED 0x5eed0e0aull

/* 0 pass, 1 fail, 77 skip (backing unavailable). */
static int run(enum pagein_backing b, unsigned nvcpus, bool shared)
{
	uint64_t ps = pagein_backing_page_size(b);
	uint64_t slice = b == PAGEIN_BACKING_HUGETLB ? 2 * ps : (1ull << 20);
	uint64_t size = shared ? slice * 2 : slice * nvcpus;
	struct h_space hs;
	struct h_vm vm;
	char label[64];
	int ret, fail = 0;

	snprintf(label, sizeof(label), "eom %s %u vCPU%s%s", pagein_backing_name(b), nvcpus,
		 nvcpus > 1 ? "s" : "", shared ? " shared" : "");
	ret = h_test_open(&vm, &hs, label, nvcpus, b, size, SEED, NULL, 0);
	if (ret)
		return ret;
	if (!pagein_kvm_exit_on_missing(hs.space)) {
		printf("%s: FAIL: the probe found exit-on-missing, this attach did not\n", label);
		return h_test_close(&vm, &hs, label, 1);
	}
	/* shared: every vCPU walks all pages, half of them from the middle */
	if (h_test_walks(&vm, &hs, label, slice, shared) ||
	    h_test_report(&vm, &hs, label, h_vm_run(&vm)))
		return h_test_close(&vm, &hs, label, 1);
	fail |= eom_check_vcpus(&hs, &vm, label, !shared) != 0;
	printf("%s: exit sizes seen %#" PRIx64 ", flags seen %#" PRIx64 "\n", label, hs.exit_sizes,
	       hs.exit_flags);
	if (hs.exit_sizes != ps) {
		printf("%s: exits should all be %" PRIu64 " bytes (the backing's page)\n", label, ps);
		fail = 1;
	}
	if (!(hs.exit_flags & PAGEIN_KVM_EXIT_FLAG_MISSING) ||
	    !(hs.exit_flags & PAGEIN_KVM_EXIT_FLAG_READ)) {
		printf("%s: exits should carry MISSING and READ (the guest reads first)\n", label);
		fail = 1;
	}
	fail |= h_test_verify(&vm, &hs, label, SEED, NULL);
	return h_test_close(&vm, &hs, label, fail);
}

int main(void)
{
	static const enum pagein_backing backs[] = { PAGEIN_BACKING_ANON, PAGEIN_BACKING_SHMEM,
						     PAGEIN_BACKING_HUGETLB };
	int ret, fails = 0, skips = 0;

	h_watchdog("t_kvm_eom_exits", 90);
	ret = eom_probe("t_kvm_eom_exits");
	if (ret)
		return ret;
	for (unsigned i = 0; i < 3; i++) {
		ret = run(backs[i], 1, false);
		fails += ret == 1;
		skips += ret == 77;
		if (ret == 77)
			continue;
		ret = run(backs[i], 4, false);
		fails += ret == 1;
		ret = run(backs[i], 4, true);
		fails += ret == 1;
	}
	return h_test_summary("t_kvm_eom_exits", fails, skips, "backing(s)");
}
