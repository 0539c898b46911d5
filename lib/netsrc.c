// SPDX-License-Identifier: MIT
/*
 * netsrc.c - the destination side of post-copy migration: a pagein_source whose fetch asks a page
 * server (lib/proto.h) over an urgent connection and waits on a lock-free request slot, and the
 * bulk connections whose streamed pages are installed with pagein_supply. Receiver threads own
 * every read; a dead or lying server fails fetches with a bounded error, never a hang.
 */
#include <endian.h>
#include <errno.h>
#include <limits.h>
#include <fcntl.h>
#include <lz4.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sched.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "internal.h"
#include "proto.h"

#define NS_SLOTS 256          /* requests in flight at once (one per faulting thread) */
#define NS_SLOT_BITS 16       /* low bits of a request id: slot index + 1 */
#define NS_MAX_BULK 16        /* bulk connections one source may open */
#define NS_RBUF (256u << 10)  /* receive buffer: small frames are read many at a time */
#define NS_HUGE (2ull << 20)  /* hugetlb page: bulk pages are gathered into whole ones */
#define NS_HUGE_PAGES (NS_HUGE / PN_PAGE)

/* Request slot states. A requester owns FREE->CLAIMED->WAITING and DONE->FREE; the receiver owns
 * WAITING->FILLING->DONE and ABANDONED->FREE; a requester that times out takes WAITING->ABANDONED. */
enum {
	SLOT_FREE = 0,
	SLOT_CLAIMED,   /* a requester is filling in the request */
	SLOT_WAITING,   /* the REQ may be on the wire; the requester sleeps on state */
	SLOT_FILLING,   /* the receiver is writing the reply into dst */
	SLOT_DONE,      /* result (and zmask) are set; the requester reads them */
	SLOT_ABANDONED, /* the requester timed out: the reply, if any, is read and dropped */
};

/* One outstanding request. */
struct ns_slot {
	_Atomic uint32_t state;  /* SLOT_*; also the futex word the requester sleeps on */
	_Atomic uint64_t id;     /* the REQ's id: generation << NS_SLOT_BITS | (index + 1) */
	uint64_t gpa;            /* first page asked for */
	uint32_t npages;         /* protocol pages asked for */
	uint64_t page_size;      /* the fetch's page size (zero_mask unit) */
	uint8_t *dst;            /* where the reply's bytes go (valid while WAITING/FILLING) */
	uint64_t zmask;          /* zero pages of page_size, set by the receiver */
	int result;              /* 0 or -errno, set by the receiver */
} __attribute__((aligned(64)));

struct netsrc;

/* One TCP connection to the server and its receiver thread. */
struct ns_conn {
	struct netsrc *ns;
	int fd;
	uint32_t features;         /* PN_FEAT_* this connection's WELCOME granted */
	bool replies;              /* carries the replies to fetches (the main connection) */
	bool stream;               /* carries bulk pages (id 0) */
	bool ended;                /* its END arrived */
	pthread_t thread;
	bool thread_started;
	_Atomic bool dead;         /* closed: fetches fail at once */
	_Atomic bool quitting;     /* we are closing it: EOF is not an error */
	_Atomic uint32_t send_lock; /* futex lock: 0 free, 1 held, 2 held with waiters */
	uint8_t *rbuf;             /* NS_RBUF bytes of received, unparsed data */
	size_t rpos, rlen;         /* unread bytes are rbuf[rpos, rlen) */
	uint8_t *body;             /* the frame being handled (PN_MAX_BODY bytes) */
	uint8_t *stage;            /* bulk pages decoded here (PN_MAX_PAGES pages) */
	uint8_t *huge;             /* a hugetlb page gathered from smaller batches (NS_HUGE) */
	uint64_t huge_gpa;         /* its guest address, or UINT64_MAX */
	uint64_t huge_have[NS_HUGE_PAGES / 64]; /* its protocol pages received so far */
	uint64_t huge_zero[NS_HUGE_PAGES / 64]; /* of those, zero */
};

/* The network source's context. */
struct netsrc {
	struct pagein_net_config cfg;
	char addr[256];                 /* copy of cfg.addr */
	struct sockaddr_storage sa;     /* the server's resolved address */
	socklen_t salen;
	uint64_t session;
	uint32_t features;              /* PN_FEAT_* granted */
	unsigned nregions;
	struct pn_region regions[PN_MAX_REGIONS]; /* host byte order */
	struct ns_conn *main;           /* urgent connection (or the single bulk one) */
	struct ns_conn *bulk[NS_MAX_BULK];
	unsigned nbulk;
	pthread_mutex_t lock;           /* stream start/stop; attach of the main connection */
	struct pagein_space *_Atomic space; /* where bulk pages go, NULL when not streaming */
	_Atomic bool streaming;
	_Atomic uint32_t attach_seq;    /* futex word: bumped on attach/detach/fetch while parked */
	_Atomic int outstanding;        /* fetches waiting for a reply */
	_Atomic uint32_t slot_seq;      /* futex word: bumped when a slot is freed */
	_Atomic uint32_t slot_waiters;
	struct ns_slot slots[NS_SLOTS];
	/* statistics */
	_Atomic uint64_t requests, replies, pages_urgent, pages_bulk, pages_installed;
	_Atomic uint64_t bytes_received, errors;
	_Atomic unsigned streams;       /* connections carrying the bulk stream */
	_Atomic unsigned ends;          /* of those, how many have sent END */
	_Atomic bool stream_done;       /* every streaming connection sent END */
};

/* ------------------------------------------------------------------------------------------- */
/* logging (never from a fetch)                                                               */

static void ns_log(struct netsrc *ns, int level, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static void ns_log(struct netsrc *ns, int level, const char *fmt, ...)
{
	char msg[512];
	va_list ap;

	if (!ns->cfg.log)
		return;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	ns->cfg.log(ns->cfg.log_arg, level, msg);
}

void pagein_net_config_init(struct pagein_net_config *cfg)
{
	memset(cfg, 0, sizeof(*cfg));
	cfg->urgent = true;
	cfg->bulk = 1;
	cfg->compress = true;
	cfg->batch_pages = 64;
	cfg->connect_timeout_ms = 5000;
}

/* ------------------------------------------------------------------------------------------- */
/* regions                                                                                    */

/* The region of the server's table holding [gpa, gpa+len), or NULL. */
static const struct pn_region *region_of(struct netsrc *ns, uint64_t gpa, uint64_t len)
{
	unsigned i;

	for (i = 0; i < ns->nregions; i++) {
		const struct pn_region *r = &ns->regions[i];

		if (gpa >= r->gpa && gpa - r->gpa < r->size && len <= r->size - (gpa - r->gpa))
			return r;
	}
	return NULL;
}

/* Check a region table from WELCOME: aligned, non-empty, no wrap, no overlap. */
static int check_regions(struct netsrc *ns, const struct pn_region *regs, unsigned n)
{
	unsigned i, j;

	for (i = 0; i < n; i++) {
		if (regs[i].gpa % PN_PAGE || regs[i].size % PN_PAGE || !regs[i].size ||
		    regs[i].gpa + regs[i].size < regs[i].gpa) {
			ns_log(ns, PAGEIN_LOG_ERR,
			       "server %s: region %u [%#llx, +%#llx) is empty, wraps or is not "
			       "4 KiB-aligned", ns->addr, i, (unsigned long long)regs[i].gpa,
			       (unsigned long long)regs[i].size);
			return -EPROTO;
		}
		for (j = 0; j < i; j++)
			if (regs[i].gpa < regs[j].gpa + regs[j].size &&
			    regs[j].gpa < regs[i].gpa + regs[i].size) {
				ns_log(ns, PAGEIN_LOG_ERR,
				       "server %s: regions %u and %u overlap", ns->addr, j, i);
				return -EPROTO;
			}
	}
	return 0;
}

/* ------------------------------------------------------------------------------------------- */
/* sending (async-signal-safe: a fetch sends its REQ)                                         */

static int send_lock(struct ns_conn *c, uint64_t deadline_ns)
{
	uint32_t v = 0;
	int spins;

	for (spins = 0; spins < 100; spins++) {
		v = 0;
		if (atomic_compare_exchange_strong(&c->send_lock, &v, 1))
			return 0;
		sched_yield();
	}
	for (;;) {
		v = atomic_exchange(&c->send_lock, 2);
		if (v == 0)
			return 0;
		if (atomic_load(&c->dead))
			return -ENOTCONN;
		if (pi_futex_wait(&c->send_lock, 2, deadline_ns) == -ETIMEDOUT)
			return -ETIMEDOUT;
	}
}

static void send_unlock(struct ns_conn *c)
{
	if (atomic_exchange(&c->send_lock, 0) == 2)
		pi_futex_wake(&c->send_lock);
}

/*
 * Write all of buf before the deadline. A frame cut short corrupts the stream for everybody:
 * then the connection is shut down (its receiver sees EOF and fails every waiting request).
 */
static int send_all(struct ns_conn *c, const void *buf, size_t len, uint64_t deadline_ns)
{
	const uint8_t *p = buf;
	size_t done = 0;
	ssize_t w;

	while (done < len) {
		w = send(c->fd, p + done, len - done, MSG_DONTWAIT | MSG_NOSIGNAL);
		if (w > 0) {
			done += (size_t)w;
			continue;
		}
		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
			struct pollfd pfd = { .fd = c->fd, .events = POLLOUT };
			int ms = -1;

			if (deadline_ns) {
				uint64_t now = pi_now_ns();

				if (now >= deadline_ns)
					goto cut;
				ms = (deadline_ns - now) / 1000000 >= INT_MAX
					     ? INT_MAX
					     : (int)((deadline_ns - now + 999999) / 1000000);
			}
			if (poll(&pfd, 1, ms) < 0 && errno != EINTR)
				goto cut;
			continue;
		}
		goto cut;
	}
	return 0;
cut:
	if (done)
		shutdown(c->fd, SHUT_RDWR);
	return done ? -ECONNRESET : (w < 0 && errno != EAGAIN ? -ECONNRESET : -ETIMEDOUT);
}

static void put_hdr(struct pn_hdr *h, uint32_t len, uint16_t type, uint64_t id)
{
	h->len = htole32(len);
	h->type = htole16(type);
	h->flags = 0;
	h->id = htole64(id);
}

/* ------------------------------------------------------------------------------------------- */
/* request slots and fetch (async-signal-safe: atomics, futex, send, poll)                    */

static void slot_free(struct netsrc *ns, struct ns_slot *sl)
{
	atomic_store(&sl->state, SLOT_FREE);
	atomic_fetch_add(&ns->slot_seq, 1);
	if (atomic_load(&ns->slot_waiters))
		pi_futex_wake(&ns->slot_seq);
}

/* Take a free slot (FREE->CLAIMED), waiting for one until the deadline. */
static struct ns_slot *slot_take(struct netsrc *ns, uint64_t deadline_ns, int *err)
{
	static _Atomic unsigned hint;
	unsigned start = atomic_fetch_add_explicit(&hint, 1, memory_order_relaxed), i;
	uint32_t seq, v;

	for (;;) {
		seq = atomic_load(&ns->slot_seq);
		for (i = 0; i < NS_SLOTS; i++) {
			struct ns_slot *sl = &ns->slots[(start + i) % NS_SLOTS];

			v = SLOT_FREE;
			if (atomic_load_explicit(&sl->state, memory_order_relaxed) == SLOT_FREE &&
			    atomic_compare_exchange_strong(&sl->state, &v, SLOT_CLAIMED))
				return sl;
		}
		if (atomic_load(&ns->main->dead)) {
			*err = -ENOTCONN;
			return NULL;
		}
		atomic_fetch_add(&ns->slot_waiters, 1);
		v = (uint32_t)pi_futex_wait(&ns->slot_seq, seq, deadline_ns);
		atomic_fetch_sub(&ns->slot_waiters, 1);
		if ((int)v == -ETIMEDOUT) {
			*err = -ETIMEDOUT;
			return NULL;
		}
	}
}

/* Wait until the receiver is done with sl or the deadline passes. Returns the result. */
static int slot_wait(struct netsrc *ns, struct ns_slot *sl, uint64_t deadline_ns,
		     uint64_t *zero_mask)
{
	uint32_t st, v;
	int ret;

	for (;;) {
		st = atomic_load(&sl->state);
		if (st == SLOT_DONE)
			break;
		if (st == SLOT_FILLING) {
			/* the receiver is copying bytes it already holds: no I/O, it ends soon */
			pi_futex_wait(&sl->state, SLOT_FILLING, 0);
			continue;
		}
		if (pi_futex_wait(&sl->state, SLOT_WAITING, deadline_ns) == -ETIMEDOUT) {
			v = SLOT_WAITING;
			if (atomic_compare_exchange_strong(&sl->state, &v, SLOT_ABANDONED))
				return -ETIMEDOUT; /* the receiver frees it when (if) the reply comes */
		}
	}
	ret = sl->result;
	if (!ret)
		*zero_mask |= sl->zmask;
	slot_free(ns, sl);
	return ret;
}

static void wake_parked(struct netsrc *ns)
{
	atomic_fetch_add(&ns->attach_seq, 1);
	pi_futex_wake(&ns->attach_seq);
}

static int net_fetch(void *ctx, uint64_t gpa, void *dst, uint64_t len, uint64_t page_size,
		     uint64_t *zero_mask, uint64_t deadline_ns)
{
	struct netsrc *ns = ctx;
	struct ns_conn *c = ns->main;
	struct ns_slot *sl;
	struct {
		struct pn_hdr h;
		struct pn_req r;
	} __attribute__((packed)) frame;
	uint64_t id;
	uint32_t v;
	int ret = 0, idx;

	if (atomic_load(&c->dead))
		return -ENOTCONN;
	if (!len || len % PN_PAGE || len / PN_PAGE > PN_MAX_PAGES || !page_size ||
	    page_size % PN_PAGE || len % page_size || len / page_size > 64 ||
	    !region_of(ns, gpa, len))
		return -EINVAL;
	sl = slot_take(ns, deadline_ns, &ret);
	if (!sl)
		return ret;
	idx = (int)(sl - ns->slots);
	id = ((atomic_load(&sl->id) >> NS_SLOT_BITS) + 1) << NS_SLOT_BITS | (uint64_t)(idx + 1);
	sl->gpa = gpa;
	sl->npages = (uint32_t)(len / PN_PAGE);
	sl->page_size = page_size;
	sl->dst = dst;
	sl->zmask = 0;
	sl->result = 0;
	atomic_store(&sl->id, id);
	atomic_fetch_add(&ns->outstanding, 1);
	/* WAITING before the REQ leaves: the reply may come back before send() returns */
	atomic_store(&sl->state, SLOT_WAITING);
	if (atomic_load(&c->dead)) {
		/* the receiver's sweep may not have seen WAITING: take it back ourselves */
		v = SLOT_WAITING;
		if (atomic_compare_exchange_strong(&sl->state, &v, SLOT_CLAIMED)) {
			ret = -ENOTCONN;
			goto out_free;
		}
		goto wait;
	}
	put_hdr(&frame.h, sizeof(frame.r), PN_REQ, id);
	frame.r.gpa = htole64(gpa);
	frame.r.npages = htole32(sl->npages);
	frame.r.reserved = 0;
	ret = send_lock(c, deadline_ns);
	if (!ret) {
		ret = send_all(c, &frame, sizeof(frame), deadline_ns);
		send_unlock(c);
	}
	if (ret < 0) {
		v = SLOT_WAITING;
		if (atomic_compare_exchange_strong(&sl->state, &v, SLOT_CLAIMED))
			goto out_free;
		ret = 0; /* the sweep of a dying connection got it first: take its result */
		goto wait;
	}
	atomic_fetch_add_explicit(&ns->requests, 1, memory_order_relaxed);
	if (c->stream && !atomic_load(&ns->space))
		wake_parked(ns); /* the receiver may be holding bulk pages for a stream to start */
wait:
	ret = slot_wait(ns, sl, deadline_ns, zero_mask);
	atomic_fetch_sub(&ns->outstanding, 1);
	return ret;
out_free:
	atomic_fetch_sub(&ns->outstanding, 1);
	slot_free(ns, sl);
	return ret;
}

/* Fail every waiting request (the connection carrying replies is gone). */
static void slots_fail_all(struct netsrc *ns, int err)
{
	unsigned i;
	uint32_t v;

	for (i = 0; i < NS_SLOTS; i++) {
		struct ns_slot *sl = &ns->slots[i];

		v = SLOT_WAITING;
		if (atomic_compare_exchange_strong(&sl->state, &v, SLOT_FILLING)) {
			sl->result = err;
			atomic_store(&sl->state, SLOT_DONE);
			pi_futex_wake(&sl->state);
			continue;
		}
		v = SLOT_ABANDONED;
		if (atomic_compare_exchange_strong(&sl->state, &v, SLOT_FREE))
			slot_free(ns, sl);
	}
	atomic_fetch_add(&ns->slot_seq, 1);
	pi_futex_wake(&ns->slot_seq);
}

/* ------------------------------------------------------------------------------------------- */
/* receiving                                                                                  */

/* Read exactly n bytes. Returns 0, 1 on a clean EOF before the first byte, or -errno. */
static int recv_exact(struct ns_conn *c, void *dst, size_t n)
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
			r = recv(c->fd, p + got, n - got, 0);
		else
			r = recv(c->fd, c->rbuf, NS_RBUF, 0);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			return -errno;
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

/* A parsed and checked PAGES body. */
struct ns_pages {
	uint64_t gpa;
	uint32_t npages;
	const uint8_t *desc;   /* npages little-endian uint32 */
	const uint8_t *data;   /* payloads */
};

/* Validate a PAGES body: header, range inside a region, descriptors adding up exactly. */
static int parse_pages(struct ns_conn *c, uint32_t len, struct ns_pages *pg, char *why,
		       size_t whylen)
{
	struct netsrc *ns = c->ns;
	struct pn_pages h;
	uint64_t need, i;
	uint32_t d;

	if (len < sizeof(h)) {
		snprintf(why, whylen, "PAGES body of %u bytes is shorter than its header", len);
		return -EPROTO;
	}
	memcpy(&h, c->body, sizeof(h));
	pg->gpa = le64toh(h.gpa);
	pg->npages = le32toh(h.npages);
	if (!pg->npages || pg->npages > PN_MAX_PAGES || h.reserved) {
		snprintf(why, whylen, "PAGES with %u pages (1..%u) or reserved %#x", pg->npages,
			 PN_MAX_PAGES, le32toh(h.reserved));
		return -EPROTO;
	}
	if (pg->gpa % PN_PAGE || !region_of(ns, pg->gpa, (uint64_t)pg->npages * PN_PAGE)) {
		snprintf(why, whylen, "PAGES [%#llx, +%u pages) is not inside one region",
			 (unsigned long long)pg->gpa, pg->npages);
		return -EPROTO;
	}
	if (len < sizeof(h) + 4ull * pg->npages) {
		snprintf(why, whylen, "PAGES of %u pages is too short for its descriptors",
			 pg->npages);
		return -EPROTO;
	}
	pg->desc = c->body + sizeof(h);
	pg->data = pg->desc + 4ull * pg->npages;
	need = 0;
	for (i = 0; i < pg->npages; i++) {
		memcpy(&d, pg->desc + 4 * i, 4);
		d = le32toh(d);
		switch (PN_PG_KIND(d)) {
		case PN_PG_RAW:
			if (PN_PG_CSIZE(d))
				goto bad_desc;
			need += PN_PAGE;
			break;
		case PN_PG_ZERO:
			if (PN_PG_CSIZE(d))
				goto bad_desc;
			break;
		case PN_PG_LZ4:
			if (!(c->features & PN_FEAT_LZ4) || !PN_PG_CSIZE(d) ||
			    PN_PG_CSIZE(d) >= PN_PAGE)
				goto bad_desc;
			need += PN_PG_CSIZE(d);
			break;
		default:
			goto bad_desc;
		}
	}
	if (need != len - sizeof(h) - 4ull * pg->npages) {
		snprintf(why, whylen,
			 "PAGES at %#llx: descriptors add up to %llu payload bytes, the frame has %llu",
			 (unsigned long long)pg->gpa, (unsigned long long)need,
			 (unsigned long long)(len - sizeof(h) - 4ull * pg->npages));
		return -EPROTO;
	}
	return 0;
bad_desc:
	snprintf(why, whylen, "PAGES at %#llx: page %llu has a bad descriptor %#x%s",
		 (unsigned long long)pg->gpa, (unsigned long long)i, d,
		 PN_PG_KIND(d) == PN_PG_LZ4 && !(c->features & PN_FEAT_LZ4) ? " (LZ4 not granted)"
									       : "");
	return -EPROTO;
}

/*
 * Decode the pages of pg into dst. Zero pages are not written; *zero gets one bit per protocol
 * page that is zero (NS_HUGE_PAGES bits at most). Returns 0 or -EPROTO (bad LZ4 data).
 */
static int decode_pages(const struct ns_pages *pg, uint8_t *dst, uint64_t *zero, char *why,
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
static uint64_t zero_fold(const uint64_t *zero, uint32_t npages, uint64_t page_size, uint8_t *dst)
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
static int handle_reply(struct ns_conn *c, uint64_t id, const struct ns_pages *pg, char *why,
			size_t whylen)
{
	struct netsrc *ns = c->ns;
	uint64_t idx = (id & ((1ull << NS_SLOT_BITS) - 1)) - 1, zero[NS_HUGE_PAGES / 64];
	struct ns_slot *sl;
	uint32_t st, v;
	int ret;

	if (!c->replies || idx >= NS_SLOTS) {
		snprintf(why, whylen, "a reply with id %#llx that no request has",
			 (unsigned long long)id);
		return -EPROTO;
	}
	sl = &ns->slots[idx];
	st = atomic_load(&sl->state);
	if ((st != SLOT_WAITING && st != SLOT_ABANDONED) || atomic_load(&sl->id) != id) {
		snprintf(why, whylen, "a reply with id %#llx that no request is waiting for "
			 "(unsolicited or duplicate)", (unsigned long long)id);
		return -EPROTO;
	}
	if (sl->gpa != pg->gpa || sl->npages != pg->npages) {
		snprintf(why, whylen,
			 "the reply to id %#llx carries [%#llx, +%u pages), the request asked for "
			 "[%#llx, +%u pages)", (unsigned long long)id, (unsigned long long)pg->gpa,
			 pg->npages, (unsigned long long)sl->gpa, sl->npages);
		return -EPROTO;
	}
	for (v = 0; v < pg->npages; v++) {
		uint32_t d;

		memcpy(&d, pg->desc + 4 * v, 4);
		if (PN_PG_KIND(le32toh(d)) == PN_PG_LZ4) {
			snprintf(why, whylen, "the reply to id %#llx carries an LZ4 page (replies are "
				 "never compressed)", (unsigned long long)id);
			return -EPROTO;
		}
	}
	v = SLOT_WAITING;
	if (st == SLOT_WAITING && atomic_compare_exchange_strong(&sl->state, &v, SLOT_FILLING)) {
		ret = decode_pages(pg, sl->dst, zero, why, whylen);
		if (!ret)
			sl->zmask = zero_fold(zero, pg->npages, sl->page_size, sl->dst);
		sl->result = ret;
		atomic_fetch_add_explicit(&ns->replies, 1, memory_order_relaxed);
		atomic_fetch_add_explicit(&ns->pages_urgent, pg->npages, memory_order_relaxed);
		atomic_store(&sl->state, SLOT_DONE);
		pi_futex_wake(&sl->state);
		return ret;
	}
	if (st == SLOT_WAITING)
		st = v; /* the CAS failed: what the requester made of the slot meanwhile */
	if (st != SLOT_ABANDONED) {
		/* taken back after a send that never left (CLAIMED): this "reply" answers nothing
		 * we sent, and the slot is not ours to free */
		snprintf(why, whylen, "a reply with id %#llx to a request that was never sent",
			 (unsigned long long)id);
		return -EPROTO;
	}
	/* abandoned by a requester that timed out: check the payload, drop it, free the slot,
	 * which is ours only if we are the one that takes it out of ABANDONED */
	ret = decode_pages(pg, c->stage, zero, why, whylen);
	atomic_fetch_add_explicit(&ns->replies, 1, memory_order_relaxed);
	v = SLOT_ABANDONED;
	if (atomic_compare_exchange_strong(&sl->state, &v, SLOT_CLAIMED))
		slot_free(ns, sl);
	return ret;
}

/* Install one run of page_size pages from data (inside one space region). */
static void supply_run(struct ns_conn *c, struct pagein_space *sp, uint64_t gpa,
		       const uint8_t *data, uint64_t len, const uint64_t *zmask, uint64_t page_size)
{
	struct netsrc *ns = c->ns;
	int n = pagein_supply(sp, gpa, data, len, zmask);

	if (n > 0)
		atomic_fetch_add_explicit(&ns->pages_installed, (uint64_t)n * (page_size / PN_PAGE),
					  memory_order_relaxed);
	else if (n < 0 && n != -ESHUTDOWN)
		ns_log(ns, PAGEIN_LOG_WARN, "bulk pages [%#llx, +%#llx) could not be installed: %s",
		       (unsigned long long)gpa, (unsigned long long)len, strerror(-n));
}

/* Gather protocol pages of a hugetlb page; install it once whole. */
static void huge_gather(struct ns_conn *c, struct pagein_space *sp, uint64_t hgpa,
			uint64_t gpa, const uint8_t *data, const uint64_t *zero, uint32_t first,
			uint32_t n)
{
	uint64_t zm = 1, i, k;

	if (c->huge_gpa != hgpa) {
		/* a different huge page: what was gathered of the last one arrives by a fault */
		c->huge_gpa = hgpa;
		memset(c->huge_have, 0, sizeof(c->huge_have));
		memset(c->huge_zero, 0, sizeof(c->huge_zero));
	}
	for (i = 0; i < n; i++) {
		uint64_t j = (gpa - hgpa) / PN_PAGE + i, z = zero[(first + i) / 64] >> ((first + i) % 64) & 1;

		c->huge_have[j / 64] |= 1ull << (j % 64);
		if (z)
			c->huge_zero[j / 64] |= 1ull << (j % 64);
		else
			c->huge_zero[j / 64] &= ~(1ull << (j % 64));
		if (z)
			memset(c->huge + j * PN_PAGE, 0, PN_PAGE);
		else
			memcpy(c->huge + j * PN_PAGE, data + i * PN_PAGE, PN_PAGE);
	}
	for (k = 0; k < NS_HUGE_PAGES / 64; k++) {
		if (c->huge_have[k] != ~0ull)
			return;
		if (c->huge_zero[k] != ~0ull)
			zm = 0;
	}
	supply_run(c, sp, hgpa, c->huge, NS_HUGE, &zm, NS_HUGE);
	c->huge_gpa = UINT64_MAX;
}

/* Install bulk pages decoded into c->stage, in runs inside one region of the space. */
static void install_bulk(struct ns_conn *c, struct pagein_space *sp, const struct ns_pages *pg,
			 const uint64_t *zero)
{
	uint32_t i = 0, n;

	while (i < pg->npages) {
		uint64_t gpa = pg->gpa + (uint64_t)i * PN_PAGE, ps, off, room;
		struct pi_region *r = pi_region_find(sp, gpa);

		if (!r) {
			i++; /* not a region of this space */
			continue;
		}
		room = (r->gpa + r->size - gpa) / PN_PAGE;
		n = pg->npages - i < room ? pg->npages - i : (uint32_t)room;
		ps = r->page_size;
		off = (gpa - r->gpa) % ps;
		if (ps == PN_PAGE) {
			uint64_t zm[PN_MAX_PAGES / 64] = { 0 };
			uint32_t j;

			for (j = 0; j < n; j++)
				if (zero[(i + j) / 64] >> ((i + j) % 64) & 1)
					zm[j / 64] |= 1ull << (j % 64);
			supply_run(c, sp, gpa, c->stage + (uint64_t)i * PN_PAGE, (uint64_t)n * PN_PAGE,
				   zm, ps);
		} else if (ps == NS_HUGE && !off && n >= NS_HUGE_PAGES) {
			/* whole huge pages: install straight from the stage */
			uint64_t zm = 0, zsub[NS_HUGE_PAGES / 64], j, k, b;

			n -= n % NS_HUGE_PAGES;
			for (j = 0; j < n / NS_HUGE_PAGES; j++) {
				memset(zsub, 0, sizeof(zsub));
				for (k = 0; k < NS_HUGE_PAGES; k++) {
					b = i + j * NS_HUGE_PAGES + k;
					zsub[k / 64] |= (zero[b / 64] >> (b % 64) & 1) << (k % 64);
				}
				zm |= zero_fold(zsub, NS_HUGE_PAGES, ps,
						c->stage + (i + j * NS_HUGE_PAGES) * PN_PAGE) << j;
			}
			supply_run(c, sp, gpa, c->stage + (uint64_t)i * PN_PAGE,
				   (uint64_t)n * PN_PAGE, &zm, ps);
		} else if (ps == NS_HUGE) {
			uint64_t left = (ps - off) / PN_PAGE;

			if (n > left)
				n = (uint32_t)left;
			huge_gather(c, sp, gpa - off, gpa, c->stage + (uint64_t)i * PN_PAGE, zero, i,
				    n);
		}
		i += n;
	}
}

/*
 * With urgent off, bulk pages may arrive before pagein_net_stream_start attached a space: hold
 * them (stop reading) until it does, unless a fetch waits for a reply behind them.
 */
static struct pagein_space *wait_attach(struct ns_conn *c)
{
	struct netsrc *ns = c->ns;
	struct pagein_space *sp;
	uint32_t seq;

	for (;;) {
		seq = atomic_load(&ns->attach_seq);
		sp = atomic_load(&ns->space);
		if (sp || !atomic_load(&ns->streaming) || atomic_load(&c->quitting) ||
		    atomic_load(&ns->outstanding))
			return sp;
		pi_futex_wait(&ns->attach_seq, seq, pi_now_ns() + 50000000ull);
	}
}

/*
 * Install a frame of raw and zero pages (no LZ4) into a 4 KiB region straight from the frame's
 * body, without decoding it into the stage first: in runs of raw pages followed by zero pages,
 * whose bytes lie one after another in the body. Returns false when the frame does not qualify.
 */
static bool install_direct(struct ns_conn *c, struct pagein_space *sp, const struct ns_pages *pg)
{
	struct pi_region *r = pi_region_find(sp, pg->gpa);
	uint64_t zm[PN_MAX_PAGES / 64];
	const uint8_t *p = pg->data, *data;
	uint32_t i, start, d;

	/* the engine reads pages as 64-bit words: the payload must be 8-byte aligned (it is when
	 * npages is even, the body being malloc'd) */
	if (!r || r->page_size != PN_PAGE || (uintptr_t)pg->data % 8 ||
	    (uint64_t)pg->npages * PN_PAGE > r->gpa + r->size - pg->gpa)
		return false;
	for (i = 0; i < pg->npages; i++) {
		memcpy(&d, pg->desc + 4 * i, 4);
		if (PN_PG_KIND(le32toh(d)) == PN_PG_LZ4)
			return false;
	}
#define KIND_AT(k) (memcpy(&d, pg->desc + 4 * (k), 4), PN_PG_KIND(le32toh(d)))
	for (i = 0; i < pg->npages;) {
		start = i;
		data = p;
		memset(zm, 0, sizeof(zm));
		for (; i < pg->npages && KIND_AT(i) == PN_PG_RAW; i++)
			p += PN_PAGE;
		for (; i < pg->npages && KIND_AT(i) == PN_PG_ZERO; i++)
			zm[(i - start) / 64] |= 1ull << ((i - start) % 64);
		supply_run(c, sp, pg->gpa + (uint64_t)start * PN_PAGE, data,
			   (uint64_t)(i - start) * PN_PAGE, zm, PN_PAGE);
	}
#undef KIND_AT
	return true;
}

static void handle_bulk(struct ns_conn *c, const struct ns_pages *pg, char *why, size_t whylen,
			int *err)
{
	struct netsrc *ns = c->ns;
	uint64_t zero[NS_HUGE_PAGES / 64];
	struct pagein_space *sp;
	bool main = c == ns->main;

	*err = 0;
	atomic_fetch_add_explicit(&ns->pages_bulk, pg->npages, memory_order_relaxed);
	/* the single connection: attach/detach happen under ns->lock */
	sp = main ? wait_attach(c) : atomic_load(&ns->space);
	if (sp && main) {
		pthread_mutex_lock(&ns->lock);
		sp = atomic_load(&ns->space);
		if (!sp)
			pthread_mutex_unlock(&ns->lock);
	}
	if (!sp || !install_direct(c, sp, pg)) {
		/* decoded even when dropped: a broken frame still closes the connection */
		*err = decode_pages(pg, c->stage, zero, why, whylen);
		if (!*err && sp)
			install_bulk(c, sp, pg, zero);
	}
	if (sp && main)
		pthread_mutex_unlock(&ns->lock);
}

/* Read and handle one frame. Returns 0, 1 on a clean EOF, or -errno with why filled in. */
static int recv_frame(struct ns_conn *c, char *why, size_t whylen)
{
	struct netsrc *ns = c->ns;
	struct ns_pages pg;
	struct pn_hdr h;
	uint32_t len;
	uint16_t type;
	uint64_t id;
	int ret;

	ret = recv_exact(c, &h, sizeof(h));
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
	ret = recv_exact(c, c->body, len);
	if (ret)
		return ret == 1 ? -EPIPE : ret;
	switch (type) {
	case PN_PAGES:
		ret = parse_pages(c, len, &pg, why, whylen);
		if (ret)
			return ret;
		if (id)
			return handle_reply(c, id, &pg, why, whylen);
		if (!c->stream) {
			snprintf(why, whylen, "bulk pages on the urgent connection");
			return -EPROTO;
		}
		handle_bulk(c, &pg, why, whylen, &ret);
		return ret;
	case PN_END:
		if (!c->stream || len || id) {
			snprintf(why, whylen, "an END frame %s",
				 c->stream ? "with a body or an id" : "on the urgent connection");
			return -EPROTO;
		}
		/* each bulk connection ends its own stream: done when all of them have */
		if (!c->ended) {
			c->ended = true;
			if (atomic_fetch_add(&ns->ends, 1) + 1 >= atomic_load(&ns->streams)) {
				atomic_store(&ns->stream_done, true);
				ns_log(ns, PAGEIN_LOG_INFO, "server %s: every page has been sent",
				       ns->addr);
			}
		}
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
		if (ret == 1) {
			if (!c->stream || !atomic_load(&ns->stream_done) || c->replies)
				ns_log(ns, PAGEIN_LOG_WARN, "server %s closed the %s connection",
				       ns->addr, c->replies ? "urgent" : "bulk");
		} else {
			if (ret == -EPIPE)
				snprintf(why, sizeof(why), "a truncated frame (the connection closed "
					 "in the middle of it)");
			else if (!why[0])
				snprintf(why, sizeof(why), "%s", strerror(-ret));
			atomic_fetch_add(&ns->errors, 1);
			ns_log(ns, PAGEIN_LOG_ERR, "server %s, %s connection: %s; closing it",
			       ns->addr, c->replies ? (c->stream ? "single" : "urgent") : "bulk", why);
		}
	}
	shutdown(c->fd, SHUT_RDWR);
	atomic_store(&c->dead, true);
	pi_futex_wake(&c->send_lock);
	if (c->replies)
		slots_fail_all(ns, ret == -EPROTO || ret == -EPIPE ? -EPROTO : -ECONNRESET);
	return NULL;
}

/* ------------------------------------------------------------------------------------------- */
/* connecting                                                                                 */

static int resolve_addr(struct netsrc *ns)
{
	struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM }, *ai;
	char host[256], *port;
	int ret;

	snprintf(host, sizeof(host), "%s", ns->addr);
	port = strrchr(host, ':');
	if (!port || port == host) {
		ns_log(ns, PAGEIN_LOG_ERR, "'%s' is not HOST:PORT", ns->addr);
		return -EINVAL;
	}
	*port++ = '\0';
	if (host[0] == '[' && port[-2] == ']') {
		port[-2] = '\0';
		memmove(host, host + 1, strlen(host));
	}
	ret = getaddrinfo(host, port, &hints, &ai);
	if (ret) {
		ns_log(ns, PAGEIN_LOG_ERR, "cannot resolve %s: %s", ns->addr, gai_strerror(ret));
		return -EHOSTUNREACH;
	}
	memcpy(&ns->sa, ai->ai_addr, ai->ai_addrlen);
	ns->salen = ai->ai_addrlen;
	freeaddrinfo(ai);
	return 0;
}

static int ms_left(uint64_t deadline)
{
	uint64_t now = pi_now_ns();

	if (now >= deadline)
		return 0;
	return (deadline - now) / 1000000 >= INT_MAX ? INT_MAX
						     : (int)((deadline - now + 999999) / 1000000);
}

/* Read n bytes before the deadline (handshake only; the fd is blocking). */
static int recv_deadline(int fd, void *buf, size_t n, uint64_t deadline)
{
	uint8_t *p = buf;
	size_t got = 0;
	ssize_t r;

	while (got < n) {
		struct pollfd pfd = { .fd = fd, .events = POLLIN };
		int pr = poll(&pfd, 1, ms_left(deadline));

		if (pr < 0 && errno == EINTR)
			continue;
		if (pr < 0)
			return -errno;
		if (pr == 0)
			return -ETIMEDOUT;
		r = recv(fd, p + got, n - got, MSG_DONTWAIT);
		if (r < 0 && (errno == EINTR || errno == EAGAIN))
			continue;
		if (r < 0)
			return -errno;
		if (r == 0)
			return -ECONNRESET;
		got += (size_t)r;
	}
	return 0;
}

static int connect_fd(struct netsrc *ns, uint64_t deadline)
{
	int fd, one = 1, err = 0, ret;
	socklen_t elen = sizeof(err);
	struct pollfd pfd;

	fd = socket(ns->sa.ss_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0)
		return -errno;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	if (connect(fd, (struct sockaddr *)&ns->sa, ns->salen) < 0) {
		if (errno != EINPROGRESS) {
			ret = -errno;
			goto close_fd;
		}
		pfd = (struct pollfd){ .fd = fd, .events = POLLOUT };
		do
			ret = poll(&pfd, 1, ms_left(deadline));
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
 * Open one connection: connect, HELLO, check WELCOME. The first connection (session 0) learns
 * the session and region table; later ones must get the same. Returns the connection or NULL
 * with *err set (-EPROTO for anything that is not the protocol, with a logged reason).
 */
static struct ns_conn *conn_open(struct netsrc *ns, int role, uint64_t session, int *err)
{
	uint64_t deadline = pi_now_ns() + (uint64_t)ns->cfg.connect_timeout_ms * 1000000ull;
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
		ns_log(ns, PAGEIN_LOG_ERR, "cannot connect to %s: %s", ns->addr, strerror(-ret));
		goto free_conn;
	}
	memset(&hello, 0, sizeof(hello));
	put_hdr(&hello.h, sizeof(hello.b), PN_HELLO, 0);
	memcpy(hello.b.magic, PN_MAGIC, 8);
	hello.b.version = htole32(PN_VERSION);
	hello.b.page_size = htole32(PN_PAGE);
	hello.b.role = htole32((uint32_t)role);
	hello.b.features = htole32(ns->cfg.compress ? PN_FEAT_LZ4 : 0);
	hello.b.batch_pages = htole32(ns->cfg.batch_pages);
	hello.b.session = htole64(session);
	ret = send_all(c, &hello, sizeof(hello), deadline);
	if (ret < 0) {
		ns_log(ns, PAGEIN_LOG_ERR, "server %s: sending HELLO: %s", ns->addr, strerror(-ret));
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
		ns_log(ns, PAGEIN_LOG_ERR, "server %s refused the connection: %s (error %u)",
		       ns->addr, text, le32toh(e.code));
		e.code = le32toh(e.code);
		ret = e.code > 0 && e.code < 4096 ? -(int)e.code : -ECONNREFUSED;
		goto close_fd;
	}
	if (le16toh(h.type) != PN_WELCOME || len < sizeof(w) || h.flags || h.id ||
	    len > sizeof(w) + PN_MAX_REGIONS * sizeof(struct pn_region)) {
		ns_log(ns, PAGEIN_LOG_ERR, "server %s: the answer to HELLO is not a WELCOME (type %u, "
		       "%u bytes, flags %#x, id %#llx): not a pagein page server?", ns->addr,
		       le16toh(h.type), len, le16toh(h.flags), (unsigned long long)le64toh(h.id));
		ret = -EPROTO;
		goto close_fd;
	}
	ret = recv_deadline(c->fd, &w, sizeof(w), deadline);
	if (ret < 0)
		goto io_err;
	if (memcmp(w.magic, PN_MAGIC, 8)) {
		ns_log(ns, PAGEIN_LOG_ERR, "server %s: WELCOME has the wrong magic", ns->addr);
		ret = -EPROTO;
		goto close_fd;
	}
	if (le32toh(w.version) != PN_VERSION || le32toh(w.page_size) != PN_PAGE) {
		ns_log(ns, PAGEIN_LOG_ERR, "server %s speaks protocol version %u with %u-byte pages; "
		       "this client speaks version %u with %u-byte pages", ns->addr,
		       le32toh(w.version), le32toh(w.page_size), PN_VERSION, PN_PAGE);
		ret = -EPROTO;
		goto close_fd;
	}
	n = le32toh(w.nregions);
	feat = le32toh(w.features);
	if (!n || n > PN_MAX_REGIONS || len != sizeof(w) + n * sizeof(struct pn_region)) {
		ns_log(ns, PAGEIN_LOG_ERR, "server %s: WELCOME with %u regions (1..%u) in %u bytes",
		       ns->addr, n, PN_MAX_REGIONS, len);
		ret = -EPROTO;
		goto close_fd;
	}
	if (feat & ~(ns->cfg.compress ? PN_FEAT_LZ4 : 0u)) {
		ns_log(ns, PAGEIN_LOG_ERR, "server %s granted features %#x it was not asked for",
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
			ns_log(ns, PAGEIN_LOG_ERR, "server %s: a bulk connection joined another session "
			       "or got another region table", ns->addr);
			ret = -EPROTO;
			goto close_fd;
		}
	} else {
		ret = check_regions(ns, regs, n);
		if (ret < 0)
			goto close_fd;
		if (!w.session) {
			ns_log(ns, PAGEIN_LOG_ERR, "server %s: WELCOME with session 0", ns->addr);
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
	ns_log(ns, PAGEIN_LOG_ERR, "server %s: %s during the handshake", ns->addr,
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

static int conn_start(struct ns_conn *c)
{
	int ret = pthread_create(&c->thread, NULL, receiver_main, c);

	if (ret)
		return -ret;
	c->thread_started = true;
	return 0;
}

/* Stop the receiver, close the socket, free the connection. */
static void conn_close(struct ns_conn *c)
{
	if (!c)
		return;
	atomic_store(&c->quitting, true);
	shutdown(c->fd, SHUT_RDWR);
	wake_parked(c->ns);
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
	return region_of(ctx, gpa, len) != NULL;
}

static void net_destroy(void *ctx)
{
	struct netsrc *ns = ctx;
	unsigned i;

	for (i = 0; i < ns->nbulk; i++)
		conn_close(ns->bulk[i]);
	conn_close(ns->main);
	pthread_mutex_destroy(&ns->lock);
	free(ns);
}

static const struct pagein_source_ops net_ops = {
	.fetch = net_fetch,
	.destroy = net_destroy,
	.covers = net_covers,
};

static struct netsrc *net_of(struct pagein_source *src)
{
	return src && src->ops.fetch == net_fetch ? src->ctx : NULL;
}

int pagein_source_net_new(const struct pagein_net_config *cfg, struct pagein_source **out)
{
	struct netsrc *ns;
	int ret, role;

	if (!cfg || !cfg->addr || !out || !cfg->batch_pages || cfg->batch_pages > PN_MAX_PAGES ||
	    cfg->bulk > NS_MAX_BULK)
		return -EINVAL;
	ns = calloc(1, sizeof(*ns));
	if (!ns)
		return -ENOMEM;
	ns->cfg = *cfg;
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
	ns->main = conn_open(ns, role, 0, &ret);
	if (!ns->main)
		goto free_ns;
	ns->main->replies = true;
	ns->main->stream = role == PN_ROLE_BULK;
	atomic_store(&ns->streaming, ns->main->stream);
	ret = conn_start(ns->main);
	if (ret < 0)
		goto close_main;
	ret = pagein_source_new(&net_ops, ns, out);
	if (ret < 0)
		goto close_main;
	ns_log(ns, PAGEIN_LOG_INFO, "connected to %s: session %#llx, %u regions, %s%s", ns->addr,
	       (unsigned long long)ns->session, ns->nregions,
	       role == PN_ROLE_URGENT ? "urgent connection" : "one connection for faults and stream",
	       ns->features & PN_FEAT_LZ4 ? ", LZ4" : "");
	return 0;
close_main:
	conn_close(ns->main);
free_ns:
	pthread_mutex_destroy(&ns->lock);
	free(ns);
	return ret;
}

int pagein_net_regions(struct pagein_source *src, struct pagein_region_desc *regs, unsigned max)
{
	struct netsrc *ns = net_of(src);
	unsigned i;

	if (!ns)
		return -EINVAL;
	for (i = 0; i < ns->nregions && i < max; i++)
		regs[i] = (struct pagein_region_desc){
			.gpa = ns->regions[i].gpa,
			.size = ns->regions[i].size,
			.digest = ns->regions[i].digest,
		};
	return (int)i;
}

int pagein_net_stream_start(struct pagein_source *src, struct pagein_space *space)
{
	struct netsrc *ns = net_of(src);
	unsigned i, want;
	int ret = 0;

	if (!ns || !space)
		return -EINVAL;
	pthread_mutex_lock(&ns->lock);
	if (atomic_load(&ns->space)) {
		ret = -EALREADY;
		goto unlock;
	}
	/* the single connection already streams: it counts as one of the bulk connections */
	want = ns->main->stream ? ns->cfg.bulk - 1 : ns->cfg.bulk;
	for (i = 0; i < want; i++) {
		struct ns_conn *c = conn_open(ns, PN_ROLE_BULK, ns->session, &ret);

		if (!c)
			goto close_bulk;
		c->stream = true;
		ns->bulk[ns->nbulk++] = c;
	}
	atomic_store(&ns->streams, ns->nbulk + (ns->main->stream ? 1u : 0u));
	atomic_store(&ns->ends, 0);
	atomic_store(&ns->stream_done, false);
	for (i = 0; i < ns->nbulk; i++)
		ns->bulk[i]->ended = false;
	atomic_store(&ns->space, space);
	atomic_store(&ns->streaming, true);
	for (i = 0; i < ns->nbulk; i++) {
		ret = conn_start(ns->bulk[i]);
		if (ret < 0)
			goto detach;
	}
	pthread_mutex_unlock(&ns->lock);
	wake_parked(ns);
	return 0;
detach:
	atomic_store(&ns->space, NULL);
close_bulk:
	while (ns->nbulk)
		conn_close(ns->bulk[--ns->nbulk]);
unlock:
	pthread_mutex_unlock(&ns->lock);
	return ret;
}

void pagein_net_stream_stop(struct pagein_source *src)
{
	struct netsrc *ns = net_of(src);
	struct ns_conn *bulk[NS_MAX_BULK];
	unsigned i, n;

	if (!ns)
		return;
	pthread_mutex_lock(&ns->lock);
	/* the single connection keeps carrying replies; its bulk pages are dropped from now on */
	atomic_store(&ns->space, NULL);
	atomic_store(&ns->streaming, false);
	n = ns->nbulk;
	memcpy(bulk, ns->bulk, sizeof(bulk));
	ns->nbulk = 0;
	pthread_mutex_unlock(&ns->lock);
	wake_parked(ns);
	for (i = 0; i < n; i++)
		conn_close(bulk[i]);
}

void pagein_net_stats_get(struct pagein_source *src, struct pagein_net_stats *st)
{
	struct netsrc *ns = net_of(src);

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
