// SPDX-License-Identifier: MIT
/*
 * t_kvm_eom_frozen.c - a frozen range under exit-on-missing follows the frozen policy on the vCPU
 * thread: FAIL stops the vCPU with -EFAULT at the first frozen page (reported once through
 * on_frozen_fault); WAIT keeps the vCPU waiting inside pagein_kvm_handle_run until another thread
 * thaws the range, then the walk completes and every byte verifies. Skips, saying why, on stock
 * KVM.
 */
#include <pthread.h>
#include <time.h>

#include "eom.h"

#define SEED 0x5eed0e0eull
#define PAGES ((uint64_t)32)
#define FROZEN_FIRST ((uint64_t)8)
#define FROZEN_PAGES ((uint64_t)4)
#define THAW_MS 300

static _Atomic unsigned frozen_reports;

static void on_frozen(void *arg, uint64_t gpa, uint64_t len)
{
	(void)arg, (void)gpa, (void)len;
	frozen_reports++;
}

struct thaw_arg {
	struct pagein_space *space;
	uint64_t gpa, len;
	int ret;
};

static void *thaw_later(void *p)
{
	struct thaw_arg *a = p;

	nanosleep(&(struct timespec){ 0, THAW_MS * 1000000l }, NULL);
	a->ret = pagein_thaw(a->space, a->gpa, a->len);
	return NULL;
}

static int run(enum pagein_frozen_policy policy)
{
	const char *label = policy == PAGEIN_FROZEN_FAIL ? "frozen FAIL" : "frozen WAIT";
	uint64_t size = PAGES * H_PAGE, fgpa = H_MEM_GPA + FROZEN_FIRST * H_PAGE;
	struct pagein_config cfg;
	struct thaw_arg ta;
	struct h_space hs;
	struct h_vm vm;
	pthread_t th;
	int ret, fail = 0;

	frozen_reports = 0;
	pagein_config_init(&cfg);
	cfg.frontend = PAGEIN_FRONTEND_HANDLER;
	cfg.frozen_policy = policy;
	cfg.on_frozen_fault = on_frozen;
	cfg.log = h_log;
	ret = h_test_open(&vm, &hs, label, 1, PAGEIN_BACKING_ANON, size, SEED, &cfg, 0);
	if (ret)
		return ret;
	if (h_test_walks(&vm, &hs, label, size, false))
		return h_test_close(&vm, &hs, label, 1);
	ret = pagein_freeze(hs.space, fgpa, FROZEN_PAGES * H_PAGE);
	if (ret < 0) {
		printf("%s: FAIL: pagein_freeze: %s\n", label, strerror(-ret));
		fail = 1;
		goto out;
	}
	ta = (struct thaw_arg){ hs.space, fgpa, FROZEN_PAGES * H_PAGE, 0 };
	if (policy == PAGEIN_FROZEN_WAIT && pthread_create(&th, NULL, thaw_later, &ta)) {
		fail = 1;
		goto out;
	}
	ret = h_vm_run(&vm);
	if (policy == PAGEIN_FROZEN_WAIT)
		pthread_join(th, NULL);
	printf("%s: h_vm_run -> %s after %" PRIu64 " KVM_RUNs, %.0f ms; frozen reports %u; last "
	       "failure at gpa %#" PRIx64 "\n", label, strerror(-ret), vm.vcpu[0].runs,
	       vm.vcpu[0].ns / 1e6, frozen_reports, hs.last.gpa);
	if (policy == PAGEIN_FROZEN_FAIL) {
		if (ret != -EFAULT || hs.last.gpa != fgpa || frozen_reports != 1) {
			printf("%s: FAIL: want -EFAULT at gpa %#" PRIx64 ", reported once\n", label,
			       fgpa);
			fail = 1;
		}
	} else {
		if (ret != 0 || ta.ret != 0 || frozen_reports < 1 ||
		    vm.vcpu[0].ns < THAW_MS * 1000000ull) {
			printf("%s: FAIL: want the vCPU to wait for the thaw (>= %d ms), then finish\n",
			       label, THAW_MS);
			fail = 1;
		} else {
			fail |= eom_check_vcpus(&hs, &vm, label, true) != 0;
			fail |= h_test_verify(&vm, &hs, label, SEED, NULL);
		}
	}
out:
	return h_test_close(&vm, &hs, label, fail);
}

int main(void)
{
	int ret, fail = 0;

	h_watchdog("t_kvm_eom_frozen", 60);
	ret = eom_probe("t_kvm_eom_frozen");
	if (ret)
		return ret;
	fail |= run(PAGEIN_FROZEN_FAIL);
	fail |= run(PAGEIN_FROZEN_WAIT);
	printf("t_kvm_eom_frozen: %s\n", fail ? "FAIL" : "PASS");
	return fail;
}
