// SPDX-License-Identifier: MIT
/*
 * fuzz_client_welcome.c - libFuzzer target for what a destination parses while it opens a
 * connection (lib/net/client.c, pi_net_conn_open): the server's answer to HELLO, i.e. WELCOME
 * with its region table and session secret, a CHALLENGE on a join, or an ERROR refusal.
 * client.c is compiled into this target and pi_net_conn_open runs unchanged: it connects (to a
 * Unix socket here: the address is the harness's, the code is the client's), sends its HELLO,
 * and reads the input, which a helper thread sends as the server and then half-closes.
 *
 * Input: byte 0 flags (1: join session 0x1234 instead of opening one, 2: the session has a
 * secret (a join is challenged), 4: pause on (HEARTBEAT and RESUME asked), 8: a resume's reopen
 * (the table must be the known one), 16: LZ4 asked, 32: bulk role, 64: a rejoin, which asks
 * RESUME on a join); the rest is what the server sends. Checked besides ASan/UBSan: a connection accepted has only features it asked for and a
 * valid region table.
 *
 * pi_net_conn_open allocates about 6 MiB of receive buffers per connection; under ASan that
 * (mmap, poison, unmap) would cost more than the parsing, so for client.c only, allocations of
 * those sizes come from buffers made once (still ASan-checked globals).
 */
/* every header client.c includes, first: the malloc/free macros below reach client.c only */
#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <lz4.h>
#include <netdb.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "net/auth.h"
#include "net/client.h"
#include "net/have.h"

static void *fuzz_malloc(size_t n);
static void fuzz_free(void *p);
#define malloc(n) fuzz_malloc(n)
#define free(p) fuzz_free(p)
#include "../lib/net/client.c"
#undef malloc
#undef free

#include <semaphore.h>
#include <signal.h>
#include <sys/un.h>

#define SESSION 0x1234ull

/* The big buffers, each handed out once at a time (the stage and the huge page are both 2 MiB) */
static uint8_t pool_rbuf[NS_RBUF], pool_body[PN_MAX_BODY], pool_stage[PN_MAX_PAGES * PN_PAGE],
	pool_huge[NS_HUGE];
static struct {
	uint8_t *buf;
	size_t size;
	bool used;
} pool[4] = { { pool_rbuf, sizeof(pool_rbuf) }, { pool_body, sizeof(pool_body) },
	      { pool_stage, sizeof(pool_stage) }, { pool_huge, sizeof(pool_huge) } };

static void *fuzz_malloc(size_t n)
{
	unsigned i;

	for (i = 0; i < 4; i++)
		if (!pool[i].used && pool[i].size == n) {
			pool[i].used = true;
			return pool[i].buf;
		}
	return malloc(n);
}

static void fuzz_free(void *p)
{
	unsigned i;

	for (i = 0; i < 4; i++)
		if (p == pool[i].buf) {
			pool[i].used = false;
			return;
		}
	free(p);
}

static struct netsrc *ns;
static struct netsrc fresh; /* ns as set up, restored before each input */
static int lfd = -1;
static struct sockaddr_un addr = { .sun_family = AF_UNIX };
static const uint8_t *in;
static size_t in_len;
static sem_t go, done;

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

static void remove_socket(void)
{
	unlink(addr.sun_path);
}

/* The server: accept, send the input, half-close, read the client's bytes until it closes. */
static void *server_main(void *arg)
{
	static char junk[4096];
	size_t off;
	int fd;

	block_async_signals();
	for (;;) {
		wait_for(&go);
		fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
		if (fd < 0)
			abort();
		for (off = 0; off < in_len;) {
			ssize_t w = send(fd, in + off, in_len - off, MSG_NOSIGNAL);

			if (w <= 0)
				break; /* the client closed: it has read what it wanted */
			off += (size_t)w;
		}
		shutdown(fd, SHUT_WR);
		while (read(fd, junk, sizeof(junk)) > 0)
			;
		close(fd);
		sem_post(&done);
	}
	return NULL;
}

/* FUZZ_LOG=1 in the environment prints the client's log: what a seed reaches. */
static void log_stderr(void *arg, int level, const char *msg)
{
	fprintf(stderr, "client[%d]: %s\n", level, msg);
}

static void setup(void)
{
	pthread_t t;
	unsigned i;

	snprintf(addr.sun_path, sizeof(addr.sun_path), "/tmp/fuzz_welcome.%d", (int)getpid());
	unlink(addr.sun_path);
	lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	ns = calloc(1, sizeof(*ns));
	if (lfd < 0 || !ns || bind(lfd, (struct sockaddr *)&addr, sizeof(addr)) || listen(lfd, 4))
		abort();
	atexit(remove_socket);
	pthread_mutex_init(&ns->lock, NULL);
	pagein_net_config_init(&ns->cfg);
	ns->cfg.connect_timeout_ms = 5000; /* never reached: the server's end always closes */
	if (getenv("FUZZ_LOG"))
		ns->cfg.log = log_stderr;
	snprintf(ns->addr, sizeof(ns->addr), "fuzz");
	memcpy(&ns->sa[0], &addr, sizeof(addr));
	ns->salen[0] = sizeof(addr);
	ns->naddrs = 1;
	/* the table a join or a reopen must get again (as a first WELCOME would have set it) */
	ns->nregions = 2;
	ns->regions[0] = (struct pn_region){ .gpa = 0, .size = 1u << 20, .digest = 0x1111 };
	ns->regions[1] = (struct pn_region){ .gpa = 4u << 20, .size = 2u << 20, .digest = 0x2222 };
	for (i = 0; i < sizeof(ns->secret); i++)
		ns->secret[i] = (uint8_t)i;
	fresh = *ns;
	if (sem_init(&go, 0, 0) || sem_init(&done, 0, 0) ||
	    pthread_create(&t, NULL, server_main, NULL))
		abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct ns_conn *c;
	uint32_t asked;
	unsigned i;
	int err = 0;

	if (!ns)
		setup();
	if (size < 1 || size > (64u << 10))
		return 0;
	memcpy(ns, &fresh, sizeof(*ns)); /* plain fields only: the lock is never held here */
	if (getenv("FUZZ_LOG"))
		fprintf(stderr, "input: flags %#x, %zu bytes\n", data[0], size - 1);
	ns->has_secret = data[0] & 2;
	ns->cfg.no_pause = !(data[0] & 4);
	ns->rejoin = data[0] & 64;
	ns->reopen = data[0] & 8;
	ns->cfg.compress = data[0] & 16;
	in = data + 1;
	in_len = size - 1;
	sem_post(&go);
	c = pi_net_conn_open(ns, data[0] & 32 ? PN_ROLE_BULK : PN_ROLE_URGENT,
			     data[0] & 1 ? SESSION : 0, &err);
	if (c) {
		asked = (ns->cfg.compress ? PN_FEAT_LZ4 : 0) | PN_FEAT_PROOF | PN_FEAT_FAIL |
			(!ns->cfg.no_pause ? PN_FEAT_HEARTBEAT |
			 (data[0] & 1 && !ns->rejoin ? 0 : PN_FEAT_RESUME) : 0);
		if (c->features & ~asked || !ns->nregions || ns->nregions > PN_MAX_REGIONS)
			abort();
		for (i = 0; i < ns->nregions; i++)
			if (!ns->regions[i].size || ns->regions[i].gpa % PN_PAGE ||
			    ns->regions[i].size % PN_PAGE)
				abort();
		pi_conn_close(&c->tc);
		fuzz_free(c->rbuf);
		fuzz_free(c->body);
		fuzz_free(c->stage);
		fuzz_free(c->huge);
		fuzz_free(c);
	} else if (err >= 0) {
		abort(); /* a failure always says which */
	}
	wait_for(&done);
	for (i = 0; i < 4; i++)
		if (pool[i].used)
			abort(); /* a buffer pi_net_conn_open did not free */
	return 0;
}
