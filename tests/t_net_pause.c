// SPDX-License-Identifier: MIT
/*
 * t_net_pause.c - pause, don't fail (DESIGN.md §6), through the fault-injecting proxy: a link that
 * stalls for 3 s in the middle of a migration (with threads touching memory, and again with none)
 * pauses it — heartbeats tell the silence from idleness — and it completes with every byte and
 * every digest right, having paused once and resumed once; a link that stalls for ever fails
 * cleanly at the pause limit (accessors get an error, the state is FAILED), not before it.
 */
#include <inttypes.h>
#include <pthread.h>
#include <time.h>
#include <unistd.h>

#include "helpers.h"
#include "pagein-net.h"
#include "proxy.h"

#define SEED 31
/* the 256 MiB; 64 MiB under sanitizers (tests/run.sh sets SANITIZE_BUILD), to stay
 * inside the runner's limit there */
static uint64_t size_bytes = 256ull << 20;
#define SIZE size_bytes
#define TOUCHES 2000

static uint8_t *img;
static _Atomic unsigned paused_cb, resumed_cb;
static _Atomic uint64_t paused_len;

static uint64_t ms_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static void on_paused(void *arg, const char *why)
{
	T_ASSERT(why && why[0]);
	paused_cb++;
}

static void on_resumed(void *arg, uint64_t ns)
{
	resumed_cb++;
	paused_len = ns;
}

struct dest {
	struct pagein_space *s;
	struct pagein_source *src;
	uint8_t *host;
};

static void dest_make(struct dest *d, int port, unsigned silence_ms, unsigned limit_ms)
{
	struct pagein_net_config nc;
	struct pagein_config cfg;
	struct pagein_region_desc r;
	char addr[64];

	snprintf(addr, sizeof(addr), "127.0.0.1:%d", port);
	pagein_config_init(&cfg);
	cfg.frontend = PAGEIN_FRONTEND_HANDLER;
	cfg.timeout_ms = 10000;
	cfg.log = t_log;
	T_EQ(pagein_space_new(&cfg, &d->s), 0);
	pagein_net_config_init(&nc);
	nc.addr = addr;
	nc.log = t_log;
	nc.silence_ms = silence_ms;
	nc.pause_limit_ms = limit_ms;
	nc.on_paused = on_paused;
	nc.on_resumed = on_resumed;
	T_EQ(pagein_source_net_new(&nc, &d->src), 0);
	T_EQ(pagein_net_regions(d->src, &r, 1), 1);
	T_EQ(r.size, SIZE);
	T_EQ(pagein_region_add(d->s, 0, SIZE, PAGEIN_BACKING_ANON, (void **)&d->host), 0);
	T_EQ(pagein_space_set_source(d->s, d->src), 0);
	T_EQ(pagein_space_start(d->s), 0);
}

static void dest_free(struct dest *d)
{
	pagein_net_stream_stop(d->src);
	pagein_space_free(d->s);
	pagein_source_free(d->src);
}

struct toucher {
	struct dest *d;
	unsigned id, bad;
};

static void *touch_main(void *p)
{
	struct toucher *t = p;
	uint64_t st = 0x9e3779b97f4a7c15ull * (t->id + 1), gpa;
	unsigned i;

	for (i = 0; i < TOUCHES; i++) {
		gpa = t_rand(&st, SIZE / 8) * 8;
		if (*(volatile uint64_t *)(t->d->host + gpa) != *(uint64_t *)(img + gpa))
			t->bad++;
		if (i % 64 == 0)
			usleep(1000); /* spread the touches over the migration */
	}
	return NULL;
}

/* A 3 s stall at a random moment: paused once, resumed once, complete and right. */
static void stall_once(int port, bool touch)
{
	struct t_proxy_config pc;
	struct t_proxy_stats ps;
	struct pagein_net_stats ns;
	struct t_proxy *px;
	struct toucher t[3];
	pthread_t th[3];
	struct dest d;
	uint64_t t0 = ms_now();
	unsigned i;

	paused_cb = resumed_cb = 0;
	t_proxy_config_init(&pc, port);
	pc.mode = T_PROXY_STALL;
	pc.stall_ms = 3000;
	pc.gap_min = 4u << 20;
	pc.gap_max = 24u << 20;
	pc.seed = touch ? 5 : 6;
	T_EQ(t_proxy_start(&pc, &px), 0);
	dest_make(&d, t_proxy_port(px), 1000, 60000);
	T_EQ(pagein_net_state(d.src), PAGEIN_NET_RUNNING);
	T_EQ(pagein_net_stream_start(d.src, d.s), 0);
	for (i = 0; touch && i < 3; i++) {
		t[i] = (struct toucher){ &d, i, 0 };
		T_EQ(pthread_create(&th[i], NULL, touch_main, &t[i]), 0);
	}
	for (i = 0; touch && i < 3; i++) {
		pthread_join(th[i], NULL);
		T_EQ(t[i].bad, 0);
	}
	T_EQ(pagein_wait_complete(d.s, 60000), 0);
	T_EQ(memcmp(d.host, img, SIZE), 0);
	T_EQ(pagein_digest(d.host, SIZE), pagein_digest(img, SIZE));
	pagein_net_stats_get(d.src, &ns);
	t_proxy_stats(px, &ps);
	T_EQ(ps.stalls, 1);
	/* the stall is one pause; a loaded machine (sanitizers) may add a short one of its own */
	T_ASSERT(ns.pauses >= 1);
	T_EQ(paused_cb, ns.pauses);
	T_EQ(resumed_cb, ns.pauses);
	T_EQ(ns.errors, 0);
	T_ASSERT(ns.paused_ms >= 1000); /* stalled 3 s, noticed after 1 s of silence */
	T_ASSERT(pagein_net_state(d.src) == PAGEIN_NET_RUNNING ||
		 pagein_net_state(d.src) == PAGEIN_NET_DONE);
	printf("stall 3 s%s: complete and verified in %" PRIu64 " ms; paused %" PRIu64 " time(s) "
	       "for %" PRIu64 " ms; %" PRIu64 " requests\n",
	       touch ? " with 3 threads touching" : ", no workload", ms_now() - t0, ns.pauses,
	       ns.paused_ms, ns.requests);
	dest_free(&d);
	t_proxy_stop(px);
}

/* A stall for ever: the migration fails at the pause limit, cleanly, and not before. */
static void stall_forever(int port)
{
	struct t_proxy_config pc;
	struct t_proxy *px;
	struct dest d;
	uint64_t t0, w, took;
	int ret, i, state;

	paused_cb = resumed_cb = 0;
	t_proxy_config_init(&pc, port);
	T_EQ(t_proxy_start(&pc, &px), 0);
	dest_make(&d, t_proxy_port(px), 500, 2000);
	T_EQ(pagein_net_stream_start(d.src, d.s), 0);
	T_EQ(pagein_read(d.s, 4096 * 3, &w, 8), 0);
	t_proxy_stall(px, 0);
	t0 = ms_now();
	/* a page the stream has not brought yet (the far end of memory) */
	ret = pagein_read(d.s, SIZE - 4096, &w, 8);
	if (ret == 0) {
		/* the stream got there before the stall: try another far page */
		for (i = 2; i < 64 && ret == 0; i++)
			ret = pagein_read(d.s, SIZE - (uint64_t)i * 4096 * 97, &w, 8);
	}
	T_ASSERT(ret < 0);
	took = ms_now() - t0;
	state = pagein_net_state(d.src);
	T_ASSERT(took >= 2000);   /* not before the pause limit */
	T_ASSERT(took < 9000);    /* nor long after it (well before the fault time-out) */
	T_EQ(state, PAGEIN_NET_FAILED);
	T_EQ(paused_cb, 1);
	T_EQ(resumed_cb, 0);
	t_proxy_stop(px);
	dest_free(&d);
	/* the source's threads are gone: the last log line is ours to read */
	printf("stall for ever: pagein_read = %s after %" PRIu64 " ms (pause limit 2000 ms, "
	       "silence 500 ms); state %d (FAILED); log: %s\n", strerror(-ret), took, state,
	       t_last_log);
}

int main(void)
{
	struct pagein_server_config cfg;
	struct pagein_server *srv;
	int port;

	alarm(110);
	t_require_uffd();
	if (getenv("SANITIZE_BUILD") && getenv("SANITIZE_BUILD")[0])
		size_bytes = 64ull << 20;
	img = malloc(SIZE);
	T_ASSERT(img);
	t_fill(img, 0, SIZE, SEED, 7);
	pagein_server_config_init(&cfg);
	cfg.log = getenv("T_VERBOSE") ? t_log : NULL;
	T_EQ(pagein_server_new(&cfg, &srv), 0);
	T_EQ(pagein_server_add_memory(srv, 0, SIZE, img), 0);
	T_EQ(pagein_server_start(srv), 0);
	port = pagein_server_port(srv);
	stall_once(port, true);
	stall_once(port, false);
	stall_forever(port);
	pagein_server_stop(srv);
	pagein_server_free(srv);
	free(img);
	t_pass("t_net_pause");
}
