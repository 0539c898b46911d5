// SPDX-License-Identifier: MIT
/*
 * t_server_bad.c - the page server under bad traffic from raw-socket clients: each broken
 * handshake, oversized, mis-sized, truncated, silent, out-of-range or unknown frame, and 200
 * random ones, closes only its connection (PN_ERROR, EOF) and is counted, while a good client
 * still gets the right bytes; max_sessions, the connection cap and the API refuse what they must.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "helpers.h"
#include "pagein-net.h"
#include "net/wire.h"

#define SEED 0x5e7e
#define GPA 0x100000ull
#define SIZE (1ull << 20)   /* 256 pages */
#define ZERO_EVERY 4
#define TIMEOUT_MS 300      /* the server drops a peer silent mid-frame after this */
#define WAIT_MS 3000        /* how long a client waits for the server to close */

static struct pagein_server *srv;
static int port;
static uint8_t *mem;
static const char *what;    /* the case running */
static unsigned cases;      /* malformed cases sent */
static _Atomic unsigned warnings;

static void quiet_log(void *arg, int level, const char *msg)
{
	if (level <= PAGEIN_LOG_WARN && atomic_fetch_add(&warnings, 1) < 3)
		fprintf(stderr, "  (server log, sample) %s\n", msg);
}

static uint64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* Send what we can: the server may already have closed (that is what these cases provoke). */
static void cl_send(int fd, const void *buf, size_t len)
{
	const uint8_t *p = buf;
	ssize_t w;

	while (len) {
		w = send(fd, p, len, MSG_NOSIGNAL);
		if (w <= 0)
			return;
		p += w;
		len -= (size_t)w;
	}
}

static void cl_frame(int fd, uint16_t type, uint64_t id, const void *body, uint32_t len)
{
	struct pn_hdr h = { .len = len, .type = type, .id = id };
	uint8_t buf[sizeof(h) + 512];

	T_ASSERT(len <= 512);
	memcpy(buf, &h, sizeof(h));
	memcpy(buf + sizeof(h), body, len);
	cl_send(fd, buf, sizeof(h) + len);
}

/* Read exactly len bytes within ms; 1 done, 0 EOF/reset, -1 time-out. */
static int cl_read(int fd, void *buf, size_t len, int ms)
{
	uint64_t end = now_ms() + (uint64_t)ms;
	struct pollfd pfd = { .fd = fd, .events = POLLIN };
	size_t got = 0;
	ssize_t r;

	while (got < len) {
		uint64_t now = now_ms();

		if (now >= end || poll(&pfd, 1, (int)(end - now)) <= 0)
			return -1;
		r = recv(fd, (uint8_t *)buf + got, len - got, 0);
		if (r <= 0)
			return 0;
		got += (size_t)r;
	}
	return 1;
}

static struct pn_hello hello(uint32_t role, uint64_t session)
{
	struct pn_hello h = { .magic = PN_MAGIC, .version = PN_VERSION, .page_size = PN_PAGE,
			      .role = role, .features = 0, .batch_pages = 16, .session = session };

	return h;
}

/* Send a HELLO and read the WELCOME; returns the session. */
static uint64_t handshake(int fd, uint32_t role, uint64_t session)
{
	struct pn_hello h = hello(role, session);
	struct {
		struct pn_welcome w;
		struct pn_region r;
	} __attribute__((packed)) wel;
	struct pn_hdr hd;

	cl_frame(fd, PN_HELLO, 0, &h, sizeof(h));
	T_ASSERT(cl_read(fd, &hd, sizeof(hd), WAIT_MS) == 1);
	if (hd.type != PN_WELCOME)
		fprintf(stderr, "[%s] got frame type %u instead of WELCOME\n", what, hd.type);
	T_EQ(hd.type, PN_WELCOME);
	T_EQ(hd.len, sizeof(wel));
	T_ASSERT(cl_read(fd, &wel, sizeof(wel), WAIT_MS) == 1);
	T_ASSERT(!memcmp(wel.w.magic, PN_MAGIC, 8));
	T_EQ(wel.w.version, PN_VERSION);
	T_EQ(wel.w.page_size, PN_PAGE);
	T_EQ(wel.w.nregions, 1);
	T_EQ(wel.w.features, 0);
	T_ASSERT(wel.w.session != 0);
	T_ASSERT(!session || wel.w.session == session);
	T_EQ(wel.r.gpa, GPA);
	T_EQ(wel.r.size, SIZE);
	T_EQ(wel.r.digest, pagein_digest(mem, SIZE));
	return wel.w.session;
}

/*
 * The server must close fd: frames (at most a WELCOME or PAGES before it) then PN_ERROR then EOF,
 * or EOF alone, within ms. Returns the time it took; fails on a time-out.
 */
static uint64_t expect_closed(int fd, int ms, bool want_error)
{
	static uint8_t body[PN_MAX_BODY];
	uint64_t t0 = now_ms();
	bool error = false;
	struct pn_hdr h;
	int r;

	for (unsigned k = 0; k < 16; k++) {
		r = cl_read(fd, &h, sizeof(h), ms);
		if (r < 0) {
			fprintf(stderr, "FAIL [%s]: the server did not close within %d ms\n", what, ms);
			exit(1);
		}
		if (r == 0)
			break;
		T_ASSERT(h.len <= PN_MAX_BODY);
		r = cl_read(fd, body, h.len, ms);
		T_ASSERT(r >= 0);
		if (r == 0)
			break;
		if (h.type == PN_ERROR) {
			T_ASSERT(h.len >= 4 && h.len <= 4 + PN_MAX_TEXT);
			error = true;
		}
	}
	if (want_error && !error) {
		fprintf(stderr, "FAIL [%s]: closed without a PN_ERROR\n", what);
		exit(1);
	}
	close(fd);
	return now_ms() - t0;
}

static void wait_sessions_idle(void)
{
	struct pagein_server_stats st;

	for (unsigned k = 0; k < 300; k++) {
		pagein_server_stats_get(srv, &st);
		if (!st.sessions_active)
			return;
		usleep(10000);
	}
	fprintf(stderr, "FAIL [%s]: sessions still open 3 s after their clients left\n", what);
	exit(1);
}

/* A full good exchange: handshake, a REQ over zero and non-zero pages, exact bytes back. */
static void good_client(void)
{
	static uint8_t body[PN_MAX_BODY];
	const uint64_t off = 6 * PN_PAGE, id = 0x1234567890ull;
	const uint32_t n = 5;
	struct pn_req q = { .gpa = GPA + off, .npages = n };
	struct pn_pages *pg = (struct pn_pages *)body;
	uint32_t *desc = (uint32_t *)(pg + 1), i;
	uint8_t *pay = (uint8_t *)(desc + n);
	struct pn_hdr h;
	int fd;

	wait_sessions_idle();
	fd = t_connect_loopback(port, 0);
	handshake(fd, PN_ROLE_URGENT, 0);
	cl_frame(fd, PN_REQ, id, &q, sizeof(q));
	T_ASSERT(cl_read(fd, &h, sizeof(h), WAIT_MS) == 1);
	T_EQ(h.type, PN_PAGES);
	T_EQ(h.id, id);
	T_ASSERT(h.len <= PN_MAX_BODY);
	T_ASSERT(cl_read(fd, body, h.len, WAIT_MS) == 1);
	T_EQ(pg->gpa, q.gpa);
	T_EQ(pg->npages, n);
	for (i = 0; i < n; i++) {
		const uint8_t *want = mem + off + (uint64_t)i * PN_PAGE;

		bool zero = true;

		for (unsigned b = 0; b < PN_PAGE && zero; b++)
			zero = !want[b];
		/* zero pages flagged, the rest raw: replies are never compressed */
		T_EQ(desc[i], zero ? PN_PG_ZERO : PN_PG_RAW);
		if (zero)
			continue;
		T_ASSERT(pay + PN_PAGE <= body + h.len);
		T_ASSERT(!memcmp(pay, want, PN_PAGE));
		pay += PN_PAGE;
	}
	T_ASSERT(pay == body + h.len);
	close(fd);
}

static void begin(const char *name)
{
	what = name;
}

/* One bad case on a fresh connection: send() does the damage; the server must close the
 * connection with PN_ERROR, count it as malformed, and still serve a good client. */
static void bad_case(const char *name, bool after_hello, void (*send_fn)(int fd))
{
	struct pagein_server_stats a, b;
	int fd;

	begin(name);
	pagein_server_stats_get(srv, &a);
	fd = t_connect_loopback(port, 0);
	if (after_hello)
		handshake(fd, PN_ROLE_URGENT, 0);
	send_fn(fd);
	expect_closed(fd, WAIT_MS, true);
	cases++;
	wait_sessions_idle();
	pagein_server_stats_get(srv, &b);
	if (b.malformed != a.malformed + 1) {
		fprintf(stderr, "FAIL [%s]: malformed went %llu -> %llu, want +1\n", name,
			(unsigned long long)a.malformed, (unsigned long long)b.malformed);
		exit(1);
	}
	good_client();
	printf("  ok  %s\n", name);
}

static void send_hello_mod(int fd, void (*mod)(struct pn_hello *))
{
	struct pn_hello h = hello(PN_ROLE_URGENT, 0);

	mod(&h);
	cl_frame(fd, PN_HELLO, 0, &h, sizeof(h));
}

static void mod_magic(struct pn_hello *h) { h->magic[7] = 'X'; }
static void mod_version(struct pn_hello *h) { h->version = PN_VERSION + 1; }
static void mod_page(struct pn_hello *h) { h->page_size = 2u << 20; }
static void mod_role(struct pn_hello *h) { h->role = 3; }
static void mod_batch0(struct pn_hello *h) { h->role = PN_ROLE_BULK; h->batch_pages = 0; }
static void mod_batch_big(struct pn_hello *h) { h->batch_pages = PN_MAX_PAGES + 1; }
static void mod_reserved(struct pn_hello *h) { h->reserved = 1; }

static void s_magic(int fd) { send_hello_mod(fd, mod_magic); }
static void s_version(int fd) { send_hello_mod(fd, mod_version); }
static void s_page(int fd) { send_hello_mod(fd, mod_page); }
static void s_role(int fd) { send_hello_mod(fd, mod_role); }
static void s_batch0(int fd) { send_hello_mod(fd, mod_batch0); }
static void s_batch_big(int fd) { send_hello_mod(fd, mod_batch_big); }
static void s_reserved(int fd) { send_hello_mod(fd, mod_reserved); }

static void s_no_hello(int fd)
{
	struct pn_req q = { .gpa = GPA, .npages = 1 };

	cl_frame(fd, PN_REQ, 1, &q, sizeof(q));
}

static void s_oversized(int fd)
{
	struct pn_hdr h = { .len = PN_MAX_BODY + 1, .type = PN_PAGES };

	cl_send(fd, &h, sizeof(h));
}

static void s_oversized_huge(int fd)
{
	struct pn_hdr h = { .len = UINT32_MAX, .type = PN_REQ, .id = 1 };

	cl_send(fd, &h, sizeof(h));
}

static void s_hello_short(int fd)
{
	struct pn_hello h = hello(PN_ROLE_URGENT, 0);

	cl_frame(fd, PN_HELLO, 0, &h, sizeof(h) - 1);
}

static void s_req_long(int fd)
{
	uint8_t b[sizeof(struct pn_req) + 1] = { 0 };
	struct pn_req q = { .gpa = GPA, .npages = 1 };

	memcpy(b, &q, sizeof(q));
	cl_frame(fd, PN_REQ, 1, b, sizeof(b));
}

static void s_flags(int fd)
{
	struct pn_hdr h = { .len = sizeof(struct pn_req), .type = PN_REQ, .flags = 1, .id = 1 };
	struct pn_req q = { .gpa = GPA, .npages = 1 };

	cl_send(fd, &h, sizeof(h));
	cl_send(fd, &q, sizeof(q));
}

static void s_trunc_close(int fd)
{
	struct pn_hello h = hello(PN_ROLE_URGENT, 0);
	struct pn_hdr hd = { .len = sizeof(h), .type = PN_HELLO };

	cl_send(fd, &hd, sizeof(hd));
	cl_send(fd, &h, 10);
	shutdown(fd, SHUT_WR); /* the close: the server sees EOF mid-frame; we still read its reply */
}

static void s_trunc_hdr_close(int fd)
{
	struct pn_hdr hd = { .len = sizeof(struct pn_req), .type = PN_REQ, .id = 1 };

	cl_send(fd, &hd, 7);
	shutdown(fd, SHUT_WR);
}

static void s_unknown_type(int fd)
{
	cl_frame(fd, 99, 1, "", 0);
}

static void s_wrong_dir(int fd)
{
	cl_frame(fd, PN_END, 0, "", 0);
}

static void s_second_hello(int fd)
{
	struct pn_hello h = hello(PN_ROLE_URGENT, 0);

	cl_frame(fd, PN_HELLO, 0, &h, sizeof(h));
}

static void send_req(int fd, uint64_t id, uint64_t gpa, uint32_t npages, uint32_t reserved)
{
	struct pn_req q = { .gpa = gpa, .npages = npages, .reserved = reserved };

	cl_frame(fd, PN_REQ, id, &q, sizeof(q));
}

static void s_req_unaligned(int fd) { send_req(fd, 1, GPA + 100, 1, 0); }
static void s_req_zero(int fd) { send_req(fd, 1, GPA, 0, 0); }
static void s_req_many(int fd) { send_req(fd, 1, GPA, PN_MAX_PAGES + 1, 0); }
static void s_req_past_end(int fd) { send_req(fd, 1, GPA + SIZE - 2 * PN_PAGE, 3, 0); }
static void s_req_outside(int fd) { send_req(fd, 1, GPA + SIZE, 1, 0); }
static void s_req_below(int fd) { send_req(fd, 1, 0, 1, 0); }
static void s_req_wrap(int fd) { send_req(fd, 1, UINT64_MAX - PN_PAGE + 1, 2, 0); }
static void s_req_id0(int fd) { send_req(fd, 0, GPA, 1, 0); }
static void s_req_reserved(int fd) { send_req(fd, 1, GPA, 1, 7); }

/* A peer that sends part of a frame and then says nothing is dropped after timeout_ms. */
static void silent_case(void)
{
	struct pagein_server_stats a, b;
	struct pn_hello h = hello(PN_ROLE_URGENT, 0);
	struct pn_hdr hd = { .len = sizeof(h), .type = PN_HELLO };
	uint64_t ms;
	int fd;

	begin("truncated frame then silence");
	pagein_server_stats_get(srv, &a);
	fd = t_connect_loopback(port, 0);
	cl_send(fd, &hd, sizeof(hd));
	cl_send(fd, &h, 12);
	ms = expect_closed(fd, 3000, true);
	cases++;
	printf("  ok  truncated frame then silence: dropped after %llu ms (timeout %u ms)\n",
	       (unsigned long long)ms, TIMEOUT_MS);
	T_ASSERT(ms >= TIMEOUT_MS - 50 && ms < 1000 + TIMEOUT_MS);
	pagein_server_stats_get(srv, &b);
	T_EQ(b.malformed, a.malformed + 1);

	/* the same mid-REQ, after a good handshake */
	begin("truncated REQ then silence");
	fd = t_connect_loopback(port, 0);
	handshake(fd, PN_ROLE_URGENT, 0);
	cl_send(fd, &hd, 5);
	ms = expect_closed(fd, 3000, true);
	cases++;
	T_ASSERT(ms < 1000 + TIMEOUT_MS);
	wait_sessions_idle();
	good_client();
	printf("  ok  truncated header after HELLO then silence: dropped after %llu ms\n",
	       (unsigned long long)ms);

	/* a peer that connects and never says HELLO is dropped too (refused, not malformed) */
	begin("no HELLO at all");
	pagein_server_stats_get(srv, &a);
	fd = t_connect_loopback(port, 0);
	ms = expect_closed(fd, 3000, true);
	T_ASSERT(ms < 1000 + TIMEOUT_MS);
	pagein_server_stats_get(srv, &b);
	T_EQ(b.refused, a.refused + 1);
	printf("  ok  no HELLO at all: dropped after %llu ms\n", (unsigned long long)ms);
}

static void join_missing(void)
{
	struct pagein_server_stats a, b;
	struct pn_hello h = hello(PN_ROLE_BULK, 0xdeadbeefcafeull);
	int fd;

	begin("join of a session that does not exist");
	pagein_server_stats_get(srv, &a);
	fd = t_connect_loopback(port, 0);
	cl_frame(fd, PN_HELLO, 0, &h, sizeof(h));
	expect_closed(fd, WAIT_MS, true);
	pagein_server_stats_get(srv, &b);
	T_EQ(b.refused, a.refused + 1);
	good_client();
	printf("  ok  %s\n", what);
}

/*
 * A version-1 client (HELLO version 1, its layout otherwise the same) gets ERROR
 * EPROTONOSUPPORT and a text that names both versions and says which end to upgrade, then EOF;
 * a version the server never spoke keeps the generic text. Both count as malformed.
 */
static void old_version_text(uint32_t version, const char *want)
{
	struct pagein_server_stats a, b;
	struct pn_hello h = hello(PN_ROLE_URGENT, 0);
	char body[sizeof(struct pn_error) + PN_MAX_TEXT + 1] = "";
	struct pn_hdr hd;
	uint32_t code;
	int fd;

	begin(version == 1 ? "version-1 HELLO: the clear refusal" : "unknown version: generic");
	pagein_server_stats_get(srv, &a);
	h.version = version;
	fd = t_connect_loopback(port, 0);
	cl_frame(fd, PN_HELLO, 0, &h, sizeof(h));
	T_ASSERT(cl_read(fd, &hd, sizeof(hd), WAIT_MS) == 1);
	T_EQ(hd.type, PN_ERROR);
	T_ASSERT(hd.len >= sizeof(struct pn_error) && hd.len <= sizeof(struct pn_error) + PN_MAX_TEXT);
	T_ASSERT(cl_read(fd, body, hd.len, WAIT_MS) == 1);
	memcpy(&code, body, sizeof(code));
	T_EQ(code, EPROTONOSUPPORT);
	body[hd.len] = 0;
	if (strcmp(body + sizeof(struct pn_error), want)) {
		fprintf(stderr, "FAIL [%s]: text \"%s\", want \"%s\"\n", what,
			body + sizeof(struct pn_error), want);
		exit(1);
	}
	expect_closed(fd, WAIT_MS, false);
	cases++;
	wait_sessions_idle();
	pagein_server_stats_get(srv, &b);
	T_EQ(b.malformed, a.malformed + 1);
	good_client();
	printf("  ok  %s\n", what);
}

/* 200 random frames with a fixed seed, half of them after a good handshake. */
static void garbage(void)
{
	struct pagein_server_stats a, b;
	uint64_t rng = 0x6a4b1e;
	uint8_t buf[16 + 64];
	unsigned i, j, n;
	int fd;

	begin("random garbage");
	pagein_server_stats_get(srv, &a);
	for (i = 0; i < 200; i++) {
		struct pn_hdr *h = (struct pn_hdr *)buf;

		for (j = 0; j < sizeof(buf); j++)
			buf[j] = (uint8_t)t_rand(&rng, 256);
		/* mostly small lengths and known types, so bodies get read and checked too */
		if (t_rand(&rng, 2))
			h->len = (uint32_t)t_rand(&rng, 80);
		if (t_rand(&rng, 2))
			h->type = (uint16_t)t_rand(&rng, 8);
		if (t_rand(&rng, 2))
			h->flags = (uint16_t)t_rand(&rng, 2);
		n = 16 + (unsigned)t_rand(&rng, 65);
		if (i % 2)
			wait_sessions_idle();
		fd = t_connect_loopback(port, 0);
		if (i % 2)
			handshake(fd, PN_ROLE_URGENT, 0);
		cl_send(fd, buf, n);
		shutdown(fd, SHUT_WR);
		expect_closed(fd, WAIT_MS, false);
	}
	wait_sessions_idle();
	pagein_server_stats_get(srv, &b);
	printf("  ok  random garbage: 200 connections closed, %llu counted malformed\n",
	       (unsigned long long)(b.malformed - a.malformed));
	/* a random frame can only pass as a peer's well-formed ERROR (not counted) */
	T_ASSERT(b.malformed - a.malformed >= 180);
	good_client();
}

/* A started server from cfg serving the test's memory; *p is its port. */
static struct pagein_server *serve_mem(const struct pagein_server_config *cfg, int *p)
{
	struct pagein_server *s;

	T_EQ(pagein_server_new(cfg, &s), 0);
	T_EQ(pagein_server_add_memory(s, GPA, SIZE, mem), 0);
	T_EQ(pagein_server_start(s), 0);
	*p = pagein_server_port(s);
	T_ASSERT(*p > 0);
	return s;
}

/* A second server with max_sessions = 1: a second session is refused, a join is not. */
static void max_sessions(void)
{
	struct pagein_server_config cfg;
	struct pagein_server *s2;
	struct pagein_server_stats st;
	uint64_t sess;
	int p, a, b, c;

	begin("max_sessions");
	pagein_server_config_init(&cfg);
	cfg.max_sessions = 1;
	cfg.timeout_ms = 5000; /* the silent connections below must outlive the loop */
	cfg.log = quiet_log;
	s2 = serve_mem(&cfg, &p);
	a = t_connect_loopback(p, 0);
	sess = handshake(a, PN_ROLE_URGENT, 0);
	b = t_connect_loopback(p, 0);
	{
		struct pn_hello h = hello(PN_ROLE_URGENT, 0);

		cl_frame(b, PN_HELLO, 0, &h, sizeof(h));
	}
	expect_closed(b, WAIT_MS, true);
	c = t_connect_loopback(p, 0);
	handshake(c, PN_ROLE_BULK, sess); /* joining the one session is fine */
	pagein_server_stats_get(s2, &st);
	T_EQ(st.sessions_active, 1);
	T_EQ(st.refused, 1);
	close(a);
	close(c);
	for (unsigned k = 0; k < 300 && (pagein_server_stats_get(s2, &st), st.sessions_active); k++)
		usleep(10000);
	T_EQ(st.sessions_active, 0);
	a = t_connect_loopback(p, 0); /* the slot is free again */
	handshake(a, PN_ROLE_URGENT, 0);
	close(a);

	/* live connections are capped at 8 per allowed session: the 9th silent one is refused */
	{
		int fds[12];
		unsigned n, k;

		for (n = 0; n < 12; n++) {
			struct pollfd pfd;

			fds[n] = t_connect_loopback(p, 0);
			pfd = (struct pollfd){ .fd = fds[n], .events = POLLIN };
			if (poll(&pfd, 1, 50) == 1)
				break;
		}
		T_ASSERT(n >= 7 && n <= 9); /* a closed connection may still be leaving */
		{
			struct pn_hdr h;
			uint32_t code;

			T_ASSERT(cl_read(fds[n], &h, sizeof(h), WAIT_MS) == 1);
			T_EQ(h.type, PN_ERROR);
			T_ASSERT(cl_read(fds[n], &code, sizeof(code), WAIT_MS) == 1);
			T_EQ(code, EBUSY);
		}
		for (k = 0; k <= n; k++)
			close(fds[k]);
		printf("  ok  connection cap: connection %u refused with EBUSY\n", n + 1);
	}
	pagein_server_stop(s2);
	pagein_server_free(s2);
	printf("  ok  max_sessions: the second session refused, a join accepted, freed on close\n");
}

/* The API's own rejections: addresses, limits, regions, order of calls. */
static void api_rejections(void)
{
	static const char *const bad_addr[] = { "", "127.0.0.1", "127.0.0.1:", "127.0.0.1:65536",
						"127.0.0.1:x", "[::1:0", "[::1]0", "::1:0x", "host:1",
						"1.2.3:0", "127.0.0.1:-1" };
	struct pagein_server_config cfg;
	struct pagein_server *s;
	unsigned i;
	int ret;

	begin("API rejections");
	pagein_server_config_init(&cfg);
	cfg.log = quiet_log;
	for (i = 0; i < sizeof(bad_addr) / sizeof(bad_addr[0]); i++) {
		cfg.listen = bad_addr[i];
		s = NULL;
		if (pagein_server_new(&cfg, &s) != -EINVAL) {
			fprintf(stderr, "FAIL: listen address '%s' accepted\n", bad_addr[i]);
			exit(1);
		}
	}
	cfg.listen = "[::1]:0";
	cfg.max_sessions = 0;
	T_EQ(pagein_server_new(&cfg, &s), -EINVAL);
	cfg.max_sessions = 1;
	T_EQ(pagein_server_new(&cfg, &s), 0);
	T_EQ(pagein_server_port(s), -ENOTCONN);
	T_EQ(pagein_server_start(s), -EINVAL); /* nothing to serve */
	T_EQ(pagein_server_add_memory(s, GPA + 1, SIZE, mem), -EINVAL);
	T_EQ(pagein_server_add_memory(s, GPA, SIZE - 1, mem), -EINVAL);
	T_EQ(pagein_server_add_memory(s, GPA, 0, mem), -EINVAL);
	T_EQ(pagein_server_add_memory(s, GPA, SIZE, NULL), -EINVAL);
	T_EQ(pagein_server_add_memory(s, UINT64_MAX - PN_PAGE + 1, 2 * PN_PAGE, mem), -EINVAL);
	T_EQ(pagein_server_add_memory(s, GPA, SIZE, mem), 0);
	T_EQ(pagein_server_add_memory(s, GPA + SIZE - PN_PAGE, SIZE, mem), -EINVAL); /* overlap */
	for (i = 1; i < PN_MAX_REGIONS; i++)
		T_EQ(pagein_server_add_memory(s, GPA + 2 * i * SIZE, PN_PAGE, mem), 0);
	T_EQ(pagein_server_add_memory(s, GPA + 2 * i * SIZE, PN_PAGE, mem), -ENOSPC);
	T_EQ(pagein_server_add_snapshot(s, "/nonexistent/snapshot"), -ENOENT);
	ret = pagein_server_start(s);
	if (ret == -EADDRNOTAVAIL || ret == -EAFNOSUPPORT) {
		printf("  (no IPv6 loopback here: [::1] not tried)\n");
	} else {
		T_EQ(ret, 0);
		T_ASSERT(pagein_server_port(s) > 0);
		T_EQ(pagein_server_start(s), -EBUSY);
		T_EQ(pagein_server_add_memory(s, GPA + 4 * PN_MAX_REGIONS * SIZE, PN_PAGE, mem),
		     -EBUSY);
	}
	pagein_server_free(s); /* stops it */
	printf("  ok  API rejections: listen addresses, limits, regions, order of calls\n");
}

int main(void)
{
	struct pagein_server_config cfg;
	struct pagein_server_stats st;

	mem = aligned_alloc(4096, SIZE);
	T_ASSERT(mem);
	t_fill(mem, GPA, SIZE, SEED, ZERO_EVERY);
	pagein_server_config_init(&cfg);
	cfg.timeout_ms = TIMEOUT_MS;
	cfg.log = quiet_log;
	srv = serve_mem(&cfg, &port);
	api_rejections();
	begin("good client first");
	good_client();

	bad_case("no HELLO first", false, s_no_hello);
	bad_case("wrong magic", false, s_magic);
	bad_case("wrong version", false, s_version);
	bad_case("wrong page size", false, s_page);
	bad_case("unknown role", false, s_role);
	bad_case("bulk batch_pages 0", false, s_batch0);
	bad_case("batch_pages > PN_MAX_PAGES", false, s_batch_big);
	bad_case("HELLO reserved != 0", false, s_reserved);
	bad_case("len > PN_MAX_BODY", false, s_oversized);
	bad_case("len 4 GiB - 1", true, s_oversized_huge);
	bad_case("HELLO len 1 short", false, s_hello_short);
	bad_case("REQ len 1 long", true, s_req_long);
	bad_case("flags != 0", true, s_flags);
	bad_case("truncated HELLO then close", false, s_trunc_close);
	bad_case("truncated header then close", true, s_trunc_hdr_close);
	bad_case("unknown frame type", true, s_unknown_type);
	bad_case("unknown frame type first", false, s_unknown_type);
	bad_case("client sends END", true, s_wrong_dir);
	bad_case("second HELLO", true, s_second_hello);
	bad_case("REQ unaligned gpa", true, s_req_unaligned);
	bad_case("REQ npages 0", true, s_req_zero);
	bad_case("REQ npages > PN_MAX_PAGES", true, s_req_many);
	bad_case("REQ past the region's end", true, s_req_past_end);
	bad_case("REQ outside every region", true, s_req_outside);
	bad_case("REQ below every region", true, s_req_below);
	bad_case("REQ wrapping the address space", true, s_req_wrap);
	bad_case("REQ id 0", true, s_req_id0);
	bad_case("REQ reserved != 0", true, s_req_reserved);
	silent_case();
	join_missing();
	old_version_text(1, "this server speaks pagein protocol version 2; the client speaks "
			 "version 1: upgrade it");
	old_version_text(7, "protocol version 7 is not supported: this server speaks version 2");
	garbage();
	max_sessions();

	pagein_server_stats_get(srv, &st);
	printf("  stats: %llu connections, %llu refused, %llu malformed, %llu requests\n",
	       (unsigned long long)st.connections, (unsigned long long)st.refused,
	       (unsigned long long)st.malformed, (unsigned long long)st.requests);
	T_ASSERT(st.malformed >= cases + 180);
	pagein_server_stop(srv);
	pagein_server_stop(srv); /* idempotent */
	T_EQ(pagein_server_port(srv), -ENOTCONN);
	pagein_server_free(srv);
	free(mem);
	t_pass("t_server_bad");
}
