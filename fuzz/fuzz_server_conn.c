// SPDX-License-Identifier: MIT
/*
 * fuzz_server_conn.c - libFuzzer target for what a page server parses from a client
 * (lib/net/server.c, and the wire.c and have.c helpers it calls): HELLO, REQ, HAVE, PROOF,
 * HEARTBEAT, ERROR, anything. server.c is compiled into this target, so the input reaches the
 * server's own connection code (conn_main: read_frame, conn_handshake, conn_serve, conn_request,
 * conn_have) exactly as an accepted connection's thread reaches it, without TCP, an accept
 * thread or a thread per input (the earlier TCP version ran at ~1k exec/s).
 *
 * Each input is written into one end of a Unix socketpair and that end half-closed; conn_main
 * then serves the other end on this thread. What the server sends waits in its socket's buffer,
 * made large enough for any reply (SO_SNDBUFFORCE, as root), and is read and dropped after
 * conn_main returns: a reader thread woken by every reply made each input cost several context
 * switches, which on a loaded machine cut the speed to ~1k exec/s. Without the privilege a
 * helper thread reads while the server sends, as before. The server's regions are small
 * (12 pages: zero, compressible and random ones) so that replies are cheap. Two sessions always
 * exist, so a joining HELLO can name one: 0x1234 with a secret (join -> CHALLENGE -> PROOF) and
 * 0x5678 without one (join, then REQ/HAVE on it); they are reset before each input.
 * ASan/UBSan and the server's own checks are the oracle.
 */
#include "../lib/net/server.c"

#include <semaphore.h>
#include <signal.h>

#define SESS_PROOF 0x1234ull  /* a session opened with PN_FEAT_PROOF (it has a secret) */
#define SESS_PLAIN 0x5678ull  /* a session without one */
#define FUZZ_MAX (1u << 16)

static struct pagein_server *srv;
static struct srv_session *fixed[2];
static pi_bits_t *fixed_sent; /* the fresh sent bitmap (its tail bits set) */
static size_t sent_bytes;
static uint8_t *mem;
static sem_t go, drained;
static int drain_fd = -1;
static bool big_buffers; /* SO_SNDBUFFORCE works: no reader thread needed */
#define SERVER_SNDBUF (64 << 20) /* more than any reply to a 64 KiB input (2048 REQs of 32 KiB) */

/* libFuzzer's SIGALRM (its -timeout watchdog) interrupts waits: a sem_wait cut short would let
 * the input be freed while the helper thread still uses it. The helper thread blocks the
 * asynchronous signals, and the fuzzer's thread waits again after one. */
static void wait_for(sem_t *s)
{
	while (sem_wait(s) && errno == EINTR)
		;
}

static void block_async_signals(void)
{
	sigset_t set;

	sigfillset(&set);
	sigdelset(&set, SIGSEGV);
	sigdelset(&set, SIGBUS);
	sigdelset(&set, SIGFPE);
	sigdelset(&set, SIGILL);
	sigdelset(&set, SIGABRT);
	sigdelset(&set, SIGTRAP);
	pthread_sigmask(SIG_BLOCK, &set, NULL);
}

/* Reads what the server sends on the client end until it closes: keeps a reply from filling
 * the socket and blocking the server. */
static void *drain_main(void *arg)
{
	static char junk[1 << 16];

	block_async_signals();
	for (;;) {
		wait_for(&go);
		while (read(drain_fd, junk, sizeof(junk)) > 0)
			;
		sem_post(&drained);
	}
	return NULL;
}

static struct srv_session *fixed_session(uint64_t id, bool secret)
{
	struct sockaddr_storage other = { .ss_family = AF_INET6 }; /* not the fuzzed peer's host */
	struct srv_session *s = session_create(srv, &other);

	if (!s)
		abort();
	s->id = id;
	s->conns = 1; /* held by the harness: never freed by a connection leaving */
	if (secret) {
		memset(s->secret, 0x5a, sizeof(s->secret));
		s->has_secret = true;
	}
	return s;
}

/* FUZZ_LOG=1 in the environment prints the server's log: what a seed reaches, and why not. */
static void log_stderr(void *arg, int level, const char *msg)
{
	fprintf(stderr, "server[%d]: %s\n", level, msg);
}

static void setup(void)
{
	struct pagein_server_config cfg;
	pthread_t t;
	unsigned i;

	mem = malloc(12 * PN_PAGE);
	if (!mem)
		abort();
	memset(mem, 0, PN_PAGE);                    /* page 0: zero */
	memset(mem + PN_PAGE, 7, 3 * PN_PAGE);      /* pages 1-3: compressible */
	for (i = 4 * PN_PAGE; i < 12 * PN_PAGE; i++) /* pages 4-11: random-looking */
		mem[i] = (uint8_t)((i * 2654435761u) >> 13);
	pagein_server_config_init(&cfg);
	cfg.listen = "127.0.0.1:0"; /* never bound: no listener, no accept thread */
	cfg.timeout_ms = 200;       /* the input is all there, ending in EOF: no wait is that long */
	if (getenv("FUZZ_LOG"))
		cfg.log = log_stderr;
	if (pagein_server_new(&cfg, &srv) || pagein_server_add_memory(srv, 0, 8 * PN_PAGE, mem) ||
	    pagein_server_add_memory(srv, 1u << 20, 4 * PN_PAGE, mem + 8 * PN_PAGE))
		abort();
	/* not started: stop_efd stays -1, which poll() ignores */
	fixed[0] = fixed_session(SESS_PROOF, true);
	fixed[1] = fixed_session(SESS_PLAIN, false);
	sent_bytes = (srv->total_pages + 63) / 64 * sizeof(pi_bits_t);
	fixed_sent = malloc(sent_bytes);
	if (!fixed_sent)
		abort();
	memcpy(fixed_sent, fixed[0]->sent, sent_bytes);
	{
		int sv[2], size = SERVER_SNDBUF;

		if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv))
			abort();
		big_buffers = !setsockopt(sv[1], SOL_SOCKET, SO_SNDBUFFORCE, &size, sizeof(size));
		close(sv[0]);
		close(sv[1]);
	}
	if (!big_buffers && (sem_init(&go, 0, 0) || sem_init(&drained, 0, 0) ||
			     pthread_create(&t, NULL, drain_main, NULL)))
		abort();
}

/* Each input starts from the same two sessions (a REQ or HAVE on one changes it). */
static void fixed_reset(void)
{
	unsigned i;

	for (i = 0; i < 2; i++) {
		struct srv_session *s = fixed[i];

		memcpy(s->sent, fixed_sent, sent_bytes);
		atomic_store(&s->left, srv->total_pages);
		s->cursor = s->hint = 0;
		atomic_store(&s->active, false);
		atomic_store(&s->resuming, false);
		s->born_ns = pi_now_ns();
		s->conns = 1;
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct sockaddr_storage peer = { .ss_family = AF_INET };
	static struct srv_conn *c;
	size_t off = 0;
	int sv[2], big = 1 << 20, huge = SERVER_SNDBUF;
	static char junk[1 << 16];

	if (!srv)
		setup();
	((struct sockaddr_in *)&peer)->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	((struct sockaddr_in *)&peer)->sin_port = htons(40000);
	if (size > FUZZ_MAX)
		return 0;
	fixed_reset();
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv))
		abort();
	setsockopt(sv[0], SOL_SOCKET, SO_SNDBUF, &big, sizeof(big));
	while (off < size) {
		ssize_t w = send(sv[0], data + off, size - off, MSG_NOSIGNAL | MSG_DONTWAIT);

		if (w <= 0)
			abort(); /* 64 KiB always fits in an empty socket's buffer */
		off += (size_t)w;
	}
	shutdown(sv[0], SHUT_WR); /* past the input, the server reads EOF */
	if (big_buffers) {
		setsockopt(sv[1], SOL_SOCKET, SO_SNDBUFFORCE, &huge, sizeof(huge));
	} else {
		drain_fd = sv[0];
		sem_post(&go);
	}

	/* what conn_spawn does for an accepted socket, minus the thread; the connection's struct
	 * is reused (fresh ~10 KiB from ASan's allocator each time cost page faults) */
	if (!c && !(c = malloc(sizeof(*c))))
		abort();
	memset(c, 0, sizeof(*c));
	c->srv = srv;
	c->fd = sv[1];
	pi_conn_plain(&c->tc, sv[1]);
	peer_name(&peer, c->peer, sizeof(c->peer));
	host_of(&peer, &c->addr);
	pthread_mutex_lock(&srv->lock);
	srv->nconns++;
	pthread_mutex_unlock(&srv->lock);
	conn_main(c); /* closes sv[1]: what it sent, then EOF, is left to read */

	if (big_buffers)
		while (read(sv[0], junk, sizeof(junk)) > 0)
			;
	else
		wait_for(&drained);
	close(sv[0]);
	free(c->buf); /* conn_free, but for c itself */
	free(c->cbuf);
	free(c->have);
	return 0;
}
