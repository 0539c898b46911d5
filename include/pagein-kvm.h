/* SPDX-License-Identifier: MIT */
/*
 * pagein-kvm.h - pagein for KVM-based VMMs (lib/kvm.c): a space's regions as KVM memslots, and
 * KVM_RUN's memory faults resolved on the vCPU thread. Include it next to pagein.h (which does
 * not include it); docs/kvm.md describes the semantics and the kernel patch it can use.
 */
#ifndef PAGEIN_KVM_H
#define PAGEIN_KVM_H

#include <stdint.h>

#include "pagein.h"

#ifdef __cplusplus
extern "C" {
#endif

/*
 * uAPI of pagein's own KVM patch (kvm/patches/, GPL-2.0; not upstream, so the values are private
 * and only meant for Linux 6.12 with that patch). A memslot with PAGEIN_KVM_MEM_EXIT_ON_MISSING
 * maps into the guest only pages the host already maps for the access; any other vCPU fault fails
 * KVM_RUN with EFAULT and KVM_EXIT_MEMORY_FAULT {gpa, size, flags}, flags carrying the bits below.
 * A stock kernel refuses the memslot flag with EINVAL.
 */
#define PAGEIN_KVM_MEM_EXIT_ON_MISSING (1u << 3)     /* memslot flag (KVM_MEM_EXIT_ON_MISSING) */
#define PAGEIN_KVM_EXIT_FLAG_READ (1ull << 32)       /* the vCPU read (or fetched) */
#define PAGEIN_KVM_EXIT_FLAG_WRITE (1ull << 33)      /* the vCPU wrote */
#define PAGEIN_KVM_EXIT_FLAG_EXEC (1ull << 34)       /* an instruction fetch (with READ) */
#define PAGEIN_KVM_EXIT_FLAG_MISSING (1ull << 35)    /* an exit-on-missing exit */

struct kvm_run;

#define PAGEIN_KVM_REENTER 1                /* pagein_kvm_handle_run: fault served, KVM_RUN again */
#define PAGEIN_KVM_GPA_UNKNOWN UINT64_MAX  /* pagein_kvm_fault.gpa when KVM did not say */
#define PAGEIN_KVM_MAX_VCPUS 64            /* vCPUs pagein_kvm_vcpu_bind can count */

/* What pagein_kvm_handle_run learnt about a KVM_RUN. */
struct pagein_kvm_fault {
	int err;               /* KVM_RUN's result as passed in: 0 or -errno */
	uint32_t exit_reason;  /* run->exit_reason when KVM_RUN returned */
	int annotated;         /* 1: KVM_EXIT_MEMORY_FAULT described the fault (flags, gpa, size) */
	int memory_fault_info; /* KVM_CAP_MEMORY_FAULT_INFO as last probed: >0 yes, 0 no, -1 unknown */
	uint64_t flags;        /* run->memory_fault.flags (KVM_MEMORY_EXIT_FLAG_*), if annotated */
	uint64_t gpa;          /* faulting guest address, or PAGEIN_KVM_GPA_UNKNOWN */
	uint64_t size;         /* bytes of the faulting range (annotated only) */
	uint64_t rip;          /* the vCPU's instruction pointer on a bare EFAULT (0 if unknown) */
};

/* pagein_kvm_attach_flags: keep the handler-thread path even where exit-on-missing exists. */
#define PAGEIN_KVM_ATTACH_NO_EXIT 1u

/*
 * Register every region of space as a KVM memslot of vm_fd: slots first_slot, first_slot+1, ...
 * in the order the regions were added, with KVM_SET_USER_MEMORY_REGION2 where the kernel has it,
 * and with PAGEIN_KVM_MEM_EXIT_ON_MISSING where the kernel has that (else the log says why and
 * vCPU faults keep reaching the handler threads through KVM's GUP). The space must use
 * PAGEIN_FRONTEND_HANDLER (KVM's own accesses to guest memory come from kernel mode, which SIGBUS
 * self-resolve cannot serve) with privileged userfaultfds, and must be started. Returns the number
 * of slots, -EINVAL (the log says why), or -errno of the ioctl (the slots this call added are
 * removed again). Probes KVM_CAP_MEMORY_FAULT_INFO as a side effect. Any thread; one VM per space.
 */
int pagein_kvm_attach(struct pagein_space *space, int vm_fd, uint32_t first_slot);
/* The same with PAGEIN_KVM_ATTACH_* flags. */
int pagein_kvm_attach_flags(struct pagein_space *space, int vm_fd, uint32_t first_slot,
			    unsigned flags);

/* Delete the memslots pagein_kvm_attach made. Returns 0 or the first -errno. */
int pagein_kvm_detach(struct pagein_space *space, int vm_fd, uint32_t first_slot);

/* 1 when the attached memslots have PAGEIN_KVM_MEM_EXIT_ON_MISSING, 0 when not. */
int pagein_kvm_exit_on_missing(struct pagein_space *space);

/*
 * Set (on = 1) or clear the flag on the live memslots pagein_kvm_attach made (a flags-only memslot
 * change; mappings KVM already has stay). Returns 0, -EOPNOTSUPP when the kernel lacks the flag
 * (the log says why), -ENOTCONN when the space is not attached, or the ioctl's -errno.
 */
int pagein_kvm_set_exit_on_missing(struct pagein_space *space, int on);

/* KVM_CHECK_EXTENSION(KVM_CAP_MEMORY_FAULT_INFO) on a /dev/kvm or VM fd: >0 the kernel annotates
 * (some) EFAULTs with KVM_EXIT_MEMORY_FAULT, 0 it does not, -errno. */
int pagein_kvm_memory_fault_info(int fd);

/*
 * Call on the vCPU thread right after every KVM_RUN, with err = 0 or -errno of KVM_RUN. Returns
 * PAGEIN_KVM_REENTER when it resolved an annotated memory fault and the caller should call KVM_RUN
 * again; 0 for an ordinary exit (handle run->exit_reason yourself); err itself for errors unrelated
 * to memory (-EINTR, ...); and -errno when the fault cannot be served. An exit-on-missing exit is
 * resolved for its access on this thread: a missing page is fetched and installed; a page pagein
 * holds but the host does not map for the access (a write to a zero page, a memfd page only in the
 * page cache, a page discarded by the guest) is mapped again or made writable, never fetched
 * again; a page whose fetch failed returns -EIO; a frozen page follows the frozen policy (WAIT:
 * this thread waits for pagein_thaw; FAIL: -EFAULT). Also -EFAULT for a bare EFAULT (no
 * annotation: the gpa is unknown), a private-memory fault, a gpa outside the space, or the same
 * gpa faulting again and again after being resolved; -EHWPOISON for a poisoned host page. Failures
 * are logged with everything known; never re-enter after one. vcpu_fd (or -1) is only read for the
 * rip in the report; info (or NULL) gets details.
 */
int pagein_kvm_handle_run(struct pagein_space *space, int vcpu_fd, struct kvm_run *run, int err,
			  struct pagein_kvm_fault *info);

/*
 * Per-vCPU counts. Call pagein_kvm_vcpu_bind(space, i) on vCPU i's thread (i <
 * PAGEIN_KVM_MAX_VCPUS) before its first KVM_RUN: exits resolved by pagein_kvm_handle_run on that
 * thread, and the userfaultfd faults the handler threads serve for that thread (KVM's GUP on its
 * behalf), are then counted for vCPU i. Returns 0 or -EINVAL.
 */
int pagein_kvm_vcpu_bind(struct pagein_space *space, unsigned vcpu);

struct pagein_kvm_vcpu_stats {
	uint64_t exits;          /* exit-on-missing exits resolved on the vCPU thread */
	uint64_t exit_pages;     /* pages made present or mapped for those exits */
	uint64_t handler_faults; /* userfaultfd faults of the vCPU thread served by handler threads */
	uint64_t other_exits;    /* other annotated memory faults resolved */
};

/* Copy vCPU i's counts. Returns 0 or -EINVAL. Any thread. */
int pagein_kvm_vcpu_stats(struct pagein_space *space, unsigned vcpu,
			  struct pagein_kvm_vcpu_stats *st);

#ifdef __cplusplus
}
#endif

#endif /* PAGEIN_KVM_H */
