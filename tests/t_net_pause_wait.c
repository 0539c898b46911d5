// SPDX-License-Identifier: MIT
/*
 * t_net_pause_wait.c - a thread waiting on a page ANOTHER thread is fetching waits out a pause
 * of the network source, however longer than the space's timeout_ms it lasts: thread A reads a
 * page whose request is held by a stalled link (3 s, timeout_ms 1 s), thread B reads the same
 * page meanwhile (it waits on A's fetch, not on the network), and both get the right bytes once
 * the link comes back. Then, with a stall for ever, both fail at the pause limit, not before
 * and not at timeout_ms. Uses the real server through the fault-injecting proxy.
 */
#include <inttypes.h>
#include <pthread.h>
#include <time.h>
#include <unistd.h>

#include "helpers.h"
#include "pagein-net.h"
#include "proxy.h"

#define SIZE (16ull << 20)
#define SEED 41
#define TIMEOUT_MS 1000
#define STALL_MS 3000

static uint8_t *img;

static uint64_t ms_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

struct reader {
	struct pagein_space *s;
	uint64_t gpa;
	uint8_t buf[4096];
	int ret;
	uint64_t took_ms;
};

static void *read_main(void *p)
{
	struct reader *r = p;
	uint64_t t0 = ms_now();

	r->ret = pagein_read(r->s, r->gpa, r->buf, sizeof(r->buf));
	r->took_ms = ms_now() - t0;
	return NULL;
}

/* limit_ms: the pause limit; forever: the stall never ends (then both must fail at the limit) */
static void one(int port, unsigned limit_ms, bool forever)
{
	struct pagein_net_config nc;
	struct pagein_config cfg;
	struct pagein_region_desc rd;
	struct pagein_source *src;
	struct pagein_space *s;
	struct t_proxy_config pc;
	struct t_proxy *px;
	struct reader a, b;
	pthread_t ta, tb;
	uint8_t *host;
	char addr[64];
	uint64_t gpa = 5ull << 20, w;

	t_proxy_config_init(&pc, port);
	T_EQ(t_proxy_start(&pc, &px), 0);
	snprintf(addr, sizeof(addr), "127.0.0.1:%d", t_proxy_port(px));
	pagein_config_init(&cfg);
	cfg.frontend = PAGEIN_FRONTEND_HANDLER;
	cfg.timeout_ms = TIMEOUT_MS;
	cfg.fault_around = 1;
	cfg.log = t_log;
	T_EQ(pagein_space_new(&cfg, &s), 0);
	pagein_net_config_init(&nc); /* pause on: the default */
	nc.addr = addr;
	nc.log = t_log;
	nc.silence_ms = 300;
	nc.pause_limit_ms = limit_ms;
	T_EQ(pagein_source_net_new(&nc, &src), 0);
	T_EQ(pagein_net_regions(src, &rd, 1), 1);
	T_EQ(pagein_region_add(s, 0, SIZE, PAGEIN_BACKING_ANON, (void **)&host), 0);
	T_EQ(pagein_space_set_source(s, src), 0);
	T_EQ(pagein_space_start(s), 0);
	/* no bulk stream: the page comes only by A's fetch */
	T_EQ(pagein_read(s, 0, &w, sizeof(w)), 0);
	t_proxy_stall(px, forever ? 0 : STALL_MS);
	a = (struct reader){ .s = s, .gpa = gpa };
	b = (struct reader){ .s = s, .gpa = gpa };
	T_EQ(pthread_create(&ta, NULL, read_main, &a), 0);
	usleep(200000); /* A's request is out, held by the stalled link */
	T_EQ(pthread_create(&tb, NULL, read_main, &b), 0);
	pthread_join(tb, NULL);
	pthread_join(ta, NULL);
	printf("%s: A %s after %" PRIu64 " ms, B (waiting on A's page) %s after %" PRIu64 " ms; "
	       "timeout_ms %u, pause limit %u ms, state %d\n",
	       forever ? "stall for ever" : "stall 3 s", a.ret ? strerror(-a.ret) : "ok", a.took_ms,
	       b.ret ? strerror(-b.ret) : "ok", b.took_ms, TIMEOUT_MS, limit_ms,
	       pagein_net_state(src));
	if (!forever) {
		T_EQ(a.ret, 0);
		T_EQ(b.ret, 0);
		T_EQ(memcmp(a.buf, img + gpa, 4096), 0);
		T_EQ(memcmp(b.buf, img + gpa, 4096), 0);
		T_ASSERT(b.took_ms >= TIMEOUT_MS); /* it did wait past timeout_ms */
	} else {
		T_ASSERT(a.ret < 0);
		T_ASSERT(b.ret < 0);
		/* B failed with the page (at the pause limit), not at its own timeout_ms */
		T_ASSERT(b.took_ms + 200 + 300 >= limit_ms);
		T_ASSERT(a.took_ms < limit_ms + 5000);
		T_EQ(pagein_net_state(src), PAGEIN_NET_FAILED);
	}
	t_proxy_stop(px);
	pagein_space_free(s);
	pagein_source_free(src);
}

int main(void)
{
	struct pagein_server_config cfg;
	struct pagein_server *srv;
	int port;

	alarm(100);
	t_require_uffd();
	img = malloc(SIZE);
	T_ASSERT(img);
	t_fill(img, 0, SIZE, SEED, 7);
	pagein_server_config_init(&cfg);
	cfg.log = getenv("T_VERBOSE") ? t_log : NULL;
	T_EQ(pagein_server_new(&cfg, &srv), 0);
	T_EQ(pagein_server_add_memory(srv, 0, SIZE, img), 0);
	T_EQ(pagein_server_start(srv), 0);
	port = pagein_server_port(srv);
	one(port, 30000, false);
	one(port, 2500, true);
	pagein_server_stop(srv);
	pagein_server_free(srv);
	free(img);
	t_pass("t_net_pause_wait");
}
