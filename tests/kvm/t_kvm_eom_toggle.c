// SPDX-License-Identifier: MIT
/*
 * t_kvm_eom_toggle.c - KVM_MEM_EXIT_ON_MISSING toggled on a live memslot
 * (pagein_kvm_set_exit_on_missing, a flags-only memslot change): with it on, the vCPU's faults
 * are exits; cleared, they reach the handler threads through KVM's GUP; set again, exits come
 * back. One page per fault, so every count is a page count. The tier fails on any kernel WARN
 * (the patch removes the one flags-only changes used to hit). Skips, saying why, on stock KVM.
 */
#include "eom.h"

#define SEED 0x5eed0e0cull
#define PHASE_PAGES ((uint64_t)64)

int main(void)
{
	const char *label = "toggle";
	static const int phases[] = { 1, 0, 1 };
	uint64_t size = 3 * PHASE_PAGES * H_PAGE, prev_exits = 0, prev_handler = 0;
	struct pagein_config cfg;
	struct h_space hs;
	struct h_vm vm;
	int ret, fail = 0;

	h_watchdog("t_kvm_eom_toggle", 60);
	ret = eom_probe("t_kvm_eom_toggle");
	if (ret)
		return ret;
	pagein_config_init(&cfg);
	cfg.frontend = PAGEIN_FRONTEND_HANDLER;
	cfg.fault_around = 0;
	cfg.log = h_log;
	ret = h_test_open(&vm, &hs, label, 1, PAGEIN_BACKING_ANON, size, SEED, &cfg, 0);
	if (ret)
		return ret;
	for (unsigned p = 0; p < 3; p++) {
		uint64_t lo = hs.gpa + p * PHASE_PAGES * H_PAGE, hi = lo + PHASE_PAGES * H_PAGE;
		struct pagein_kvm_vcpu_stats sum;
		uint64_t exits, handler;

		if (p > 0) {
			ret = pagein_kvm_set_exit_on_missing(hs.space, phases[p]);
			if (ret < 0) {
				printf("%s: FAIL: pagein_kvm_set_exit_on_missing(%d): %s\n", label,
				       phases[p], strerror(-ret));
				fail = 1;
				break;
			}
		}
		if (pagein_kvm_exit_on_missing(hs.space) != phases[p]) {
			printf("%s: FAIL: pagein_kvm_exit_on_missing says %d, want %d\n", label,
			       pagein_kvm_exit_on_missing(hs.space), phases[p]);
			fail = 1;
			break;
		}
		h_vcpu_setup(&vm, 0, lo, PHASE_PAGES, lo, hi);
		ret = h_vm_run(&vm);
		if (h_report_run(&vm, label, ret)) {
			fail = 1;
			break;
		}
		h_space_vcpu_stats(&hs, &vm, NULL, &sum, NULL);
		exits = sum.exits - prev_exits;
		handler = sum.handler_faults - prev_handler;
		prev_exits = sum.exits;
		prev_handler = sum.handler_faults;
		printf("%s phase %u (exit-on-missing %s): %" PRIu64 " pages, exits %" PRIu64
		       ", handler faults %" PRIu64 "\n", label, p, phases[p] ? "on" : "off",
		       PHASE_PAGES, exits, handler);
		/* on: one exit per page (read; the page arrives writable), off: one fault each */
		if (phases[p] ? (exits != PHASE_PAGES || handler) :
				(handler != PHASE_PAGES || exits)) {
			printf("%s: FAIL: phase %u: want %s\n", label, p,
			       phases[p] ? "one exit per page, no handler fault" :
					   "one handler fault per page, no exit");
			fail = 1;
		}
	}
	fail |= h_verify(label, hs.host, hs.gpa, size, SEED, NULL) != 0;
	h_space_free(&hs, &vm);
	h_vm_free(&vm);
	printf("t_kvm_eom_toggle: %s\n", fail ? "FAIL" : "PASS");
	return fail;
}
