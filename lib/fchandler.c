// SPDX-License-Identifier: MIT
/*
 * fchandler.c - the public face of the Firecracker-style page-fault handler (pagein-vmm.h):
 * one object that listens, accepts one VMM's hand-off and checks it (fcsock.c, fcmap.c), serves
 * it (fcserve.c) and records or prefetches its working set (wsfile.c). Errors are logged and
 * kept as text for pagein_handler_error().
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "internal.h"
#include "vmm.h"

struct pagein_handler {
	struct pagein_handler_config cfg;
	char *socket, *record_ws, *prefetch_ws; /* copies of cfg's strings */
	int lfd;                                /* listening socket, -1 once accepted */
	struct pi_fc_handoff *ho;               /* what the VMM sent (large: heap) */
	bool accepted, served;
	struct pi_fc_region r[PI_FC_MAX_REGIONS];
	struct pi_fc_peer_map m[PI_FC_MAX_REGIONS];
	unsigned n;
	_Atomic bool stop;
	struct pi_fc_serve_stats st;
	uint64_t ws_pages;
	char err[PI_ERRLEN];
};

/* Keep err and log it. */
static int fail(struct pagein_handler *h, int ret)
{
	if (h->cfg.log && h->err[0])
		h->cfg.log(h->cfg.log_arg, PAGEIN_LOG_ERR, h->err);
	return ret;
}

void pagein_handler_config_init(struct pagein_handler_config *cfg)
{
	memset(cfg, 0, sizeof(*cfg));
	cfg->size = sizeof(*cfg);
	cfg->timeout_ms = 10000;
	cfg->check_regions = true;
}

static char *dup_or_null(const char *s, bool *oom)
{
	char *d;

	if (!s)
		return NULL;
	d = strdup(s);
	*oom |= !d;
	return d;
}

int pagein_handler_new(const struct pagein_handler_config *cfg, struct pagein_handler **out)
{
	struct pagein_handler *h;
	bool oom = false;
	int ret;

	if (!cfg || cfg->size < sizeof(*cfg) || cfg->flags || !cfg->socket ||
	    (cfg->record_ws && cfg->prefetch_ws))
		return -EINVAL;
	h = calloc(1, sizeof(*h));
	if (!h)
		return -ENOMEM;
	h->cfg = *cfg;
	h->lfd = -1;
	h->socket = dup_or_null(cfg->socket, &oom);
	h->record_ws = dup_or_null(cfg->record_ws, &oom);
	h->prefetch_ws = dup_or_null(cfg->prefetch_ws, &oom);
	h->ho = calloc(1, sizeof(*h->ho));
	if (oom || !h->ho) {
		ret = -ENOMEM;
		goto err;
	}
	h->ho->conn = h->ho->uffd = h->ho->pidfd = -1;
	h->cfg.socket = h->socket;
	h->cfg.record_ws = h->record_ws;
	h->cfg.prefetch_ws = h->prefetch_ws;
	ret = pi_fc_listen(h->socket, h->err, sizeof(h->err));
	if (ret < 0) {
		fail(h, ret);
		goto err;
	}
	h->lfd = ret;
	*out = h;
	return 0;

err:
	free(h->ho);
	free(h->socket);
	free(h->record_ws);
	free(h->prefetch_ws);
	free(h);
	return ret;
}

int pagein_handler_accept(struct pagein_handler *h, int timeout_ms)
{
	unsigned i;
	int ret;

	if (h->accepted || h->lfd < 0)
		return -EALREADY;
	h->err[0] = 0;
	ret = pi_fc_accept(h->lfd, timeout_ms, h->ho, h->err, sizeof(h->err));
	if (ret < 0)
		return fail(h, ret);
	/* one VMM per handler: the socket's job is done */
	close(h->lfd);
	h->lfd = -1;
	unlink(h->socket);
	ret = pi_fc_parse(h->ho->json, h->ho->json_len, h->r, PI_FC_MAX_REGIONS, h->err,
			  sizeof(h->err));
	if (ret < 0)
		goto err;
	h->n = (unsigned)ret;
	for (i = 0; i < h->n; i++)
		h->m[i] = (struct pi_fc_peer_map){ PAGEIN_BACKING_ANON, false };
	if (h->cfg.check_regions) {
		ret = pi_fc_check_regions(h->ho->pid, h->r, h->n, h->m, h->err, sizeof(h->err));
		if (ret == -EINVAL)
			goto err;
		if (ret < 0 && h->cfg.log) {
			/* another user's VMM: its smaps are closed to us. Serve it unchecked. */
			char msg[PI_ERRLEN + 32];

			snprintf(msg, sizeof(msg), "%s; serving unchecked", h->err);
			h->cfg.log(h->cfg.log_arg, PAGEIN_LOG_WARN, msg);
		}
	}
	for (i = 0; i < h->n; i++)
		if (!h->r[i].page_size_given && h->m[i].backing == PAGEIN_BACKING_HUGETLB) {
			snprintf(h->err, sizeof(h->err), "region %u: the VMM sent no page size "
				 "(Firecracker before 1.7) but maps hugetlb memory", i);
			ret = -EINVAL;
			goto err;
		}
	h->accepted = true;
	h->err[0] = 0;
	return (int)h->n;

err:
	pi_fc_handoff_close(h->ho);
	return fail(h, ret);
}

int pagein_handler_regions(struct pagein_handler *h, struct pagein_vmm_region *out, unsigned max)
{
	unsigned i;

	if (!h->accepted)
		return -ENOTCONN;
	for (i = 0; i < h->n && i < max; i++)
		out[i] = (struct pagein_vmm_region){ h->r[i].base, h->r[i].size, h->r[i].offset,
						     h->r[i].page_size, h->m[i].backing, 0 };
	return (int)h->n;
}

int pagein_handler_pid(struct pagein_handler *h)
{
	return h->accepted ? (int)h->ho->pid : -ENOTCONN;
}

int pagein_handler_serve(struct pagein_handler *h, struct pagein_source *src, uint64_t image_id)
{
	struct pi_fc_serve_opts o = { .src = src, .image_id = image_id,
				      .timeout_ms = h->cfg.timeout_ms,
				      .record = h->record_ws != NULL, .stop = &h->stop,
				      .log = h->cfg.log, .log_arg = h->cfg.log_arg };
	struct pi_ws ws = { .fd = -1 };
	int ret;

	if (!h->accepted)
		return -ENOTCONN;
	if (h->served)
		return -EALREADY;
	if (!src)
		return -EINVAL;
	h->served = true;
	h->err[0] = 0;
	if (h->prefetch_ws) {
		ret = pi_ws_open(h->prefetch_ws, &ws, h->err, sizeof(h->err));
		if (ret < 0)
			return fail(h, ret);
		o.ws = &ws;
	}
	ret = pi_fc_serve(h->ho, h->r, h->n, h->m, &o, &h->st);
	if (ret < 0) {
		snprintf(h->err, sizeof(h->err), "serving VMM %d failed: %s", (int)h->ho->pid,
			 strerror(-ret));
		fail(h, ret);
	} else if (h->record_ws) {
		ret = pi_ws_write(h->record_ws, h->st.rec, h->st.nrec, h->r[0].page_size, image_id,
				  src, h->err, sizeof(h->err));
		if (ret < 0)
			fail(h, ret);
		else
			h->ws_pages = h->st.nrec;
	}
	free(h->st.rec);
	h->st.rec = NULL;
	if (o.ws)
		pi_ws_close(&ws);
	return ret;
}

void pagein_handler_stop(struct pagein_handler *h)
{
	atomic_store(&h->stop, true);
}

void pagein_handler_stats_get(struct pagein_handler *h, struct pagein_handler_stats *st)
{
	struct pagein_handler_stats s = { .size = sizeof(s) };
	uint32_t want = st->size;

	s.flags = (h->st.peer_exited ? PAGEIN_HANDLER_VMM_EXITED : 0) |
		  (h->st.ws_refused ? PAGEIN_HANDLER_WS_REFUSED : 0);
	s.faults = h->st.faults;
	s.pages_demand = h->st.pages_demand;
	s.pages_prefetch = h->st.pages_prefetch;
	s.pages_zero = h->st.pages_zero;
	s.rezero = h->st.rezero;
	s.fault_errors = h->st.fault_errors;
	s.events_remove = h->st.events_remove;
	s.eexist = h->st.eexist;
	s.eagain = h->st.eagain;
	s.wakes = h->st.wakes;
	s.bytes_read = h->st.bytes_read;
	s.ws_pages = h->ws_pages;
	s.elapsed_ns = h->st.elapsed_ns;
	memcpy(s.lat_hist, h->st.lat_hist, sizeof(s.lat_hist));
	/* an older caller's smaller struct gets the fields it knows */
	memcpy(st, &s, want < sizeof(s) ? want : sizeof(s));
	st->size = want;
}

const char *pagein_handler_error(struct pagein_handler *h)
{
	return h->err;
}

void pagein_handler_free(struct pagein_handler *h)
{
	if (!h)
		return;
	if (h->lfd >= 0) {
		close(h->lfd);
		unlink(h->socket);
	}
	pi_fc_handoff_close(h->ho);
	free(h->ho);
	free(h->socket);
	free(h->record_ws);
	free(h->prefetch_ws);
	free(h);
}
