// SPDX-License-Identifier: MIT
/*
 * kvmvm.c - the vCPU harness (see kvmvm.h): builds a long-mode VM (identity-mapped page tables,
 * GDT, TSS, hand-assembled guest loop) in a system memslot of ordinary memory, runs one thread per
 * vCPU, makes guest memory a pagein HANDLER space whose KVM_RUN results go through
 * pagein_kvm_handle_run, and checks the guest's work on the host, every byte.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <linux/kvm.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "kvmvm.h"
#include "pattern.h"

/* Layout of the system slot (guest physical = offset in vm->sys). */
#define SYS_PML4 H_SYS_PML4
#define SYS_PDPT 0x2000ull
#define SYS_PD H_SYS_PD      /* four page directories: 4 x 512 x 2 MiB = 4 GiB */
#define SYS_GDT 0x7000ull
#define SYS_TSS 0x8000ull
#define SYS_CODE 0x9000ull
#define SYS_STACK 0x10000ull /* one 4 KiB stack per vCPU */
_Static_assert(SYS_STACK + H_MAX_VCPUS * 0x1000ull <= H_SYS_FREE, "stacks end before H_SYS_FREE");

/* Page-table entry bits. */
#define PTE_P (1ull << 0)  /* present */
#define PTE_RW (1ull << 1) /* writable */
#define PTE_PS (1ull << 7) /* in a page directory: a 2 MiB page */

/* Control register and EFER bits for 64-bit mode. */
#define CR0_PE (1ull << 0)
#define CR0_MP (1ull << 1)
#define CR0_ET (1ull << 4)
#define CR0_NE (1ull << 5)
#define CR0_WP (1ull << 16)
#define CR0_PG (1ull << 31)
#define CR4_PAE (1ull << 5)
#define CR4_OSFXSR (1ull << 9)
#define CR4_OSXMMEXCPT (1ull << 10)
#define EFER_LME (1ull << 8)
#define EFER_LMA (1ull << 10)

/* Selectors in the GDT built below. */
#define SEL_CODE 0x08
#define SEL_DATA 0x10
#define SEL_TSS 0x18

/*
 * The guest loop. Registers on entry (set by h_vcpu_setup):
 *   rdi = gpa of the current page   rsi = pages left   rbx = step (4096)
 *   r8  = H_TAG                     r10 = 0 (sum of words read)
 *   r11 = lo (wrap target)          r12 = hi (wrap when rdi reaches it)
 */
static const uint8_t guest_code[] = {
	/* loop: */
	0x48, 0x85, 0xf6,       /* 00 test %rsi,%rsi          pages left?                   */
	0x74, 0x20,             /* 03 je   done (0x25)                                      */
	0x48, 0x8b, 0x47, 0x08, /* 05 mov  0x8(%rdi),%rax     read a word the source served */
	0x49, 0x01, 0xc2,       /* 09 add  %rax,%r10          ... into the running sum      */
	0x48, 0x89, 0xf8,       /* 0c mov  %rdi,%rax                                        */
	0x4c, 0x31, 0xc0,       /* 0f xor  %r8,%rax           value = gpa ^ H_TAG           */
	0x48, 0x89, 0x07,       /* 12 mov  %rax,(%rdi)        write it at offset 0          */
	0x48, 0x01, 0xdf,       /* 15 add  %rbx,%rdi          next page                     */
	0x4c, 0x39, 0xe7,       /* 18 cmp  %r12,%rdi                                        */
	0x72, 0x03,             /* 1b jb   0x20               below hi: no wrap             */
	0x4c, 0x89, 0xdf,       /* 1d mov  %r11,%rdi          wrap to lo                    */
	0x48, 0xff, 0xce,       /* 20 dec  %rsi                                             */
	0xeb, 0xdb,             /* 23 jmp  loop (0x00)                                      */
	/* done: */
	0xba, H_PORT_DONE, 0x00, 0x00, 0x00, /* 25 mov $H_PORT_DONE,%edx                    */
	0xee,                   /* 2a out  %al,(%dx)          KVM_EXIT_IO: "done"           */
	0xf4,                   /* 2b hlt                     not reached unless re-entered */
	0xeb, 0xf7,             /* 2c jmp  done (0x25)                                      */
};

static FILE *h_out; /* NULL: stdout (a static initialiser cannot name stdout) */

static FILE *out(void)
{
	return h_out ? h_out : stdout;
}

void h_set_output(FILE *f)
{
	h_out = f;
}

uint64_t h_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

uint64_t h_pattern(uint64_t seed, uint64_t gpa)
{
	return pattern_word(seed, gpa);
}

void h_fill(void *buf, uint64_t gpa, uint64_t len, uint64_t seed)
{
	pattern_fill(buf, gpa, len, seed, 0);
}

unsigned h_check_sums(const struct h_vm *vm, const char *label, uint64_t seed)
{
	unsigned i, bad = 0;

	for (i = 0; i < vm->nvcpus; i++) {
		const struct h_vcpu *v = &vm->vcpu[i];
		uint64_t want = h_expected_sum(seed, v->first_gpa, v->npages, v->lo, v->hi);

		fprintf(out(), "%s vCPU %u: guest read sum 0x%016" PRIx64 " want 0x%016" PRIx64 " -> %s\n",
			label, i, v->read_sum, want, v->read_sum == want ? "ok" : "BAD");
		bad += v->read_sum != want;
	}
	return bad;
}

uint64_t h_expected_sum(uint64_t seed, uint64_t first_gpa, uint64_t npages, uint64_t lo,
			uint64_t hi)
{
	uint64_t sum = 0, gpa = first_gpa;

	for (uint64_t i = 0; i < npages; i++) {
		sum += h_pattern(seed, gpa + H_GUEST_READ_OFF);
		gpa += H_PAGE;
		if (gpa >= hi)
			gpa = lo;
	}
	return sum;
}

uint64_t h_verify(const char *label, const void *host, uint64_t gpa, uint64_t size, uint64_t seed,
		  const uint8_t *host_marks)
{
	const char *name = label ? label : "guest memory";
	const uint64_t *w = host;
	uint64_t bad_pages = 0, bad_words = 0, marked = 0;

	for (uint64_t pg = 0; pg < size / H_PAGE; pg++) {
		uint64_t page_gpa = gpa + pg * H_PAGE;
		bool page_bad = false;

		if (host_marks && host_marks[pg])
			marked++;
		for (uint64_t off = 0; off < H_PAGE; off += 8) {
			uint64_t want = h_pattern(seed, page_gpa + off);
			uint64_t got = w[(pg * H_PAGE + off) / 8];

			if (off == 0)
				want = page_gpa ^ H_TAG;
			else if (off == H_HOST_OFF && host_marks && host_marks[pg])
				want = page_gpa ^ H_HOST_TAG;
			if (got == want)
				continue;
			if (bad_words < 4)
				fprintf(out(), "verify %s: MISMATCH gpa 0x%" PRIx64 " (page 0x%"
					PRIx64 " + %" PRIu64 "): got 0x%016" PRIx64 " want 0x%016"
					PRIx64 "\n", name, page_gpa + off, page_gpa, off, got, want);
			bad_words++;
			page_bad = true;
		}
		bad_pages += page_bad;
	}
	if (!label)
		return bad_pages;
	fprintf(out(), "verify %s: %" PRIu64 " pages, %" PRIu64 " bytes checked (guest writes, %"
		PRIu64 " host-accessor writes, pattern elsewhere): %" PRIu64 " bad pages, %" PRIu64
		" bad words -> %s\n", label, size / (uint64_t)H_PAGE, size, marked, bad_pages,
		bad_words, bad_pages ? "BAD" : "ok");
	return bad_pages;
}

/* Page tables, GDT and TSS in the system slot; the loop's code; nothing else is set up. */
static void build_sys(uint8_t *sys)
{
	uint64_t *pml4 = (uint64_t *)(sys + SYS_PML4);
	uint64_t *pdpt = (uint64_t *)(sys + SYS_PDPT);
	uint64_t *pd = (uint64_t *)(sys + SYS_PD);
	uint64_t *gdt = (uint64_t *)(sys + SYS_GDT);

	pml4[0] = SYS_PDPT | PTE_P | PTE_RW;
	for (unsigned i = 0; i < H_MAPPED >> 30; i++)
		pdpt[i] = (SYS_PD + i * 0x1000ull) | PTE_P | PTE_RW;
	for (uint64_t i = 0; i < H_MAPPED >> 21; i++)
		pd[i] = (i << 21) | PTE_P | PTE_RW | PTE_PS; /* identity: gpa == gva */

	gdt[0] = 0;
	gdt[SEL_CODE / 8] = 0x00af9b000000ffffull; /* 64-bit code: G, L, P, DPL 0, exec/read */
	gdt[SEL_DATA / 8] = 0x00cf93000000ffffull; /* data: G, D/B, P, DPL 0, read/write */
	/* 64-bit TSS (16 bytes): base SYS_TSS, limit 0x67, P, type 9 (available) */
	gdt[SEL_TSS / 8] = 0x67ull | (SYS_TSS << 16) | (0x89ull << 40);
	gdt[SEL_TSS / 8 + 1] = 0;

	memcpy(sys + SYS_CODE, guest_code, sizeof(guest_code));
}

static void seg(struct kvm_segment *s, uint16_t sel, uint8_t type, bool code)
{
	memset(s, 0, sizeof(*s));
	s->base = 0;
	s->limit = 0xffffffff;
	s->selector = sel;
	s->type = type;
	s->present = 1;
	s->s = 1;  /* code/data, not system */
	s->g = 1;
	s->l = code;
	s->db = !code;
}

static int setup_sregs(int fd)
{
	struct kvm_sregs sr;

	if (ioctl(fd, KVM_GET_SREGS, &sr) < 0)
		return -errno;
	seg(&sr.cs, SEL_CODE, 11, true); /* execute/read, accessed */
	seg(&sr.ds, SEL_DATA, 3, false); /* read/write, accessed */
	sr.es = sr.fs = sr.gs = sr.ss = sr.ds;

	memset(&sr.tr, 0, sizeof(sr.tr));
	sr.tr.base = SYS_TSS;
	sr.tr.limit = 0x67;
	sr.tr.selector = SEL_TSS;
	sr.tr.type = 11; /* busy 64-bit TSS */
	sr.tr.present = 1;
	memset(&sr.ldt, 0, sizeof(sr.ldt));
	sr.ldt.type = 2;
	sr.ldt.unusable = 1;

	sr.gdt.base = SYS_GDT;
	sr.gdt.limit = 5 * 8 - 1;
	sr.idt.base = 0;
	sr.idt.limit = 0; /* no IDT: any exception shuts the guest down (KVM_EXIT_SHUTDOWN) */

	sr.cr3 = SYS_PML4;
	sr.cr4 = CR4_PAE | CR4_OSFXSR | CR4_OSXMMEXCPT;
	sr.cr0 = CR0_PE | CR0_MP | CR0_ET | CR0_NE | CR0_WP | CR0_PG;
	sr.efer = EFER_LME | EFER_LMA;
	if (ioctl(fd, KVM_SET_SREGS, &sr) < 0)
		return -errno;
	return 0;
}

/* KVM checks EFER.LME against the guest's CPUID: give the vCPU what KVM supports. */
static int setup_cpuid(struct h_vm *vm, int fd)
{
	struct kvm_cpuid2 *c = NULL;
	unsigned n = 64;
	int ret;

	for (;;) {
		c = calloc(1, sizeof(*c) + n * sizeof(c->entries[0]));
		if (!c)
			return -ENOMEM;
		c->nent = n;
		if (ioctl(vm->kvm_fd, KVM_GET_SUPPORTED_CPUID, c) == 0)
			break;
		ret = -errno;
		free(c);
		if (ret != -E2BIG || n >= 4096)
			return ret;
		n *= 2;
	}
	ret = ioctl(fd, KVM_SET_CPUID2, c) < 0 ? -errno : 0;
	free(c);
	return ret;
}

int h_vm_new(struct h_vm *vm, unsigned n, char *msg)
{
	char dummy[256];
	int ret, api;

	if (!msg)
		msg = dummy;
	memset(vm, 0, sizeof(*vm));
	vm->kvm_fd = vm->vm_fd = -1;
	for (unsigned i = 0; i < H_MAX_VCPUS; i++)
		vm->vcpu[i].fd = vm->vcpu[i].stats_fd = -1;
	if (n == 0 || n > H_MAX_VCPUS) {
		snprintf(msg, 256, "vCPU count %u out of 1..%u", n, H_MAX_VCPUS);
		return -EINVAL;
	}

	vm->kvm_fd = open("/dev/kvm", O_RDWR | O_CLOEXEC);
	if (vm->kvm_fd < 0) {
		ret = -errno;
		snprintf(msg, 256, "open /dev/kvm: %s", strerror(-ret));
		return ret == -ENOENT ? -ENODEV : ret;
	}
	api = ioctl(vm->kvm_fd, KVM_GET_API_VERSION, 0);
	if (api != KVM_API_VERSION) {
		snprintf(msg, 256, "KVM API version %d, want %d", api, KVM_API_VERSION);
		ret = -EPROTO;
		goto err_free;
	}
	vm->vm_fd = ioctl(vm->kvm_fd, KVM_CREATE_VM, 0);
	if (vm->vm_fd < 0) {
		ret = -errno;
		snprintf(msg, 256, "KVM_CREATE_VM: %s", strerror(-ret));
		goto err_free;
	}
	ret = ioctl(vm->kvm_fd, KVM_GET_VCPU_MMAP_SIZE, 0);
	if (ret < 0) {
		ret = -errno;
		snprintf(msg, 256, "KVM_GET_VCPU_MMAP_SIZE: %s", strerror(-ret));
		goto err_free;
	}
	vm->run_size = (size_t)ret;

	vm->sys = mmap(NULL, H_SYS_SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (vm->sys == MAP_FAILED) {
		vm->sys = NULL;
		ret = -errno;
		snprintf(msg, 256, "mmap system slot: %s", strerror(-ret));
		goto err_free;
	}
	build_sys(vm->sys);
	ret = h_vm_add_mem(vm, H_SYS_SLOT, 0, H_SYS_SIZE, vm->sys);
	if (ret < 0) {
		snprintf(msg, 256, "system memslot: %s", strerror(-ret));
		goto err_free;
	}

	for (unsigned i = 0; i < n; i++) {
		struct h_vcpu *v = &vm->vcpu[i];

		v->vm = vm;
		v->id = i;
		v->fd = ioctl(vm->vm_fd, KVM_CREATE_VCPU, i);
		if (v->fd < 0) {
			ret = -errno;
			snprintf(msg, 256, "KVM_CREATE_VCPU %u: %s", i, strerror(-ret));
			goto err_free;
		}
		vm->nvcpus = i + 1;
		v->run = mmap(NULL, vm->run_size, PROT_READ | PROT_WRITE, MAP_SHARED, v->fd, 0);
		if (v->run == MAP_FAILED) {
			v->run = NULL;
			ret = -errno;
			snprintf(msg, 256, "mmap kvm_run of vCPU %u: %s", i, strerror(-ret));
			goto err_free;
		}
		ret = setup_cpuid(vm, v->fd);
		if (ret < 0) {
			snprintf(msg, 256, "CPUID of vCPU %u: %s", i, strerror(-ret));
			goto err_free;
		}
		ret = setup_sregs(v->fd);
		if (ret < 0) {
			snprintf(msg, 256, "KVM_SET_SREGS (long mode) of vCPU %u: %s", i,
				 strerror(-ret));
			goto err_free;
		}
		/* binary statistics (Linux 5.14+): optional, only for the per-vCPU fault counts */
		v->stats_fd = ioctl(v->fd, KVM_GET_STATS_FD, 0);
	}
	msg[0] = 0;
	return 0;

err_free:
	h_vm_free(vm);
	return ret;
}

void h_vm_free(struct h_vm *vm)
{
	for (unsigned i = 0; i < vm->nvcpus; i++) {
		struct h_vcpu *v = &vm->vcpu[i];

		if (v->run)
			munmap(v->run, vm->run_size);
		if (v->stats_fd >= 0)
			close(v->stats_fd);
		if (v->fd >= 0)
			close(v->fd);
		v->run = NULL;
		v->fd = v->stats_fd = -1;
	}
	vm->nvcpus = 0;
	if (vm->vm_fd >= 0)
		close(vm->vm_fd);
	if (vm->kvm_fd >= 0)
		close(vm->kvm_fd);
	vm->vm_fd = vm->kvm_fd = -1;
	if (vm->sys)
		munmap(vm->sys, H_SYS_SIZE);
	vm->sys = NULL;
}

int h_vm_add_mem(struct h_vm *vm, unsigned slot, uint64_t gpa, uint64_t size, void *host)
{
	struct kvm_userspace_memory_region r = {
		.slot = slot,
		.flags = 0,
		.guest_phys_addr = gpa,
		.memory_size = size,
		.userspace_addr = (uintptr_t)host,
	};

	return ioctl(vm->vm_fd, KVM_SET_USER_MEMORY_REGION, &r) < 0 ? -errno : 0;
}

int h_vm_cap(struct h_vm *vm, unsigned cap)
{
	int ret = ioctl(vm->vm_fd, KVM_CHECK_EXTENSION, cap);

	return ret < 0 ? -errno : ret;
}

int h_vcpu_setup(struct h_vm *vm, unsigned i, uint64_t first_gpa, uint64_t npages, uint64_t lo,
		 uint64_t hi)
{
	struct h_vcpu *v = &vm->vcpu[i];
	struct kvm_regs regs;

	if (i >= vm->nvcpus || lo >= hi || first_gpa < lo || first_gpa >= hi ||
	    hi > H_MAPPED || (first_gpa | lo | hi) % H_PAGE)
		return -EINVAL;
	v->first_gpa = first_gpa;
	v->npages = npages;
	v->lo = lo;
	v->hi = hi;
	memset(&regs, 0, sizeof(regs));
	regs.rip = SYS_CODE;
	regs.rsp = SYS_STACK + (i + 1) * 0x1000ull;
	regs.rflags = 0x2; /* bit 1 is reserved-one; interrupts off */
	regs.rdi = first_gpa;
	regs.rsi = npages;
	regs.rbx = H_PAGE;
	regs.r8 = H_TAG;
	regs.r10 = 0;
	regs.r11 = lo;
	regs.r12 = hi;
	return ioctl(v->fd, KVM_SET_REGS, &regs) < 0 ? -errno : 0;
}

static const char *exit_name(uint32_t r)
{
	switch (r) {
	case KVM_EXIT_UNKNOWN: return "UNKNOWN";
	case KVM_EXIT_IO: return "IO";
	case KVM_EXIT_HLT: return "HLT";
	case KVM_EXIT_MMIO: return "MMIO";
	case KVM_EXIT_SHUTDOWN: return "SHUTDOWN";
	case KVM_EXIT_FAIL_ENTRY: return "FAIL_ENTRY";
	case KVM_EXIT_INTERNAL_ERROR: return "INTERNAL_ERROR";
	case 39: return "MEMORY_FAULT";
	default: return "other";
	}
}

/* Stop vCPU v with a failure described by fmt; records rip when it can be read. */
static void vcpu_fail(struct h_vcpu *v, int err, const char *what)
{
	struct kvm_regs regs;

	v->err = err;
	if (ioctl(v->fd, KVM_GET_REGS, &regs) == 0)
		snprintf(v->why, sizeof(v->why), "vCPU %u: %s (exit_reason %u %s, rip 0x%llx)", v->id,
			 what, v->run->exit_reason, exit_name(v->run->exit_reason),
			 (unsigned long long)regs.rip);
	else
		snprintf(v->why, sizeof(v->why), "vCPU %u: %s (exit_reason %u %s)", v->id, what,
			 v->run->exit_reason, exit_name(v->run->exit_reason));
}

static void *vcpu_thread(void *arg)
{
	struct h_vcpu *v = arg;
	struct h_vm *vm = v->vm;
	struct kvm_run *run = v->run;
	uint64_t t0 = h_now_ns();
	char what[160];

	if (vm->on_start)
		vm->on_start(vm->start_arg, v->id);
	for (;;) {
		int err = ioctl(v->fd, KVM_RUN, 0) < 0 ? -errno : 0;

		v->runs++;
		if (vm->hook) {
			int r = vm->hook(vm->hook_arg, v->fd, run, err);

			if (r > 0) {
				v->reentries++;
				continue;
			}
			if (r < 0) {
				snprintf(what, sizeof(what), "KVM_RUN: %s; the exit hook gave up: %s",
					 strerror(-err), strerror(-r));
				vcpu_fail(v, r, what);
				break;
			}
		}
		if (err == -EINTR || err == -EAGAIN)
			continue;
		if (err) {
			snprintf(what, sizeof(what), "KVM_RUN failed: %s", strerror(-err));
			vcpu_fail(v, err, what);
			break;
		}
		if (run->exit_reason == KVM_EXIT_IO && run->io.port == H_PORT_DONE &&
		    run->io.direction == KVM_EXIT_IO_OUT) {
			struct kvm_regs regs;

			if (ioctl(v->fd, KVM_GET_REGS, &regs) < 0) {
				vcpu_fail(v, -errno, "KVM_GET_REGS at done");
				break;
			}
			v->read_sum = regs.r10;
			if (regs.rsi != 0) {
				vcpu_fail(v, -EPROTO, "done reported with pages left");
				break;
			}
			break;
		}
		if (run->exit_reason == KVM_EXIT_FAIL_ENTRY)
			snprintf(what, sizeof(what), "VM entry failed, reason 0x%llx",
				 (unsigned long long)run->fail_entry.hardware_entry_failure_reason);
		else if (run->exit_reason == KVM_EXIT_INTERNAL_ERROR)
			snprintf(what, sizeof(what), "KVM internal error, suberror %u",
				 run->internal.suberror);
		else if (run->exit_reason == KVM_EXIT_IO)
			snprintf(what, sizeof(what), "unexpected I/O to port 0x%x", run->io.port);
		else
			snprintf(what, sizeof(what), "unexpected exit");
		vcpu_fail(v, -EPROTO, what);
		break;
	}
	v->ns = h_now_ns() - t0;
	return NULL;
}

int h_vm_run(struct h_vm *vm)
{
	int ret = 0;

	for (unsigned i = 0; i < vm->nvcpus; i++) {
		vm->vcpu[i].err = 0;
		vm->vcpu[i].why[0] = 0;
		vm->vcpu[i].runs = vm->vcpu[i].reentries = 0;
		if (pthread_create(&vm->vcpu[i].thread, NULL, vcpu_thread, &vm->vcpu[i])) {
			/* run what was started to the end, then report */
			for (unsigned j = 0; j < i; j++)
				pthread_join(vm->vcpu[j].thread, NULL);
			return -EAGAIN;
		}
	}
	for (unsigned i = 0; i < vm->nvcpus; i++)
		pthread_join(vm->vcpu[i].thread, NULL);
	for (unsigned i = 0; i < vm->nvcpus; i++)
		if (vm->vcpu[i].err && !ret)
			ret = vm->vcpu[i].err;
	return ret;
}

int h_vcpu_stat(struct h_vm *vm, unsigned i, const char *name, uint64_t *val)
{
	struct h_vcpu *v = &vm->vcpu[i];
	struct kvm_stats_header hdr;
	size_t dsz;
	uint8_t *descs = NULL;
	int ret = -ENOENT;

	if (i >= vm->nvcpus || v->stats_fd < 0)
		return -ENOENT;
	if (pread(v->stats_fd, &hdr, sizeof(hdr), 0) != (ssize_t)sizeof(hdr))
		return -EIO;
	dsz = sizeof(struct kvm_stats_desc) + hdr.name_size;
	descs = malloc(dsz * hdr.num_desc);
	if (!descs)
		return -ENOMEM;
	if (pread(v->stats_fd, descs, dsz * hdr.num_desc, hdr.desc_offset) !=
	    (ssize_t)(dsz * hdr.num_desc)) {
		ret = -EIO;
		goto out;
	}
	for (uint32_t k = 0; k < hdr.num_desc; k++) {
		struct kvm_stats_desc *d = (struct kvm_stats_desc *)(descs + k * dsz);

		if (strncmp(d->name, name, hdr.name_size) != 0)
			continue;
		ret = pread(v->stats_fd, val, sizeof(*val), hdr.data_offset + d->offset) ==
		      (ssize_t)sizeof(*val) ? 0 : -EIO;
		break;
	}
out:
	free(descs);
	return ret;
}

static const char *watchdog_name = "test";
static unsigned watchdog_secs;

/* A thread, not SIGALRM: a thread stuck in a killable kernel wait (a userfaultfd event that is
 * never read, say) runs no signal handler, but _exit() takes every thread down. */
static void *watchdog(void *arg)
{
	(void)arg;
	sleep(watchdog_secs);
	fprintf(out(), "%s: FAIL: still running after %u s (a vCPU, a handler or a teardown is "
		"stuck)\n", watchdog_name, watchdog_secs);
	fflush(out());
	_exit(1);
	return NULL;
}

void h_watchdog(const char *name, unsigned secs)
{
	pthread_t t;

	watchdog_name = name;
	watchdog_secs = secs;
	if (pthread_create(&t, NULL, watchdog, NULL) == 0)
		pthread_detach(t);
}

void h_print_vcpus(struct h_vm *vm, const char *label)
{
	for (unsigned i = 0; i < vm->nvcpus; i++) {
		struct h_vcpu *v = &vm->vcpu[i];
		uint64_t taken = 0, fixed = 0, exits = 0;
		char kvm[128];

		if (h_vcpu_stat(vm, i, "pf_taken", &taken) == 0 &&
		    h_vcpu_stat(vm, i, "pf_fixed", &fixed) == 0 &&
		    h_vcpu_stat(vm, i, "exits", &exits) == 0)
			snprintf(kvm, sizeof(kvm), "KVM page faults taken %" PRIu64 " fixed %" PRIu64
				 ", exits %" PRIu64, taken, fixed, exits);
		else
			snprintf(kvm, sizeof(kvm), "KVM statistics unavailable");
		fprintf(out(), "%s vCPU %u: %" PRIu64 " pages from gpa 0x%" PRIx64 ", %s, KVM_RUN x%"
			PRIu64 ", %.1f ms (timings inside the emulated guest say nothing about real "
			"performance)\n", label, i, v->npages, v->first_gpa, kvm, v->runs,
			v->ns / 1e6);
	}
}

/* ---------------------------------------------------------------------------------------------
 * Guest memory as a pagein space: every KVM access to a missing page reaches the space's
 * userfaultfd handler threads through GUP.
 */

void h_log(void *arg, int level, const char *msg)
{
	static const char *names[8] = { [3] = "err", [4] = "warn", [6] = "info", [7] = "debug" };

	(void)arg;
	if (level == PAGEIN_LOG_DEBUG)
		return;
	fprintf(out(), "  pagein %s: %s\n",
		level >= 0 && level < 8 && names[level] ? names[level] : "?", msg);
	fflush(out());
}

/* Count this vCPU thread's exits and handler faults as vCPU i's (pagein_kvm_vcpu_bind). */
static void h_space_on_start(void *arg, unsigned vcpu)
{
	struct h_space *hs = arg;

	pagein_kvm_vcpu_bind(hs->space, vcpu);
}

int h_space_new(struct h_space *hs, struct h_vm *vm, enum pagein_backing b, uint64_t size,
		uint64_t seed, const struct pagein_config *cfg, struct pagein_source *src, char *msg)
{
	return h_space_new_flags(hs, vm, b, size, seed, cfg, src, msg, 0);
}

int h_space_new_flags(struct h_space *hs, struct h_vm *vm, enum pagein_backing b, uint64_t size,
		      uint64_t seed, const struct pagein_config *cfg, struct pagein_source *src,
		      char *msg, unsigned attach_flags)
{
	struct pagein_config c;
	void *host = NULL;
	int ret;

	memset(hs, 0, sizeof(*hs));
	hs->attach_flags = attach_flags;
	hs->gpa = H_MEM_GPA;
	hs->size = size;
	hs->backing = b;
	if (cfg) {
		c = *cfg;
	} else {
		pagein_config_init(&c);
		c.frontend = PAGEIN_FRONTEND_HANDLER;
		c.log = h_log;
	}
	ret = pagein_space_new(&c, &hs->space);
	if (ret < 0) {
		snprintf(msg, 256, "pagein_space_new: %s", strerror(-ret));
		return ret;
	}
	ret = pagein_region_add(hs->space, hs->gpa, size, b, &host);
	if (ret < 0) {
		snprintf(msg, 256, "pagein_region_add(%s, %" PRIu64 " MiB): %s",
			 pagein_backing_name(b), size >> 20, strerror(-ret));
		goto err_space;
	}
	hs->host = host;
	if (src) {
		hs->src = src;
	} else {
		hs->image = malloc(size);
		if (!hs->image) {
			ret = -ENOMEM;
			snprintf(msg, 256, "no memory for the source image");
			goto err_space;
		}
		h_fill(hs->image, hs->gpa, size, seed);
		ret = pagein_source_mem_new(hs->image, hs->gpa, size, &hs->src);
		if (ret < 0) {
			snprintf(msg, 256, "pagein_source_mem_new: %s", strerror(-ret));
			goto err_image;
		}
	}
	ret = pagein_space_set_source(hs->space, hs->src);
	if (ret < 0) {
		snprintf(msg, 256, "pagein_space_set_source: %s", strerror(-ret));
		goto err_src;
	}
	ret = pagein_space_start(hs->space);
	if (ret < 0) {
		snprintf(msg, 256, "pagein_space_start: %s", strerror(-ret));
		goto err_src;
	}
	ret = pagein_kvm_attach_flags(hs->space, vm->vm_fd, H_SPACE_SLOT, attach_flags);
	if (ret < 0) {
		snprintf(msg, 256, "pagein_kvm_attach: %s", strerror(-ret));
		goto err_src;
	}
	vm->hook = h_space_hook;
	vm->hook_arg = hs;
	vm->on_start = h_space_on_start;
	vm->start_arg = hs;
	return 0;

err_src:
	if (!src)
		pagein_source_free(hs->src);
	hs->src = NULL;
err_image:
	free(hs->image);
	hs->image = NULL;
err_space:
	pagein_space_free(hs->space);
	hs->space = NULL;
	return ret;
}

void h_space_free(struct h_space *hs, struct h_vm *vm)
{
	if (!hs->space)
		return;
	if (vm->vm_fd >= 0)
		pagein_kvm_detach(hs->space, vm->vm_fd, H_SPACE_SLOT);
	vm->hook = NULL;
	vm->on_start = NULL;
	pagein_space_free(hs->space);
	if (hs->image) {
		pagein_source_free(hs->src);
		free(hs->image);
	}
	memset(hs, 0, sizeof(*hs));
}

int h_space_hook(void *arg, int vcpu_fd, struct kvm_run *run, int err)
{
	struct h_space *hs = arg;
	struct pagein_kvm_fault f;
	int ret = pagein_kvm_handle_run(hs->space, vcpu_fd, run, err, &f);

	if (ret == PAGEIN_KVM_REENTER) {
		__atomic_fetch_add(&hs->annotated, 1, __ATOMIC_RELAXED);
		__atomic_fetch_or(&hs->exit_sizes, f.size, __ATOMIC_RELAXED);
		__atomic_fetch_or(&hs->exit_flags, f.flags, __ATOMIC_RELAXED);
		return 1;
	}
	if (ret < 0 && ret != -EINTR && ret != -EAGAIN) {
		if (!f.annotated)
			__atomic_fetch_add(&hs->bare, 1, __ATOMIC_RELAXED);
		hs->last = f;
		return ret;
	}
	return 0;
}

void h_space_print_stats(struct h_space *hs, const char *label)
{
	struct pagein_stats st;
	uint64_t present = 0, total = 0;

	pagein_stats_get(hs->space, &st);
	pagein_residency(hs->space, &present, &total);
	fprintf(out(), "%s space (%s, %s): userfaultfd faults %" PRIu64 ", KVM memory-fault exits %"
		PRIu64 ", pages demand %" PRIu64 " around %" PRIu64 " accessor %" PRIu64 ", races lost %"
		PRIu64 ", EEXIST %" PRIu64 ", present %" PRIu64 "/%" PRIu64 ", fault latency p50 %"
		PRIu64 " us p99 %" PRIu64 " us (timings inside the emulated guest say nothing about "
		"real performance)\n",
		label, pagein_backing_name(hs->backing), pagein_frontend_name(PAGEIN_FRONTEND_HANDLER),
		st.faults_handler, st.faults_kvm, st.pages_demand, st.pages_around,
		st.pages_accessor, st.races_lost, st.eexist, present, total,
		pagein_stats_quantile(&st, 0.5) / 1000, pagein_stats_quantile(&st, 0.99) / 1000);
}

void h_space_vcpu_stats(struct h_space *hs, struct h_vm *vm, const char *label,
			struct pagein_kvm_vcpu_stats *sum, struct pagein_kvm_vcpu_stats *per)
{
	memset(sum, 0, sizeof(*sum));
	for (unsigned i = 0; i < vm->nvcpus; i++) {
		struct pagein_kvm_vcpu_stats st;

		memset(&st, 0, sizeof(st));
		pagein_kvm_vcpu_stats(hs->space, i, &st);
		sum->exits += st.exits;
		sum->exit_pages += st.exit_pages;
		sum->handler_faults += st.handler_faults;
		sum->other_exits += st.other_exits;
		if (per)
			per[i] = st;
		if (label)
			fprintf(out(), "%s vCPU %u: exits %" PRIu64 " (pages %" PRIu64 "), handler "
				"faults %" PRIu64 ", other exits %" PRIu64 "\n", label, i, st.exits,
				st.exit_pages, st.handler_faults, st.other_exits);
	}
}

int h_report_run(struct h_vm *vm, const char *label, int ret)
{
	if (ret == 0)
		return 0;
	fprintf(out(), "%s: FAIL: h_vm_run: %s\n", label, strerror(-ret));
	for (unsigned i = 0; i < vm->nvcpus; i++)
		if (vm->vcpu[i].err)
			fprintf(out(), "%s: FAIL: %s\n", label, vm->vcpu[i].why);
	return 1;
}

int h_test_open(struct h_vm *vm, struct h_space *hs, const char *label, unsigned nvcpus,
		enum pagein_backing b, uint64_t size, uint64_t seed, const struct pagein_config *cfg,
		unsigned attach_flags)
{
	char msg[256];
	int ret;

	ret = h_vm_new(vm, nvcpus, msg);
	if (ret < 0) {
		fprintf(out(), "%s: %s: %s\n", label, ret == -ENODEV ? "SKIP" : "FAIL", msg);
		return ret == -ENODEV ? 77 : 1;
	}
	ret = h_space_new_flags(hs, vm, b, size, seed, cfg, NULL, msg, attach_flags);
	if (ret < 0) {
		h_vm_free(vm);
		if (b == PAGEIN_BACKING_HUGETLB && (ret == -ENOMEM || ret == -ENOSPC)) {
			fprintf(out(), "%s: SKIP: %s (no 2 MiB huge pages reserved: "
				"echo 64 > /proc/sys/vm/nr_hugepages)\n", label, msg);
			return 77;
		}
		fprintf(out(), "%s: FAIL: %s\n", label, msg);
		return 1;
	}
	return 0;
}

int h_test_walks(struct h_vm *vm, struct h_space *hs, const char *label, uint64_t slice,
		 bool shared)
{
	for (unsigned i = 0; i < vm->nvcpus; i++) {
		uint64_t start = shared ? hs->gpa + (i % 2) * (hs->size / 2) : hs->gpa + i * slice;
		uint64_t lo = shared ? hs->gpa : start;
		uint64_t hi = shared ? hs->gpa + hs->size : start + slice;

		if (h_vcpu_setup(vm, i, start, (hi - lo) / H_PAGE, lo, hi) < 0) {
			fprintf(out(), "%s: FAIL: h_vcpu_setup %u: %s\n", label, i, strerror(errno));
			return 1;
		}
	}
	return 0;
}

int h_test_report(struct h_vm *vm, struct h_space *hs, const char *label, int ret)
{
	if (h_report_run(vm, label, ret))
		return 1;
	h_print_vcpus(vm, label);
	h_space_print_stats(hs, label);
	return 0;
}

int h_test_verify(struct h_vm *vm, struct h_space *hs, const char *label, uint64_t seed,
		  const uint8_t *host_marks)
{
	int fail = h_check_sums(vm, label, seed) != 0;

	fail |= h_verify(label, hs->host, hs->gpa, hs->size, seed, host_marks) != 0;
	return fail;
}

int h_test_close(struct h_vm *vm, struct h_space *hs, const char *label, int fail)
{
	h_space_free(hs, vm);
	h_vm_free(vm);
	fprintf(out(), "%s: %s\n", label, fail ? "FAIL" : "PASS");
	return fail;
}

int h_test_anon_shmem(const char *name, int (*run)(enum pagein_backing b))
{
	int r1, r2;

	r1 = run(PAGEIN_BACKING_ANON);
	if (r1 == 77)
		return 77;
	r2 = run(PAGEIN_BACKING_SHMEM);
	fprintf(out(), "%s: %s\n", name, r1 || r2 ? "FAIL" : "PASS");
	return r1 || r2;
}

int h_test_summary(const char *name, int fails, int skips, const char *what)
{
	if (fails) {
		fprintf(out(), "%s: FAIL (%d run(s) failed)\n", name, fails);
		return 1;
	}
	fprintf(out(), "%s: PASS (%d %s skipped)\n", name, skips, what);
	return 0;
}
