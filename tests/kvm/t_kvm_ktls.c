// SPDX-License-Identifier: MIT
/*
 * t_kvm_ktls.c - kernel TLS offload for real (the KVM tier's Debian kernel has the `tls` module;
 * our machines' kernel does not): a TLS 1.3 PSK handshake over loopback, then the kernel takes
 * both directions of the client and of the server (lib/net/tls.c sets it up from the traffic
 * secrets); 64 MiB from the server and 4000 small messages from the client arrive intact, and a
 * record changed on its way is refused by the kernel (EBADMSG). Correctness only: timings in a
 * guest mean nothing. Prints one KTLS-VERIFY line.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "net/tls.h"

#define STREAM (64u << 20)
#define MSGS 4000u

#define CHECK(c)                                                                               \
	do {                                                                                   \
		if (!(c)) {                                                                    \
			printf("t_kvm_ktls: FAIL line %d: %s\n", __LINE__, #c);                \
			exit(1);                                                               \
		}                                                                              \
	} while (0)

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static uint8_t pat(uint64_t i)
{
	return (uint8_t)(i * 13 + (i >> 11));
}

struct srv {
	int lfd;
	struct pi_tls_ctx *tls;
	bool flip;          /* corrupt one record on the wire (a raw relay in front of the client) */
	int ret, io;
	char why[256], desc[96];
};

/* The server: handshake, send STREAM bytes, read MSGS counters. */
static void *srv_main(void *arg)
{
	struct srv *s = arg;
	struct pi_conn c;
	static uint8_t buf[1 << 16];
	uint64_t off = 0;
	uint32_t k, v;
	int fd = accept4(s->lfd, NULL, NULL, SOCK_CLOEXEC);

	CHECK(fd >= 0);
	s->ret = pi_conn_handshake(&c, fd, s->tls, true, now_ns() + 10000000000ull, s->why,
				   sizeof(s->why));
	snprintf(s->desc, sizeof(s->desc), "%s", c.desc);
	while (!s->ret && !s->io && off < STREAM) {
		size_t n = sizeof(buf), i;

		for (i = 0; i < n; i++)
			buf[i] = pat(off + i);
		s->io = pi_conn_write(&c, buf, n, now_ns() + 20000000000ull);
		off += n;
	}
	for (k = 0; !s->ret && !s->io && !s->flip && k < MSGS; k++) {
		s->io = pi_conn_read_exact(&c, &v, 4, now_ns() + 20000000000ull);
		if (!s->io && v != k)
			s->io = -EILSEQ;
	}
	pi_conn_close(&c);
	return NULL;
}

/* One direction of a relay: from b to a; `flip` changes the byte 1 MiB in. */
struct relay {
	int a, b;
	bool flip;
};

static void *relay_main(void *arg)
{
	struct relay *r = arg;
	uint8_t buf[1 << 14];
	uint64_t off = 0;
	ssize_t n;

	while ((n = recv(r->b, buf, sizeof(buf), 0)) > 0) {
		if (r->flip && off <= (1u << 20) && (1u << 20) < off + (uint64_t)n)
			buf[(1u << 20) - off] ^= 0x40;
		off += (uint64_t)n;
		if (send(r->a, buf, (size_t)n, MSG_NOSIGNAL) != n)
			break;
	}
	shutdown(r->a, SHUT_RDWR);
	return NULL;
}

static int listen_any(int *port)
{
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t sl = sizeof(sa);
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	CHECK(fd >= 0);
	CHECK(bind(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0);
	CHECK(listen(fd, 4) == 0);
	CHECK(getsockname(fd, (struct sockaddr *)&sa, &sl) == 0);
	*port = ntohs(sa.sin_port);
	return fd;
}

static int connect_port(int port)
{
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK),
				  .sin_port = htons((uint16_t)port) };
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), one = 1;

	CHECK(fd >= 0);
	CHECK(connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0);
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	return fd;
}

int main(void)
{
	static uint8_t buf[50000];
	struct pi_tls_opts o = { 0 };
	struct pi_tls_ctx *st, *ct;
	struct srv s = { 0 };
	struct pi_conn c;
	pthread_t th;
	uint64_t got = 0, t0;
	char why[256];
	int fd, port, probe, ret;
	uint32_t k;
	FILE *f;

	alarm(100);
	/* the kernel's TLS: the module loaded by the tier's init, on an established socket */
	s.lfd = listen_any(&port);
	probe = connect_port(port);
	if (setsockopt(probe, SOL_TCP, TCP_ULP, "tls", sizeof("tls")) < 0) {
		printf("t_kvm_ktls: SKIP: this kernel has no TLS offload (TCP_ULP tls: %s)\n",
		       strerror(errno));
		return 77;
	}
	close(probe);
	close(accept(s.lfd, NULL, NULL));

	f = fopen("/tmp/psk", "w");
	CHECK(f);
	fprintf(f, "pagein:00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff\n");
	fclose(f);
	chmod("/tmp/psk", 0600);
	o.psk_file = "/tmp/psk";
	CHECK(pi_tls_ctx_new(&o, true, &st, why, sizeof(why)) == 0);
	CHECK(pi_tls_ctx_new(&o, false, &ct, why, sizeof(why)) == 0);

	/* both directions through the kernel, every byte checked */
	s.tls = st;
	CHECK(pthread_create(&th, NULL, srv_main, &s) == 0);
	fd = connect_port(port);
	ret = pi_conn_handshake(&c, fd, ct, false, now_ns() + 10000000000ull, why, sizeof(why));
	CHECK(ret == 0);
	printf("t_kvm_ktls: client: %s%s%s\n", c.desc, c.ktls_why[0] ? "; " : "", c.ktls_why);
	CHECK(c.ktls_tx && c.ktls_rx);
	t0 = now_ns();
	while (got < STREAM) {
		ssize_t n = pi_conn_recv(&c, buf, sizeof(buf), now_ns() + 20000000000ull), i;

		CHECK(n > 0);
		for (i = 0; i < n; i++)
			CHECK(buf[i] == pat(got + (uint64_t)i));
		got += (uint64_t)n;
	}
	for (k = 0; k < MSGS; k++)
		CHECK(pi_conn_write(&c, &k, 4, now_ns() + 20000000000ull) == 0);
	pthread_join(th, NULL);
	printf("t_kvm_ktls: server: %s\n", s.desc);
	CHECK(s.ret == 0 && s.io == 0);
	CHECK(strstr(s.desc, "kernel TLS"));
	pi_conn_close(&c);

	/* a byte changed on the way: the kernel refuses the record (EBADMSG) and delivers
	 * nothing wrong */
	{
		struct relay down, up;
		pthread_t dt, ut;
		int lfd2, port2, a, b;
		ssize_t n = 1;

		memset(&s, 0, sizeof(s));
		s.lfd = listen_any(&port);
		s.tls = st;
		s.flip = true;
		CHECK(pthread_create(&th, NULL, srv_main, &s) == 0);
		lfd2 = listen_any(&port2);
		fd = connect_port(port2);
		a = accept(lfd2, NULL, NULL); /* the relay's client side */
		b = connect_port(port);       /* the relay's server side */
		CHECK(a >= 0);
		down = (struct relay){ .a = a, .b = b, .flip = true };
		up = (struct relay){ .a = b, .b = a };
		CHECK(pthread_create(&dt, NULL, relay_main, &down) == 0);
		CHECK(pthread_create(&ut, NULL, relay_main, &up) == 0);
		ret = pi_conn_handshake(&c, fd, ct, false, now_ns() + 10000000000ull, why,
					sizeof(why));
		CHECK(ret == 0 && c.ktls_rx);
		got = 0;
		while (got < STREAM) {
			ssize_t i;

			n = pi_conn_recv(&c, buf, sizeof(buf), now_ns() + 20000000000ull);
			if (n <= 0)
				break;
			for (i = 0; i < n; i++)
				CHECK(buf[i] == pat(got + (uint64_t)i));
			got += (uint64_t)n;
		}
		printf("t_kvm_ktls: flipped byte: recv %zd (%s) after %llu good bytes\n", n,
		       n < 0 ? strerror((int)-n) : "", (unsigned long long)got);
		CHECK(n == -EBADMSG && got < (1u << 20));
		pi_conn_close(&c);
		shutdown(a, SHUT_RDWR);
		shutdown(b, SHUT_RDWR);
		pthread_join(dt, NULL);
		pthread_join(ut, NULL);
		close(a);
		close(b);
		close(lfd2);
		pthread_join(th, NULL);
	}
	printf("KTLS-VERIFY: kernel TLS on both ends, TLS 1.3 PSK: %u MiB down and %u messages up "
	       "verified (%.0f MiB/s in this guest, not a measurement)\n", STREAM >> 20, MSGS,
	       (double)STREAM / (1 << 20) / ((double)(now_ns() - t0) / 1e9));
	pi_tls_ctx_free(st);
	pi_tls_ctx_free(ct);
	printf("t_kvm_ktls: PASS\n");
	return 0;
}
