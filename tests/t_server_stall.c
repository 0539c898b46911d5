// SPDX-License-Identifier: MIT
/*
 * t_server_stall.c - a destination that completes its handshake and then never reads must not
 * pin a server thread and a session for ever: the server drops it once it has taken no stream
 * data for the stall limit (6 x timeout_ms), and the next destination is served.
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

#define SIZE (64ull << 20) /* far more than the socket buffers hold */

static int port;

/* Connect and send HELLO; a small receive buffer so that the stream stalls quickly. */
static int client(uint32_t role, int rcvbuf)
{
	int fd = t_connect_loopback(port, rcvbuf);

	t_send_hello(fd, role, 0, 64);
	return fd;
}

int main(void)
{
	struct pagein_server_config cfg;
	struct pagein_server_stats st;
	struct pagein_server *srv;
	struct pn_hdr h;
	struct pollfd pfd;
	uint8_t *mem;
	int stuck, next, i;

	alarm(60);
	mem = malloc(SIZE);
	T_ASSERT(mem);
	t_fill(mem, 0, SIZE, 99, 0);
	pagein_server_config_init(&cfg);
	cfg.max_sessions = 1;
	cfg.timeout_ms = 300; /* stall limit 1.8 s */
	cfg.compress = false;
	cfg.log = t_log;
	T_EQ(pagein_server_new(&cfg, &srv), 0);
	T_EQ(pagein_server_add_memory(srv, 0, SIZE, mem), 0);
	T_EQ(pagein_server_start(srv), 0);
	port = pagein_server_port(srv);
	T_ASSERT(port > 0);

	stuck = client(PN_ROLE_BULK, 4096); /* never reads a byte */
	for (i = 0; i < 100; i++) {
		pagein_server_stats_get(srv, &st);
		if (st.sessions_active == 1)
			break;
		usleep(10000);
	}
	T_EQ(st.sessions_active, 1);
	/* dropped within the stall limit (1.8 s), with some slack for a loaded machine */
	for (i = 0; i < 600; i++) {
		pagein_server_stats_get(srv, &st);
		if (st.sessions_active == 0)
			break;
		usleep(10000);
	}
	T_EQ(st.sessions_active, 0);
	printf("  a destination that stopped reading was dropped after %d.%02d s (stall limit 1.8 s)\n",
	       i / 100, i % 100);

	/* the session slot is free again: the next destination gets a WELCOME */
	next = client(PN_ROLE_URGENT, 0);
	pfd = (struct pollfd){ .fd = next, .events = POLLIN };
	T_ASSERT(poll(&pfd, 1, 5000) == 1);
	T_ASSERT(read(next, &h, sizeof(h)) == (ssize_t)sizeof(h));
	T_EQ(h.type, PN_WELCOME);
	pagein_server_stop(srv);
	pagein_server_free(srv);
	close(stuck);
	close(next);
	free(mem);
	t_pass("a destination that stops reading is dropped and its session freed");
}
