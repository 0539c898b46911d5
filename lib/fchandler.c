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
#include <poll.h>
#include <pthread.h>
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

/* Pages in the working set at path (for the summary), 0 if it cannot be read. */
static uint64_t pi_ws_pages(const char *path)
{
	struct pi_ws ws;
	uint64_t n;

	if (pi_ws_open(path, &ws, NULL, 0) < 0)
		return 0;
	n = ws.npages;
	pi_ws_close(&ws);
	return n;
}

/* Whether the engine can serve this VMM: 4 KiB pages (its remote regions install by COPY in
 * 4 KiB pages; huge pages go to fcserve.c) and a pidfd to see the VMM exit by. */
static bool engine_fits(struct pagein_handler *h)
{
	unsigned i;

	if (h->ho->pidfd < 0 || getenv("PAGEIN_HANDLER_SIMPLE"))
		return false;
	for (i = 0; i < h->n; i++)
		if (h->r[i].page_size != 4096)
			return false;
	return true;
}

/* The working-set prefetch beside the engine's handler threads. */
struct eng_prefetch {
	struct pagein_space *space;
	const char *path;
	uint64_t image_id;
	struct pagein_ws_stats st;
	int ret;
	char err[PI_ERRLEN];
};

static void *eng_prefetch_main(void *arg)
{
	struct eng_prefetch *p = arg;

	p->st.size = sizeof(p->st);
	p->ret = pagein_ws_prefetch(p->space, p->path, p->image_id, &p->st, p->err,
				    sizeof(p->err));
	return NULL;
}

/*
 * Serve the VMM through a pagein space of its own: handler threads on the VMM's uffd over the
 * VMM's memory adopted as regions (addressed by memory-file offset, as the source is), the
 * engine's fault-around, recorder and race rules. For 4 KiB pages with a pidfd.
 */
static int serve_engine(struct pagein_handler *h, struct pagein_source *src, uint64_t image_id)
{
	struct pagein_uffd_adopt ua = { .size = sizeof(ua), .uffd = h->ho->uffd,
					.pidfd = h->ho->pidfd };
	struct eng_prefetch pf = { .path = h->prefetch_ws, .image_id = image_id };
	struct pi_fc_serve_stats *st = &h->st;
	struct pagein_config cfg;
	struct pagein_space *space;
	struct pagein_stats ps;
	pthread_t pf_thread;
	bool prefetching = false;
	uint64_t t0 = pi_now_ns();
	unsigned i;
	int ret;

	pagein_config_init(&cfg);
	cfg.frontend = PAGEIN_FRONTEND_HANDLER;
	cfg.readers = 1; /* a remote space's rule: REMOVE before the faults after it */
	cfg.timeout_ms = h->cfg.timeout_ms;
	cfg.log = h->cfg.log;
	cfg.log_arg = h->cfg.log_arg;
	ret = pagein_space_new(&cfg, &space);
	if (ret < 0)
		return ret;
	ret = pagein_space_adopt_uffd(space, &ua);
	for (i = 0; i < h->n && ret == 0; i++) {
		struct pagein_region_adopt a = { .size = sizeof(a), .gpa = h->r[i].offset,
						 .len = h->r[i].size,
						 .backing = PAGEIN_BACKING_ANON,
						 .host = (void *)(uintptr_t)h->r[i].base, .fd = -1 };

		ret = pagein_region_adopt(space, &a);
	}
	if (ret == 0)
		ret = pagein_space_set_source(space, src);
	if (ret == 0 && h->record_ws)
		ret = pagein_ws_record_start(space, 0);
	if (ret == 0)
		ret = pagein_space_start(space);
	if (ret < 0)
		goto out;
	if (h->prefetch_ws) {
		pf.space = space;
		if (pthread_create(&pf_thread, NULL, eng_prefetch_main, &pf) == 0)
			prefetching = true;
	}
	/* until the VMM exits (-ESRCH) or we are told to stop; a complete space keeps serving:
	 * the VMM's balloon may discard and fault pages again */
	for (;;) {
		struct pollfd p = { .fd = h->ho->pidfd, .events = POLLIN };

		if (atomic_load(&h->stop))
			break;
		ret = pagein_wait_complete(space, 100);
		if (ret == -ESRCH) {
			st->peer_exited = true;
			break;
		}
		/* complete, or a page failed for good (poisoned: the VMM gets SIGBUS there):
		 * either way the VMM goes on, and its exit is what ends the serving */
		if (ret != -ETIMEDOUT && poll(&p, 1, 100) > 0) {
			st->peer_exited = true;
			atomic_store(&space->peer_gone, true); /* before a reader notices */
			break;
		}
	}
	ret = 0;
	if (prefetching) {
		pthread_join(pf_thread, NULL);
		/* a damaged set or another image's: not used (an install that failed because the
		 * VMM exited meanwhile is no refusal) */
		if (pf.ret == -ESTALE || pf.ret == -EIO || pf.ret == -EINVAL || pf.ret == -ENODATA) {
			st->ws_refused = true;
			if (h->cfg.log)
				h->cfg.log(h->cfg.log_arg, PAGEIN_LOG_WARN, pf.err);
		}
	}
	if (h->record_ws) {
		pagein_ws_record_stop(space);
		ret = pagein_ws_record_save(space, h->record_ws, image_id, h->err, sizeof(h->err));
		if (ret < 0)
			fail(h, ret);
		else
			h->ws_pages = pi_ws_pages(h->record_ws);
	}
	pagein_stats_get(space, &ps);
	st->faults = ps.faults_handler;
	st->pages_demand = ps.pages_demand + ps.pages_around;
	st->pages_prefetch = pf.st.installed;
	st->pages_zero = ps.pages_zero;
	st->rezero = ps.rezero;
	st->fault_errors = atomic_load(&space->failed_pages);
	st->events_remove = ps.events_remove;
	st->events_unmap = ps.events_unmap;
	st->eexist = ps.eexist;
	st->eagain = ps.eagain;
	/* the source is not counted by the engine: pages brought for faults (an upper bound:
	 * holes are not read) plus the working set's one read */
	st->bytes_read = st->pages_demand * 4096 + pf.st.bytes_read;
	memcpy(st->lat_hist, ps.lat_hist, sizeof(st->lat_hist));
	st->elapsed_ns = pi_now_ns() - t0;
out:
	pagein_space_free(space);
	return ret;
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
	if (engine_fits(h)) {
		ret = serve_engine(h, src, image_id);
		if (ret < 0) {
			snprintf(h->err, sizeof(h->err), "serving VMM %d failed: %s",
				 (int)h->ho->pid, strerror(-ret));
			fail(h, ret);
		}
		return ret;
	}
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
