/* SPDX-License-Identifier: MIT */
/*
 * kvm_api.h - the pagein_kvm_* declarations proposed for include/pagein.h, for as long as the
 * public header lacks them (lib/kvm.c carries the same block). Skipped once pagein.h has them.
 */
#ifndef PAGEIN_KVM_API_H
#define PAGEIN_KVM_API_H

#include "pagein.h"

#ifndef PAGEIN_KVM_REENTER
/* PAGEIN_KVM_BLOCK_BEGIN (the text proposed for include/pagein.h, kept identical in lib/kvm.c) */
struct kvm_run;

#define PAGEIN_KVM_REENTER 1                /* pagein_kvm_handle_run: fault served, KVM_RUN again */
#define PAGEIN_KVM_GPA_UNKNOWN UINT64_MAX  /* pagein_kvm_fault.gpa when KVM did not say */

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

/*
 * Register every region of space as a KVM memslot of vm_fd: slots first_slot, first_slot+1, ...
 * in the order the regions were added, with KVM_SET_USER_MEMORY_REGION2 where the kernel has it.
 * The space must use PAGEIN_FRONTEND_HANDLER (KVM touches guest memory from kernel mode, which
 * SIGBUS self-resolve cannot serve) with privileged userfaultfds, and must be started. Returns the
 * number of slots, -EINVAL (the log says why), or -errno of the ioctl (the slots this call added
 * are removed again). Probes KVM_CAP_MEMORY_FAULT_INFO as a side effect. Any thread.
 */
int pagein_kvm_attach(struct pagein_space *space, int vm_fd, uint32_t first_slot);

/* Delete the memslots pagein_kvm_attach made. Returns 0 or the first -errno. */
int pagein_kvm_detach(struct pagein_space *space, int vm_fd, uint32_t first_slot);

/* KVM_CHECK_EXTENSION(KVM_CAP_MEMORY_FAULT_INFO) on a /dev/kvm or VM fd: >0 the kernel annotates
 * (some) EFAULTs with KVM_EXIT_MEMORY_FAULT, 0 it does not, -errno. */
int pagein_kvm_memory_fault_info(int fd);

/*
 * Call on the vCPU thread right after every KVM_RUN, with err = 0 or -errno of KVM_RUN. Returns
 * PAGEIN_KVM_REENTER when it resolved an annotated memory fault (KVM_EXIT_MEMORY_FAULT, via
 * pagein_resolve) and the caller should call KVM_RUN again; 0 for an ordinary exit (handle
 * run->exit_reason yourself); err itself for errors unrelated to memory (-EINTR, ...); and -EFAULT
 * / -EHWPOISON / pagein_resolve's -errno when the fault cannot be served: a bare EFAULT (no
 * annotation: the gpa is unknown), a private-memory fault, a poisoned page, or the same gpa
 * faulting again after being resolved. Failures are logged with everything known; never re-enter
 * after one. vcpu_fd (or -1) is only read for the rip in the report; info (or NULL) gets details.
 */
int pagein_kvm_handle_run(struct pagein_space *space, int vcpu_fd, struct kvm_run *run, int err,
			  struct pagein_kvm_fault *info);
/* PAGEIN_KVM_BLOCK_END */
#endif

#endif /* PAGEIN_KVM_API_H */
