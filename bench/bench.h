/* SPDX-License-Identifier: MIT */
/*
 * bench.h - what the files of `pagein bench` share: the rows (what a run measures), the vCPU
 * threads every row's timing comes from, and one entry point per kind of run. bench.c owns the
 * options and the report, vcpus.c the vCPU threads, the floor and the library runs, bare.c the
 * bare-loop baselines, kvm.c the real-vCPU runs, net.c and netns.c `pagein bench --net`.
 */
#ifndef PAGEIN_BENCH_H
#define PAGEIN_BENCH_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "pagein.h"
#include "tools.h"

#define BENCH_PAGE ((uint64_t)4096)    /* the unit a vCPU touches and every row counts */
#define BENCH_HUGE ((uint64_t)2 << 20) /* hugetlb page size */
#define BENCH_MAX_VCPUS 1024u     /* sanity bound on --vcpus */
#define BENCH_MAX_ROWS 256u       /* results kept for speed-up and ratio look-ups */
#define BENCH_MAX_REPEAT 15u      /* bound on -n */
#define AROUND_AUTO_ARG 0u        /* --around auto, stored as 0 in bench_opts.around */
#define EMULATED_NOTE "(timings inside the emulated guest say nothing about real performance)"

/* What one row measures. */
enum bench_kind {
	KIND_FLOOR,        /* first touch of plain anonymous memory, no userfaultfd */
	KIND_BARE_SELF,    /* SIGBUS handler doing one install per fault, no library */
	KIND_BARE_HANDLER, /* one reader thread: poll + read + install, no library */
	KIND_LIB,          /* libpagein with the configured front-end */
	KIND_KVM_PLAIN,    /* --kvm: the guest on populated memory of the backing, no pagein */
	KIND_KVM_HANDLER,  /* --kvm: the guest on a pagein HANDLER space, vCPU faults through the
	                    * handler threads (pagein_kvm_attach_flags(PAGEIN_KVM_ATTACH_NO_EXIT)) */
	KIND_KVM_EXIT,     /* --kvm: the same space with exit-on-missing: vCPU faults are exits
	                    * resolved on the vCPU thread (needs pagein's KVM patch) */
	KIND_INSTALL,      /* --vs-install: the kernel's bare install rate, UFFDIO_COPY of the
	                    * image in 2 MiB chunks into a registered region, no faults at all */
};

/* Command-line options. */
struct bench_opts {
	unsigned vcpus;                 /* --vcpus: vCPU threads */
	uint64_t per_vcpu;              /* -b: bytes each vCPU touches */
	enum pagein_frontend frontend;  /* -f: library front-end (single runs) */
	unsigned readers;               /* -r: handler reader threads, 0 = one per vCPU */
	unsigned uffds;                 /* -u: userfaultfds the handler memory is striped over,
	                                 * 0 = one per vCPU */
	enum pagein_backing backing;    /* -s: what backs the guest memory */
	unsigned delay_us;              /* -d: injected delay per source fetch */
	bool spin;                      /* --spin: busy-wait the delay instead of sleeping */
	bool rand;                      /* -a rand: random page order per vCPU */
	bool overlap;                   /* -o: every vCPU touches the same memory */
	unsigned around;                /* --around: pages per install, AROUND_AUTO_ARG = auto */
	bool fill;                      /* --fill: background fill during the run */
	bool json;                      /* --json: JSON lines on stdout, table on stderr */
	bool matrix;                    /* --matrix: 1,2,4,8 vCPUs x both front-ends */
	bool baseline;                  /* --baseline: floor and bare rows only, no library */
	uint64_t restore;               /* --restore: bytes to restore, 0 = not asked */
	bool vs_install;                /* --vs-install: restore (both front-ends, memory and
	                                 * snapshot-file sources) against the bare install rate */
	unsigned repeat;                /* -n: runs per row, the median (by time) is kept */
	unsigned timeout_s;             /* --timeout: longest one run may take */
	uint64_t seed;                  /* --seed: image pattern and random order */
	bool kvm;                       /* --kvm: real vCPUs on /dev/kvm (tests/kvmvm.c) */
	bool frontend_given;            /* -f was on the command line (--kvm refuses self) */
};

/* One configuration (one row). */
struct bench_case {
	enum bench_kind kind;
	enum pagein_frontend frontend; /* KIND_LIB only */
	enum pagein_backing backing;   /* floor rows are always plain anonymous memory */
	unsigned vcpus;
	unsigned readers;              /* KIND_LIB handler only, else 0 */
	unsigned uffds;                /* KIND_LIB handler only, else 0 */
	unsigned around;               /* pages per install; 0 = auto */
	bool fill;                     /* background fill on */
	bool restore;                  /* part of the --restore comparison */
	bool from_file;                /* restore from the snapshot file (bench_snap_path), not
	                                * from the image in memory */
	uint64_t per_vcpu;             /* bytes each vCPU touches */
};

/* What one row measured. */
struct bench_result {
	struct bench_case c;
	uint64_t pages;             /* touches in total (one per 4 KiB page per vCPU) */
	uint64_t faults;            /* faults taken: touches (floor), signals/messages (bare),
	                             * library fault counters (lib) */
	double seconds;             /* wall time of the slowest vCPU */
	double pps;                 /* pages / seconds */
	unsigned nruns;             /* runs of this row (-n); the row is the median one */
	double run_pps[BENCH_MAX_REPEAT]; /* pages/s of each run, in the order they ran */
	double pps_min, pps_max;    /* the spread of those runs */
	double vcpu_min, vcpu_max;  /* per-vCPU pages/s, slowest and fastest */
	double *vcpu_pps;           /* per-vCPU pages/s, c.vcpus entries */
	double p50_us, p99_us;      /* per-touch latency quantiles */
	double cpu_us;              /* process CPU time of the run, all threads */
	double cpu_us_per_fault;    /* cpu_us / faults */
	uint64_t eexist;            /* installs that met EEXIST (bare rows; lib from stats) */
	bool have_stats;            /* st is valid (lib rows) */
	struct pagein_stats st;     /* the library's counters for the run */
	struct kvm_vcpu_stat *kvs;  /* kvm rows: c.vcpus entries, else NULL */
	bool kvm_stats;             /* kvm rows: KVM's binary statistics were readable */
	uint64_t verified_pages;    /* kvm rows: pages whose every byte was checked */
};

/* What one vCPU of a kvm row did, from the harness and KVM's binary statistics (0 where the
 * kernel has none). */
struct kvm_vcpu_stat {
	uint64_t pages;    /* pages its guest loop wrote */
	uint64_t ns;       /* from its first KVM_RUN to its "done" exit */
	uint64_t pf_taken; /* KVM's pf_taken: guest page faults KVM handled */
	uint64_t pf_fixed; /* KVM's pf_fixed: ... that mapped a page */
	uint64_t exits;    /* KVM's exits: VM exits of this vCPU */
	uint64_t runs;     /* KVM_RUN calls on this vCPU */
	uint64_t eom_exits;      /* pagein: exit-on-missing exits resolved on this vCPU's thread */
	uint64_t handler_faults; /* pagein: its faults served by the handler threads */
};

/* One vCPU thread. */
struct vcpu {
	pthread_t tid;
	pthread_barrier_t *barrier; /* every vCPU and the main thread start together */
	uint8_t *base;              /* the memory the vCPU touches (page index 0) */
	const uint32_t *order;      /* page indexes to touch, in order */
	uint64_t n;                 /* entries in order */
	uint32_t *lat_ns;           /* per-touch latency, n entries, allocated before the start */
	uint64_t t0, t1;            /* CLOCK_MONOTONIC ns at start and end of the touches */
	uint64_t faults;            /* bare-self: SIGBUS handled on this thread */
};

/* Per-vCPU work: page orders and latency arrays, made before the start. */
struct vcpu_set {
	unsigned n;
	struct vcpu *v;
	uint32_t *order;  /* n * per entries */
	uint32_t *lat;    /* n * per entries */
	uint64_t per;     /* pages per vCPU */
	pthread_barrier_t barrier;
};

/* The byte a vCPU writes at offset 0 of page pg; the image holds the same byte there, so the
 * touched memory still equals the image afterwards. */
static inline uint8_t touch_byte(uint64_t pg)
{
	return (uint8_t)(pg * 131u + 7u);
}

/* Results so far, for speed-up and ratio look-ups (bench.c). */
extern struct bench_result bench_rows[BENCH_MAX_ROWS];
extern unsigned bench_nrows;
extern const uint8_t *bench_image; /* the source image, shared by every run of the process */
extern FILE *bench_tab;            /* where the table goes: stdout, or stderr with --json */
extern char bench_running[160];    /* name of the run in progress, for the watchdog */
extern char bench_snap_path[64];   /* --vs-install: the warm snapshot of the image (a
                                    * /proc/self/fd path: the file itself is unlinked) */
extern __thread uint64_t bare_self_faults; /* bare.c: SIGBUS served on the current thread */

/* bench.c: names, the run driver and the table. */
const char *kind_name(const struct bench_case *c);
bool is_kvm(const struct bench_case *c);
const char *backing_name(const struct bench_case *c);
void run_once(const struct bench_opts *o, const struct bench_case *c, struct bench_result *r);
/* Run each case o->repeat times, interleaved; keep the median run of each; print the rows. */
void run_group(const struct bench_opts *o, const struct bench_case *cases, unsigned n);
void print_header(void);
/* The number s of option what, in lo..hi; dies naming the option otherwise. */
unsigned bench_uint(const char *s, const char *what, unsigned lo, unsigned hi);
/* "self" or "handler" (-f); dies on anything else. */
enum pagein_frontend bench_frontend(const char *s);
/* Die unless per_vcpu is a positive multiple of the backing's page size and not too large. */
void check_sizes(const struct bench_opts *o, uint64_t per_vcpu);

/* vcpus.c: the vCPU threads and the runs over them. */
uint64_t cpu_ns(void);
/* The injected fetch delay: sleep (a network wait leaves the CPU to others) or spin. */
void bench_delay(unsigned us, bool spin);
void vcpus_prepare(struct vcpu_set *s, const struct bench_case *c, bool overlap, bool rnd,
		   uint64_t seed);
void vcpus_release(struct vcpu_set *s);
void vcpus_run(struct vcpu_set *s, uint8_t *base, struct bench_result *r,
	       struct pagein_space *fill_space);
/* Compare every page of [host, host+size) with the image; die naming the first mismatch. */
void verify(const struct bench_case *c, const uint8_t *host, uint64_t size);
uint64_t region_size(const struct bench_case *c, bool overlap);
void run_floor(const struct bench_opts *o, const struct bench_case *c, struct bench_result *r);
/* A memory source with an injected delay per fetch (the image is the bytes; no direct path, so
 * every install goes through fetch like a network source's would). */
struct delay_src {
	const uint8_t *img;  /* the bytes of [base, base + len) */
	uint64_t base;       /* guest address of img[0] */
	uint64_t len;
	unsigned delay_us;
	bool spin;
};

/* The delayed memory source over a delay_src (static storage: destroy does nothing). */
extern const struct pagein_source_ops delay_ops;
void run_lib(const struct bench_opts *o, const struct bench_case *c, struct bench_result *r);

/* bare.c: the front-ends' kernel work without the library. */
void run_bare(const struct bench_opts *o, const struct bench_case *c, struct bench_result *r);
/* --vs-install: UFFDIO_COPY of the whole image in 2 MiB chunks, no faults. */
void run_install(const struct bench_opts *o, const struct bench_case *c, struct bench_result *r);
/* What to do about a userfaultfd error, or "". */
const char *uffd_hint(int err);

/* kvm.c: real vCPUs (tests/kvmvm.c). */
void run_kvm(const struct bench_opts *o, const struct bench_case *c, struct bench_result *r);
void print_kvm_vcpus(const struct bench_result *r);
/* --kvm: kvm-plain then kvm-handler; exits 77 where there is no /dev/kvm. */
int bench_kvm(const struct bench_opts *o);

/* net.c: `pagein bench --net`, migration over TCP against the raw TCP baseline. */
int bench_net(int argc, char **argv);

#endif
