// SPDX-License-Identifier: MIT
/*
 * bench.c - `pagein bench`: its options, the rows it runs and the report (table, JSON lines,
 * headline ratios). The seeds' experiment in the shape of demand_paging_test: vCPU threads each
 * touch one byte per page of their slice, timed per touch; every run measures, in one process,
 * the kernel floor, the bare loop of each front-end (bare.c), then the library (vcpus.c).
 * --kvm runs real vCPUs instead (kvm.c), --net the network bench (net.c).
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "bench.h"
#include "pattern.h"

struct bench_result bench_rows[BENCH_MAX_ROWS];
unsigned bench_nrows;
const uint8_t *bench_image;
FILE *bench_tab;
char bench_running[160];
char bench_snap_path[64];

const char *kind_name(const struct bench_case *c)
{
	switch (c->kind) {
	case KIND_FLOOR: return "floor";
	case KIND_BARE_SELF: return "bare-self";
	case KIND_BARE_HANDLER: return "bare-handler";
	case KIND_KVM_PLAIN: return "kvm-plain";
	case KIND_KVM_HANDLER: return "kvm-handler";
	case KIND_KVM_EXIT: return "kvm-exit";
	case KIND_INSTALL: return "install";
	case KIND_LIB: break;
	}
	return pagein_frontend_name(c->frontend);
}

bool is_kvm(const struct bench_case *c)
{
	return c->kind == KIND_KVM_PLAIN || c->kind == KIND_KVM_HANDLER || c->kind == KIND_KVM_EXIT;
}

const char *backing_name(const struct bench_case *c)
{
	return c->kind == KIND_FLOOR ? "anon" : pagein_backing_name(c->backing);
}

/* Where a row's pages come from: "file" (the snapshot), "mem" (the image), "-" (no source). */
static const char *source_name(const struct bench_case *c)
{
	if (c->kind != KIND_LIB && c->kind != KIND_INSTALL)
		return "-";
	return c->from_file ? "file" : "mem";
}


static void watchdog(int sig)
{
	static const char pre[] = "pagein bench: run did not finish in time (hung?): ";
	ssize_t r;

	(void)sig;
	r = write(2, pre, sizeof(pre) - 1);
	r = write(2, bench_running, strlen(bench_running));
	r = write(2, "\n", 1);
	(void)r;
	_exit(1);
}

/* ---------------------------------------------------------------------------------------------
 * Rows: run with repeats, look-ups, output
 */

static bool same_config(const struct bench_case *a, const struct bench_case *b)
{
	return a->kind == b->kind && a->frontend == b->frontend && a->backing == b->backing &&
	       a->readers == b->readers && a->uffds == b->uffds && a->around == b->around &&
	       a->fill == b->fill && a->restore == b->restore && a->per_vcpu == b->per_vcpu &&
	       a->from_file == b->from_file;
}

static const struct bench_result *find_row(const struct bench_case *c, enum bench_kind kind,
					   unsigned vcpus)
{
	struct bench_case k = *c;
	unsigned i;

	k.kind = kind;
	if (kind != KIND_LIB && kind != KIND_KVM_HANDLER && kind != KIND_KVM_EXIT) {
		k.frontend = PAGEIN_FRONTEND_SELF;
		k.readers = k.uffds = 0;
		k.around = 1;
		k.fill = false;
	}
	if (kind == KIND_FLOOR)
		k.backing = PAGEIN_BACKING_ANON;
	for (i = 0; i < bench_nrows; i++)
		if (bench_rows[i].c.vcpus == vcpus && same_config(&bench_rows[i].c, &k))
			return &bench_rows[i];
	return NULL;
}

void print_header(void)
{
	fprintf(bench_tab, "%-13s %-7s %5s %3s %3s %6s %4s %10s %10s %10s %8s %8s %8s %9s %6s %6s\n",
		"frontend", "backing", "vcpus", "rd", "uf", "around", "fill", "pages/s", "vcpu-min",
		"vcpu-max", "p50us", "p99us", "cpuus/f", "faults", "x1vcpu", "xfloor");
	fflush(bench_tab);
}

static void print_row(const struct bench_result *r, double speedup, double vs_floor)
{
	char around[16], rd[8], uf[8], su[16], vf[16], p50[16], p99[16], name[24];

	snprintf(name, sizeof(name), "%s%s", kind_name(&r->c), r->c.from_file ? "+file" : "");
	if (r->c.kind == KIND_FLOOR || r->c.kind == KIND_KVM_PLAIN || r->c.kind == KIND_INSTALL)
		snprintf(around, sizeof(around), "-");
	else if (r->c.around)
		snprintf(around, sizeof(around), "%u", r->c.around);
	else
		snprintf(around, sizeof(around), "auto");
	snprintf(rd, sizeof(rd), r->c.readers ? "%u" : "-", r->c.readers);
	snprintf(uf, sizeof(uf), r->c.uffds ? "%u" : "-", r->c.uffds);
	snprintf(su, sizeof(su), speedup > 0 ? "%.2f" : "-", speedup);
	snprintf(vf, sizeof(vf), vs_floor > 0 ? "%.2f" : "-", vs_floor);
	/* negative: not measured (kvm-plain has no per-page latency) */
	snprintf(p50, sizeof(p50), r->p50_us >= 0 ? "%.1f" : "-", r->p50_us);
	snprintf(p99, sizeof(p99), r->p99_us >= 0 ? "%.1f" : "-", r->p99_us);
	fprintf(bench_tab, "%-13s %-7s %5u %3s %3s %6s %4s %10.0f %10.0f %10.0f %8s %8s %8.2f %9"
		PRIu64 " %6s %6s\n", name, backing_name(&r->c), r->c.vcpus, rd, uf,
		around, r->c.fill ? "on" : "off", r->pps, r->vcpu_min, r->vcpu_max, p50, p99,
		r->cpu_us_per_fault, r->faults, su, vf);
	if (r->kvs)
		print_kvm_vcpus(r);
	fflush(bench_tab);
}

/* "key":[v0,v1,...], one value per vCPU of a kvm row, the field at offset off of its stats */
static void json_vcpu_array(const struct bench_result *r, const char *key, size_t off)
{
	unsigned i;

	printf(",\"%s\":[", key);
	for (i = 0; i < r->c.vcpus; i++)
		printf("%s%" PRIu64, i ? "," : "", *(const uint64_t *)((const char *)&r->kvs[i] + off));
	printf("]");
}

/* The bare install row of this size (--vs-install), or NULL. */
static const struct bench_result *find_install(uint64_t size)
{
	unsigned i;

	for (i = 0; i < bench_nrows; i++)
		if (bench_rows[i].c.kind == KIND_INSTALL && bench_rows[i].c.per_vcpu == size)
			return &bench_rows[i];
	return NULL;
}

static void print_json(const struct bench_opts *o, const struct bench_result *r, double speedup,
		       double vs_floor)
{
	const struct bench_result *in = r->c.kind == KIND_LIB && r->c.restore ?
					find_install(r->c.per_vcpu) : NULL;
	unsigned i;

	printf("{\"frontend\":\"%s\",\"backing\":\"%s\",\"mode\":\"%s\",\"vcpus\":%u,"
	       "\"readers\":%u,\"uffds\":%u,", kind_name(&r->c), backing_name(&r->c),
	       is_kvm(&r->c) ? "kvm" : r->c.kind == KIND_INSTALL ? "install" :
	       r->c.restore ? "restore" : "touch", r->c.vcpus, r->c.readers, r->c.uffds);
	printf("\"source\":\"%s\",\"runs\":%u,\"pps_min\":%.1f,\"pps_max\":%.1f,",
	       source_name(&r->c), r->nruns, r->pps_min, r->pps_max);
	if (r->c.around)
		printf("\"around\":%u,", r->c.kind == KIND_FLOOR || r->c.kind == KIND_KVM_PLAIN ||
		       r->c.kind == KIND_INSTALL ? 1 : r->c.around);
	else
		printf("\"around\":\"auto\",");
	printf("\"fill\":%s,\"pattern\":\"%s\",\"overlap\":%s,\"delay_us\":%u,"
	       "\"bytes_per_vcpu\":%" PRIu64 ",\"pages\":%" PRIu64 ",\"faults\":%" PRIu64 ","
	       "\"seconds\":%.6f,\"pages_per_sec\":%.1f,\"per_vcpu_pages_per_sec\":[",
	       r->c.fill ? "true" : "false", o->rand ? "rand" : "seq",
	       o->overlap ? "true" : "false", o->delay_us, r->c.per_vcpu, r->pages, r->faults,
	       r->seconds, r->pps);
	for (i = 0; i < r->c.vcpus; i++)
		printf("%s%.1f", i ? "," : "", r->vcpu_pps[i]);
	printf("],");
	if (r->p50_us >= 0)
		printf("\"lat_p50_us\":%.3f,\"lat_p99_us\":%.3f,", r->p50_us, r->p99_us);
	else
		printf("\"lat_p50_us\":null,\"lat_p99_us\":null,");
	printf("\"cpu_us_per_fault\":%.3f,\"cpu_us_per_page\":%.3f,\"eexist\":%" PRIu64 ",",
	       r->cpu_us_per_fault, r->cpu_us / (double)r->pages, r->eexist);
	if (speedup > 0)
		printf("\"speedup_vs_1\":%.3f,", speedup);
	else
		printf("\"speedup_vs_1\":null,");
	if (vs_floor > 0)
		printf("\"vs_floor\":%.3f", vs_floor);
	else
		printf("\"vs_floor\":null");
	if (in)
		printf(",\"vs_install\":%.3f", r->pps / in->pps);
	if (r->have_stats) {
		const struct pagein_stats *st = &r->st;

		printf(",\"lib_faults_self\":%" PRIu64 ",\"lib_faults_handler\":%" PRIu64
		       ",\"races_lost\":%" PRIu64 ",\"lib_eexist\":%" PRIu64 ",\"eagain\":%" PRIu64
		       ",\"pages_demand\":%" PRIu64 ",\"pages_around\":%" PRIu64
		       ",\"pages_fill\":%" PRIu64 ",\"fetches\":%" PRIu64 ",\"fetch_errors\":%" PRIu64
		       ",\"blocked_us\":%.1f,\"lib_lat_p50_us\":%.3f,\"lib_lat_p99_us\":%.3f",
		       st->faults_self, st->faults_handler, st->races_lost, st->eexist, st->eagain,
		       st->pages_demand, st->pages_around, st->pages_fill, st->fetches,
		       st->fetch_errors, st->blocked_ns / 1e3,
		       pagein_stats_quantile(st, 0.5) / 1e3, pagein_stats_quantile(st, 0.99) / 1e3);
		printf(",\"lib_faults_kvm\":%" PRIu64, st->faults_kvm);
	}
	if (r->kvs) {
		uint64_t taken = 0, fixed = 0, exits = 0;

		for (i = 0; i < r->c.vcpus; i++) {
			taken += r->kvs[i].pf_taken;
			fixed += r->kvs[i].pf_fixed;
			exits += r->kvs[i].exits;
		}
		printf(",\"kvm_stats\":%s,\"kvm_pf_taken\":%" PRIu64 ",\"kvm_pf_fixed\":%" PRIu64
		       ",\"kvm_exits\":%" PRIu64 ",\"verified_pages\":%" PRIu64,
		       r->kvm_stats ? "true" : "false", taken, fixed, exits, r->verified_pages);
		json_vcpu_array(r, "per_vcpu_pages", offsetof(struct kvm_vcpu_stat, pages));
		json_vcpu_array(r, "per_vcpu_pf_taken", offsetof(struct kvm_vcpu_stat, pf_taken));
		json_vcpu_array(r, "per_vcpu_pf_fixed", offsetof(struct kvm_vcpu_stat, pf_fixed));
		json_vcpu_array(r, "per_vcpu_exits", offsetof(struct kvm_vcpu_stat, exits));
		json_vcpu_array(r, "per_vcpu_kvm_runs", offsetof(struct kvm_vcpu_stat, runs));
		json_vcpu_array(r, "per_vcpu_eom_exits", offsetof(struct kvm_vcpu_stat, eom_exits));
		json_vcpu_array(r, "per_vcpu_handler_faults",
				offsetof(struct kvm_vcpu_stat, handler_faults));
		printf(",\"note\":\"%s\"", EMULATED_NOTE);
	}
	printf("}\n");
	fflush(stdout);
}

void run_once(const struct bench_opts *o, const struct bench_case *c,
		     struct bench_result *r)
{
	memset(r, 0, sizeof(*r));
	r->c = *c;
	snprintf(bench_running, sizeof(bench_running), "%s/%s, %u vCPUs, %" PRIu64 " bytes each",
		 kind_name(c), backing_name(c), c->vcpus, c->per_vcpu);
	alarm(o->timeout_s);
	switch (c->kind) {
	case KIND_FLOOR:
		run_floor(o, c, r);
		break;
	case KIND_BARE_SELF:
	case KIND_BARE_HANDLER:
		run_bare(o, c, r);
		break;
	case KIND_LIB:
		run_lib(o, c, r);
		break;
	case KIND_INSTALL:
		run_install(o, c, r);
		break;
	case KIND_KVM_PLAIN:
	case KIND_KVM_HANDLER:
	case KIND_KVM_EXIT:
		run_kvm(o, c, r);
		break;
	}
	alarm(0);
	r->cpu_us_per_fault = r->faults ? r->cpu_us / (double)r->faults : 0;
}

static int cmp_seconds(const void *a, const void *b)
{
	const struct bench_result *x = a, *y = b;

	return x->seconds < y->seconds ? -1 : x->seconds > y->seconds;
}

/* Run each case o->repeat times, interleaved (so drift hits every case alike), keep the run
 * with the median time of each, record and print the rows. */
void run_group(const struct bench_opts *o, const struct bench_case *cases, unsigned n)
{
	struct bench_result runs[8][BENCH_MAX_REPEAT];
	const struct bench_result *one, *fl;
	struct bench_case key;
	struct bench_result *r;
	double speedup, vs_floor;
	unsigned i, k;

	if (n > 8)
		die("internal: too many cases in one group");
	for (k = 0; k < o->repeat; k++)
		for (i = 0; i < n; i++)
			run_once(o, &cases[i], &runs[i][k]);
	for (i = 0; i < n; i++) {
		double rp[BENCH_MAX_REPEAT], lo = 1e300, hi = 0;

		for (k = 0; k < o->repeat; k++) {
			rp[k] = runs[i][k].pps;
			lo = rp[k] < lo ? rp[k] : lo;
			hi = rp[k] > hi ? rp[k] : hi;
		}
		qsort(runs[i], o->repeat, sizeof(runs[i][0]), cmp_seconds);
		for (k = 0; k < o->repeat; k++)
			if (k != o->repeat / 2) {
				free(runs[i][k].vcpu_pps);
				free(runs[i][k].kvs);
			}
		if (bench_nrows == BENCH_MAX_ROWS)
			die("too many rows (at most %u)", BENCH_MAX_ROWS);
		r = &bench_rows[bench_nrows++];
		*r = runs[i][o->repeat / 2];
		r->nruns = o->repeat;
		memcpy(r->run_pps, rp, sizeof(rp));
		r->pps_min = lo;
		r->pps_max = hi;
		/* with one reader (uffd) per vCPU, the 1-vCPU row has one of each */
		key = r->c;
		if ((key.kind == KIND_LIB && key.frontend == PAGEIN_FRONTEND_HANDLER) ||
		    key.kind == KIND_KVM_HANDLER || key.kind == KIND_KVM_EXIT) {
			key.readers = o->readers ? o->readers : 1;
			key.uffds = o->uffds ? o->uffds : 1;
		}
		one = find_row(&key, key.kind, 1);
		speedup = one ? r->pps / one->pps : 0;
		fl = find_row(&r->c, is_kvm(&r->c) ? KIND_KVM_PLAIN : KIND_FLOOR, r->c.vcpus);
		vs_floor = fl ? r->pps / fl->pps : 0;
		print_row(r, speedup, vs_floor);
		if (o->json)
			print_json(o, r, speedup, vs_floor);
	}
}

/* The cases of one vCPU count: floor, both bare loops, then the library front-end(s). */
static unsigned make_cases(const struct bench_opts *o, unsigned vcpus, bool both,
			   struct bench_case *cases)
{
	struct bench_case base = {
		.backing = o->backing, .vcpus = vcpus, .around = 1, .per_vcpu = o->per_vcpu,
	};
	unsigned n = 0;

	cases[n] = base;
	cases[n].kind = KIND_FLOOR;
	cases[n++].backing = PAGEIN_BACKING_ANON;
	cases[n] = base;
	cases[n++].kind = KIND_BARE_SELF;
	cases[n] = base;
	cases[n++].kind = KIND_BARE_HANDLER;
	if (o->baseline)
		return n;
	base.kind = KIND_LIB;
	base.around = o->around;
	base.fill = o->fill;
	if (both || o->frontend == PAGEIN_FRONTEND_SELF) {
		cases[n] = base;
		cases[n++].frontend = PAGEIN_FRONTEND_SELF;
	}
	if (both || o->frontend == PAGEIN_FRONTEND_HANDLER) {
		cases[n] = base;
		cases[n].frontend = PAGEIN_FRONTEND_HANDLER;
		cases[n].readers = o->readers ? o->readers : vcpus;
		cases[n++].uffds = o->uffds ? o->uffds : vcpus;
	}
	return n;
}

/* ---------------------------------------------------------------------------------------------
 * Headlines
 */

static double row_pps(const struct bench_case *like, enum bench_kind kind,
		      enum pagein_frontend fe, unsigned vcpus)
{
	struct bench_case k = *like;
	const struct bench_result *r;

	k.frontend = fe;
	if (kind == KIND_LIB && fe == PAGEIN_FRONTEND_SELF)
		k.readers = k.uffds = 0;
	r = find_row(&k, kind, vcpus);
	return r ? r->pps : 0;
}

static void print_headlines(const struct bench_opts *o, const struct bench_case *lib_handler)
{
	struct bench_case ls = *lib_handler, lh = *lib_handler;
	const struct bench_result *s, *b, *h, *bh;
	double f1, f2, s1, s2, h1, h2;
	char ar[16];
	unsigned v;

	ls.frontend = PAGEIN_FRONTEND_SELF;
	ls.readers = ls.uffds = 0;
	snprintf(ar, sizeof(ar), o->around ? "%u" : "auto", o->around);
	f1 = row_pps(&ls, KIND_FLOOR, 0, 1);
	f2 = row_pps(&ls, KIND_FLOOR, 0, 2);
	s1 = row_pps(&ls, KIND_LIB, PAGEIN_FRONTEND_SELF, 1);
	s2 = row_pps(&ls, KIND_LIB, PAGEIN_FRONTEND_SELF, 2);
	lh.readers = o->readers ? o->readers : 1;
	lh.uffds = o->uffds ? o->uffds : 1;
	h1 = row_pps(&lh, KIND_LIB, PAGEIN_FRONTEND_HANDLER, 1);
	lh.readers = o->readers ? o->readers : 2;
	lh.uffds = o->uffds ? o->uffds : 2;
	h2 = row_pps(&lh, KIND_LIB, PAGEIN_FRONTEND_HANDLER, 2);
	fprintf(bench_tab, "\n");
	if (f1 > 0 && f2 > 0 && s1 > 0 && s2 > 0)
		fprintf(bench_tab, "headline: [%s, around %s] self-resolve speed-up 1->2 vCPUs %.2fx / "
			"floor speed-up %.2fx = %.2f (target >= 0.90); handler speed-up %.2fx\n",
			pagein_backing_name(o->backing), ar, s2 / s1, f2 / f1,
			(s2 / s1) / (f2 / f1), h1 > 0 ? h2 / h1 : 0);
	/* the bare loops install one page per fault: only then is the cost comparable */
	for (v = 1; o->around == 1 && v <= 8; v *= 2) {
		ls.vcpus = lh.vcpus = v;
		lh.readers = o->readers ? o->readers : v;
		lh.uffds = o->uffds ? o->uffds : v;
		s = find_row(&ls, KIND_LIB, v);
		b = find_row(&ls, KIND_BARE_SELF, v);
		h = find_row(&lh, KIND_LIB, v);
		bh = find_row(&lh, KIND_BARE_HANDLER, v);
		if (!s || !b || !h || !bh)
			continue;
		fprintf(bench_tab, "headline: [%s, around %s, %u vCPU] library / bare per-fault cost: "
			"self cpu %.2f, time %.2f; handler (rd %u uf %u) cpu %.2f, time %.2f "
			"(target <= 1.20)\n", pagein_backing_name(o->backing), ar, v,
			s->cpu_us_per_fault / b->cpu_us_per_fault, b->pps / s->pps, lh.readers, lh.uffds,
			h->cpu_us_per_fault / bh->cpu_us_per_fault, bh->pps / h->pps);
	}
	fflush(bench_tab);
}

/* ---------------------------------------------------------------------------------------------
 * Options and main
 */

unsigned bench_uint(const char *s, const char *what, unsigned lo, unsigned hi)
{
	unsigned long v;
	char *end;

	errno = 0;
	v = strtoul(s, &end, 0);
	if (errno || end == s || *end || v < lo || v > hi)
		die_code(EXIT_USAGE, "bad %s '%s': want a number in %u..%u", what, s, lo, hi);
	return (unsigned)v;
}

enum pagein_frontend bench_frontend(const char *s)
{
	if (!strcmp(s, "self"))
		return PAGEIN_FRONTEND_SELF;
	if (!strcmp(s, "handler"))
		return PAGEIN_FRONTEND_HANDLER;
	die_code(EXIT_USAGE, "bad -f '%s': want self or handler", s);
}

static void usage(FILE *f)
{
	fprintf(f,
"usage: pagein bench [options]\n"
"  vCPU threads touch one byte per 4 KiB page of their memory; the same process measures the\n"
"  kernel floor (plain first touch), the bare loop of each front-end, then the library.\n"
"  --vcpus N       vCPU threads (default 1)\n"
"  -b SIZE         memory per vCPU (default 64M)\n"
"  -f self|handler library front-end (default self)\n"
"  -r N|v          handler reader threads (default 1; v = one per vCPU)\n"
"  -u N|v          handler userfaultfds the memory is striped over (default 1; v = one per\n"
"                  vCPU)\n"
"  -s anon|shmem|hugetlb   backing (default anon)\n"
"  -d USEC         injected delay per source fetch (default 0), slept; --spin busy-waits it\n"
"  -a seq|rand     access pattern (default seq)\n"
"  -o              overlap: every vCPU touches the same memory\n"
"  --around N|auto fault-around window in pages (default 1 = off, the seeds' comparison)\n"
"  --fill          background fill during the run\n"
"  --matrix        1,2,4,8 vCPUs x self,handler with floor and bare rows, and headlines\n"
"  --restore [SIZE] sequential restore of SIZE (default 1G), one thread, fault-around auto,\n"
"                  fill on, against first touch of plain memory; prints the ratio\n"
"  --vs-install    with --restore: against the kernel's bare install rate instead (UFFDIO_COPY\n"
"                  of the image in 2 MiB chunks, no faults), both front-ends, from memory and\n"
"                  from a warm snapshot file, timed to full residency; -n 5 for the target\n"
"  --baseline      floor and bare rows only (no library)\n"
"  -n N            runs per row, the median is kept (default 1)\n"
"  --json          one JSON object per row on stdout (the table goes to stderr)\n"
"  -v, --verbose   the library's informational messages too\n"
"  --timeout SEC   longest one run may take before the bench gives up (default 120)\n"
"  --seed N        pattern and random-order seed\n"
"  --kvm           real vCPUs on /dev/kvm instead of threads: each writes one word to every\n"
"                  page of its slice of guest memory; rows kvm-plain (populated memory of the\n"
"                  backing, no pagein: the floor) and kvm-handler (a pagein HANDLER space).\n"
"                  Takes --vcpus (at most 16), -b, -s, -r, -u, -d, --spin, --around,\n"
"                  -n, --json, --seed, --timeout.\n"
"                  Without /dev/kvm it exits 77: make test-kvm runs it in a guest kernel.\n"
"  --ws            working-set prefetch vs on-demand, eager and warm restores of a snapshot\n"
"                  on disk, page cache dropped (see pagein bench --ws --help)\n");
}

static void parse_opts(int argc, char **argv, struct bench_opts *o)
{
	enum { OPT_AROUND = 256, OPT_FILL, OPT_JSON, OPT_MATRIX, OPT_RESTORE, OPT_BASELINE,
	       OPT_TIMEOUT, OPT_SEED, OPT_SPIN, OPT_KVM, OPT_VCPUS, OPT_VS_INSTALL };
	static const struct option lopts[] = {
		{ "around", required_argument, NULL, OPT_AROUND },
		{ "fill", no_argument, NULL, OPT_FILL },
		{ "json", no_argument, NULL, OPT_JSON },
		{ "matrix", no_argument, NULL, OPT_MATRIX },
		{ "restore", optional_argument, NULL, OPT_RESTORE },
		{ "baseline", no_argument, NULL, OPT_BASELINE },
		{ "timeout", required_argument, NULL, OPT_TIMEOUT },
		{ "seed", required_argument, NULL, OPT_SEED },
		{ "spin", no_argument, NULL, OPT_SPIN },
		{ "kvm", no_argument, NULL, OPT_KVM },
		{ "vcpus", required_argument, NULL, OPT_VCPUS },
		{ "vs-install", no_argument, NULL, OPT_VS_INSTALL },
		{ "verbose", no_argument, NULL, 'v' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	int ch;

	memset(o, 0, sizeof(*o));
	o->vcpus = 1;
	o->per_vcpu = 64ull << 20;
	o->frontend = PAGEIN_FRONTEND_SELF;
	o->readers = 1;
	o->uffds = 1;
	o->backing = PAGEIN_BACKING_ANON;
	o->around = 1;
	o->repeat = 1;
	o->timeout_s = 120;
	o->seed = 0x5eed;
	optind = 1;
	while ((ch = getopt_long(argc, argv, "vb:f:r:u:s:d:a:on:h", lopts, NULL)) != -1) {
		switch (ch) {
		/* -v is verbose here as in every other subcommand; vCPUs are --vcpus */
		case 'v': tool_verbose = true; break;
		case OPT_VCPUS: o->vcpus = bench_uint(optarg, "--vcpus", 1, BENCH_MAX_VCPUS); break;
		case 'b': o->per_vcpu = parse_size(optarg); break;
		case 'f':
			o->frontend_given = true;
			o->frontend = bench_frontend(optarg);
			break;
		case 'r':
			o->readers = strcmp(optarg, "v") ? bench_uint(optarg, "-r", 1, 1024) : 0;
			break;
		case 'u':
			o->uffds = strcmp(optarg, "v") ? bench_uint(optarg, "-u", 1, 1024) : 0;
			break;
		case 's':
			if (!strcmp(optarg, "anon"))
				o->backing = PAGEIN_BACKING_ANON;
			else if (!strcmp(optarg, "shmem"))
				o->backing = PAGEIN_BACKING_SHMEM;
			else if (!strcmp(optarg, "hugetlb"))
				o->backing = PAGEIN_BACKING_HUGETLB;
			else
				die_code(EXIT_USAGE, "bad -s '%s': want anon, shmem or hugetlb", optarg);
			break;
		case 'd': o->delay_us = bench_uint(optarg, "-d", 0, 10000000); break;
		case 'a':
			if (!strcmp(optarg, "seq") || !strcmp(optarg, "rand"))
				o->rand = optarg[0] == 'r';
			else
				die_code(EXIT_USAGE, "bad -a '%s': want seq or rand", optarg);
			break;
		case 'o': o->overlap = true; break;
		case 'n': o->repeat = bench_uint(optarg, "-n", 1, BENCH_MAX_REPEAT); break;
		case OPT_AROUND:
			o->around = strcmp(optarg, "auto") ?
				    bench_uint(optarg, "--around", 1, PAGEIN_AROUND_MAX) :
				    AROUND_AUTO_ARG;
			break;
		case OPT_FILL: o->fill = true; break;
		case OPT_JSON: o->json = true; break;
		case OPT_MATRIX: o->matrix = true; break;
		case OPT_RESTORE:
			/* the size may follow as its own word: --restore 1G */
			if (!optarg && optind < argc && argv[optind][0] != '-')
				optarg = argv[optind++];
			o->restore = optarg ? parse_size(optarg) : 1ull << 30;
			break;
		case OPT_BASELINE: o->baseline = true; break;
		case OPT_TIMEOUT: o->timeout_s = bench_uint(optarg, "--timeout", 1, 86400); break;
		case OPT_SEED: o->seed = bench_uint(optarg, "--seed", 1, UINT32_MAX); break;
		case OPT_SPIN: o->spin = true; break;
		case OPT_KVM: o->kvm = true; break;
		case OPT_VS_INSTALL: o->vs_install = true; break;
		case 'h': usage(stdout); exit(0);
		default: usage(stderr); exit(2);
		}
	}
	if (optind < argc)
		die_code(EXIT_USAGE, "unexpected argument '%s' (see pagein bench --help%s)", argv[optind],
		    argv[optind][0] >= '0' && argv[optind][0] <= '9' ?
		    "; vCPUs are --vcpus N, -v is verbose" : "");
}

/* Allocate and fill the source image: a seeded pattern with no all-zero page, and the byte the
 * vCPUs write at offset 0 of every page. */
static void image_make(uint64_t size, uint64_t seed)
{
	uint64_t pg;
	uint8_t *m;

	m = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (m == MAP_FAILED)
		die("mmap source image of %" PRIu64 " bytes: %s", size, strerror(errno));
	madvise(m, size, MADV_POPULATE_WRITE);
	pattern_fill(m, 0, size, seed, 0);
	for (pg = 0; pg < size / BENCH_PAGE; pg++)
		m[pg * BENCH_PAGE] = touch_byte(pg);
	bench_image = m;
}

void check_sizes(const struct bench_opts *o, uint64_t per_vcpu)
{
	uint64_t align = o->backing == PAGEIN_BACKING_HUGETLB ? BENCH_HUGE : BENCH_PAGE;

	if (!per_vcpu || per_vcpu % align)
		die("memory per vCPU (%" PRIu64 " bytes) must be a positive multiple of %" PRIu64
		    " for %s", per_vcpu, align, pagein_backing_name(o->backing));
	if (per_vcpu / BENCH_PAGE > UINT32_MAX / BENCH_MAX_VCPUS)
		die("memory per vCPU (%" PRIu64 " bytes) is too large", per_vcpu);
}

/* One untimed floor run over as much memory as the biggest run maps: memory the guest has not
 * used lately (the host may have reclaimed it) costs more on first touch than memory it freed a
 * moment ago, and every timed run should get the same kind. */
static void warm_up(const struct bench_opts *o, unsigned vcpus, uint64_t per_vcpu)
{
	struct bench_case c = {
		.kind = KIND_FLOOR, .backing = PAGEIN_BACKING_ANON, .vcpus = vcpus, .around = 1,
		.per_vcpu = per_vcpu,
	};
	struct bench_result r;

	run_once(o, &c, &r);
	free(r.vcpu_pps);
}

/*
 * --vs-install: the snapshot file the file-source rows restore from, written from the image
 * and read once, so that it is warm in the page cache (what a restore right after a save
 * meets). The file is unlinked at once and reached through /proc/self/fd, so no way out of
 * the bench leaves it behind.
 */
static void snap_make(uint64_t size)
{
	struct pagein_region_desc d = { .gpa = 0, .size = size, .backing = PAGEIN_BACKING_ANON };
	const void *data = bench_image;
	const char *dir = getenv("TMPDIR");
	char path[4096];
	uint8_t *buf;
	uint64_t off;
	ssize_t got;
	int fd, ret;

	snprintf(path, sizeof(path), "%s/pagein-bench-XXXXXX", dir && *dir ? dir : "/tmp");
	fd = mkstemp(path);
	if (fd < 0)
		die("creating the snapshot file %s: %s", path, strerror(errno));
	ret = pagein_snapshot_save(path, &d, &data, 1);
	unlink(path);
	if (ret < 0)
		die("writing the snapshot (%" PRIu64 " bytes) to %s: %s", size, path,
		    strerror(-ret));
	buf = malloc(BENCH_HUGE);
	if (!buf)
		die("out of memory");
	/* mkstemp's fd still names the inode save wrote (save truncates, not replaces) */
	for (off = 0; off < size + 4096; off += (uint64_t)got) {
		got = pread(fd, buf, BENCH_HUGE, (off_t)off);
		if (got <= 0)
			break;
	}
	free(buf);
	snprintf(bench_snap_path, sizeof(bench_snap_path), "/proc/self/fd/%d", fd);
}

/* One row's name and spread for the headline: "1.02M [0.98-1.05M]". */
static void headline_row(const struct bench_result *r, const struct bench_result *in)
{
	double lo = 1e300, hi = 0, q;
	unsigned k;

	/* per round: the restore run divided by the install run of the same round */
	for (k = 0; k < r->nruns && k < in->nruns; k++) {
		q = r->run_pps[k] / in->run_pps[k];
		lo = q < lo ? q : lo;
		hi = q > hi ? q : hi;
	}
	fprintf(bench_tab, "  %-7s %-4s %8.0f pages/s [%.0f-%.0f] = %.2fx install (per round "
		"%.2f-%.2fx)\n", kind_name(&r->c), source_name(&r->c), r->pps, r->pps_min,
		r->pps_max, r->pps / in->pps, lo, hi);
}

/*
 * --restore SIZE --vs-install: in one run, interleaved round by round, the kernel's bare
 * install rate (UFFDIO_COPY of the image in 2 MiB chunks, no faults) and lazy restore to full
 * residency (one vCPU touching every page in order, fault-around auto, fill on) with each
 * front-end, from the memory source and from a warm snapshot file.
 */
static int bench_restore_vs_install(const struct bench_opts *o)
{
	struct bench_case lib = {
		.kind = KIND_LIB, .backing = PAGEIN_BACKING_ANON, .vcpus = 1,
		.around = AROUND_AUTO_ARG, .fill = true, .restore = true, .per_vcpu = o->restore,
	};
	struct bench_case cases[5];
	struct bench_opts ro = *o;
	const struct bench_result *in;
	unsigned i, first = bench_nrows;

	if (o->backing != PAGEIN_BACKING_ANON)
		die_code(EXIT_USAGE, "--vs-install measures anonymous memory (UFFDIO_COPY): drop -s");
	ro.vcpus = 1;
	ro.rand = false;
	ro.overlap = false;
	check_sizes(&ro, o->restore);
	image_make(o->restore, o->seed);
	snap_make(o->restore);
	warm_up(&ro, 1, o->restore);
	cases[0] = (struct bench_case){ .kind = KIND_INSTALL, .backing = PAGEIN_BACKING_ANON,
					.vcpus = 1, .around = 1, .restore = true,
					.per_vcpu = o->restore };
	for (i = 1; i < 5; i++) {
		cases[i] = lib;
		cases[i].frontend = i & 1 ? PAGEIN_FRONTEND_SELF : PAGEIN_FRONTEND_HANDLER;
		cases[i].readers = cases[i].uffds = i & 1 ? 0 : 1;
		cases[i].from_file = i > 2;
	}
	print_header();
	run_group(&ro, cases, 5);
	in = &bench_rows[first];
	fprintf(bench_tab, "\nheadline: restore %" PRIu64 " MiB to full residency vs the bare "
		"install rate (UFFDIO_COPY, 2 MiB chunks, no faults) %.0f pages/s [%.0f-%.0f], "
		"median of %u (target >= 0.90x):\n", o->restore >> 20, in->pps, in->pps_min,
		in->pps_max, ro.repeat);
	for (i = 1; i < 5; i++)
		headline_row(&bench_rows[first + i], in);
	fflush(bench_tab);
	return 0;
}

static int bench_restore(const struct bench_opts *o)
{
	struct bench_case cases[2] = {
		{ .kind = KIND_FLOOR, .backing = PAGEIN_BACKING_ANON, .vcpus = 1, .around = 1,
		  .restore = true, .per_vcpu = o->restore },
		{ .kind = KIND_LIB, .frontend = o->frontend, .backing = o->backing, .vcpus = 1,
		  .readers = o->frontend != PAGEIN_FRONTEND_HANDLER ? 0 : o->readers ? o->readers : 1,
		  .uffds = o->frontend != PAGEIN_FRONTEND_HANDLER ? 0 : o->uffds ? o->uffds : 1,
		  .around = AROUND_AUTO_ARG, .fill = true, .restore = true, .per_vcpu = o->restore },
	};
	struct bench_opts ro = *o;

	ro.vcpus = 1;
	ro.rand = false;
	ro.overlap = false;
	check_sizes(&ro, o->restore);
	image_make(o->restore, o->seed);
	warm_up(&ro, 1, o->restore);
	print_header();
	run_group(&ro, cases, 2);
	fprintf(bench_tab, "\nheadline: restore %" PRIu64 " MiB (%s, %s, around auto, fill on): "
		"%.0f pages/s vs first touch of plain memory %.0f pages/s = %.2fx (target >= 3)\n",
		o->restore >> 20, pagein_frontend_name(o->frontend), pagein_backing_name(o->backing),
		bench_rows[1].pps, bench_rows[0].pps, bench_rows[1].pps / bench_rows[0].pps);
	fflush(bench_tab);
	return 0;
}

int cmd_bench(int argc, char **argv)
{
	static const unsigned matrix_vcpus[] = { 1, 2, 4, 8 };
	struct bench_case cases[8], handler_like;
	struct bench_opts o;
	unsigned i, n, maxv;

	for (i = 1; i < (unsigned)argc; i++)
		if (!strcmp(argv[i], "--net"))
			return bench_net(argc, argv);
		else if (!strcmp(argv[i], "--ws"))
			return bench_ws(argc, argv);
	parse_opts(argc, argv, &o);
	bench_tab = o.json ? stderr : stdout;
	signal(SIGALRM, watchdog);
	if (o.kvm)
		return bench_kvm(&o);
	if (o.vs_install && !o.restore)
		die_code(EXIT_USAGE, "--vs-install goes with --restore SIZE");
	if (o.restore)
		return o.vs_install ? bench_restore_vs_install(&o) : bench_restore(&o);

	check_sizes(&o, o.per_vcpu);
	maxv = o.matrix ? 8 : o.vcpus;
	image_make(o.overlap ? o.per_vcpu : o.per_vcpu * maxv, o.seed);
	warm_up(&o, maxv, o.per_vcpu);
	print_header();
	if (!o.matrix) {
		n = make_cases(&o, o.vcpus, false, cases);
		run_group(&o, cases, n);
		return 0;
	}
	for (i = 0; i < sizeof(matrix_vcpus) / sizeof(matrix_vcpus[0]); i++) {
		n = make_cases(&o, matrix_vcpus[i], true, cases);
		run_group(&o, cases, n);
	}
	if (!o.baseline) {
		handler_like = cases[n - 1];
		print_headlines(&o, &handler_like);
	}
	return 0;
}
