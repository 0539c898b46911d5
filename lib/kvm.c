// SPDX-License-Identifier: MIT
/*
 * kvm.c - pagein for KVM-based VMMs: registers a space's regions as KVM memslots (refusing spaces
 * whose front-end cannot serve KVM's kernel-mode accesses), with exit-on-missing where the kernel
 * has our patch (kvm/patches/), and interprets a failed KVM_RUN on the vCPU thread: an annotated
 * KVM_EXIT_MEMORY_FAULT is resolved there and re-entered, a bare EFAULT is reported with
 * everything known and never retried.
 */
#include <errno.h>
#include <linux/kvm.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>

#include "internal.h"
#include "pagein-kvm.h"

#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23 /* Linux 5.14: write-fault a range in (breaks COW of zero pages) */
#endif

/*
 * uAPI newer than the build machine's headers (Debian 12 ships Linux 6.1's; these arrived in 6.8).
 * Written from the documented ABI; the running kernel is asked with KVM_CHECK_EXTENSION.
 */
#ifndef KVM_EXIT_MEMORY_FAULT
#define KVM_EXIT_MEMORY_FAULT 39 /* KVM_RUN failed EFAULT/EHWPOISON; run->memory_fault is valid */
#endif
#ifndef KVM_CAP_USER_MEMORY2
#define KVM_CAP_USER_MEMORY2 231 /* KVM_SET_USER_MEMORY_REGION2 exists */
#endif
#ifndef KVM_CAP_MEMORY_FAULT_INFO
#define KVM_CAP_MEMORY_FAULT_INFO 232 /* some EFAULTs come with KVM_EXIT_MEMORY_FAULT */
#endif
#ifndef KVM_MEMORY_EXIT_FLAG_PRIVATE
#define KVM_MEMORY_EXIT_FLAG_PRIVATE (1ull << 3) /* the fault was on private (guest_memfd) memory */
#endif

/* run->memory_fault: lives in kvm_run's exit union, which starts where every member (mmio) does */
struct pi_kvm_memory_fault {
	uint64_t flags; /* KVM_MEMORY_EXIT_FLAG_* */
	uint64_t gpa;   /* first guest address of the faulting range */
	uint64_t size;  /* bytes */
};

/* KVM_SET_USER_MEMORY_REGION2's argument (160 bytes); guest_memfd fields unused here */
struct pi_kvm_region2 {
	uint32_t slot;               /* memslot number (address space in the high 16 bits) */
	uint32_t flags;              /* KVM_MEM_*: PAGEIN_KVM_MEM_EXIT_ON_MISSING or 0 */
	uint64_t guest_phys_addr;    /* first guest address */
	uint64_t memory_size;        /* bytes; 0 deletes the slot */
	uint64_t userspace_addr;     /* host mapping KVM reaches through GUP */
	uint64_t guest_memfd_offset; /* private memory only: 0 */
	uint32_t guest_memfd;        /* private memory only: 0 */
	uint32_t pad1;               /* reserved, 0 */
	uint64_t pad2[14];           /* reserved, 0 */
};

#define PI_KVM_SET_REGION2 _IOW(KVMIO, 0x49, struct pi_kvm_region2)

_Static_assert(sizeof(struct pi_kvm_region2) == 160, "kvm_userspace_memory_region2 is 160 bytes");

/* Re-entries allowed for one gpa whose resolve succeeded before we call it a loop. */
#define PI_KVM_SAME_GPA_MAX 8

_Static_assert(PI_KVM_MAX_VCPUS == PAGEIN_KVM_MAX_VCPUS, "one vCPU limit");

/* The vCPU index this thread bound to (pagein_kvm_vcpu_bind) for counting, -1 if none. */
static _Thread_local struct {
	struct pagein_space *space;
	int vcpu;
} bound = { NULL, -1 };

/* KVM_CAP_MEMORY_FAULT_INFO as last seen (module-wide, so one value per process): -1 unknown */
static _Atomic int kvm_mfi = -1;

/* The latest annotated fault this thread resolved: detects KVM faulting again and again. */
static _Thread_local struct {
	struct pagein_space *space;
	uint64_t gpa;
	unsigned repeats;
} last_fault;

int pagein_kvm_memory_fault_info(int fd)
{
	int ret = ioctl(fd, KVM_CHECK_EXTENSION, KVM_CAP_MEMORY_FAULT_INFO);

	if (ret < 0)
		return -errno;
	atomic_store(&kvm_mfi, ret);
	return ret;
}

/* Add (size > 0) or delete (size 0) one memslot, with REGION2 when the kernel has it. */
static int set_slot(int vm_fd, bool region2, uint32_t slot, uint32_t flags, uint64_t gpa,
		    uint64_t size, void *host)
{
	int ret;

	if (region2) {
		struct pi_kvm_region2 r2;

		memset(&r2, 0, sizeof(r2));
		r2.slot = slot;
		r2.flags = flags;
		r2.guest_phys_addr = gpa;
		r2.memory_size = size;
		r2.userspace_addr = (uintptr_t)host;
		ret = ioctl(vm_fd, PI_KVM_SET_REGION2, &r2);
	} else {
		struct kvm_userspace_memory_region r = {
			.slot = slot,
			.flags = flags,
			.guest_phys_addr = gpa,
			.memory_size = size,
			.userspace_addr = (uintptr_t)host,
		};

		ret = ioctl(vm_fd, KVM_SET_USER_MEMORY_REGION, &r);
	}
	return ret < 0 ? -errno : 0;
}

/* Why this space cannot back KVM memory, or NULL when it can. */
static const char *unfit_for_kvm(struct pagein_space *s)
{
	if (s->remote)
		return "the space serves another process's memory: that process attaches it to KVM";
	if (s->cfg.frontend == PAGEIN_FRONTEND_SELF)
		return "a SELF (SIGBUS self-resolve) space cannot back KVM memory: KVM reaches guest "
		       "memory from kernel mode (GUP), where a missing page fails KVM_RUN with EFAULT "
		       "instead of raising SIGBUS; create the space with PAGEIN_FRONTEND_HANDLER";
	if (s->user_mode_only)
		return "the space's userfaultfds were opened with UFFD_USER_MODE_ONLY (no privilege "
		       "for kernel-mode faults), so KVM's accesses to missing pages fail EFAULT; run "
		       "as root, set vm.unprivileged_userfaultfd=1 or grant access to "
		       "/dev/userfaultfd";
	if (!atomic_load(&s->started))
		return "start the space (pagein_space_start) before attaching it: a vCPU touching "
		       "memory that userfaultfd does not watch yet gets zero-filled pages that pagein "
		       "can never replace";
	if (atomic_load(&s->stopping))
		return "the space is stopped: missing pages can no longer be served";
	return NULL;
}

static const char *const no_eom_why =
	"the kernel refused memslot flag KVM_MEM_EXIT_ON_MISSING (EINVAL): it lacks pagein's KVM "
	"patch (kvm/patches/, Linux 6.12; not upstream), so vCPU faults reach the handler threads "
	"through KVM's GUP instead of exiting to the vCPU thread";

int pagein_kvm_attach_flags(struct pagein_space *s, int vm_fd, uint32_t first_slot,
			    unsigned flags)
{
	unsigned n = atomic_load(&s->nregions), i;
	const char *why = unfit_for_kvm(s);
	uint32_t sflags = 0;
	bool region2;
	int ret, mfi;

	if (why) {
		pi_log(s, PAGEIN_LOG_ERR, "pagein_kvm_attach: %s", why);
		return -EINVAL;
	}
	if (n == 0) {
		pi_log(s, PAGEIN_LOG_ERR, "pagein_kvm_attach: the space has no regions");
		return -EINVAL;
	}
	if (atomic_load(&s->kvm.attached)) {
		pi_log(s, PAGEIN_LOG_ERR, "pagein_kvm_attach: the space is attached already "
			   "(one VM per space; pagein_kvm_detach first)");
		return -EINVAL;
	}
	region2 = ioctl(vm_fd, KVM_CHECK_EXTENSION, KVM_CAP_USER_MEMORY2) > 0;
	mfi = pagein_kvm_memory_fault_info(vm_fd);
	/* exit-on-missing exits are KVM_EXIT_MEMORY_FAULT: useless without the annotation */
	if (!(flags & PAGEIN_KVM_ATTACH_NO_EXIT) && mfi > 0)
		sflags = PAGEIN_KVM_MEM_EXIT_ON_MISSING;

	for (i = 0; i < n; i++) {
		struct pi_region *r = &s->regions[i];

		ret = set_slot(vm_fd, region2, first_slot + i, sflags, r->gpa, r->size, r->host);
		if (ret == -EINVAL && i == 0 && sflags) {
			/* the probe: stock KVM refuses the unknown flag */
			pi_log(s, PAGEIN_LOG_INFO, "pagein_kvm_attach: %s", no_eom_why);
			sflags = 0;
			ret = set_slot(vm_fd, region2, first_slot + i, sflags, r->gpa, r->size,
				       r->host);
		}
		if (ret < 0) {
			pi_log(s, PAGEIN_LOG_ERR,
				   "KVM memslot %u (gpa %#llx size %#llx, host %p): %s", first_slot + i,
				   (unsigned long long)r->gpa, (unsigned long long)r->size,
				   (void *)r->host, strerror(-ret));
			goto err_unset;
		}
	}
	if (!sflags && (flags & PAGEIN_KVM_ATTACH_NO_EXIT))
		why = "PAGEIN_KVM_ATTACH_NO_EXIT asked for the handler-thread path";
	else if (!sflags && mfi <= 0)
		why = "the kernel lacks KVM_CAP_MEMORY_FAULT_INFO, which exit-on-missing exits need";
	pi_log(s, PAGEIN_LOG_INFO,
		   "attached %u region(s) as KVM memslots %u..%u with %s; KVM_CAP_MEMORY_FAULT_INFO "
		   "= %d; %s%s", n, first_slot, first_slot + n - 1,
		   region2 ? "KVM_SET_USER_MEMORY_REGION2" : "KVM_SET_USER_MEMORY_REGION", mfi,
		   sflags ? "exit-on-missing: vCPU faults exit to the vCPU thread" :
			    "no exit-on-missing: vCPU faults go to the handler threads",
		   !sflags && why ? (why == no_eom_why ? " (see above)" : "") : "");
	if (!sflags && why && why != no_eom_why)
		pi_log(s, PAGEIN_LOG_INFO, "pagein_kvm_attach: no exit-on-missing: %s", why);
	s->kvm.vm_fd = vm_fd;
	s->kvm.first_slot = first_slot;
	s->kvm.region2 = region2;
	atomic_store(&s->kvm.exit_on_missing, sflags != 0);
	atomic_store(&s->kvm.attached, true);
	return (int)n;

err_unset:
	while (i-- > 0)
		set_slot(vm_fd, region2, first_slot + i, 0, s->regions[i].gpa, 0, NULL);
	return ret;
}

int pagein_kvm_attach(struct pagein_space *s, int vm_fd, uint32_t first_slot)
{
	return pagein_kvm_attach_flags(s, vm_fd, first_slot, 0);
}

int pagein_kvm_detach(struct pagein_space *s, int vm_fd, uint32_t first_slot)
{
	unsigned n = atomic_load(&s->nregions);
	bool region2 = ioctl(vm_fd, KVM_CHECK_EXTENSION, KVM_CAP_USER_MEMORY2) > 0;
	int ret = 0;

	for (unsigned i = 0; i < n; i++) {
		int r = set_slot(vm_fd, region2, first_slot + i, 0, s->regions[i].gpa, 0, NULL);

		if (r < 0 && !ret) {
			pi_log(s, PAGEIN_LOG_ERR, "deleting KVM memslot %u: %s", first_slot + i,
				   strerror(-r));
			ret = r;
		}
	}
	if (vm_fd == s->kvm.vm_fd && first_slot == s->kvm.first_slot)
		atomic_store(&s->kvm.attached, false);
	return ret;
}

int pagein_kvm_exit_on_missing(struct pagein_space *s)
{
	return atomic_load(&s->kvm.attached) && atomic_load(&s->kvm.exit_on_missing);
}

int pagein_kvm_set_exit_on_missing(struct pagein_space *s, int on)
{
	unsigned n = atomic_load(&s->nregions), i;
	uint32_t flags = on ? PAGEIN_KVM_MEM_EXIT_ON_MISSING : 0;
	int ret = 0;

	if (!atomic_load(&s->kvm.attached))
		return -ENOTCONN;
	for (i = 0; i < n; i++) {
		struct pi_region *r = &s->regions[i];

		ret = set_slot(s->kvm.vm_fd, s->kvm.region2, s->kvm.first_slot + i, flags, r->gpa,
			       r->size, r->host);
		if (ret < 0)
			break;
	}
	if (ret == -EINVAL && on && i == 0) {
		pi_log(s, PAGEIN_LOG_INFO, "pagein_kvm_set_exit_on_missing: %s", no_eom_why);
		return -EOPNOTSUPP;
	}
	if (ret < 0) {
		pi_log(s, PAGEIN_LOG_ERR, "%s KVM_MEM_EXIT_ON_MISSING on memslot %u: %s",
			   on ? "setting" : "clearing", s->kvm.first_slot + i, strerror(-ret));
		/* the slots before i changed: say what they are now */
		if (i > 0)
			pi_log(s, PAGEIN_LOG_ERR, "memslots %u..%u now %s the flag",
				   s->kvm.first_slot, s->kvm.first_slot + i - 1,
				   on ? "have" : "lack");
		return ret;
	}
	atomic_store(&s->kvm.exit_on_missing, on != 0);
	return 0;
}

int pagein_kvm_vcpu_bind(struct pagein_space *s, unsigned vcpu)
{
	unsigned nb;

	if (vcpu >= PI_KVM_MAX_VCPUS)
		return -EINVAL;
	atomic_store(&s->kvm.vcpu[vcpu].tid, (int)gettid());
	nb = atomic_load(&s->kvm.nbound);
	while (nb < vcpu + 1 && !atomic_compare_exchange_weak(&s->kvm.nbound, &nb, vcpu + 1))
		;
	bound.space = s;
	bound.vcpu = (int)vcpu;
	return 0;
}

int pagein_kvm_vcpu_stats(struct pagein_space *s, unsigned vcpu, struct pagein_kvm_vcpu_stats *st)
{
	struct pi_kvm_vcpu *v;

	if (vcpu >= PI_KVM_MAX_VCPUS)
		return -EINVAL;
	v = &s->kvm.vcpu[vcpu];
	st->exits = atomic_load(&v->exits);
	st->exit_pages = atomic_load(&v->exit_pages);
	st->handler_faults = atomic_load(&v->handler_faults);
	st->other_exits = atomic_load(&v->other_exits);
	return 0;
}

void pi_kvm_note_fault(struct pagein_space *s, uint32_t ptid)
{
	unsigned n = atomic_load_explicit(&s->kvm.nbound, memory_order_relaxed), i;

	if (!ptid)
		return;
	for (i = 0; i < n; i++)
		if (atomic_load_explicit(&s->kvm.vcpu[i].tid, memory_order_relaxed) == (int)ptid) {
			atomic_fetch_add_explicit(&s->kvm.vcpu[i].handler_faults, 1,
						  memory_order_relaxed);
			return;
		}
}

/* The calling thread's vCPU counters in s, or NULL if it did not bind. */
static struct pi_kvm_vcpu *my_vcpu(struct pagein_space *s)
{
	return bound.space == s && bound.vcpu >= 0 ? &s->kvm.vcpu[bound.vcpu] : NULL;
}

/*
 * The host maps page idx of r, which pagein holds, for this access: map it again if the kernel
 * lost the mapping (done by pagein_fault's re-map: UFFDIO_ZEROPAGE or CONTINUE; EEXIST when it
 * is there), and for a write break what is read-only about it (the zero page, a memfd page only
 * read) with MADV_POPULATE_WRITE, which cannot reach userfaultfd now that the PTE exists.
 */
static int make_writable(struct pagein_space *s, struct pi_region *r, uint64_t idx)
{
	void *p = r->host + (idx << r->page_shift);

	if (madvise(p, r->page_size, MADV_POPULATE_WRITE) < 0)
		return -errno;
	return 0;
}

/*
 * An exit-on-missing exit: make [gpa, gpa+size) usable for the access, page by page, on this
 * (the vCPU's) thread. pagein_fault does what a fault needs for each page state: fetch and
 * install a missing page (with fault-around), re-map a present one without fetching it again,
 * -EIO for a failed one, the frozen policy for a frozen one (WAIT sleeps here until thaw).
 */
static int resolve_missing(struct pagein_space *s, const struct pagein_kvm_fault *f,
			   uint64_t *bad, uint64_t *pages)
{
	uint64_t gpa = f->gpa, end = f->gpa + (f->size ? f->size : 1);
	bool write = f->flags & PAGEIN_KVM_EXIT_FLAG_WRITE;
	int ret;

	*pages = 0;
	while (gpa < end) {
		struct pi_region *r = pi_region_find(s, gpa);
		uint64_t idx;

		*bad = gpa;
		if (!r)
			return -EINVAL;
		idx = (gpa - r->gpa) >> r->page_shift;
		ret = pi_fault(s, r, idx, PI_WHY_KVM);
		if (ret == 0 && write)
			ret = make_writable(s, r, idx);
		if (ret < 0)
			return ret;
		(*pages)++;
		gpa = r->gpa + ((idx + 1) << r->page_shift);
	}
	return 0;
}

/* Resolve an annotated fault: returns PAGEIN_KVM_REENTER or -errno. */
static int resolve_annotated(struct pagein_space *s, const struct pagein_kvm_fault *f)
{
	uint64_t bad = 0, gpa = f->gpa & ~4095ull;
	uint64_t len = (f->gpa + (f->size ? f->size : 1) + 4095) / 4096 * 4096 - gpa;
	struct pi_kvm_vcpu *v = my_vcpu(s);
	int ret;

	if (f->err == -EHWPOISON) {
		pi_log(s, PAGEIN_LOG_ERR,
			   "KVM_RUN: EHWPOISON at gpa %#llx size %#llx: the host page is poisoned "
			   "(a failed fetch or a memory error); the guest cannot use it",
			   (unsigned long long)f->gpa, (unsigned long long)f->size);
		return -EHWPOISON;
	}
	if (f->flags & KVM_MEMORY_EXIT_FLAG_PRIVATE) {
		pi_log(s, PAGEIN_LOG_ERR,
			   "KVM memory fault on private memory at gpa %#llx size %#llx (flags %#llx): "
			   "pagein serves shared memory only; convert the range with "
			   "KVM_SET_MEMORY_ATTRIBUTES", (unsigned long long)f->gpa,
			   (unsigned long long)f->size, (unsigned long long)f->flags);
		return -EFAULT;
	}
	if (last_fault.space == s && last_fault.gpa == gpa) {
		if (++last_fault.repeats >= PI_KVM_SAME_GPA_MAX) {
			pi_log(s, PAGEIN_LOG_ERR,
				   "KVM faulted %u times at gpa %#llx although pagein made it present: "
				   "the memslot does not map this space's memory (attach it with "
				   "pagein_kvm_attach) or its host mapping lost access; not retrying",
				   last_fault.repeats, (unsigned long long)gpa);
			last_fault.repeats = 0;
			return -EFAULT;
		}
	} else {
		last_fault.space = s;
		last_fault.gpa = gpa;
		last_fault.repeats = 0;
	}

	if (f->flags & PAGEIN_KVM_EXIT_FLAG_MISSING) {
		uint64_t pages = 0;

		ret = resolve_missing(s, f, &bad, &pages);
		if (ret == 0) {
			if (v) {
				atomic_fetch_add_explicit(&v->exits, 1, memory_order_relaxed);
				atomic_fetch_add_explicit(&v->exit_pages, pages, memory_order_relaxed);
			}
			return PAGEIN_KVM_REENTER;
		}
		pi_log(s, PAGEIN_LOG_ERR,
			   "KVM exit-on-missing %s at gpa %#llx size %#llx: gpa %#llx %s; not "
			   "re-entering", f->flags & PAGEIN_KVM_EXIT_FLAG_WRITE ? "write" : "read",
			   (unsigned long long)f->gpa, (unsigned long long)f->size,
			   (unsigned long long)bad,
			   ret == -EIO ? "could not be fetched (it stays failed: the guest cannot use "
					 "it)" :
			   ret == -EFAULT ? "is frozen and the frozen policy is FAIL" :
			   ret == -EINVAL ? "is outside the space: the memslot is not pagein's" :
			   ret == -ETIMEDOUT ? "did not arrive in time" :
			   ret == -ESHUTDOWN ? "cannot be served: the space is stopping" :
					       strerror(-ret));
		return ret;
	}

	pi_stat_add(s, PI_STAT(faults_kvm), 1);
	ret = pagein_resolve(s, gpa, len, &bad);
	if (ret == 0) {
		if (v)
			atomic_fetch_add_explicit(&v->other_exits, 1, memory_order_relaxed);
		return PAGEIN_KVM_REENTER;
	}
	pi_log(s, PAGEIN_LOG_ERR,
		   "KVM memory fault at gpa %#llx size %#llx: resolving failed at gpa %#llx: %s",
		   (unsigned long long)f->gpa, (unsigned long long)f->size, (unsigned long long)bad,
		   strerror(-ret));
	return ret;
}

/* Log a bare EFAULT with everything that is known; the gpa is not. */
static void report_bare(struct pagein_space *s, const struct pagein_kvm_fault *f)
{
	uint64_t present = 0, total = 0;
	uint64_t err_gpa = atomic_load(&s->last_err_gpa);
	int err = atomic_load(&s->last_err);
	char last[160] = "no fault error recorded by the space";
	const char *mfi;

	pagein_residency(s, &present, &total);
	if (err)
		snprintf(last, sizeof(last), "the space's latest fault error: gpa %#llx, %s",
			 (unsigned long long)err_gpa, strerror(-err));
	if (f->memory_fault_info > 0)
		mfi = "the kernel reports KVM_CAP_MEMORY_FAULT_INFO but did not annotate this fault";
	else if (f->memory_fault_info == 0)
		mfi = "the kernel lacks KVM_CAP_MEMORY_FAULT_INFO";
	else
		mfi = "KVM_CAP_MEMORY_FAULT_INFO not probed (call pagein_kvm_attach or "
		      "pagein_kvm_memory_fault_info first)";
	pi_log(s, PAGEIN_LOG_ERR,
		   "KVM_RUN failed %s without a memory-fault annotation (exit_reason %u, rip %#llx; "
		   "%s): KVM could not fault in guest memory at an unknown gpa. With pagein this "
		   "means a kernel-mode access could not be served: the space is %s, %llu of %llu "
		   "pages present, %s. Not retrying: re-entering would fail the same way",
		   strerror(-f->err), f->exit_reason, (unsigned long long)f->rip, mfi,
		   atomic_load(&s->stopping) ? "stopped" :
		   atomic_load(&s->started) ? "running" : "not started",
		   (unsigned long long)present, (unsigned long long)total, last);
}

int pagein_kvm_handle_run(struct pagein_space *s, int vcpu_fd, struct kvm_run *run, int err,
			  struct pagein_kvm_fault *info)
{
	struct pagein_kvm_fault f;
#if defined(__x86_64__) || defined(__i386__)
	struct kvm_regs regs;
#endif

	memset(&f, 0, sizeof(f));
	f.err = err;
	f.exit_reason = run->exit_reason;
	f.gpa = PAGEIN_KVM_GPA_UNKNOWN;
	f.memory_fault_info = atomic_load(&kvm_mfi);

	/* Documented: MEMORY_FAULT comes with -1/EFAULT or EHWPOISON; accept a 0 return too. */
	if (run->exit_reason == KVM_EXIT_MEMORY_FAULT &&
	    (err == 0 || err == -EFAULT || err == -EHWPOISON)) {
		const struct pi_kvm_memory_fault *mf =
			(const void *)((const char *)run + offsetof(struct kvm_run, mmio));

		f.annotated = 1;
		f.flags = mf->flags;
		f.gpa = mf->gpa;
		f.size = mf->size;
		/* consume it: a later bare EFAULT must not be mistaken for this fault again */
		run->exit_reason = KVM_EXIT_UNKNOWN;
		if (info)
			*info = f;
		return resolve_annotated(s, &f);
	}
	if (info)
		*info = f;
	if (err == 0)
		return 0; /* an ordinary exit: the caller's business */
	if (err != -EFAULT && err != -EHWPOISON)
		return err; /* EINTR, EAGAIN, ...: not about guest memory */

#if defined(__x86_64__) || defined(__i386__)
	/* the instruction pointer helps the report; struct kvm_regs is per architecture */
	if (vcpu_fd >= 0 && ioctl(vcpu_fd, KVM_GET_REGS, &regs) == 0)
		f.rip = regs.rip;
#endif
	if (info)
		*info = f;
	report_bare(s, &f);
	return err;
}
