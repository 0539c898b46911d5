// SPDX-License-Identifier: MIT
/*
 * stream.c - the destination's bulk stream: opening and closing the bulk connections, installing
 * the pages they bring (pagein_supply, whole huge pages gathered from smaller batches), and the
 * stream's state: running, every page sent (END on every bulk connection), or failed.
 */
#include <endian.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>

#include "net/client.h"

/* Wake pagein_net_stream_wait: the stream ended, failed or stopped. */
static void stream_changed(struct netsrc *ns)
{
	atomic_fetch_add(&ns->stream_seq, 1);
	pi_futex_wake(&ns->stream_seq);
}

void pi_net_stream_end(struct ns_conn *c)
{
	struct netsrc *ns = c->ns;

	/* each bulk connection ends its own stream: done when all of them have */
	if (c->ended)
		return;
	c->ended = true;
	if (atomic_fetch_add(&ns->ends, 1) + 1 >= atomic_load(&ns->streams)) {
		atomic_store(&ns->stream_done, true);
		pi_net_log(ns, PAGEIN_LOG_INFO, "server %s: every page has been sent", ns->addr);
		stream_changed(ns);
	}
}

void pi_net_stream_fail(struct netsrc *ns, int err)
{
	int none = 0;

	if (atomic_compare_exchange_strong(&ns->stream_err, &none, err))
		stream_changed(ns);
}

void pi_net_wake_parked(struct netsrc *ns)
{
	atomic_fetch_add(&ns->attach_seq, 1);
	pi_futex_wake(&ns->attach_seq);
}

/* Install one run of page_size pages from data (inside one space region). */
static void supply_run(struct ns_conn *c, struct pagein_space *sp, uint64_t gpa,
		       const uint8_t *data, uint64_t len, const uint64_t *zmask, uint64_t page_size)
{
	struct netsrc *ns = c->ns;
	int n = pagein_supply(sp, gpa, data, len, zmask);

	if (n >= 0)
		pi_net_have_mark(ns, gpa, len / PN_PAGE); /* installed, or there already */

	if (n > 0)
		atomic_fetch_add_explicit(&ns->pages_installed, (uint64_t)n * (page_size / PN_PAGE),
					  memory_order_relaxed);
	else if (n < 0 && n != -ESHUTDOWN)
		pi_net_log(ns, PAGEIN_LOG_WARN, "bulk pages [%#llx, +%#llx) could not be installed: %s",
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
static void install_bulk(struct ns_conn *c, struct pagein_space *sp, const struct pi_wire_pages *pg,
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
				zm |= pi_net_zero_fold(zsub, NS_HUGE_PAGES, ps,
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
static bool install_direct(struct ns_conn *c, struct pagein_space *sp, const struct pi_wire_pages *pg)
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

void pi_net_handle_bulk(struct ns_conn *c, const struct pi_wire_pages *pg, char *why, size_t whylen,
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
		*err = pi_net_decode_pages(pg, c->stage, zero, why, whylen);
		if (!*err && sp)
			install_bulk(c, sp, pg, zero);
	}
	if (sp && main)
		pthread_mutex_unlock(&ns->lock);
}


int pagein_net_stream_start(struct pagein_source *src, struct pagein_space *space)
{
	struct netsrc *ns = pi_net_of(src);
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
		struct ns_conn *c = pi_net_conn_open(ns, PN_ROLE_BULK, ns->session, &ret);

		if (!c)
			goto close_bulk;
		c->stream = true;
		ns->bulk[ns->nbulk++] = c;
	}
	atomic_store(&ns->streams, ns->nbulk + (ns->main->stream ? 1u : 0u));
	atomic_store(&ns->ends, 0);
	atomic_store(&ns->stream_done, false);
	atomic_store(&ns->stream_err, 0);
	/* a silent server is noticed on the same scale as a fault that waits too long */
	atomic_store(&ns->read_ms, (int)(space->cfg.timeout_ms > INT_MAX ? INT_MAX
								: space->cfg.timeout_ms));
	if (ns->main->stream && atomic_load(&ns->main->dead))
		atomic_store(&ns->stream_err, -ECONNRESET); /* the single connection is gone */
	for (i = 0; i < ns->nbulk; i++)
		ns->bulk[i]->ended = false;
	atomic_store(&ns->space, space);
	atomic_store(&ns->streaming, true);
	for (i = 0; i < ns->nbulk; i++) {
		ret = pi_net_conn_start(ns->bulk[i]);
		if (ret < 0)
			goto detach;
	}
	pthread_mutex_unlock(&ns->lock);
	pi_net_wake_parked(ns);
	return 0;
detach:
	atomic_store(&ns->space, NULL);
close_bulk:
	while (ns->nbulk)
		pi_net_conn_close(ns->bulk[--ns->nbulk]);
unlock:
	pthread_mutex_unlock(&ns->lock);
	return ret;
}

int pi_net_stream_reopen(struct netsrc *ns)
{
	struct ns_conn *old[NS_MAX_BULK];
	unsigned i, n, want;
	int ret = 0;

	pthread_mutex_lock(&ns->lock);
	n = ns->nbulk;
	memcpy(old, ns->bulk, sizeof(old));
	ns->nbulk = 0;
	if (!atomic_load(&ns->streaming) || !atomic_load(&ns->space) ||
	    atomic_load(&ns->stream_done)) {
		/* no stream, or every page came already: nothing to reopen */
		pthread_mutex_unlock(&ns->lock);
		goto close_old;
	}
	want = ns->main->stream ? ns->cfg.bulk - 1 : ns->cfg.bulk;
	for (i = 0; i < want; i++) {
		struct ns_conn *c = pi_net_conn_open(ns, PN_ROLE_BULK, ns->session, &ret);

		if (!c)
			break;
		c->stream = true;
		ns->bulk[ns->nbulk++] = c;
	}
	atomic_store(&ns->streams, ns->nbulk + (ns->main->stream ? 1u : 0u));
	atomic_store(&ns->ends, 0);
	for (i = 0; i < ns->nbulk && !ret; i++)
		ret = pi_net_conn_start(ns->bulk[i]);
	pthread_mutex_unlock(&ns->lock);
	pi_net_wake_parked(ns);
close_old:
	for (i = 0; i < n; i++)
		pi_net_conn_close(old[i]);
	return ret;
}

void pagein_net_stream_stop(struct pagein_source *src)
{
	struct netsrc *ns = pi_net_of(src);
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
	pi_net_wake_parked(ns);
	stream_changed(ns);
	for (i = 0; i < n; i++)
		pi_net_conn_close(bulk[i]);
}

int pagein_net_stream_status(struct pagein_source *src)
{
	struct netsrc *ns = pi_net_of(src);
	int err;

	if (!ns)
		return -EINVAL;
	if (!atomic_load(&ns->space) || !atomic_load(&ns->streams))
		return -ENOTCONN;
	err = atomic_load(&ns->stream_err);
	if (err)
		return err;
	return atomic_load(&ns->stream_done) ? 0 : -EINPROGRESS;
}

int pagein_net_stream_wait(struct pagein_source *src, int timeout_ms)
{
	struct netsrc *ns = pi_net_of(src);
	uint64_t deadline = timeout_ms < 0 ? 0 : pi_now_ns() + (uint64_t)timeout_ms * 1000000ull;
	uint32_t seq;
	int st;

	if (!ns)
		return -EINVAL;
	for (;;) {
		seq = atomic_load(&ns->stream_seq);
		st = pagein_net_stream_status(src);
		if (st != -EINPROGRESS || (deadline && pi_now_ns() >= deadline))
			return st;
		if (pi_futex_wait(&ns->stream_seq, seq, deadline) == -ETIMEDOUT)
			return pagein_net_stream_status(src);
	}
}
