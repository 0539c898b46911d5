// SPDX-License-Identifier: MIT
/*
 * t_net_fail.c - the per-request FAIL reply (docs/protocol.md, version 2): the real server
 * refuses one bad request with FAIL instead of closing the connection, and the connection goes
 * on serving.
 * - A raw client (asking PN_FEAT_FAIL): a REQ outside the regions gets FAIL ERANGE, a REQ at an
 *   unaligned gpa FAIL EINVAL, both with the REQ's id, gpa and count; the next REQ gets its pages
 *   on the same connection.
 * - The real client over a snapshot that shrinks under the server (a read error on its source):
 *   the page that cannot be read fails alone (pagein_read -EIO, a touch SIGBUS, never a zero
 *   page), with no pause and no reconnect, and the pages that can be read still arrive on the
 *   same connection.
 */
#include <endian.h>
#include <setjmp.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include "helpers.h"
#include "pagein-net.h"
#include "net/wire.h"

#define SIZE (8ull << 20)
#define SEED 43

static uint8_t *img;

static void read_all(int fd, void *buf, size_t n)
{
	uint8_t *p = buf;
	size_t got = 0;
	ssize_t r;

	while (got < n) {
		r = read(fd, p + got, n - got);
		T_ASSERT(r > 0);
		got += (size_t)r;
	}
}

/* Read one frame's header and body (body: PN_MAX_BODY bytes). */
static void read_frame(int fd, struct pn_hdr *h, uint8_t *body)
{
	read_all(fd, h, sizeof(*h));
	T_ASSERT(h->len <= PN_MAX_BODY);
	read_all(fd, body, h->len);
}

static void send_req(int fd, uint64_t id, uint64_t gpa, uint32_t npages)
{
	struct {
		struct pn_hdr h;
		struct pn_req r;
	} __attribute__((packed)) m = { .h = { .len = sizeof(m.r), .type = PN_REQ, .id = id },
					.r = { .gpa = gpa, .npages = npages } };

	T_ASSERT(write(fd, &m, sizeof(m)) == (ssize_t)sizeof(m));
}

static void expect_fail(int fd, uint8_t *body, uint64_t id, uint64_t gpa, uint32_t npages,
			uint32_t code)
{
	struct pn_fail f;
	struct pn_hdr h;

	read_frame(fd, &h, body);
	T_EQ(h.type, PN_FAIL);
	T_EQ(h.id, id);
	T_ASSERT(h.len >= sizeof(f) && h.len <= sizeof(f) + PN_MAX_TEXT);
	memcpy(&f, body, sizeof(f));
	T_EQ(f.code, code);
	T_EQ(f.gpa, gpa);
	T_EQ(f.npages, npages);
	printf("  REQ %llu [%#llx, +%u): FAIL %s: %.*s\n", (unsigned long long)id,
	       (unsigned long long)gpa, npages, strerror((int)code), (int)(h.len - sizeof(f)),
	       (const char *)body + sizeof(f));
}

static void raw_client(int port)
{
	struct {
		struct pn_hdr h;
		struct pn_hello b;
	} __attribute__((packed)) m;
	uint8_t *body = malloc(PN_MAX_BODY);
	struct pn_welcome w;
	struct pn_pages pg;
	struct pn_hdr h;
	int fd = t_connect_loopback(port, 0);

	T_ASSERT(body);
	memset(&m, 0, sizeof(m));
	m.h.len = sizeof(m.b);
	m.h.type = PN_HELLO;
	memcpy(m.b.magic, PN_MAGIC, 8);
	m.b.version = PN_VERSION;
	m.b.page_size = PN_PAGE;
	m.b.role = PN_ROLE_URGENT;
	m.b.features = PN_FEAT_FAIL;
	m.b.batch_pages = 64;
	T_ASSERT(write(fd, &m, sizeof(m)) == (ssize_t)sizeof(m));
	read_frame(fd, &h, body);
	T_EQ(h.type, PN_WELCOME);
	memcpy(&w, body, sizeof(w));
	T_ASSERT(w.features & PN_FEAT_FAIL);
	send_req(fd, 7, SIZE, 1);               /* past the only region */
	expect_fail(fd, body, 7, SIZE, 1, ERANGE);
	send_req(fd, 8, 4096 + 8, 1);           /* not page-aligned */
	expect_fail(fd, body, 8, 4096 + 8, 1, EINVAL);
	send_req(fd, 9, SIZE - 4096, 2);        /* runs off the end */
	expect_fail(fd, body, 9, SIZE - 4096, 2, ERANGE);
	send_req(fd, 10, 3 * 4096, 2);          /* a good one: the connection still serves */
	read_frame(fd, &h, body);
	T_EQ(h.type, PN_PAGES);
	T_EQ(h.id, 10);
	memcpy(&pg, body, sizeof(pg));
	T_EQ(pg.gpa, 3 * 4096);
	T_EQ(pg.npages, 2);
	close(fd);
	free(body);
	printf("  raw client: three bad REQs refused alone, the fourth served on the same "
	       "connection\n");
}

static sigjmp_buf jb;
static volatile sig_atomic_t got_bus;

static void on_bus(int sig)
{
	(void)sig;
	got_bus = 1;
	siglongjmp(jb, 1);
}

static void real_client(int port, const char *snap)
{
	struct pagein_net_config nc;
	struct pagein_net_stats ns;
	struct pagein_server_stats ss0;
	struct pagein_config cfg;
	struct pagein_space *s;
	struct pagein_source *src;
	struct sigaction sa = { .sa_handler = on_bus };
	uint8_t buf[4096], *host;
	char addr[64];
	uint64_t bad = SIZE - 4096 * 3;
	struct stat stb;
	int ret;

	(void)ss0;
	snprintf(addr, sizeof(addr), "127.0.0.1:%d", port);
	pagein_config_init(&cfg);
	cfg.frontend = PAGEIN_FRONTEND_HANDLER;
	cfg.fault_around = 1;
	cfg.timeout_ms = 5000;
	cfg.log = t_log;
	T_EQ(pagein_space_new(&cfg, &s), 0);
	pagein_net_config_init(&nc); /* pause on (the default): a FAIL must not pause */
	nc.addr = addr;
	nc.log = t_log;
	T_EQ(pagein_source_net_new(&nc, &src), 0);
	T_EQ(pagein_region_add(s, 0, SIZE, PAGEIN_BACKING_ANON, (void **)&host), 0);
	T_EQ(pagein_space_set_source(s, src), 0);
	T_EQ(pagein_space_start(s), 0);
	T_EQ(pagein_read(s, 4096, buf, sizeof(buf)), 0);
	T_EQ(memcmp(buf, img + 4096, 4096), 0);
	/* the snapshot loses its second half under the server: a read error on its source */
	T_EQ(stat(snap, &stb), 0);
	T_EQ(truncate(snap, stb.st_size / 2), 0);
	ret = pagein_read(s, bad, buf, sizeof(buf));
	T_EQ(ret, -EIO);
	/* the failed page stays failed: never a zero page, to an accessor or a touch */
	T_EQ(pagein_read(s, bad, buf, sizeof(buf)), -EIO);
	T_EQ(sigaction(SIGBUS, &sa, NULL), 0);
	if (!sigsetjmp(jb, 1))
		(void)*(volatile uint8_t *)(host + bad);
	T_ASSERT(got_bus);
	/* the connection still serves the pages it can read */
	T_EQ(pagein_read(s, 2 * 4096, buf, sizeof(buf)), 0);
	T_EQ(memcmp(buf, img + 2 * 4096, 4096), 0);
	T_EQ(memcmp(host + 4096, img + 4096, 4096), 0);
	pagein_net_stats_get(src, &ns);
	T_EQ(ns.fails, 1);
	T_EQ(ns.errors, 0);
	T_EQ(ns.pauses, 0);
	T_EQ(ns.resumes, 0);
	T_EQ(pagein_net_state(src), PAGEIN_NET_RUNNING);
	printf("  real client, snapshot truncated under the server: that page -EIO and SIGBUS, "
	       "%llu FAIL, %llu connection errors, %llu pauses; later pages served\n",
	       (unsigned long long)ns.fails, (unsigned long long)ns.errors,
	       (unsigned long long)ns.pauses);
	pagein_space_free(s);
	pagein_source_free(src);
}

int main(void)
{
	char snap[] = "/tmp/t_net_fail-XXXXXX";
	struct pagein_server_config cfg;
	struct pagein_server *srv;
	struct pagein_region_desc rd = { .gpa = 0, .size = SIZE };
	const void *data[1];
	int fd, port;

	alarm(60);
	t_require_uffd();
	img = malloc(SIZE);
	T_ASSERT(img);
	t_fill(img, 0, SIZE, SEED, 0);
	fd = mkstemp(snap);
	T_ASSERT(fd >= 0);
	close(fd);
	data[0] = img;
	T_EQ(pagein_snapshot_save(snap, &rd, data, 1), 0);
	pagein_server_config_init(&cfg);
	cfg.log = getenv("T_VERBOSE") ? t_log : NULL;
	T_EQ(pagein_server_new(&cfg, &srv), 0);
	T_EQ(pagein_server_add_snapshot(srv, snap), 0);
	T_EQ(pagein_server_start(srv), 0);
	port = pagein_server_port(srv);
	raw_client(port);
	real_client(port, snap);
	pagein_server_stop(srv);
	pagein_server_free(srv);
	unlink(snap);
	free(img);
	t_pass("t_net_fail");
}
