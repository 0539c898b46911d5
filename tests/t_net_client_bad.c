// SPDX-License-Identifier: MIT
/*
 * t_net_client_bad.c - the network source against a lying server: a fake page server (raw
 * sockets in a thread) sends broken handshakes and broken replies. Each gives a clear, logged
 * error in bounded time (pagein_source_net_new -EPROTO, or a failing fetch), no page is ever
 * installed with wrong bytes, and well-formed wrong bytes are caught by the digest check.
 */
#include <lz4.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "helpers.h"
#include "pagein-net.h"
#include "net/wire.h"

#define SEED 9
#define RSIZE (256ull * 4096) /* the fake server's one region: [0, 1 MiB) */

/* What the fake server does wrong. */
enum scen {
	/* handshake */
	H_MAGIC, H_VERSION, H_VERSION1, H_PAGE_SIZE, H_NREG_0, H_NREG_MAX, H_OVERLAP, H_UNALIGNED, H_TRUNC,
	H_LEN, H_NOT_WELCOME, H_FEATURES,
	/* replies to REQ */
	R_GOOD, R_BIG_LEN, R_TRUNC_CLOSE, R_TRUNC_HANG, R_OUTSIDE, R_PAST_END, R_UNKNOWN_ID,
	R_DUPLICATE, R_WRONG_GPA, R_WRONG_NPAGES, R_BAD_LZ4, R_LZ4_NOT_GRANTED, R_DESC_SUM,
	R_BAD_KIND, R_BULK_ON_URGENT, R_WRONG_BYTES,
	/* a reply that comes after its fetch gave up (dropped, nothing else lost) */
	R_LATE,
	/* on the bulk connection (the urgent one answers right) */
	B_PAST_END, B_REPLY_ON_BULK, B_BAD_LZ4,
};

static uint8_t img[RSIZE], wrong[RSIZE];
/* the fake grants heartbeats (when asked): the client then reads a reply's raw pages straight
 * into the waiting fetch's buffer, so every reply case runs on that path too */
static bool hb;
static int late_nth; /* R_LATE: replies sent so far */

/* Everything the library logged since the last reset (t_last_log keeps only the last line). */
static char logged[32768];
static pthread_mutex_t log_lock = PTHREAD_MUTEX_INITIALIZER;

static void cap_log(void *arg, int level, const char *msg)
{
	size_t n;

	pthread_mutex_lock(&log_lock);
	n = strlen(logged);
	snprintf(logged + n, sizeof(logged) - n, "%s\n", msg);
	pthread_mutex_unlock(&log_lock);
	t_log(arg, level, msg);
}

static void log_reset(void)
{
	pthread_mutex_lock(&log_lock);
	logged[0] = '\0';
	pthread_mutex_unlock(&log_lock);
}

static bool log_has(const char *what)
{
	bool yes;

	pthread_mutex_lock(&log_lock);
	yes = strstr(logged, what) != NULL;
	pthread_mutex_unlock(&log_lock);
	return yes;
}

struct fake {
	int lfd;
	int port;
	enum scen sc;
	pthread_t th, th2; /* th2: a second connection (bulk scenarios) */
};

static uint64_t ms_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static bool xsend(int fd, const void *p, size_t n)
{
	return send(fd, p, n, MSG_NOSIGNAL) == (ssize_t)n;
}

static bool xrecv(int fd, void *p, size_t n)
{
	size_t got = 0;
	ssize_t r;

	while (got < n) {
		r = recv(fd, (uint8_t *)p + got, n - got, 0);
		if (r <= 0)
			return false;
		got += (size_t)r;
	}
	return true;
}

static void send_hdr(int fd, uint32_t len, uint16_t type, uint64_t id)
{
	struct pn_hdr h = { .len = len, .type = type, .id = id };

	xsend(fd, &h, sizeof(h));
}

/* A PAGES frame of raw pages from src (image of [0, RSIZE)), or its first cut bytes only. */
static void send_pages_raw(int fd, uint64_t id, uint64_t gpa, uint32_t n, const uint8_t *src,
			   size_t cut)
{
	size_t len = sizeof(struct pn_pages) + 4ull * n + (size_t)n * 4096, off = 0;
	uint8_t *b = calloc(1, sizeof(struct pn_hdr) + len);
	struct pn_pages pg = { .gpa = gpa, .npages = n };
	struct pn_hdr h = { .len = (uint32_t)len, .type = PN_PAGES, .id = id };
	uint32_t i;

	T_ASSERT(b);
	memcpy(b, &h, sizeof(h));
	off = sizeof(h);
	memcpy(b + off, &pg, sizeof(pg));
	off += sizeof(pg) + 4ull * n; /* descriptors: all PN_PG_RAW (0) */
	for (i = 0; i < n; i++)
		memcpy(b + off + (size_t)i * 4096,
		       gpa + (i + 1) * 4096ull <= RSIZE ? src + gpa + (size_t)i * 4096 : src, 4096);
	xsend(fd, b, cut ? cut : sizeof(h) + len);
	free(b);
}

/* One page whose descriptor is d, followed by plen payload bytes. */
static void send_one(int fd, uint64_t id, uint64_t gpa, uint32_t d, const void *payload,
		     size_t plen)
{
	struct pn_pages pg = { .gpa = gpa, .npages = 1 };

	send_hdr(fd, (uint32_t)(sizeof(pg) + 4 + plen), PN_PAGES, id);
	xsend(fd, &pg, sizeof(pg));
	xsend(fd, &d, 4);
	if (plen)
		xsend(fd, payload, plen);
}

static void welcome(int fd, enum scen sc, uint32_t asked)
{
	struct pn_welcome w = { .version = PN_VERSION, .page_size = PN_PAGE, .session = 42,
				.features = asked & (PN_FEAT_LZ4 | (hb ? PN_FEAT_HEARTBEAT : 0)),
				.nregions = 1 };
	struct pn_region r[2] = { { 0, RSIZE, pagein_digest(img, RSIZE) },
				  { 4ull << 30, RSIZE, 1 } };
	uint32_t nsend = 1;

	memcpy(w.magic, PN_MAGIC, 8);
	switch (sc) {
	case H_MAGIC:
		memcpy(w.magic, "PAGEOUT!", 8);
		break;
	case H_VERSION:
		w.version = PN_VERSION + 1;
		break;
	case H_VERSION1: /* a version-1 server: the same layout, version 1 */
		w.version = 1;
		break;
	case H_PAGE_SIZE:
		w.page_size = 8192;
		break;
	case H_NREG_0:
		w.nregions = 0;
		nsend = 0;
		break;
	case H_NREG_MAX:
		w.nregions = PN_MAX_REGIONS + 1;
		nsend = 0;
		break;
	case H_OVERLAP:
		r[1].gpa = RSIZE / 2;
		w.nregions = nsend = 2;
		break;
	case H_UNALIGNED:
		r[0].gpa = 512;
		break;
	case H_LEN:
		w.nregions = 2;
		break;
	case H_FEATURES:
		w.features = 0x80;
		break;
	case R_LZ4_NOT_GRANTED:
		w.features = 0;
		break;
	default:
		break;
	}
	if (sc == H_NOT_WELCOME) {
		send_hdr(fd, 0, PN_END, 0);
		return;
	}
	if (sc == H_TRUNC) {
		send_hdr(fd, sizeof(w) + sizeof(r[0]), PN_WELCOME, 0);
		xsend(fd, &w, 10);
		return;
	}
	send_hdr(fd, (uint32_t)(sizeof(w) + nsend * sizeof(r[0])), PN_WELCOME, 0);
	xsend(fd, &w, sizeof(w));
	xsend(fd, r, nsend * sizeof(r[0]));
}

/* Answer one REQ the way the scenario says. Returns false to close the connection. */
static bool reply(int fd, enum scen sc, uint64_t id, const struct pn_req *q)
{
	uint8_t junk[100], lz[4096];
	int n;

	switch (sc) {
	case R_GOOD:
	case B_PAST_END:
	case B_REPLY_ON_BULK:
	case B_BAD_LZ4:
		send_pages_raw(fd, id, q->gpa, q->npages, img, 0);
		return true;
	case R_BIG_LEN:
		send_hdr(fd, (uint32_t)PN_MAX_BODY + 1, PN_PAGES, id);
		return true;
	case R_TRUNC_CLOSE:
		send_pages_raw(fd, id, q->gpa, q->npages, img, 100);
		return false;
	case R_TRUNC_HANG:
		send_pages_raw(fd, id, q->gpa, q->npages, img, 100);
		return true;
	case R_OUTSIDE:
		send_pages_raw(fd, id, 8ull << 30, q->npages, img, 0);
		return true;
	case R_PAST_END:
		send_pages_raw(fd, id, RSIZE - 4096, 2, img, 0);
		return true;
	case R_UNKNOWN_ID:
		send_pages_raw(fd, id ^ 0x5a5a0000ull, q->gpa, q->npages, img, 0);
		return true;
	case R_DUPLICATE:
		send_pages_raw(fd, id, q->gpa, q->npages, img, 0);
		send_pages_raw(fd, id, q->gpa, q->npages, img, 0);
		return true;
	case R_WRONG_GPA:
		send_pages_raw(fd, id, q->gpa + 4096, q->npages, img, 0);
		return true;
	case R_WRONG_NPAGES:
		send_pages_raw(fd, id, q->gpa, q->npages + 1, img, 0);
		return true;
	case R_BAD_LZ4:
		memset(junk, 0xff, sizeof(junk));
		send_one(fd, id, q->gpa, PN_PG_LZ4 | (uint32_t)sizeof(junk) << 8, junk, sizeof(junk));
		return true;
	case R_LZ4_NOT_GRANTED:
		/* valid LZ4 (of a compressible page): only the feature was never granted */
		{
			static char page[4096];

			n = LZ4_compress_default(page, (char *)lz, 4096, sizeof(lz));
		}
		T_ASSERT(n > 0 && n < 4096);
		send_one(fd, id, q->gpa, PN_PG_LZ4 | (uint32_t)n << 8, lz, (size_t)n);
		return true;
	case R_DESC_SUM:
		send_one(fd, id, q->gpa, PN_PG_RAW, img + q->gpa, 4000);
		return true;
	case R_BAD_KIND:
		send_one(fd, id, q->gpa, 7, img + q->gpa, 4096);
		return true;
	case R_BULK_ON_URGENT:
		send_pages_raw(fd, 0, q->gpa, q->npages, img, 0);
		return true;
	case R_WRONG_BYTES:
		send_pages_raw(fd, id, q->gpa, q->npages, wrong, 0);
		return true;
	case R_LATE: {
		/* the first answer only after the client's 1 s time-out */
		if (late_nth++ == 0)
			usleep(1300000);
		send_pages_raw(fd, id, q->gpa, q->npages, img, 0);
		return true;
	}
	default:
		return false;
	}
}

static void *fake_main(void *arg)
{
	struct fake *f = arg;
	struct pollfd pfd = { .fd = f->lfd, .events = POLLIN };
	struct timeval tv = { 5, 0 };
	struct {
		struct pn_hdr h;
		struct pn_hello b;
	} __attribute__((packed)) hello;
	struct pn_hdr h;
	struct pn_req q;
	int fd, one = 1;

	if (poll(&pfd, 1, 5000) != 1)
		return NULL;
	fd = accept(f->lfd, NULL, NULL);
	if (fd < 0)
		return NULL;
	/* bounded: a client that goes quiet ends the fake after 5 s */
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	if (!xrecv(fd, &hello, sizeof(hello)) || hello.h.type != PN_HELLO)
		goto out;
	welcome(fd, f->sc, hello.b.features);
	if (f->sc < R_GOOD)
		goto drain;
	if (hello.b.role == PN_ROLE_BULK) {
		uint8_t junk[64];

		memset(junk, 0xee, sizeof(junk));
		if (f->sc == B_PAST_END)
			send_pages_raw(fd, 0, RSIZE - 4096, 2, img, 0);
		else if (f->sc == B_REPLY_ON_BULK)
			send_pages_raw(fd, 7 << 16 | 1, 0, 1, img, 0);
		else
			send_one(fd, 0, 0, PN_PG_LZ4 | (uint32_t)sizeof(junk) << 8, junk,
				 sizeof(junk));
		goto drain;
	}
	while (xrecv(fd, &h, sizeof(h))) {
		if (hb && h.type == PN_HEARTBEAT && !h.len)
			continue;
		if (h.type != PN_REQ || h.len != sizeof(q) || !xrecv(fd, &q, sizeof(q)))
			break;
		if (!reply(fd, f->sc, h.id, &q))
			goto out;
	}
drain:
	shutdown(fd, SHUT_WR);
	while (xrecv(fd, &h, 1))
		;
out:
	close(fd);
	return NULL;
}

static void fake_start(struct fake *f, enum scen sc)
{
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t len = sizeof(sa);

	f->sc = sc;
	f->lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	T_ASSERT(f->lfd >= 0);
	T_ASSERT(bind(f->lfd, (struct sockaddr *)&sa, sizeof(sa)) == 0);
	T_ASSERT(listen(f->lfd, 4) == 0);
	T_ASSERT(getsockname(f->lfd, (struct sockaddr *)&sa, &len) == 0);
	f->port = ntohs(sa.sin_port);
	T_EQ(pthread_create(&f->th, NULL, fake_main, f), 0);
	if (sc >= B_PAST_END)
		T_EQ(pthread_create(&f->th2, NULL, fake_main, f), 0);
}

static void fake_stop(struct fake *f)
{
	pthread_join(f->th, NULL);
	if (f->sc >= B_PAST_END)
		pthread_join(f->th2, NULL);
	close(f->lfd);
}

static int net_new_bulk(struct fake *f, struct pagein_source **src, unsigned bulk)
{
	struct pagein_net_config nc;
	char addr[64];

	snprintf(addr, sizeof(addr), "127.0.0.1:%d", f->port);
	pagein_net_config_init(&nc);
	nc.addr = addr;
	nc.bulk = bulk;
	nc.connect_timeout_ms = 2000;
	nc.log = cap_log;
	return pagein_source_net_new(&nc, src);
}

static int net_new(struct fake *f, struct pagein_source **src)
{
	return net_new_bulk(f, src, 0);
}

/* The log mentions keyword: else FAIL, naming the case and quoting the log. */
static void want_logged(const char *name, const char *keyword)
{
	if (!log_has(keyword)) {
		fprintf(stderr, "FAIL %s: the log says '%s', want it to mention '%s'\n", name,
			logged, keyword);
		exit(1);
	}
}

static void handshake_ret(enum scen sc, const char *name, const char *keyword, int want)
{
	struct pagein_source *src = NULL;
	struct fake f;
	uint64_t t0 = ms_now();

	fake_start(&f, sc);
	log_reset();
	T_EQ(net_new(&f, &src), want);
	fake_stop(&f);
	want_logged(name, keyword);
	T_ASSERT(ms_now() - t0 < 3000);
	printf("  handshake %-20s %s: %s\n", name, want == -EPROTO ? "-EPROTO" : "-EPROTONOSUPPORT",
	       t_last_log);
}

static void handshake(enum scen sc, const char *name, const char *keyword)
{
	handshake_ret(sc, name, keyword, -EPROTO);
}

/* A space over the fake's region with a network source, accessors only. */
struct client {
	struct fake f;
	struct pagein_space *s;
	struct pagein_source *src;
	uint8_t *host;
};

static void client_make(struct client *c, enum scen sc)
{
	struct pagein_config cfg;

	fake_start(&c->f, sc);
	pagein_config_init(&cfg);
	cfg.frontend = PAGEIN_FRONTEND_HANDLER;
	cfg.fault_around = 1;
	cfg.timeout_ms = 1000;
	cfg.log = cap_log;
	T_EQ(pagein_space_new(&cfg, &c->s), 0);
	T_EQ(pagein_region_add(c->s, 0, RSIZE, PAGEIN_BACKING_ANON, (void **)&c->host), 0);
	T_EQ(net_new_bulk(&c->f, &c->src, sc >= B_PAST_END), 0);
	T_EQ(pagein_space_set_source(c->s, c->src), 0);
	T_EQ(pagein_space_start(c->s), 0);
	if (sc >= B_PAST_END)
		T_EQ(pagein_net_stream_start(c->src, c->s), 0);
}

static void client_free(struct client *c)
{
	pagein_space_free(c->s);
	pagein_source_free(c->src);
	fake_stop(&c->f);
}

#define PAGE_GPA (5 * 4096ull)

/* A broken frame is counted (one error) and logged (keyword) by the receiver, which may do so
 * just after the fetch it broke has failed: wait for both, 2 s at most, then require both. */
static void want_error(struct client *c, const char *name, const char *keyword)
{
	struct pagein_net_stats ns;

	for (int k = 0; k < 200; k++) {
		pagein_net_stats_get(c->src, &ns);
		if (ns.errors && log_has(keyword))
			break;
		usleep(10000);
	}
	T_EQ(ns.errors, 1);
	want_logged(name, keyword);
}

/* A broken reply: the read fails in bounded time, the page is not installed, the log says why. */
static void bad_reply(enum scen sc, const char *name, const char *keyword)
{
	uint8_t buf[4096];
	struct client c;
	uint64_t t0, took;
	int ret, ret2;

	log_reset();
	client_make(&c, sc);
	if (sc == R_DUPLICATE) {
		/* the first answer is right and is used; its duplicate closes the connection */
		T_EQ(pagein_read(c.s, PAGE_GPA, buf, 4096), 0);
		T_ASSERT(!memcmp(buf, img + PAGE_GPA, 4096));
		usleep(100000);
	}
	t0 = ms_now();
	ret = pagein_read(c.s, PAGE_GPA + 4096, buf, 4096);
	took = ms_now() - t0;
	T_ASSERT(ret < 0);
	T_ASSERT(took < 3000);
	/* never present with wrong bytes: it stays failed */
	ret2 = pagein_read(c.s, PAGE_GPA + 4096, buf, 4096);
	T_ASSERT(ret2 < 0);
	if (sc == R_TRUNC_HANG) {
		T_EQ(ret, -ETIMEDOUT);
	} else {
		/* a reply that fails to decode wakes its fetch before the receiver closes the
		 * connection: the count and the reason follow right behind */
		want_error(&c, name, keyword);
	}
	printf("  reply %-24s %s after %llu ms, page not installed%s%s\n", name, strerror(-ret),
	       (unsigned long long)took, *keyword ? "; logged: " : "", *keyword ? keyword : "");
	client_free(&c);
}

/* Well-formed wrong bytes are installed, but the digest check at the end catches them. */
static void wrong_bytes(void)
{
	struct pagein_region_desc rd;
	struct client c;

	client_make(&c, R_WRONG_BYTES);
	T_EQ(pagein_net_regions(c.src, &rd, 1), 1);
	T_EQ(pagein_resolve(c.s, 0, RSIZE, NULL), 0);
	T_ASSERT(pagein_digest(c.host, RSIZE) != rd.digest);
	T_EQ(rd.digest, pagein_digest(img, RSIZE));
	printf("  reply %-24s installed, and the digest check reports the mismatch\n",
	       "well-formed wrong bytes");
	client_free(&c);
}

/* A broken bulk frame closes that bulk connection only: nothing installed, faults go on. */
static void bad_bulk(enum scen sc, const char *name, const char *keyword)
{
	uint64_t present, total;
	uint8_t buf[4096];
	struct client c;

	log_reset();
	client_make(&c, sc);
	want_error(&c, name, keyword);
	pagein_residency(c.s, &present, &total);
	T_EQ(present, 0);
	T_EQ(pagein_read(c.s, PAGE_GPA, buf, 4096), 0);
	T_ASSERT(!memcmp(buf, img + PAGE_GPA, 4096));
	printf("  bulk  %-24s that connection closed, nothing installed, faults still served; "
	       "logged: %s\n", name, keyword);
	client_free(&c);
}

/* A fetch that timed out abandons its slot; the late reply is read and dropped, not written
 * where the fetch's buffer was, and the connection goes on serving. */
static void late_reply(void)
{
	struct pagein_net_stats ns;
	uint8_t buf[4096];
	struct client c;
	uint64_t t0 = ms_now();

	log_reset();
	late_nth = 0;
	client_make(&c, R_LATE);
	T_EQ(pagein_read(c.s, PAGE_GPA, buf, 4096), -ETIMEDOUT);
	T_ASSERT(ms_now() - t0 < 3000);
	usleep(500000); /* the late reply arrives meanwhile */
	T_EQ(pagein_read(c.s, PAGE_GPA + 4096, buf, 4096), 0);
	T_ASSERT(!memcmp(buf, img + PAGE_GPA + 4096, 4096));
	T_EQ(pagein_read(c.s, PAGE_GPA, buf, 4096), -EIO);
	pagein_net_stats_get(c.src, &ns);
	T_EQ(ns.errors, 0);
	T_EQ(ns.replies, 2);
	printf("  reply %-24s -ETIMEDOUT, dropped when it came, connection still serving\n",
	       "late (after time-out)");
	client_free(&c);
}

int main(void)
{
	t_require_uffd();
	alarm(100);
	setenv("T_QUIET", "1", 0);
	t_fill(img, 0, RSIZE, SEED, 0);
	t_fill(wrong, 0, RSIZE, SEED + 1, 0);

	handshake(H_MAGIC, "wrong magic", "magic");
	handshake(H_VERSION, "wrong version", "version");
	/* a version-1 server is told apart: which end to upgrade, and -EPROTONOSUPPORT */
	handshake_ret(H_VERSION1, "version-1 server", "speaks pagein protocol version 1; this "
		      "client speaks version 2: upgrade the server", -EPROTONOSUPPORT);
	handshake(H_PAGE_SIZE, "wrong page size", "8192-byte pages");
	handshake(H_NREG_0, "no region", "regions");
	handshake(H_NREG_MAX, "too many regions", "regions");
	handshake(H_OVERLAP, "overlapping regions", "overlap");
	handshake(H_UNALIGNED, "unaligned region", "aligned");
	handshake(H_TRUNC, "truncated WELCOME", "handshake");
	handshake(H_LEN, "WELCOME length", "regions");
	handshake(H_NOT_WELCOME, "not a WELCOME", "WELCOME");
	handshake(H_FEATURES, "ungranted feature", "features");

	for (int k = 0; k < 2; k++) {
	hb = k;
	printf("  replies, %s:\n", hb ? "heartbeats granted (pages read straight into the fetch's "
	       "buffer)" : "no heartbeats (each reply read whole, then decoded)");
	bad_reply(R_BIG_LEN, "length past the limit", "limit");
	bad_reply(R_TRUNC_CLOSE, "truncated frame", "truncated");
	bad_reply(R_TRUNC_HANG, "truncated, server hangs", "");
	bad_reply(R_OUTSIDE, "gpa outside all regions", "region");
	bad_reply(R_PAST_END, "past the region end", "region");
	bad_reply(R_UNKNOWN_ID, "unsolicited reply", "no request");
	bad_reply(R_DUPLICATE, "duplicate reply", "duplicate");
	bad_reply(R_WRONG_GPA, "reply with wrong gpa", "asked for");
	bad_reply(R_WRONG_NPAGES, "reply with wrong npages", "asked for");
	bad_reply(R_BAD_LZ4, "bad LZ4 payload", "LZ4");
	bad_reply(R_LZ4_NOT_GRANTED, "LZ4 not granted", "not granted");
	bad_reply(R_DESC_SUM, "descriptors vs payload", "add up");
	bad_reply(R_BAD_KIND, "unknown page kind", "descriptor");
	bad_reply(R_BULK_ON_URGENT, "bulk pages on urgent", "urgent");
	late_reply();
	wrong_bytes();
	}
	hb = false;
	bad_bulk(B_PAST_END, "past the region end", "region");
	bad_bulk(B_REPLY_ON_BULK, "a reply on bulk", "no request");
	bad_bulk(B_BAD_LZ4, "bad LZ4 payload", "LZ4");
	t_pass("a lying server gets clear errors, bounded waits and no wrong page installed");
}
