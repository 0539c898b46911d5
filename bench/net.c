// SPDX-License-Identifier: MIT
/*
 * net.c - `pagein bench --net`: in one process, the raw TCP baseline of the path (throughput,
 * request/reply RTT), then post-copy migrations from an in-process page server: bulk-only
 * throughput, fault latency idle and under a saturating bulk stream, time to full residency;
 * again over a link with 100 us each way (netns.c: netem, or a delay relay).
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "bench.h"
#include "net.h"
#include "pagein.h"
#include "pagein-net.h"
#include "tools.h"


/* Command-line options. */
struct net_opts {
	uint64_t size;                  /* --size: bytes migrated */
	enum pagein_frontend frontend;  /* -f */
	bool json;                      /* --json: JSON lines on stdout, table on stderr */
	bool no_delay;                  /* --no-delay: loopback only */
	bool no_tls;                    /* --no-tls: skip the TLS rows */
	unsigned bulk;                  /* --bulk: bulk connections of tests 1, 2 and 3 */
	uint64_t seed;                  /* image pattern and touch order */
	unsigned runs;                  /* --runs: runs of each throughput test (NB_RUNS) */
	unsigned pairs;                 /* --runs: idle/bulk latency pairs (NB_P99_PAIRS) */
};


/* One measurement (one table row, one JSON line). Negative numbers are "not applicable". */
struct meas {
	const char *test;      /* raw-tcp, rtt, bulk, fault-idle, fault-bulk, residency */
	const struct link *l;
	int urgent;            /* 1 on, 0 off, -1 not a migration */
	double mibs, ratio;    /* throughput and its ratio to the link's raw TCP */
	double p50, p99;       /* latency, us */
	double seconds;        /* median run time (throughput tests), or the sampling time */
	double raw;            /* bulk, residency: raw TCP MiB/s of the runs paired with them */
	double extra;          /* fault-bulk: p99 / idle p99; residency: seconds / ideal;
	                        * rtt: added RTT p50 over loopback; rtt-bulk: p99 / idle p99 */
	uint64_t races;        /* fault-bulk: faults that found their page in flight on the stream */
	double blocked_us;     /* fault-bulk: time those faults waited for it */
	double runq_us;        /* fault tests: the faulting thread's run-queue wait per timed fault
	                        * (waiting for a CPU, not for the network), us */
	unsigned samples;      /* timed touches or round trips; runs for throughput tests */
	double bytes_ratio;    /* bytes: bytes received / non-zero bytes of the image (median) */
	uint64_t dup_pages;    /* bytes: pages that crossed twice (streamed after a reply brought
	                        * them), in the median run */
	uint64_t bulk_pages;   /* bytes: pages the stream brought, in the median run */
	double idle_p50, idle_p99; /* fault-bulk: the idle medians of its own pairs, us */
	double lo, hi;         /* the spread of the kept ratio (ratio, or extra for fault-bulk and
	                        * residency) over the runs or pairs; negative: one run */
};

static FILE *tab;                      /* table: stdout, or stderr with --json */
static const struct net_opts *opts;
uint8_t *net_image;                        /* the source image (page server memory) */
struct pagein_region_desc net_image_regs[2];
static uint64_t image_size;
static double loop_rtt_p50;            /* loopback RTT, for the relay's added RTT */




static int cmp_dbl(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

static double median(double *v, unsigned n)
{
	qsort(v, n, sizeof(*v), cmp_dbl);
	return v[n / 2];
}

/* The smallest and the largest of v[0..n). */
static void spread(const double *v, unsigned n, double *lo, double *hi)
{
	unsigned i;

	*lo = *hi = v[0];
	for (i = 1; i < n; i++) {
		if (v[i] < *lo)
			*lo = v[i];
		if (v[i] > *hi)
			*hi = v[i];
	}
}

/* p50 and p99 in us of n latencies in ns (sorts them). */
static void quantiles(uint32_t *lat, unsigned n, double *p50, double *p99)
{
	qsort(lat, n, sizeof(*lat), cmp_u32);
	*p50 = lat[(n - 1) / 2] / 1e3;
	*p99 = lat[(uint64_t)(n - 1) * 99 / 100] / 1e3;
}

void set_timeouts(int fd)
{
	struct timeval tv = { .tv_sec = NB_IO_TIMEOUT_S };
	int one = 1;

	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
}

int send_all(int fd, const void *buf, size_t len)
{
	const uint8_t *p = buf;
	ssize_t w;

	while (len) {
		w = send(fd, p, len, MSG_NOSIGNAL);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return -1;
		p += w;
		len -= (size_t)w;
	}
	return 0;
}

int recv_all(int fd, void *buf, size_t len)
{
	uint8_t *p = buf;
	ssize_t r;

	while (len) {
		r = recv(fd, p, len, 0);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			return -1;
		p += r;
		len -= (size_t)r;
	}
	return 0;
}

/* A listening TCP socket on host, port 0 (any free one). Returns the fd; *port gets the port. */
int listen_on(const char *host, int *port)
{
	struct sockaddr_in sa = { .sin_family = AF_INET };
	socklen_t len = sizeof(sa);
	int fd, one = 1;

	if (inet_pton(AF_INET, host, &sa.sin_addr) != 1)
		die("bad listen address %s", host);
	fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		die("socket: %s", strerror(errno));
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) || listen(fd, 64) ||
	    getsockname(fd, (struct sockaddr *)&sa, &len))
		die("cannot listen on %s: %s", host, strerror(errno));
	*port = ntohs(sa.sin_port);
	return fd;
}

/* Connect to "HOST:PORT" (IPv4), blocking, with the I/O time-outs set. Dies on failure. */
int connect_to(const char *addr)
{
	struct sockaddr_in sa = { .sin_family = AF_INET };
	char host[64], *colon;
	int fd;

	snprintf(host, sizeof(host), "%s", addr);
	colon = strrchr(host, ':');
	if (!colon)
		die("internal: bad address %s", addr);
	*colon = 0;
	sa.sin_port = htons((uint16_t)atoi(colon + 1));
	if (inet_pton(AF_INET, host, &sa.sin_addr) != 1)
		die("internal: bad address %s", addr);
	fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		die("socket: %s", strerror(errno));
	set_timeouts(fd);
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)))
		die("cannot connect to %s: %s", addr, strerror(errno));
	return fd;
}

/* ---------------------------------------------------------------------------------------------
 * The raw TCP peer: one connection at a time. The client sends a mode byte and a u64: 'T' n =
 * "send me n bytes in 64 KiB writes"; 'R' = "answer every 16-byte request with 4 KiB" until EOF.
 */


static void *rawsrv_main(void *arg)
{
	struct rawsrv *rs = arg;
	uint8_t buf[NB_CHUNK], hdr[9], req[16];
	struct pollfd pfd = { .fd = rs->lfd, .events = POLLIN };
	uint64_t n, k;
	int fd;

	memset(buf, 0xa5, sizeof(buf));
	while (!atomic_load(&rs->stop)) {
		if (poll(&pfd, 1, 100) <= 0)
			continue;
		fd = accept4(rs->lfd, NULL, NULL, SOCK_CLOEXEC);
		if (fd < 0)
			continue; /* another thread took it */
		set_timeouts(fd);
		if (recv_all(fd, hdr, sizeof(hdr)) == 0) {
			memcpy(&n, hdr + 1, 8);
			if (hdr[0] == 'T') {
				for (; n && !atomic_load(&rs->stop); n -= k) {
					k = n < NB_CHUNK ? n : NB_CHUNK;
					if (send_all(fd, buf, k))
						break;
				}
			} else if (hdr[0] == 'R') {
				while (!atomic_load(&rs->stop) && !recv_all(fd, req, sizeof(req)) &&
				       !send_all(fd, buf, NB_PAGE))
					;
			}
		}
		close(fd);
	}
	return NULL;
}

void rawsrv_start(struct rawsrv *rs, const char *host)
{
	unsigned i;
	int ret;

	rs->lfd = listen_on(host, &rs->port);
	if (fcntl(rs->lfd, F_SETFL, O_NONBLOCK))
		die("fcntl: %s", strerror(errno));
	atomic_store(&rs->stop, false);
	for (i = 0; i < RAWSRV_THREADS; i++) {
		ret = pthread_create(&rs->thread[i], NULL, rawsrv_main, rs);
		if (ret)
			die("pthread_create: %s", strerror(ret));
	}
}

void rawsrv_stop(struct rawsrv *rs)
{
	unsigned i;

	atomic_store(&rs->stop, true);
	for (i = 0; i < RAWSRV_THREADS; i++)
		pthread_join(rs->thread[i], NULL);
	close(rs->lfd);
}

/* ---------------------------------------------------------------------------------------------
 * Output
 */

static void pr_num(FILE *f, const char *key, double v, const char *fmt)
{
	fprintf(f, ",\"%s\":", key);
	if (v < 0)
		fprintf(f, "null");
	else
		fprintf(f, fmt, v);
}

static void pr_cell(double v, const char *fmt, int width)
{
	char b[32];

	if (v < 0)
		snprintf(b, sizeof(b), "-");
	else
		snprintf(b, sizeof(b), fmt, v);
	fprintf(tab, " %*s", width, b);
}

static void emit(const struct meas *m)
{
	fprintf(tab, "%-12s %-11s %-4s", m->l->name, m->test,
		m->urgent < 0 ? "-" : m->urgent ? "on" : "off");
	pr_cell(m->mibs, "%.1f", 9);
	pr_cell(m->ratio, "%.2f", 6);
	pr_cell(m->p50, "%.1f", 8);
	pr_cell(m->p99, "%.1f", 8);
	pr_cell(m->seconds, "%.3f", 8);
	fprintf(tab, " %7u", m->samples);
	if (m->raw >= 0)
		fprintf(tab, "  raw %.0f", m->raw);
	if (m->runq_us >= 0)
		fprintf(tab, "  runq %.1f", m->runq_us);
	if (m->bytes_ratio > 0)
		fprintf(tab, "  bytes/non-zero %.4f  dup pages %" PRIu64 " of %" PRIu64 " streamed",
			m->bytes_ratio, m->dup_pages, m->bulk_pages);
	if (m->extra >= 0)
		fprintf(tab, "  %s %.2f", !strcmp(m->test, "fault-bulk") ? "p99/idle" :
			!strcmp(m->test, "residency") ? "t/ideal" :
			!strcmp(m->test, "rtt-bulk") ? "p99/idle" : "added-us", m->extra);
	if (m->lo >= 0)
		fprintf(tab, "  (%.2f-%.2f)", m->lo, m->hi);
	fprintf(tab, "\n");
	fflush(tab);
	if (!opts->json)
		return;
	printf("{\"test\":\"%s\",\"link\":\"%s\",\"urgent\":%s,\"frontend\":\"%s\","
	       "\"size_mib\":%.1f", m->test, m->l->name,
	       m->urgent < 0 ? "null" : m->urgent ? "true" : "false",
	       pagein_frontend_name(m->l->handler ? PAGEIN_FRONTEND_HANDLER : opts->frontend),
	       (double)image_size / (1 << 20));
	pr_num(stdout, "mib_per_sec", m->mibs, "%.1f");
	pr_num(stdout, "ratio_to_raw", m->ratio, "%.3f");
	pr_num(stdout, "lat_p50_us", m->p50, "%.1f");
	pr_num(stdout, "lat_p99_us", m->p99, "%.1f");
	pr_num(stdout, "seconds", m->seconds, "%.4f");
	printf(",\"samples\":%u", m->samples);
	if (m->raw >= 0)
		pr_num(stdout, "raw_mib_per_sec", m->raw, "%.1f");
	if (m->runq_us >= 0)
		pr_num(stdout, "runq_wait_us_per_fault", m->runq_us, "%.1f");
	if (!strcmp(m->test, "rtt-bulk"))
		pr_num(stdout, "p99_ratio_to_idle", m->extra, "%.3f");
	if (!strcmp(m->test, "fault-bulk")) {
		pr_num(stdout, "p99_ratio_to_idle", m->extra, "%.3f");
		printf(",\"faults_waited_for_stream\":%" PRIu64 ",\"waited_us_total\":%.1f",
		       m->races, m->blocked_us);
	}
	if (!strcmp(m->test, "residency"))
		pr_num(stdout, "ratio_to_ideal", m->extra, "%.3f");
	if (!strcmp(m->test, "bytes"))
		printf(",\"bytes_ratio_to_nonzero\":%.4f,\"dup_pages\":%" PRIu64
		       ",\"bulk_pages\":%" PRIu64, m->bytes_ratio, m->dup_pages, m->bulk_pages);
	if (m->lo >= 0)
		printf(",\"ratio_min\":%.3f,\"ratio_max\":%.3f", m->lo, m->hi);
	if (!strcmp(m->test, "bulk-more"))
		printf(",\"bulk_connections\":%u", opts->bulk + 1);
	if (m->l->psk_file || m->l->handler)
		printf(",\"transport\":\"%s\"", m->l->psk_file ? "tls" : "tcp");
	if (!strcmp(m->test, "rtt") && m->extra >= 0)
		pr_num(stdout, "added_rtt_p50_us", m->extra, "%.1f");
	printf("}\n");
	fflush(stdout);
}

static struct meas meas_new(const char *test, const struct link *l, int urgent)
{
	return (struct meas){ .test = test, .l = l, .urgent = urgent, .mibs = -1, .ratio = -1,
			      .p50 = -1, .p99 = -1, .seconds = -1, .raw = -1,
			      .extra = -1, .runq_us = -1, .lo = -1, .hi = -1 };
}

/* ---------------------------------------------------------------------------------------------
 * 0. Baseline: raw TCP throughput and request/reply RTT over the path
 */

/* One raw TCP run: the peer sends n bytes in 64 KiB writes; returns MiB/s, *secs the time. */
static double raw_run(const struct link *l, uint64_t n, double *secs)
{
	static uint8_t buf[NB_CHUNK];
	uint64_t got, t0, t1;
	uint8_t hdr[9];
	ssize_t r;
	int fd;

	fd = connect_to(l->raw_addr);
	hdr[0] = 'T';
	memcpy(hdr + 1, &n, 8);
	t0 = now_ns();
	if (send_all(fd, hdr, sizeof(hdr)))
		die("raw TCP to %s: %s", l->raw_addr, strerror(errno));
	for (got = 0; got < n; got += (uint64_t)r) {
		r = recv(fd, buf, sizeof(buf), 0);
		if (r < 0 && errno == EINTR) {
			r = 0;
			continue;
		}
		if (r <= 0)
			die("raw TCP from %s: %s after %" PRIu64 " bytes", l->raw_addr,
			    r ? strerror(errno) : "EOF", got);
	}
	t1 = now_ns();
	close(fd);
	*secs = (double)(t1 - t0) / 1e9;
	return (double)n / (1 << 20) / *secs;
}

/* n request/reply round trips (16 bytes out, 4 KiB back) on one connection: latencies in ns
 * into lat; returns the seconds the whole loop took. */
static double rtt_run(const struct link *l, uint32_t *lat, unsigned n)
{
	uint8_t buf[NB_PAGE], hdr[9] = { 'R' }, req[16] = { 0 };
	uint64_t t0, a, b;
	unsigned i;
	int fd;

	fd = connect_to(l->raw_addr);
	t0 = now_ns();
	if (send_all(fd, hdr, sizeof(hdr)))
		die("raw TCP to %s: %s", l->raw_addr, strerror(errno));
	for (i = 0; i < n; i++) {
		a = now_ns();
		if (send_all(fd, req, sizeof(req)) || recv_all(fd, buf, NB_PAGE))
			die("request/reply with %s: %s", l->raw_addr, strerror(errno));
		b = now_ns();
		lat[i] = b - a > UINT32_MAX ? UINT32_MAX : (uint32_t)(b - a);
	}
	close(fd);
	return (double)(now_ns() - t0) / 1e9;
}

/* A raw TCP stream on its own connection until stop: the load of the rtt-bulk row. */
struct raw_load {
	const struct link *l;
	_Atomic bool stop;
};

static void *raw_load_main(void *arg)
{
	struct raw_load *rl = arg;
	double secs;
	unsigned i;

	for (i = 0; i < 1000 && !atomic_load(&rl->stop); i++)
		raw_run(rl->l, NB_RAW_MIN / 4, &secs);
	return NULL;
}

static void baseline(struct link *l)
{
	double mibs[NB_RAW_RUNS], secs[NB_RAW_RUNS];
	struct raw_load rl = { .l = l };
	struct meas m;
	pthread_t th;
	uint32_t *lat;
	unsigned i;
	int ret;

	/* a few hundred MiB: twice the net_image, within [NB_RAW_MIN, NB_RAW_BYTES] */
	for (i = 0; i < NB_RAW_RUNS; i++)
		mibs[i] = raw_run(l, image_size * 2 < NB_RAW_MIN ? NB_RAW_MIN :
				  image_size * 2 > NB_RAW_BYTES ? NB_RAW_BYTES : image_size * 2,
				  &secs[i]);
	m = meas_new("raw-tcp", l, -1);
	l->raw_mibs = m.mibs = median(mibs, NB_RAW_RUNS);
	m.ratio = 1.0;
	m.seconds = median(secs, NB_RAW_RUNS);
	m.samples = NB_RAW_RUNS;
	emit(&m);

	lat = malloc(NB_RTT_N * sizeof(*lat));
	if (!lat)
		die("out of memory");
	m = meas_new("rtt", l, -1);
	m.seconds = rtt_run(l, lat, NB_RTT_N);
	quantiles(lat, NB_RTT_N, &m.p50, &m.p99);
	l->rtt_p50 = m.p50;
	l->rtt_p99 = m.p99;
	m.samples = NB_RTT_N;
	if (!strcmp(l->name, "loopback"))
		loop_rtt_p50 = m.p50;
	else if (loop_rtt_p50 > 0)
		m.extra = m.p50 - loop_rtt_p50;
	emit(&m);

	/* the same round trips while a raw stream fills the path: what the platform itself does
	 * to a small exchange under bulk traffic, the reference for test 2 */
	ret = pthread_create(&th, NULL, raw_load_main, &rl);
	if (ret)
		die("pthread_create: %s", strerror(ret));
	usleep(20000);
	m = meas_new("rtt-bulk", l, -1);
	m.seconds = rtt_run(l, lat, NB_RTT_N);
	atomic_store(&rl.stop, true);
	pthread_join(th, NULL);
	quantiles(lat, NB_RTT_N, &m.p50, &m.p99);
	m.samples = NB_RTT_N;
	m.extra = m.p99 / l->rtt_p99;
	l->rtt_bulk_p50 = m.p50;
	l->rtt_bulk_p99 = m.p99;
	emit(&m);
	free(lat);
}

/* ---------------------------------------------------------------------------------------------
 * Migrations
 */

/* One destination: a space fed by a network source. */
struct mig {
	struct pagein_source *src;
	struct pagein_space *space;
	struct pagein_region_desc regs[NB_MAX_REGIONS];
	uint8_t *host[NB_MAX_REGIONS];
	uint64_t pages[NB_MAX_REGIONS]; /* 4 KiB pages per region */
	uint64_t total;                 /* pages over all regions */
	int n;
	bool urgent;
};

static void mig_open(struct mig *m, const struct link *l, bool urgent, unsigned bulk,
		     unsigned around)
{
	struct pagein_net_config nc;
	struct pagein_config cfg;
	int i, ret;

	memset(m, 0, sizeof(*m));
	m->urgent = urgent;
	pagein_net_config_init(&nc);
	nc.addr = l->srv_addr;
	nc.urgent = urgent;
	nc.bulk = bulk;
	nc.compress = false; /* incompressible image: like bytes against raw TCP */
	nc.psk_file = l->psk_file;
	nc.log = tool_log;
	ret = pagein_source_net_new(&nc, &m->src);
	if (ret < 0)
		die("cannot connect to the page server at %s: %s", l->srv_addr, strerror(-ret));
	m->n = pagein_net_regions(m->src, m->regs, NB_MAX_REGIONS);
	if (m->n <= 0)
		die("the page server has no regions (%d)", m->n);
	pagein_config_init(&cfg);
	cfg.frontend = l->handler ? PAGEIN_FRONTEND_HANDLER : opts->frontend;
	cfg.fault_around = around;
	cfg.log = tool_log;
	ret = pagein_space_new(&cfg, &m->space);
	if (ret < 0)
		die("cannot create the space: %s", strerror(-ret));
	for (i = 0; i < m->n; i++) {
		ret = pagein_region_add(m->space, m->regs[i].gpa, m->regs[i].size,
					PAGEIN_BACKING_ANON, (void **)&m->host[i]);
		if (ret < 0)
			die("region %d: %s", i, strerror(-ret));
		m->pages[i] = m->regs[i].size / NB_PAGE;
		m->total += m->pages[i];
	}
	ret = pagein_space_set_source(m->space, m->src);
	if (ret < 0)
		die("source: %s", strerror(-ret));
	ret = pagein_space_start(m->space);
	if (ret < 0)
		die("start: %s", strerror(-ret));
}

static void mig_stream(struct mig *m)
{
	int ret = pagein_net_stream_start(m->src, m->space);

	if (ret < 0)
		die("cannot open the bulk connection: %s", strerror(-ret));
}

static void mig_wait(struct mig *m)
{
	int ret = pagein_wait_complete(m->space, NB_WAIT_MS);

	if (ret < 0)
		die("the migration did not complete in %d ms: %s", NB_WAIT_MS, strerror(-ret));
}

/* Bring whatever is still missing, verify every region's digest, free everything. */
static void mig_close(struct mig *m, const struct link *l, const char *test)
{
	int i, ret;

	for (i = 0; i < m->n; i++) {
		ret = pagein_resolve(m->space, m->regs[i].gpa, m->regs[i].size, NULL);
		if (ret < 0)
			die("%s/%s: resolving region %d: %s", l->name, test, i, strerror(-ret));
	}
	for (i = 0; i < m->n; i++) {
		uint64_t d = pagein_digest(m->host[i], m->regs[i].size);

		if (d != m->regs[i].digest)
			die("VERIFY FAILED: %s/%s (urgent %s): region %d (gpa 0x%" PRIx64 ") digest "
			    "%016" PRIx64 " != the server's %016" PRIx64, l->name, test,
			    m->urgent ? "on" : "off", i, m->regs[i].gpa, d, m->regs[i].digest);
	}
	pagein_net_stream_stop(m->src);
	pagein_space_free(m->space);
	pagein_source_free(m->src);
}

/* Host address of the i-th 4 KiB page over all regions. */
static uint8_t *page_addr(const struct mig *m, uint64_t i)
{
	int r = 0;

	while (r < m->n - 1 && i >= m->pages[r])
		i -= m->pages[r++];
	return m->host[r] + i * NB_PAGE;
}

/* A random permutation of the pages, from seed. */
static uint32_t *page_order(uint64_t total, uint64_t seed)
{
	uint32_t *o = malloc(total * sizeof(*o)), t;
	uint64_t i, k, st = seed * 0x9e3779b97f4a7c15ull | 1;

	if (!o)
		die("out of memory");
	for (i = 0; i < total; i++)
		o[i] = (uint32_t)i;
	for (i = total - 1; i > 0; i--) {
		k = xorshift(&st) % (i + 1);
		t = o[i];
		o[i] = o[k];
		o[k] = t;
	}
	return o;
}

static inline uint32_t touch(const uint8_t *p)
{
	uint64_t t0 = now_ns(), t1;

	(void)*(const volatile uint64_t *)p;
	t1 = now_ns();
	return t1 - t0 > UINT32_MAX ? UINT32_MAX : (uint32_t)(t1 - t0);
}

static bool resident(const uint8_t *p)
{
	unsigned char v = 0;

	return !mincore((void *)p, NB_PAGE, &v) && (v & 1);
}

/* Bytes of the raw TCP run paired with a migration: the net_image, at least NB_RAW_MIN so that
 * small images are compared with a steady-state rate, not a burst into socket buffers. */
static uint64_t raw_bytes(void)
{
	return image_size > NB_RAW_MIN ? image_size : NB_RAW_MIN;
}

/* Nanoseconds this thread has spent runnable but waiting for a CPU (schedstat), or 0. */
static uint64_t runq_wait_ns(void)
{
	unsigned long long run = 0, wait = 0;
	FILE *f = fopen("/proc/thread-self/schedstat", "r");

	if (f && fscanf(f, "%llu %llu", &run, &wait) != 2)
		wait = 0;
	if (f)
		fclose(f);
	return wait;
}

/* 1. Bulk only: the stream alone, no workload; MiB/s until every page is present. Each run
 * follows a raw TCP run of the same size (drift on these shared machines hits both alike); the
 * ratio is the median of the pairs' ratios. */
static struct meas test_bulk_n(const struct link *l, bool urgent, unsigned nbulk,
			       const char *name)
{
	double mibs[NB_RUNS_MAX], secs[NB_RUNS_MAX], raw[NB_RUNS_MAX], ratio[NB_RUNS_MAX], rs;
	struct meas m = meas_new(name, l, urgent);
	struct mig g;
	uint64_t t0;
	unsigned r;

	for (r = 0; r < opts->runs; r++) {
		raw[r] = raw_run(l, raw_bytes(), &rs);
		mig_open(&g, l, urgent, nbulk, PAGEIN_AROUND_AUTO);
		t0 = now_ns();
		mig_stream(&g);
		mig_wait(&g);
		secs[r] = (double)(now_ns() - t0) / 1e9;
		mibs[r] = (double)g.total * NB_PAGE / (1 << 20) / secs[r];
		ratio[r] = mibs[r] / raw[r];
		mig_close(&g, l, name);
	}
	m.mibs = median(mibs, opts->runs);
	m.seconds = median(secs, opts->runs);
	m.ratio = median(ratio, opts->runs);
	spread(ratio, opts->runs, &m.lo, &m.hi);
	m.raw = median(raw, opts->runs);
	m.samples = opts->runs;
	emit(&m);
	return m;
}

static struct meas test_bulk(const struct link *l, bool urgent)
{
	return test_bulk_n(l, urgent, opts->bulk, "bulk");
}

/* 2a. Fault latency with no bulk traffic: random pages, one page per fault, each touch timed. */
static struct meas fault_idle_run(struct link *l, uint64_t seed, bool show)
{
	struct meas m = meas_new("fault-idle", l, 1);
	uint32_t *order, *lat;
	struct mig g;
	unsigned i, n;
	uint64_t t0, q0;

	mig_open(&g, l, true, 0, 1);
	order = page_order(g.total, seed);
	n = g.total / 2 < NB_IDLE_FAULTS ? (unsigned)(g.total / 2) : NB_IDLE_FAULTS;
	lat = malloc(n * sizeof(*lat));
	if (!lat)
		die("out of memory");
	memset(lat, 0, n * sizeof(*lat));
	q0 = runq_wait_ns();
	t0 = now_ns();
	for (i = 0; i < n; i++)
		lat[i] = touch(page_addr(&g, order[i]));
	m.seconds = (double)(now_ns() - t0) / 1e9;
	m.runq_us = (double)(runq_wait_ns() - q0) / 1e3 / n;
	mig_close(&g, l, "fault-idle");
	quantiles(lat, n, &m.p50, &m.p99);
	m.samples = n;
	l->idle_p50 = m.p50;
	l->idle_p99 = m.p99;
	if (show)
		emit(&m);
	free(lat);
	free(order);
	return m;
}

static void test_fault_idle(struct link *l)
{
	fault_idle_run(l, opts->seed, true);
}

/* 2b. Fault latency while the bulk stream saturates the link: only touches of pages still
 * missing just before the touch are timed, and only while the stream is running. */
static struct meas fault_bulk_run(const struct link *l, bool urgent, uint64_t seed, bool show)
{
	struct meas m = meas_new("fault-bulk", l, urgent);
	uint64_t t0, t_sampling = 0, i, present, total, q0, q_sampling = 0;
	struct pagein_net_stats ns;
	struct pagein_stats st;
	uint32_t *order, *lat;
	unsigned n = 0, run;
	struct mig g;
	uint8_t *p;

	lat = malloc(NB_BULK_FAULTS * sizeof(*lat));
	if (!lat)
		die("out of memory");
	memset(lat, 0, NB_BULK_FAULTS * sizeof(*lat));
	for (run = 0; run < NB_BULK_MIGS && n < NB_BULK_FAULTS; run++) {
		mig_open(&g, l, urgent, opts->bulk, 1);
		order = page_order(g.total, seed + run + 1);
		mig_stream(&g);
		q0 = runq_wait_ns();
		t0 = now_ns();
		for (i = 0; i < g.total && n < NB_BULK_FAULTS; i++) {
			pagein_net_stats_get(g.src, &ns);
			pagein_residency(g.space, &present, &total);
			if (ns.stream_done || present == total)
				break;
			p = page_addr(&g, order[i]);
			if (resident(p))
				continue;
			lat[n++] = touch(p);
		}
		t_sampling += now_ns() - t0;
		q_sampling += runq_wait_ns() - q0;
		pagein_stats_get(g.space, &st);
		m.races += st.races_lost;
		m.blocked_us += (double)st.blocked_ns / 1e3;
		mig_wait(&g);
		mig_close(&g, l, "fault-bulk");
		free(order);
	}
	if (!n)
		die("%s: the bulk stream finished before a single fault could be timed", l->name);
	quantiles(lat, n, &m.p50, &m.p99);
	m.seconds = (double)t_sampling / 1e9;
	m.runq_us = (double)q_sampling / 1e3 / n;
	m.samples = n;
	m.extra = l->idle_p99 > 0 ? m.p99 / l->idle_p99 : -1;
	if (show)
		emit(&m);
	free(lat);
	return m;
}

static struct meas test_fault_bulk(const struct link *l, bool urgent)
{
	return fault_bulk_run(l, urgent, opts->seed, true);
}

/*
 * 2a + 2b, opts->pairs times: an idle run, then a run under bulk, each pair with its own touch
 * order. A p99 of a few thousand faults on 2 shared CPUs rests on its 20-30 slowest faults, one
 * scheduler hiccup moves it 2-5x from one run to the next: the pairs' median ratio is the figure,
 * with its spread. The rows show the median p50 and p99 of the runs; l's idle figures become
 * those medians.
 */
/* One row of the pairs: last's labels, the runs' median latencies, their total time and count. */
static struct meas pairs_row(const struct meas *last, double *p50, double *p99,
			     double *runq, double secs, unsigned samples)
{
	struct meas m = *last;

	m.p50 = median(p50, opts->pairs);
	m.p99 = median(p99, opts->pairs);
	m.runq_us = median(runq, opts->pairs);
	m.seconds = secs;
	m.samples = samples;
	return m;
}

static struct meas test_fault_pairs(struct link *l, bool urgent, bool show_idle)
{
	double i50[NB_RUNS_MAX], i99[NB_RUNS_MAX], b50[NB_RUNS_MAX], b99[NB_RUNS_MAX];
	double ratio[NB_RUNS_MAX], iq[NB_RUNS_MAX], bq[NB_RUNS_MAX], isec = 0, bsec = 0;
	struct meas mi = { 0 }, mb = { 0 }, m;
	unsigned k, isamp = 0, bsamp = 0;
	uint64_t races = 0;
	double blocked = 0;

	for (k = 0; k < opts->pairs; k++) {
		mi = fault_idle_run(l, opts->seed + 1000 * k, false);
		mb = fault_bulk_run(l, urgent, opts->seed + 1000 * k + 500, false);
		i50[k] = mi.p50;
		i99[k] = mi.p99;
		b50[k] = mb.p50;
		b99[k] = mb.p99;
		iq[k] = mi.runq_us;
		bq[k] = mb.runq_us;
		ratio[k] = mb.p99 / mi.p99;
		isec += mi.seconds;
		bsec += mb.seconds;
		isamp += mi.samples;
		bsamp += mb.samples;
		races += mb.races;
		blocked += mb.blocked_us;
	}
	m = pairs_row(&mi, i50, i99, iq, isec, isamp);
	l->idle_p50 = m.p50;
	l->idle_p99 = m.p99;
	if (show_idle)
		emit(&m);
	m = pairs_row(&mb, b50, b99, bq, bsec, bsamp);
	m.races = races;
	m.blocked_us = blocked;
	m.extra = median(ratio, opts->pairs);
	spread(ratio, opts->pairs, &m.lo, &m.hi);
	m.idle_p50 = l->idle_p50;
	m.idle_p99 = l->idle_p99;
	emit(&m);
	return m;
}

/* The workload of test 3: one thread reading every page once, in random order. */
struct nb_workload {
	const struct mig *g;
	const uint32_t *order;
	_Atomic bool stop;
	volatile uint64_t sum;
};

static void *workload_main(void *arg)
{
	struct nb_workload *w = arg;
	uint64_t i, sum = 0;

	for (i = 0; i < w->g->total && !atomic_load_explicit(&w->stop, memory_order_relaxed); i++)
		sum += *(const volatile uint64_t *)page_addr(w->g, w->order[i]);
	w->sum = sum;
	return NULL;
}

/* 3. Time to full residency with a workload touching pages while the stream runs, against
 * size / raw TCP throughput, each run paired with a raw TCP run of the same size just before. */
static struct meas test_residency(const struct link *l, bool urgent)
{
	double secs[NB_RUNS_MAX], raw[NB_RUNS_MAX], ratio[NB_RUNS_MAX], mibs[NB_RUNS_MAX], rs;
	struct meas m = meas_new("residency", l, urgent);
	struct nb_workload w;
	pthread_t th;
	struct mig g;
	uint64_t t0;
	unsigned r;
	int ret;

	for (r = 0; r < opts->runs; r++) {
		raw[r] = raw_run(l, raw_bytes(), &rs);
		mig_open(&g, l, urgent, opts->bulk, PAGEIN_AROUND_AUTO);
		memset(&w, 0, sizeof(w));
		w.g = &g;
		w.order = page_order(g.total, opts->seed + 100 + r);
		t0 = now_ns();
		mig_stream(&g);
		ret = pthread_create(&th, NULL, workload_main, &w);
		if (ret)
			die("pthread_create: %s", strerror(ret));
		mig_wait(&g);
		secs[r] = (double)(now_ns() - t0) / 1e9;
		atomic_store(&w.stop, true);
		pthread_join(th, NULL);
		mig_close(&g, l, "residency");
		free((void *)w.order);
		mibs[r] = (double)image_size / (1 << 20) / secs[r];
		/* time / (size / raw) */
		ratio[r] = raw[r] / mibs[r];
	}
	m.seconds = median(secs, opts->runs);
	m.mibs = median(mibs, opts->runs);
	m.raw = median(raw, opts->runs);
	m.extra = median(ratio, opts->runs);
	spread(ratio, opts->runs, &m.lo, &m.hi);
	m.ratio = 1.0 / m.extra;
	m.samples = opts->runs;
	emit(&m);
	return m;
}

/* 4. Bytes on the wire, `pagein demo`-shaped: the demo's image (every 16th page zero), two
 * threads each reading its half of memory in order while the stream runs, fault-around auto.
 * Everything the destination received (headers included, until the stream's END, so pages
 * still in flight when the last page went in count too) over the image's non-zero bytes. */
struct seq_worker {
	const struct mig *g;
	uint64_t first, n;
	volatile uint64_t sum;
};

static void *seq_main(void *arg)
{
	struct seq_worker *w = arg;
	uint64_t i, sum = 0;

	for (i = 0; i < w->n; i++)
		sum += *(const volatile uint64_t *)page_addr(w->g, w->first + i);
	w->sum = sum;
	return NULL;
}

static struct meas test_bytes(const struct link *l, uint64_t nonzero)
{
	double ratio[NB_RUNS_MAX], secs[NB_RUNS_MAX], sorted[NB_RUNS_MAX];
	uint64_t dup[NB_RUNS_MAX], bulk[NB_RUNS_MAX], t0;
	struct meas m = meas_new("bytes", l, 1);
	struct seq_worker w[2];
	struct pagein_net_stats ns;
	pthread_t th[2];
	struct mig g;
	unsigned r, i;
	int ret;

	for (r = 0; r < opts->runs; r++) {
		mig_open(&g, l, true, opts->bulk, PAGEIN_AROUND_AUTO);
		t0 = now_ns();
		mig_stream(&g);
		for (i = 0; i < 2; i++) {
			w[i] = (struct seq_worker){ .g = &g, .first = g.total / 2 * i,
						    .n = i ? g.total - g.total / 2 : g.total / 2 };
			ret = pthread_create(&th[i], NULL, seq_main, &w[i]);
			if (ret)
				die("pthread_create: %s", strerror(ret));
		}
		for (i = 0; i < 2; i++)
			pthread_join(th[i], NULL);
		mig_wait(&g);
		secs[r] = (double)(now_ns() - t0) / 1e9;
		/* the stream's END comes after every bulk frame: what was in flight has arrived */
		ret = pagein_net_stream_wait(g.src, NB_WAIT_MS);
		if (ret < 0)
			die("%s/bytes: the stream did not end: %s", l->name, strerror(-ret));
		pagein_net_stats_get(g.src, &ns);
		ratio[r] = (double)ns.bytes_received / (double)nonzero;
		dup[r] = ns.pages_bulk - ns.pages_installed;
		bulk[r] = ns.pages_bulk;
		mig_close(&g, l, "bytes");
	}
	memcpy(sorted, ratio, sizeof(sorted));
	m.bytes_ratio = median(sorted, opts->runs);
	for (r = 0; r < opts->runs && ratio[r] != m.bytes_ratio; r++)
		;
	m.dup_pages = dup[r];
	m.bulk_pages = bulk[r];
	m.seconds = median(secs, opts->runs);
	m.samples = opts->runs;
	emit(&m);
	return m;
}

/* ---------------------------------------------------------------------------------------------
 * Options and main
 */

static void usage(FILE *f)
{
	fprintf(f,
"usage: pagein bench --net [options]\n"
"  post-copy migration over TCP from an in-process page server, against the raw TCP baseline\n"
"  of the same path: bulk throughput, fault latency idle and under bulk, time to residency;\n"
"  then again over a link with 100 us added each way (netem, else a user-space relay),\n"
"  urgent channel on and off. On loopback also: bytes received against the image's non-zero\n"
"  bytes in a demo-shaped migration, and the HANDLER front-end over plain TCP and over TLS.\n"
"  --size SIZE     memory migrated (default 256M)\n"
"  -f self|handler fault front-end (default self)\n"
"  --json          one JSON object per measurement on stdout (the table goes to stderr)\n"
"  --no-delay      loopback only: skip the delayed link\n"
"  --no-tls        skip the TLS rows (handler front-end, plain TCP vs TLS with a PSK)\n"
"  --bulk N        bulk connections per migration (default 1)\n"
"  --runs N        runs of each throughput test and idle/bulk fault-latency pairs, the median\n"
"                  kept and the spread shown (default 7 and 5; 1..31)\n"
"  --seed N        image pattern and touch order\n"
"  -v, --verbose   the library's informational messages too\n");
}

static void parse_opts(int argc, char **argv, struct net_opts *o)
{
	enum { OPT_NET = 256, OPT_SIZE, OPT_JSON, OPT_NO_DELAY, OPT_SEED, OPT_BULK, OPT_NO_TLS,
	       OPT_RUNS };
	static const struct option lopts[] = {
		{ "net", no_argument, NULL, OPT_NET },
		{ "size", required_argument, NULL, OPT_SIZE },
		{ "json", no_argument, NULL, OPT_JSON },
		{ "no-delay", no_argument, NULL, OPT_NO_DELAY },
		{ "no-tls", no_argument, NULL, OPT_NO_TLS },
		{ "seed", required_argument, NULL, OPT_SEED },
		{ "bulk", required_argument, NULL, OPT_BULK },
		{ "runs", required_argument, NULL, OPT_RUNS },
		{ "verbose", no_argument, NULL, 'v' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	char *end;
	int ch;

	memset(o, 0, sizeof(*o));
	o->size = 256ull << 20;
	o->frontend = PAGEIN_FRONTEND_SELF;
	o->seed = 0x5eed;
	o->bulk = 1;
	o->runs = NB_RUNS;
	o->pairs = NB_P99_PAIRS;
	optind = 1;
	while ((ch = getopt_long(argc, argv, "f:vh", lopts, NULL)) != -1) {
		switch (ch) {
		case OPT_NET: break;
		case OPT_SIZE: o->size = parse_size(optarg); break;
		case OPT_JSON: o->json = true; break;
		case OPT_NO_DELAY: o->no_delay = true; break;
		case OPT_NO_TLS: o->no_tls = true; break;
		case OPT_SEED:
			o->seed = strtoull(optarg, &end, 0);
			if (end == optarg || *end || !o->seed)
				die_code(EXIT_USAGE, "bad --seed '%s': want a positive number", optarg);
			break;
		case OPT_BULK:
			o->bulk = bench_uint(optarg, "--bulk", 1, 16);
			break;
		case OPT_RUNS:
			o->runs = o->pairs = bench_uint(optarg, "--runs", 1, NB_RUNS_MAX);
			break;
		case 'f': o->frontend = bench_frontend(optarg); break;
		case 'v': tool_verbose = true; break;
		case 'h': usage(stdout); exit(0);
		default: usage(stderr); exit(2);
		}
	}
	if (optind < argc)
		die_code(EXIT_USAGE, "unexpected argument '%s' (see pagein bench --net --help)", argv[optind]);
	if (o->size < (4ull << 20) || o->size > (16ull << 30))
		die_code(EXIT_USAGE, "--size %" PRIu64 ": want 4M..16G", o->size);
}

/* SIGALRM (the run took too long), SIGTERM, SIGINT: remove the namespaces, then go. */
static void watchdog(int sig)
{
	static const char msg[] = "pagein bench --net: did not finish in time (hung?)\n";
	static const char stop[] = "pagein bench --net: stopped by a signal\n";
	ssize_t r;

	r = sig == SIGALRM ? write(2, msg, sizeof(msg) - 1) : write(2, stop, sizeof(stop) - 1);
	(void)r;
	ns_teardown();
	_exit(1);
}

/* The first three fields of /proc/loadavg (other tenants' load skews every figure). */
static const char *loadavg(void)
{
	static char buf[64] = "?";
	FILE *f = fopen("/proc/loadavg", "r");
	double a, b, c;

	if (f && fscanf(f, "%lf %lf %lf", &a, &b, &c) == 3)
		snprintf(buf, sizeof(buf), "%.2f %.2f %.2f", a, b, c);
	if (f)
		fclose(f);
	return buf;
}

static void header(void)
{
	fprintf(tab, "%-12s %-11s %-4s %9s %6s %8s %8s %8s %7s\n", "link", "test", "urg", "MiB/s",
		"x raw", "p50 us", "p99 us", "seconds", "samples");
	fflush(tab);
}

/* Everything over one link: baseline, then tests 1, 2, 3 for each urgent setting asked. */
struct link_result {
	struct meas bulk[2];       /* [urgent] test 1; test NULL: not run */
	struct meas fbulk[2];      /* [urgent] test 2 under bulk */
	struct meas res[2];        /* [urgent] test 3 */
};

static void run_link(struct link *l, bool both, struct link_result *res)
{
	int u;

	memset(res, 0, sizeof(*res));
	baseline(l);
	for (u = 1; u >= (both ? 0 : 1); u--) {
		res->bulk[u] = test_bulk(l, u);
		res->fbulk[u] = test_fault_pairs(l, u, u == 1);
		res->res[u] = test_residency(l, u);
	}
}

static void headlines(const struct link *l, const struct link_result *r)
{
	const struct meas *b = &r->bulk[1], *f = &r->fbulk[1], *t = &r->res[1];

	fprintf(tab, "headline: [%s] (1) bulk migration %.0f MiB/s vs raw TCP %.0f MiB/s (%u runs "
		"paired, median ratio; range %.2f-%.2f) = %.2fx (target >= 0.80)\n", l->name,
		b->mibs, b->raw, opts->runs, b->lo, b->hi, b->ratio);
	fprintf(tab, "headline: [%s] (2) fault p99 under bulk / idle p99, median of %u pairs = "
		"%.2fx, range %.2f-%.2f (target <= 2.00, urgent channel on; medians p99 %.1f vs "
		"%.1f us, p50 %.1f vs %.1f us). The path itself: raw RTT p99 %.1f us idle, %.1f us "
		"beside a raw TCP stream = %.2fx\n", l->name, opts->pairs, f->extra, f->lo, f->hi,
		f->p99, f->idle_p99, f->p50, f->idle_p50, l->rtt_p99, l->rtt_bulk_p99,
		l->rtt_bulk_p99 / l->rtt_p99);
	fprintf(tab, "headline: [%s] (3) full residency with a workload %.3f s / (size / raw TCP "
		"= %.0f MiB / %.0f MiB/s = %.3f s) = %.2fx (target <= 1.25)\n", l->name, t->seconds,
		(double)image_size / (1 << 20), t->raw, (double)image_size / (1 << 20) / t->raw,
		t->extra);
	if (r->fbulk[0].test)
		fprintf(tab, "headline: [%s] urgent channel on vs off: fault under bulk p50 %.1f vs "
			"%.1f us, p99 %.1f vs %.1f us (%.2fx vs %.2fx idle p99); bulk %.2fx vs %.2fx "
			"raw; residency %.2fx vs %.2fx ideal\n", l->name, f->p50, r->fbulk[0].p50,
			f->p99, r->fbulk[0].p99, f->extra, r->fbulk[0].extra, b->ratio,
			r->bulk[0].ratio, t->extra, r->res[0].extra);
}

/* An in-process page server of img (two regions), LZ4 off, TLS with psk_file when not NULL.
 * Returns NULL with why filled in when it cannot start (TLS may be missing from the build). */
static struct pagein_server *server_up(const uint8_t *img, const struct pagein_region_desc *regs,
				       const char *psk_file, char *why, size_t whylen)
{
	struct pagein_server_config sc;
	struct pagein_server *srv;
	unsigned i;
	int ret;

	pagein_server_config_init(&sc);
	sc.compress = false;
	sc.psk_file = psk_file;
	sc.log = tool_log;
	ret = pagein_server_new(&sc, &srv);
	if (ret < 0) {
		snprintf(why, whylen, "cannot create the page server: %s", strerror(-ret));
		return NULL;
	}
	for (i = 0; i < 2; i++) {
		ret = pagein_server_add_memory(srv, regs[i].gpa, regs[i].size,
					       img + (i ? regs[0].size : 0));
		if (ret < 0)
			die("page server region %u: %s", i, strerror(-ret));
	}
	ret = pagein_server_start(srv);
	if (ret < 0)
		die("cannot start the page server: %s", strerror(-ret));
	return srv;
}

/* A fresh PSK file (pagein:<64 hex digits>) for the TLS rows; its path in path. 0 or -1. */
static int psk_make(char *path, size_t len)
{
	uint8_t key[32];
	char line[80];
	unsigned i;
	int fd, n;

	snprintf(path, len, "/tmp/pagein-bench-psk.XXXXXX");
	fd = mkstemp(path);
	if (fd < 0)
		return -1;
	if (getentropy(key, sizeof(key)) < 0) {
		close(fd);
		unlink(path);
		return -1;
	}
	n = snprintf(line, sizeof(line), "pagein:");
	for (i = 0; i < sizeof(key); i++)
		n += snprintf(line + n, sizeof(line) - (size_t)n, "%02x", key[i]);
	line[n++] = '\n';
	if (write(fd, line, (size_t)n) != n) {
		close(fd);
		unlink(path);
		return -1;
	}
	close(fd);
	return 0;
}

/* The TLS rows: the same migrations with the HANDLER front-end over plain TCP and over TLS
 * (user-space TLS here: this kernel has no CONFIG_TLS), each against the loopback's raw TCP. */
struct tls_result {
	struct meas bulk[2], idle[2], fbulk[2]; /* [0] plain, [1] TLS */
	bool ran;
	char why[256];                           /* when not run */
	char headline[1024];                     /* when run */
};

static void run_tls(const struct link *loop, struct tls_result *tr)
{
	struct link l[2];
	struct pagein_server *srv;
	char psk[64];
	int k;

	memset(tr, 0, sizeof(*tr));
	if (psk_make(psk, sizeof(psk)) < 0) {
		snprintf(tr->why, sizeof(tr->why), "cannot write a PSK file: %s", strerror(errno));
		return;
	}
	srv = server_up(net_image, net_image_regs, psk, tr->why, sizeof(tr->why));
	if (!srv) {
		unlink(psk);
		return;
	}
	for (k = 0; k < 2; k++) {
		l[k] = *loop;
		l[k].name = k ? "loopback-tls" : "loopback-tcp";
		l[k].handler = true;
		l[k].psk_file = k ? psk : NULL;
		if (k)
			snprintf(l[k].srv_addr, sizeof(l[k].srv_addr), "127.0.0.1:%d",
				 pagein_server_port(srv));
	}
	/* interleaved, so that drift in the machine's load hits both alike */
	for (k = 0; k < 2; k++) {
		test_fault_idle(&l[k]);
		tr->idle[k] = meas_new("fault-idle", &l[k], 1);
		tr->idle[k].p50 = l[k].idle_p50;
		tr->idle[k].p99 = l[k].idle_p99;
	}
	for (k = 0; k < 2; k++)
		tr->bulk[k] = test_bulk(&l[k], true);
	for (k = 0; k < 2; k++)
		tr->fbulk[k] = test_fault_bulk(&l[k], true);
	tr->ran = true;
	snprintf(tr->headline, sizeof(tr->headline),
		 "headline: [loopback, handler] TLS (PSK, user-space) vs plain TCP vs raw TCP: bulk "
		 "%.0f vs %.0f vs %.0f MiB/s (%.2fx vs %.2fx raw); fault idle p50/p99 %.1f/%.1f vs "
		 "%.1f/%.1f us (raw TCP round trip %.1f/%.1f us); fault under bulk p50/p99 %.1f/%.1f "
		 "vs %.1f/%.1f us\n", tr->bulk[1].mibs, tr->bulk[0].mibs, tr->bulk[1].raw,
		 tr->bulk[1].ratio, tr->bulk[0].ratio, tr->idle[1].p50, tr->idle[1].p99,
		 tr->idle[0].p50, tr->idle[0].p99, loop->rtt_p50, loop->rtt_p99, tr->fbulk[1].p50,
		 tr->fbulk[1].p99, tr->fbulk[0].p50, tr->fbulk[0].p99);
	pagein_server_stop(srv);
	pagein_server_free(srv);
	unlink(psk);
}

int bench_net(int argc, char **argv)
{
	struct link loop = { .name = "loopback" }, slow = { 0 };
	struct link_result rloop, rslow;
	struct pagein_server *srv, *dsrv;
	struct tls_result tls = { .why = "skipped (--no-tls)" };
	struct meas bytes, bulk2;
	struct net_opts o;
	struct rawsrv rs;
	struct relay rr, rp;
	char why[768] = "";
	bool netem = false;
	int ctl = -1, orig_ns = -1, dst_ns;
	uint64_t t_start = now_ns();

	parse_opts(argc, argv, &o);
	opts = &o;
	tab = o.json ? stderr : stdout;
	signal(SIGALRM, watchdog);
	signal(SIGTERM, watchdog);
	signal(SIGINT, watchdog);
	alarm(NB_WATCHDOG_S);
	signal(SIGPIPE, SIG_IGN);

	image_size = o.size;
	net_image = (uint8_t *)make_image(&image_size, o.seed, 0, net_image_regs);
	if (!net_image)
		die("out of memory for a %" PRIu64 "-byte image", o.size);

	/* the netem attempt comes first: its server child is forked before any thread exists */
	if (!o.no_delay) {
		atexit(ns_teardown_atexit);
		if (netem_setup(why, sizeof(why)) == 0) {
			slow.name = "netem-100us";
			ctl = ns_child_start(&slow);
			if (ctl < 0) {
				snprintf(why, sizeof(why), "the page server could not start inside "
					 "network namespace %s", ns_srv);
				ns_teardown();
			} else {
				netem = true;
			}
		}
	}

	srv = server_up(net_image, net_image_regs, NULL, why, sizeof(why));
	if (!srv)
		die("%s", why);
	rawsrv_start(&rs, "127.0.0.1");
	snprintf(loop.raw_addr, sizeof(loop.raw_addr), "127.0.0.1:%d", rs.port);
	snprintf(loop.srv_addr, sizeof(loop.srv_addr), "127.0.0.1:%d", pagein_server_port(srv));

	fprintf(tab, "pagein bench --net: %.0f MiB in 2 regions, front-end %s, anon, LZ4 off "
		"(incompressible net_image), %u bulk connection%s, %ld CPUs, load average %s; page "
		"server in this process; throughput figures are medians of %u runs, each paired "
		"with a raw TCP run just before it; fault latencies are medians of %u runs, and "
		"p99/idle the median of %u idle/bulk pairs' ratios; (a-b): the spread of a ratio\n",
		(double)image_size / (1 << 20), pagein_frontend_name(o.frontend), o.bulk,
		o.bulk == 1 ? "" : "s", sysconf(_SC_NPROCESSORS_ONLN), loadavg(), o.runs,
		o.pairs, o.pairs);
	if (o.no_delay)
		fprintf(tab, "delayed link: skipped (--no-delay)\n");
	else if (netem)
		fprintf(tab, "delayed link: netem, 100 us each way on a veth pair between network "
			"namespaces %s (server) and %s (destination)\n", ns_srv, ns_dst);
	else
		fprintf(tab, "delayed link: netem is not available (%s); using the user-space delay "
			"relay instead: every chunk held 100 us in each direction (its own added "
			"RTT is the rtt row's added-us)\n", why);
	header();
	run_link(&loop, false, &rloop);
	/* the same bulk test with one more bulk connection than asked: on a machine whose CPUs
	 * the page server, the destination and the raw baseline all share, a second receiver
	 * overlaps one stream's installs with the other's reads (what it costs the fault tail is
	 * in the README) */
	bulk2 = opts->bulk < 16 ? test_bulk_n(&loop, true, opts->bulk + 1, "bulk-more")
				: meas_new("bulk-more", &loop, 1);
	/* issue 11's bytes target: a demo-shaped migration of the demo's image */
	{
		struct pagein_region_desc dregs[2];
		uint64_t dsize = image_size, nonzero = 0, p;
		uint8_t *dimg = (uint8_t *)make_image(&dsize, 42, 16, dregs);
		struct link dl = loop;

		if (!dimg)
			die("out of memory for the demo image");
		for (p = 0; p < dsize / NB_PAGE; p++) {
			const uint64_t *w = (const uint64_t *)(dimg + p * NB_PAGE);
			unsigned k;

			for (k = 0; k < NB_PAGE / 8 && !w[k]; k++)
				;
			nonzero += k < NB_PAGE / 8 ? NB_PAGE : 0;
		}
		dsrv = server_up(dimg, dregs, NULL, why, sizeof(why));
		if (!dsrv)
			die("%s", why);
		snprintf(dl.srv_addr, sizeof(dl.srv_addr), "127.0.0.1:%d", pagein_server_port(dsrv));
		bytes = test_bytes(&dl, nonzero);
		bytes.l = &loop;
		pagein_server_stop(dsrv);
		pagein_server_free(dsrv);
		free(dimg);
	}
	if (!o.no_tls)
		run_tls(&loop, &tls);

	if (!o.no_delay) {
		if (netem) {
			char path[64];

			orig_ns = open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC);
			snprintf(path, sizeof(path), "/run/netns/%s", ns_dst);
			dst_ns = open(path, O_RDONLY | O_CLOEXEC);
			if (orig_ns < 0 || dst_ns < 0 || setns(dst_ns, CLONE_NEWNET))
				die("cannot enter network namespace %s: %s", ns_dst, strerror(errno));
			close(dst_ns);
			run_link(&slow, true, &rslow);
			if (setns(orig_ns, CLONE_NEWNET))
				die("cannot return to the original network namespace: %s",
				    strerror(errno));
			close(orig_ns);
			close(ctl);
			ns_teardown();
		} else {
			slow.name = "relay-100us";
			relay_start(&rr, rs.port, NB_DELAY_NS);
			relay_start(&rp, pagein_server_port(srv), NB_DELAY_NS);
			snprintf(slow.raw_addr, sizeof(slow.raw_addr), "127.0.0.1:%d", rr.port);
			snprintf(slow.srv_addr, sizeof(slow.srv_addr), "127.0.0.1:%d", rp.port);
			run_link(&slow, true, &rslow);
			relay_stop(&rp);
			relay_stop(&rr);
		}
	}
	rawsrv_stop(&rs);
	pagein_server_stop(srv);
	pagein_server_free(srv);
	alarm(0);

	fprintf(tab, "\n");
	headlines(&loop, &rloop);
	fprintf(tab, "headline: [loopback] (4) bytes received / non-zero bytes of the image, "
		"pagein demo-shaped (2 threads reading their halves in order, fault-around auto, "
		"LZ4 off) = %.4fx (target <= 1.02); %" PRIu64 " of %" PRIu64 " streamed pages "
		"crossed twice\n", bytes.bytes_ratio, bytes.dup_pages, bytes.bulk_pages);
	if (bulk2.ratio >= 0)
		fprintf(tab, "headline: [loopback] (1b) bulk migration with %u bulk connections %.0f "
			"MiB/s vs raw TCP %.0f MiB/s (%u runs paired, median ratio; range "
			"%.2f-%.2f) = %.2fx\n", opts->bulk + 1, bulk2.mibs, bulk2.raw, opts->runs,
			bulk2.lo, bulk2.hi, bulk2.ratio);
	if (tls.ran)
		fputs(tls.headline, tab);
	else
		fprintf(tab, "headline: [loopback, handler] TLS rows not run: %s\n", tls.why);
	if (!o.no_delay)
		headlines(&slow, &rslow);
	fprintf(tab, "every migration verified against the server's digests; total %.1f s\n",
		(double)(now_ns() - t_start) / 1e9);
	fflush(tab);
	free(net_image);
	return 0;
}
