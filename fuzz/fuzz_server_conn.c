// SPDX-License-Identifier: MIT
/*
 * fuzz_server_conn.c - libFuzzer target for what a page server parses from a client
 * (lib/server.c): the input is sent on one TCP connection to a real pagein_server on loopback
 * (HELLO, REQ, ERROR, anything), then the client half-closes and reads whatever comes back until
 * the server closes. Only the public API is used, so the target follows the server wherever its
 * decoders live. ASan/UBSan and the server's own checks are the oracle.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "pagein.h"
#include "pagein-net.h"

#define REGION (64u << 10)

static struct pagein_server *srv;
static int port;
static uint8_t *mem;

static void setup(void)
{
	struct pagein_server_config cfg;
	unsigned i;

	mem = malloc(2 * REGION);
	if (!mem)
		abort();
	for (i = 0; i < 2 * REGION; i++)
		mem[i] = (uint8_t)(i % 4096 < 2048 ? 0 : i * 7); /* zero and compressible halves */
	pagein_server_config_init(&cfg);
	cfg.listen = "127.0.0.1:0";
	cfg.timeout_ms = 200;
	if (pagein_server_new(&cfg, &srv) || pagein_server_add_memory(srv, 0, REGION, mem) ||
	    pagein_server_add_memory(srv, 1u << 20, REGION, mem + REGION) ||
	    pagein_server_start(srv))
		abort();
	port = pagein_server_port(srv);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	uint8_t buf[65536];
	size_t off = 0;
	int fd, i;

	if (!srv)
		setup();
	if (size > (1u << 16))
		return 0;
	sa.sin_port = htons((uint16_t)port);
	fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof(sa)))
		abort();
	while (off < size) {
		ssize_t w = send(fd, data + off, size - off, MSG_NOSIGNAL);

		if (w <= 0)
			break; /* the server closed on a violation */
		off += (size_t)w;
	}
	shutdown(fd, SHUT_WR);
	/* read until the server closes; bounded (the stream is 128 KiB at most) */
	for (i = 0; i < 1000; i++) {
		struct pollfd pfd = { .fd = fd, .events = POLLIN };
		ssize_t r;

		if (poll(&pfd, 1, 2000) <= 0)
			abort(); /* the server neither answered nor closed in 2 s */
		r = recv(fd, buf, sizeof(buf), 0);
		if (r <= 0)
			break;
	}
	close(fd);
	return 0;
}
