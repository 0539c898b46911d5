// SPDX-License-Identifier: MIT
/*
 * fcserve.c - serving a userfaultfd that another process (a Firecracker-style VMM) created and
 * registered: faults in the VMM's memory are filled through the uffd (COPY, ZEROPAGE; a copy of a
 * zero page on hugetlb, which has no ZEROPAGE) from a source addressed by memory-file offset;
 * balloon discards (REMOVE events) are never re-fetched; a working set is recorded in first-touch
 * order or prefetched in batches (DONTWAKE + one WAKE) between faults, which keep priority; the
 * loop ends cleanly when the VMM exits. One thread, one uffd.
 */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <sys/eventfd.h>
#include <sched.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "internal.h"
#include "uapi.h"
#include "vmm.h"

#define MSG_BATCH 32          /* uffd messages read at once */
#define EAGAIN_MS 10000       /* longest an install keeps retrying EAGAIN (mm events) */
#define PREFETCH_BATCH 64     /* pages per prefetch install before the next WAKE */

/* One adopted region: the VMM's mapping and our record of its pages. */
struct fc_reg {
	struct pi_fc_region r;
	struct pi_fc_peer_map m;
	unsigned shift;        /* log2(page_size) */
	uint64_t npages;
	uint64_t *present;     /* installed by us (cleared never: a discard keeps it, see below) */
};

struct fc_srv {
	const struct pi_fc_serve_opts *o;
	struct pi_fc_serve_stats *st;
	int uffd;
	struct fc_reg *reg;
	unsigned n;
	uint8_t *buf;          /* one page of bytes from the source */
	uint8_t *zero;         /* one zero huge page (hugetlb has no ZEROPAGE), or NULL */
	struct uffd_msg *pend; /* faults read while an install waited out an mm event */
	uint32_t npend, cappend;
	uint64_t *rec;         /* recorded first touches (file offsets), in order */
	uint64_t nrec, caprec;
	uint64_t t0;
};

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void slog(struct fc_srv *s, int level, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static void slog(struct fc_srv *s, int level, const char *fmt, ...)
{
	char msg[PI_ERRLEN];
	va_list ap;

	if (!s->o->log)
		return;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	s->o->log(s->o->log_arg, level, msg);
}

static bool test_bit(const uint64_t *b, uint64_t i)
{
	return b[i / 64] >> (i % 64) & 1;
}

static void set_bit(uint64_t *b, uint64_t i)
{
	b[i / 64] |= 1ull << (i % 64);
}

static struct fc_reg *reg_of_addr(struct fc_srv *s, uint64_t addr)
{
	unsigned i;

	for (i = 0; i < s->n; i++)
		if (addr - s->reg[i].r.base < s->reg[i].r.size)
			return &s->reg[i];
	return NULL;
}

static struct fc_reg *reg_of_off(struct fc_srv *s, uint64_t off)
{
	unsigned i;

	for (i = 0; i < s->n; i++)
		if (off - s->reg[i].r.offset < s->reg[i].r.size)
			return &s->reg[i];
	return NULL;
}

/* Read and handle pending non-fault events (REMOVE), so an install that met EAGAIN can go on.
 * Faults read on the way are served after. */
static int drain(struct fc_srv *s);

/*
 * Install len bytes at addr: src bytes (COPY) or zeros (ZEROPAGE; a COPY of zeros on hugetlb).
 * The kernel's rules, each handled here: partial progress goes on; EEXIST means the page is
 * there already (a COPY that fails so wakes nobody: wake it); EAGAIN means an mm event is
 * pending: read it and retry; ENOENT/ESRCH: the VMM's mapping or the VMM is gone.
 * Returns 0, -ESRCH (the VMM is gone), or -errno.
 */
static int install(struct fc_srv *s, struct fc_reg *g, uint64_t addr, const void *src,
		   uint64_t len, bool dontwake)
{
	uint64_t done = 0, until = 0;
	unsigned tries = 0;
	int ret;

	while (done < len) {
		int64_t got;

		/* huge pages have no ZEROPAGE: known by the page size, which holds even when the
		 * regions went unchecked (--no-check) and the backing is only assumed */
		if (!src && g->r.page_size == 4096) {
			struct uffdio_zeropage z = {
				.range = { addr + done, len - done },
				.mode = dontwake ? UFFDIO_ZEROPAGE_MODE_DONTWAKE : 0 };

			ret = ioctl(s->uffd, UFFDIO_ZEROPAGE, &z);
			got = z.zeropage;
		} else {
			const uint8_t *from = src ? (const uint8_t *)src + done : s->zero;
			struct uffdio_copy c = { .dst = addr + done, .src = (uintptr_t)from,
						 .len = src ? len - done : g->r.page_size,
						 .mode = dontwake ? UFFDIO_COPY_MODE_DONTWAKE : 0 };

			ret = ioctl(s->uffd, UFFDIO_COPY, &c);
			got = c.copy;
		}
		if (ret == 0) {
			done += src || g->r.page_size == 4096 ? len - done :
				g->r.page_size;
			continue;
		}
		ret = -errno;
		if (got > 0) {
			done += (uint64_t)got;
			continue;
		}
		if (ret == -EEXIST) {
			struct uffdio_range w = { addr + done, g->r.page_size };

			ioctl(s->uffd, UFFDIO_WAKE, &w);
			s->st->eexist++;
			done += g->r.page_size;
			continue;
		}
		if (ret == -EAGAIN) {
			/* an mm event is pending: read it. The kernel keeps refusing installs until
			 * the thread that caused the event (the VMM's madvise) has run on after we
			 * read it, which on a busy machine takes a while: yield, then sleep, bounded
			 * in time rather than in tries */
			if (!until)
				until = now_ns() + EAGAIN_MS * 1000000ull;
			else if (now_ns() > until)
				return -EAGAIN;
			s->st->eagain++;
			ret = drain(s);
			if (ret < 0)
				return ret;
			/* the event may have discarded the very page being installed: it must read
			 * zeros then, whichever comes first, our install or the kernel's zap */
			if (src && test_bit(g->present, (addr + done - g->r.base) >> g->shift)) {
				src = NULL;
				s->st->raced_remove++;
			}
			if (++tries > 16)
				usleep(tries > 64 ? 1000 : 50);
			else
				sched_yield();
			continue;
		}
		if (ret == -ENOENT || ret == -ESRCH)
			return -ESRCH;
		return ret;
	}
	return 0;
}

/* A fault that cannot be served must not leave the VMM's thread asleep forever (the hang
 * Firecracker's own documentation warns of): poison the page, so the access gets SIGBUS. */
static void fail_fault(struct fc_srv *s, struct fc_reg *g, uint64_t addr, int err)
{
	struct uffdio_poison p = { .range = { addr, g->r.page_size } };

	s->st->fault_errors++;
	if (ioctl(s->uffd, UFFDIO_POISON, &p) < 0 && errno != EEXIST)
		slog(s, PAGEIN_LOG_ERR, "cannot poison 0x%llx either (%s): the VMM's thread stays "
		     "blocked", (unsigned long long)addr, strerror(errno));
	else
		slog(s, PAGEIN_LOG_ERR, "fault at 0x%llx failed (%s): the VMM gets SIGBUS there",
		     (unsigned long long)addr, strerror(-err));
}

/* Serve a fault on page idx of g. */
static int serve_fault(struct fc_srv *s, struct fc_reg *g, uint64_t idx)
{
	uint64_t addr = g->r.base + (idx << g->shift), off = g->r.offset + (idx << g->shift);
	uint64_t zm = 0, t = now_ns(), deadline;
	int ret;

	s->st->faults++;
	if (test_bit(g->present, idx)) {
		/* installed before and faulted again: the VMM discarded it (balloon). Its bytes
		 * are gone for good: what the kernel gives without userfaultfd is zeros, never
		 * the image's bytes again */
		uint64_t eexist = s->st->eexist;

		ret = install(s, g, addr, NULL, g->r.page_size, false);
		/* EEXIST: a second message for a page just installed (two threads faulted on it
		 * at once), not a discard */
		s->st->rezero += s->st->eexist == eexist;
		return ret;
	}
	deadline = s->o->timeout_ms ? t + s->o->timeout_ms * 1000000ull : 0;
	ret = s->o->src->ops.fetch(s->o->src->ctx, off, s->buf, g->r.page_size, g->r.page_size,
				   &zm, deadline);
	if (ret < 0) {
		slog(s, PAGEIN_LOG_ERR, "cannot read memory-file offset %llu for the VMM's fault at "
		     "0x%llx: %s", (unsigned long long)off, (unsigned long long)addr,
		     strerror(-ret));
		return ret;
	}
	s->st->bytes_read += zm & 1 ? 0 : g->r.page_size;
	ret = install(s, g, addr, zm & 1 ? NULL : s->buf, g->r.page_size, false);
	if (ret < 0)
		return ret;
	set_bit(g->present, idx);
	s->st->pages_demand++;
	s->st->pages_zero += zm & 1;
	if (s->o->record) {
		if (s->nrec == s->caprec) {
			uint64_t cap = s->caprec ? s->caprec * 2 : 4096, *p;

			p = realloc(s->rec, cap * sizeof(*p));
			if (!p)
				return -ENOMEM;
			s->rec = p;
			s->caprec = cap;
		}
		s->rec[s->nrec++] = off;
	}
	t = now_ns() - t;
	s->st->fault_ns += t;
	s->st->lat_hist[t ? (63 - __builtin_clzll(t) < PAGEIN_HIST_BUCKETS ?
			     63 - __builtin_clzll(t) : PAGEIN_HIST_BUCKETS - 1) : 0]++;
	return 0;
}

static void mark_removed(struct fc_srv *s, uint64_t start, uint64_t end)
{
	unsigned i;

	for (i = 0; i < s->n; i++) {
		struct fc_reg *g = &s->reg[i];
		uint64_t a = start > g->r.base ? start : g->r.base;
		uint64_t b = end < g->r.base + g->r.size ? end : g->r.base + g->r.size;
		uint64_t idx;

		/* whole pages only: a partly discarded page still holds bytes */
		a = (a - g->r.base + g->r.page_size - 1) >> g->shift;
		b = b > g->r.base ? (b - g->r.base) >> g->shift : 0;
		for (idx = a; idx < b; idx++)
			set_bit(g->present, idx);
	}
}

/* Handle one message. Faults outside every region are the VMM's bug: reported, not served. */
static int on_msg(struct fc_srv *s, const struct uffd_msg *m)
{
	struct fc_reg *g;
	int ret;

	switch (m->event) {
	case UFFD_EVENT_PAGEFAULT:
		g = reg_of_addr(s, m->arg.pagefault.address);
		if (!g) {
			/* registered but not described: the VMM's bug. Nothing to serve it from,
			 * and leaving it asleep hangs the VMM: poison it (SIGBUS there) */
			struct uffdio_poison p = { .range = { m->arg.pagefault.address & ~4095ull,
							      4096 } };

			slog(s, PAGEIN_LOG_ERR, "the VMM faulted at 0x%llx, outside every region it "
			     "described: it gets SIGBUS",
			     (unsigned long long)m->arg.pagefault.address);
			s->st->fault_errors++;
			ioctl(s->uffd, UFFDIO_POISON, &p);
			return 0;
		}
		ret = serve_fault(s, g, (m->arg.pagefault.address - g->r.base) >> g->shift);
		if (ret < 0 && ret != -ESRCH && ret != -ENOMEM) {
			fail_fault(s, g, m->arg.pagefault.address & ~(g->r.page_size - 1), ret);
			ret = 0; /* go on serving the others */
		}
		return ret;
	case UFFD_EVENT_REMOVE:
		/* the VMM discarded [start, end) (balloon): from now on those pages read zeros,
		 * whether we had installed them or not (Firecracker's contract: never the file's
		 * bytes again). Marking them present makes their next fault install zeros
		 * (serve_fault) and keeps the prefetch off them. */
		s->st->events_remove++;
		mark_removed(s, m->arg.remove.start, m->arg.remove.end);
		return 0;
	case UFFD_EVENT_UNMAP:
		s->st->events_unmap++;
		return 0;
	default:
		s->st->events_other++;
		return 0;
	}
}

/* Read what the uffd has now (never blocks). Returns messages read, or -errno. */
static int read_msgs(struct fc_srv *s, struct uffd_msg *msgs)
{
	struct pollfd p = { .fd = s->uffd, .events = POLLIN };
	ssize_t got;

	/* the fd's O_NONBLOCK is the VMM's choice (shared file description): poll first */
	if (poll(&p, 1, 0) <= 0 || !(p.revents & POLLIN))
		return 0;
	got = read(s->uffd, msgs, sizeof(*msgs) * MSG_BATCH);
	if (got < 0)
		return errno == EAGAIN || errno == EINTR ? 0 : -errno;
	return (int)(got / (ssize_t)sizeof(*msgs));
}

static int drain(struct fc_srv *s)
{
	struct uffd_msg msgs[MSG_BATCH];
	int n, i, ret;

	n = read_msgs(s, msgs);
	for (i = 0; i < n; i++) {
		if (msgs[i].event == UFFD_EVENT_PAGEFAULT) {
			/* not now: we are inside another fault's install, whose bytes sit in
			 * s->buf. Faults wait in the queue; mm events cannot wait */
			if (s->npend == s->cappend) {
				uint32_t cap = s->cappend ? s->cappend * 2 : 64;
				struct uffd_msg *q = realloc(s->pend, cap * sizeof(*q));

				if (!q)
					return -ENOMEM;
				s->pend = q;
				s->cappend = cap;
			}
			s->pend[s->npend++] = msgs[i];
			continue;
		}
		ret = on_msg(s, &msgs[i]);
		if (ret < 0)
			return ret;
	}
	return n < 0 ? n : 0;
}

/* Serve the faults drain() queued (serving them may queue more). */
static int serve_pending(struct fc_srv *s)
{
	struct uffd_msg m;
	int ret;

	while (s->npend) {
		m = s->pend[0];
		memmove(s->pend, s->pend + 1, --s->npend * sizeof(*s->pend));
		ret = on_msg(s, &m);
		if (ret < 0)
			return ret;
	}
	return 0;
}

/* Where the prefetch is in the working set. */
struct ws_cursor {
	uint32_t run;      /* current run */
	uint64_t k;        /* next page in it */
	uint64_t data_off; /* offset in the set's data of the run's first page */
};

/* Install one stretch of run pages [i, j) (all missing) and note it for the batch's wake. */
static int prefetch_stretch(struct fc_srv *s, struct fc_reg *g, uint64_t idx, uint64_t n,
			    const void *bytes, uint64_t *lo, uint64_t *hi)
{
	uint64_t addr = g->r.base + (idx << g->shift), q;
	int ret;

	ret = install(s, g, addr, bytes, n << g->shift, true);
	if (ret < 0)
		return ret;
	for (q = 0; q < n; q++)
		set_bit(g->present, idx + q);
	lo[g - s->reg] = addr < lo[g - s->reg] ? addr : lo[g - s->reg];
	hi[g - s->reg] = addr + (n << g->shift) > hi[g - s->reg] ? addr + (n << g->shift) :
			 hi[g - s->reg];
	return 0;
}

/*
 * Install the next batch of the working set: up to PREFETCH_BATCH pages, over as many runs as
 * that takes, each stretch of missing pages with one DONTWAKE ioctl, then one WAKE per region
 * for the span the batch touched. Pages present (faulted in, or discarded) are skipped. Returns
 * 0, or -errno of an install.
 */
static int prefetch_batch(struct fc_srv *s, const struct pi_ws *ws, const uint8_t *data,
			  struct ws_cursor *c)
{
	uint64_t lo[PI_FC_MAX_REGIONS], hi[PI_FC_MAX_REGIONS];
	uint64_t budget = PREFETCH_BATCH, ps = ws->page_size;
	unsigned i;
	int ret = 0;

	for (i = 0; i < s->n; i++) {
		lo[i] = UINT64_MAX;
		hi[i] = 0;
	}
	while (budget && c->run < ws->nruns) {
		const struct pi_ws_run *run = &ws->runs[c->run];
		struct fc_reg *g = reg_of_off(s, run->gpa);
		uint64_t end = c->k + budget < run->npages ? c->k + budget : run->npages, a, b;

		if (!g || g->r.page_size != ps ||
		    run->gpa + run->npages * ps - g->r.offset > g->r.size) {
			/* the set does not match this VMM's layout here: leave it to faults */
			s->st->prefetch_skipped += run->npages - c->k;
			end = run->npages;
		} else {
			for (a = c->k; a < end; a = b) {
				uint64_t idx = (run->gpa + a * ps - g->r.offset) >> g->shift;

				if (test_bit(g->present, idx)) {
					b = a + 1;
					continue;
				}
				for (b = a + 1; b < end && !test_bit(g->present, idx + (b - a)); b++)
					;
				ret = prefetch_stretch(s, g, idx, b - a,
						       run->flags & PI_WS_ZERO ? NULL :
						       data + c->data_off + a * ps, lo, hi);
				if (ret < 0)
					goto wake;
				s->st->pages_prefetch += b - a;
				s->st->pages_zero += run->flags & PI_WS_ZERO ? b - a : 0;
			}
		}
		budget -= end - c->k;
		c->k = end;
		if (c->k == run->npages) {
			if (!(run->flags & PI_WS_ZERO))
				c->data_off += run->npages * ps;
			c->run++;
			c->k = 0;
		}
	}
wake:
	/* one wake per region for the batch: a vCPU that faulted on one of these pages meanwhile
	 * sleeps until here (its queued message then finds the page there: EEXIST, woken) */
	for (i = 0; i < s->n; i++)
		if (hi[i]) {
			struct uffdio_range w = { lo[i], hi[i] - lo[i] };

			ioctl(s->uffd, UFFDIO_WAKE, &w);
			s->st->wakes++;
		}
	return ret;
}

/* The working set's one sequential read, on a thread of its own. */
struct ws_reader {
	struct pi_ws *ws;
	uint8_t *buf;   /* ws->data_len bytes */
	int efd;        /* written when done */
	int ret;        /* pi_ws_read_data's */
	uint64_t t0, ns;
	char err[PI_ERRLEN];
};

static void *ws_reader_main(void *arg)
{
	struct ws_reader *r = arg;
	uint64_t one = 1;

	r->ret = pi_ws_read_data(r->ws, r->buf, r->err, sizeof(r->err));
	r->ns = now_ns() - r->t0;
	if (write(r->efd, &one, sizeof(one)) < 0)
		r->ret = r->ret < 0 ? r->ret : -errno;
	return NULL;
}

int pi_fc_serve(struct pi_fc_handoff *h, const struct pi_fc_region *r, unsigned n,
		const struct pi_fc_peer_map *maps, const struct pi_fc_serve_opts *o,
		struct pi_fc_serve_stats *st)
{
	struct fc_srv s = { .o = o, .st = st, .uffd = h->uffd, .n = n };
	struct uffd_msg msgs[MSG_BATCH];
	uint64_t maxpage = 4096;
	struct ws_cursor cur = { 0, 0, 0 };
	struct ws_reader rd = { .efd = -1 };
	pthread_t rd_thread;
	bool reading = false, ws_ready = false;
	bool peer_gone = false;
	unsigned i;
	int ret = 0, nm, k;

	memset(st, 0, sizeof(*st));
	s.t0 = now_ns();
	if (o->record && o->ws)
		return -EINVAL; /* prefetched pages never fault: their touches cannot be seen */
	s.reg = calloc(n, sizeof(*s.reg));
	if (!s.reg)
		return -ENOMEM;
	for (i = 0; i < n; i++) {
		s.reg[i].r = r[i];
		s.reg[i].m = maps[i];
		s.reg[i].shift = (unsigned)__builtin_ctzll(r[i].page_size);
		s.reg[i].npages = r[i].size >> s.reg[i].shift;
		s.reg[i].present = calloc((s.reg[i].npages + 63) / 64, 8);
		if (!s.reg[i].present) {
			ret = -ENOMEM;
			goto out;
		}
		maxpage = r[i].page_size > maxpage ? r[i].page_size : maxpage;
		if (r[i].page_size > 4096 && !s.zero) {
			s.zero = calloc(1, 2u << 20);
			if (!s.zero) {
				ret = -ENOMEM;
				goto out;
			}
		}
	}
	s.buf = malloc(maxpage);
	if (!s.buf) {
		ret = -ENOMEM;
		goto out;
	}
	if (o->ws) {
		if (o->ws->image_id != o->image_id) {
			/* its bytes are another image's: installing them would corrupt the VM */
			slog(&s, PAGEIN_LOG_WARN, "working set was recorded from another image: not "
			     "prefetched");
			st->ws_refused = true;
		} else if (o->ws->data_len) {
			/* the one large read runs beside the fault loop: faults that come meanwhile
			 * are served from the file, not made to wait for the whole set */
			rd.ws = o->ws;
			rd.buf = malloc(o->ws->data_len);
			rd.efd = eventfd(0, EFD_CLOEXEC);
			rd.t0 = now_ns();
			if (!rd.buf || rd.efd < 0 ||
			    pthread_create(&rd_thread, NULL, ws_reader_main, &rd) != 0) {
				ret = -ENOMEM;
				goto out;
			}
			reading = true;
		} else {
			ws_ready = true; /* zero runs only: nothing to read */
		}
		if (st->ws_refused)
			cur.run = o->ws->nruns; /* nothing to prefetch: faults serve everything */
	}

	while (!peer_gone && !(o->stop && atomic_load(o->stop))) {
		bool prefetching = o->ws && ws_ready && cur.run < o->ws->nruns;
		/* the VMM's exit is its process's (pidfd); only without a pidfd does its
		 * connection hanging up stand for it (a VMM may close the socket and go on) */
		struct pollfd p[3] = { { .fd = h->uffd, .events = POLLIN },
				       { .fd = h->pidfd >= 0 ? h->pidfd : h->conn,
					 .events = h->pidfd >= 0 ? POLLIN : POLLRDHUP },
				       { .fd = reading ? rd.efd : -1, .events = POLLIN } };

		/* wait for faults, or with a prefetch batch to install only look */
		nm = poll(p, 3, prefetching ? 0 : 100);
		if (nm < 0 && errno != EINTR) {
			ret = -errno;
			break;
		}
		if (nm > 0 && p[1].revents)
			peer_gone = true; /* still serve what is queued, below */
		if (nm > 0 && p[2].revents) {
			pthread_join(rd_thread, NULL);
			reading = false;
			if (rd.ret < 0) {
				slog(&s, PAGEIN_LOG_WARN, "%s: not prefetched", rd.err);
				st->ws_refused = true;
			} else {
				ws_ready = true;
				st->bytes_read += o->ws->data_len;
				st->prefetch_read_ns = rd.ns;
			}
		}
		nm = read_msgs(&s, msgs);
		if (nm < 0) {
			ret = nm;
			break;
		}
		for (k = 0; k < nm && ret == 0; k++)
			ret = on_msg(&s, &msgs[k]);
		if (ret == 0)
			ret = serve_pending(&s);
		if (ret == -ESRCH) {
			/* the VMM's memory is gone under a fault: it is exiting */
			peer_gone = true;
			ret = 0;
		}
		if (ret < 0)
			break;
		/* one batch between two looks at the uffd: a fault waits at most one batch
		 * (64 installs), and a VMM that faults all the time cannot starve the prefetch
		 * whose pages would spare it those faults */
		if (prefetching) {
			ret = prefetch_batch(&s, o->ws, rd.buf, &cur);
			if (ret == -ESRCH) {
				peer_gone = true;
				ret = 0;
			}
			if (ret < 0)
				break;
		}
	}
	st->peer_exited = peer_gone;
	st->elapsed_ns = now_ns() - s.t0;
	if (o->record && ret == 0) {
		st->rec = s.rec;
		st->nrec = s.nrec;
		s.rec = NULL;
	}
out:
	if (reading) {
		pthread_join(rd_thread, NULL);
		reading = false;
	}
	if (rd.efd >= 0)
		close(rd.efd);
	free(rd.buf);
	free(s.pend);
	free(s.rec);
	free(s.buf);
	free(s.zero);
	for (i = 0; s.reg && i < n; i++)
		free(s.reg[i].present);
	free(s.reg);
	return ret;
}
