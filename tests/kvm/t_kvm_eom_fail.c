// SPDX-License-Identifier: MIT
/*
 * t_kvm_eom_fail.c - a fetch that fails, under exit-on-missing: the source cannot give one page;
 * the vCPU walking into it gets the failure from pagein_kvm_handle_run as -EIO on its own thread
 * (no SIGBUS, no loop: a handful of KVM_RUNs), the pages before it are served and correct, and a
 * second vCPU run that touches the failed page again fails at once without asking the source
 * again. Skips, saying why, on stock KVM.
 */
#include <stdlib.h>

#include "eom.h"

#define SEED 0x5eed0e0dull
#define PAGES ((uint64_t)32)
#define BAD_PAGE ((uint64_t)20)

struct src_ctx {
	const uint8_t *image;
	uint64_t base;
	_Atomic unsigned bad_fetches; /* fetches that asked for the bad page */
};

static int fetch(void *ctx, uint64_t gpa, void *dst, uint64_t len, uint64_t page_size,
		 uint64_t *zero_mask, uint64_t deadline_ns)
{
	struct src_ctx *c = ctx;
	uint64_t bad = c->base + BAD_PAGE * H_PAGE;

	(void)page_size, (void)zero_mask, (void)deadline_ns;
	if (gpa <= bad && bad < gpa + len) {
		c->bad_fetches++;
		return -EIO;
	}
	memcpy(dst, c->image + (gpa - c->base), len);
	return 0;
}

static void nothing(void *ctx)
{
	(void)ctx;
}

/* Run vCPU 0 over the whole space; returns h_vm_run's result, prints what it saw. */
static int walk(struct h_vm *vm, struct h_space *hs, const char *label)
{
	int ret;

	h_vcpu_setup(vm, 0, hs->gpa, PAGES, hs->gpa, hs->gpa + PAGES * H_PAGE);
	ret = h_vm_run(vm);
	printf("%s: h_vm_run -> %s after %" PRIu64 " KVM_RUNs; pagein_kvm_handle_run saw gpa %#"
	       PRIx64 " flags %#" PRIx64 ": %s\n", label, strerror(-ret), vm->vcpu[0].runs,
	       hs->last.gpa, hs->last.flags, vm->vcpu[0].why);
	return ret;
}

int main(void)
{
	static const struct pagein_source_ops ops = { .fetch = fetch, .destroy = nothing };
	const char *label = "fail";
	uint64_t size = PAGES * H_PAGE, bad_gpa;
	struct pagein_source *src = NULL;
	struct src_ctx ctx;
	struct h_space hs;
	struct h_vm vm;
	uint8_t *image;
	char msg[256];
	unsigned first;
	int ret, fail = 0;

	h_watchdog("t_kvm_eom_fail", 60);
	ret = eom_probe("t_kvm_eom_fail");
	if (ret)
		return ret;
	image = malloc(size);
	if (!image)
		return 1;
	h_fill(image, H_MEM_GPA, size, SEED);
	ctx.image = image;
	ctx.base = H_MEM_GPA;
	ctx.bad_fetches = 0;
	bad_gpa = H_MEM_GPA + BAD_PAGE * H_PAGE;
	if (pagein_source_new(&ops, &ctx, &src) < 0 || h_vm_new(&vm, 1, msg) < 0 ||
	    h_space_new(&hs, &vm, PAGEIN_BACKING_ANON, size, SEED, NULL, src, msg) < 0) {
		printf("%s: FAIL: setup: %s\n", label, msg);
		return 1;
	}
	ret = walk(&vm, &hs, label);
	first = ctx.bad_fetches;
	if (ret != -EIO || hs.last.gpa != bad_gpa || vm.vcpu[0].runs > PAGES + 4) {
		printf("%s: FAIL: want -EIO at gpa %#" PRIx64 " within %" PRIu64 " KVM_RUNs\n",
		       label, bad_gpa, PAGES + 4);
		fail = 1;
	}
	/* the pages before the bad one were served and are right */
	for (uint64_t p = 0; p < BAD_PAGE; p++) {
		uint64_t gpa = hs.gpa + p * H_PAGE, w;

		memcpy(&w, hs.host + p * H_PAGE, 8);
		if (w != (gpa ^ H_TAG) ||
		    memcmp(hs.host + p * H_PAGE + 8, image + p * H_PAGE + 8, H_PAGE - 8)) {
			printf("%s: FAIL: page at gpa %#" PRIx64 " is wrong\n", label, gpa);
			fail = 1;
			break;
		}
	}
	ret = walk(&vm, &hs, "fail again");
	printf("%s: source asked for the bad page %u time(s) in the first run, %u in all\n", label,
	       first, ctx.bad_fetches);
	if (ret != -EIO || ctx.bad_fetches != first || hs.last.gpa != bad_gpa) {
		printf("%s: FAIL: the failed page must fail at once, not be fetched again\n",
		       label);
		fail = 1;
	}
	h_space_free(&hs, &vm);
	h_vm_free(&vm);
	pagein_source_free(src);
	free(image);
	printf("t_kvm_eom_fail: %s\n", fail ? "FAIL" : "PASS");
	return fail;
}
