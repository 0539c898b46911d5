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
	struct pagein_config cfg;
	struct h_space hs;
	struct h_vm vm;
	char label[64];
	int ret, fail;

	snprintf(label, sizeof(label), "shared %s", pagein_backing_name(b));
	pagein_config_init(&cfg);
	cfg.frontend = PAGEIN_FRONTEND_HANDLER;
	cfg.readers = 2;
	cfg.fault_around = 0; /* one page per fault: the most collisions */
	cfg.log = h_log;
	/* the handler threads' path (t_kvm_eom_exits shares pages through exits) */
	ret = h_test_open(&vm, &hs, label, NVCPUS, b, SIZE, SEED, &cfg, PAGEIN_KVM_ATTACH_NO_EXIT);
	if (ret)
		return ret;
	/* two vCPUs from the start, two from the middle, each over all SIZE */
	/* each step runs only when the ones before passed */
	fail = h_test_walks(&vm, &hs, label, 0, true) ||
	       h_test_report(&vm, &hs, label, h_vm_run(&vm)) ||
	       h_test_verify(&vm, &hs, label, SEED, NULL);
	return h_test_close(&vm, &hs, label, fail);
}

int main(void)
{
	h_watchdog("t_kvm_shared", 45);
	return h_test_anon_shmem("t_kvm_shared", run_backing);
}
