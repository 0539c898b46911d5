// SPDX-License-Identifier: MIT
/*
 * t_kvm_demand.c - demand paging of every vCPU's memory through KVM, for each backing (anon,
 * shmem, hugetlb when huge pages can be reserved; anon and shmem also striped over two
 * userfaultfds, one page per fault): four vCPUs walk disjoint slices of a pagein space whose pages
 * arrive from a seeded source on first touch; the guest's reads and every byte are then checked.
 * Where KVM has exit-on-missing the plain runs resolve exits and the striped ones are attached
 * with PAGEIN_KVM_ATTACH_NO_EXIT, so the handler-thread path is covered too.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "kvmvm.h"

#define NVCPUS 4
#define SLICE (4ull << 20) /* per vCPU: 16 MiB in all, 5 runs, within the watchdog under TCG */
#define SEED 0x5eed0001ull

/* 0 pass, 1 fail, 77 skip (backing unavailable). striped: two userfaultfds, two readers and
 * one page per fault instead of the defaults. */
static int run_backing(enum pagein_backing b, bool striped)
{
	const char *name = pagein_backing_name(b);
	struct pagein_config cfg;
	struct h_space hs;
	struct h_vm vm;
	char label[64];
	int ret, fail;

	snprintf(label, sizeof(label), "demand %s%s", name, striped ? " striped" : "");
	pagein_config_init(&cfg);
	cfg.frontend = PAGEIN_FRONTEND_HANDLER;
	cfg.log = h_log;
	if (striped) {
		cfg.uffds = 2;
		cfg.readers = 2;
		cfg.fault_around = 0;
	}
	/* striped runs keep vCPU faults on the handler threads even where KVM has exit-on-missing
	 * (the plain runs use the exits then): both paths stay covered */
	ret = h_test_open(&vm, &hs, label, NVCPUS, b, NVCPUS * SLICE, SEED, &cfg,
			  striped ? PAGEIN_KVM_ATTACH_NO_EXIT : 0);
	if (ret)
		return ret;
	/* each step runs only when the ones before passed */
	fail = h_test_walks(&vm, &hs, label, SLICE, false) ||
	       h_test_report(&vm, &hs, label, h_vm_run(&vm)) ||
	       h_test_verify(&vm, &hs, label, SEED, NULL);
	return h_test_close(&vm, &hs, label, fail);
}

int main(void)
{
	static const struct {
		enum pagein_backing b;
		bool striped;
	} runs[] = {
		{ PAGEIN_BACKING_ANON, false }, { PAGEIN_BACKING_SHMEM, false },
		{ PAGEIN_BACKING_HUGETLB, false }, { PAGEIN_BACKING_ANON, true },
		{ PAGEIN_BACKING_SHMEM, true },
	};
	char msg[256];
	struct h_vm probe;
	int ret, fails = 0, skips = 0;

	h_watchdog("t_kvm_demand", 90);
	ret = h_vm_new(&probe, 1, msg);
	if (ret < 0) {
		printf("t_kvm_demand: SKIP: %s\n", msg);
		return ret == -ENODEV ? 77 : 1;
	}
	h_vm_free(&probe);
	for (unsigned i = 0; i < sizeof(runs) / sizeof(runs[0]); i++) {
		ret = run_backing(runs[i].b, runs[i].striped);
		fails += ret == 1;
		skips += ret == 77;
	}
	return h_test_summary("t_kvm_demand", fails, skips, "run(s)");
}
