// SPDX-License-Identifier: MIT
/*
 * kvm.c - `pagein bench --kvm`: real vCPUs (the harness in tests/kvmvm.c) write one word to
 * every page of their slice of guest memory, on populated memory (kvm-plain, the floor) or on a
 * pagein HANDLER space (kvm-handler); KVM's own counters per vCPU; every byte verified.
 */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>
#include <fcntl.h>

#include "bench.h"
#include "kvmvm.h"
#include "pagein-kvm.h"

/* ---------------------------------------------------------------------------------------------
 * --kvm: real vCPUs (tests/kvmvm.c) write one word to every page of their slice of guest memory
 */

/* Guest memory for kvm-plain: size bytes of backing b, mapped the way the library maps it (4 KiB
 * anonymous pages, a memfd, a hugetlb memfd), holding the image: every page present. */
static uint8_t *kvm_plain_mem(enum pagein_backing b, uint64_t size)
{
	uint8_t *m;
	int fd = -1;

	if (b == PAGEIN_BACKING_ANON) {
		m = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		if (m != MAP_FAILED)
			madvise(m, size, MADV_NOHUGEPAGE);
	} else {
		fd = memfd_create("pagein-bench-kvm", MFD_CLOEXEC |
				  (b == PAGEIN_BACKING_HUGETLB ? MFD_HUGETLB : 0));
		if (fd < 0)
			die("memfd_create: %s", strerror(errno));
		if (ftruncate(fd, (off_t)size))
			die("ftruncate memfd to %" PRIu64 " bytes: %s", size, strerror(errno));
		m = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
		close(fd); /* the mapping keeps the file */
	}
	if (m == MAP_FAILED)
		die("mmap %" PRIu64 " bytes of %s: %s%s", size, pagein_backing_name(b),
		    strerror(errno), b == PAGEIN_BACKING_HUGETLB ?
		    " (reserve huge pages: sysctl vm.nr_hugepages=N)" : "");
	memcpy(m, bench_image, size);
	return m;
}

/* Run the guest once: on populated plain memory (kvm-plain) or on a pagein HANDLER space over
 * the seeded image (kvm-handler). Checks the guest's read sums and every byte; dies on a
 * mismatch, as the other rows do. */
void run_kvm(const struct bench_opts *o, const struct bench_case *c,
		    struct bench_result *r)
{
	static struct delay_src dsrc;
	uint64_t size = c->per_vcpu * c->vcpus, per = c->per_vcpu / BENCH_PAGE, c0, c1, slow = 0;
	struct pagein_source *src = NULL;
	struct pagein_config cfg;
	struct h_space hs = { 0 };
	uint8_t *plain = NULL, *host;
	struct h_vm vm;
	char msg[256];
	unsigned i;
	int ret;

	ret = h_vm_new(&vm, c->vcpus, msg);
	if (ret)
		die("creating the VM: %s", msg);
	if (c->kind == KIND_KVM_PLAIN) {
		/* every page present before the guest runs: KVM only maps them */
		plain = kvm_plain_mem(c->backing, size);
		ret = h_vm_add_mem(&vm, H_SPACE_SLOT, H_MEM_GPA, size, plain);
		if (ret)
			die("KVM_SET_USER_MEMORY_REGION (%" PRIu64 " bytes): %s", size,
			    strerror(-ret));
		host = plain;
	} else {
		pagein_config_init(&cfg);
		cfg.frontend = PAGEIN_FRONTEND_HANDLER;
		cfg.readers = c->readers;
		cfg.uffds = c->uffds;
		cfg.fault_around = c->around ? c->around : PAGEIN_AROUND_AUTO;
		cfg.log = tool_log;
		if (o->delay_us) {
			dsrc.img = bench_image;
			dsrc.base = H_MEM_GPA;
			dsrc.len = size;
			dsrc.delay_us = o->delay_us;
			dsrc.spin = o->spin;
			ret = pagein_source_new(&delay_ops, &dsrc, &src);
		} else {
			ret = pagein_source_mem_new(bench_image, H_MEM_GPA, size, &src);
		}
		if (ret)
			die("creating the memory source: %s", strerror(-ret));
		ret = h_space_new_flags(&hs, &vm, c->backing, size, o->seed, &cfg, src, msg,
					c->kind == KIND_KVM_EXIT ? 0 : PAGEIN_KVM_ATTACH_NO_EXIT);
		if (ret)
			die("guest memory as a pagein space: %s%s%s", msg, uffd_hint(-ret),
			    c->backing == PAGEIN_BACKING_HUGETLB ?
			    " (reserve huge pages: sysctl vm.nr_hugepages=N)" : "");
		host = hs.host;
		if (c->kind == KIND_KVM_EXIT && !pagein_kvm_exit_on_missing(hs.space))
			die("kvm-exit: the kernel took exit-on-missing for the probe, not now");
	}
	for (i = 0; i < c->vcpus; i++) {
		uint64_t lo = H_MEM_GPA + i * c->per_vcpu;

		ret = h_vcpu_setup(&vm, i, lo, per, lo, lo + c->per_vcpu);
		if (ret)
			die("setting up vCPU %u: %s", i, strerror(-ret));
	}

	c0 = cpu_ns();
	ret = h_vm_run(&vm);
	c1 = cpu_ns();
	if (h_report_run(&vm, kind_name(c), ret))
		die("%s/%s, %u vCPUs: the guest did not finish (above)", kind_name(c),
		    backing_name(c), c->vcpus);

	r->vcpu_pps = calloc(c->vcpus, sizeof(double));
	r->kvs = calloc(c->vcpus, sizeof(*r->kvs));
	if (!r->vcpu_pps || !r->kvs)
		die("out of memory");
	r->vcpu_min = 1e300;
	r->vcpu_max = 0;
	r->kvm_stats = true;
	for (i = 0; i < c->vcpus; i++) {
		struct h_vcpu *v = &vm.vcpu[i];
		struct kvm_vcpu_stat *k = &r->kvs[i];
		double pps = v->ns ? (double)v->npages * 1e9 / (double)v->ns : 0;

		if (v->read_sum != h_expected_sum(o->seed, v->first_gpa, v->npages, v->lo, v->hi))
			die("VERIFY FAILED: %s/%s, vCPU %u: the guest read other bytes than the "
			    "source holds (read sum 0x%016" PRIx64 ")", kind_name(c), backing_name(c),
			    i, v->read_sum);
		k->pages = v->npages;
		k->ns = v->ns;
		k->runs = v->runs;
		if (h_vcpu_stat(&vm, i, "pf_taken", &k->pf_taken) ||
		    h_vcpu_stat(&vm, i, "pf_fixed", &k->pf_fixed) ||
		    h_vcpu_stat(&vm, i, "exits", &k->exits))
			r->kvm_stats = false;
		r->vcpu_pps[i] = pps;
		if (pps < r->vcpu_min)
			r->vcpu_min = pps;
		if (pps > r->vcpu_max)
			r->vcpu_max = pps;
		if (v->ns > slow)
			slow = v->ns;
	}
	r->pages = per * c->vcpus;
	r->seconds = (double)(slow ? slow : 1) / 1e9;
	r->pps = (double)r->pages / r->seconds;
	r->cpu_us = (double)(c1 - c0) / 1e3;
	if (c->kind != KIND_KVM_PLAIN) {
		for (i = 0; i < c->vcpus; i++) {
			struct pagein_kvm_vcpu_stats vs;

			pagein_kvm_vcpu_stats(hs.space, i, &vs);
			r->kvs[i].eom_exits = vs.exits;
			r->kvs[i].handler_faults = vs.handler_faults;
		}
		pagein_stats_get(hs.space, &r->st);
		r->have_stats = true;
		r->faults = r->st.faults_self + r->st.faults_handler + r->st.faults_kvm;
		r->eexist = r->st.eexist;
		/* the guest loop cannot time its touches: the library's fault service time */
		r->p50_us = (double)pagein_stats_quantile(&r->st, 0.5) / 1e3;
		r->p99_us = (double)pagein_stats_quantile(&r->st, 0.99) / 1e3;
	} else {
		/* no pagein: the faults are KVM's own (stage-2 misses it fixes from present pages) */
		for (i = 0; i < c->vcpus; i++)
			r->faults += r->kvs[i].pf_taken;
		r->p50_us = r->p99_us = -1;
	}

	/* every page was written by the guest, so it is present: reading it takes no fault */
	if (h_verify(NULL, host, H_MEM_GPA, size, o->seed, NULL))
		die("VERIFY FAILED: %s/%s, %u vCPUs: guest memory differs from the source plus "
		    "the guest's writes (mismatches above)", kind_name(c), backing_name(c), c->vcpus);
	r->verified_pages = size / BENCH_PAGE;

	h_space_free(&hs, &vm);
	h_vm_free(&vm);
	if (src)
		pagein_source_free(src);
	if (plain)
		munmap(plain, size);
}

/* ", pagein: exits E, handler faults H" for a vCPU of a pagein row, "" for kvm-plain. */
static const char *pagein_counts(const struct bench_result *r, const struct kvm_vcpu_stat *k)
{
	static char buf[96];

	if (r->c.kind == KIND_KVM_PLAIN)
		return "";
	snprintf(buf, sizeof(buf), ", pagein: exits %" PRIu64 ", handler faults %" PRIu64,
		 k->eom_exits, k->handler_faults);
	return buf;
}

/* The lines under a kvm row: what each vCPU did and what KVM counted for it. */
void print_kvm_vcpus(const struct bench_result *r)
{
	unsigned i;

	for (i = 0; i < r->c.vcpus; i++) {
		const struct kvm_vcpu_stat *k = &r->kvs[i];
		char counts[128];

		if (r->kvm_stats)
			snprintf(counts, sizeof(counts), "KVM page faults taken %" PRIu64 " fixed %"
				 PRIu64 ", exits %" PRIu64, k->pf_taken, k->pf_fixed, k->exits);
		else
			snprintf(counts, sizeof(counts), "KVM statistics unavailable");
		fprintf(bench_tab, "  %s vCPU %u: %" PRIu64 " pages, %.0f pages/s, %s, KVM_RUN x%" PRIu64
			"%s %s\n", kind_name(&r->c), i, k->pages, r->vcpu_pps[i], counts, k->runs,
			pagein_counts(r, k), EMULATED_NOTE);
	}
	fprintf(bench_tab, "  %s: verified %" PRIu64 " pages, every byte (guest writes, the source's "
		"pattern elsewhere): ok\n", kind_name(&r->c), r->verified_pages);
}

/* Whether KVM here takes exit-on-missing (pagein's KVM patch): a throw-away VM and space. */
static bool kvm_has_exit_on_missing(void)
{
	struct h_space hs;
	struct h_vm vm;
	char msg[256];
	bool have;

	if (h_vm_new(&vm, 1, msg))
		return false;
	if (h_space_new(&hs, &vm, PAGEIN_BACKING_ANON, 1ull << 20, 1, NULL, NULL, msg)) {
		h_vm_free(&vm);
		return false;
	}
	have = pagein_kvm_exit_on_missing(hs.space);
	h_space_free(&hs, &vm);
	h_vm_free(&vm);
	return have;
}

/* --kvm: kvm-plain, kvm-handler and (where KVM has pagein's patch) kvm-exit, -n times each,
 * interleaved; a headline ratio and the exit / handler-fault counts. Exits 77 where there is no
 * /dev/kvm: a bench without real vCPUs would be a fake result. */
int bench_kvm(const struct bench_opts *o)
{
	struct bench_case cases[3] = {
		{ .kind = KIND_KVM_PLAIN, .backing = o->backing, .vcpus = o->vcpus,
		  .around = 1, .per_vcpu = o->per_vcpu },
		{ .kind = KIND_KVM_HANDLER, .frontend = PAGEIN_FRONTEND_HANDLER,
		  .backing = o->backing, .vcpus = o->vcpus,
		  .readers = o->readers ? o->readers : o->vcpus,
		  .uffds = o->uffds ? o->uffds : o->vcpus, .around = o->around,
		  .per_vcpu = o->per_vcpu },
		{ .kind = KIND_KVM_EXIT, .frontend = PAGEIN_FRONTEND_HANDLER,
		  .backing = o->backing, .vcpus = o->vcpus,
		  .readers = o->readers ? o->readers : o->vcpus,
		  .uffds = o->uffds ? o->uffds : o->vcpus, .around = o->around,
		  .per_vcpu = o->per_vcpu },
	};
	const struct bench_result *hr = NULL, *er = NULL, *pr = NULL;
	struct bench_result warm;
	unsigned ncases = 3;
	uint64_t size = o->per_vcpu * o->vcpus;
	uint8_t *img;
	char ar[16];

	if (access("/dev/kvm", F_OK)) {
		fprintf(stderr, "pagein bench --kvm: SKIP: no /dev/kvm here: run make test-kvm, which "
			"runs this bench inside a guest kernel under QEMU\n");
		return 77;
	}
	if (o->frontend_given && o->frontend != PAGEIN_FRONTEND_HANDLER)
		die("--kvm uses the handler front-end: KVM touches guest memory from kernel mode, "
		    "which self-resolve cannot serve (docs/kvm.md)");
	if (o->rand || o->overlap || o->fill || o->matrix || o->baseline || o->restore)
		die("--kvm takes --vcpus, -b, -s, -r, -u, -d, --spin, --around, -n, --json, --seed, "
		    "--timeout; not -a, -o, --fill, --matrix, --baseline or --restore");
	if (o->vcpus > H_MAX_VCPUS)
		die("--kvm: at most %u vCPUs", H_MAX_VCPUS);
	check_sizes(o, o->per_vcpu);
	if (size > H_MAPPED - H_MEM_GPA)
		die("--kvm: %u vCPUs x %" PRIu64 " MiB do not fit the guest's %" PRIu64 " MiB of "
		    "test memory", o->vcpus, o->per_vcpu >> 20, (uint64_t)(H_MAPPED - H_MEM_GPA) >> 20);

	img = malloc(size);
	if (!img)
		die("out of memory for the %" PRIu64 " MiB source image", size >> 20);
	h_fill(img, H_MEM_GPA, size, o->seed);
	bench_image = img;
	h_set_output(bench_tab);

	/* untimed: the first VM of a process pays for KVM's and the host's first-use costs */
	run_once(o, &cases[0], &warm);
	free(warm.vcpu_pps);
	free(warm.kvs);

	if (!kvm_has_exit_on_missing()) {
		ncases = 2;
		fprintf(bench_tab, "kvm-exit: not run: this KVM refuses the memslot flag "
			"KVM_MEM_EXIT_ON_MISSING (stock KVM; pagein's patch is kvm/patches/)\n");
	}
	print_header();
	fprintf(bench_tab, "kvm: %u vCPUs x %" PRIu64 " KiB, guest writes one word per 4 KiB page %s\n",
		o->vcpus, o->per_vcpu >> 10, EMULATED_NOTE);
	run_group(o, cases, ncases);
	for (unsigned i = 0; i < bench_nrows; i++) {
		if (bench_rows[i].c.kind == KIND_KVM_PLAIN)
			pr = &bench_rows[i];
		if (bench_rows[i].c.kind == KIND_KVM_HANDLER)
			hr = &bench_rows[i];
		if (bench_rows[i].c.kind == KIND_KVM_EXIT)
			er = &bench_rows[i];
	}
	snprintf(ar, sizeof(ar), o->around ? "%u" : "auto", o->around);
	fprintf(bench_tab, "\nheadline: [kvm, %s, %u vCPUs, rd %u uf %u, around %s, delay %u us] "
		"kvm-handler %.0f pages/s = %.2fx kvm-plain's %.0f pages/s %s\n",
		pagein_backing_name(o->backing), o->vcpus, cases[1].readers, cases[1].uffds, ar,
		o->delay_us, hr->pps, hr->pps / pr->pps, pr->pps, EMULATED_NOTE);
	if (er) {
		uint64_t he = 0, hh = 0, ee = 0, eh = 0;

		for (unsigned i = 0; i < o->vcpus; i++) {
			he += hr->kvs[i].eom_exits;
			hh += hr->kvs[i].handler_faults;
			ee += er->kvs[i].eom_exits;
			eh += er->kvs[i].handler_faults;
		}
		/* the counts are what to trust here: they do not depend on the emulation */
		fprintf(bench_tab, "exits vs handler threads: kvm-handler: %" PRIu64 " vCPU faults at "
			"the handler threads, %" PRIu64 " exits; kvm-exit: %" PRIu64 " exits resolved "
			"on the vCPU threads, %" PRIu64 " at the handler threads (per vCPU above); "
			"kvm-exit %.0f pages/s = %.2fx kvm-handler %s\n", hh, he, ee, eh, er->pps,
			er->pps / hr->pps, EMULATED_NOTE);
	}
	fflush(bench_tab);
	free(img);
	bench_image = NULL;
	return 0;
}
