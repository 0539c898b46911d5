// SPDX-License-Identifier: MIT
/*
 * client.c - the destination side of post-copy migration: a pagein_source over a page server.
 * Owns the connections (resolve, connect, handshake), the receiver thread of each connection
 * that reads and checks every frame and hands it to urgent.c (replies) or stream.c (bulk pages,
 * END), and the source's public calls. A dead or lying server fails with a bounded error.
 */
#include <endian.h>
#include <errno.h>
#include <limits.h>
#include <fcntl.h>
#include <lz4.h>
#include <netdb.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "net/client.h"

void pagein_net_config_init(struct pagein_net_config *cfg)
{
	memset(cfg, 0, sizeof(*cfg));
	cfg->size = sizeof(*cfg);
	cfg->urgent = true;
	cfg->bulk = 1;
	cfg->compress = true;
	cfg->batch_pages = 64;
	cfg->connect_timeout_ms = 5000;
}

/* ------------------------------------------------------------------------------------------- */
/* regions                                                                                    */

/* The region of the server's table holding [gpa, gpa+len), or NULL. */
const struct pn_region *pi_net_region_of(struct netsrc *ns, uint64_t gpa, uint64_t len)
{
	int i = pi_wire_region_find(ns->regions, ns->nregions, gpa, len);

	return i < 0 ? NULL : &ns->regions[i];
}

/* Check a region table from WELCOME: aligned, non-empty, no wrap, no overlap. */
static int check_regions(struct netsrc *ns, const struct pn_region *regs, unsigned n)
{
	unsigned i, j;
	int ret;

	for (i = 0; i < n; i++) {
		ret = pi_wire_region_check(regs, i, regs[i].gpa, regs[i].size, &j);
		if (ret == -EINVAL) {
			pi_net_log(ns, PAGEIN_LOG_ERR,
				   "server %s: region %u [%#llx, +%#llx) is empty, wraps or is not "
				   "4 KiB-aligned", ns->addr, i, (unsigned long long)regs[i].gpa,
				   (unsigned long long)regs[i].size);
			return -EPROTO;
		}
		if (ret < 0) {
			pi_net_log(ns, PAGEIN_LOG_ERR, "server %s: regions %u and %u overlap",
				   ns->addr, j, i);
			return -EPROTO;
		}
	}
	return 0;
}

/* ------------------------------------------------------------------------------------------- */
/* receiving                                                                                  */

/*
 * Read exactly n bytes, waiting at most idle_ms (-1: no limit) for each chunk. Returns 0, 1 on a
 * clean EOF before the first byte, -EPIPE on an EOF after it, -ETIMEDOUT, or -errno.
 */
static int recv_exact(struct ns_conn *c, void *dst, size_t n, int idle_ms)
{
	uint8_t *p = dst;
	size_t got = 0, k;
	ssize_t r;

	while (got < n) {
		if (c->rpos < c->rlen) {
			k = c->rlen - c->rpos;
			if (k > n - got)
				k = n - got;
			memcpy(p + got, c->rbuf + c->rpos, k);
			c->rpos += k;
			got += k;
			continue;
		}
		/* large remainders go straight to dst, small ones through the buffer */
		if (n - got >= NS_RBUF / 2)
			r = pi_wire_recv_some(c->fd, p + got, n - got, idle_ms, -1);
		else
			r = pi_wire_recv_some(c->fd, c->rbuf, NS_RBUF, idle_ms, -1);
		if (r < 0)
			return (int)r;
		if (r == 0)
			return got ? -EPIPE : 1;
		atomic_fetch_add_explicit(&c->ns->bytes_received, (uint64_t)r, memory_order_relaxed);
		if (n - got >= NS_RBUF / 2) {
			got += (size_t)r;
		} else {
			c->rpos = 0;
			c->rlen = (size_t)r;
		}
	}
	return 0;
}


/*
 * Decode the pages of pg into dst. Zero pages are not written; *zero gets one bit per protocol
 * page that is zero (NS_HUGE_PAGES bits at most). Returns 0 or -EPROTO (bad LZ4 data).
 */
int pi_net_decode_pages(const struct pi_wire_pages *pg, uint8_t *dst, uint64_t *zero, char *why,
			size_t whylen)
{
	const uint8_t *p = pg->data;
	uint32_t i, d;
	int n;

	memset(zero, 0, NS_HUGE_PAGES / 8);
	for (i = 0; i < pg->npages; i++) {
		memcpy(&d, pg->desc + 4 * i, 4);
		d = le32toh(d);
		switch (PN_PG_KIND(d)) {
		case PN_PG_RAW:
			memcpy(dst + (uint64_t)i * PN_PAGE, p, PN_PAGE);
			p += PN_PAGE;
			break;
		case PN_PG_ZERO:
			zero[i / 64] |= 1ull << (i % 64);
			break;
		default:
			n = LZ4_decompress_safe((const char *)p, (char *)dst + (uint64_t)i * PN_PAGE,
						(int)PN_PG_CSIZE(d), PN_PAGE);
			if (n != (int)PN_PAGE) {
				snprintf(why, whylen,
					 "PAGES at %#llx: page %u's LZ4 data does not decompress to "
					 "exactly 4096 bytes", (unsigned long long)pg->gpa, i);
				return -EPROTO;
			}
			p += PN_PG_CSIZE(d);
			break;
		}
	}
	return 0;
}

/*
 * Turn per-protocol-page zero bits into zero bits of page_size pages (a bit only when the whole
 * page is zero; 64 pages at most) and write zeros into dst for zero protocol pages inside
 * non-zero pages.
 */
uint64_t pi_net_zero_fold(const uint64_t *zero, uint32_t npages, uint64_t page_size,
			  uint8_t *dst)
{
	uint32_t per = (uint32_t)(page_size / PN_PAGE), i, j, nz;
	uint64_t bits = 0;

	for (i = 0; i < npages; i += per) {
		for (j = 0, nz = 0; j < per; j++)
			nz += zero[(i + j) / 64] >> ((i + j) % 64) & 1;
		if (nz == per) {
			bits |= 1ull << (i / per);
			continue;
		}
		for (j = 0; nz && j < per; j++)
			if (zero[(i + j) / 64] >> ((i + j) % 64) & 1)
				memset(dst + (uint64_t)(i + j) * PN_PAGE, 0, PN_PAGE);
	}
	return bits;
}

/* A reply (id != 0): find its slot, decode into its dst, wake its requester. */
/* Read and handle one frame. Returns 0, 1 on a clean EOF, or -errno with why filled in. */
static int recv_frame(struct ns_conn *c, char *why, size_t whylen)
{
	struct netsrc *ns = c->ns;
	struct pi_wire_pages pg;
	struct pn_hdr h;
	uint32_t len;
	uint16_t type;
	uint64_t id;
	int ret, idle;

	/* a connection whose stream is not over may not go silent for longer than the space's
	 * fault time-out: otherwise an idle destination (nothing faults) would wait for ever on a
	 * stopped or stalled server. Replies only, or after END, idle is normal. */
	idle = c->stream && !c->ended && atomic_load(&ns->space) && atomic_load(&ns->read_ms) > 0
		       ? atomic_load(&ns->read_ms) : -1;
	ret = recv_exact(c, &h, sizeof(h), idle);
	if (ret)
		return ret;
	len = le32toh(h.len);
	type = le16toh(h.type);
	id = le64toh(h.id);
	if (len > PN_MAX_BODY) {
		snprintf(why, whylen, "a frame of type %u with a %u-byte body (the limit is %zu)",
			 type, len, (size_t)PN_MAX_BODY);
		return -EPROTO;
	}
	if (h.flags) {
		snprintf(why, whylen, "a frame with flags %#x (must be 0)", le16toh(h.flags));
		return -EPROTO;
	}
	ret = recv_exact(c, c->body, len, idle);
	if (ret)
		return ret == 1 ? -EPIPE : ret;
	switch (type) {
	case PN_PAGES:
		ret = pi_wire_parse_pages(c->body, len, ns->regions, ns->nregions,
					  c->features & PN_FEAT_LZ4, &pg, why, whylen);
		if (ret)
			return ret;
		if (id)
			return pi_net_handle_reply(c, id, &pg, why, whylen);
		if (!c->stream) {
			snprintf(why, whylen, "bulk pages on the urgent connection");
			return -EPROTO;
		}
		pi_net_handle_bulk(c, &pg, why, whylen, &ret);
		return ret;
	case PN_END:
		if (!c->stream || len || id) {
			snprintf(why, whylen, "an END frame %s",
				 c->stream ? "with a body or an id" : "on the urgent connection");
			return -EPROTO;
		}
		pi_net_stream_end(c);
		return 0;
	case PN_ERROR: {
		struct pn_error e = { 0 };
		int n = len > sizeof(e) ? (int)(len - sizeof(e)) : 0;

		if (len < sizeof(e) || len > sizeof(e) + PN_MAX_TEXT || id) {
			snprintf(why, whylen, "a malformed ERROR frame (%u bytes, id %#llx)", len,
				 (unsigned long long)id);
			return -EPROTO;
		}
		if (len >= sizeof(e))
			memcpy(&e, c->body, sizeof(e));
		if (n > (int)PN_MAX_TEXT)
			n = PN_MAX_TEXT;
		snprintf(why, whylen, "the server closes the connection: %.*s (error %u)", n,
			 (const char *)c->body + sizeof(e), le32toh(e.code));
		return -ECONNRESET;
	}
	default:
		snprintf(why, whylen, "an unexpected frame of type %u", type);
		return -EPROTO;
	}
}

static void *receiver_main(void *arg)
{
	struct ns_conn *c = arg;
	struct netsrc *ns = c->ns;
	char why[400] = "";
	int ret;

	if (!c->replies)
		pi_bulk_thread_nice(); /* a stream-only connection: faults go first */
	do
		ret = recv_frame(c, why, sizeof(why));
	while (ret == 0);
	if (!atomic_load(&c->quitting)) {
		/* the stream this connection carries is not over: its end is a failure */
		bool early = c->stream && !c->ended && atomic_load(&ns->streaming);

		if (ret == 1 && !early) {
			if (c->replies)
				pi_net_log(ns, PAGEIN_LOG_WARN, "server %s closed the %s connection",
					   ns->addr, c->stream ? "single" : "urgent");
		} else {
			if (ret == 1)
				snprintf(why, sizeof(why), "the server closed it before the end of the "
					 "stream (no END): pages are missing");
			else if (ret == -EPIPE)
				snprintf(why, sizeof(why), "a truncated frame (the connection closed "
					 "in the middle of it)");
			else if (ret == -ETIMEDOUT && !why[0])
				snprintf(why, sizeof(why), "the server sent nothing for %d ms (the "
					 "space's timeout_ms) before the end of the stream",
					 atomic_load(&ns->read_ms));
			else if (!why[0])
				snprintf(why, sizeof(why), "%s", strerror(-ret));
			atomic_fetch_add(&ns->errors, 1);
			pi_net_log(ns, PAGEIN_LOG_ERR, "server %s, %s connection: %s; closing it",
				   ns->addr, c->replies ? (c->stream ? "single" : "urgent") : "bulk",
				   why);
			if (early)
				pi_net_stream_fail(ns, ret == 1 || ret == -EPIPE ? -ECONNRESET : ret);
		}
	}
	shutdown(c->fd, SHUT_RDWR);
	atomic_store(&c->dead, true);
	pagein_futex_wake(&c->send_lock);
	if (c->replies)
		pi_net_slots_fail_all(ns, ret == -EPROTO || ret == -EPIPE ? -EPROTO : -ECONNRESET);
	return NULL;
}

/* ------------------------------------------------------------------------------------------- */
/* connecting                                                                                 */

/* A resolver failure as -errno: the log line has the resolver's own words. */
static int gai_errno(int eai)
{
	switch (eai) {
	case EAI_NONAME:
	case EAI_NODATA:
	case EAI_ADDRFAMILY:
	case EAI_FAIL:
		return -ENXIO; /* no such host (or no address for it) */
	case EAI_AGAIN:
		return -EAGAIN; /* the resolver could not answer now */
	case EAI_MEMORY:
		return -ENOMEM;
	case EAI_SYSTEM:
		return errno ? -errno : -EIO;
	default:
		return -EINVAL;
	}
}

/* Resolve HOST:PORT into every address it has (NS_MAX_ADDRS at most), in the resolver's order. */
static int resolve_addr(struct netsrc *ns)
{
	struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM }, *ai, *a;
	char host[256], *port;
	int ret;

	snprintf(host, sizeof(host), "%s", ns->addr);
	port = strrchr(host, ':');
	if (!port || port == host) {
		pi_net_log(ns, PAGEIN_LOG_ERR, "'%s' is not HOST:PORT", ns->addr);
		return -EINVAL;
	}
	*port++ = '\0';
	if (host[0] == '[' && port[-2] == ']') {
		port[-2] = '\0';
		memmove(host, host + 1, strlen(host));
	}
	ret = getaddrinfo(host, port, &hints, &ai);
	if (ret) {
		int err = gai_errno(ret);

		pi_net_log(ns, PAGEIN_LOG_ERR, "cannot resolve %s: %s", ns->addr, gai_strerror(ret));
		return err;
	}
	for (a = ai; a && ns->naddrs < NS_MAX_ADDRS; a = a->ai_next) {
		if (a->ai_addrlen > sizeof(ns->sa[0]))
			continue;
		memcpy(&ns->sa[ns->naddrs], a->ai_addr, a->ai_addrlen);
		ns->salen[ns->naddrs++] = a->ai_addrlen;
	}
	freeaddrinfo(ai);
	if (!ns->naddrs) {
		pi_net_log(ns, PAGEIN_LOG_ERR, "cannot resolve %s: no usable address", ns->addr);
		return -ENXIO;
	}
	return 0;
}

/* Read n bytes before the deadline (the handshake). */
static int recv_deadline(int fd, void *buf, size_t n, uint64_t deadline)
{
	size_t got;

	return pi_wire_recv(fd, buf, n, &got, -1, deadline, -1);
}

/* Connect to address k of the server before the deadline; the fd (blocking) or -errno. */
static int connect_one(struct netsrc *ns, unsigned k, uint64_t deadline)
{
	int fd, one = 1, err = 0, ret;
	socklen_t elen = sizeof(err);
	struct pollfd pfd;

	fd = socket(ns->sa[k].ss_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0)
		return -errno;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	if (connect(fd, (struct sockaddr *)&ns->sa[k], ns->salen[k]) < 0) {
		if (errno != EINPROGRESS) {
			ret = -errno;
			goto close_fd;
		}
		pfd = (struct pollfd){ .fd = fd, .events = POLLOUT };
		do
			ret = poll(&pfd, 1, pi_wire_ms_left(deadline));
		while (ret < 0 && errno == EINTR);
		if (ret == 0) {
			ret = -ETIMEDOUT;
			goto close_fd;
		}
		if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &elen) < 0 || err) {
			ret = err ? -err : -errno;
			goto close_fd;
		}
	}
	if (fcntl(fd, F_SETFL, 0) < 0) {
		ret = -errno;
		goto close_fd;
	}
	return fd;
close_fd:
	close(fd);
	return ret;
}

/*
 * Connect to the server: each address of its name in turn (the last one that worked first),
 * each with an equal share of the time left, so one that drops packets cannot use it all.
 * Returns the fd or the last address's -errno.
 */
static int connect_fd(struct netsrc *ns, uint64_t deadline)
{
	unsigned first = atomic_load(&ns->addr_ok), i, k;
	uint64_t now, share;
	int fd = -EHOSTUNREACH;

	for (i = 0; i < ns->naddrs; i++) {
		k = (first + i) % ns->naddrs;
		now = pagein_now_ns();
		if (now >= deadline)
			return i ? fd : -ETIMEDOUT;
		share = (deadline - now) / (ns->naddrs - i);
		fd = connect_one(ns, k, now + share);
		if (fd >= 0) {
			atomic_store(&ns->addr_ok, k);
			return fd;
		}
		if (ns->naddrs > 1)
			pi_net_log(ns, PAGEIN_LOG_DEBUG, "%s: address %u of %u: %s", ns->addr, k + 1,
				   ns->naddrs, strerror(-fd));
	}
	return fd;
}

/*
 * Open one connection: connect, HELLO, check WELCOME. The first connection (session 0) learns
 * the session and region table; later ones must get the same. Returns the connection or NULL
 * with *err set (-EPROTO for anything that is not the protocol, with a logged reason).
 */
struct ns_conn *pi_net_conn_open(struct netsrc *ns, int role, uint64_t session, int *err)
{
	uint64_t deadline = pagein_now_ns() + (uint64_t)ns->cfg.connect_timeout_ms * 1000000ull;
	struct pn_region regs[PN_MAX_REGIONS];
	struct {
		struct pn_hdr h;
		struct pn_hello b;
	} __attribute__((packed)) hello;
	struct pn_welcome w;
	struct ns_conn *c;
	struct pn_hdr h;
	unsigned i, n;
	uint32_t len, feat;
	int ret;

	c = calloc(1, sizeof(*c));
	if (!c) {
		*err = -ENOMEM;
		return NULL;
	}
	c->ns = ns;
	c->huge_gpa = UINT64_MAX;
	c->rbuf = malloc(NS_RBUF);
	c->body = malloc(PN_MAX_BODY);
	c->stage = malloc((size_t)PN_MAX_PAGES * PN_PAGE);
	c->huge = malloc(NS_HUGE);
	if (!c->rbuf || !c->body || !c->stage || !c->huge) {
		ret = -ENOMEM;
		goto free_conn;
	}
	c->fd = connect_fd(ns, deadline);
	if (c->fd < 0) {
		ret = c->fd;
		pi_net_log(ns, PAGEIN_LOG_ERR, "cannot connect to %s: %s", ns->addr, strerror(-ret));
		goto free_conn;
	}
	memset(&hello, 0, sizeof(hello));
	pi_wire_hdr(&hello.h, sizeof(hello.b), PN_HELLO, 0);
	memcpy(hello.b.magic, PN_MAGIC, 8);
	hello.b.version = htole32(PN_VERSION);
	hello.b.page_size = htole32(PN_PAGE);
	hello.b.role = htole32((uint32_t)role);
	hello.b.features = htole32(ns->cfg.compress ? PN_FEAT_LZ4 : 0);
	hello.b.batch_pages = htole32(ns->cfg.batch_pages);
	hello.b.session = htole64(session);
	ret = pi_net_send_all(c, &hello, sizeof(hello), deadline);
	if (ret < 0) {
		pi_net_log(ns, PAGEIN_LOG_ERR, "server %s: sending HELLO: %s", ns->addr, strerror(-ret));
		goto close_fd;
	}
	ret = recv_deadline(c->fd, &h, sizeof(h), deadline);
	if (ret < 0)
		goto io_err;
	len = le32toh(h.len);
	if (le16toh(h.type) == PN_ERROR && len >= sizeof(struct pn_error) &&
	    len <= sizeof(struct pn_error) + PN_MAX_TEXT) {
		char text[PN_MAX_TEXT + 1] = "";
		struct pn_error e;

		ret = recv_deadline(c->fd, &e, sizeof(e), deadline);
		if (!ret)
			ret = recv_deadline(c->fd, text, len - sizeof(e), deadline);
		if (ret < 0)
			goto io_err;
		pi_net_log(ns, PAGEIN_LOG_ERR, "server %s refused the connection: %s (error %u)",
		       ns->addr, text, le32toh(e.code));
		e.code = le32toh(e.code);
		ret = e.code > 0 && e.code < 4096 ? -(int)e.code : -ECONNREFUSED;
		goto close_fd;
	}
	if (le16toh(h.type) != PN_WELCOME || len < sizeof(w) || h.flags || h.id ||
	    len > sizeof(w) + PN_MAX_REGIONS * sizeof(struct pn_region)) {
		pi_net_log(ns, PAGEIN_LOG_ERR, "server %s: the answer to HELLO is not a WELCOME (type %u, "
		       "%u bytes, flags %#x, id %#llx): not a pagein page server?", ns->addr,
		       le16toh(h.type), len, le16toh(h.flags), (unsigned long long)le64toh(h.id));
		ret = -EPROTO;
		goto close_fd;
	}
	ret = recv_deadline(c->fd, &w, sizeof(w), deadline);
	if (ret < 0)
		goto io_err;
	if (memcmp(w.magic, PN_MAGIC, 8)) {
		pi_net_log(ns, PAGEIN_LOG_ERR, "server %s: WELCOME has the wrong magic", ns->addr);
		ret = -EPROTO;
		goto close_fd;
	}
	if (le32toh(w.version) != PN_VERSION || le32toh(w.page_size) != PN_PAGE) {
		pi_net_log(ns, PAGEIN_LOG_ERR, "server %s speaks protocol version %u with %u-byte pages; "
		       "this client speaks version %u with %u-byte pages", ns->addr,
		       le32toh(w.version), le32toh(w.page_size), PN_VERSION, PN_PAGE);
		ret = -EPROTO;
		goto close_fd;
	}
	n = le32toh(w.nregions);
	feat = le32toh(w.features);
	if (!n || n > PN_MAX_REGIONS || len != sizeof(w) + n * sizeof(struct pn_region)) {
		pi_net_log(ns, PAGEIN_LOG_ERR, "server %s: WELCOME with %u regions (1..%u) in %u bytes",
		       ns->addr, n, PN_MAX_REGIONS, len);
		ret = -EPROTO;
		goto close_fd;
	}
	if (feat & ~(ns->cfg.compress ? PN_FEAT_LZ4 : 0u)) {
		pi_net_log(ns, PAGEIN_LOG_ERR, "server %s granted features %#x it was not asked for",
		       ns->addr, feat);
		ret = -EPROTO;
		goto close_fd;
	}
	ret = recv_deadline(c->fd, regs, n * sizeof(struct pn_region), deadline);
	if (ret < 0)
		goto io_err;
	for (i = 0; i < n; i++) {
		regs[i].gpa = le64toh(regs[i].gpa);
		regs[i].size = le64toh(regs[i].size);
		regs[i].digest = le64toh(regs[i].digest);
	}
	if (session) {
		if (le64toh(w.session) != session || n != ns->nregions ||
		    memcmp(regs, ns->regions, n * sizeof(regs[0]))) {
			pi_net_log(ns, PAGEIN_LOG_ERR, "server %s: a bulk connection joined another session "
			       "or got another region table", ns->addr);
			ret = -EPROTO;
			goto close_fd;
		}
	} else {
		ret = check_regions(ns, regs, n);
		if (ret < 0)
			goto close_fd;
		if (!w.session) {
			pi_net_log(ns, PAGEIN_LOG_ERR, "server %s: WELCOME with session 0", ns->addr);
			ret = -EPROTO;
			goto close_fd;
		}
		memcpy(ns->regions, regs, n * sizeof(regs[0]));
		ns->nregions = n;
		ns->session = le64toh(w.session);
		ns->features = feat;
	}
	c->features = feat;
	return c;
io_err:
	pi_net_log(ns, PAGEIN_LOG_ERR, "server %s: %s during the handshake", ns->addr,
	       ret == -ETIMEDOUT ? "no answer in time" : ret == -ECONNRESET ? "connection closed"
									 : strerror(-ret));
	if (ret == -ECONNRESET)
		ret = -EPROTO;
close_fd:
	close(c->fd);
free_conn:
	free(c->rbuf);
	free(c->body);
	free(c->stage);
	free(c->huge);
	free(c);
	*err = ret;
	return NULL;
}

int pi_net_conn_start(struct ns_conn *c)
{
	int ret = pthread_create(&c->thread, NULL, receiver_main, c);

	if (ret)
		return -ret;
	c->thread_started = true;
	return 0;
}

/* Stop the receiver, close the socket, free the connection. */
void pi_net_conn_close(struct ns_conn *c)
{
	if (!c)
		return;
	atomic_store(&c->quitting, true);
	shutdown(c->fd, SHUT_RDWR);
	pi_net_wake_parked(c->ns);
	if (c->thread_started)
		pthread_join(c->thread, NULL);
	close(c->fd);
	free(c->rbuf);
	free(c->body);
	free(c->stage);
	free(c->huge);
	free(c);
}

/* ------------------------------------------------------------------------------------------- */
/* the source                                                                                 */

static bool net_covers(void *ctx, uint64_t gpa, uint64_t len)
{
	return pi_net_region_of(ctx, gpa, len) != NULL;
}

static void net_destroy(void *ctx)
{
	struct netsrc *ns = ctx;
	unsigned i;

	for (i = 0; i < ns->nbulk; i++)
		pi_net_conn_close(ns->bulk[i]);
	pi_net_conn_close(ns->main);
	pthread_mutex_destroy(&ns->lock);
	free(ns);
}

static const struct pagein_source_ops net_ops = {
	.fetch = pi_net_fetch,
	.destroy = net_destroy,
	.covers = net_covers,
};

struct netsrc *pi_net_of(struct pagein_source *src)
{
	return src && src->ops.fetch == pi_net_fetch ? src->ctx : NULL;
}

int pagein_source_net_new(const struct pagein_net_config *cfg, struct pagein_source **out)
{
	struct pagein_net_config c;
	struct netsrc *ns;
	int ret, role;

	if (!cfg || !out)
		return -EINVAL;
	pagein_net_config_init(&c);
	if (pi_wire_cfg_copy(&c, sizeof(c), cfg) < 0) {
		pi_wire_log(cfg->size ? cfg->log : NULL, cfg->log_arg, PAGEIN_LOG_ERR,
			    "pagein_net_config: fill it with pagein_net_config_init first");
		return -EINVAL;
	}
	if (!c.addr || !c.batch_pages || c.batch_pages > PN_MAX_PAGES || c.bulk > NS_MAX_BULK)
		return -EINVAL;
	cfg = &c;
	ns = calloc(1, sizeof(*ns));
	if (!ns)
		return -ENOMEM;
	ns->cfg = c;
	if (!ns->cfg.connect_timeout_ms)
		ns->cfg.connect_timeout_ms = 5000;
	snprintf(ns->addr, sizeof(ns->addr), "%s", cfg->addr);
	ns->cfg.addr = ns->addr;
	pthread_mutex_init(&ns->lock, NULL);
	ret = resolve_addr(ns);
	if (ret < 0)
		goto free_ns;
	/* urgent off: one bulk connection carries faults and the stream (none: faults only) */
	role = cfg->urgent || !cfg->bulk ? PN_ROLE_URGENT : PN_ROLE_BULK;
	ns->main = pi_net_conn_open(ns, role, 0, &ret);
	if (!ns->main)
		goto free_ns;
	ns->main->replies = true;
	ns->main->stream = role == PN_ROLE_BULK;
	atomic_store(&ns->streaming, ns->main->stream);
	ret = pi_net_conn_start(ns->main);
	if (ret < 0)
		goto close_main;
	ret = pagein_source_new(&net_ops, ns, out);
	if (ret < 0)
		goto close_main;
	pi_net_log(ns, PAGEIN_LOG_INFO, "connected to %s: session %#llx, %u regions, %s%s", ns->addr,
	       (unsigned long long)ns->session, ns->nregions,
	       role == PN_ROLE_URGENT ? "urgent connection" : "one connection for faults and stream",
	       ns->features & PN_FEAT_LZ4 ? ", LZ4" : "");
	return 0;
close_main:
	pi_net_conn_close(ns->main);
free_ns:
	pthread_mutex_destroy(&ns->lock);
	free(ns);
	return ret;
}

int pagein_net_regions(struct pagein_source *src, struct pagein_region_desc *regs, unsigned max)
{
	struct netsrc *ns = pi_net_of(src);
	unsigned i;

	if (!ns || (!regs && max))
		return -EINVAL;
	if (!regs)
		return (int)ns->nregions;
	/* a prefix would look like the whole table to a caller that trusts the count */
	if (ns->nregions > max) {
		pi_net_log(ns, PAGEIN_LOG_ERR, "server %s has %u regions; the caller's table holds %u",
			   ns->addr, ns->nregions, max);
		return -E2BIG;
	}
	for (i = 0; i < ns->nregions; i++)
		regs[i] = (struct pagein_region_desc){
			.gpa = ns->regions[i].gpa,
			.size = ns->regions[i].size,
			.digest = ns->regions[i].digest,
		};
	return (int)i;
}

void pagein_net_stats_get(struct pagein_source *src, struct pagein_net_stats *st)
{
	struct netsrc *ns = pi_net_of(src);

	memset(st, 0, sizeof(*st));
	if (!ns)
		return;
	st->requests = atomic_load(&ns->requests);
	st->replies = atomic_load(&ns->replies);
	st->pages_urgent = atomic_load(&ns->pages_urgent);
	st->pages_bulk = atomic_load(&ns->pages_bulk);
	st->pages_installed = atomic_load(&ns->pages_installed);
	st->bytes_received = atomic_load(&ns->bytes_received);
	st->errors = atomic_load(&ns->errors);
	st->stream_done = atomic_load(&ns->stream_done);
}
