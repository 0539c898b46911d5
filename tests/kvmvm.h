/* SPDX-License-Identifier: MIT */
/*
 * kvmvm.h - the one vCPU harness of the project, shared by `pagein bench --kvm` and the KVM tests
 * (tests/kvm, linked in statically): a minimal VMM whose N vCPUs run in 64-bit long mode, each
 * writing one word to every page of its slice of guest memory; guest memory as a pagein HANDLER
 * space (pagein_kvm_attach); host-side verification of every byte.
 */
#ifndef PAGEIN_KVMVM_H
#define PAGEIN_KVMVM_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <errno.h>

#include "pagein.h"
#include "pagein-kvm.h"

#define H_MAX_VCPUS 16
#define H_PAGE ((uint64_t)4096)
#define H_SYS_SLOT 0                     /* memslot of the page tables, GDT, code, stacks */
#define H_SYS_SIZE (256ull << 10)         /* ordinary memory, never lazily paged */
#define H_SYS_PML4 0x1000ull              /* the guest's PML4 in the system slot (kvmvm.c) */
#define H_SYS_PD 0x3000ull                /* its first page directory: gva [0, 1 GiB) = gpa */
#define H_SYS_FREE 0x30000ull             /* [H_SYS_FREE, H_SYS_SIZE): free for a test's use */
#define H_MEM_GPA (1ull << 30)            /* where test memory starts in the guest */
#define H_MAPPED (4ull << 30)             /* the guest's identity map covers [0, 4 GiB) */
#define H_PORT_DONE 0x10                  /* the guest's `out` when its slice is done */
#define H_GUEST_READ_OFF 8                /* the guest reads this word of each page ... */
#define H_HOST_OFF 2048                   /* ... and the host accessors write this one */
#define H_TAG 0x7061676569006b76ull       /* guest writes gpa ^ H_TAG at offset 0 of a page */
#define H_HOST_TAG 0x686f737400000000ull  /* host accessors write gpa ^ H_HOST_TAG */

struct kvm_run;

/*
 * Called on the vCPU thread after every KVM_RUN with err = 0 or -errno. Returns 1 to enter the
 * guest again at once, 0 to let the harness handle run->exit_reason, or -errno to stop this vCPU
 * with a failure. NULL: a failed KVM_RUN stops the vCPU.
 */
typedef int (*h_run_hook)(void *arg, int vcpu_fd, struct kvm_run *run, int err);

/* One vCPU: its fds, its slice and what it did. */
struct h_vcpu {
	struct h_vm *vm;
	unsigned id;
	int fd;
	struct kvm_run *run;     /* the shared run page(s) */
	int stats_fd;            /* KVM binary statistics of this vCPU, -1 if the kernel has none */
	uint64_t first_gpa;      /* page the loop starts at */
	uint64_t npages;         /* pages it visits */
	uint64_t lo, hi;         /* the walk wraps from hi back to lo */
	uint64_t read_sum;       /* out: sum of the words the guest read (r10 at done) */
	uint64_t runs;           /* out: KVM_RUN calls */
	uint64_t reentries;      /* out: KVM_RUNs the hook asked to repeat */
	uint64_t ns;             /* out: wall time from first KVM_RUN to done */
	int err;                 /* out: 0, or -errno / -EPROTO (unexpected exit) */
	char why[256];           /* out: what went wrong, for the test's message */
	pthread_t thread;
};

struct h_vm {
	int kvm_fd;
	int vm_fd;
	size_t run_size;
	uint8_t *sys;            /* host memory of the system slot */
	unsigned nvcpus;
	struct h_vcpu vcpu[H_MAX_VCPUS];
	h_run_hook hook;
	void *hook_arg;
	void (*on_start)(void *arg, unsigned vcpu); /* on each vCPU thread first */
	void *start_arg;
};

/*
 * Open /dev/kvm and make a VM with n vCPUs and its system slot (page tables, GDT, TSS, the guest
 * loop, stacks). Returns 0, -ENODEV (no /dev/kvm: the caller skips), or -errno; msg (if not NULL,
 * 256 bytes) says what failed.
 */
int h_vm_new(struct h_vm *vm, unsigned n, char *msg);
void h_vm_free(struct h_vm *vm);

/* Map host memory [host, host+size) at gpa as memslot slot (plain KVM_SET_USER_MEMORY_REGION). */
int h_vm_add_mem(struct h_vm *vm, unsigned slot, uint64_t gpa, uint64_t size, void *host);

/*
 * Give vCPU i its walk: npages pages from first_gpa, stepping one page and wrapping from hi to lo.
 * Sets its registers; call before h_vm_run().
 */
int h_vcpu_setup(struct h_vm *vm, unsigned i, uint64_t first_gpa, uint64_t npages, uint64_t lo,
		 uint64_t hi);

/* Run every vCPU on its own thread until each reports done or fails. Returns 0 or the first
 * vCPU's error. */
int h_vm_run(struct h_vm *vm);

/* A KVM statistic of vCPU i by name ("pf_taken", "exits", ...); -ENOENT if absent. */
int h_vcpu_stat(struct h_vm *vm, unsigned i, const char *name, uint64_t *val);

/* A capability of the VM (KVM_CHECK_EXTENSION on the VM fd). */
int h_vm_cap(struct h_vm *vm, unsigned cap);

/* The seeded pattern (tools/pattern.h, with no zero pages): the word at guest address gpa
 * (8-byte aligned) of the source image. */
uint64_t h_pattern(uint64_t seed, uint64_t gpa);

/* Fill buf, the image of [gpa, gpa+len), with the pattern. */
void h_fill(void *buf, uint64_t gpa, uint64_t len, uint64_t seed);

/* Sum of the words the guest loop reads over a walk (what h_vcpu.read_sum should be). */
uint64_t h_expected_sum(uint64_t seed, uint64_t first_gpa, uint64_t npages, uint64_t lo,
			uint64_t hi);

/* Compare every vCPU's read_sum with h_expected_sum, printing one line per vCPU
 * ("<label> vCPU i: guest read sum ... -> ok|BAD"). Returns the number of vCPUs that are wrong. */
unsigned h_check_sums(const struct h_vm *vm, const char *label, uint64_t seed);

/*
 * Check every byte of [gpa, gpa+size) at host: offset 0 of each page holds gpa ^ H_TAG, the word
 * at H_HOST_OFF holds gpa ^ H_HOST_TAG where host_marks[page] is set (host_marks may be NULL),
 * everything else the pattern. Prints one line "verify <label>: ..." (none when label is NULL)
 * and up to 4 mismatches. Returns the number of mismatching pages.
 */
uint64_t h_verify(const char *label, const void *host, uint64_t gpa, uint64_t size, uint64_t seed,
		  const uint8_t *host_marks);

/* Fail the test (exit 1, with a message naming it) if it is still running after secs seconds:
 * a vCPU stuck on a page that never arrives must not hang the tier. */
void h_watchdog(const char *name, unsigned secs);

/* Print per-vCPU lines: pages walked, KVM's page-fault counters, time. */
void h_print_vcpus(struct h_vm *vm, const char *label);

/* Where the harness prints its lines (verify, per-vCPU, space counters, log, failures): stdout
 * unless set. `pagein bench --json` sends them to stderr, keeping stdout for JSON. */
void h_set_output(FILE *f);

/* Nanoseconds on CLOCK_MONOTONIC. */
uint64_t h_now_ns(void);

/* Print a test failure with file:line, the expression and errno, and return 1 from main. */
#define H_ASSERT(expr) \
	do { \
		if (!(expr)) { \
			fprintf(stderr, "%s:%d: assertion failed: %s (errno %d: %s)\n", __FILE__, \
				__LINE__, #expr, errno, strerror(errno)); \
			return 1; \
		} \
	} while (0)

/* ---------------------------------------------------------------------------------------------
 * Guest memory as a pagein space
 */
#define H_SPACE_SLOT 1 /* first memslot of the space (slot 0 is the harness's system slot) */

struct h_space {
	struct pagein_space *space;
	struct pagein_source *src;
	uint8_t *image;                /* the source's bytes: the pattern over [gpa, gpa+size) */
	uint8_t *host;                 /* the region's host mapping */
	uint64_t gpa, size;
	enum pagein_backing backing;
	struct pagein_kvm_fault last;  /* the latest failure the hook saw */
	unsigned attach_flags;         /* PAGEIN_KVM_ATTACH_* given to pagein_kvm_attach_flags */
	uint64_t annotated, bare;      /* memory-fault exits resolved / bare EFAULTs seen */
	uint64_t exit_sizes;           /* OR of the sizes of the exits resolved (powers of two) */
	uint64_t exit_flags;           /* OR of their memory_fault.flags */
};

/* Log callback printing "  pagein: <level> <msg>" (attach's INFO line included). */
void h_log(void *arg, int level, const char *msg);

/*
 * Make hs: a HANDLER space (cfg NULL: defaults plus h_log; else cfg as given, frontend forced to
 * HANDLER unless cfg asks otherwise), one region of size bytes at H_MEM_GPA with backing b, the
 * pattern of seed as its source (src, if not NULL, instead), started and attached to vm. Returns
 * 0; -ENOMEM/-ENOSPC for a backing the machine cannot provide (e.g. no huge pages: the caller
 * skips), or -errno; msg (256 bytes) says what failed.
 */
int h_space_new(struct h_space *hs, struct h_vm *vm, enum pagein_backing b, uint64_t size,
		uint64_t seed, const struct pagein_config *cfg, struct pagein_source *src, char *msg);
/* The same with PAGEIN_KVM_ATTACH_* flags (PAGEIN_KVM_ATTACH_NO_EXIT: handler threads only). */
int h_space_new_flags(struct h_space *hs, struct h_vm *vm, enum pagein_backing b, uint64_t size,
		      uint64_t seed, const struct pagein_config *cfg, struct pagein_source *src,
		      char *msg, unsigned attach_flags);
void h_space_free(struct h_space *hs, struct h_vm *vm);

/* Sum over vm's vCPUs of pagein's per-vCPU counts (pagein_kvm_vcpu_stats); *per (if not NULL,
 * vm->nvcpus entries) gets each. Prints one line per vCPU when label is not NULL:
 * "<label> vCPU i: exits E (pages P), handler faults H, other exits O". */
void h_space_vcpu_stats(struct h_space *hs, struct h_vm *vm, const char *label,
			struct pagein_kvm_vcpu_stats *sum, struct pagein_kvm_vcpu_stats *per);

/* The harness's run hook: arg is the struct h_space. */
int h_space_hook(void *arg, int vcpu_fd, struct kvm_run *run, int err);

/* One line of the space's counters: faults, pages installed, races, fault latency. */
void h_space_print_stats(struct h_space *hs, const char *label);

/* Print the vCPUs' errors and return 1 if h_vm_run failed, else 0. */
int h_report_run(struct h_vm *vm, const char *label, int ret);

/* ---------------------------------------------------------------------------------------------
 * One test run, the steps every walk test of tests/kvm takes: h_test_open, h_test_walks, (the
 * test's own work around) h_vm_run, h_test_report, the test's checks, h_test_verify, h_test_close.
 * Each prints its "<label>: FAIL: ..." line itself.
 */

/*
 * h_vm_new with nvcpus vCPUs and h_space_new_flags(b, size, seed, cfg, attach_flags) on it.
 * Returns 0 (close with h_test_close), 77 with a SKIP line (no /dev/kvm; hugetlb with no huge
 * pages reserved), or 1 with a FAIL line; on 77 and 1 nothing is left to free.
 */
int h_test_open(struct h_vm *vm, struct h_space *hs, const char *label, unsigned nvcpus,
		enum pagein_backing b, uint64_t size, uint64_t seed, const struct pagein_config *cfg,
		unsigned attach_flags);

/*
 * Give every vCPU its walk of hs. shared false: vCPU i walks its own slice, [i * slice, (i + 1)
 * * slice) of the space. shared true: every vCPU walks the whole space, the even ones from its
 * start and the odd ones from its middle, so their faults meet on the same pages. 0, or 1 (FAIL).
 */
int h_test_walks(struct h_vm *vm, struct h_space *hs, const char *label, uint64_t slice,
		 bool shared);

/* After h_vm_run returned ret: its errors (1, FAIL lines), else the per-vCPU lines and the
 * space's counters (0). */
int h_test_report(struct h_vm *vm, struct h_space *hs, const char *label, int ret);

/* The guest's read sums (h_check_sums) and every byte of the space (h_verify with host_marks):
 * 0, or 1 when either is wrong (its lines printed). */
int h_test_verify(struct h_vm *vm, struct h_space *hs, const char *label, uint64_t seed,
		  const uint8_t *host_marks);

/* Free hs and vm, print "<label>: PASS|FAIL" and return fail. */
int h_test_close(struct h_vm *vm, struct h_space *hs, const char *label, int fail);

/* A test's main: run(anon), then run(shmem), each 0 (pass), 1 (fail) or 77 (skip). Returns 77
 * when the first skips (no /dev/kvm), else 0 or 1 with the last line "<name>: PASS|FAIL". */
int h_test_anon_shmem(const char *name, int (*run)(enum pagein_backing b));

/* A test's last line: "<name>: FAIL (<fails> run(s) failed)" and 1, or "<name>: PASS (<skips>
 * <what> skipped)" and 0. */
int h_test_summary(const char *name, int fails, int skips, const char *what);

#endif /* PAGEIN_KVMVM_H */
