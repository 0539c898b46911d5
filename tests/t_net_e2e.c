// SPDX-License-Identifier: MIT
/*
 * t_net_e2e.c - post-copy migration over loopback with the real page server: every backing x
 * front-end with urgent and bulk connections while 4 threads touch memory, one connection for
 * all, faults only, two destinations at once (one leaving mid-stream), and a server that
 * disappears (faults and accessors fail in bounded time, nothing hangs). Every byte is checked.
 */
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "helpers.h"
#include "pagein-net.h"

#define SEED 77
#define ZERO_EVERY 5
#define LO_SIZE (12ull << 20)           /* region 0 at gpa 0 */
#define HI_GPA (1ull << 30)             /* region 1 */
#define HI_SIZE (4ull << 20)
#define TOTAL (LO_SIZE + HI_SIZE)
#define TOUCHES 3000                    /* per thread */

static uint8_t *img; /* LO_SIZE + HI_SIZE bytes: region 0 then region 1 */
static unsigned batch_pages; /* bulk batch (0: 512 for hugetlb, 64 otherwise) */
static bool no_touch;        /* migrate without touching: the stream brings everything */

static uint64_t ms_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* The image: the seeded pattern with zero pages, one whole 2 MiB page of zeros, and in region
 * 1 pages that are mostly zero (so the bulk stream sends them LZ4-compressed). */
static void make_image(void)
{
	uint64_t off;

	img = malloc(TOTAL);
	T_ASSERT(img);
	t_fill(img, 0, LO_SIZE, SEED, ZERO_EVERY);
	t_fill(img + LO_SIZE, HI_GPA, HI_SIZE, SEED, ZERO_EVERY);
	memset(img + (4ull << 20), 0, 2ull << 20);
	for (off = LO_SIZE; off < TOTAL; off += 4096)
		memset(img + off + 256, 0, 4096 - 256);
}

static const uint8_t *img_at(uint64_t gpa)
{
	return gpa >= HI_GPA ? img + LO_SIZE + (gpa - HI_GPA) : img + gpa;
}

static struct pagein_server *server_start(char *addr, size_t len)
{
	struct pagein_server_config cfg;
	struct pagein_server *srv;
	int port;

	pagein_server_config_init(&cfg);
	cfg.log = getenv("T_VERBOSE") ? t_log : NULL;
	T_EQ(pagein_server_new(&cfg, &srv), 0);
	T_EQ(pagein_server_add_memory(srv, 0, LO_SIZE, img), 0);
	T_EQ(pagein_server_add_memory(srv, HI_GPA, HI_SIZE, img + LO_SIZE), 0);
	T_EQ(pagein_server_start(srv), 0);
	port = pagein_server_port(srv);
	T_ASSERT(port > 0);
	snprintf(addr, len, "127.0.0.1:%d", port);
	return srv;
}

/* One destination: a space with the server's regions and a network source. */
struct dest {
	struct pagein_space *s;
	struct pagein_source *src;
	struct pagein_region_desc regs[4];
	uint8_t *host[4];
	int n;
};

static void dest_make(struct dest *d, const char *addr, enum pagein_backing b,
		      enum pagein_frontend fe, bool urgent, unsigned bulk, unsigned timeout_ms)
{
	struct pagein_net_config nc;
	struct pagein_config cfg;
	int i;

	memset(d, 0, sizeof(*d));
	pagein_config_init(&cfg);
	cfg.frontend = fe;
	cfg.readers = 2;
	cfg.timeout_ms = timeout_ms;
	cfg.log = t_log;
	T_EQ(pagein_space_new(&cfg, &d->s), 0);
	pagein_net_config_init(&nc);
	nc.addr = addr;
	nc.urgent = urgent;
	nc.bulk = bulk;
	nc.batch_pages = batch_pages ? batch_pages : b == PAGEIN_BACKING_HUGETLB ? 512 : 64;
	nc.log = t_log;
	/* pause on (the default) with a short limit: a server that dies fails in bounded time */
	nc.pause_limit_ms = 1500;
	T_EQ(pagein_source_net_new(&nc, &d->src), 0);
	d->n = pagein_net_regions(d->src, d->regs, 4);
	T_EQ(d->n, 2);
	for (i = 0; i < d->n; i++)
		T_EQ(pagein_region_add(d->s, d->regs[i].gpa, d->regs[i].size, b, (void **)&d->host[i]),
		     0);
	T_EQ(pagein_space_set_source(d->s, d->src), 0);
	T_EQ(pagein_space_start(d->s), 0);
}

static void dest_free(struct dest *d)
{
	pagein_net_stream_stop(d->src);
	pagein_space_free(d->s);
	pagein_source_free(d->src);
}

/* Every byte of every region equals the image, and its digest the server's. */
static void dest_verify(struct dest *d, const char *what)
{
	int i;

	for (i = 0; i < d->n; i++) {
		const uint8_t *want = img_at(d->regs[i].gpa);
		uint64_t off;

		if (memcmp(d->host[i], want, d->regs[i].size)) {
			for (off = 0; d->host[i][off] == want[off]; off++)
				;
			fprintf(stderr, "FAIL %s: region %d differs at gpa %#" PRIx64 "\n", what, i,
				d->regs[i].gpa + off);
			exit(1);
		}
		T_EQ(pagein_digest(d->host[i], d->regs[i].size), d->regs[i].digest);
	}
}

struct toucher {
	struct dest *d;
	unsigned id;
	unsigned bad;
};

/* Random reads of whole words all over memory, each checked against the image. */
static void *touch_main(void *p)
{
	struct toucher *t = p;
	uint64_t st = 0x9e3779b97f4a7c15ull * (t->id + 1), pages = TOTAL / 4096, k, gpa;
	unsigned i;

	for (i = 0; i < TOUCHES; i++) {
		k = t_rand(&st, pages);
		gpa = k * 4096 + t_rand(&st, 512) * 8;
		if (gpa >= LO_SIZE)
			gpa = HI_GPA + (gpa - LO_SIZE);
		{
			int r = gpa >= HI_GPA;
			uint64_t got = *(volatile uint64_t *)(t->d->host[r] + (gpa - t->d->regs[r].gpa));

			if (memcmp(&got, img_at(gpa), 8))
				t->bad++;
		}
	}
	return NULL;
}

static void touch_all(struct dest *d)
{
	struct toucher t[4];
	pthread_t th[4];
	unsigned i;

	for (i = 0; i < 4; i++) {
		t[i] = (struct toucher){ d, i, 0 };
		T_EQ(pthread_create(&th[i], NULL, touch_main, &t[i]), 0);
	}
	for (i = 0; i < 4; i++) {
		pthread_join(th[i], NULL);
		T_EQ(t[i].bad, 0);
	}
}

static void migrate(const char *addr, enum pagein_backing b, enum pagein_frontend fe, bool urgent,
		    unsigned bulk)
{
	struct pagein_net_stats ns;
	struct pagein_stats st;
	char what[96];
	struct dest d;
	uint64_t t0 = ms_now();
	int i;

	snprintf(what, sizeof(what), "%s/%s urgent %s bulk %u%s", pagein_backing_name(b),
		 pagein_frontend_name(fe), urgent ? "on" : "off", bulk,
		 no_touch ? (batch_pages == 64 ? " stream64" : " stream") : "");
	dest_make(&d, addr, b, fe, urgent, bulk, 10000);
	if (bulk)
		T_EQ(pagein_net_stream_start(d.src, d.s), 0);
	if (!no_touch)
		touch_all(&d);
	if (bulk) {
		T_EQ(pagein_wait_complete(d.s, 30000), 0);
	} else {
		/* faults only: the accessors bring what the touches did not */
		for (i = 0; i < d.n; i++)
			T_EQ(pagein_resolve(d.s, d.regs[i].gpa, d.regs[i].size, NULL), 0);
	}
	dest_verify(&d, what);
	/* the stream's threads may still be counting the last pages they installed */
	pagein_net_stream_stop(d.src);
	pagein_net_stats_get(d.src, &ns);
	pagein_stats_get(d.s, &st);
	T_EQ(ns.errors, 0);
	T_ASSERT(ns.pages_urgent + ns.pages_installed >= TOTAL / 4096);
	if (!bulk)
		T_ASSERT(ns.requests > 0 && ns.pages_bulk == 0);
	if (no_touch)
		T_EQ(ns.pages_installed, TOTAL / 4096);
	printf("  %-32s ok in %4" PRIu64 " ms: %" PRIu64 " requests, %" PRIu64
	       " pages urgent, %" PRIu64 " bulk (%" PRIu64 " installed)%s, faults %" PRIu64 "\n",
	       what, ms_now() - t0, ns.requests, ns.pages_urgent, ns.pages_bulk,
	       ns.pages_installed, ns.stream_done ? ", END" : "",
	       st.faults_self + st.faults_handler);
	dest_free(&d);
}

/* Two sessions at once; the first leaves mid-stream, the second completes. */
static void two_destinations(const char *addr, struct pagein_server *srv)
{
	struct pagein_server_stats ss;
	struct dest a, b;
	uint64_t w;
	int k;

	dest_make(&a, addr, PAGEIN_BACKING_ANON, PAGEIN_FRONTEND_HANDLER, true, 1, 10000);
	dest_make(&b, addr, PAGEIN_BACKING_ANON, PAGEIN_FRONTEND_SELF, true, 1, 10000);
	T_EQ(pagein_net_stream_start(a.src, a.s), 0);
	T_EQ(pagein_net_stream_start(b.src, b.s), 0);
	T_EQ(pagein_read(a.s, 8 * 4096 + 16, &w, 8), 0);
	T_ASSERT(!memcmp(&w, img_at(8 * 4096 + 16), 8));
	/* a leaves: its source goes first (connections closed), then its space */
	pagein_source_free(a.src);
	pagein_space_free(a.s);
	touch_all(&b);
	T_EQ(pagein_wait_complete(b.s, 30000), 0);
	dest_verify(&b, "second destination");
	for (k = 0; k < 200; k++) {
		pagein_server_stats_get(srv, &ss);
		if (ss.sessions_active == 1)
			break;
		usleep(10000);
	}
	T_EQ(ss.sessions_active, 1);
	dest_free(&b);
	printf("  two destinations: one left mid-stream, the other completed and verified\n");
}

/* The server goes away in the middle: accessors and faults fail in bounded time. */
static void server_disappears(void)
{
	struct pagein_server *srv;
	char addr[64];
	struct dest d;
	uint64_t t0, w, took;
	int ret;

	srv = server_start(addr, sizeof(addr));
	dest_make(&d, addr, PAGEIN_BACKING_ANON, PAGEIN_FRONTEND_HANDLER, true, 0, 1000);
	T_EQ(pagein_read(d.s, 4096 * 3, &w, 8), 0);
	T_ASSERT(!memcmp(&w, img_at(4096 * 3), 8));
	pagein_server_stop(srv);
	pagein_server_free(srv);
	t0 = ms_now();
	ret = pagein_read(d.s, 4096 * 100, &w, 8);
	took = ms_now() - t0;
	if (ret != -EIO && ret != -ECONNRESET && ret != -ENOTCONN && ret != -ETIMEDOUT) {
		fprintf(stderr, "FAIL: pagein_read after the server left = %d, want an error\n", ret);
		exit(1);
	}
	T_ASSERT(took < 3000);
	/* later ones fail at once */
	t0 = ms_now();
	T_ASSERT(pagein_read(d.s, 4096 * 200, &w, 8) < 0);
	T_ASSERT(ms_now() - t0 < 500);
	/* the source's threads are gone after dest_free: the last log line is ours to read */
	dest_free(&d);
	printf("  server gone: pagein_read = %s after %" PRIu64 " ms (log: %s)\n", strerror(-ret),
	       took, t_last_log);
}

/* A thread of another process touching memory whose server died gets SIGBUS in bounded time.
 * The child is forked before any thread exists (the server starts after the fork). */
static void server_disappears_faulter(void)
{
	struct pagein_server *srv;
	int go[2], ready[2], status;
	char addr[64] = "", c;
	uint64_t t0, took;
	pid_t pid;

	T_ASSERT(pipe(go) == 0 && pipe(ready) == 0);
	pid = fork();
	T_ASSERT(pid >= 0);
	if (pid == 0) {
		struct dest d;

		alarm(20);
		close(go[1]);
		close(ready[0]);
		setenv("T_QUIET", "1", 1);
		if (read(go[0], addr, sizeof(addr)) <= 0)
			_exit(6);
		dest_make(&d, addr, PAGEIN_BACKING_ANON, PAGEIN_FRONTEND_SELF, true, 0, 1000);
		if (memcmp((const void *)(d.host[0] + 4096), img_at(4096), 4096))
			_exit(4);
		if (write(ready[1], "r", 1) != 1 || read(go[0], &c, 1) != 1)
			_exit(5);
		(void)*(volatile uint64_t *)(d.host[0] + 4096 * 500);
		_exit(3); /* must not get here */
	}
	close(go[0]);
	close(ready[1]);
	srv = server_start(addr, sizeof(addr));
	T_ASSERT(write(go[1], addr, sizeof(addr)) == sizeof(addr));
	T_ASSERT(read(ready[0], &c, 1) == 1);
	pagein_server_stop(srv);
	pagein_server_free(srv);
	t0 = ms_now();
	T_ASSERT(write(go[1], "g", 1) == 1);
	T_ASSERT(waitpid(pid, &status, 0) == pid);
	took = ms_now() - t0;
	if (!WIFSIGNALED(status) || WTERMSIG(status) != SIGBUS) {
		fprintf(stderr, "FAIL: child status %#x, want death by SIGBUS\n", status);
		exit(1);
	}
	T_ASSERT(took < 5000);
	printf("  server gone: a touching thread got SIGBUS after %" PRIu64 " ms\n", took);
	close(go[1]);
	close(ready[0]);
}

int main(void)
{
	static const enum pagein_backing backs[] = { PAGEIN_BACKING_ANON, PAGEIN_BACKING_SHMEM,
						     PAGEIN_BACKING_HUGETLB };
	static const enum pagein_frontend fes[] = { PAGEIN_FRONTEND_SELF, PAGEIN_FRONTEND_HANDLER };
	struct pagein_server *srv;
	char addr[64];
	bool huge = true;
	unsigned b, f;
	pid_t pid;
	int status;

	t_require_uffd();
	alarm(110);
	make_image();
	/* huge pages are probed in a child: t_require_hugepages exits 77 when it cannot have them */
	pid = fork();
	T_ASSERT(pid >= 0);
	if (pid == 0) {
		t_require_hugepages((unsigned)(TOTAL >> 21));
		_exit(0);
	}
	T_ASSERT(waitpid(pid, &status, 0) == pid);
	if (!WIFEXITED(status) || WEXITSTATUS(status)) {
		huge = false;
		printf("  skip hugetlb: needs %llu free 2 MiB huge pages (as root: raise "
		       "/proc/sys/vm/nr_hugepages)\n", (unsigned long long)(TOTAL >> 21));
	}
	server_disappears_faulter();
	srv = server_start(addr, sizeof(addr));
	for (b = 0; b < 3; b++) {
		if (backs[b] == PAGEIN_BACKING_HUGETLB && !huge)
			continue;
		for (f = 0; f < 2; f++)
			migrate(addr, backs[b], fes[f], true, 1);
	}
	if (huge) {
		/* stream only: whole huge pages per batch, then gathered from 64-page batches */
		no_touch = true;
		migrate(addr, PAGEIN_BACKING_HUGETLB, PAGEIN_FRONTEND_SELF, true, 1);
		batch_pages = 64;
		migrate(addr, PAGEIN_BACKING_HUGETLB, PAGEIN_FRONTEND_HANDLER, true, 1);
		no_touch = false;
		batch_pages = 0;
	}
	migrate(addr, PAGEIN_BACKING_ANON, PAGEIN_FRONTEND_SELF, false, 1);
	migrate(addr, PAGEIN_BACKING_SHMEM, PAGEIN_FRONTEND_HANDLER, false, 1);
	migrate(addr, PAGEIN_BACKING_ANON, PAGEIN_FRONTEND_SELF, true, 0);
	migrate(addr, PAGEIN_BACKING_ANON, PAGEIN_FRONTEND_HANDLER, true, 0);
	migrate(addr, PAGEIN_BACKING_ANON, PAGEIN_FRONTEND_HANDLER, true, 2);
	two_destinations(addr, srv);
	{
		struct pagein_server_stats ss;

		pagein_server_stats_get(srv, &ss);
		T_ASSERT(ss.pages_lz4 > 0);
		printf("  server: %llu pages sent LZ4-compressed and decoded by the destinations\n",
		       (unsigned long long)ss.pages_lz4);
	}
	pagein_server_stop(srv);
	pagein_server_free(srv);
	server_disappears();
	free(img);
	t_pass("network migrations: every backing and front-end, urgent/bulk variants, two "
	       "destinations, a vanishing server");
}
