// SPDX-License-Identifier: MIT
/*
 * t_proxy.c - the fault-injecting proxy the recovery tests rely on does what it says: passes a
 * stream intact; cuts every connection at N random moments (a client resuming from its offset
 * still gets every byte right); keeps the link down after a cut; stalls for a time, and for ever
 * until stopped; flips exactly the byte asked for; forwards to a new target.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "helpers.h"
#include "proxy.h"

/* A stream server: each connection sends an 8-byte start offset; the server answers with the
 * pattern bytes from there to `total`, then closes. One connection at a time. */
struct srv {
	int lfd, port;
	uint64_t total;
	_Atomic bool quit;
	pthread_t th;
};

static uint8_t pat(uint64_t i)
{
	return (uint8_t)(i * 7 + (i >> 9) + (i >> 17));
}

static uint64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static void *srv_main(void *arg)
{
	struct srv *s = arg;
	uint8_t buf[16384];

	while (!atomic_load(&s->quit)) {
		struct pollfd pfd = { .fd = s->lfd, .events = POLLIN };
		uint64_t off = 0;
		size_t got = 0;
		int fd;

		if (poll(&pfd, 1, 50) <= 0)
			continue;
		fd = accept(s->lfd, NULL, NULL);
		if (fd < 0)
			continue;
		while (got < 8 && !atomic_load(&s->quit)) {
			ssize_t r;

			pfd = (struct pollfd){ .fd = fd, .events = POLLIN };
			if (poll(&pfd, 1, 50) <= 0)
				continue;
			r = recv(fd, (uint8_t *)&off + got, 8 - got, 0);
			if (r <= 0)
				break;
			got += (size_t)r;
		}
		while (got == 8 && off < s->total && !atomic_load(&s->quit)) {
			size_t n = s->total - off < sizeof(buf) ? s->total - off : sizeof(buf), i;
			ssize_t w;

			for (i = 0; i < n; i++)
				buf[i] = pat(off + i);
			pfd = (struct pollfd){ .fd = fd, .events = POLLOUT };
			if (poll(&pfd, 1, 50) <= 0)
				continue;
			w = send(fd, buf, n, MSG_NOSIGNAL | MSG_DONTWAIT);
			if (w <= 0)
				break;
			off += (uint64_t)w;
		}
		close(fd);
	}
	return NULL;
}

static void srv_start(struct srv *s, uint64_t total)
{
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t sl = sizeof(sa);

	memset(s, 0, sizeof(*s));
	s->total = total;
	s->lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	T_ASSERT(s->lfd >= 0);
	T_ASSERT(bind(s->lfd, (struct sockaddr *)&sa, sizeof(sa)) == 0);
	T_ASSERT(listen(s->lfd, 16) == 0);
	T_ASSERT(getsockname(s->lfd, (struct sockaddr *)&sa, &sl) == 0);
	s->port = ntohs(sa.sin_port);
	T_ASSERT(pthread_create(&s->th, NULL, srv_main, s) == 0);
}

static void srv_stop(struct srv *s)
{
	atomic_store(&s->quit, true);
	pthread_join(s->th, NULL);
	close(s->lfd);
}

/*
 * Read the stream through the proxy from *off, checking every byte, until the end, an error, or
 * idle_ms without data. Returns 0 at the end, 1 when cut (EOF/RST before the end), 2 when idle.
 * *flips counts bytes that differ from the pattern.
 */
static int fetch(int port, uint64_t *off, uint64_t total, unsigned idle_ms, unsigned *flips)
{
	uint8_t buf[16384];
	int fd = t_connect_loopback(port, 0), ret;

	if (send(fd, off, 8, MSG_NOSIGNAL) != 8) {
		close(fd);
		return 1;
	}
	for (;;) {
		struct pollfd pfd = { .fd = fd, .events = POLLIN };
		ssize_t r, i;

		if (*off == total) {
			ret = 0;
			break;
		}
		if (poll(&pfd, 1, (int)idle_ms) == 0) {
			ret = 2;
			break;
		}
		r = recv(fd, buf, sizeof(buf), 0);
		if (r <= 0) {
			ret = 1;
			break;
		}
		for (i = 0; i < r; i++)
			if (buf[i] != pat(*off + (uint64_t)i))
				(*flips)++;
		*off += (uint64_t)r;
	}
	close(fd);
	return ret;
}

int main(void)
{
	struct t_proxy_config cfg;
	struct t_proxy_stats st;
	struct t_proxy *p;
	struct srv s, s2;
	uint64_t off, t0;
	unsigned flips = 0, tries;
	int r;

	alarm(60);
	srv_start(&s, 8u << 20);

	/* pass: every byte, intact */
	t_proxy_config_init(&cfg, s.port);
	T_EQ(t_proxy_start(&cfg, &p), 0);
	off = 0;
	T_EQ(fetch(t_proxy_port(p), &off, s.total, 2000, &flips), 0);
	T_EQ(flips, 0);
	t_proxy_stats(p, &st);
	T_EQ(st.accepted, 1);
	T_EQ(st.bytes_down, s.total);
	T_EQ(st.bytes_up, 8);
	t_proxy_stop(p);

	/* 5 cuts at random moments, 30 ms down each time: resuming from the offset, the client
	 * still gets every byte right, and exactly 5 cuts happened */
	t_proxy_config_init(&cfg, s.port);
	cfg.mode = T_PROXY_CUT;
	cfg.cuts = 5;
	cfg.gap_min = 256u << 10;
	cfg.gap_max = 1u << 20;
	cfg.down_ms = 30;
	cfg.seed = 42;
	T_EQ(t_proxy_start(&cfg, &p), 0);
	off = 0;
	for (tries = 0; tries < 200; tries++) {
		r = fetch(t_proxy_port(p), &off, s.total, 2000, &flips);
		T_ASSERT(r != 2);
		if (r == 0)
			break;
		usleep(5000);
	}
	T_EQ(off, s.total);
	T_EQ(flips, 0);
	t_proxy_stats(p, &st);
	T_EQ(st.cuts, 5);
	T_ASSERT(st.conns_cut >= 5);
	T_ASSERT(st.refused >= 1); /* the client came back within a down period at least once */
	T_EQ(st.nrecover, 5);
	printf("cuts: %u connections, %u refused while down, recovery %llu..%llu us\n",
	       st.accepted, st.refused, (unsigned long long)st.recover_us[0],
	       (unsigned long long)st.recover_us[4]);
	t_proxy_stop(p);

	/* a stall of 300 ms at a random moment: the stream completes, 300 ms late or more */
	t_proxy_config_init(&cfg, s.port);
	cfg.mode = T_PROXY_STALL;
	cfg.stall_ms = 300;
	cfg.gap_min = 1u << 20;
	cfg.gap_max = 2u << 20;
	T_EQ(t_proxy_start(&cfg, &p), 0);
	off = 0;
	t0 = now_ms();
	T_EQ(fetch(t_proxy_port(p), &off, s.total, 2000, &flips), 0);
	T_ASSERT(now_ms() - t0 >= 290);
	T_EQ(flips, 0);
	t_proxy_stats(p, &st);
	T_EQ(st.stalls, 1);
	T_ASSERT(!st.stalled);
	T_EQ(st.nrecover, 1);
	t_proxy_stop(p);

	/* a stall for ever: silence (the connection stays open) until the proxy is stopped */
	cfg.stall_ms = 0;
	T_EQ(t_proxy_start(&cfg, &p), 0);
	off = 0;
	T_EQ(fetch(t_proxy_port(p), &off, s.total, 500, &flips), 2);
	T_ASSERT(off >= cfg.gap_min - 8 && off < s.total);
	t_proxy_stats(p, &st);
	T_ASSERT(st.stalled);
	t_proxy_stop(p);

	/* a flip of byte 1000 of the first connection: exactly one byte differs */
	t_proxy_config_init(&cfg, s.port);
	cfg.mode = T_PROXY_FLIP;
	cfg.flip_offset = 1000;
	cfg.flip_mask = 0x80;
	T_EQ(t_proxy_start(&cfg, &p), 0);
	off = 0;
	T_EQ(fetch(t_proxy_port(p), &off, s.total, 2000, &flips), 0);
	T_EQ(flips, 1);
	flips = 0;
	off = 0;
	T_EQ(fetch(t_proxy_port(p), &off, s.total, 2000, &flips), 0); /* the second is clean */
	T_EQ(flips, 0);

	/* a cut on cue, then a new target: the server "restarted" elsewhere */
	srv_start(&s2, 1u << 20);
	t_proxy_cut(p);
	t_proxy_set_target(p, s2.port);
	off = 0;
	T_EQ(fetch(t_proxy_port(p), &off, s2.total, 2000, &flips), 0);
	T_EQ(flips, 0);
	t_proxy_stats(p, &st);
	T_EQ(st.cuts, 1);
	t_proxy_stop(p);
	srv_stop(&s2);

	/* nothing listens at the target: the client is reset, as by a dead link */
	t_proxy_config_init(&cfg, s2.port);
	T_EQ(t_proxy_start(&cfg, &p), 0);
	off = 0;
	T_EQ(fetch(t_proxy_port(p), &off, 1, 2000, &flips), 1);
	t_proxy_stop(p);

	srv_stop(&s);
	t_pass("t_proxy");
}
