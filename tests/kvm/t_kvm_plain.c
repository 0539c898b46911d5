// SPDX-License-Identifier: MIT
/*
 * t_kvm_plain.c - stage 1 of the harness, without pagein: N vCPUs in long mode walk their slices
 * of ordinary anonymous memory prefilled with the pattern; every byte is then verified. Proves the
 * harness itself before any lazily paged memory is involved.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>

#include "kvmvm.h"

#define NVCPUS 2
#define SLICE (4ull << 20)
#define SEED 0x1234

int main(void)
{
	struct h_vm vm;
	char msg[256];
	uint64_t size = NVCPUS * SLICE;
	uint8_t *mem;
	int ret;

	h_watchdog("t_kvm_plain", 60);
	ret = h_vm_new(&vm, NVCPUS, msg);
	if (ret == -ENODEV) {
		printf("t_kvm_plain: SKIP: %s (no KVM on this machine)\n", msg);
		return 77;
	}
	if (ret < 0) {
		printf("t_kvm_plain: FAIL: %s\n", msg);
		return 1;
	}
	mem = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	H_ASSERT(mem != MAP_FAILED);
	h_fill(mem, H_MEM_GPA, size, SEED);
	H_ASSERT(h_vm_add_mem(&vm, 1, H_MEM_GPA, size, mem) == 0);
	for (unsigned i = 0; i < NVCPUS; i++)
		H_ASSERT(h_vcpu_setup(&vm, i, H_MEM_GPA + i * SLICE, SLICE / H_PAGE,
				      H_MEM_GPA + i * SLICE, H_MEM_GPA + (i + 1) * SLICE) == 0);
	ret = h_vm_run(&vm);
	if (ret < 0) {
		for (unsigned i = 0; i < NVCPUS; i++)
			if (vm.vcpu[i].err)
				printf("t_kvm_plain: FAIL: %s\n", vm.vcpu[i].why);
		return 1;
	}
	h_print_vcpus(&vm, "plain");
	H_ASSERT(h_check_sums(&vm, "plain", SEED) == 0);
	H_ASSERT(h_verify("plain", mem, H_MEM_GPA, size, SEED, NULL) == 0);
	h_vm_free(&vm);
	munmap(mem, size);
	printf("t_kvm_plain: PASS\n");
	return 0;
}
