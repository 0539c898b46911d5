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
#include <sys/eventfd.h>
#include <unistd.h>

#include "net/client.h"
#include "net/auth.h"
#include "net/have.h"

void pagein_net_config_init(struct pagein_net_config *cfg)
{
	memset(cfg, 0, sizeof(*cfg));
	cfg->size = sizeof(*cfg);
	cfg->urgent = true;
	cfg->bulk = 1;
	cfg->compress = true;
	cfg->batch_pages = 64;
	cfg->connect_timeout_ms = 5000;
	cfg->silence_ms = 2000;
	cfg->pause_limit_ms = 600000;
}

/* ------------------------------------------------------------------------------------------- */
/* pause on silence                                                                           */

/* How long c's next read may wait: the silence limit, or less when a pause under way ends in
 * failure sooner. */
static int silence_wait_ms(struct ns_conn *c)
{
	struct netsrc *ns = c->ns;
	uint64_t end = pi_link_pause_deadline(&ns->link), now = pi_now_ns();
	int ms = (int)ns->cfg.silence_ms;

	if (end != UINT64_MAX)
		ms = end <= now ? 1 : (end - now) / 1000000 + 1 < (uint64_t)ms
						  ? (int)((end - now) / 1000000 + 1) : ms;
	return ms;
}

int pi_net_silence(struct ns_conn *c)
{
	struct netsrc *ns = c->ns;
	char why[400];

	if (pi_link_state(&ns->link) == PI_LINK_FAILED)
		return -ETIMEDOUT;
	snprintf(why, sizeof(why), "server %s sent nothing for %u ms on the %s connection",
		 ns->addr, ns->cfg.silence_ms, c->replies ? "urgent" : "bulk");
	if (pi_link_pause(&ns->link, why))
		pi_net_log(ns, PAGEIN_LOG_WARN, "%s: pausing (faults wait; pause limit %u ms)", why,
			   ns->cfg.pause_limit_ms);
	if (pi_link_pause_deadline(&ns->link) <= pi_now_ns()) {
		pi_link_fail(&ns->link);
		pi_net_log(ns, PAGEIN_LOG_ERR, "server %s: paused for the pause limit (%u ms): the "
			   "migration fails", ns->addr, ns->cfg.pause_limit_ms);
		return -ETIMEDOUT;
	}
	return 0;
}

/* Data arrived on c: a pause caused by silence is over. */
static void heard(struct ns_conn *c)
{
	struct netsrc *ns = c->ns;

	/* not a pause for a lost connection: only the resume ends that one (a bulk connection
	 * still delivering what it had buffered says nothing of the lost one) */
	if (pi_link_state(&ns->link) == PI_LINK_PAUSED && !atomic_load(&ns->lost) &&
	    pi_link_resumed(&ns->link))
		pi_net_log(ns, PAGEIN_LOG_INFO, "server %s is heard again: resumed after %llu ms",
			   ns->addr, (unsigned long long)(atomic_load(&ns->link.last_pause_ns) /
							 1000000));
}

/* Send HEARTBEAT on every connection that has sent nothing for PN_HEARTBEAT_MS. */
static void *heartbeat_main(void *arg)
{
	struct netsrc *ns = arg;
	unsigned i;

	while (!atomic_load(&ns->hb_quit)) {
		uint64_t now = pi_now_ns();

		pthread_mutex_lock(&ns->lock);
		for (i = 0; i <= ns->nbulk; i++) {
			struct ns_conn *c = i < ns->nbulk ? ns->bulk[i] : ns->main;

			if (c && (c->features & PN_FEAT_HEARTBEAT) && !atomic_load(&c->dead) &&
			    now - atomic_load(&c->last_send_ns) >= PN_HEARTBEAT_MS * 1000000ull)
				pi_net_send_frame(c, PN_HEARTBEAT, 0, now + PN_HEARTBEAT_MS * 1000000ull);
		}
		pthread_mutex_unlock(&ns->lock);
		pi_futex_wait(&ns->hb_quit, 0, pi_now_ns() + PN_HEARTBEAT_MS * 500000ull);
	}
	return NULL;
}

void pi_net_have_mark(struct netsrc *ns, uint64_t gpa, uint64_t npages)
{
	const struct pn_region *r;
	uint64_t i, idx;

	if (!ns->have || !npages)
		return;
	r = pi_net_region_of(ns, gpa, npages * PN_PAGE);
	if (!r)
		return;
	idx = ns->first_page[r - ns->regions] + (gpa - r->gpa) / PN_PAGE;
	for (i = idx; i < idx + npages; i++)
		atomic_fetch_or_explicit(&ns->have[i / 64], 1ull << (i % 64),
					 memory_order_relaxed);
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
static int recv_exact_until(struct ns_conn *c, void *dst, size_t n, int idle_ms,
			    uint64_t deadline_ns, size_t *gotp)
{
	uint8_t *p = dst;
	size_t got = 0, k, dummy;
	ssize_t r;
	uint64_t now;

	if (!gotp)
		gotp = &dummy;
	while ((*gotp = got) < n) {
		if (c->rpos < c->rlen) {
			k = c->rlen - c->rpos;
			if (k > n - got)
				k = n - got;
			memcpy(p + got, c->rbuf + c->rpos, k);
			c->rpos += k;
			got += k;
			continue;
		}
		/* with heartbeats, silence pauses the migration instead of ending the read */
		if (c->features & PN_FEAT_HEARTBEAT)
			idle_ms = silence_wait_ms(c);
		if (deadline_ns) {
			/* a reply read into its requester's buffer ends at the requester's
			 * deadline, as the request would, unless the migration is paused */
			now = pi_now_ns();
			if (now >= deadline_ns && pi_link_state(&c->ns->link) == PI_LINK_RUNNING)
				return -ETIME;
			if (now < deadline_ns && (idle_ms < 0 || (uint64_t)idle_ms >
						  (deadline_ns - now) / 1000000 + 1))
				idle_ms = (int)((deadline_ns - now) / 1000000 + 1);
		}
		/* remainders of a page or more go straight to dst; small ones (frame headers) through
		 * the buffer, which takes a page at most: what follows a header is usually a payload
		 * that a copy out of the buffer would only slow down */
		if (n - got >= NS_RBUF)
			r = pi_conn_recv_some(&c->tc, p + got, n - got, idle_ms, -1);
		else
			r = pi_conn_recv_some(&c->tc, c->rbuf, NS_RBUF, idle_ms, -1);
		if (r == -ETIMEDOUT && deadline_ns && pi_now_ns() >= deadline_ns)
			continue; /* the deadline, not silence: decided above */
		if (r == -ETIMEDOUT && (c->features & PN_FEAT_HEARTBEAT) && !pi_net_silence(c))
			continue;
		if (r < 0)
			return (int)r;
		if (r > 0 && (c->features & PN_FEAT_HEARTBEAT))
			heard(c);
		if (r == 0)
			return got ? -EPIPE : 1;
		atomic_fetch_add_explicit(&c->ns->bytes_received, (uint64_t)r, memory_order_relaxed);
		if (n - got >= NS_RBUF) {
			got += (size_t)r;
		} else {
			c->rpos = 0;
			c->rlen = (size_t)r;
		}
	}
	return 0;
}

static int recv_exact(struct ns_conn *c, void *dst, size_t n, int idle_ms)
{
	return recv_exact_until(c, dst, n, idle_ms, 0, NULL);
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
/*
 * The body of a reply (PAGES with an id): its header and descriptors first, then, when its
 * request is waiting for it, the raw pages straight into the requester's buffer, saving a copy
 * on the fault's path. Anything else (abandoned, mismatched, malformed) is read whole and judged
 * by the usual checks. Only with heartbeats: a server that goes quiet in the middle of the
 * payload is then noticed, and the request goes back to waiting.
 */
static int recv_reply(struct ns_conn *c, uint64_t id, uint32_t len, int idle, char *why,
		      size_t whylen)
{
	struct netsrc *ns = c->ns;
	struct pi_wire_pages pg;
	struct pn_pages ph;
	struct ns_slot *sl;
	uint32_t head = sizeof(ph), i, j, d;
	int ret;

	if ((c->features & PN_FEAT_HEARTBEAT) && len >= sizeof(ph)) {
		ret = recv_exact(c, c->body, sizeof(ph), idle);
		if (ret)
			return ret == 1 ? -EPIPE : ret;
		memcpy(&ph, c->body, sizeof(ph));
		i = le32toh(ph.npages);
		if (i && i <= PN_MAX_PAGES && len >= sizeof(ph) + 4ull * i)
			head += 4 * i;
		if (head > sizeof(ph)) {
			ret = recv_exact(c, c->body + sizeof(ph), head - sizeof(ph), idle);
			if (ret)
				return ret == 1 ? -EPIPE : ret;
		}
	} else {
		head = 0;
	}
	if (head > sizeof(ph)) {
		/* the checks look at the header and descriptors only, not at the payload */
		ret = pi_wire_parse_pages(c->body, len, ns->regions, ns->nregions,
					  c->features & PN_FEAT_LZ4, &pg, why, whylen);
		if (ret)
			return ret;
		sl = pi_net_reply_begin(c, id, &pg);
		if (sl) {
			uint64_t dl = atomic_load(&sl->deadline_ns), t0 = pi_now_ns();
			uint64_t pauses = atomic_load(&ns->link.pauses);
			size_t got = 0, done = 0, left, off;

			for (i = 0; i < pg.npages && !ret; i = j) {
				memcpy(&d, pg.desc + 4 * i, 4);
				for (j = i + 1; PN_PG_KIND(le32toh(d)) == PN_PG_RAW && j < pg.npages;
				     j++) {
					uint32_t e;

					memcpy(&e, pg.desc + 4 * j, 4);
					if (PN_PG_KIND(le32toh(e)) != PN_PG_RAW)
						break;
				}
				if (PN_PG_KIND(le32toh(d)) != PN_PG_RAW)
					continue;
				for (off = 0;; off += got) {
					ret = recv_exact_until(c, sl->dst + (uint64_t)i * PN_PAGE + off,
							       (size_t)(j - i) * PN_PAGE - off, idle,
							       dl, &got);
					done += got;
					if (ret != -ETIME || atomic_load(&ns->link.pauses) == pauses)
						break;
					/* paused and resumed meanwhile: the request gets its time
					 * again, as a waiting one does */
					pauses = atomic_load(&ns->link.pauses);
					dl = pi_now_ns() + (dl > t0 ? dl - t0 : 0);
				}
			}
			if (ret != -ETIME)
				return pi_net_reply_end(c, sl, &pg, ret == 1 ? -EPIPE : ret, true);
			/* the requester's time ran out in the middle of the payload: it fails as
			 * if the reply had not come, and the rest of the frame is read and dropped
			 * (the page stays missing, never installed from a partial reply) */
			pi_net_reply_end(c, sl, &pg, -ETIMEDOUT, false);
			for (left = len - head - done; left; left -= got) {
				got = left < (size_t)PN_MAX_PAGES * PN_PAGE ? left
								     : (size_t)PN_MAX_PAGES * PN_PAGE;
				ret = recv_exact(c, c->stage, got, idle);
				if (ret)
					return ret == 1 ? -EPIPE : ret;
			}
			return 0;
		}
	}
	ret = recv_exact(c, c->body + head, len - head, idle);
	if (ret)
		return ret == 1 ? -EPIPE : ret;
	ret = pi_wire_parse_pages(c->body, len, ns->regions, ns->nregions,
				  c->features & PN_FEAT_LZ4, &pg, why, whylen);
	if (ret)
		return ret;
	return pi_net_handle_reply(c, id, &pg, why, whylen);
}

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
	if (type == PN_PAGES && id && c->replies)
		return recv_reply(c, id, len, idle, why, whylen);
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
	case PN_HEARTBEAT:
		if (!(c->features & PN_FEAT_HEARTBEAT) || len || id) {
			snprintf(why, whylen, "a HEARTBEAT frame %s",
				 len || id ? "with a body or an id" : "that was not negotiated");
			return -EPROTO;
		}
		return 0;
	case PN_FAIL:
		if (!(c->features & PN_FEAT_FAIL) || !id || len < sizeof(struct pn_fail) ||
		    len > sizeof(struct pn_fail) + PN_MAX_TEXT) {
			snprintf(why, whylen, "a FAIL frame %s (%u bytes, id %#llx)",
				 c->features & PN_FEAT_FAIL ? "that is malformed" : "that was not "
				 "negotiated", len, (unsigned long long)id);
			return -EPROTO;
		}
		return pi_net_handle_fail(c, id, (const struct pn_fail *)c->body,
					  (const char *)c->body + sizeof(struct pn_fail),
					  len - (uint32_t)sizeof(struct pn_fail), why, whylen);
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
	if (!atomic_load(&c->quitting) && ns->resume &&
	    pi_link_state(&ns->link) != PI_LINK_FAILED) {
		/* pause, don't fail: the recovery thread reconnects and resumes; waiting requests
		 * stay waiting and go out again on the new connection */
		char msg[480];

		if (ret == 1)
			snprintf(why, sizeof(why), "the server closed it");
		else if (ret == -EBADMSG)
			snprintf(why, sizeof(why), "a TLS record failed authentication (changed in "
				 "flight)");
		else if (ret == -EPIPE)
			snprintf(why, sizeof(why), "it closed in the middle of a frame");
		else if (!why[0])
			snprintf(why, sizeof(why), "%s", strerror(-ret));
		snprintf(msg, sizeof(msg), "server %s, %s connection lost: %s", ns->addr,
			 c->replies ? (c->stream ? "single" : "urgent") : "bulk", why);
		atomic_fetch_add(&ns->errors, 1); /* a connection lost, even if resumed */
		atomic_store(&ns->lost, true);
		shutdown(c->fd, SHUT_RDWR);
		atomic_store(&c->dead, true);
		pi_futex_wake(&c->send_lock);
		if (pi_link_pause(&ns->link, msg))
			pi_net_log(ns, PAGEIN_LOG_WARN, "%s: pausing and reconnecting", msg);
		atomic_fetch_add(&ns->rc_seq, 1);
		pi_futex_wake(&ns->rc_seq);
		return NULL;
	}
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
			else if (ret == -ETIMEDOUT && !why[0] &&
				 pi_link_state(&ns->link) == PI_LINK_FAILED)
				snprintf(why, sizeof(why), "paused for the pause limit (%u ms) without "
					 "hearing from the server", ns->cfg.pause_limit_ms);
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
	pi_futex_wake(&c->send_lock);
	/* with resume, a main connection retired by the recovery leaves its waiting requests to
	 * be sent again on the next one; they fail only when the migration does */
	if (c->replies && (!ns->resume || pi_link_state(&ns->link) == PI_LINK_FAILED))
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
static int recv_deadline(struct ns_conn *c, void *buf, size_t n, uint64_t deadline)
{
	size_t got;

	return pi_conn_recv_full(&c->tc, buf, n, &got, -1, deadline, -1);
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
		now = pi_now_ns();
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
	uint64_t deadline = pi_now_ns() + (uint64_t)ns->cfg.connect_timeout_ms * 1000000ull;
	struct pn_region regs[PN_MAX_REGIONS];
	uint8_t secret[PN_SECRET] = { 0 };
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
	if (ns->tls) {
		char why[256];

		ret = pi_conn_handshake(&c->tc, c->fd, ns->tls, false, deadline, why, sizeof(why));
		if (ret < 0) {
			pi_net_log(ns, PAGEIN_LOG_ERR, "server %s: %s", ns->addr, why);
			goto close_fd;
		}
	} else {
		pi_conn_plain(&c->tc, c->fd);
	}
	memset(&hello, 0, sizeof(hello));
	pi_wire_hdr(&hello.h, sizeof(hello.b), PN_HELLO, 0);
	memcpy(hello.b.magic, PN_MAGIC, 8);
	hello.b.version = htole32(PN_VERSION);
	hello.b.page_size = htole32(PN_PAGE);
	hello.b.role = htole32((uint32_t)role);
	hello.b.features = htole32((ns->cfg.compress ? PN_FEAT_LZ4 : 0) | PN_FEAT_PROOF | PN_FEAT_FAIL |
				   (!ns->cfg.no_pause ? PN_FEAT_HEARTBEAT : 0) |
				   (!ns->cfg.no_pause && (!session || ns->rejoin) ? PN_FEAT_RESUME
									  : 0));
	hello.b.batch_pages = htole32(ns->cfg.batch_pages);
	hello.b.session = htole64(session);
	ret = pi_net_send_all(c, &hello, sizeof(hello), deadline);
	if (ret < 0) {
		pi_net_log(ns, PAGEIN_LOG_ERR, "server %s: sending HELLO: %s", ns->addr, strerror(-ret));
		goto close_fd;
	}
	ret = recv_deadline(c, &h, sizeof(h), deadline);
	if (ret < 0)
		goto io_err;
	len = le32toh(h.len);
	if (le16toh(h.type) == PN_CHALLENGE && session && ns->has_secret && len == PN_NONCE &&
	    !h.flags && !h.id) {
		/* joining: prove the session is ours, bound to this connection's TLS channel */
		struct {
			struct pn_hdr h;
			uint8_t mac[PN_MAC];
		} __attribute__((packed)) proof;
		uint8_t nonce[PN_NONCE], binding[PN_BINDING];

		ret = recv_deadline(c, nonce, sizeof(nonce), deadline);
		if (ret < 0)
			goto io_err;
		ret = pi_conn_binding(&c->tc, binding);
		if (ret < 0)
			goto close_fd;
		pi_wire_hdr(&proof.h, PN_MAC, PN_PROOF, 0);
		pi_session_proof(ns->secret, nonce, session, (uint32_t)role, binding, proof.mac);
		ret = pi_net_send_all(c, &proof, sizeof(proof), deadline);
		if (ret < 0)
			goto io_err;
		ret = recv_deadline(c, &h, sizeof(h), deadline);
		if (ret < 0)
			goto io_err;
		len = le32toh(h.len);
	}
	if (le16toh(h.type) == PN_ERROR && len >= sizeof(struct pn_error) &&
	    len <= sizeof(struct pn_error) + PN_MAX_TEXT) {
		char text[PN_MAX_TEXT + 1] = "";
		struct pn_error e;

		ret = recv_deadline(c, &e, sizeof(e), deadline);
		if (!ret)
			ret = recv_deadline(c, text, len - sizeof(e), deadline);
		if (ret < 0)
			goto io_err;
		pi_net_log(ns, PAGEIN_LOG_ERR, "server %s refused the connection: %s (error %u)",
		       ns->addr, text, le32toh(e.code));
		e.code = le32toh(e.code);
		ret = e.code > 0 && e.code < 4096 ? -(int)e.code : -ECONNREFUSED;
		goto close_fd;
	}
	if (le16toh(h.type) != PN_WELCOME || len < sizeof(w) || h.flags || h.id ||
	    len > sizeof(w) + PN_MAX_REGIONS * sizeof(struct pn_region) + PN_SECRET) {
		pi_net_log(ns, PAGEIN_LOG_ERR, "server %s: the answer to HELLO is not a WELCOME (type %u, "
		       "%u bytes, flags %#x, id %#llx): not a pagein page server?", ns->addr,
		       le16toh(h.type), len, le16toh(h.flags), (unsigned long long)le64toh(h.id));
		ret = -EPROTO;
		goto close_fd;
	}
	ret = recv_deadline(c, &w, sizeof(w), deadline);
	if (ret < 0)
		goto io_err;
	if (memcmp(w.magic, PN_MAGIC, 8)) {
		pi_net_log(ns, PAGEIN_LOG_ERR, "server %s: WELCOME has the wrong magic", ns->addr);
		ret = -EPROTO;
		goto close_fd;
	}
	if (le32toh(w.version) == 1) {
		/* a version-1 server: the same layout, but it cannot prove sessions or resume */
		pi_net_log(ns, PAGEIN_LOG_ERR, "server %s speaks pagein protocol version 1; this client "
			   "speaks version %u: upgrade the server", ns->addr, PN_VERSION);
		ret = -EPROTONOSUPPORT;
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
	/* the opening connection of a session with a secret gets it after the table */
	if (!n || n > PN_MAX_REGIONS ||
	    len != sizeof(w) + n * sizeof(struct pn_region) +
			   (!session && (feat & PN_FEAT_PROOF) ? PN_SECRET : 0)) {
		pi_net_log(ns, PAGEIN_LOG_ERR, "server %s: WELCOME with %u regions (1..%u) in %u bytes",
		       ns->addr, n, PN_MAX_REGIONS, len);
		ret = -EPROTO;
		goto close_fd;
	}
	if (feat & ~((ns->cfg.compress ? PN_FEAT_LZ4 : 0u) | PN_FEAT_PROOF | PN_FEAT_FAIL |
		     (!ns->cfg.no_pause ? PN_FEAT_HEARTBEAT |
		     (session && !ns->rejoin ? 0 : PN_FEAT_RESUME) : 0u))) {
		pi_net_log(ns, PAGEIN_LOG_ERR, "server %s granted features %#x it was not asked for",
		       ns->addr, feat);
		ret = -EPROTO;
		goto close_fd;
	}
	ret = recv_deadline(c, regs, n * sizeof(struct pn_region), deadline);
	if (ret < 0)
		goto io_err;
	if (!session && (feat & PN_FEAT_PROOF)) {
		ret = recv_deadline(c, secret, sizeof(secret), deadline);
		if (ret < 0)
			goto io_err;
	}
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
		if (ns->reopen && (n != ns->nregions ||
				   memcmp(regs, ns->regions, n * sizeof(regs[0])))) {
			/* resuming: only the same image (regions and digests) will do */
			pi_net_log(ns, PAGEIN_LOG_ERR, "server %s serves another image (its region "
				   "table or digests differ from the migration's): cannot resume "
				   "from it", ns->addr);
			ret = -ESTALE;
			goto close_fd;
		}
		/* under the lock: a stream being started joins with these */
		pthread_mutex_lock(&ns->lock);
		if (!ns->reopen) {
			memcpy(ns->regions, regs, n * sizeof(regs[0]));
			ns->nregions = n;
		}
		ns->session = le64toh(w.session);
		ns->features = feat;
		ns->has_secret = feat & PN_FEAT_PROOF;
		memcpy(ns->secret, secret, sizeof(secret));
		pthread_mutex_unlock(&ns->lock);
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
	pi_conn_close(&c->tc); /* closes fd */
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
	pi_conn_close(&c->tc); /* closes fd */
	free(c->rbuf);
	free(c->body);
	free(c->stage);
	free(c->huge);
	free(c);
}

/* ------------------------------------------------------------------------------------------- */
/* the source                                                                                 */

/* ------------------------------------------------------------------------------------------- */
/* reconnect and resume                                                                       */

/* Send the destination's present pages on a resuming connection (HAVE frames, the last marked). */
static int send_have(struct netsrc *ns, struct ns_conn *c, uint64_t deadline, uint64_t *present)
{
	uint64_t words = (ns->total_pages + 63) / 64, win = pi_have_window(PN_HAVE_MAX_BODY), first,
		 i, *snap = malloc(words * 8);
	uint8_t *buf = malloc(sizeof(struct pn_hdr) + PN_HAVE_MAX_BODY);
	int ret = 0;

	*present = 0;
	if (!snap || !buf) {
		ret = -ENOMEM;
		goto out;
	}
	for (i = 0; i < words; i++) {
		snap[i] = atomic_load_explicit(&ns->have[i], memory_order_relaxed);
		*present += (uint64_t)__builtin_popcountll(snap[i]);
	}
	for (first = 0; first < ns->total_pages && !ret; first += win) {
		uint64_t n = ns->total_pages - first < win ? ns->total_pages - first : win;
		ssize_t len = pi_have_encode(snap, first, n, first + n == ns->total_pages,
					     buf + sizeof(struct pn_hdr), PN_HAVE_MAX_BODY);

		if (len < 0) {
			ret = (int)len;
			break;
		}
		pi_wire_hdr((struct pn_hdr *)buf, (uint32_t)len, PN_HAVE, 0);
		ret = pi_net_send_all(c, buf, sizeof(struct pn_hdr) + (size_t)len, deadline);
	}
out:
	free(snap);
	free(buf);
	return ret;
}

/* The pause limit passed, or resuming is impossible: fail what waits, as a dead source does. */
static void recover_fail(struct netsrc *ns, const char *why)
{
	pi_link_fail(&ns->link);
	pi_net_log(ns, PAGEIN_LOG_ERR, "server %s: %s: the migration fails", ns->addr, why);
	pi_net_slots_fail_all(ns, -ECONNRESET);
	pi_net_stream_fail(ns, -ECONNRESET);
}

/* Is any connection of the source lost? */
static bool anything_lost(struct netsrc *ns)
{
	bool lost = atomic_load(&ns->main->dead);
	unsigned i;

	pthread_mutex_lock(&ns->lock);
	for (i = 0; i < ns->nbulk; i++)
		lost |= atomic_load(&ns->bulk[i]->dead);
	pthread_mutex_unlock(&ns->lock);
	return lost;
}

/* One attempt: connect, resume a new session from what we have, switch over. 0, -ESTALE (never
 * from this server), or another -errno (try again). */
static int recover_once(struct netsrc *ns)
{
	uint64_t deadline = pi_now_ns() + (uint64_t)ns->cfg.connect_timeout_ms * 1000000ull,
		 t0 = pi_now_ns(), present = 0;
	struct ns_conn *old = ns->main, *c, *bulk[NS_MAX_BULK];
	int ret, role = old->stream ? PN_ROLE_BULK : PN_ROLE_URGENT;
	unsigned i, n;

	/* first stop every receiver: they are lost or about to be replaced, and once they are
	 * gone no other thread reads the address, the session or the table we rewrite (the old
	 * main stays allocated: a fetch may still hold it) */
	atomic_store(&old->quitting, true);
	atomic_store(&old->dead, true);
	shutdown(old->fd, SHUT_RDWR);
	if (old->thread_started) {
		pthread_join(old->thread, NULL);
		old->thread_started = false;
	}
	pthread_mutex_lock(&ns->lock);
	n = ns->nbulk;
	memcpy(bulk, ns->bulk, sizeof(bulk));
	ns->nbulk = 0;
	pthread_mutex_unlock(&ns->lock);
	for (i = 0; i < n; i++)
		pi_net_conn_close(bulk[i]);

	pthread_mutex_lock(&ns->lock);
	if (ns->addr_new) {
		ns->addr_new = false;
		snprintf(ns->addr, sizeof(ns->addr), "%s", ns->next_addr);
		ret = resolve_addr(ns);
		pthread_mutex_unlock(&ns->lock);
		if (ret < 0)
			return ret;
		if (!ns->tls && !ns->cfg.insecure && !pi_addr_is_loopback(&ns->sa[0])) {
			pi_net_log(ns, PAGEIN_LOG_ERR, "refusing to resume from %s without "
				   "authentication (TLS), unless insecure", ns->addr);
			return -EACCES;
		}
	} else {
		pthread_mutex_unlock(&ns->lock);
	}
	pi_link_resuming(&ns->link);
	/* rejoin the same session if the server still keeps it (its grace period), proving it
	 * ours; a server that no longer knows it (restarted, a replica, the grace period over)
	 * refuses, and a new session resumes instead */
	c = NULL;
	if (ns->has_secret) {
		ns->rejoin = true;
		c = pi_net_conn_open(ns, role, ns->session, &ret);
		ns->rejoin = false;
		if (!c && ret != -EACCES && ret != -ENOENT)
			return ret;
		if (c && !(c->features & PN_FEAT_RESUME)) {
			pi_net_conn_close(c);
			c = NULL;
		}
		if (c)
			atomic_fetch_add(&ns->rejoins, 1);
		else
			pi_net_log(ns, PAGEIN_LOG_INFO, "server %s does not keep session %#llx: "
				   "resuming in a new one", ns->addr,
				   (unsigned long long)ns->session);
	}
	if (!c) {
		ns->reopen = true;
		c = pi_net_conn_open(ns, role, 0, &ret);
		ns->reopen = false;
	}
	if (!c)
		return ret;
	if (!(c->features & PN_FEAT_RESUME)) {
		pi_net_conn_close(c);
		return -ESTALE;
	}
	c->replies = true;
	c->stream = old->stream;
	c->gen = atomic_load(&ns->gen) + 1;
	ret = send_have(ns, c, deadline, &present);
	if (ret < 0) {
		pi_net_conn_close(c);
		return ret;
	}
	/* switch over: the old main stays allocated (a fetch may still hold it) */
	old->old_next = ns->graveyard;
	ns->graveyard = old;
	atomic_store(&ns->gen, c->gen);
	atomic_store(&ns->main, c);
	ret = pi_net_conn_start(c);
	if (ret < 0)
		return ret;
	pi_net_resend(ns, c);
	ret = pi_net_stream_reopen(ns);
	if (ret < 0)
		return ret;
	atomic_store(&ns->last_recover_us, (pi_now_ns() - t0) / 1000);
	atomic_fetch_add(&ns->resumes, 1);
	atomic_store(&ns->lost, false);
	if (pi_link_resumed(&ns->link))
		pi_net_log(ns, PAGEIN_LOG_INFO, "server %s: resumed in session %#llx after %llu ms "
			   "paused (%llu pages were here already; recovery %llu us)", ns->addr,
			   (unsigned long long)ns->session,
			   (unsigned long long)(atomic_load(&ns->link.last_pause_ns) / 1000000),
			   (unsigned long long)present,
			   (unsigned long long)atomic_load(&ns->last_recover_us));
	return 0;
}

/* Reconnect with backoff until resumed, or fail at the pause limit. */
static void recover(struct netsrc *ns)
{
	uint64_t rng = pi_now_ns() | 1, end, now, wake;
	unsigned attempt = 0;
	int ret;

	while (!atomic_load(&ns->rc_quit) &&
	       (anything_lost(ns) || pi_link_state(&ns->link) != PI_LINK_RUNNING)) {
		end = pi_link_pause_deadline(&ns->link);
		now = pi_now_ns();
		if (end != UINT64_MAX && now >= end) {
			recover_fail(ns, "no resume within the pause limit");
			return;
		}
		if (attempt) {
			uint32_t seq = atomic_load(&ns->rc_seq);

			wake = now + pi_link_backoff_ns(attempt - 1, &rng);
			if (wake > end)
				wake = end;
			/* a new address (pagein_net_reconnect) or a stop cuts the wait short */
			pi_futex_wait(&ns->rc_seq, seq, wake);
			if (atomic_load(&ns->rc_quit))
				return;
		}
		attempt++;
		ret = recover_once(ns);
		if (ret == 0)
			return;
		pi_link_pause(&ns->link, "reconnecting");
		if (ret == -ESTALE) {
			recover_fail(ns, "the server cannot resume this migration");
			return;
		}
		pi_net_log(ns, PAGEIN_LOG_INFO, "server %s: reconnect attempt %u: %s", ns->addr,
			   attempt, strerror(-ret));
		/* alternates: the next attempt goes to the next server of the list, unless a new
		 * address was given meanwhile */
		pthread_mutex_lock(&ns->lock);
		if (ns->nalts > 1 && !ns->addr_new) {
			ns->alt_cur = (ns->alt_cur + 1) % ns->nalts;
			snprintf(ns->next_addr, sizeof(ns->next_addr), "%s", ns->alts[ns->alt_cur]);
			ns->addr_new = true;
		}
		pthread_mutex_unlock(&ns->lock);
	}
}

static void *recover_main(void *arg)
{
	struct netsrc *ns = arg;
	uint32_t seen = 0, seq;

	while (!atomic_load(&ns->rc_quit)) {
		seq = atomic_load(&ns->rc_seq);
		if (seq == seen) {
			pi_futex_wait(&ns->rc_seq, seq, pi_now_ns() + 500000000ull);
			continue;
		}
		seen = seq;
		if (pi_link_state(&ns->link) != PI_LINK_FAILED)
			recover(ns);
	}
	return NULL;
}

int pagein_net_reconnect(struct pagein_source *src, const char *addr)
{
	struct netsrc *ns = pi_net_of(src);

	if (!ns || !addr || strlen(addr) >= sizeof(ns->next_addr) || !strchr(addr, ':'))
		return -EINVAL;
	pthread_mutex_lock(&ns->lock);
	snprintf(ns->next_addr, sizeof(ns->next_addr), "%s", addr);
	ns->addr_new = true;
	snprintf(ns->alts[0], sizeof(ns->alts[0]), "%s", addr); /* from now on, this one only */
	ns->nalts = 1;
	ns->alt_cur = 0;
	pthread_mutex_unlock(&ns->lock);
	atomic_fetch_add(&ns->rc_seq, 1);
	pi_futex_wake(&ns->rc_seq);
	return 0;
}

int pagein_net_add_alternate(struct pagein_source *src, const char *addr)
{
	struct netsrc *ns = pi_net_of(src);
	int ret = 0;

	if (!ns || !addr || strlen(addr) >= sizeof(ns->alts[0]) || !strchr(addr, ':'))
		return -EINVAL;
	pthread_mutex_lock(&ns->lock);
	if (ns->nalts >= PAGEIN_NET_MAX_ALTERNATES)
		ret = -ENOSPC;
	else
		snprintf(ns->alts[ns->nalts++], sizeof(ns->alts[0]), "%s", addr);
	pthread_mutex_unlock(&ns->lock);
	return ret;
}

static bool net_covers(void *ctx, uint64_t gpa, uint64_t len)
{
	return pi_net_region_of(ctx, gpa, len) != NULL;
}

/* Stop the sender thread (user-space TLS) and close its eventfd. */
static void sender_stop(struct netsrc *ns)
{
	uint64_t one = 1;

	if (ns->tx_started) {
		atomic_store(&ns->tx_quit, true);
		if (write(ns->tx_efd, &one, sizeof(one)) < 0) {
			/* it polls with a time-out too */
		}
		pthread_join(ns->tx_thread, NULL);
		ns->tx_started = false;
	}
	if (ns->tx_efd >= 0)
		close(ns->tx_efd);
	ns->tx_efd = -1;
}

/* Waits on pages another thread fetches do not time out while the link is paused. */
static uint64_t net_hold(void *ctx)
{
	struct netsrc *ns = ctx;

	return ns->resume || !ns->cfg.no_pause ? pi_link_hold(&ns->link) : 0;
}

static void net_destroy(void *ctx)
{
	struct netsrc *ns = ctx;
	unsigned i;

	struct ns_conn *old;

	if (ns->rc_started) {
		atomic_store(&ns->rc_quit, true);
		atomic_fetch_add(&ns->rc_seq, 1);
		pi_futex_wake(&ns->rc_seq);
		pthread_join(ns->rc_thread, NULL);
	}
	if (ns->hb_started) {
		atomic_store(&ns->hb_quit, 1);
		pi_futex_wake(&ns->hb_quit);
		pthread_join(ns->hb_thread, NULL);
	}
	sender_stop(ns);
	if (ns->resume) {
		/* nothing will resume now: whatever still waits fails */
		pi_link_fail(&ns->link);
		pi_net_slots_fail_all(ns, -ESHUTDOWN);
	}
	for (i = 0; i < ns->nbulk; i++)
		pi_net_conn_close(ns->bulk[i]);
	pi_net_conn_close(ns->main);
	while ((old = ns->graveyard)) {
		ns->graveyard = old->old_next;
		pi_net_conn_close(old);
	}
	free(ns->have);
	pi_tls_ctx_free(ns->tls);
	pi_link_destroy(&ns->link);
	pthread_mutex_destroy(&ns->lock);
	free(ns);
}

static const struct pagein_source_ops net_ops = {
	.fetch = pi_net_fetch,
	.destroy = net_destroy,
	.covers = net_covers,
	.hold = net_hold,
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
	snprintf(ns->alts[0], sizeof(ns->alts[0]), "%s", cfg->addr);
	ns->nalts = 1;
	ns->cfg.addr = ns->addr;
	ns->tx_efd = -1;
	pthread_mutex_init(&ns->lock, NULL);
	pi_link_init(&ns->link, (uint64_t)cfg->pause_limit_ms * 1000000ull, cfg->on_paused,
		     cfg->on_resumed, cfg->cb_arg);
	ret = resolve_addr(ns);
	if (ret < 0)
		goto free_ns;
	{
		char why[320];
		unsigned k;

		ret = pi_tls_ctx_from(cfg->psk_file, cfg->tls_cert, cfg->tls_key, cfg->tls_ca,
				      cfg->tls_name, false, &ns->tls, why, sizeof(why));
		if (ret < 0) {
			pi_net_log(ns, PAGEIN_LOG_ERR, "TLS: %s", why);
			goto free_ns;
		}
		for (k = 0; !ns->tls && !cfg->insecure && k < ns->naddrs; k++)
			if (!pi_addr_is_loopback(&ns->sa[k])) {
				/* secure by default: guest memory does not cross a network in the
				 * clear, nor from a server nobody authenticated */
				pi_net_log(ns, PAGEIN_LOG_ERR, "refusing to migrate from %s without "
					   "authentication: give a PSK file or certificates (TLS), or "
					   "allow it expressly (insecure; --insecure)", ns->addr);
				ret = -EACCES;
				goto free_ns;
			}
	}
	/* urgent off: one bulk connection carries faults and the stream (none: faults only) */
	role = cfg->urgent || !cfg->bulk ? PN_ROLE_URGENT : PN_ROLE_BULK;
	ns->main = pi_net_conn_open(ns, role, 0, &ret);
	if (!ns->main)
		goto free_ns;
	ns->main->replies = true;
	ns->main->stream = role == PN_ROLE_BULK;
	atomic_store(&ns->streaming, ns->main->stream);
	ns->main->gen = 1;
	atomic_store(&ns->gen, 1);
	if (ns->main->features & PN_FEAT_RESUME) {
		unsigned i;

		for (i = 0; i < ns->nregions; i++) {
			ns->first_page[i] = ns->total_pages;
			ns->total_pages += ns->regions[i].size / PN_PAGE;
		}
		ns->have = calloc((ns->total_pages + 63) / 64, 8);
		if (!ns->have) {
			ret = -ENOMEM;
			goto close_main;
		}
		ns->resume = true;
		/* a resumable session streams nothing before it hears what the destination has:
		 * nothing yet */
		{
			uint64_t present;

			ret = send_have(ns, ns->main, pi_now_ns() +
					(uint64_t)ns->cfg.connect_timeout_ms * 1000000ull, &present);
			if (ret < 0)
				goto close_main;
		}
	}
	ret = pi_net_conn_start(ns->main);
	if (ret < 0)
		goto close_main;
	if (ns->resume) {
		ret = -pthread_create(&ns->rc_thread, NULL, recover_main, ns);
		if (ret < 0)
			goto close_main;
		ns->rc_started = true;
	}
	if (ns->tls) {
		/* user-space TLS sends REQs from a thread of ours, never from a fault (SELF mode's
		 * SIGBUS handler): started even if this connection got kernel TLS, since a
		 * reconnect may not */
		ns->tx_efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
		if (ns->tx_efd < 0) {
			ret = -errno;
			goto close_main;
		}
		ret = -pthread_create(&ns->tx_thread, NULL, pi_net_sender_main, ns);
		if (ret < 0)
			goto close_main;
		ns->tx_started = true;
	}
	if (ns->main->features & PN_FEAT_HEARTBEAT) {
		ret = -pthread_create(&ns->hb_thread, NULL, heartbeat_main, ns);
		if (ret < 0)
			goto close_main;
		ns->hb_started = true;
	} else if (!cfg->no_pause) {
		pi_net_log(ns, PAGEIN_LOG_WARN, "server %s sends no heartbeats (an older server): "
			   "a silent server is not noticed before the fault time-out", ns->addr);
	}
	ret = pagein_source_new(&net_ops, ns, out);
	if (ret < 0)
		goto stop_hb;
	pi_net_log(ns, PAGEIN_LOG_INFO, "connected to %s: session %#llx, %u regions, %s%s", ns->addr,
	       (unsigned long long)ns->session, ns->nregions,
	       role == PN_ROLE_URGENT ? "urgent connection" : "one connection for faults and stream",
	       ns->features & PN_FEAT_LZ4 ? ", LZ4" : "");
	return 0;
stop_hb:
	if (ns->rc_started) {
		atomic_store(&ns->rc_quit, true);
		atomic_fetch_add(&ns->rc_seq, 1);
		pi_futex_wake(&ns->rc_seq);
		pthread_join(ns->rc_thread, NULL);
		ns->rc_started = false;
	}
	if (ns->hb_started) {
		atomic_store(&ns->hb_quit, 1);
		pi_futex_wake(&ns->hb_quit);
		pthread_join(ns->hb_thread, NULL);
	}
close_main:
	sender_stop(ns);
	if (ns->rc_started) {
		atomic_store(&ns->rc_quit, true);
		atomic_fetch_add(&ns->rc_seq, 1);
		pi_futex_wake(&ns->rc_seq);
		pthread_join(ns->rc_thread, NULL);
	}
	pi_net_conn_close(ns->main);
	free(ns->have);
free_ns:
	pi_tls_ctx_free(ns->tls);
	pi_link_destroy(&ns->link);
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
	st->pauses = atomic_load(&ns->link.pauses);
	st->paused_ms = atomic_load(&ns->link.paused_ns) / 1000000;
	st->resumes = atomic_load(&ns->resumes);
	st->last_recover_us = atomic_load(&ns->last_recover_us);
	st->fails = atomic_load(&ns->fails);
	st->rejoins = atomic_load(&ns->rejoins);
}

int pagein_net_state(struct pagein_source *src)
{
	struct netsrc *ns = pi_net_of(src);
	enum pi_link_state st;

	if (!ns)
		return -EINVAL;
	st = pi_link_state(&ns->link);
	if (st == PI_LINK_RUNNING && atomic_load(&ns->stream_done))
		return PAGEIN_NET_DONE;
	return st == PI_LINK_PAUSED ? PAGEIN_NET_PAUSED : st == PI_LINK_RESUMING
		? PAGEIN_NET_RESUMING : st == PI_LINK_FAILED ? PAGEIN_NET_FAILED : PAGEIN_NET_RUNNING;
}
