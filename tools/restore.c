// SPDX-License-Identifier: MIT
/*
 * restore.c - the restore engine the `restore` and `demo` commands drive: map the regions of a
 * snapshot or a page server as a pagein space, run workload threads over the memory while it
 * arrives (faults) and the fill or the bulk stream brings the rest, print a progress line, then
 * verify every region's digest. Also generates the images the demo serves and snapshots hold.
 */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "pagein-net.h"
#include "tools.h"

#define MAX_REGIONS 32

void restore_opts_init(struct restore_opts *o)
{
	memset(o, 0, sizeof(*o));
	o->frontend = PAGEIN_FRONTEND_SELF;
	o->backing = PAGEIN_BACKING_ANON;
	o->readers = 1;
	o->threads = 2;
	o->workload = WL_SEQ;
	o->fill = true;
	o->around = PAGEIN_AROUND_AUTO;
	o->timeout_ms = 10000;
	o->urgent = true;
	o->bulk = 1;
	o->compress = true;
}


/* A splitmix64 word per 8 bytes of guest address: cheap, and different for every seed. */
static uint64_t pattern(uint64_t seed, uint64_t gpa)
{
	uint64_t x = gpa + seed * 0x9e3779b97f4a7c15ull;

	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
	x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
	return x ^ (x >> 31);
}

uint64_t *make_image(uint64_t *size, uint64_t seed, unsigned zero_every,
		     struct pagein_region_desc regs[2])
{
	uint64_t *img, i, lo, sz = (*size + (4u << 20) - 1) & ~((4ull << 20) - 1);

	img = malloc(sz);
	if (!img)
		return NULL;
	for (i = 0; i < sz / 8; i++)
		img[i] = zero_every && (i * 8 / 4096) % zero_every == 0 ? 0 : pattern(seed, i * 8);
	/* two regions, like a PC's RAM below and above a hole: 3/4 at 0, 1/4 at 4 GiB */
	lo = sz / 4 * 3 & ~((2ull << 20) - 1);
	regs[0] = (struct pagein_region_desc){ .gpa = 0, .size = lo };
	regs[1] = (struct pagein_region_desc){ .gpa = 4ull << 30, .size = sz - lo };
	regs[0].digest = pagein_digest(img, lo);
	regs[1].digest = pagein_digest((uint8_t *)img + lo, sz - lo);
	*size = sz;
	return img;
}

int make_snapshot(const char *path, uint64_t size, uint64_t seed, unsigned zero_every)
{
	struct pagein_region_desc regs[2];
	const void *data[2];
	uint64_t *img;
	int ret;

	img = make_image(&size, seed, zero_every, regs);
	if (!img)
		return -ENOMEM;
	data[0] = img;
	data[1] = (uint8_t *)img + regs[0].size;
	ret = pagein_snapshot_save(path, regs, data, 2);
	free(img);
	return ret;
}

struct workload_arg {
	const struct restore_opts *o;
	uint8_t **host;          /* per region */
	uint64_t *pages;         /* per region, 4 KiB pages */
	unsigned nreg;
	unsigned id;             /* thread number */
	_Atomic uint64_t *touched;
	volatile uint64_t sum;   /* keeps the reads from being optimised away */
};

/* The i-th 4 KiB page over all regions. */
static volatile uint64_t *page_word(struct workload_arg *a, uint64_t i)
{
	unsigned r = 0;

	while (r < a->nreg && i >= a->pages[r])
		i -= a->pages[r++];
	return (volatile uint64_t *)(a->host[r] + i * 4096);
}

static void *workload_main(void *p)
{
	struct workload_arg *a = p;
	uint64_t total = 0, per, first, i, j, st = 0x2545f4914f6cdd1dull * (a->id + 1), sum = 0;
	unsigned r;

	for (r = 0; r < a->nreg; r++)
		total += a->pages[r];
	per = total / a->o->threads;
	first = per * a->id;
	if (a->id == a->o->threads - 1)
		per = total - first;
	for (i = 0; i < per; i++) {
		switch (a->o->workload) {
		case WL_SEQ:
			j = first + i;
			break;
		case WL_RAND:
			st ^= st << 13, st ^= st >> 7, st ^= st << 17;
			j = first + st % per;
			break;
		default: /* hot/cold: 9 of 10 touches in the first tenth of memory */
			st ^= st << 13, st ^= st >> 7, st ^= st << 17;
			j = (st % 10) ? st / 16 % (total / 10 + 1) : st / 16 % total;
			break;
		}
		sum += *page_word(a, j);
		atomic_fetch_add_explicit(a->touched, 1, memory_order_relaxed);
	}
	a->sum = sum;
	return NULL;
}

static void progress(struct pagein_space *s, uint64_t t0, uint64_t *last_present,
		     uint64_t *last_faults, uint64_t *last_t, bool final)
{
	struct pagein_stats st;
	uint64_t present, total, t = now_ns(), faults;
	double dt = (double)(t - *last_t) / 1e9;

	pagein_residency(s, &present, &total);
	pagein_stats_get(s, &st);
	faults = st.faults_self + st.faults_handler;
	printf("%s  resident %5.1f%%  %7.1f MiB/s  faults/s %7.0f  p99 fault %6.1f us  %5.2f s%s",
	       isatty(1) ? "\r" : "", 100.0 * (double)present / (double)total,
	       dt > 0 ? (double)(present - *last_present) * 4096 / dt / (1 << 20) : 0.0,
	       dt > 0 ? (double)(faults - *last_faults) / dt : 0.0,
	       (double)pagein_stats_quantile(&st, 0.99) / 1000.0, (double)(t - t0) / 1e9,
	       isatty(1) && !final ? "" : "\n");
	fflush(stdout);
	*last_present = present;
	*last_faults = faults;
	*last_t = t;
}

/* A fault could not be served: say so before the SIGBUS that follows ends the process.
 * Async-signal-safe (it runs in the faulting thread's SIGBUS handler in self mode). */
static void on_fault_error(void *arg, uint64_t gpa, uint64_t len, int err)
{
	static const char hex[] = "0123456789abcdef";
	static const char head[] = "pagein: the page at gpa 0x";
	static const char tail[] = " could not be fetched (errno ";
	static const char end[] = "): the source failed or went away; the faulting thread gets SIGBUS\n";
	char msg[192];
	size_t n = 0;
	int i, e = err < 0 ? -err : err;

	memcpy(msg, head, sizeof(head) - 1);
	n = sizeof(head) - 1;
	for (i = 60; i >= 0; i -= 4)
		msg[n++] = hex[gpa >> i & 15];
	memcpy(msg + n, tail, sizeof(tail) - 1);
	n += sizeof(tail) - 1;
	if (e >= 100)
		msg[n++] = (char)('0' + e / 100 % 10);
	if (e >= 10)
		msg[n++] = (char)('0' + e / 10 % 10);
	msg[n++] = (char)('0' + e % 10);
	memcpy(msg + n, end, sizeof(end) - 1);
	n += sizeof(end) - 1;
	if (write(2, msg, n) < 0)
		return;
}

/* Connect to the page server o->from_addr (dies with the reason when it cannot). */
static struct pagein_source *net_source(const struct restore_opts *o)
{
	struct pagein_net_config nc;
	struct pagein_source *src;
	int ret;

	pagein_net_config_init(&nc);
	nc.addr = o->from_addr;
	nc.urgent = o->urgent;
	nc.bulk = o->fill ? o->bulk : 0;
	nc.compress = o->compress;
	nc.batch_pages = o->backing == PAGEIN_BACKING_HUGETLB ? 512 : 64;
	nc.log = tool_log;
	ret = pagein_source_net_new(&nc, &src);
	if (ret < 0)
		die("cannot migrate from %s: %s%s", o->from_addr, strerror(-ret),
		    ret == -EPROTO ? " (the server speaks another protocol: see above)" : "");
	return src;
}

int run_restore(const struct restore_opts *o)
{
	struct pagein_region_desc regs[MAX_REGIONS];
	struct workload_arg *args = NULL;
	struct pagein_source *src = NULL;
	struct pagein_space *s = NULL;
	struct pagein_config cfg;
	struct pagein_stats st;
	uint8_t *host[MAX_REGIONS];
	uint64_t pages[MAX_REGIONS], bytes = 0, t0, t_work = 0, t_full = 0, lp = 0, lf = 0, lt;
	_Atomic uint64_t touched = 0;
	pthread_t *th = NULL;
	int n, i, ret, bad = 0;
	unsigned t;
	uint64_t ps = pagein_backing_page_size(o->backing);
	bool stream = o->from_addr && o->fill && o->bulk;  /* network bulk stream */
	bool filling = o->from_addr ? stream : o->fill;     /* something brings untouched pages */

	if (o->from_addr) {
		src = net_source(o);
		n = pagein_net_regions(src, regs, MAX_REGIONS);
		if (n < 0)
			die("%s: cannot read the region table: %s", o->from_addr, strerror(-n));
	} else {
		n = pagein_snapshot_regions(o->from_file, regs, MAX_REGIONS);
		if (n == -ENODATA)
			die("%s is truncated: it is shorter than its header says", o->from_file);
		if (n < 0)
			die("%s: %s", o->from_file,
			    n == -EINVAL ? "not a pagein snapshot (bad magic, version or header digest)"
					 : strerror(-n));
	}
	pagein_config_init(&cfg);
	cfg.frontend = o->frontend;
	cfg.readers = o->readers;
	cfg.fault_around = o->around;
	cfg.timeout_ms = o->timeout_ms;
	cfg.log = tool_log;
	cfg.on_fault_error = on_fault_error;
	ret = pagein_space_new(&cfg, &s);
	if (ret < 0)
		die("cannot create the space: %s", strerror(-ret));
	for (i = 0; i < n; i++) {
		if (regs[i].size % ps)
			die("region %d (%" PRIu64 " bytes) is not a whole number of %s pages", i,
			    regs[i].size, pagein_backing_name(o->backing));
		ret = pagein_region_add(s, regs[i].gpa, regs[i].size, o->backing, (void **)&host[i]);
		if (ret < 0)
			die("region %d: %s", i, strerror(-ret));
		pages[i] = regs[i].size / 4096;
		bytes += regs[i].size;
	}
	if (!src && (ret = pagein_source_file_new(o->from_file, &src)) < 0)
		die("%s: %s", o->from_file, strerror(-ret));
	ret = pagein_space_set_source(s, src);
	if (ret < 0)
		die("source: %s", strerror(-ret));

	if (!o->quiet) {
		char how[96];

		if (o->from_addr)
			snprintf(how, sizeof(how), "bulk stream %s (%u connection%s), urgent channel %s",
				 stream ? "on" : "off", stream ? o->bulk : 0,
				 stream && o->bulk == 1 ? "" : "s", o->urgent ? "on" : "off");
		else
			snprintf(how, sizeof(how), "background fill %s", o->fill ? "on" : "off");
		pr_info("restoring %.1f MiB in %d regions lazily from %s: front-end %s, %s memory, "
			"%u workload threads (%s), %s",
			(double)bytes / (1 << 20), n, o->from_addr ? o->from_addr : o->from_file,
			pagein_frontend_name(o->frontend), pagein_backing_name(o->backing), o->threads,
			o->workload == WL_SEQ ? "sequential" : o->workload == WL_RAND ? "random"
				: o->workload == WL_HOTCOLD ? "hot/cold" : "none", how);
	}
	t0 = lt = now_ns();
	ret = pagein_space_start(s);
	if (ret < 0)
		die("start: %s", strerror(-ret));
	if (stream && (ret = pagein_net_stream_start(src, s)) < 0)
		die("cannot open the bulk connection to %s: %s", o->from_addr, strerror(-ret));
	else if (!o->from_addr && o->fill && (ret = pagein_fill_start(s)) < 0)
		die("fill: %s", strerror(-ret));

	if (o->workload != WL_NONE && o->threads) {
		th = calloc(o->threads, sizeof(*th));
		args = calloc(o->threads, sizeof(*args));
		if (!th || !args)
			die("out of memory");
		for (t = 0; t < o->threads; t++) {
			args[t] = (struct workload_arg){ o, host, pages, (unsigned)n, t, &touched, 0 };
			ret = pthread_create(&th[t], NULL, workload_main, &args[t]);
			if (ret)
				die("pthread_create: %s", strerror(ret));
		}
	}
	/* progress until the workload is done and (with fill) every page is present */
	for (;;) {
		uint64_t present, total;
		uint64_t want = 0;

		for (i = 0; i < n; i++)
			want += pages[i];
		ret = pagein_wait_complete(s, 250);
		if (!t_work && (o->workload == WL_NONE || !th ||
				atomic_load(&touched) >= want))
			t_work = now_ns();
		if (!o->quiet)
			progress(s, t0, &lp, &lf, &lt, false);
		pagein_residency(s, &present, &total);
		if (ret == 0 || ret == -EIO || (!filling && t_work))
			break;
		if (stream) {
			int ss = pagein_net_stream_status(src);

			/* a stream that failed before every page was sent ends the restore, idle
			 * guest or not: nothing else would bring the pages nobody touches */
			if (ss < 0 && ss != -EINPROGRESS)
				die("the bulk stream from %s failed: %s", o->from_addr, strerror(-ss));
			if (ss == 0 && t_work)
				break; /* faults and the accessors below bring the rest */
		}
	}
	for (t = 0; th && t < o->threads; t++)
		pthread_join(th[t], NULL);
	if (!t_work)
		t_work = now_ns();
	if (ret == -EIO)
		pr_err("a page could not be fetched from the source");
	/* without the fill, the accessors bring in what the workload did not touch */
	for (i = 0; i < n && ret != -EIO; i++) {
		ret = pagein_resolve(s, regs[i].gpa, regs[i].size, NULL);
		if (ret < 0)
			die("resolving region %d: %s", i, strerror(-ret));
	}
	t_full = now_ns();
	if (!o->quiet)
		progress(s, t0, &lp, &lf, &lt, true);

	for (i = 0; i < n; i++) {
		uint64_t d = pagein_digest(host[i], regs[i].size);
		bool ok = d == regs[i].digest;

		bad += !ok;
		pr_info("  region %d gpa 0x%" PRIx64 " %.1f MiB: digest %016" PRIx64 " %s %s%s", i,
			regs[i].gpa, (double)regs[i].size / (1 << 20), d, ok ? "==" : "!=",
			o->from_addr ? "server" : "snapshot", ok ? ": verified" : ": WRONG BYTES");
	}
	pagein_stats_get(s, &st);
	pr_info("summary: %.1f MiB in %.3f s (%.0f MiB/s); workload done at %.3f s; faults %" PRIu64
		" (self %" PRIu64 ", handler %" PRIu64 "), pages on demand %" PRIu64 ", fault-around %" PRIu64
		", fill %" PRIu64 ", accessors %" PRIu64 ", zero %" PRIu64 "; fault p50 %.1f us p99 %.1f us",
		(double)bytes / (1 << 20), (double)(t_full - t0) / 1e9,
		(double)bytes / (1 << 20) / ((double)(t_full - t0) / 1e9), (double)(t_work - t0) / 1e9,
		st.faults_self + st.faults_handler, st.faults_self, st.faults_handler, st.pages_demand,
		st.pages_around, st.pages_fill, st.pages_accessor, st.pages_zero,
		(double)pagein_stats_quantile(&st, 0.5) / 1000.0,
		(double)pagein_stats_quantile(&st, 0.99) / 1000.0);
	if (o->from_addr) {
		struct pagein_net_stats ns;

		pagein_net_stream_stop(src);
		pagein_net_stats_get(src, &ns);
		pr_info("network: %" PRIu64 " requests, %" PRIu64 " replies, %" PRIu64
			" pages on demand, %" PRIu64 " streamed (%" PRIu64 " installed, the rest were "
			"faulted in first), %.1f MiB received, %" PRIu64 " connection errors%s",
			ns.requests, ns.replies, ns.pages_urgent, ns.pages_bulk, ns.pages_installed,
			(double)ns.bytes_received / (1 << 20), ns.errors,
			ns.stream_done ? ", stream complete" : "");
	}
	pr_info("%s", bad ? "RESULT: FAILED verification" : "RESULT: every region verified");
	pagein_space_free(s);
	pagein_source_free(src);
	free(th);
	free(args);
	return bad ? 1 : 0;
}
