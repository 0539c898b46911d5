// SPDX-License-Identifier: MIT
/*
 * urgent.c - the destination's urgent channel: a fault's fetch takes a lock-free request slot,
 * sends a REQ and sleeps on the slot until the receiver thread fills in the reply (or the
 * fault's deadline passes). Async-signal-safe: atomics, futex, send and poll only, so SELF-mode
 * faults fetch from inside their SIGBUS handler.
 */
#include <endian.h>
#include <errno.h>
#include <sched.h>
#include <stdio.h>
#include <poll.h>
#include <string.h>
#include <unistd.h>

#include "net/client.h"

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
int pi_net_send_all(struct ns_conn *c, const void *buf, size_t len, uint64_t deadline_ns)
{
	struct iovec iov = { (void *)buf, len };
	size_t done;
	int ret = pi_conn_sendv(&c->tc, &iov, 1, &done, -1, deadline_ns, -1);

	atomic_store_explicit(&c->last_send_ns, pi_now_ns(), memory_order_relaxed);
	if (!ret)
		return 0;
	if (done)
		shutdown(c->fd, SHUT_RDWR);
	return done || ret != -ETIMEDOUT ? -ECONNRESET : -ETIMEDOUT;
}

int pi_net_send_frame(struct ns_conn *c, uint16_t type, uint64_t id, uint64_t deadline_ns)
{
	struct pn_hdr h;
	int ret;

	pi_wire_hdr(&h, 0, type, id);
	ret = send_lock(c, deadline_ns);
	if (ret)
		return ret;
	ret = pi_net_send_all(c, &h, sizeof(h), deadline_ns);
	send_unlock(c);
	return ret;
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
	uint64_t pauses = atomic_load(&ns->link.pauses), now = pi_now_ns();
	uint64_t span = deadline_ns > now ? deadline_ns - now : 0;
	uint32_t st, v;
	int ret;

	for (;;) {
		st = atomic_load(&sl->state);
		if (st == SLOT_DONE)
			break;
		if (st == SLOT_FILLING) {
			/* the receiver is reading the reply into dst: it ends with the frame, or goes
			 * back to WAITING if the connection fails in the middle of it (a silent
			 * server is noticed by its missing heartbeats) */
			pi_futex_wait(&sl->state, SLOT_FILLING, 0);
			continue;
		}
		if (pi_futex_wait(&sl->state, SLOT_WAITING, deadline_ns) == -ETIMEDOUT) {
			if (pi_link_state(&ns->link) == PI_LINK_PAUSED ||
			    pi_link_state(&ns->link) == PI_LINK_RESUMING) {
				/* paused: wait on, until the reply or the pause limit (the receiver
				 * then fails the request) */
				uint64_t end = pi_link_pause_deadline(&ns->link);

				deadline_ns = end == UINT64_MAX ? 0 : end + 1000000000ull;
				atomic_store(&sl->deadline_ns, deadline_ns);
				continue;
			}
			if (atomic_load(&ns->link.pauses) != pauses && span) {
				/* resumed meanwhile: the request went out again, give it its time */
				pauses = atomic_load(&ns->link.pauses);
				deadline_ns = pi_now_ns() + span;
				atomic_store(&sl->deadline_ns, deadline_ns);
				continue;
			}
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


int pi_net_fetch(void *ctx, uint64_t gpa, void *dst, uint64_t len, uint64_t page_size,
		     uint64_t *zero_mask, uint64_t deadline_ns)
{
	struct netsrc *ns = ctx;
	struct ns_conn *c;
	struct ns_slot *sl;
	struct {
		struct pn_hdr h;
		struct pn_req r;
	} __attribute__((packed)) frame;
	uint64_t id;
	uint32_t v;
	int ret = 0, idx;

	for (idx = 0;; idx++) {
		c = ns->main;
		if (pi_link_state(&ns->link) == PI_LINK_FAILED)
			return -ECONNRESET;
		if (pi_link_state(&ns->link) != PI_LINK_RUNNING &&
		    pi_link_state(&ns->link) != PI_LINK_DONE) {
			/* paused: wait (bounded by the pause limit) rather than fail */
			ret = pi_link_wait(&ns->link, 0);
			if (ret < 0)
				return ret;
			continue;
		}
		if (!atomic_load(&c->dead))
			break;
		if (!ns->resume || idx > 100)
			return -ENOTCONN;
		/* lost a moment ago: the pause is about to begin */
		pi_futex_wait(&ns->link.state, PI_LINK_RUNNING, pi_now_ns() + 10000000ull);
	}
	if (!len || len % PN_PAGE || len / PN_PAGE > PN_MAX_PAGES || !page_size ||
	    page_size % PN_PAGE || len % page_size || len / page_size > 64 ||
	    !pi_net_region_of(ns, gpa, len))
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
	atomic_store(&sl->deadline_ns, deadline_ns);
	sl->zmask = 0;
	sl->result = 0;
	atomic_store(&sl->gen, c->gen);
	atomic_store(&sl->id, id);
	atomic_fetch_add(&ns->outstanding, 1);
	/* WAITING before the REQ leaves: the reply may come back before send() returns */
	atomic_store(&sl->state, SLOT_WAITING);
	if (atomic_load(&c->dead) && ns->resume)
		goto wait; /* the resume sends it again */
	if (atomic_load(&c->dead)) {
		/* the receiver's sweep may not have seen WAITING: take it back ourselves */
		v = SLOT_WAITING;
		if (atomic_compare_exchange_strong(&sl->state, &v, SLOT_CLAIMED)) {
			ret = -ENOTCONN;
			goto out_free;
		}
		goto wait;
	}
	if (pi_net_tx_queued(ns, c)) {
		/* user-space TLS: the sender thread sends it (nothing here but an atomic OR and
		 * write(2): safe in a SIGBUS handler); a send it cannot make loses the connection,
		 * and the request fails or is sent again with it */
		uint64_t one = 1;

		atomic_fetch_or(&ns->tx_pending[idx / 64], 1ull << (idx % 64));
		if (write(ns->tx_efd, &one, sizeof(one)) < 0) {
			/* an eventfd write fails only at a counter of 2^64-2: it is awake anyway */
		}
		atomic_fetch_add_explicit(&ns->requests, 1, memory_order_relaxed);
		goto wait;
	}
	pi_wire_hdr(&frame.h, sizeof(frame.r), PN_REQ, id);
	frame.r.gpa = htole64(gpa);
	frame.r.npages = htole32(sl->npages);
	frame.r.reserved = 0;
	ret = send_lock(c, deadline_ns);
	if (!ret) {
		ret = pi_net_send_all(c, &frame, sizeof(frame), deadline_ns);
		send_unlock(c);
	}
	if (ret < 0 && ns->resume)
		goto wait; /* the connection is lost: the resume sends it again */
	if (ret < 0) {
		v = SLOT_WAITING;
		if (atomic_compare_exchange_strong(&sl->state, &v, SLOT_CLAIMED))
			goto out_free;
		ret = 0; /* the sweep of a dying connection got it first: take its result */
		goto wait;
	}
	atomic_fetch_add_explicit(&ns->requests, 1, memory_order_relaxed);
	if (c->stream && !atomic_load(&ns->space))
		pi_net_wake_parked(ns); /* the receiver may be holding bulk pages for a stream to start */
wait:
	ret = slot_wait(ns, sl, deadline_ns, zero_mask);
	atomic_fetch_sub(&ns->outstanding, 1);
	return ret;
out_free:
	atomic_fetch_sub(&ns->outstanding, 1);
	slot_free(ns, sl);
	return ret;
}

void pi_net_resend(struct netsrc *ns, struct ns_conn *c)
{
	struct {
		struct pn_hdr h;
		struct pn_req r;
	} __attribute__((packed)) frame;
	unsigned i, g, n = 0;
	uint32_t v;

	for (i = 0; i < NS_SLOTS; i++) {
		struct ns_slot *sl = &ns->slots[i];

		g = atomic_load(&sl->gen);
		if (g == c->gen)
			continue;
		v = SLOT_ABANDONED;
		if (atomic_compare_exchange_strong(&sl->state, &v, SLOT_CLAIMED)) {
			slot_free(ns, sl); /* its reply would have come on the lost connection */
			continue;
		}
		if (atomic_load(&sl->state) != SLOT_WAITING ||
		    !atomic_compare_exchange_strong(&sl->gen, &g, c->gen))
			continue;
		pi_wire_hdr(&frame.h, sizeof(frame.r), PN_REQ, atomic_load(&sl->id));
		frame.r.gpa = htole64(sl->gpa);
		frame.r.npages = htole32(sl->npages);
		frame.r.reserved = 0;
		if (send_lock(c, pi_now_ns() + 1000000000ull) == 0) {
			pi_net_send_all(c, &frame, sizeof(frame), pi_now_ns() + 1000000000ull);
			send_unlock(c);
		}
		n++;
	}
	if (n)
		pi_net_log(ns, PAGEIN_LOG_INFO, "server %s: %u requests in flight sent again", ns->addr,
			   n);
}

/* Fail every waiting request (the connection carrying replies is gone). */
void pi_net_slots_fail_all(struct netsrc *ns, int err)
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

int pi_net_handle_reply(struct ns_conn *c, uint64_t id, const struct pi_wire_pages *pg, char *why,
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
		ret = pi_net_decode_pages(pg, sl->dst, zero, why, whylen);
		if (!ret) {
			sl->zmask = pi_net_zero_fold(zero, pg->npages, sl->page_size, sl->dst);
			pi_net_have_mark(ns, pg->gpa, pg->npages);
		}
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
	ret = pi_net_decode_pages(pg, c->stage, zero, why, whylen);
	atomic_fetch_add_explicit(&ns->replies, 1, memory_order_relaxed);
	v = SLOT_ABANDONED;
	if (atomic_compare_exchange_strong(&sl->state, &v, SLOT_CLAIMED))
		slot_free(ns, sl);
	return ret;
}


/*
 * The reply whose header and descriptors pg describes (its payload not read yet) may go straight
 * into its requester's buffer: the request is waiting, matches, and the payload is raw and zero
 * pages only. Takes the slot (WAITING -> FILLING) and returns it; NULL: read the body whole and
 * let pi_net_handle_reply judge it (abandoned, mismatched, LZ4, unsolicited).
 */
struct ns_slot *pi_net_reply_begin(struct ns_conn *c, uint64_t id, const struct pi_wire_pages *pg)
{
	struct netsrc *ns = c->ns;
	uint64_t idx = (id & ((1ull << NS_SLOT_BITS) - 1)) - 1;
	struct ns_slot *sl;
	uint32_t v, d;

	if (!c->replies || idx >= NS_SLOTS)
		return NULL;
	sl = &ns->slots[idx];
	if (atomic_load(&sl->state) != SLOT_WAITING || atomic_load(&sl->id) != id ||
	    sl->gpa != pg->gpa || sl->npages != pg->npages)
		return NULL;
	for (v = 0; v < pg->npages; v++) {
		memcpy(&d, pg->desc + 4 * v, 4);
		if (PN_PG_KIND(le32toh(d)) != PN_PG_RAW && PN_PG_KIND(le32toh(d)) != PN_PG_ZERO)
			return NULL;
	}
	v = SLOT_WAITING;
	if (!atomic_compare_exchange_strong(&sl->state, &v, SLOT_FILLING))
		return NULL; /* abandoned meanwhile */
	return sl;
}

/*
 * End a reply that pi_net_reply_begin took, its raw pages now in sl->dst (err 0), or not read
 * whole (err < 0). retry: the connection failed in the middle of it, and the request goes back
 * to waiting as if its reply had never come: it is sent again after a resume, or failed with the
 * connection. Otherwise the request fails with err (its time ran out). Returns err.
 */
int pi_net_reply_end(struct ns_conn *c, struct ns_slot *sl, const struct pi_wire_pages *pg,
		     int err, bool retry)
{
	struct netsrc *ns = c->ns;
	uint64_t zero[NS_HUGE_PAGES / 64] = { 0 };
	uint32_t i, d;

	if (err) {
		if (!retry)
			sl->result = err;
		atomic_store(&sl->state, retry ? SLOT_WAITING : SLOT_DONE);
		pi_futex_wake(&sl->state);
		return err;
	}
	for (i = 0; i < pg->npages; i++) {
		memcpy(&d, pg->desc + 4 * i, 4);
		if (PN_PG_KIND(le32toh(d)) == PN_PG_ZERO)
			zero[i / 64] |= 1ull << (i % 64);
	}
	sl->zmask = pi_net_zero_fold(zero, pg->npages, sl->page_size, sl->dst);
	pi_net_have_mark(ns, pg->gpa, pg->npages);
	sl->result = 0;
	atomic_fetch_add_explicit(&ns->replies, 1, memory_order_relaxed);
	atomic_fetch_add_explicit(&ns->pages_urgent, pg->npages, memory_order_relaxed);
	atomic_store(&sl->state, SLOT_DONE);
	pi_futex_wake(&sl->state);
	return 0;
}

int pi_net_handle_fail(struct ns_conn *c, uint64_t id, const struct pn_fail *f, const char *text,
		       uint32_t tlen, char *why, size_t whylen)
{
	struct netsrc *ns = c->ns;
	uint64_t idx = (id & ((1ull << NS_SLOT_BITS) - 1)) - 1, gpa;
	uint32_t st, v, code, npages;
	struct ns_slot *sl;
	int err;

	memcpy(&code, &f->code, 4);
	memcpy(&npages, &f->npages, 4);
	memcpy(&gpa, &f->gpa, 8);
	code = le32toh(code);
	npages = le32toh(npages);
	gpa = le64toh(gpa);
	if (!c->replies || idx >= NS_SLOTS) {
		snprintf(why, whylen, "a FAIL with id %#llx that no request has",
			 (unsigned long long)id);
		return -EPROTO;
	}
	sl = &ns->slots[idx];
	st = atomic_load(&sl->state);
	if ((st != SLOT_WAITING && st != SLOT_ABANDONED) || atomic_load(&sl->id) != id ||
	    sl->gpa != gpa || sl->npages != npages) {
		snprintf(why, whylen, "a FAIL with id %#llx for [%#llx, +%u pages) that no request "
			 "is waiting for", (unsigned long long)id, (unsigned long long)gpa, npages);
		return -EPROTO;
	}
	/* the server's errno, when it is one; a failed page is never a zero page: the engine
	 * fails it (SIGBUS, -EIO) */
	err = code > 0 && code < 4096 ? -(int)code : -EIO;
	atomic_fetch_add_explicit(&ns->fails, 1, memory_order_relaxed);
	pi_net_log(ns, PAGEIN_LOG_WARN, "server %s refused the request for [%#llx, +%u pages): "
		   "%.*s (%s); those pages fail, the connection stays", ns->addr,
		   (unsigned long long)gpa, npages, (int)(tlen > PN_MAX_TEXT ? PN_MAX_TEXT : tlen),
		   text, strerror(-err));
	v = SLOT_WAITING;
	if (st == SLOT_WAITING && atomic_compare_exchange_strong(&sl->state, &v, SLOT_FILLING)) {
		sl->result = err;
		atomic_fetch_add_explicit(&ns->replies, 1, memory_order_relaxed);
		atomic_store(&sl->state, SLOT_DONE);
		pi_futex_wake(&sl->state);
		return 0;
	}
	if (st == SLOT_WAITING)
		st = v;
	if (st != SLOT_ABANDONED) {
		snprintf(why, whylen, "a FAIL with id %#llx for a request that was never sent",
			 (unsigned long long)id);
		return -EPROTO;
	}
	atomic_fetch_add_explicit(&ns->replies, 1, memory_order_relaxed);
	v = SLOT_ABANDONED;
	if (atomic_compare_exchange_strong(&sl->state, &v, SLOT_CLAIMED))
		slot_free(ns, sl);
	return 0;
}

/*
 * The sender thread (user-space TLS): sends the REQs fetches queued in tx_pending, on the main
 * connection, under its send lock, from an ordinary thread. A slot no longer WAITING (answered
 * already by a resend, abandoned, failed) is skipped; one whose REQ went out on an older main
 * connection is the resume's to send again.
 */
void *pi_net_sender_main(void *arg)
{
	struct netsrc *ns = arg;
	struct pollfd pfd = { .fd = ns->tx_efd, .events = POLLIN };
	struct {
		struct pn_hdr h;
		struct pn_req r;
	} __attribute__((packed)) frame;
	uint64_t bits, v;
	uint32_t st;
	unsigned w, i;

	while (!atomic_load(&ns->tx_quit)) {
		if (poll(&pfd, 1, 500) < 0 && errno != EINTR)
			break;
		if (read(ns->tx_efd, &v, sizeof(v)) < 0 && errno != EAGAIN) {
			/* non-blocking: nothing to read is EAGAIN; the bits are the work list */
		}
		for (w = 0; w < NS_SLOTS / 64; w++) {
			bits = atomic_exchange(&ns->tx_pending[w], 0);
			while (bits) {
				struct ns_slot *sl;
				struct ns_conn *c = ns->main;
				uint64_t deadline = pi_now_ns() + 1000000000ull;

				i = (unsigned)__builtin_ctzll(bits);
				bits &= bits - 1;
				sl = &ns->slots[w * 64 + i];
				if (atomic_load(&sl->gen) != c->gen || atomic_load(&c->dead))
					continue; /* the resume (or the failure) has it */
				st = SLOT_ABANDONED;
				if (atomic_compare_exchange_strong(&sl->state, &st, SLOT_CLAIMED)) {
					/* timed out before we sent it: no reply will free it */
					slot_free(ns, sl);
					continue;
				}
				if (st != SLOT_WAITING)
					continue;
				pi_wire_hdr(&frame.h, sizeof(frame.r), PN_REQ, atomic_load(&sl->id));
				frame.r.gpa = htole64(sl->gpa);
				frame.r.npages = htole32(sl->npages);
				frame.r.reserved = 0;
				if (send_lock(c, deadline) == 0) {
					if (pi_net_send_all(c, &frame, sizeof(frame), deadline) == 0)
						atomic_fetch_add_explicit(&ns->tx_sent, 1,
									  memory_order_relaxed);
					send_unlock(c);
				}
				if (c->stream && !atomic_load(&ns->space))
					pi_net_wake_parked(ns);
			}
		}
	}
	return NULL;
}
