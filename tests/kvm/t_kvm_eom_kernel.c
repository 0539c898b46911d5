// SPDX-License-Identifier: MIT
/*
 * t_kvm_eom_kernel.c - with exit-on-missing on, KVM's own accesses to guest memory still go
 * through GUP to the userfaultfd and pagein's handler threads (the patch changes only the vCPU's
 * stage-2 faults): (1) KVM_SET_MSRS of MSR_KVM_WALL_CLOCK_NEW at a missing page makes KVM write
 * the wall clock there (kvm_write_guest); (2) an emulated `movsq` from MMIO to a linear address
 * whose page-table page (a PDPT) is missing makes KVM's software page walk read that page. Each
 * is counted as a handler fault of the vCPU thread that caused it, never as an exit, and the
 * bytes KVM wrote are checked. Skips, saying why, on stock KVM.
 */
#include <asm/kvm_para.h>
#include <linux/kvm.h>
#include <stdlib.h>
#include <sys/ioctl.h>

#include "eom.h"

#define SEED 0x5eed0e0bull
#define SIZE (1ull << 20)
#define CLOCK_PAGE 7ull              /* page of the space the wall clock goes to */
#define PDPT_PAGE 5ull               /* page of the space holding the PDPT of gva 512 GiB */
#define MMIO_GPA 0xc0000000ull       /* identity-mapped, no memslot: MMIO */
#define MMIO_VALUE 0x1122334455667788ull
#define HIGH_GVA (1ull << 39)        /* PML4 entry 1 */
#define DEST_GPA (H_SYS_FREE + 0x1000) /* where the movsq stores (system slot) */

/* movsq; mov $H_PORT_DONE,%edx; out %al,(%dx); hlt */
static const uint8_t movs_code[] = { 0x48, 0xa5, 0xba, H_PORT_DONE, 0, 0, 0, 0xee, 0xf4 };

/* vCPU 0's counts and the space's handler faults; 0 if as wanted (vCPU 0 took >= 1 handler
 * fault and no exit), else 1 with a message. */
static int check_counts(struct h_space *hs, struct h_vm *vm, const char *label)
{
	struct pagein_kvm_vcpu_stats sum, per[H_MAX_VCPUS];
	struct pagein_stats st;

	h_space_vcpu_stats(hs, vm, label, &sum, per);
	pagein_stats_get(hs->space, &st);
	printf("%s: handler faults %" PRIu64 " (vCPU 0: %" PRIu64 "), exits %" PRIu64 "\n", label,
	       st.faults_handler, per[0].handler_faults, sum.exits);
	if (per[0].handler_faults < 1 || sum.exits || hs->annotated) {
		printf("%s: want KVM's access served by the handler threads for vCPU 0, no exit\n",
		       label);
		return 1;
	}
	return 0;
}

static int msr_case(void)
{
	const char *label = "kernel wall-clock MSR";
	struct {
		struct kvm_msrs h;
		struct kvm_msr_entry e;
	} m;
	struct h_space hs;
	struct h_vm vm;
	char msg[256];
	uint8_t *page;
	uint64_t gpa, word;
	int fail = 0;

	if (h_vm_new(&vm, 1, msg) < 0 || h_space_new(&hs, &vm, PAGEIN_BACKING_ANON, SIZE, SEED,
						      NULL, NULL, msg) < 0) {
		printf("%s: FAIL: %s\n", label, msg);
		return 1;
	}
	/* this thread plays vCPU 0: KVM_SET_MSRS runs on it */
	pagein_kvm_vcpu_bind(hs.space, 0);
	gpa = hs.gpa + CLOCK_PAGE * H_PAGE;
	memset(&m, 0, sizeof(m));
	m.h.nmsrs = 1;
	m.e.index = MSR_KVM_WALL_CLOCK_NEW;
	m.e.data = gpa;
	if (ioctl(vm.vcpu[0].fd, KVM_SET_MSRS, &m) != 1) {
		printf("%s: FAIL: KVM_SET_MSRS(MSR_KVM_WALL_CLOCK_NEW = %#" PRIx64 "): %s\n", label,
		       gpa, strerror(errno));
		fail = 1;
		goto out;
	}
	fail |= check_counts(&hs, &vm, label);
	/* struct pvclock_wall_clock { u32 version; u32 sec; u32 nsec; }: version even when done,
	 * sec > 0; the rest of the page is the source's */
	page = hs.host + CLOCK_PAGE * H_PAGE;
	memcpy(&word, page, 8);
	printf("%s: wall clock at gpa %#" PRIx64 ": version %u sec %u\n", label, gpa,
	       (unsigned)(word & 0xffffffff), (unsigned)(word >> 32));
	if ((word & 1) || !(word >> 32)) {
		printf("%s: KVM did not write a wall clock\n", label);
		fail = 1;
	}
	for (uint64_t off = 16; off < H_PAGE; off += 8) {
		memcpy(&word, page + off, 8);
		if (word != h_pattern(SEED, gpa + off)) {
			printf("%s: word at %#" PRIx64 " is not the source's\n", label, gpa + off);
			fail = 1;
			break;
		}
	}
out:
	h_space_free(&hs, &vm);
	h_vm_free(&vm);
	printf("%s: %s\n", label, fail ? "FAIL" : "PASS");
	return fail;
}

static int emulate_case(void)
{
	const char *label = "kernel emulated movsq";
	struct pagein_source *src = NULL;
	struct kvm_regs regs;
	struct h_space hs;
	struct h_vm vm;
	uint8_t *image;
	uint64_t *pdpt, got;
	char msg[256];
	bool mmio_seen = false, done = false;
	int fail = 0, ret;

	image = malloc(SIZE);
	if (!image || h_vm_new(&vm, 1, msg) < 0) {
		printf("%s: FAIL: %s\n", label, image ? msg : "no memory");
		free(image);
		return 1;
	}
	/* the source's image: the pattern, and a PDPT whose entry 0 maps gva 512 GiB + [0, 1 GiB)
	 * onto gpa [0, 1 GiB) through the harness's first page directory */
	h_fill(image, H_MEM_GPA, SIZE, SEED);
	pdpt = (uint64_t *)(image + PDPT_PAGE * H_PAGE);
	memset(pdpt, 0, H_PAGE);
	pdpt[0] = H_SYS_PD | 3; /* present, writable */
	ret = pagein_source_mem_new(image, H_MEM_GPA, SIZE, &src);
	if (ret < 0 || h_space_new(&hs, &vm, PAGEIN_BACKING_ANON, SIZE, SEED, NULL, src, msg) < 0) {
		printf("%s: FAIL: %s\n", label, ret < 0 ? strerror(-ret) : msg);
		fail = 1;
		goto out_vm;
	}
	pagein_kvm_vcpu_bind(hs.space, 0);
	((uint64_t *)(vm.sys + H_SYS_PML4))[1] = (hs.gpa + PDPT_PAGE * H_PAGE) | 3;
	memcpy(vm.sys + H_SYS_FREE, movs_code, sizeof(movs_code));
	memset(&regs, 0, sizeof(regs));
	regs.rip = H_SYS_FREE;
	regs.rsp = H_SYS_FREE; /* unused: no push */
	regs.rflags = 0x2;
	regs.rsi = MMIO_GPA;
	regs.rdi = HIGH_GVA + DEST_GPA;
	if (ioctl(vm.vcpu[0].fd, KVM_SET_REGS, &regs) < 0) {
		printf("%s: FAIL: KVM_SET_REGS: %s\n", label, strerror(errno));
		fail = 1;
		goto out;
	}
	for (unsigned n = 0; n < 16 && !done; n++) {
		struct kvm_run *run = vm.vcpu[0].run;
		int err = ioctl(vm.vcpu[0].fd, KVM_RUN, 0) < 0 ? -errno : 0;

		ret = pagein_kvm_handle_run(hs.space, vm.vcpu[0].fd, run, err, NULL);
		if (ret == PAGEIN_KVM_REENTER) {
			hs.annotated++;
			continue;
		}
		if (ret < 0) {
			printf("%s: FAIL: KVM_RUN: %s\n", label, strerror(-ret));
			fail = 1;
			break;
		}
		if (run->exit_reason == KVM_EXIT_MMIO && !run->mmio.is_write &&
		    run->mmio.phys_addr == MMIO_GPA && run->mmio.len == 8) {
			memcpy(run->mmio.data, &(uint64_t){ MMIO_VALUE }, 8);
			mmio_seen = true;
		} else if (run->exit_reason == KVM_EXIT_IO && run->io.port == H_PORT_DONE) {
			done = true;
		} else {
			printf("%s: FAIL: unexpected exit %u\n", label, run->exit_reason);
			fail = 1;
			break;
		}
	}
	memcpy(&got, vm.sys + DEST_GPA, 8);
	printf("%s: MMIO read %s, done %s, stored %#" PRIx64 " (want %#llx)\n", label,
	       mmio_seen ? "seen" : "MISSING", done ? "yes" : "NO", got, MMIO_VALUE);
	fail |= !mmio_seen || !done || got != MMIO_VALUE;
	fail |= check_counts(&hs, &vm, label);
	if (!fail) {
		/* the source's PDPT, but for the accessed bit the walk sets in entry 0 */
		uint64_t *now = (uint64_t *)(hs.host + PDPT_PAGE * H_PAGE);

		if ((now[0] & ~0x20ull) != pdpt[0] ||
		    memcmp(now + 1, pdpt + 1, H_PAGE - 8)) {
			printf("%s: the PDPT page is not the source's (entry 0 %#" PRIx64 ")\n",
			       label, now[0]);
			fail = 1;
		}
	}
out:
	h_space_free(&hs, &vm);
out_vm:
	pagein_source_free(src);
	h_vm_free(&vm);
	free(image);
	printf("%s: %s\n", label, fail ? "FAIL" : "PASS");
	return fail;
}

int main(void)
{
	int ret, fail = 0;

	h_watchdog("t_kvm_eom_kernel", 60);
	ret = eom_probe("t_kvm_eom_kernel");
	if (ret)
		return ret;
	fail |= msr_case();
	fail |= emulate_case();
	printf("t_kvm_eom_kernel: %s\n", fail ? "FAIL" : "PASS");
	return fail;
}
