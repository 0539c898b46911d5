// SPDX-License-Identifier: MIT
/*
 * t_kvm_shared.c - several vCPUs faulting on the same pages at once: four vCPUs walk the whole
 * region, two from its start and two from its middle, one page per fault (no fault-around), so
 * faults on one page from two vCPUs meet in the handler. Every page must arrive exactly right.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "kvmvm.h"

#define NVCPUS 4
#define SIZE (8ull << 20)
#define SEED 0x5eed0002ull

static int run_backing(enum pagein_backing b)
{
	uint64_t npages = SIZE / H_PAGE;
	struct pagein_config cfg;
	struct h_space hs;
	struct h_vm vm;
	char msg[256], label[64];
	int ret, fail = 0;

	snprintf(label, sizeof(label), "shared %s", pagein_backing_name(b));
	ret = h_vm_new(&vm, NVCPUS, msg);
	if (ret < 0) {
		printf("%s: %s: %s\n", label, ret == -ENODEV ? "SKIP" : "FAIL", msg);
		return ret == -ENODEV ? 77 : 1;
	}
	pagein_config_init(&cfg);
	cfg.frontend = PAGEIN_FRONTEND_HANDLER;
	cfg.readers = 2;
	cfg.fault_around = 0; /* one page per fault: the most collisions */
	cfg.log = h_log;
	/* the handler threads' path (t_kvm_eom_exits shares pages through exits) */
	ret = h_space_new_flags(&hs, &vm, b, SIZE, SEED, &cfg, NULL, msg,
				PAGEIN_KVM_ATTACH_NO_EXIT);
	if (ret < 0) {
		printf("%s: FAIL: %s\n", label, msg);
		h_vm_free(&vm);
		return 1;
	}
	for (unsigned i = 0; i < NVCPUS; i++) {
		uint64_t start = hs.gpa + (i < NVCPUS / 2 ? 0 : SIZE / 2);

		if (h_vcpu_setup(&vm, i, start, npages, hs.gpa, hs.gpa + SIZE) < 0) {
			printf("%s: FAIL: h_vcpu_setup %u: %s\n", label, i, strerror(errno));
			fail = 1;
			goto out;
		}
	}
	ret = h_vm_run(&vm);
	if (h_report_run(&vm, label, ret)) {
		fail = 1;
		goto out;
	}
	h_print_vcpus(&vm, label);
	h_space_print_stats(&hs, label);
	fail |= h_check_sums(&vm, label, SEED) != 0;
	fail |= h_verify(label, hs.host, hs.gpa, SIZE, SEED, NULL) != 0;
out:
	h_space_free(&hs, &vm);
	h_vm_free(&vm);
	printf("%s: %s\n", label, fail ? "FAIL" : "PASS");
	return fail;
}

int main(void)
{
	int r1, r2;

	h_watchdog("t_kvm_shared", 45);
	r1 = run_backing(PAGEIN_BACKING_ANON);
	if (r1 == 77)
		return 77;
	r2 = run_backing(PAGEIN_BACKING_SHMEM);
	if (r1 || r2) {
		printf("t_kvm_shared: FAIL\n");
		return 1;
	}
	printf("t_kvm_shared: PASS\n");
	return 0;
}
