/* SPDX-License-Identifier: MIT */
/*
 * hspace.h - stage 2 of the KVM harness: guest memory as a pagein space. Builds a HANDLER space
 * with one region of the asked backing over a seeded source image, attaches it to the harness's
 * VM through pagein_kvm_attach, and routes every KVM_RUN result through pagein_kvm_handle_run.
 */
#ifndef PAGEIN_KVM_HSPACE_H
#define PAGEIN_KVM_HSPACE_H

#include "harness.h"
#include "pagein.h"

#define H_SPACE_SLOT 1 /* first memslot of the space (slot 0 is the harness's system slot) */

struct h_space {
	struct pagein_space *space;
	struct pagein_source *src;
	uint8_t *image;                /* the source's bytes: the pattern over [gpa, gpa+size) */
	uint8_t *host;                 /* the region's host mapping */
	uint64_t gpa, size;
	enum pagein_backing backing;
	struct pagein_kvm_fault last;  /* the latest failure the hook saw */
	uint64_t annotated, bare;      /* memory-fault exits resolved / bare EFAULTs seen */
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
void h_space_free(struct h_space *hs, struct h_vm *vm);

/* The harness's run hook: arg is the struct h_space. */
int h_space_hook(void *arg, int vcpu_fd, struct kvm_run *run, int err);

/* One line of the space's counters: faults, pages installed, races, fault latency. */
void h_space_print_stats(struct h_space *hs, const char *label);

/* Print the vCPUs' errors and return 1 if h_vm_run failed, else 0. */
int h_report_run(struct h_vm *vm, const char *label, int ret);

#endif /* PAGEIN_KVM_HSPACE_H */
