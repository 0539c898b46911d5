// SPDX-License-Identifier: MIT
/*
 * t_server_idle.c - idle sessions cannot lock destinations out of a page server. Sessions that
 * neither open a bulk stream nor send a request are dropped after idle_ms, so a server filled
 * with idle URGENT HELLOs admits a real destination (which then migrates every byte) within a
 * bounded time; and one peer address cannot hold more than max_sessions_per_peer sessions or
 * max_conns_per_peer connections, so a destination from another address is admitted at once.
 * The idle peers connect from 127.0.0.2, the destination from 127.0.0.1.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "helpers.h"
#include "pagein-net.h"
#include "net/wire.h"

#define SIZE (8ull << 20)
#define SEED 11
#define ZERO_EVERY 9
#define IDLE_MS 400
#define ADMIT_BOUND_MS 5000 /* idle_ms plus the time a loaded machine takes */

static uint8_t *img;

static uint64_t ms_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* A TCP connection from 127.0.0.2 to 127.0.0.1:port. */
static int connect_from2(int port)
{
	struct sockaddr_in me = { .sin_family = AF_INET }, to = { .sin_family = AF_INET };
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), one = 1;

	T_ASSERT(fd >= 0);
	me.sin_addr.s_addr = htonl(0x7f000002);
	to.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	to.sin_port = htons((uint16_t)port);
	T_ASSERT(bind(fd, (struct sockaddr *)&me, sizeof(me)) == 0);
	T_ASSERT(connect(fd, (struct sockaddr *)&to, sizeof(to)) == 0);
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	return fd;
}

/* Read one frame header (and drop its body) within ms; returns its type, 0 on EOF, -1 when
 * nothing came in time. */
static int next_frame(int fd, int ms)
{
	struct pollfd pfd = { .fd = fd, .events = POLLIN };
	uint8_t body[4096];
	struct pn_hdr h;
	size_t got = 0, left;
	ssize_t r;

	while (got < sizeof(h)) {
		if (poll(&pfd, 1, ms) != 1)
			return -1;
		r = recv(fd, (uint8_t *)&h + got, sizeof(h) - got, 0);
		if (r <= 0)
			return 0;
		got += (size_t)r;
	}
	for (left = h.len; left; left -= (size_t)r) {
		if (poll(&pfd, 1, ms) != 1)
			return -1;
		r = recv(fd, body, left < sizeof(body) ? left : sizeof(body), 0);
		if (r <= 0)
			return 0;
	}
	return h.type;
}

/* An idle session: URGENT HELLO from 127.0.0.2. Returns the fd and what the server answered. */
static int idle_session(int port, int *answer)
{
	int fd = connect_from2(port);

	t_send_hello(fd, PN_ROLE_URGENT, 0, 0);
	*answer = next_frame(fd, 2000);
	return fd;
}

static struct pagein_server *server(unsigned idle_ms, unsigned per_peer_sessions,
				    unsigned per_peer_conns, int *port)
{
	struct pagein_server_config cfg;
	struct pagein_server *srv;

	pagein_server_config_init(&cfg);
	cfg.max_sessions = 4;
	cfg.idle_ms = idle_ms;
	cfg.max_sessions_per_peer = per_peer_sessions;
	cfg.max_conns_per_peer = per_peer_conns;
	cfg.log = t_log;
	T_EQ(pagein_server_new(&cfg, &srv), 0);
	T_EQ(pagein_server_add_memory(srv, 0, SIZE, img), 0);
	T_EQ(pagein_server_start(srv), 0);
	*port = pagein_server_port(srv);
	T_ASSERT(*port > 0);
	return srv;
}

/* A real destination from 127.0.0.1: connect (retrying while the server is full, until
 * bound_ms), then migrate every byte with the bulk stream. Returns the ms it waited to get in. */
static uint64_t destination(int port, uint64_t bound_ms)
{
	struct pagein_region_desc reg;
	struct pagein_net_config nc;
	struct pagein_config cfg;
	struct pagein_space *s;
	struct pagein_source *src;
	char addr[64];
	uint64_t t0 = ms_now(), waited;
	uint8_t *host;
	int ret;

	snprintf(addr, sizeof(addr), "127.0.0.1:%d", port);
	pagein_net_config_init(&nc);
	nc.addr = addr;
	nc.log = t_log;
	for (;;) {
		ret = pagein_source_net_new(&nc, &src);
		if (ret != -EBUSY || ms_now() - t0 > bound_ms)
			break;
		usleep(50000);
	}
	waited = ms_now() - t0;
	fprintf(stderr, "destination: %d (%s) after %llu ms\n", ret, strerror(-ret),
		(unsigned long long)waited);
	T_EQ(ret, 0);
	T_EQ(pagein_net_regions(src, &reg, 1), 1);
	pagein_config_init(&cfg);
	cfg.frontend = PAGEIN_FRONTEND_HANDLER;
	cfg.timeout_ms = 5000;
	cfg.log = t_log;
	T_EQ(pagein_space_new(&cfg, &s), 0);
	T_EQ(pagein_region_add(s, reg.gpa, reg.size, PAGEIN_BACKING_ANON, (void **)&host), 0);
	T_EQ(pagein_space_set_source(s, src), 0);
	T_EQ(pagein_space_start(s), 0);
	T_EQ(pagein_net_stream_start(src, s), 0);
	T_EQ(pagein_wait_complete(s, 10000), 0);
	T_EQ(t_check(host, 0, SIZE, SEED, ZERO_EVERY), UINT64_MAX);
	pagein_net_stream_stop(src);
	pagein_space_free(s);
	pagein_source_free(src);
	return waited;
}

int main(void)
{
	struct pagein_server *srv;
	int fds[4], port, ans, i, extra, over;
	uint64_t waited;

	alarm(60);
	t_require_uffd();
	img = malloc(SIZE);
	T_ASSERT(img);
	t_fill(img, 0, SIZE, SEED, ZERO_EVERY);

	/* 1. every session slot held by an idle session: they are dropped after idle_ms */
	srv = server(IDLE_MS, 0, 0, &port);
	for (i = 0; i < 4; i++) {
		fds[i] = idle_session(port, &ans);
		T_EQ(ans, PN_WELCOME);
	}
	waited = destination(port, ADMIT_BOUND_MS);
	T_ASSERT(waited >= IDLE_MS / 2); /* it really was full */
	for (i = 0; i < 4; i++) {
		/* each idle peer was told why, then closed */
		T_EQ(next_frame(fds[i], 2000), PN_ERROR);
		T_EQ(next_frame(fds[i], 2000), 0);
		close(fds[i]);
	}
	pagein_server_free(srv);

	/* 2. per-peer limits: 2 sessions and 3 connections from one address, no idle limit */
	srv = server(0, 2, 3, &port);
	fds[0] = idle_session(port, &ans);
	T_EQ(ans, PN_WELCOME);
	fds[1] = idle_session(port, &ans);
	T_EQ(ans, PN_WELCOME);
	fds[2] = idle_session(port, &ans);
	T_EQ(ans, PN_ERROR); /* a third session from 127.0.0.2 */
	close(fds[2]);
	/* another address is admitted at once, and served */
	waited = destination(port, 0);
	T_ASSERT(waited < 1000);
	/* the refused connection is gone once its thread ends: a third connection is allowed
	 * (it sends nothing: the server waits for its HELLO), a fourth is refused at once */
	usleep(500000);
	extra = connect_from2(port);
	T_EQ(next_frame(extra, 300), -1);
	over = connect_from2(port);
	T_EQ(next_frame(over, 2000), PN_ERROR);
	close(over);
	close(extra);
	close(fds[0]);
	close(fds[1]);
	pagein_server_free(srv);
	free(img);
	t_pass("t_server_idle");
}
