// SPDX-License-Identifier: MIT
/*
 * t_kvm_eom_zero.c - zero pages under exit-on-missing: a source of zeros, every page made
 * present first by the host (pagein_resolve installs them as zero pages, UFFDIO_ZEROPAGE). The
 * guest then reads each page without an exit (the patch maps the host's read-only zero page for
 * a read) and writes it after exactly one exit, a WRITE exit pagein resolves without fetching
 * again (MADV_POPULATE_WRITE breaks the zero page's COW). Skips, saying why, on stock KVM.
 */
#include <stdlib.h>

#include "eom.h"

#define NVCPUS 2
#define SLICE_PAGES ((uint64_t)64)

/* pages the engine installed from the source, for any reason */
static uint64_t installed(const struct pagein_stats *st)
{
	return st->pages_demand + st->pages_around + st->pages_accessor + st->pages_fill;
}

int main(void)
{
	const char *label = "zero";
	uint64_t size = NVCPUS * SLICE_PAGES * H_PAGE, bad = 0;
	struct pagein_source *src = NULL;
	struct pagein_stats st0, st;
	struct h_space hs;
	struct h_vm vm;
	uint8_t *zeros;
	char msg[256];
	int ret, fail = 0;

	h_watchdog("t_kvm_eom_zero", 60);
	ret = eom_probe("t_kvm_eom_zero");
	if (ret)
		return ret;
	zeros = calloc(1, size);
	if (!zeros || pagein_source_mem_new(zeros, H_MEM_GPA, size, &src) < 0 ||
	    h_vm_new(&vm, NVCPUS, msg) < 0) {
		printf("%s: FAIL: setup\n", label);
		return 1;
	}
	if (h_space_new(&hs, &vm, PAGEIN_BACKING_ANON, size, 0, NULL, src, msg) < 0) {
		printf("%s: FAIL: %s\n", label, msg);
		return 1;
	}
	ret = pagein_resolve(hs.space, hs.gpa, size, &bad);
	pagein_stats_get(hs.space, &st0);
	printf("%s: host made %" PRIu64 " pages present, %" PRIu64 " of them zero pages\n", label,
	       size / H_PAGE, st0.pages_zero);
	if (ret < 0 || st0.pages_zero != size / H_PAGE) {
		printf("%s: FAIL: pagein_resolve: %s; want every page a zero page\n", label,
		       strerror(-ret));
		fail = 1;
		goto out;
	}
	for (unsigned i = 0; i < NVCPUS; i++) {
		uint64_t lo = hs.gpa + i * SLICE_PAGES * H_PAGE;

		h_vcpu_setup(&vm, i, lo, SLICE_PAGES, lo, lo + SLICE_PAGES * H_PAGE);
	}
	ret = h_vm_run(&vm);
	if (h_report_run(&vm, label, ret)) {
		fail = 1;
		goto out;
	}
	h_print_vcpus(&vm, label);
	pagein_stats_get(hs.space, &st);
	fail |= eom_check_vcpus(&hs, &vm, label, true) != 0;
	printf("%s: exits %" PRIu64 " for %" PRIu64 " pages, flags seen %#" PRIx64 ", pages "
	       "installed %" PRIu64 " -> %" PRIu64 "\n", label, hs.annotated, size / H_PAGE,
	       hs.exit_flags, installed(&st0), installed(&st));
	if (hs.annotated != size / H_PAGE || (hs.exit_flags & PAGEIN_KVM_EXIT_FLAG_READ) ||
	    !(hs.exit_flags & PAGEIN_KVM_EXIT_FLAG_WRITE)) {
		printf("%s: FAIL: want exactly one WRITE exit per page and no READ exit\n", label);
		fail = 1;
	}
	if (installed(&st) != installed(&st0) || st.fetches != st0.fetches) {
		printf("%s: FAIL: the exits fetched or installed pages again\n", label);
		fail = 1;
	}
	for (unsigned i = 0; i < NVCPUS; i++)
		if (vm.vcpu[i].read_sum) {
			printf("%s: FAIL: vCPU %u read non-zero words\n", label, i);
			fail = 1;
		}
	/* every page: the guest's word at 0, zeros elsewhere */
	for (uint64_t p = 0; p < size / H_PAGE; p++) {
		uint64_t gpa = hs.gpa + p * H_PAGE, w;

		memcpy(&w, hs.host + p * H_PAGE, 8);
		if (w != (gpa ^ H_TAG) || memcmp(hs.host + p * H_PAGE + 8, zeros, H_PAGE - 8)) {
			printf("%s: FAIL: page at gpa %#" PRIx64 " is wrong\n", label, gpa);
			fail = 1;
			break;
		}
	}
out:
	h_space_free(&hs, &vm);
	h_vm_free(&vm);
	pagein_source_free(src);
	free(zeros);
	printf("t_kvm_eom_zero: %s\n", fail ? "FAIL" : "PASS");
	return fail;
}
