// SPDX-License-Identifier: MIT
/*
 * t_net_tls.c - the migration over TLS (lib/net/tls.c under the client and the server): a PSK
 * migration with threads touching memory completes and verifies; a wrong key, a plain client at
 * a TLS server and a TLS client at a plain server are refused with a clear error and get no
 * region table; a server will not listen off loopback, nor a destination connect off loopback,
 * without authentication unless told insecure; a session id is no capability: a guessed or
 * replayed one, without the session's secret, is refused even to a peer holding the key; a byte
 * changed in flight fails that connection cleanly and the migration resumes over a new one and
 * verifies.
 */
#include <arpa/inet.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "helpers.h"
#include "net/auth.h"
#include "net/client.h"
#include "net/tls.h"
#include "net/wire.h"
#include "pagein-net.h"
#include "proxy.h"

#define SEED 53
#define SIZE (32ull << 20)

static uint8_t *img;
static char psk[64], psk_bad[64];
static _Atomic uint64_t last_session; /* from the server's log (its threads call it at once) */

static void srv_log(void *arg, int level, const char *msg)
{
	const char *p = strstr(msg, "session 0x");

	if (p)
		last_session = strtoull(p + 8, NULL, 16);
	if (getenv("T_VERBOSE"))
		t_log(arg, level, msg);
}

/* Join session sid over TLS with the right key, as an intruder: with no proof, or with a made-up
 * one. Returns the ERROR code the server answers with (0: it let us in). */
static int intrude(int port, uint64_t sid, bool with_proof)
{
	struct {
		struct pn_hdr h;
		struct pn_hello b;
	} __attribute__((packed)) hello;
	struct pi_tls_opts o = { .psk_file = psk };
	struct pi_tls_ctx *t;
	struct pi_conn c;
	struct pn_hdr h;
	uint8_t body[300];
	char why[256];
	int ret;

	T_EQ(pi_tls_ctx_new(&o, false, &t, why, sizeof(why)), 0);
	T_EQ(pi_conn_handshake(&c, t_connect_loopback(port, 0), t, false, 0, why, sizeof(why)), 0);
	memset(&hello, 0, sizeof(hello));
	pi_wire_hdr(&hello.h, sizeof(hello.b), PN_HELLO, 0);
	memcpy(hello.b.magic, PN_MAGIC, 8);
	hello.b.version = PN_VERSION;
	hello.b.page_size = PN_PAGE;
	hello.b.role = PN_ROLE_BULK;
	hello.b.batch_pages = 64;
	hello.b.features = with_proof ? PN_FEAT_PROOF : 0;
	hello.b.session = sid;
	T_EQ(pi_conn_write(&c, &hello, sizeof(hello), 0), 0);
	T_EQ(pi_conn_read_exact(&c, &h, sizeof(h), 0), 0);
	if (h.type == PN_CHALLENGE) {
		struct {
			struct pn_hdr h;
			uint8_t mac[PN_MAC];
		} __attribute__((packed)) proof;

		T_EQ(h.len, PN_NONCE);
		T_EQ(pi_conn_read_exact(&c, body, PN_NONCE, 0), 0);
		pi_wire_hdr(&proof.h, PN_MAC, PN_PROOF, 0);
		T_EQ(pi_random(proof.mac, sizeof(proof.mac)), 0); /* no secret: a guess */
		T_EQ(pi_conn_write(&c, &proof, sizeof(proof), 0), 0);
		T_EQ(pi_conn_read_exact(&c, &h, sizeof(h), 0), 0);
	}
	ret = 0;
	if (h.type == PN_ERROR) {
		uint32_t code;

		T_ASSERT(h.len >= 4 && h.len < sizeof(body));
		T_EQ(pi_conn_read_exact(&c, body, h.len, 0), 0);
		memcpy(&code, body, 4);
		ret = (int)code;
		printf("intruder%s, session %#llx: refused: %.*s\n", with_proof ? " with a made-up "
		       "proof" : " with no proof", (unsigned long long)sid, (int)(h.len - 4), body + 4);
	}
	pi_conn_close(&c);
	pi_tls_ctx_free(t);
	return ret;
}

static void write_key(char *path, const char *key)
{
	int fd = mkstemp(path);

	T_ASSERT(fd >= 0);
	T_ASSERT(write(fd, key, strlen(key)) == (ssize_t)strlen(key));
	T_ASSERT(fchmod(fd, 0600) == 0);
	close(fd);
}

static struct pagein_server *server(const char *key, int *port)
{
	struct pagein_server_config cfg;
	struct pagein_server *srv;

	pagein_server_config_init(&cfg);
	cfg.log = srv_log;
	cfg.psk_file = key;
	T_EQ(pagein_server_new(&cfg, &srv), 0);
	T_EQ(pagein_server_add_memory(srv, 0, SIZE, img), 0);
	T_EQ(pagein_server_start(srv), 0);
	*port = pagein_server_port(srv);
	return srv;
}

static int source(int port, const char *key, bool pause, struct pagein_source **src)
{
	struct pagein_net_config nc;
	char addr[64];

	snprintf(addr, sizeof(addr), "127.0.0.1:%d", port);
	pagein_net_config_init(&nc);
	nc.addr = addr;
	nc.log = t_log;
	nc.psk_file = key;
	nc.no_pause = !pause;
	nc.pause_limit_ms = 30000;
	return pagein_source_net_new(&nc, src);
}

struct toucher {
	uint8_t *host;
	unsigned id, bad;
};

static void *touch_main(void *p)
{
	struct toucher *t = p;
	uint64_t st = 0x9e3779b97f4a7c15ull * (t->id + 3), gpa;
	unsigned i;

	for (i = 0; i < 2000; i++) {
		gpa = t_rand(&st, SIZE / 8) * 8;
		if (*(volatile uint64_t *)(t->host + gpa) != *(uint64_t *)(img + gpa))
			t->bad++;
	}
	return NULL;
}

/* A whole migration from port: every byte and the digest right. */
static uint64_t tx_sent; /* the last migration's REQs sent by the sender thread */
static bool ktls_tx;     /* ... whose urgent connection sent with kernel TLS (no sender) */

static void migrate_fe(int port, const char *key, bool pause, struct pagein_net_stats *ns,
		       enum pagein_frontend fe)
{
	struct pagein_source *src;
	struct pagein_space *s;
	struct pagein_config cfg;
	struct toucher t[2];
	pthread_t th[2];
	uint8_t *host;
	unsigned i;

	pagein_config_init(&cfg);
	cfg.frontend = fe;
	cfg.log = t_log;
	T_EQ(pagein_space_new(&cfg, &s), 0);
	T_EQ(source(port, key, pause, &src), 0);
	T_EQ(pagein_region_add(s, 0, SIZE, PAGEIN_BACKING_ANON, (void **)&host), 0);
	T_EQ(pagein_space_set_source(s, src), 0);
	T_EQ(pagein_space_start(s), 0);
	T_EQ(pagein_net_stream_start(src, s), 0);
	for (i = 0; i < 2; i++) {
		t[i] = (struct toucher){ host, i, 0 };
		T_EQ(pthread_create(&th[i], NULL, touch_main, &t[i]), 0);
	}
	for (i = 0; i < 2; i++) {
		pthread_join(th[i], NULL);
		T_EQ(t[i].bad, 0);
	}
	T_EQ(pagein_wait_complete(s, 60000), 0);
	T_EQ(memcmp(host, img, SIZE), 0);
	T_EQ(pagein_digest(host, SIZE), pagein_digest(img, SIZE));
	pagein_net_stats_get(src, ns);
	tx_sent = atomic_load(&pi_net_of(src)->tx_sent);
	ktls_tx = pi_net_of(src)->main->tc.ktls_tx;
	pagein_net_stream_stop(src);
	pagein_space_free(s);
	pagein_source_free(src);
}

static void migrate(int port, const char *key, bool pause, struct pagein_net_stats *ns)
{
	migrate_fe(port, key, pause, ns, PAGEIN_FRONTEND_HANDLER);
}

int main(void)
{
	struct pagein_server_config cfg;
	struct pagein_server_stats ss;
	struct pagein_net_stats ns;
	struct pagein_server *srv, *plain;
	struct pagein_source *src;
	struct t_proxy_config pc;
	struct t_proxy_stats ps;
	struct t_proxy *px;
	int port, pport;

	alarm(100);
	t_require_uffd();
	img = malloc(SIZE);
	T_ASSERT(img);
	t_fill(img, 0, SIZE, SEED, 6);
	snprintf(psk, sizeof(psk), "/tmp/t_net_tls.XXXXXX");
	snprintf(psk_bad, sizeof(psk_bad), "/tmp/t_net_tls.XXXXXX");
	write_key(psk, "pagein:8f3a0c7e55d1b2a4968e0f1d2c3b4a5968778695a4b3c2d1e0f1a2b3c4d5e6f7\n");
	write_key(psk_bad, "pagein:0f3a0c7e55d1b2a4968e0f1d2c3b4a5968778695a4b3c2d1e0f1a2b3c4d5e6f7\n");
	srv = server(psk, &port);

	/* the right key: a whole migration, verified */
	migrate(port, psk, false, &ns);
	printf("PSK migration of %llu MiB: complete and verified (%" PRIu64 " requests)\n",
	       (unsigned long long)(SIZE >> 20), ns.requests);
	/* SELF mode over user-space TLS (this kernel has no tls module): the SIGBUS handler
	 * only queues its request; the sender thread sends every one (no OpenSSL, no lock in
	 * the handler) */
	migrate_fe(port, psk, true, &ns, PAGEIN_FRONTEND_SELF);
	T_ASSERT(ns.requests > 0);
	T_EQ(tx_sent, ktls_tx ? 0 : ns.requests);
	printf("PSK migration in SELF mode: complete and verified; %" PRIu64 " requests, %" PRIu64
	       " sent by the sender thread (%s)\n", ns.requests, tx_sent,
	       ktls_tx ? "kernel TLS: plain send() in the handler" : "user-space TLS");

	/* refused, with nothing served: a wrong key, a plain client */
	T_EQ(source(port, psk_bad, false, &src), -EACCES);
	printf("wrong PSK: refused: %s\n", t_last_log);
	T_EQ(source(port, NULL, false, &src), -EACCES);
	printf("plain client, TLS server: refused: %s\n", t_last_log);
	T_ASSERT(strstr(t_last_log, "requires TLS"));
	pagein_server_stats_get(srv, &ss);
	T_EQ(ss.sessions, 2); /* only the good migrations ever got a session (a region table) */
	T_ASSERT(ss.refused >= 2);

	/* a TLS client at a plain server */
	plain = server(NULL, &pport);
	T_EQ(source(pport, psk, false, &src), -EPROTO);
	printf("TLS client, plain server: refused: %s\n", t_last_log);
	T_ASSERT(strstr(t_last_log, "plain pagein"));
	pagein_server_stop(plain);
	pagein_server_free(plain);

	/* secure by default, both ends */
	pagein_server_config_init(&cfg);
	cfg.listen = "0.0.0.0:0";
	cfg.log = t_log;
	T_EQ(pagein_server_new(&cfg, &plain), -EACCES);
	printf("plain server off loopback: %s\n", t_last_log);
	cfg.insecure = true;
	T_EQ(pagein_server_new(&cfg, &plain), 0);
	pagein_server_free(plain);
	{
		struct pagein_net_config nc;

		pagein_net_config_init(&nc);
		nc.addr = "192.0.2.1:7000"; /* TEST-NET-1: refused before any connect */
		nc.log = t_log;
		nc.connect_timeout_ms = 200;
		T_EQ(pagein_source_net_new(&nc, &src), -EACCES);
		printf("plain destination off loopback: %s\n", t_last_log);
	}

	/* a live session's id, guessed or seen, gets an intruder nowhere, even one with the key */
	T_EQ(source(port, psk, false, &src), 0);
	T_ASSERT(last_session != 0);
	T_EQ(intrude(port, last_session, false), EACCES);
	T_EQ(intrude(port, last_session, true), EACCES);
	T_EQ(intrude(port, last_session ^ 0x5a5a, true), EACCES); /* a made-up id: the same answer */
	pagein_source_free(src);

	/* a byte changed in flight on the bulk stream: that connection fails cleanly (the record
	 * does not authenticate) and the migration resumes over a new one */
	t_proxy_config_init(&pc, port);
	pc.mode = T_PROXY_FLIP;
	pc.flip_conn = 1;             /* the bulk connection (the urgent one is accepted first) */
	pc.flip_offset = 3u << 20;
	T_EQ(t_proxy_start(&pc, &px), 0);
	migrate(t_proxy_port(px), psk, true, &ns);
	t_proxy_stats(px, &ps);
	t_proxy_stop(px);
	T_ASSERT(ps.flipped);
	T_ASSERT(ns.resumes >= 1);
	printf("byte flipped in flight: the connection failed, the migration resumed (%" PRIu64
	       " resumes) and verified\n", ns.resumes);

	pagein_server_stop(srv);
	pagein_server_free(srv);
	unlink(psk);
	unlink(psk_bad);
	free(img);
	t_pass("t_net_tls");
}
