// SPDX-License-Identifier: MIT
/*
 * hspace.c - stage 2 of the KVM harness: a pagein space as guest memory (see hspace.h). Every
 * KVM access to a missing page reaches the space's userfaultfd handler threads through GUP.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hspace.h"

void h_log(void *arg, int level, const char *msg)
{
	static const char *names[8] = { [3] = "err", [4] = "warn", [6] = "info", [7] = "debug" };

	(void)arg;
	if (level == PAGEIN_LOG_DEBUG)
		return;
	printf("  pagein %s: %s\n", level >= 0 && level < 8 && names[level] ? names[level] : "?",
	       msg);
	fflush(stdout);
}

int h_space_new(struct h_space *hs, struct h_vm *vm, enum pagein_backing b, uint64_t size,
		uint64_t seed, const struct pagein_config *cfg, struct pagein_source *src, char *msg)
{
	struct pagein_config c;
	void *host = NULL;
	int ret;

	memset(hs, 0, sizeof(*hs));
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
	ret = pagein_kvm_attach(hs->space, vm->vm_fd, H_SPACE_SLOT);
	if (ret < 0) {
		snprintf(msg, 256, "pagein_kvm_attach: %s", strerror(-ret));
		goto err_src;
	}
	vm->hook = h_space_hook;
	vm->hook_arg = hs;
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
	printf("%s space (%s, %s): userfaultfd faults %" PRIu64 ", KVM memory-fault exits %" PRIu64
	       ", pages demand %" PRIu64 " around %" PRIu64 " accessor %" PRIu64 ", races lost %"
	       PRIu64 ", EEXIST %" PRIu64 ", present %" PRIu64 "/%" PRIu64 ", fault latency p50 %"
	       PRIu64 " us p99 %" PRIu64 " us (timings inside the emulated guest say nothing about "
	       "real performance)\n",
	       label, pagein_backing_name(hs->backing), pagein_frontend_name(PAGEIN_FRONTEND_HANDLER),
	       st.faults_handler, st.faults_kvm, st.pages_demand, st.pages_around,
	       st.pages_accessor, st.races_lost, st.eexist, present, total,
	       pagein_stats_quantile(&st, 0.5) / 1000, pagein_stats_quantile(&st, 0.99) / 1000);
}

int h_report_run(struct h_vm *vm, const char *label, int ret)
{
	if (ret == 0)
		return 0;
	printf("%s: FAIL: h_vm_run: %s\n", label, strerror(-ret));
	for (unsigned i = 0; i < vm->nvcpus; i++)
		if (vm->vcpu[i].err)
			printf("%s: FAIL: %s\n", label, vm->vcpu[i].why);
	return 1;
}
