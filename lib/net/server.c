// SPDX-License-Identifier: MIT
/*
 * server.c - the page server (migration source side, docs/protocol.md): listens for destinations,
 * answers HELLO with the region table, answers page requests at once and streams every page not
 * sent yet over bulk connections, jumping to the pages after the latest request. One thread per
 * connection; a session ties one destination's connections to a shared "sent" bitmap.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <limits.h>
#include <lz4.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include "internal.h"
#include "pagein-net.h"
#include "net/auth.h"
#include "net/have.h"
#include "net/tls.h"
#include "net/wire.h"

#define SRV_LZ4_MAX (PN_PAGE * 3 / 4 - 1) /* an LZ4 page is sent only when smaller than 3/4 page */
#define SRV_FETCH_MAX 64u     /* pages per source fetch: one zero_mask word */
#define SRV_CONNS_PER_SESSION 8u /* live connections allowed: this many per allowed session */
#define SRV_LZ4_BACKOFF 32u   /* most bulk batches sent uncompressed after one that did not pay */
#define SRV_SEND_STALL_X 6u   /* a peer taking no byte for this many timeout_ms is dropped */
#define SRV_DRAIN_MS 200      /* a refused peer's time to read our PN_ERROR before we close */
#define SRV_NO_PAGE UINT64_MAX
#define SRV_LOWAT_FRAMES 2    /* bulk: unsent bytes the kernel may queue, in frames */
#define SRV_LOWAT_MIN (256 << 10) /* ... and at least this many */
#define SRV_SEQ_RUNS 8u       /* sequential fault runs a session tracks */
#define SRV_SEQ_SLACK 256u    /* a REQ this many pages past a run's end still continues it */
#define SRV_SEQ_LIVE_NS 20000000ull /* a run with no REQ for this long is over (20 ms) */
#define SRV_SEQ_GUARD 2048u   /* the stream keeps this many pages (8 MiB) ahead of a run clear */

/* One served region. */
struct srv_region {
	uint64_t gpa;              /* guest address, 4 KiB-aligned */
	uint64_t size;             /* bytes, a multiple of 4 KiB */
	uint64_t digest;           /* XXH3-64 of its bytes, for WELCOME */
	uint64_t first;            /* server-wide index of its first page */
	const uint8_t *mem;        /* add_memory: the caller's bytes; NULL for a snapshot region */
	struct pagein_source *src; /* snapshot region: the file source (shared by its regions) */
};

/* One destination: the shared state of its connections. */
struct srv_session {
	uint64_t id;            /* random, non-zero: what a joining HELLO names */
	unsigned conns;         /* connections attached (server lock) */
	pthread_mutex_t lock;   /* cursor and hint */
	uint64_t cursor;        /* next page the bulk stream looks at */
	uint64_t hint;          /* page right after the latest request, + 1; 0 = none */
	struct {
		uint64_t end;   /* page after the run's latest REQ */
		uint64_t ns;    /* when that REQ came; 0 = slot unused */
	} seq[SRV_SEQ_RUNS];    /* sequential fault runs (lock): the stream keeps away from them */
	_Atomic uint64_t left;  /* pages whose sent bit is still clear (for the closing log) */
	pi_bits_t *sent;        /* one bit per page: sent, or being sent, on some connection */
	struct sockaddr_storage peer; /* the address that opened it (per-peer limit), port 0 */
	uint64_t born_ns;       /* when it was opened (idle limit) */
	_Atomic bool active;    /* a bulk connection joined or a request came: never idle-closed */
	_Atomic bool resuming;  /* opened to resume: no bulk frame before its last HAVE */
	bool has_secret;        /* opened with PN_FEAT_PROOF: joins must prove secret */
	bool resumable;         /* opened with PN_FEAT_RESUME: kept for grace_ms once orphaned,
				 * and a proven join may resume it (server lock) */
	uint64_t orphan_ns;     /* when its last connection closed, 0 while it has some (lock) */
	bool rejoined;          /* a resume rejoined it: its first HAVE resets sent (lock) */
	unsigned epoch;         /* bumped by each rejoin (lock) */
	unsigned stale;         /* connections of an older epoch still attached (lock) */
	uint8_t secret[PN_SECRET];
	struct srv_session *next;
};

/* One accepted connection and its thread. */
struct srv_conn {
	struct pagein_server *srv;
	pthread_t thread;
	int fd;                   /* -1 once closed (server lock) */
	_Atomic bool done;        /* the thread has finished: join and free it */
	char peer[64];            /* "addr:port" for logs */
	struct sockaddr_storage addr; /* the peer's address, port 0 (per-peer limits) */
	struct srv_session *sess; /* NULL until the handshake is done */
	unsigned epoch;           /* sess->epoch when it attached (server lock) */
	uint32_t role;            /* enum pn_role */
	uint32_t batch;           /* bulk pages per frame */
	uint32_t features;        /* PN_FEAT_* granted */
	bool end_sent;            /* PN_END went out (bulk) */
	uint64_t last_send_ns;    /* when this thread last sent a frame (heartbeats) */
	struct pi_conn tc;        /* the transport on fd: plain TCP or TLS */
	uint8_t *have;            /* a HAVE body being read (PN_HAVE_MAX_BODY; resuming conns) */
	uint64_t have_next;       /* the end of the last HAVE window */
	uint64_t have_present;    /* pages the destination said it has */
	uint64_t have_sent;       /* a rejoin: pages the session had sent before it */
	bool rejected;            /* we sent PN_ERROR: linger before closing */
	unsigned lz4_skip;        /* bulk batches still to send without trying LZ4 */
	unsigned lz4_backoff;     /* the next skip after a batch that did not compress */
	uint8_t *buf;             /* PN_MAX_PAGES pages read from a snapshot (NULL: memory only) */
	uint8_t *cbuf;            /* batch x SRV_LZ4_MAX: compressed pages (LZ4 granted, bulk) */
	uint8_t head[sizeof(struct pn_hdr) + sizeof(struct pn_pages) + 4 * PN_MAX_PAGES];
	struct iovec iov[PN_MAX_PAGES + 1]; /* head, then payloads */
	struct srv_conn *next;
};

/* The counters of struct pagein_server_stats, as atomics (same names, same meanings). */
struct srv_counters {
	_Atomic uint64_t sessions, sessions_active, connections, refused, malformed, requests,
		pages_urgent, pages_bulk, pages_lz4, bytes_sent, pages_twice, sessions_completed,
		bulk_throttled_ns;
};

/* The bulk stream's bandwidth limit: a token bucket shared by every bulk connection. */
struct srv_bw {
	pthread_mutex_t lock; /* the fields below */
	uint64_t rate;        /* bytes per second; 0 = no limit */
	int64_t tokens;       /* bytes that may go now; negative: a debt to wait out */
	uint64_t last_ns;     /* when tokens were last refilled */
};

struct pagein_server {
	struct pagein_server_config cfg; /* a copy; cfg.listen points at listen_str */
	char listen_str[128];         /* the address asked for, for logs */
	struct sockaddr_storage addr; /* parsed listen address */
	socklen_t addrlen;            /* its length */
	struct pi_tls_ctx *tls;       /* TLS credentials, NULL: plain TCP */
	struct srv_region regions[PN_MAX_REGIONS]; /* in the order added: page numbering */
	struct pn_region table[PN_MAX_REGIONS]; /* the same as WELCOME sends them (lookups) */
	unsigned nregions;            /* used entries of regions */
	uint64_t total_pages;         /* over all regions */
	bool has_snapshot;            /* some region is read through a source */
	struct pagein_source *srcs[PN_MAX_REGIONS]; /* snapshot sources to free */
	unsigned nsrcs;               /* used entries of srcs */
	int lfd;                      /* listening socket, -1 when not listening */
	int stop_efd;                 /* eventfd: readable once stopping */
	int port;                     /* the port bound (after start) */
	bool started;                 /* pagein_server_start succeeded (owner thread only) */
	bool stopped;                 /* pagein_server_stop ran (owner thread only) */
	pthread_t accept_thread;      /* accepts and spawns connection threads */
	pthread_mutex_t lock;         /* sessions, nsessions, conns, nconns, srv_conn.fd */
	struct srv_session *sessions; /* open sessions */
	unsigned nsessions;           /* how many: checked against max_sessions */
	struct srv_conn *conns;       /* every connection thread not joined yet */
	unsigned nconns;              /* live (not done) connections */
	struct srv_counters st;       /* pagein_server_stats_get reads these */
	_Atomic bool draining;        /* pagein_server_drain: no new session from now on */
	struct srv_bw bw;             /* the bulk stream's bandwidth limit */
};

#define STAT_ADD(srv, f, v) atomic_fetch_add_explicit(&(srv)->st.f, (v), memory_order_relaxed)

/* Log through the server's callback (from any of its threads). */
#define srv_log(srv, level, ...) pi_wire_log((srv)->cfg.log, (srv)->cfg.log_arg, level, __VA_ARGS__)

void pagein_server_config_init(struct pagein_server_config *cfg)
{
	memset(cfg, 0, sizeof(*cfg));
	cfg->size = sizeof(*cfg);
	cfg->listen = "127.0.0.1:0";
	cfg->max_sessions = 16;
	cfg->compress = true;
	cfg->timeout_ms = 10000;
	cfg->idle_ms = 30000;
	cfg->max_sessions_per_peer = 8;
	cfg->max_conns_per_peer = 40;
	cfg->grace_ms = 60000;
}

/* The peer's address without its port: what the per-peer limits count by. */
static void host_of(const struct sockaddr_storage *sa, struct sockaddr_storage *out)
{
	memset(out, 0, sizeof(*out));
	out->ss_family = sa->ss_family;
	if (sa->ss_family == AF_INET6)
		((struct sockaddr_in6 *)out)->sin6_addr = ((const struct sockaddr_in6 *)sa)->sin6_addr;
	else
		((struct sockaddr_in *)out)->sin_addr = ((const struct sockaddr_in *)sa)->sin_addr;
}

static bool same_host(const struct sockaddr_storage *a, const struct sockaddr_storage *b)
{
	return !memcmp(a, b, sizeof(*a)); /* both made by host_of */
}

/* "A.B.C.D:PORT", "[v6]:PORT" or "localhost:PORT" -> sockaddr. Numeric only: no DNS here. */
static int parse_listen(const char *s, struct sockaddr_storage *ss, socklen_t *len)
{
	char host[64];
	const char *port, *end;
	unsigned long p;
	bool v6 = s[0] == '[';
	char *stop;
	size_t hl;

	if (v6) {
		end = strchr(s, ']');
		if (!end || end[1] != ':')
			return -EINVAL;
		hl = (size_t)(end - s - 1);
		s++;
		port = end + 2;
	} else {
		end = strrchr(s, ':');
		if (!end)
			return -EINVAL;
		hl = (size_t)(end - s);
		port = end + 1;
	}
	if (!hl || hl >= sizeof(host) || !*port || *port < '0' || *port > '9')
		return -EINVAL;
	memcpy(host, s, hl);
	host[hl] = 0;
	errno = 0;
	p = strtoul(port, &stop, 10);
	if (errno || *stop || p > 65535)
		return -EINVAL;
	if (!strcmp(host, "localhost"))
		strcpy(host, "127.0.0.1");
	memset(ss, 0, sizeof(*ss));
	if (v6 || strchr(host, ':')) {
		struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)ss;

		if (inet_pton(AF_INET6, host, &a6->sin6_addr) != 1)
			return -EINVAL;
		a6->sin6_family = AF_INET6;
		a6->sin6_port = htons((uint16_t)p);
		*len = sizeof(*a6);
	} else {
		struct sockaddr_in *a4 = (struct sockaddr_in *)ss;

		if (inet_pton(AF_INET, host, &a4->sin_addr) != 1)
			return -EINVAL;
		a4->sin_family = AF_INET;
		a4->sin_port = htons((uint16_t)p);
		*len = sizeof(*a4);
	}
	return 0;
}

int pagein_server_new(const struct pagein_server_config *cfg, struct pagein_server **out)
{
	struct pagein_server_config def;
	struct pagein_server *srv;
	int ret;

	pagein_server_config_init(&def);
	if (cfg && pi_wire_cfg_copy(&def, sizeof(def), cfg) < 0) {
		pi_wire_log(cfg->size ? cfg->log : NULL, cfg->log_arg, PAGEIN_LOG_ERR,
			    "pagein_server_config: fill it with pagein_server_config_init first");
		return -EINVAL;
	}
	srv = calloc(1, sizeof(*srv));
	if (!srv)
		return -ENOMEM;
	srv->cfg = def;
	if (!srv->cfg.listen)
		srv->cfg.listen = "127.0.0.1:0";
	snprintf(srv->listen_str, sizeof(srv->listen_str), "%s", srv->cfg.listen);
	srv->cfg.listen = srv->listen_str; /* the caller's string need not outlive the call */
	srv->lfd = -1;
	srv->stop_efd = -1;
	ret = parse_listen(srv->listen_str, &srv->addr, &srv->addrlen);
	if (ret < 0) {
		srv_log(srv, PAGEIN_LOG_ERR, "listen address '%s' is not ADDR:PORT (examples: "
			"127.0.0.1:7000, [::1]:7000, 0.0.0.0:0)", srv->listen_str);
		goto err;
	}
	if (!srv->cfg.max_sessions || !srv->cfg.timeout_ms) {
		srv_log(srv, PAGEIN_LOG_ERR, "max_sessions and timeout_ms must be at least 1 "
			"(pagein_server_config_init sets 16 and 10000)");
		ret = -EINVAL;
		goto err;
	}
	{
		char why[320];

		ret = pi_tls_ctx_from(srv->cfg.psk_file, srv->cfg.tls_cert, srv->cfg.tls_key,
				      srv->cfg.tls_ca, NULL,
				      true, &srv->tls, why, sizeof(why));
		if (ret < 0) {
			srv_log(srv, PAGEIN_LOG_ERR, "TLS: %s", why);
			goto err;
		}
	}
	if (!srv->tls && !srv->cfg.insecure && !pi_addr_is_loopback(&srv->addr)) {
		/* secure by default: guest memory is not served to whoever reaches the port */
		srv_log(srv, PAGEIN_LOG_ERR, "refusing to serve memory on %s without "
			"authentication: give a PSK file or certificates (TLS), or allow it "
			"expressly (insecure; --insecure)", srv->listen_str);
		ret = -EACCES;
		goto err;
	}
	pthread_mutex_init(&srv->lock, NULL);
	pthread_mutex_init(&srv->bw.lock, NULL);
	srv->bw.rate = srv->cfg.max_bandwidth;
	*out = srv;
	return 0;
err:
	pi_tls_ctx_free(srv->tls);
	free(srv);
	return ret;
}

/* Check a new region against the others; 0 or -errno (logged). */
static int region_check(struct pagein_server *srv, uint64_t gpa, uint64_t size)
{
	unsigned i;
	int ret;

	if (srv->started)
		return -EBUSY;
	ret = pi_wire_region_check(srv->table, srv->nregions, gpa, size, &i);
	if (ret == -EINVAL) {
		srv_log(srv, PAGEIN_LOG_ERR, "region [%#llx, +%#llx) is empty, not 4 KiB-aligned or "
			"wraps", (unsigned long long)gpa, (unsigned long long)size);
		return -EINVAL;
	}
	if (ret < 0) {
		srv_log(srv, PAGEIN_LOG_ERR, "region [%#llx, +%#llx) overlaps [%#llx, +%#llx)",
			(unsigned long long)gpa, (unsigned long long)size,
			(unsigned long long)srv->table[i].gpa, (unsigned long long)srv->table[i].size);
		return -EINVAL;
	}
	if (srv->nregions == PN_MAX_REGIONS) {
		srv_log(srv, PAGEIN_LOG_ERR, "more than %u regions", PN_MAX_REGIONS);
		return -ENOSPC;
	}
	return 0;
}

static void region_push(struct pagein_server *srv, uint64_t gpa, uint64_t size, uint64_t digest,
			const void *mem, struct pagein_source *src)
{
	srv->table[srv->nregions] = (struct pn_region){ .gpa = gpa, .size = size, .digest = digest };
	srv->regions[srv->nregions++] = (struct srv_region){
		.gpa = gpa, .size = size, .digest = digest, .first = srv->total_pages,
		.mem = mem, .src = src,
	};
	srv->total_pages += size / PN_PAGE;
}

int pagein_server_add_memory(struct pagein_server *srv, uint64_t gpa, uint64_t size,
			     const void *mem)
{
	int ret;

	if (!mem)
		return -EINVAL;
	ret = region_check(srv, gpa, size);
	if (ret < 0)
		return ret;
	region_push(srv, gpa, size, pagein_digest(mem, size), mem, NULL);
	return 0;
}

int pagein_server_add_snapshot(struct pagein_server *srv, const char *path)
{
	struct pagein_region_desc regs[PN_MAX_REGIONS];
	struct pagein_source *src;
	unsigned i, saved = srv->nregions;
	uint64_t saved_total = srv->total_pages;
	int n, ret;

	if (srv->started)
		return -EBUSY;
	ret = pagein_source_file_new(path, &src);
	if (ret < 0) {
		srv_log(srv, PAGEIN_LOG_ERR, "%s: %s", path, ret == -EINVAL ? "not a pagein snapshot "
			"or a corrupt header" : ret == -ENODATA ? "truncated (shorter than its header "
			"says)" : strerror(-ret));
		return ret;
	}
	n = pagein_snapshot_regions(path, regs, PN_MAX_REGIONS);
	if (n < 0) {
		ret = n;
		goto err;
	}
	if ((unsigned)n > PN_MAX_REGIONS) {
		ret = -ENOSPC;
		goto err;
	}
	for (i = 0; i < (unsigned)n; i++) {
		ret = region_check(srv, regs[i].gpa, regs[i].size);
		if (ret < 0)
			goto err;
		region_push(srv, regs[i].gpa, regs[i].size, regs[i].digest, NULL, src);
	}
	srv->srcs[srv->nsrcs++] = src;
	srv->has_snapshot = true;
	return 0;
err:
	srv->nregions = saved;
	srv->total_pages = saved_total;
	pagein_source_free(src);
	return ret;
}

/* ---- sessions ---- */

static uint64_t session_new_id(struct pagein_server *srv)
{
	static _Atomic uint64_t counter;
	struct srv_session *s;
	uint64_t id = 0;

	for (;;) {
		if (getrandom(&id, sizeof(id), GRND_NONBLOCK) != sizeof(id))
			id = (pi_now_ns() ^ (atomic_fetch_add(&counter, 1) << 48)) *
			     0x9e3779b97f4a7c15ull;
		if (!id)
			continue;
		for (s = srv->sessions; s && s->id != id; s = s->next)
			;
		if (!s)
			return id;
	}
}

/* Create a session for a peer at addr (server lock held). NULL on -ENOMEM. */
static struct srv_session *session_create(struct pagein_server *srv,
					  const struct sockaddr_storage *addr)
{
	uint64_t words = (srv->total_pages + 63) / 64, i;
	struct srv_session *s = calloc(1, sizeof(*s));

	if (!s)
		return NULL;
	s->sent = calloc(words, sizeof(*s->sent));
	if (!s->sent) {
		free(s);
		return NULL;
	}
	/* bits past the last page count as sent, so a scan never finds them */
	for (i = srv->total_pages; i < words * 64; i++)
		pi_test_set(s->sent, i, memory_order_relaxed);
	pthread_mutex_init(&s->lock, NULL);
	atomic_init(&s->left, srv->total_pages);
	s->peer = *addr;
	s->born_ns = pi_now_ns();
	s->id = session_new_id(srv);
	s->next = srv->sessions;
	srv->sessions = s;
	srv->nsessions++;
	STAT_ADD(srv, sessions, 1);
	STAT_ADD(srv, sessions_active, 1);
	return s;
}

/* Unlink and free a session (server lock held). */
static void session_free(struct pagein_server *srv, struct srv_session *s)
{
	struct srv_session **pp;

	for (pp = &srv->sessions; *pp != s; pp = &(*pp)->next)
		;
	*pp = s->next;
	srv->nsessions--;
	if (!atomic_load(&s->left))
		STAT_ADD(srv, sessions_completed, 1);
	srv_log(srv, PAGEIN_LOG_INFO, "session %#llx ended: %llu of %llu pages sent",
		(unsigned long long)s->id,
		(unsigned long long)(srv->total_pages - atomic_load(&s->left)),
		(unsigned long long)srv->total_pages);
	pthread_mutex_destroy(&s->lock);
	free(s->sent);
	free(s);
}

/*
 * Detach a connection (server lock held). The last one frees the session, unless it is
 * resumable: then it waits grace_ms for its destination to rejoin (a lost link), as an orphan.
 */
static void session_put(struct pagein_server *srv, struct srv_session *s, unsigned epoch)
{
	if (epoch != s->epoch && s->stale)
		s->stale--; /* a stale connection of before a rejoin is gone */
	if (--s->conns)
		return;
	atomic_fetch_sub(&srv->st.sessions_active, 1);
	/* A session that has sent every page ends with its last connection: were the end lost in
	 * flight, the destination's refused rejoin falls back to a new session with its HAVE, so
	 * nothing is lost, and --once and sessions_completed see the end now, not after grace_ms. */
	if (s->resumable && s->has_secret && srv->cfg.grace_ms && atomic_load(&s->left)) {
		/* a failed rejoin does not extend the grace period it began in */
		if (!s->orphan_ns)
			s->orphan_ns = pi_now_ns();
		srv_log(srv, PAGEIN_LOG_INFO, "session %#llx: its last connection closed; kept %u ms "
			"for its destination to rejoin", (unsigned long long)s->id,
			srv->cfg.grace_ms);
		return;
	}
	session_free(srv, s);
}

/*
 * A proven resume rejoins s on c (server lock held). The destination closed every connection it
 * had before resuming, so the session's other connections are stale (a cut the server has not
 * noticed yet): shut them down, so that nothing more is marked sent on a dead link. The first
 * HAVE then rebuilds the sent bitmap from what the destination has.
 */
static void session_rejoin(struct pagein_server *srv, struct srv_session *s, struct srv_conn *c)
{
	struct srv_conn *o;
	unsigned n = 0;

	s->rejoined = true;
	atomic_store(&s->resuming, true); /* nothing streams before its last HAVE */
	s->epoch++;
	c->epoch = s->epoch;
	for (o = srv->conns; o; o = o->next)
		if (o != c && o->sess == s) {
			if (o->fd >= 0)
				shutdown(o->fd, SHUT_RDWR);
			n++;
		}
	s->stale = n;
	srv_log(srv, PAGEIN_LOG_INFO, "%s: session %#llx rejoined to resume (%u stale connection%s "
		"closed)", c->peer, (unsigned long long)s->id, n, n == 1 ? "" : "s");
}

/* Free the orphans whose grace period is over (server lock held). */
static void sessions_expire(struct pagein_server *srv)
{
	uint64_t now = pi_now_ns(), grace = (uint64_t)srv->cfg.grace_ms * 1000000ull;
	struct srv_session *s, *next;

	for (s = srv->sessions; s; s = next) {
		next = s->next;
		if (!s->conns && s->orphan_ns && now - s->orphan_ns >= grace)
			session_free(srv, s);
	}
}

/* Free the orphan closest to the end of its grace period, to make room (server lock held).
 * Returns whether there was one. */
static bool session_evict(struct pagein_server *srv)
{
	struct srv_session *s, *old = NULL;

	for (s = srv->sessions; s; s = s->next)
		if (!s->conns && s->orphan_ns && (!old || s->orphan_ns < old->orphan_ns))
			old = s;
	if (old)
		session_free(srv, old);
	return old != NULL;
}

/* Mark pages [p, p+n) sent; returns how many were not sent before. */
static uint64_t session_mark(struct srv_session *s, uint64_t p, uint64_t n)
{
	uint64_t i, fresh = 0;

	for (i = p; i < p + n; i++)
		if (!pi_test_set(s->sent, i, memory_order_relaxed))
			fresh++;
	if (fresh)
		atomic_fetch_sub(&s->left, fresh);
	return fresh;
}

/* First page at or after `from` whose sent bit is clear, wrapping once; SRV_NO_PAGE if none. */
static uint64_t session_find(struct pagein_server *srv, struct srv_session *s, uint64_t from)
{
	uint64_t words = (srv->total_pages + 63) / 64, w, k, bits;

	if (from >= srv->total_pages)
		from = 0;
	w = from / 64;
	bits = ~atomic_load_explicit(&s->sent[w], memory_order_relaxed) & (~0ull << (from % 64));
	for (k = 0; k <= words; k++) {
		if (bits)
			return w * 64 + (uint64_t)__builtin_ctzll(bits);
		w = w + 1 == words ? 0 : w + 1;
		bits = ~atomic_load_explicit(&s->sent[w], memory_order_relaxed);
	}
	return SRV_NO_PAGE;
}

static const struct srv_region *region_of_page(struct pagein_server *srv, uint64_t p)
{
	unsigned i;

	for (i = srv->nregions; i-- > 1;)
		if (p >= srv->regions[i].first)
			break;
	return &srv->regions[i];
}

/* The region holding [gpa, gpa+len), or NULL. */
static const struct srv_region *region_of(struct pagein_server *srv, uint64_t gpa, uint64_t len)
{
	int i = pi_wire_region_find(srv->table, srv->nregions, gpa, len);

	return i < 0 ? NULL : &srv->regions[i];
}

/* The end of the unsent run of pages from p (one word at a time), at most
 * `limit` (the session's bits past the last page read as sent, so the scan stops there). */
static uint64_t unsent_end(struct srv_session *s, uint64_t p, uint64_t limit)
{
	uint64_t w = p / 64, bits;

	bits = atomic_load_explicit(&s->sent[w], memory_order_relaxed) & (~0ull << (p % 64));
	while (!bits && (w + 1) * 64 < limit)
		bits = atomic_load_explicit(&s->sent[++w], memory_order_relaxed);
	if (!bits)
		return limit;
	p = w * 64 + (uint64_t)__builtin_ctzll(bits);
	return p < limit ? p : limit;
}

/*
 * A REQ for [p, p+n): whether it continues a sequential fault run of the session (it starts at
 * or a little past the end of a live run's latest REQ), which it then extends; otherwise it
 * starts a new run in the oldest slot. Session lock held.
 */
static bool seq_note(struct srv_session *s, uint64_t p, uint64_t n, uint64_t now)
{
	unsigned i, old = 0;

	for (i = 0; i < SRV_SEQ_RUNS; i++) {
		if (s->seq[i].ns && now - s->seq[i].ns < SRV_SEQ_LIVE_NS &&
		    p - s->seq[i].end <= SRV_SEQ_SLACK) {
			s->seq[i].end = p + n;
			s->seq[i].ns = now;
			return true;
		}
		if (s->seq[i].ns < s->seq[old].ns)
			old = i;
	}
	s->seq[old].end = p + n;
	s->seq[old].ns = now;
	return false;
}

/*
 * The stream's next page p lies less than SRV_SEQ_GUARD pages ahead of a live fault run (one
 * request is a run too: it may be the first of many). A thread faulting in order fetches those
 * pages itself (its fault-around windows grow to 64 pages), faster than the stream can install
 * them, so whatever the stream sends there is still in flight (socket buffers, the destination's
 * receive queue) when the thread asks for it, and crosses twice: that was 15-28% of a
 * `pagein demo`. Move the stream to the middle of the unsent gap ahead of the run instead, as far
 * from the thread as the gap allows; a short gap is left to the thread (and is streamed once the
 * run is over). *to gets the new cursor. Session lock held.
 */
static bool seq_avoid(struct pagein_server *srv, struct srv_session *s, uint64_t p,
		      uint32_t batch, uint64_t *to)
{
	uint64_t now = pi_now_ns(), g;
	unsigned i;

	for (i = 0; i < SRV_SEQ_RUNS; i++) {
		if (!s->seq[i].ns || now - s->seq[i].ns >= SRV_SEQ_LIVE_NS ||
		    p - s->seq[i].end >= SRV_SEQ_GUARD)
			continue;
		g = unsent_end(s, p, srv->total_pages);
		if (g - p > 2ull * SRV_SEQ_GUARD)
			*to = p + (g - p) / 2 / batch * batch;
		else
			*to = g; /* a short gap: the thread takes it */
		if (*to >= srv->total_pages)
			*to = 0;
		return true;
	}
	return false;
}

/*
 * Pick the bulk stream's next batch for c: jump to the hint if a request left one, then the first
 * unsent page from the cursor and the unsent pages after it up to the end of its batch_pages-
 * aligned window (clipped to the region). Claims them. Returns the page count (0: all sent).
 */
static uint32_t bulk_pick(struct srv_conn *c, const struct srv_region **rp, uint64_t *gpa)
{
	struct pagein_server *srv = c->srv;
	struct srv_session *s = c->sess;
	const struct srv_region *r;
	uint64_t p, q, lo, hi, rend, gp;
	uint32_t n = 0;
	unsigned moves = 0;

	pthread_mutex_lock(&s->lock);
	if (s->hint) {
		s->cursor = s->hint - 1;
		s->hint = 0;
	}
	while (!n) {
		p = session_find(srv, s, s->cursor);
		if (p == SRV_NO_PAGE)
			break;
		/* just ahead of a recent request: move away (at most SRV_SEQ_RUNS times per pick,
		 * then the page goes anyway, so the stream always makes progress) */
		if (moves < SRV_SEQ_RUNS && seq_avoid(srv, s, p, c->batch, &q)) {
			moves++;
			s->cursor = q;
			continue;
		}
		r = region_of_page(srv, p);
		gp = r->gpa / PN_PAGE + (p - r->first); /* guest page number */
		lo = gp / c->batch * c->batch;
		hi = lo + c->batch;
		rend = (r->gpa + r->size) / PN_PAGE;
		if (hi > rend)
			hi = rend;
		for (q = p; gp + (q - p) < hi; q++)
			if (pi_test_set(s->sent, q, memory_order_relaxed))
				break;
		n = (uint32_t)(q - p);
		if (n)
			atomic_fetch_sub(&s->left, n);
		/* a reply claimed p between the scan and here: go on after it */
		s->cursor = q + (n ? 0 : 1);
		if (s->cursor >= srv->total_pages)
			s->cursor = 0;
		*rp = r;
		*gpa = r->gpa + (p - r->first) * PN_PAGE;
	}
	pthread_mutex_unlock(&s->lock);
	return n;
}

/* ---- the bandwidth limit (bulk stream only) ---- */

/* Refill the bucket up to now (bw lock held). It holds at most 50 ms of rate, at least 1 MiB
 * (a few frames), so a limit is kept over any window longer than that. */
static void bw_refill(struct srv_bw *b, uint64_t now)
{
	int64_t cap = (int64_t)(b->rate / 20 > (1u << 20) ? b->rate / 20 : (1u << 20));
	uint64_t add = (uint64_t)((unsigned __int128)(now - b->last_ns) * b->rate / 1000000000u);

	b->last_ns = now;
	b->tokens = add > (uint64_t)INT64_MAX / 2 ? cap : b->tokens + (int64_t)add;
	if (b->tokens > cap)
		b->tokens = cap;
}

/* How long a bulk connection must wait before its next batch, in ms (0: send now). The wait
 * is counted in bulk_throttled_ns. */
static int bw_wait_ms(struct pagein_server *srv)
{
	struct srv_bw *b = &srv->bw;
	uint64_t now = pi_now_ns(), ms = 0;

	pthread_mutex_lock(&b->lock);
	if (b->rate) {
		bw_refill(b, now);
		if (b->tokens < 0)
			ms = ((uint64_t)-b->tokens * 1000u + b->rate - 1) / b->rate;
		if (ms > 1000)
			ms = 1000; /* look again at least every second: the limit may change */
		if (b->tokens < 0 && !ms)
			ms = 1;
	}
	pthread_mutex_unlock(&b->lock);
	if (ms)
		STAT_ADD(srv, bulk_throttled_ns, ms * 1000000u);
	return (int)ms;
}

/* Charge the bulk frame c just sent (its header is in c->head) to the bucket. */
static void bw_charge(struct srv_conn *c)
{
	const struct pn_hdr *h = (const struct pn_hdr *)c->head;
	struct srv_bw *b = &c->srv->bw;

	pthread_mutex_lock(&b->lock);
	if (b->rate) {
		bw_refill(b, pi_now_ns());
		b->tokens -= (int64_t)(sizeof(*h) + le32toh(h->len));
	}
	pthread_mutex_unlock(&b->lock);
}

int pagein_server_set_bandwidth(struct pagein_server *srv, uint64_t bytes_per_s)
{
	pthread_mutex_lock(&srv->bw.lock);
	srv->bw.rate = bytes_per_s;
	srv->bw.tokens = 0;
	srv->bw.last_ns = pi_now_ns();
	pthread_mutex_unlock(&srv->bw.lock);
	return 0;
}

/* ---- sending ---- */

static int conn_reject(struct srv_conn *c, int code, bool malformed, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

/* How long a peer may take no byte at all before the server drops it, in ms. Longer than
 * timeout_ms: a client with urgent off stops reading while it waits for its stream to start. */
static int send_stall_ms(const struct pagein_server *srv)
{
	uint64_t ms = (uint64_t)srv->cfg.timeout_ms * SRV_SEND_STALL_X;

	return ms > INT_MAX ? INT_MAX : (int)ms;
}

/*
 * Send every byte of iov[0..n) (modified). Never blocks for ever: a peer that stops reading for
 * send_stall_ms() is dropped (-ETIMEDOUT), and stopping the server interrupts (-ESHUTDOWN).
 * 0 or -errno.
 */
static int send_iov(struct srv_conn *c, struct iovec *iov, int n)
{
	size_t sent;
	int ret = pi_conn_sendv(&c->tc, iov, n, &sent, send_stall_ms(c->srv), 0,
				c->srv->stop_efd);

	c->last_send_ns = pi_now_ns();
	STAT_ADD(c->srv, bytes_sent, (uint64_t)sent);
	if (ret == -ETIMEDOUT)
		srv_log(c->srv, PAGEIN_LOG_WARN, "%s took no data for %d ms: dropping its "
			"connection", c->peer, send_stall_ms(c->srv));
	return ret;
}

static int send_simple(struct srv_conn *c, uint16_t type, const void *body, uint32_t len)
{
	struct pn_hdr h;
	struct iovec iov[2] = { { &h, sizeof(h) }, { (void *)body, len } };

	pi_wire_hdr(&h, len, type, 0);
	return send_iov(c, iov, len ? 2 : 1);
}

/*
 * Refuse one request (PN_FEAT_FAIL granted): FAIL with its id, gpa and count, and the reason;
 * the connection stays. Returns 1 (the request is answered), or the -errno of the send.
 */
static int conn_fail(struct srv_conn *c, uint64_t id, uint64_t gpa, uint32_t npages, int code,
		     const char *fmt, ...)
{
	struct {
		struct pn_hdr h;
		struct pn_fail f;
		char text[PN_MAX_TEXT + 1];
	} __attribute__((packed)) m;
	struct iovec iov;
	va_list ap;
	int n, ret;

	va_start(ap, fmt);
	n = vsnprintf(m.text, sizeof(m.text), fmt, ap);
	va_end(ap);
	if (n < 0)
		n = 0;
	if (n > (int)PN_MAX_TEXT)
		n = PN_MAX_TEXT;
	srv_log(c->srv, PAGEIN_LOG_WARN, "%s: request refused: %s", c->peer, m.text);
	m.f = (struct pn_fail){ .code = htole32((uint32_t)code), .npages = htole32(npages),
				.gpa = htole64(gpa) };
	pi_wire_hdr(&m.h, (uint32_t)(sizeof(m.f) + (size_t)n), PN_FAIL, id);
	iov = (struct iovec){ &m, sizeof(m.h) + sizeof(m.f) + (size_t)n };
	ret = send_iov(c, &iov, 1);
	return ret < 0 ? ret : 1;
}

/*
 * Send pages [gpa, gpa + n pages) of r as one PAGES frame with this id. Zero pages go as
 * PN_PG_ZERO; with lz4, a page goes as PN_PG_LZ4 when it compresses below 3/4 of a page.
 * Returns 0 or -errno (a source read or the socket).
 */
static int send_pages(struct srv_conn *c, const struct srv_region *r, uint64_t gpa, uint32_t n,
		      uint64_t id, bool lz4)
{
	struct pn_hdr *h = (struct pn_hdr *)c->head;
	struct pn_pages *pg = (struct pn_pages *)(h + 1);
	uint32_t *desc = (uint32_t *)(pg + 1), i, nlz4 = 0, nraw = 0;
	uint64_t zm[PN_MAX_PAGES / 64] = { 0 }, payload = 0, coff = 0;
	const uint8_t *data;
	int niov = 1, ret;

	if (r->mem) {
		data = r->mem + (gpa - r->gpa);
	} else {
		uint64_t deadline = pi_now_ns() + c->srv->cfg.timeout_ms * 1000000ull;

		for (i = 0; i < n; i += SRV_FETCH_MAX) {
			uint32_t k = n - i < SRV_FETCH_MAX ? n - i : SRV_FETCH_MAX;

			ret = r->src->ops.fetch(r->src->ctx, gpa + (uint64_t)i * PN_PAGE,
						c->buf + (size_t)i * PN_PAGE, (uint64_t)k * PN_PAGE,
						PN_PAGE, &zm[i / 64], deadline);
			/* our failure, not the peer's: a request is refused alone (FAIL), else
			 * tell the peer why before closing */
			if (ret < 0 && id && (c->features & PN_FEAT_FAIL))
				return conn_fail(c, id, gpa, n, EIO, "reading pages at %#llx from "
						 "the snapshot failed: %s", (unsigned long long)gpa,
						 strerror(-ret));
			if (ret < 0)
				return conn_reject(c, -ret, false, "reading pages at %#llx from the "
						   "snapshot failed: %s", (unsigned long long)gpa,
						   strerror(-ret));
		}
		data = c->buf;
	}
	for (i = 0; i < n; i++) {
		const uint8_t *p = data + (size_t)i * PN_PAGE;
		const void *src = p;
		uint32_t len = PN_PAGE;

		if (zm[i / 64] >> (i % 64) & 1 || pi_is_zero(p, PN_PAGE)) {
			desc[i] = PN_PG_ZERO;
			continue;
		}
		desc[i] = PN_PG_RAW;
		if (lz4) {
			int cs = LZ4_compress_default((const char *)p, (char *)c->cbuf + coff,
						      PN_PAGE, SRV_LZ4_MAX);

			if (cs > 0) {
				desc[i] = PN_PG_LZ4 | (uint32_t)cs << 8;
				src = c->cbuf + coff;
				len = (uint32_t)cs;
				coff += (uint64_t)cs;
				nlz4++;
			}
		}
		nraw += desc[i] == PN_PG_RAW;
		payload += len;
		/* adjacent payloads (consecutive raw pages of memory) share an iovec */
		if (niov > 1 && (const uint8_t *)c->iov[niov - 1].iov_base + c->iov[niov - 1].iov_len ==
				(const uint8_t *)src) {
			c->iov[niov - 1].iov_len += len;
		} else {
			c->iov[niov].iov_base = (void *)src;
			c->iov[niov].iov_len = len;
			niov++;
		}
	}
	pi_wire_hdr(h, (uint32_t)(sizeof(*pg) + 4ull * n + payload), PN_PAGES, id);
	*pg = (struct pn_pages){ .gpa = gpa, .npages = n };
	c->iov[0].iov_base = c->head;
	c->iov[0].iov_len = sizeof(*h) + sizeof(*pg) + 4ull * n;
	ret = send_iov(c, c->iov, niov);
	if (ret < 0)
		return ret;
	if (lz4) {
		/* compression did not pay on this batch: skip it for a while, longer each time */
		if (!nlz4 && nraw) {
			c->lz4_backoff = c->lz4_backoff ? c->lz4_backoff * 2 : 1;
			if (c->lz4_backoff > SRV_LZ4_BACKOFF)
				c->lz4_backoff = SRV_LZ4_BACKOFF;
			c->lz4_skip = c->lz4_backoff;
		} else if (nlz4) {
			c->lz4_backoff = 0;
		}
		STAT_ADD(c->srv, pages_lz4, nlz4);
	}
	return 0;
}

/*
 * Close c because of what its peer did (or failed to do): log why, count it, send PN_ERROR with
 * the reason. Returns -code for the caller to pass up.
 */
static int conn_reject(struct srv_conn *c, int code, bool malformed, const char *fmt, ...)
{
	struct {
		struct pn_error e;
		char text[PN_MAX_TEXT];
	} __attribute__((packed)) m;
	struct pn_hdr h;
	struct iovec iov[2];
	size_t sent;
	va_list ap;
	int len;

	va_start(ap, fmt);
	len = vsnprintf(m.text, sizeof(m.text), fmt, ap);
	va_end(ap);
	if (len < 0)
		len = 0;
	if (len > (int)PN_MAX_TEXT - 1)
		len = PN_MAX_TEXT - 1;
	c->rejected = true;
	srv_log(c->srv, PAGEIN_LOG_WARN, "%s: closing the connection: %s", c->peer, m.text);
	if (malformed)
		STAT_ADD(c->srv, malformed, 1);
	if (!c->sess)
		STAT_ADD(c->srv, refused, 1);
	m.e.code = (uint32_t)code;
	pi_wire_hdr(&h, (uint32_t)(sizeof(m.e) + (unsigned)len), PN_ERROR, 0);
	iov[0] = (struct iovec){ &h, sizeof(h) };
	iov[1] = (struct iovec){ &m, sizeof(m.e) + (unsigned)len };
	/* a peer that does not read gets no error rather than a stuck thread */
	pi_conn_sendv(&c->tc, iov, 2, &sent, SRV_DRAIN_MS,
		      pi_now_ns() + SRV_DRAIN_MS * 1000000ull, -1);
	STAT_ADD(c->srv, bytes_sent, (uint64_t)sent);
	return -code;
}

/* ---- receiving ---- */

/*
 * Read exactly len bytes into buf; the peer may be silent at most timeout_ms between chunks.
 * *got says how many arrived. 0, -ECONNRESET (EOF or reset), -ETIMEDOUT, -ESHUTDOWN (the server
 * is stopping) or -errno.
 */
static int recv_full(struct srv_conn *c, void *buf, size_t len, size_t *got)
{
	unsigned ms = c->srv->cfg.timeout_ms;

	return pi_conn_recv_full(&c->tc, buf, len, got, ms > INT_MAX ? INT_MAX : (int)ms, 0,
				 c->srv->stop_efd);
}

static const char *type_name(unsigned t)
{
	static const char *const names[] = { "?", "HELLO", "WELCOME", "REQ", "PAGES", "END",
					     "ERROR", "?", "?", "?", "HEARTBEAT" };

	return t < sizeof(names) / sizeof(names[0]) ? names[t] : "unknown";
}

/*
 * Read one frame from the client: the header, its checks (length bound, flags, the exact body
 * size of the type), then the body into body (>= sizeof(pn_error) + PN_MAX_TEXT bytes). Returns 1
 * for a frame, 0 for a clean EOF between frames, or -errno after rejecting the connection (or
 * on -ESHUTDOWN / a socket error, without a PN_ERROR).
 */
static int read_frame(struct srv_conn *c, struct pn_hdr *h, uint8_t *body)
{
	size_t got, want;
	int ret;

	ret = recv_full(c, h, sizeof(*h), &got);
	if (ret == -ECONNRESET && !got)
		return 0;
	if (ret == -ETIMEDOUT)
		return conn_reject(c, ETIMEDOUT, got > 0, got ? "silent for %u ms in the middle of "
				   "a frame header (%zu of 16 bytes)" : "no HELLO within %u ms",
				   c->srv->cfg.timeout_ms, got);
	if (ret == -ECONNRESET)
		return conn_reject(c, EPROTO, true, "truncated frame: the peer closed after %zu of "
				   "16 header bytes", got);
	if (ret < 0)
		return ret;
	if (!c->sess && !c->tc.ssl && pi_tls_looks_like_tls((const uint8_t *)h, sizeof(*h)))
		return conn_reject(c, EPROTONOSUPPORT, false, "the client speaks TLS: this server "
				   "does not use TLS (give it a PSK file or certificates)");
	if (h->len > PN_MAX_BODY)
		return conn_reject(c, EMSGSIZE, true, "frame body of %u bytes is over the limit of "
				   "%zu", h->len, (size_t)PN_MAX_BODY);
	if (h->flags)
		return conn_reject(c, EPROTO, true, "%s frame has flags %#x: must be 0",
				   type_name(h->type), h->flags);
	switch (h->type) {
	case PN_HELLO:
		want = sizeof(struct pn_hello);
		break;
	case PN_REQ:
		want = sizeof(struct pn_req);
		break;
	case PN_HEARTBEAT:
		want = 0;
		break;
	case PN_PROOF:
		want = PN_MAC;
		break;
	case PN_HAVE:
		if (!c->have || h->len < sizeof(struct pn_have) || h->len > PN_HAVE_MAX_BODY)
			return conn_reject(c, EPROTO, true, "HAVE frame of %u bytes%s", h->len,
					   c->have ? " (24 .. 65536)" : " on a connection that does not "
					   "resume");
		want = h->len;
		body = c->have;
		break;
	case PN_ERROR:
		want = h->len;
		if (h->len < sizeof(struct pn_error) || h->len > sizeof(struct pn_error) + PN_MAX_TEXT)
			return conn_reject(c, EPROTO, true, "ERROR frame of %u bytes: must be %zu..%zu",
					   h->len, sizeof(struct pn_error),
					   sizeof(struct pn_error) + PN_MAX_TEXT);
		break;
	case PN_WELCOME:
	case PN_PAGES:
	case PN_END:
		return conn_reject(c, EPROTO, true, "a client may not send %s frames",
				   type_name(h->type));
	default:
		return conn_reject(c, EPROTO, true, "unknown frame type %u", h->type);
	}
	if (h->len != want)
		return conn_reject(c, EPROTO, true, "%s frame of %u bytes: must be %zu",
				   type_name(h->type), h->len, want);
	ret = recv_full(c, body, want, &got);
	if (ret == -ETIMEDOUT)
		return conn_reject(c, ETIMEDOUT, true, "silent for %u ms in the middle of a %s frame "
				   "(%zu of %zu body bytes)", c->srv->cfg.timeout_ms,
				   type_name(h->type), got, want);
	if (ret == -ECONNRESET)
		return conn_reject(c, EPROTO, true, "truncated %s frame: the peer closed after %zu of "
				   "%zu body bytes", type_name(h->type), got, want);
	if (ret < 0)
		return ret;
	if (h->type == PN_ERROR) {
		const struct pn_error *e = (const void *)body;

		srv_log(c->srv, PAGEIN_LOG_INFO, "%s: the peer is closing: %.*s (%s)", c->peer,
			(int)(want - sizeof(*e)), (const char *)(e + 1), strerror((int)e->code));
		return -ECONNRESET;
	}
	return 1;
}

/* ---- the connection ---- */

/* Read and check HELLO, attach to a session, send WELCOME. 0 or -errno (already rejected). */
static int conn_handshake(struct srv_conn *c)
{
	struct pagein_server *srv = c->srv;
	uint8_t body[sizeof(struct pn_error) + PN_MAX_TEXT];
	struct pn_region regs[PN_MAX_REGIONS];
	const struct pn_hello *hi = (const void *)body;
	struct pn_welcome w = { .magic = PN_MAGIC };
	struct srv_session *s;
	struct pn_hdr h;
	struct iovec iov[4];
	unsigned i;
	bool opened;
	int ret;

	ret = read_frame(c, &h, body);
	if (ret == 0)
		return conn_reject(c, EPROTO, true, "closed before sending HELLO");
	if (ret < 0)
		return ret;
	if (h.type != PN_HELLO)
		return conn_reject(c, EPROTO, true, "the first frame must be HELLO, not %s",
				   type_name(h.type));
	if (memcmp(hi->magic, PN_MAGIC, 8))
		return conn_reject(c, EPROTO, true, "HELLO has the wrong magic: not a pagein client");
	/* a version-1 client is told which end to upgrade: serving it would bring back sessions
	 * joined by their bare id */
	if (hi->version == 1)
		return conn_reject(c, EPROTONOSUPPORT, true, "this server speaks pagein protocol "
				   "version %u; the client speaks version 1: upgrade it", PN_VERSION);
	if (hi->version != PN_VERSION)
		return conn_reject(c, EPROTONOSUPPORT, true, "protocol version %u is not supported: "
				   "this server speaks version %u", hi->version, PN_VERSION);
	if (hi->page_size != PN_PAGE)
		return conn_reject(c, EINVAL, true, "page size %u: the protocol's page is %u",
				   hi->page_size, PN_PAGE);
	if (hi->role != PN_ROLE_URGENT && hi->role != PN_ROLE_BULK)
		return conn_reject(c, EINVAL, true, "unknown role %u (1 urgent, 2 bulk)", hi->role);
	if (hi->batch_pages > PN_MAX_PAGES || (hi->role == PN_ROLE_BULK && !hi->batch_pages))
		return conn_reject(c, EINVAL, true, "batch_pages %u: must be 1..%u", hi->batch_pages,
				   PN_MAX_PAGES);
	if (hi->reserved)
		return conn_reject(c, EINVAL, true, "HELLO reserved field is %#x: must be 0",
				   hi->reserved);
	c->role = hi->role;
	c->batch = hi->batch_pages;
	opened = !hi->session;
	/* RESUME on a join: rejoining a session kept for its grace period (granted below only to
	 * a resumable session, and only with a proof) */
	c->features = hi->features & ((srv->cfg.compress ? PN_FEAT_LZ4 : 0) | PN_FEAT_HEARTBEAT |
				      PN_FEAT_PROOF | PN_FEAT_FAIL | PN_FEAT_RESUME);
	if ((c->features & PN_FEAT_RESUME) && hi->session && !(c->features & PN_FEAT_PROOF))
		c->features &= ~PN_FEAT_RESUME;
	if (c->features & PN_FEAT_RESUME) {
		c->have = malloc(PN_HAVE_MAX_BODY);
		if (!c->have)
			return conn_reject(c, ENOMEM, false, "out of memory for a resume");
	}

	pthread_mutex_lock(&srv->lock);
	sessions_expire(srv);
	if (hi->session) {
		for (s = srv->sessions; s && s->id != hi->session; s = s->next)
			;
		if (!s && (c->features & PN_FEAT_PROOF)) {
			/* the same answer as for a bad proof: no telling which ids exist */
			pthread_mutex_unlock(&srv->lock);
			return conn_reject(c, EACCES, false, "session %#llx: unknown, ended, or not "
					   "yours", (unsigned long long)hi->session);
		}
		if (!s) {
			pthread_mutex_unlock(&srv->lock);
			return conn_reject(c, ENOENT, false, "session %#llx does not exist (it ended, "
					   "or was never opened here): send session 0 to open one",
					   (unsigned long long)hi->session);
		}
		if (s->has_secret && !(c->features & PN_FEAT_PROOF)) {
			pthread_mutex_unlock(&srv->lock);
			return conn_reject(c, EACCES, false, "session %#llx: unknown, ended, or not "
					   "yours (it takes a proof of its secret to join)",
					   (unsigned long long)hi->session);
		}
		if ((c->features & PN_FEAT_RESUME) && (!s->resumable || !s->has_secret))
			c->features &= ~PN_FEAT_RESUME;
	} else {
		if (atomic_load(&srv->draining)) { /* pagein_server_drain */
			pthread_mutex_unlock(&srv->lock);
			return conn_reject(c, ESHUTDOWN, false, "this server is draining: it finishes "
					   "the migrations under way and takes no new one");
		}
		if (srv->nsessions >= srv->cfg.max_sessions && !session_evict(srv)) {
			pthread_mutex_unlock(&srv->lock);
			return conn_reject(c, EBUSY, false, "this server already serves %u sessions, "
					   "its limit (max_sessions): try later",
					   srv->cfg.max_sessions);
		}
		unsigned mine = 0;

		for (s = srv->sessions; s; s = s->next)
			mine += same_host(&s->peer, &c->addr) && s->conns; /* not orphans */
		if (srv->cfg.max_sessions_per_peer && mine >= srv->cfg.max_sessions_per_peer) {
			pthread_mutex_unlock(&srv->lock);
			return conn_reject(c, EBUSY, false, "this address already holds %u sessions, "
					   "its limit (max_sessions_per_peer): try later", mine);
		}
		s = session_create(srv, &c->addr);
		if (!s) {
			pthread_mutex_unlock(&srv->lock);
			return conn_reject(c, ENOMEM, false, "out of memory for a new session");
		}
		if ((c->features & PN_FEAT_PROOF) && pi_random(s->secret, sizeof(s->secret)) == 0)
			s->has_secret = true;
		else
			c->features &= ~PN_FEAT_PROOF;
		s->resumable = c->features & PN_FEAT_RESUME;
	}
	if (!s->conns++ && hi->session)
		atomic_fetch_add(&srv->st.sessions_active, 1); /* an orphan, until proven back */
	c->sess = s;
	c->epoch = s->epoch;
	/* before WELCOME: no bulk joins ahead of it (a rejoin: once proven, session_rejoin) */
	if ((c->features & PN_FEAT_RESUME) && !hi->session)
		atomic_store(&s->resuming, true);
	pthread_mutex_unlock(&srv->lock);
	if (hi->session && s->has_secret) {
		/* prove it: HMAC of a fresh challenge under the session's secret, bound to this
		 * TLS channel (a PROOF seen on one connection is worth nothing on another) */
		uint8_t nonce[PN_NONCE], binding[PN_BINDING];
		uint64_t sid = hi->session;
		uint32_t role = hi->role;

		if (pi_random(nonce, sizeof(nonce)) < 0 || pi_conn_binding(&c->tc, binding) < 0)
			return conn_reject(c, EIO, false, "no randomness or channel binding");
		ret = send_simple(c, PN_CHALLENGE, nonce, sizeof(nonce));
		if (ret < 0)
			return ret;
		ret = read_frame(c, &h, body);
		if (ret <= 0)
			return ret < 0 ? ret : -ECONNRESET;
		if (h.type != PN_PROOF)
			return conn_reject(c, EPROTO, true, "expected PROOF after CHALLENGE, not %s",
					   type_name(h.type));
		if (!pi_session_proof_ok(s->secret, nonce, sid, role, binding, body))
			return conn_reject(c, EACCES, false, "session %#llx: unknown, ended, or not "
					   "yours", (unsigned long long)sid);
		pthread_mutex_lock(&srv->lock);
		s->orphan_ns = 0; /* proven: back from its grace period */
		if (c->features & PN_FEAT_RESUME)
			session_rejoin(srv, s, c);
		pthread_mutex_unlock(&srv->lock);
	}
	if (c->role == PN_ROLE_BULK)
		atomic_store(&s->active, true);

	if (c->role == PN_ROLE_BULK && (c->features & PN_FEAT_LZ4)) {
		c->cbuf = malloc((size_t)c->batch * SRV_LZ4_MAX);
		if (!c->cbuf)
			c->features &= ~PN_FEAT_LZ4; /* serve it uncompressed rather than not at all */
	}
	if (c->role == PN_ROLE_BULK) {
		pi_bulk_thread_nice();
		/* keep little unsent data queued in the kernel: a jump after a request on another
		 * connection then shows up behind less stale stream, and this thread waits in poll
		 * (where it sees requests) rather than in a send. Loopback throughput is unchanged. */
		int lowat = (int)(c->batch * PN_PAGE * SRV_LOWAT_FRAMES);

		if (lowat < SRV_LOWAT_MIN)
			lowat = SRV_LOWAT_MIN;
		setsockopt(c->fd, IPPROTO_TCP, TCP_NOTSENT_LOWAT, &lowat, sizeof(lowat));
	}
	w.version = PN_VERSION;
	w.page_size = PN_PAGE;
	w.session = s->id;
	w.features = c->features;
	w.nregions = srv->nregions;
	for (i = 0; i < srv->nregions; i++)
		regs[i] = srv->table[i];
	/* the session's secret goes to the connection that opened it, after the table */
	opened = opened && (c->features & PN_FEAT_PROOF);
	pi_wire_hdr(&h, (uint32_t)(sizeof(w) + i * sizeof(regs[0]) + (opened ? PN_SECRET : 0)),
		    PN_WELCOME, 0);
	iov[0] = (struct iovec){ &h, sizeof(h) };
	iov[1] = (struct iovec){ &w, sizeof(w) };
	iov[2] = (struct iovec){ regs, i * sizeof(regs[0]) };
	iov[3] = (struct iovec){ s->secret, PN_SECRET };
	srv_log(srv, PAGEIN_LOG_INFO, "%s: %s connection, session %#llx%s%s", c->peer,
		c->role == PN_ROLE_BULK ? "bulk" : "urgent", (unsigned long long)s->id,
		c->features & PN_FEAT_LZ4 ? ", lz4" : "", c->tc.ssl ? ", TLS" : "");
	return send_iov(c, iov, opened ? 4 : 3);
}

/* conn_fail for a REQ the checks refused; counted as a request answered (0, or -errno). */
#define conn_fail_req(c, h, q, code, ...)                                                        \
	(STAT_ADD((c)->srv, requests, 1),                                                        \
	 conn_fail(c, (h)->id, (q)->gpa, (q)->npages, code, __VA_ARGS__) < 0 ? -ECONNRESET : 0)

/* Check a REQ, reply with its pages, and point the bulk stream just past them. */
static int conn_request(struct srv_conn *c, const struct pn_hdr *h, const struct pn_req *q)
{
	struct pagein_server *srv = c->srv;
	struct srv_session *s = c->sess;
	const struct srv_region *r;
	uint64_t p;
	bool fail;
	int ret;

	if (!h->id)
		return conn_reject(c, EINVAL, true, "REQ with id 0: ids must be non-zero");
	if (q->reserved)
		return conn_reject(c, EINVAL, true, "REQ %llu: reserved field %#x must be 0",
				   (unsigned long long)h->id, q->reserved);
	/* a well-framed REQ that asks for the wrong thing is refused alone where the client
	 * takes FAIL (the connection stays); without PN_FEAT_FAIL the connection closes */
	fail = c->features & PN_FEAT_FAIL;
	if (q->gpa % PN_PAGE && fail)
		return conn_fail_req(c, h, q, EINVAL, "REQ %llu: gpa %#llx is not 4 KiB-aligned",
				     (unsigned long long)h->id, (unsigned long long)q->gpa);
	if (q->gpa % PN_PAGE)
		return conn_reject(c, EINVAL, true, "REQ %llu: gpa %#llx is not 4 KiB-aligned",
				   (unsigned long long)h->id, (unsigned long long)q->gpa);
	if ((!q->npages || q->npages > PN_MAX_PAGES) && fail)
		return conn_fail_req(c, h, q, EINVAL, "REQ %llu: %u pages: must be 1..%u",
				     (unsigned long long)h->id, q->npages, PN_MAX_PAGES);
	if (!q->npages || q->npages > PN_MAX_PAGES)
		return conn_reject(c, EINVAL, true, "REQ %llu: %u pages: must be 1..%u",
				   (unsigned long long)h->id, q->npages, PN_MAX_PAGES);
	r = region_of(srv, q->gpa, (uint64_t)q->npages * PN_PAGE);
	if (!r && fail)
		return conn_fail_req(c, h, q, ERANGE, "REQ %llu: [%#llx, +%u pages) is not inside "
				     "one region", (unsigned long long)h->id,
				     (unsigned long long)q->gpa, q->npages);
	if (!r)
		return conn_reject(c, ERANGE, true, "REQ %llu: [%#llx, +%u pages) is not inside one "
				   "region", (unsigned long long)h->id, (unsigned long long)q->gpa,
				   q->npages);
	p = r->first + (q->gpa - r->gpa) / PN_PAGE;
	if (!atomic_load_explicit(&s->active, memory_order_relaxed))
		atomic_store(&s->active, true);
	STAT_ADD(srv, pages_twice, q->npages - session_mark(s, p, q->npages));
	pthread_mutex_lock(&s->lock);
	/* a sequential run's thread fetches its own next pages: no jump in front of it. Either
	 * way bulk_pick keeps the stream SRV_SEQ_GUARD pages clear of the run (seq_avoid) */
	if (!seq_note(s, p, q->npages, pi_now_ns()))
		s->hint = (p + q->npages + PN_JUMP_LEAD) % srv->total_pages + 1;
	pthread_mutex_unlock(&s->lock);
	/* replies are never compressed: latency matters more than bytes here */
	ret = send_pages(c, r, q->gpa, q->npages, h->id, false);
	if (ret < 0)
		return ret;
	STAT_ADD(srv, requests, 1);
	if (ret == 0)
		STAT_ADD(srv, pages_urgent, q->npages);
	return 0;
}

/* One bulk batch, or END once everything has been sent. */
static int conn_bulk(struct srv_conn *c)
{
	const struct srv_region *r = NULL;
	uint64_t gpa = 0;
	uint32_t n;
	bool lz4 = false;
	int ret;

	n = bulk_pick(c, &r, &gpa);
	if (!n) {
		c->end_sent = true;
		srv_log(c->srv, PAGEIN_LOG_DEBUG, "%s: every page sent, END", c->peer);
		return send_simple(c, PN_END, NULL, 0);
	}
	if (c->features & PN_FEAT_LZ4) {
		if (c->lz4_skip)
			c->lz4_skip--;
		else
			lz4 = true;
	}
	ret = send_pages(c, r, gpa, n, 0, lz4);
	if (ret < 0)
		return ret;
	bw_charge(c);
	STAT_ADD(c->srv, pages_bulk, n);
	return 0;
}

/* How long c's session may still stay idle (no bulk connection, no request) in ms: 0 when the
 * idle limit has passed, -1 when it does not apply (active session, or no limit). */
static int idle_left_ms(struct srv_conn *c)
{
	uint64_t limit = (uint64_t)c->srv->cfg.idle_ms * 1000000ull, age;

	if (!limit || atomic_load(&c->sess->active))
		return -1;
	age = pi_now_ns() - c->sess->born_ns;
	if (age >= limit)
		return 0;
	return (int)((limit - age + 999999) / 1000000 > INT_MAX ? INT_MAX
								 : (limit - age + 999999) / 1000000);
}

/* A HAVE run: the destination has these pages (present) or not. The session is new: only the
 * present ones need marking; they are never streamed. */
static void have_apply(void *arg, uint64_t start, uint64_t n, bool present)
{
	struct srv_conn *c = arg;

	if (present) {
		session_mark(c->sess, start, n);
		c->have_present += n;
	}
}

/*
 * Before the first HAVE of a rejoined session: what the server sent is not what arrived (the
 * pages in flight at the cut were lost), so the destination's HAVE alone says what it lacks.
 * Wait (bounded) for the stale connections to go, so that none marks a page after this, then
 * clear the sent bitmap; HAVE marks what is there, the stream sends the rest.
 */
static void have_reset(struct srv_conn *c)
{
	struct pagein_server *srv = c->srv;
	struct srv_session *s = c->sess;
	uint64_t words = (srv->total_pages + 63) / 64, i, sent,
		 end = pi_now_ns() + (uint64_t)srv->cfg.timeout_ms * 1000000ull;
	bool rejoined, alone = false;

	pthread_mutex_lock(&srv->lock);
	rejoined = s->rejoined;
	s->rejoined = false;
	pthread_mutex_unlock(&srv->lock);
	if (!rejoined)
		return;
	while (!alone && pi_now_ns() < end) {
		pthread_mutex_lock(&srv->lock);
		alone = !s->stale;
		pthread_mutex_unlock(&srv->lock);
		if (!alone)
			usleep(1000);
	}
	if (!alone)
		srv_log(srv, PAGEIN_LOG_WARN, "%s: session %#llx: stale connections still attached "
			"after %u ms; resuming anyway", c->peer, (unsigned long long)s->id,
			srv->cfg.timeout_ms);
	pthread_mutex_lock(&s->lock);
	sent = srv->total_pages - atomic_load(&s->left);
	for (i = 0; i < words; i++)
		atomic_store_explicit(&s->sent[i], 0, memory_order_relaxed);
	for (i = srv->total_pages; i < words * 64; i++)
		pi_test_set(s->sent, i, memory_order_relaxed);
	atomic_store(&s->left, srv->total_pages);
	s->cursor = 0;
	s->hint = 0;
	pthread_mutex_unlock(&s->lock);
	c->have_sent = sent;
}

/* One HAVE frame on a resuming connection. 0, or -errno after rejecting the connection. */
static int conn_have(struct srv_conn *c, const struct pn_hdr *h)
{
	struct srv_session *s = c->sess;
	char why[256];
	bool last = false;

	if (!atomic_load(&s->resuming))
		return conn_reject(c, EPROTO, true, "HAVE after the last one");
	if (!c->have_next)
		have_reset(c);
	if (pi_have_decode(c->have, h->len, c->srv->total_pages, &c->have_next, &last, have_apply,
			   c, why, sizeof(why)) < 0)
		return conn_reject(c, EINVAL, true, "%s", why);
	if (last) {
		atomic_store(&s->active, true);
		atomic_store(&s->resuming, false);
		srv_log(c->srv, PAGEIN_LOG_INFO, "%s: session %#llx resumes a migration: the "
			"destination has %llu pages, %llu are left to send", c->peer,
			(unsigned long long)s->id, (unsigned long long)c->have_present,
			(unsigned long long)atomic_load(&s->left));
		if (c->have_sent > c->have_present)
			srv_log(c->srv, PAGEIN_LOG_INFO, "%s: session %#llx: %llu pages sent before "
				"the cut did not arrive (in flight): sent again", c->peer,
				(unsigned long long)s->id,
				(unsigned long long)(c->have_sent - c->have_present));
	}
	return 0;
}

/* Serve a connection after its handshake: requests first, then bulk batches while pages are
 * left. Returns when the peer leaves, breaks a rule, or the server stops. */
static void conn_serve(struct srv_conn *c)
{
	uint8_t body[sizeof(struct pn_error) + PN_MAX_TEXT];
	struct pollfd pfd[2] = { { .fd = c->fd }, { .fd = c->srv->stop_efd, .events = POLLIN } };
	struct pn_hdr h;
	int ret, n;

	for (;;) {
		/* a resuming session streams nothing before its destination said what it has */
		bool held = atomic_load(&c->sess->resuming);
		bool bulk = c->role == PN_ROLE_BULK && !c->end_sent && !held;
		/* over the bandwidth limit: wait for it like an idle connection (requests and
		 * heartbeats go on), not in a send */
		int bw = bulk ? bw_wait_ms(c->srv) : 0;
		int ms = bw ? bw : bulk ? send_stall_ms(c->srv) : held ? 20 : idle_left_ms(c), hb = -1;

		bulk = bulk && !bw;

		if (!bulk && (c->features & PN_FEAT_HEARTBEAT)) {
			/* an idle connection says it is alive, so the destination can tell a
			 * silent server (stopped, link stalled) from one with nothing to send */
			uint64_t due = c->last_send_ns + PN_HEARTBEAT_MS * 1000000ull,
				 now = pi_now_ns();

			if (now >= due) {
				if (send_simple(c, PN_HEARTBEAT, NULL, 0) < 0)
					return;
				continue;
			}
			hb = (int)((due - now + 999999) / 1000000);
			if (ms < 0 || hb < ms)
				ms = hb;
		}

		pfd[0].events = POLLIN | (bulk ? POLLOUT : 0);
		/* with stream left to send, a peer that takes none of it for the stall limit is
		 * gone or stuck: drop it rather than hold its session for ever. An idle connection
		 * is watched by keepalive, and one of a session that never did anything by the
		 * idle limit, so that idle peers cannot hold every session slot. */
		if (pi_conn_pending(&c->tc)) {
			/* records TLS read ahead: poll would not see them */
			pfd[0].revents = POLLIN;
			pfd[1].revents = 0;
			n = 1;
		} else {
			n = poll(pfd, 2, ms);
		}
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 || pfd[1].revents)
			return;
		if (n == 0 && !bulk) {
			if (held || bw || (hb >= 0 && idle_left_ms(c) != 0))
				continue; /* time for a heartbeat, or to look at the HAVE again */
			if (idle_left_ms(c) == 0) {
				conn_reject(c, ETIMEDOUT, false, "idle for %u ms: no request and no "
					    "bulk connection (the server's idle_ms)",
					    c->srv->cfg.idle_ms);
				return;
			}
			continue;
		}
		if (n == 0) {
			srv_log(c->srv, PAGEIN_LOG_WARN,
				"a peer took no stream data for %d ms: dropping its connection",
				send_stall_ms(c->srv));
			return;
		}
		if (pfd[0].revents & (POLLIN | POLLHUP | POLLERR)) {
			ret = read_frame(c, &h, body);
			if (ret <= 0)
				return;
			if (h.type == PN_HEARTBEAT && (c->features & PN_FEAT_HEARTBEAT))
				continue;
			if (h.type == PN_HAVE) {
				if (conn_have(c, &h) < 0)
					return;
				continue;
			}
			if (h.type != PN_REQ) {
				conn_reject(c, EPROTO, true, "unexpected %s frame after the handshake",
					    type_name(h.type));
				return;
			}
			if (conn_request(c, &h, (const struct pn_req *)body) < 0)
				return;
		} else if (pfd[0].revents & POLLOUT) {
			if (conn_bulk(c) < 0)
				return;
		}
	}
}

/* Give a rejected peer a moment to read our PN_ERROR: half-close, discard what it still sends
 * until it closes too (or SRV_DRAIN_MS), so close() does not reset the connection under it. */
static void conn_linger(struct srv_conn *c)
{
	struct pollfd pfd[2] = { { .fd = c->fd, .events = POLLIN },
				 { .fd = c->srv->stop_efd, .events = POLLIN } };
	uint64_t end = pi_now_ns() + SRV_DRAIN_MS * 1000000ull, now;
	char junk[4096];
	unsigned k;
	ssize_t r;

	shutdown(c->fd, SHUT_WR);
	for (k = 0; k < 256; k++) {
		now = pi_now_ns();
		if (now >= end || poll(pfd, 2, (int)((end - now) / 1000000 + 1)) <= 0 ||
		    pfd[1].revents)
			return;
		r = recv(c->fd, junk, sizeof(junk), MSG_DONTWAIT);
		if (r == 0 || (r < 0 && errno != EAGAIN && errno != EINTR))
			return; /* the peer closed too */
	}
}

/* TLS first, when the server has credentials. 0, or -errno (refused; a plain client is told in
 * a plain ERROR why). */
static int conn_secure(struct srv_conn *c)
{
	struct pagein_server *srv = c->srv;
	char why[256];
	int ret;

	if (!srv->tls)
		return 0;
	ret = pi_conn_handshake(&c->tc, c->fd, srv->tls, true,
				pi_now_ns() + (uint64_t)srv->cfg.timeout_ms * 1000000ull, why,
				sizeof(why));
	if (!ret) {
		srv_log(srv, PAGEIN_LOG_DEBUG, "%s: %s", c->peer, c->tc.desc);
		return 0;
	}
	pi_conn_drop_tls(&c->tc);
	if (c->tc.peer_plain || ret == -EPROTO)
		return conn_reject(c, EACCES, false, "%s", why);
	srv_log(srv, PAGEIN_LOG_WARN, "%s: refused: %s", c->peer, why);
	STAT_ADD(srv, refused, 1);
	return ret;
}

static void *conn_main(void *arg)
{
	struct srv_conn *c = arg;
	struct pagein_server *srv = c->srv;

	if (conn_secure(c) == 0 && conn_handshake(c) == 0)
		conn_serve(c);
	if (c->rejected)
		conn_linger(c);
	pthread_mutex_lock(&srv->lock);
	if (c->sess)
		session_put(srv, c->sess, c->epoch);
	c->sess = NULL;
	pi_conn_close(&c->tc); /* closes fd */
	c->fd = -1;
	srv->nconns--;
	pthread_mutex_unlock(&srv->lock);
	/* the buffers go now; the rest waits for the next accept or stop to join the thread */
	free(c->buf);
	free(c->cbuf);
	c->buf = c->cbuf = NULL;
	srv_log(srv, PAGEIN_LOG_DEBUG, "%s: closed", c->peer);
	atomic_store(&c->done, true);
	return NULL;
}

static void conn_free(struct srv_conn *c)
{
	free(c->buf);
	free(c->cbuf);
	free(c->have);
	free(c);
}

/* Join and free the connections whose threads have finished (server lock held). */
static void conns_reap(struct pagein_server *srv)
{
	struct srv_conn **pp = &srv->conns, *c;

	while ((c = *pp)) {
		if (atomic_load(&c->done)) {
			*pp = c->next;
			pthread_join(c->thread, NULL);
			conn_free(c);
		} else {
			pp = &c->next;
		}
	}
}

static void peer_name(const struct sockaddr_storage *sa, char *out, size_t len)
{
	char a[INET6_ADDRSTRLEN] = "?";

	if (sa->ss_family == AF_INET6) {
		const struct sockaddr_in6 *s6 = (const void *)sa;

		inet_ntop(AF_INET6, &s6->sin6_addr, a, sizeof(a));
		snprintf(out, len, "[%s]:%u", a, ntohs(s6->sin6_port));
	} else {
		const struct sockaddr_in *s4 = (const void *)sa;

		inet_ntop(AF_INET, &s4->sin_addr, a, sizeof(a));
		snprintf(out, len, "%s:%u", a, ntohs(s4->sin_port));
	}
}

/* Start a thread for an accepted socket, or refuse it when the server has too many. Closes fd
 * on failure. */
static void conn_spawn(struct pagein_server *srv, int fd, const struct sockaddr_storage *sa)
{
	struct srv_conn *c;
	unsigned live, mine = 0;
	bool full, peer_full = false;
	int one = 1, ret = 0;

	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	{
		/* a destination host that vanishes while its connection is idle (no FIN, no RST)
		 * is found by keepalive probes: after timeout_ms of silence, 5 probes 1 s apart */
		int idle = (int)(srv->cfg.timeout_ms / 1000), intvl = 1, cnt = 5;

		if (idle < 1)
			idle = 1;
		setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof(one));
		setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof(idle));
		setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &intvl, sizeof(intvl));
		setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &cnt, sizeof(cnt));
	}
	c = calloc(1, sizeof(*c));
	if (c && srv->has_snapshot && !(c->buf = malloc((size_t)PN_MAX_PAGES * PN_PAGE))) {
		free(c);
		c = NULL;
	}
	if (!c) {
		srv_log(srv, PAGEIN_LOG_ERR, "out of memory for a connection: closing it");
		close(fd);
		return;
	}
	c->srv = srv;
	c->fd = fd;
	pi_conn_plain(&c->tc, fd);
	peer_name(sa, c->peer, sizeof(c->peer));
	host_of(sa, &c->addr);
	/* the thread is listed before it can finish (it takes the lock to leave) */
	pthread_mutex_lock(&srv->lock);
	conns_reap(srv);
	live = srv->nconns;
	full = live >= srv->cfg.max_sessions * SRV_CONNS_PER_SESSION;
	if (!full && srv->cfg.max_conns_per_peer) {
		struct srv_conn *o;

		for (o = srv->conns, mine = 0; o; o = o->next)
			mine += !atomic_load(&o->done) && same_host(&o->addr, &c->addr);
		peer_full = mine >= srv->cfg.max_conns_per_peer;
		full = peer_full;
	}
	if (!full) {
		ret = pthread_create(&c->thread, NULL, conn_main, c);
		if (!ret) {
			srv->nconns++;
			c->next = srv->conns;
			srv->conns = c;
		}
	}
	pthread_mutex_unlock(&srv->lock);
	if (peer_full)
		conn_reject(c, EBUSY, false, "too many connections from this address (%u, the "
			    "server's max_conns_per_peer): try later", mine);
	else if (full)
		conn_reject(c, EBUSY, false, "too many connections (%u): try later", live);
	else if (ret)
		srv_log(srv, PAGEIN_LOG_ERR, "%s: no thread for the connection: %s", c->peer,
			strerror(ret));
	if (full || ret) {
		close(fd);
		conn_free(c);
	}
}

static void *accept_main(void *arg)
{
	struct pagein_server *srv = arg;
	struct pollfd pfd[2] = { { .fd = srv->lfd, .events = POLLIN },
				 { .fd = srv->stop_efd, .events = POLLIN } };
	struct sockaddr_storage sa;
	socklen_t len;
	int fd, n;

	for (;;) {
		n = poll(pfd, 2, -1);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 || pfd[1].revents)
			break;
		len = sizeof(sa);
		fd = accept4(srv->lfd, (struct sockaddr *)&sa, &len, SOCK_CLOEXEC);
		if (fd < 0) {
			int err = errno;

			if (err == EINTR || err == EAGAIN || err == ECONNABORTED)
				continue;
			srv_log(srv, PAGEIN_LOG_ERR, "accept on %s: %s", srv->listen_str,
				strerror(err));
			/* out of fds or memory: wait a little instead of spinning */
			poll(&pfd[1], 1, 100);
			continue;
		}
		STAT_ADD(srv, connections, 1);
		conn_spawn(srv, fd, &sa);
	}
	return NULL;
}

int pagein_server_start(struct pagein_server *srv)
{
	union {
		struct sockaddr_storage ss;
		struct sockaddr_in s4;
		struct sockaddr_in6 s6;
	} a;
	socklen_t len = sizeof(a);
	sigset_t mask, old;
	int one = 1, ret;

	if (srv->started)
		return -EBUSY;
	if (!srv->nregions) {
		srv_log(srv, PAGEIN_LOG_ERR, "nothing to serve: add memory or a snapshot first");
		return -EINVAL;
	}
	srv->stop_efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (srv->stop_efd < 0)
		return -errno;
	srv->lfd = socket(srv->addr.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (srv->lfd < 0) {
		ret = -errno;
		srv_log(srv, PAGEIN_LOG_ERR, "socket for %s: %s", srv->listen_str, strerror(-ret));
		goto err_efd;
	}
	setsockopt(srv->lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(srv->lfd, (struct sockaddr *)&srv->addr, srv->addrlen) < 0 ||
	    listen(srv->lfd, 64) < 0 || getsockname(srv->lfd, (struct sockaddr *)&a, &len) < 0) {
		ret = -errno;
		srv_log(srv, PAGEIN_LOG_ERR, "cannot listen on %s: %s%s", srv->listen_str,
			strerror(-ret), ret == -EADDRINUSE ? " (pick another port, or :0 for a free "
			"one)" : ret == -EADDRNOTAVAIL ? " (not an address of this machine)" : "");
		goto err_sock;
	}
	srv->port = ntohs(a.ss.ss_family == AF_INET6 ? a.s6.sin6_port : a.s4.sin_port);
	/* the server's threads (connection threads inherit from the accept thread) leave the
	 * application's signals to the application; faults stay deliverable (memory served may
	 * itself be a pagein space resolving faults by SIGBUS) */
	sigfillset(&mask);
	sigdelset(&mask, SIGBUS);
	sigdelset(&mask, SIGSEGV);
	sigdelset(&mask, SIGFPE);
	sigdelset(&mask, SIGILL);
	pthread_sigmask(SIG_SETMASK, &mask, &old);
	ret = -pthread_create(&srv->accept_thread, NULL, accept_main, srv);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (ret < 0)
		goto err_sock;
	srv->started = true;
	srv_log(srv, PAGEIN_LOG_INFO, "serving %u regions (%llu pages) on %s, port %d",
		srv->nregions, (unsigned long long)srv->total_pages, srv->listen_str, srv->port);
	return 0;
err_sock:
	close(srv->lfd);
	srv->lfd = -1;
err_efd:
	close(srv->stop_efd);
	srv->stop_efd = -1;
	return ret;
}

int pagein_server_drain(struct pagein_server *srv)
{
	if (!srv->started || srv->stopped)
		return -ENOTCONN;
	if (!atomic_exchange(&srv->draining, true))
		srv_log(srv, PAGEIN_LOG_INFO, "draining: no new destination; %llu sessions go on",
			(unsigned long long)atomic_load(&srv->st.sessions_active));
	return 0;
}

int pagein_server_sessions(struct pagein_server *srv, struct pagein_server_session *out,
			   unsigned max)
{
	struct srv_session *s;
	struct srv_conn *c;
	uint64_t now = pi_now_ns();
	unsigned n = 0;

	pthread_mutex_lock(&srv->lock);
	for (s = srv->sessions; s; s = s->next, n++) {
		struct pagein_server_session *o = &out[n];
		uint64_t left = atomic_load(&s->left);
		char *colon;

		if (n >= max)
			continue;
		memset(o, 0, sizeof(*o));
		o->id = s->id;
		peer_name(&s->peer, o->peer, sizeof(o->peer));
		colon = strrchr(o->peer, ':'); /* the port is 0: the session is the host's */
		if (colon)
			*colon = 0;
		for (c = srv->conns; c; c = c->next)
			o->conns += c->sess == s;
		o->state = atomic_load(&s->resuming) ? PAGEIN_SESSION_RESUMING
			   : !left ? PAGEIN_SESSION_SENT
			   : atomic_load(&s->active) ? PAGEIN_SESSION_STREAMING : PAGEIN_SESSION_IDLE;
		o->pages_left = left;
		o->pages_total = srv->total_pages;
		o->age_ms = (now - s->born_ns) / 1000000u;
	}
	pthread_mutex_unlock(&srv->lock);
	return (int)n;
}

int pagein_server_port(struct pagein_server *srv)
{
	return srv->started && !srv->stopped ? srv->port : -ENOTCONN;
}

void pagein_server_stop(struct pagein_server *srv)
{
	uint64_t one = 1;
	struct srv_conn *c;

	if (!srv || !srv->started || srv->stopped)
		return;
	srv->stopped = true;
	if (write(srv->stop_efd, &one, sizeof(one)) < 0)
		srv_log(srv, PAGEIN_LOG_ERR, "waking the server's threads: %s", strerror(errno));
	pthread_join(srv->accept_thread, NULL);
	/* wake threads blocked in a send to a peer that does not read */
	pthread_mutex_lock(&srv->lock);
	for (c = srv->conns; c; c = c->next)
		if (c->fd >= 0)
			shutdown(c->fd, SHUT_RDWR);
	pthread_mutex_unlock(&srv->lock);
	while ((c = srv->conns)) {
		pthread_join(c->thread, NULL);
		srv->conns = c->next;
		conn_free(c);
	}
	close(srv->lfd);
	srv->lfd = -1;
	close(srv->stop_efd);
	srv->stop_efd = -1;
}

void pagein_server_free(struct pagein_server *srv)
{
	unsigned i;

	if (!srv)
		return;
	pagein_server_stop(srv);
	while (srv->sessions) /* the orphans kept for a rejoin (no connection is left) */
		session_free(srv, srv->sessions);
	pi_tls_ctx_free(srv->tls);
	for (i = 0; i < srv->nsrcs; i++)
		pagein_source_free(srv->srcs[i]);
	pthread_mutex_destroy(&srv->lock);
	pthread_mutex_destroy(&srv->bw.lock);
	free(srv);
}

void pagein_server_stats_get(struct pagein_server *srv, struct pagein_server_stats *st)
{
	memset(st, 0, sizeof(*st));
	st->sessions = atomic_load(&srv->st.sessions);
	st->sessions_active = atomic_load(&srv->st.sessions_active);
	st->connections = atomic_load(&srv->st.connections);
	st->refused = atomic_load(&srv->st.refused);
	st->malformed = atomic_load(&srv->st.malformed);
	st->requests = atomic_load(&srv->st.requests);
	st->pages_urgent = atomic_load(&srv->st.pages_urgent);
	st->pages_bulk = atomic_load(&srv->st.pages_bulk);
	st->pages_lz4 = atomic_load(&srv->st.pages_lz4);
	st->bytes_sent = atomic_load(&srv->st.bytes_sent);
	st->pages_twice = atomic_load(&srv->st.pages_twice);
	st->sessions_completed = atomic_load(&srv->st.sessions_completed);
	st->bulk_throttled_ns = atomic_load(&srv->st.bulk_throttled_ns);
}
