/* SPDX-License-Identifier: MIT */
/*
 * eom.h - what the exit-on-missing tests (t_kvm_eom_*.c) share: the probe that makes them skip,
 * saying why, on a kernel without pagein's KVM patch (kvm/patches/), and the per-vCPU check that
 * vCPU faults arrived as exits on their own threads and never at the handler threads.
 */
#ifndef PAGEIN_TESTS_KVM_EOM_H
#define PAGEIN_TESTS_KVM_EOM_H

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "kvmvm.h"

/*
 * 1: /dev/kvm is there and KVM takes KVM_MEM_EXIT_ON_MISSING; 0: it is not or does not (why, 256
 * bytes, says which); -1: the probe itself failed (why says how).
 */
static inline int eom_available(char *why)
{
	struct h_space hs;
	struct h_vm vm;
	char msg[256];
	int ret, have;

	ret = h_vm_new(&vm, 1, msg);
	if (ret < 0) {
		snprintf(why, 256, "%.250s", msg);
		return ret == -ENODEV ? 0 : -1;
	}
	ret = h_space_new(&hs, &vm, PAGEIN_BACKING_ANON, 1ull << 20, 1, NULL, NULL, msg);
	if (ret < 0) {
		snprintf(why, 256, "probe space: %.200s", msg);
		h_vm_free(&vm);
		return -1;
	}
	have = pagein_kvm_exit_on_missing(hs.space);
	h_space_free(&hs, &vm);
	h_vm_free(&vm);
	if (!have)
		snprintf(why, 256, "this KVM lacks KVM_MEM_EXIT_ON_MISSING: it refused the memslot "
			 "flag with EINVAL, as stock KVM does (pagein's patch, kvm/patches/, is not "
			 "loaded; vCPU faults go to the handler threads instead)");
	return have;
}

/* 0: exit-on-missing is there; 77 (reason printed): no /dev/kvm, or stock KVM; 1: failure. */
static inline int eom_probe(const char *name)
{
	char why[256];
	int ret = eom_available(why);

	if (ret > 0)
		return 0;
	printf("%s: %s: %s\n", name, ret == 0 ? "SKIP" : "FAIL", why);
	return ret == 0 ? 77 : 1;
}

/*
 * Per-vCPU counts of hs (printed under label): every vCPU took no handler-thread fault, the exits
 * counted per vCPU add up to what the harness's hook resolved, and with own_pages every vCPU
 * exited at least once. Returns the number of problems (each printed).
 */
static inline int eom_check_vcpus(struct h_space *hs, struct h_vm *vm, const char *label,
				  bool own_pages)
{
	struct pagein_kvm_vcpu_stats sum, per[H_MAX_VCPUS];
	struct pagein_stats st;
	int bad = 0;

	h_space_vcpu_stats(hs, vm, label, &sum, per);
	pagein_stats_get(hs->space, &st);
	for (unsigned i = 0; i < vm->nvcpus; i++) {
		if (per[i].handler_faults) {
			printf("%s: vCPU %u: %" PRIu64 " of its faults reached the handler threads, "
			       "want 0\n", label, i, per[i].handler_faults);
			bad++;
		}
		if (own_pages && !per[i].exits) {
			printf("%s: vCPU %u: no exit on its own pages\n", label, i);
			bad++;
		}
	}
	if (st.faults_handler) {
		printf("%s: the handler threads served %" PRIu64 " faults, want 0\n", label,
		       st.faults_handler);
		bad++;
	}
	if (sum.exits != hs->annotated || !sum.exits) {
		printf("%s: exits counted on the vCPU threads %" PRIu64 ", resolved by the hook %"
		       PRIu64 ": want equal and > 0\n", label, sum.exits, hs->annotated);
		bad++;
	}
	return bad;
}

#endif /* PAGEIN_TESTS_KVM_EOM_H */
