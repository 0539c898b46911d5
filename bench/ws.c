// SPDX-License-Identifier: MIT
/*
 * ws.c - `pagein bench --ws`: REAP's and FaaSnap's comparison in one process. A pagein snapshot
 * on disk (make_snapshot, what `pagein mksnap` writes) is restored again and again with the same
 * workload (threads touching a fixed, seeded subset of the pages in random order and checking
 * every byte), in four ways: pure on-demand with the page cache dropped first (it records the
 * working set), working-set prefetch (pagein_ws_prefetch) cold, an eager full read (pagein_resolve
 * of every region before the workload) cold, and on-demand from a page-cache-resident snapshot
 * (warm). Each is timed from pagein_space_start to the end of the workload; faults come from the
 * library's counters, bytes read from /proc/self/io (read_bytes: from the disk; rchar: through
 * read calls, page cache hits included).
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <unistd.h>

#include "bench.h"
#include "pagein-vmm.h"
#include "pattern.h"
#include "tools.h"

#define WS_MAX_THREADS 64u
#define TMPFS_MAGIC_ 0x01021994
#define RAMFS_MAGIC_ 0x858458f6

enum way { WAY_DEMAND, WAY_PREFETCH, WAY_EAGER, WAY_WARM, NWAYS };
static const char *const way_name[NWAYS] = { "on-demand", "prefetch", "eager", "warm" };

struct ws_opts {
	uint64_t size;       /* --size: image bytes */
	unsigned threads;    /* --threads: workload threads */
	unsigned fraction;   /* --fraction N: the workload touches 1 page in N */
	unsigned repeat;     /* -n: rounds, the median run of each way is kept */
	enum pagein_frontend frontend;
	unsigned readers;    /* handler readers (0: one per workload thread) */
	unsigned around;     /* fault-around pages (1: off) */
	bool beside;         /* --beside: prefetch and eager read on a thread beside the workload
	                      * instead of before it */
	bool no_drop;        /* --no-drop: never drop the page cache (every run is warm) */
	bool json;
	const char *dir;     /* where the snapshot and the working set go */
	uint64_t seed;
	unsigned timeout_s;
};

/* One run of one way. */
struct ws_run {
	double seconds;          /* pagein_space_start to the end of the workload */
	bool cold;               /* the page cache was dropped before it */
	uint64_t faults;         /* the library's fault counters (self + handler) */
	uint64_t disk_bytes;     /* /proc/self/io read_bytes delta */
	uint64_t read_bytes;     /* /proc/self/io rchar delta */
	uint64_t verified;       /* pages whose every byte was right */
	uint64_t bad;            /* pages with a wrong byte */
	uint64_t pf_installed;   /* prefetch: pages it installed */
	uint64_t pf_skipped;     /* prefetch: pages a fault brought first */
	double load_ms;          /* prefetch: its read; eager: the full read */
	struct pagein_stats st;
};

/* The snapshot and its layout. */
static struct {
	char dir[4096], snap[4200], ws[4200];
	struct pagein_region_desc regs[2];
	unsigned nreg;
	uint64_t size, image_id;
	uint32_t *order;  /* the set, split per thread: thread t's pages at [first[t], first[t+1]) */
	uint64_t first[WS_MAX_THREADS + 1];
	bool can_drop;
	const char *why_warm; /* why cold runs cannot be cold, or NULL */
} W;

static volatile sig_atomic_t cleaned;

/* Remove what the bench wrote; async-signal-safe (the watchdog and SIGTERM call it). */
static void cleanup(void)
{
	if (cleaned || !W.dir[0])
		return;
	cleaned = 1;
	unlink(W.snap);
	unlink(W.ws);
	rmdir(W.dir);
}

static void on_signal(int sig)
{
	static const char msg[] = "pagein bench --ws: stopped (timeout or signal); files removed\n";
	ssize_t r;

	cleanup();
	r = write(2, msg, sizeof(msg) - 1);
	(void)r;
	_exit(sig == SIGALRM ? 1 : 128 + sig);
}

/* Whether page i (of the image, by offset) is in the workload's set: a seeded hash, so the
 * set is the same every run and spread over the whole image. */
static bool in_set(uint64_t i, uint64_t seed, unsigned fraction)
{
	return (pattern_word(seed ^ 0x5e7, i << 3) >> 8) % fraction == 0; /* bit 0 is always 1 */
}

/* The set, each thread's share shuffled with its own seed (same order every run). */
static void make_order(const struct ws_opts *o)
{
	uint64_t n = W.size / BENCH_PAGE, i, k = 0, t, cnt[WS_MAX_THREADS] = { 0 };

	W.order = malloc(sizeof(*W.order) * n); /* the set is a random share: allow all */
	if (!W.order)
		die("out of memory");
	for (i = 0; i < n; i++)
		if (in_set(i, o->seed, o->fraction))
			cnt[k++ % o->threads]++;
	W.first[0] = 0;
	for (t = 0; t < o->threads; t++)
		W.first[t + 1] = W.first[t] + cnt[t];
	memset(cnt, 0, sizeof(cnt));
	for (i = 0, k = 0; i < n; i++)
		if (in_set(i, o->seed, o->fraction)) {
			t = k++ % o->threads;
			W.order[W.first[t] + cnt[t]++] = (uint32_t)i;
		}
	for (t = 0; t < o->threads; t++) {
		uint32_t *a = W.order + W.first[t];
		uint64_t m = W.first[t + 1] - W.first[t], st = o->seed * 2654435761u + t + 1, j, x;

		for (i = m; i > 1; i--) {
			j = xorshift(&st) % i;
			x = a[i - 1];
			a[i - 1] = a[j];
			a[j] = (uint32_t)x;
		}
	}
}

struct worker {
	pthread_t tid;
	pthread_barrier_t *go;
	uint8_t *host[2];
	unsigned t;
	uint64_t seed;
	uint64_t end_ns, ok, bad;
};

static void *worker_main(void *arg)
{
	struct worker *w = arg;
	uint64_t i;

	pthread_barrier_wait(w->go);
	for (i = W.first[w->t]; i < W.first[w->t + 1]; i++) {
		uint64_t off = (uint64_t)W.order[i] * BENCH_PAGE;
		unsigned r = off >= W.regs[0].size;
		const uint8_t *p = w->host[r] + (off - (r ? W.regs[0].size : 0));

		if (pattern_check(p, off, BENCH_PAGE, w->seed, 0) == UINT64_MAX)
			w->ok++;
		else
			w->bad++;
	}
	w->end_ns = now_ns();
	return NULL;
}

/* /proc/self/io's rchar and read_bytes. */
static void io_now(uint64_t *rchar, uint64_t *disk)
{
	char line[128];
	FILE *f = fopen("/proc/self/io", "r");

	*rchar = *disk = 0;
	if (!f)
		return;
	while (fgets(line, sizeof(line), f)) {
		sscanf(line, "rchar: %" SCNu64, rchar);
		sscanf(line, "read_bytes: %" SCNu64, disk);
	}
	fclose(f);
}

static bool drop_caches(void)
{
	int fd;
	bool ok;

	sync();
	fd = open("/proc/sys/vm/drop_caches", O_WRONLY | O_CLOEXEC);
	if (fd < 0)
		return false;
	ok = write(fd, "3\n", 2) == 2;
	close(fd);
	return ok;
}

/* Read the whole snapshot so that it is in the page cache (the warm way). */
static void cache_file(const char *path)
{
	static uint8_t buf[1 << 20];
	int fd = open(path, O_RDONLY | O_CLOEXEC);

	if (fd < 0)
		die("%s: %s", path, strerror(errno));
	while (read(fd, buf, sizeof(buf)) > 0)
		;
	close(fd);
}

static void run_way(const struct ws_opts *o, enum way way, bool record, struct ws_run *r)
{
	struct worker w[WS_MAX_THREADS];
	struct pagein_config cfg;
	struct pagein_space *s;
	struct pagein_source *src;
	struct ws_prefetch pf;
	pthread_barrier_t go;
	uint64_t t0, rc0, d0, rc1, d1, tl;
	void *host[2];
	char err[256];
	unsigned i;
	int ret;

	memset(r, 0, sizeof(*r));
	snprintf(bench_running, sizeof(bench_running), "ws %s", way_name[way]);
	alarm(o->timeout_s);
	if (way == WAY_WARM)
		cache_file(W.snap);
	else
		r->cold = W.can_drop && drop_caches();
	pagein_config_init(&cfg);
	cfg.frontend = o->frontend;
	cfg.readers = o->readers ? o->readers : o->threads;
	cfg.fault_around = o->around;
	cfg.log = tool_log;
	if ((ret = pagein_space_new(&cfg, &s)) < 0)
		die("cannot create the space: %s", strerror(-ret));
	for (i = 0; i < W.nreg; i++)
		if ((ret = pagein_region_add(s, W.regs[i].gpa, W.regs[i].size,
					     PAGEIN_BACKING_ANON, &host[i])) < 0)
			die("region %u: %s", i, strerror(-ret));
	if ((ret = pagein_source_file_new(W.snap, &src)) < 0)
		die("%s: %s", W.snap, strerror(-ret));
	if (record && (ret = pagein_ws_record_start(s, 0)) < 0)
		die("pagein_ws_record_start: %s", strerror(-ret));
	if ((ret = pagein_space_set_source(s, src)) < 0)
		die("pagein_space_set_source: %s", strerror(-ret));
	pthread_barrier_init(&go, NULL, o->threads + 1);
	for (i = 0; i < o->threads; i++) {
		w[i] = (struct worker){ .go = &go, .host = { host[0], host[W.nreg - 1] }, .t = i,
					.seed = o->seed };
		if ((ret = pthread_create(&w[i].tid, NULL, worker_main, &w[i])))
			die("pthread_create: %s", strerror(ret));
	}
	io_now(&rc0, &d0);
	t0 = now_ns();
	if ((ret = pagein_space_start(s)) < 0)
		die("start: %s", strerror(-ret));
	tl = now_ns();
	if (way == WAY_PREFETCH) {
		if ((ret = ws_prefetch_start(&pf, s, W.ws, W.image_id)))
			die("pthread_create: %s", strerror(ret));
		if (!o->beside)
			ws_prefetch_join(&pf);
	} else if (way == WAY_EAGER) {
		/* eager: the whole snapshot read and installed before the workload runs (with
		 * --beside, the fill reads it beside the workload instead) */
		if (o->beside) {
			if ((ret = pagein_fill_start(s)) < 0)
				die("fill: %s", strerror(-ret));
		} else {
			for (i = 0; i < W.nreg; i++)
				if ((ret = pagein_resolve(s, W.regs[i].gpa, W.regs[i].size, NULL)) < 0)
					die("eager read of region %u: %s", i, strerror(-ret));
			r->load_ms = (double)(now_ns() - tl) / 1e6;
		}
	}
	pthread_barrier_wait(&go);
	for (i = 0; i < o->threads; i++) {
		pthread_join(w[i].tid, NULL);
		r->seconds = (double)(w[i].end_ns - t0) / 1e9 > r->seconds ?
			     (double)(w[i].end_ns - t0) / 1e9 : r->seconds;
		r->verified += w[i].ok;
		r->bad += w[i].bad;
	}
	if (way == WAY_PREFETCH && o->beside)
		ws_prefetch_join(&pf);
	io_now(&rc1, &d1);
	r->read_bytes = rc1 - rc0;
	r->disk_bytes = d1 - d0;
	pthread_barrier_destroy(&go);
	if (way == WAY_PREFETCH) {
		if (pf.ret < 0)
			die("working set not prefetched: %s", pf.err);
		r->pf_installed = pf.st.installed;
		r->pf_skipped = pf.st.skipped;
		r->load_ms = (double)pf.st.read_ns / 1e6;
	}
	pagein_stats_get(s, &r->st);
	r->faults = r->st.faults_self + r->st.faults_handler;
	if (record) {
		pagein_ws_record_stop(s);
		ret = pagein_ws_record_save(s, W.ws, W.image_id, err, sizeof(err));
		if (ret < 0)
			die("recording the working set: %s", err);
	}
	pagein_space_free(s);
	pagein_source_free(src);
	alarm(0);
}

static int cmp_dbl(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

static void usage(FILE *f)
{
	fprintf(f,
"usage: pagein bench --ws [options]\n"
"  Restores one pagein snapshot on disk again and again with the same workload (threads\n"
"  touching a fixed, seeded subset of its pages in random order, checking every byte) in four\n"
"  ways: on-demand (page cache dropped first; records the working set), working-set prefetch\n"
"  (dropped first), an eager full read (dropped first), and on-demand from a page-cache-resident\n"
"  snapshot (warm). Dropping the cache needs root: without it every run is marked warm.\n"
"  --size SIZE     snapshot size (default 256M)\n"
"  --threads N     workload threads (default 4)\n"
"  --fraction N    the workload touches 1 page in N (default 4)\n"
"  --dir DIR       where the snapshot goes (default .: not tmpfs, or cold runs cannot be)\n"
"  -f self|handler front-end (default self); -r N handler readers (default one per thread)\n"
"  --around N      fault-around pages (default 1 = off)\n"
"  --beside        prefetch (and the eager read, by the fill) beside the workload instead of\n"
"                  before it\n"
"  --no-drop       never drop the page cache (every run warm, and said so)\n"
"  -n N            rounds; each way's median run is kept (default 1)\n"
"  --json          one JSON object per way and one for the ratios on stdout (table: stderr)\n"
"  --seed N        pattern, set and order seed; --timeout SEC per run (default 300)\n");
}

static void parse(int argc, char **argv, struct ws_opts *o)
{
	enum { O_WS = 256, O_SIZE, O_THREADS, O_FRACTION, O_DIR, O_AROUND, O_BESIDE, O_NODROP,
	       O_JSON, O_SEED, O_TIMEOUT };
	static const struct option lo[] = {
		{ "ws", no_argument, NULL, O_WS },
		{ "size", required_argument, NULL, O_SIZE },
		{ "threads", required_argument, NULL, O_THREADS },
		{ "fraction", required_argument, NULL, O_FRACTION },
		{ "dir", required_argument, NULL, O_DIR },
		{ "around", required_argument, NULL, O_AROUND },
		{ "beside", no_argument, NULL, O_BESIDE },
		{ "no-drop", no_argument, NULL, O_NODROP },
		{ "json", no_argument, NULL, O_JSON },
		{ "seed", required_argument, NULL, O_SEED },
		{ "timeout", required_argument, NULL, O_TIMEOUT },
		{ "verbose", no_argument, NULL, 'v' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	int ch;

	*o = (struct ws_opts){ .size = 256ull << 20, .threads = 4, .fraction = 4, .repeat = 1,
			       .frontend = PAGEIN_FRONTEND_SELF, .around = 1, .dir = ".",
			       .seed = 0x5eed, .timeout_s = 300 };
	optind = 1;
	while ((ch = getopt_long(argc, argv, "f:r:n:vh", lo, NULL)) != -1) {
		switch (ch) {
		case O_WS: break;
		case O_SIZE: o->size = opt_size("--size", optarg, 4 << 20, 1ull << 40); break;
		case O_THREADS:
			o->threads = bench_uint(optarg, "--threads", 1, WS_MAX_THREADS);
			break;
		case O_FRACTION: o->fraction = bench_uint(optarg, "--fraction", 1, 4096); break;
		case O_DIR: o->dir = optarg; break;
		case O_AROUND:
			o->around = bench_uint(optarg, "--around", 1, PAGEIN_AROUND_MAX);
			break;
		case O_BESIDE: o->beside = true; break;
		case O_NODROP: o->no_drop = true; break;
		case O_JSON: o->json = true; break;
		case O_SEED: o->seed = bench_uint(optarg, "--seed", 1, UINT32_MAX); break;
		case O_TIMEOUT: o->timeout_s = bench_uint(optarg, "--timeout", 1, 86400); break;
		case 'f': o->frontend = bench_frontend(optarg); break;
		case 'r': o->readers = bench_uint(optarg, "-r", 1, 1024); break;
		case 'n': o->repeat = bench_uint(optarg, "-n", 1, BENCH_MAX_REPEAT); break;
		case 'v': tool_verbose = true; break;
		case 'h': usage(stdout); exit(0);
		default: usage(stderr); exit(2);
		}
	}
	if (optind < argc)
		die("unexpected argument '%s' (see pagein bench --ws --help)", argv[optind]);
}

/* Make the snapshot in a directory of its own under o->dir and learn whether runs can be
 * cold there. */
static void setup(const struct ws_opts *o)
{
	struct statfs sf;
	int ret;

	snprintf(W.dir, sizeof(W.dir), "%s/pagein-bench-ws-XXXXXX", o->dir);
	if (!mkdtemp(W.dir)) {
		W.dir[0] = 0;
		die("cannot make a directory under %s: %s", o->dir, strerror(errno));
	}
	snprintf(W.snap, sizeof(W.snap), "%s/image.snap", W.dir);
	snprintf(W.ws, sizeof(W.ws), "%s/image.ws", W.dir);
	atexit(cleanup);
	signal(SIGALRM, on_signal);
	signal(SIGTERM, on_signal);
	signal(SIGINT, on_signal);
	ret = make_snapshot(W.snap, o->size, o->seed, 0, true);
	if (ret < 0)
		die("writing the snapshot (%" PRIu64 " bytes) to %s: %s", o->size, W.snap,
		    strerror(-ret));
	ret = pagein_snapshot_regions(W.snap, W.regs, 2);
	if (ret != 2)
		die("%s: %d regions (want 2): %s", W.snap, ret, ret < 0 ? strerror(-ret) : "");
	W.nreg = 2;
	W.size = W.regs[0].size + W.regs[1].size;
	W.image_id = snapshot_image_id(W.regs, W.nreg);
	if (o->no_drop)
		W.why_warm = "--no-drop";
	else if (statfs(W.dir, &sf) == 0 &&
		 (sf.f_type == TMPFS_MAGIC_ || sf.f_type == RAMFS_MAGIC_))
		W.why_warm = "the snapshot is on tmpfs (memory): choose --dir on a disk";
	else if (!drop_caches())
		W.why_warm = "cannot write /proc/sys/vm/drop_caches (needs root)";
	W.can_drop = !W.why_warm;
}

int bench_ws(int argc, char **argv)
{
	static struct ws_run runs[NWAYS][BENCH_MAX_REPEAT];
	struct ws_run *med[NWAYS];
	struct ws_opts o;
	double secs[BENCH_MAX_REPEAT], lo[NWAYS], hi[NWAYS], speedup, fewer, vs_warm;
	uint64_t set;
	unsigned k, wy;
	int wrong = 0;
	bool cold;

	parse(argc, argv, &o);
	bench_tab = o.json ? stderr : stdout;
	setup(&o);
	make_order(&o);
	set = W.first[o.threads];
	if (!set)
		die("no page of the %" PRIu64 " MiB snapshot is in the set (1 in %u): nothing to "
		    "measure", W.size >> 20, o.fraction);
	fprintf(bench_tab, "pagein bench --ws: snapshot %" PRIu64 " MiB at %s, %u threads touching "
		"%" PRIu64 " pages (1 in %u, random order, seed %" PRIu64 ") and checking every "
		"byte; front-end %s, around %u, prefetch/eager %s the workload; median of %u\n", W.size >> 20, W.snap, o.threads, set, o.fraction, o.seed,
		pagein_frontend_name(o.frontend), o.around, o.beside ? "beside" : "before",
		o.repeat);
	{
		double la[3];

		if (getloadavg(la, 3) == 3)
			fprintf(bench_tab, "load average %.2f %.2f %.2f\n", la[0], la[1], la[2]);
	}
	if (W.why_warm)
		fprintf(bench_tab, "NOTE: the page cache is not dropped (%s): every run below is "
			"WARM, the cold comparison is not measured\n", W.why_warm);
	for (k = 0; k < o.repeat; k++)
		for (wy = 0; wy < NWAYS; wy++)
			run_way(&o, (enum way)wy, wy == WAY_DEMAND && k == 0, &runs[wy][k]);
	fprintf(bench_tab, "%-10s %-5s %10s %10s %9s %11s %11s %9s %10s %9s\n", "way", "cache",
		"ms", "ms-range", "faults", "disk-MiB", "read-MiB", "verified", "prefetched",
		"load-ms");
	for (wy = 0; wy < NWAYS; wy++) {
		struct ws_run *r;

		for (k = 0; k < o.repeat; k++)
			secs[k] = runs[wy][k].seconds;
		qsort(secs, o.repeat, sizeof(secs[0]), cmp_dbl);
		lo[wy] = secs[0];
		hi[wy] = secs[o.repeat - 1];
		med[wy] = &runs[wy][0];
		for (k = 0; k < o.repeat; k++)
			if (runs[wy][k].seconds == secs[o.repeat / 2])
				med[wy] = &runs[wy][k];
		r = med[wy];
		for (k = 0; k < o.repeat; k++)
			wrong |= runs[wy][k].bad || runs[wy][k].verified != set;
		fprintf(bench_tab, "%-10s %-5s %10.1f %4.0f-%-5.0f %9" PRIu64 " %11.1f %11.1f %9"
			PRIu64 " %10" PRIu64 " %9.1f\n", way_name[wy], r->cold ? "cold" : "warm",
			r->seconds * 1e3, lo[wy] * 1e3, hi[wy] * 1e3, r->faults,
			(double)r->disk_bytes / (1 << 20), (double)r->read_bytes / (1 << 20),
			r->verified, r->pf_installed, r->load_ms);
		if (o.json) {
			printf("{\"mode\":\"ws\",\"way\":\"%s\",\"cold\":%s,\"frontend\":\"%s\","
			       "\"size\":%" PRIu64 ",\"threads\":%u,\"set_pages\":%" PRIu64
			       ",\"runs\":%u,\"seconds\":%.6f,\"seconds_min\":%.6f,\"seconds_max\":%.6f,"
			       "\"faults\":%" PRIu64 ",\"disk_read_bytes\":%" PRIu64
			       ",\"file_read_bytes\":%" PRIu64 ",\"verified_pages\":%" PRIu64
			       ",\"wrong_pages\":%" PRIu64 ",\"pages_demand\":%" PRIu64
			       ",\"pages_accessor\":%" PRIu64 ",\"pages_fill\":%" PRIu64
			       ",\"prefetch_installed\":%" PRIu64 ",\"prefetch_skipped\":%" PRIu64
			       ",\"load_ms\":%.3f,\"beside\":%s}\n", way_name[wy],
			       r->cold ? "true" : "false", pagein_frontend_name(o.frontend), W.size,
			       o.threads, set, o.repeat, r->seconds, lo[wy], hi[wy], r->faults,
			       r->disk_bytes, r->read_bytes, r->verified, r->bad, r->st.pages_demand,
			       r->st.pages_accessor, r->st.pages_fill, r->pf_installed, r->pf_skipped,
			       r->load_ms, o.beside ? "true" : "false");
		}
	}
	speedup = med[WAY_DEMAND]->seconds / med[WAY_PREFETCH]->seconds;
	fewer = med[WAY_DEMAND]->faults ?
		100.0 * (1.0 - (double)med[WAY_PREFETCH]->faults / (double)med[WAY_DEMAND]->faults) :
		0.0;
	vs_warm = 100.0 * (med[WAY_PREFETCH]->seconds / med[WAY_WARM]->seconds - 1.0);
	/* cold only if the compared runs were (a drop can fail after the first one worked) */
	cold = med[WAY_DEMAND]->cold && med[WAY_PREFETCH]->cold && med[WAY_EAGER]->cold;
	fprintf(bench_tab, "\nheadline: %s working-set prefetch vs on-demand: %.2fx faster (target "
		">= 3.7), %.1f%% fewer faults (target >= 90%%); vs a warm page-cache restore %+.1f%% "
		"(target within 10%%); eager full read vs on-demand %.2fx\n",
		cold ? "cold" : "WARM (cache not dropped)", speedup, fewer, vs_warm,
		med[WAY_DEMAND]->seconds / med[WAY_EAGER]->seconds);
	if (o.json)
		printf("{\"mode\":\"ws\",\"way\":\"headline\",\"cold\":%s,\"speedup_prefetch\":%.3f,"
		       "\"fault_reduction_pct\":%.2f,\"prefetch_vs_warm_pct\":%.2f,"
		       "\"speedup_eager\":%.3f,\"all_verified\":%s}\n", cold ? "true" : "false",
		       speedup, fewer, vs_warm, med[WAY_DEMAND]->seconds / med[WAY_EAGER]->seconds,
		       wrong ? "false" : "true");
	fflush(stdout);
	fflush(bench_tab);
	free(W.order);
	if (wrong)
		die_code(EXIT_WRONG_BYTES, "a run read wrong bytes or missed pages");
	return 0;
}
