// SPDX-License-Identifier: MIT
/*
 * handler.c - the handler-thread front-end: reader threads on each userfaultfd (epoll, with
 * EPOLLEXCLUSIVE when several share one), serving fault messages through the engine and keeping
 * page state right on REMOVE/UNMAP events. In SELF mode one such thread reads only the events
 * (an unread REMOVE would block the madvise() that caused it and make every install EAGAIN).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <unistd.h>

#include "internal.h"
#include "uapi.h"

#define MSG_BATCH 32   /* messages read per read() */
#define BACKLOG_MAX 64 /* fault messages read while draining events, served afterwards */

struct pi_reader {
	pthread_t thread;
	struct pagein_space *s;
	int uffd;     /* the userfaultfd this thread reads */
	int epfd;     /* epoll over uffd and the space's stop eventfd */
	bool shared;  /* other readers read the same userfaultfd: EPOLLEXCLUSIVE */
	bool running; /* thread was created */
	/* fault messages read by pi_reader_read_events in the middle of serving a fault */
	struct uffd_msg backlog[BACKLOG_MAX];
	unsigned nbacklog;
};

/* The reader running on this thread (NULL on any other thread). */
static __thread struct pi_reader *this_reader;

/* Errors met inside SIGBUS handlers are logged here, from an ordinary thread. */
static void log_deferred(struct pagein_space *s)
{
	int err = atomic_exchange(&s->last_err, 0);
	uint64_t gpa = atomic_load(&s->last_err_gpa);

	if (err == -EDEADLK)
		pi_log(s, PAGEIN_LOG_ERR,
			   "gpa %#llx was touched again on the thread that is fetching it (a signal "
			   "handler touching guest memory?): that access failed with SIGBUS/EDEADLK",
			   (unsigned long long)gpa);
	else if (err)
		pi_log(s, PAGEIN_LOG_ERR,
			   "the page at gpa %#llx could not be fetched: %s; it is poisoned (a "
			   "thread touching it gets SIGBUS, accessors get EIO)",
			   (unsigned long long)gpa, strerror(-err));
}

static void on_pagefault(struct pagein_space *s, const struct uffd_msg *m)
{
	uintptr_t addr = (uintptr_t)m->arg.pagefault.address;
	struct pi_region *r = pi_region_of_host(s, addr);
	uint64_t idx, t0;
	int ret;

	if (!r) {
		pi_log(s, PAGEIN_LOG_WARN, "fault at %#lx outside every region", (unsigned long)addr);
		return;
	}
	idx = (addr - (uintptr_t)r->host) >> r->page_shift;
	pi_kvm_note_fault(s, m->arg.pagefault.feat.ptid);
	t0 = pi_now_ns(); /* blocktime.c: the faulting thread waits while we serve it */
	ret = pi_fault(s, r, idx, PI_WHY_HANDLER);
	pi_blocktime_add(s, m->arg.pagefault.feat.ptid, pi_now_ns() - t0);
	if (ret < 0) {
		/* the faulter must not hang: poison wakes it with SIGBUS */
		pi_poison_or_wake(s, r, idx);
		log_deferred(s);
	}
}

/* The program unmapped [start, end): mark exactly the pages of each region inside it. */
static void on_unmap(struct pagein_space *s, uintptr_t start, uintptr_t end)
{
	unsigned i, n = atomic_load(&s->nregions);
	uintptr_t lo, hi, base;
	struct pi_region *r;

	for (i = 0; i < n; i++) {
		r = &s->regions[i];
		base = (uintptr_t)r->host;
		lo = start > base ? start : base;
		hi = end < base + r->size ? end : base + r->size;
		if (lo >= hi)
			continue;
		/* whole pages only: a page partly unmapped is gone (the kernel unmaps pages) */
		pi_mark_unmapped(s, r, (lo - base) >> r->page_shift,
				 ((hi - base + r->page_size - 1) >> r->page_shift) -
					 ((lo - base) >> r->page_shift),
				 false);
		pi_log(s, PAGEIN_LOG_WARN,
			   "the program unmapped [%#llx, %#llx) of the region at gpa %#llx; accessors "
			   "there now fail with ENOENT",
			   (unsigned long long)(r->gpa + (lo - base)),
			   (unsigned long long)(r->gpa + (hi - base)), (unsigned long long)r->gpa);
	}
}

/* An mm event (never a page fault). */
static void on_mm_event(struct pagein_space *s, const struct uffd_msg *m)
{
	switch (m->event) {
	case UFFD_EVENT_REMOVE:
		/* nothing to undo: a later fault on a discarded present page is re-mapped the
		 * way the kernel would (engine.c remap), never fetched again */
		pi_stat_add(s, PI_STAT(events_remove), 1);
		/* another process's balloon: pages it gives up read zeros from then on, even
		 * those never fetched (Firecracker's contract with its page-fault handler) */
		if (s->remote)
			pi_mark_discarded(s, (uintptr_t)m->arg.remove.start,
					  (uintptr_t)m->arg.remove.end);
		break;
	case UFFD_EVENT_UNMAP:
		pi_stat_add(s, PI_STAT(events_unmap), 1);
		on_unmap(s, (uintptr_t)m->arg.remove.start, (uintptr_t)m->arg.remove.end);
		break;
	default:
		pi_log(s, PAGEIN_LOG_WARN, "unexpected userfaultfd event %u", m->event);
		break;
	}
}

static void on_event(struct pagein_space *s, const struct uffd_msg *m)
{
	if (m->event == UFFD_EVENT_PAGEFAULT)
		on_pagefault(s, m);
	else
		on_mm_event(s, m);
}

bool pi_reader_read_events(struct pagein_space *s, int uffd)
{
	struct pi_reader *rd = this_reader;
	struct uffd_msg msgs[MSG_BATCH];
	unsigned room, i;
	ssize_t got;

	if (!rd || rd->s != s || rd->uffd != uffd)
		return false;
	room = BACKLOG_MAX - rd->nbacklog;
	if (!room)
		return false; /* full: other readers (if any) read the event */
	if (room > MSG_BATCH)
		room = MSG_BATCH;
	got = read(uffd, msgs, room * sizeof(msgs[0]));
	if (got <= 0)
		return false; /* another reader took it: yield to it, then retry */
	for (i = 0; i < (unsigned)(got / (ssize_t)sizeof(msgs[0])); i++) {
		if (msgs[i].event == UFFD_EVENT_PAGEFAULT)
			rd->backlog[rd->nbacklog++] = msgs[i];
		else
			on_mm_event(s, &msgs[i]);
	}
	return true;
}

/* Serve the faults read while draining events (serving one may add more). */
static void serve_backlog(struct pi_reader *rd)
{
	struct uffd_msg m;
	unsigned i;

	while (rd->nbacklog) {
		m = rd->backlog[0];
		for (i = 1; i < rd->nbacklog; i++)
			rd->backlog[i - 1] = rd->backlog[i];
		rd->nbacklog--;
		on_pagefault(rd->s, &m);
	}
}

static void *reader_main(void *arg)
{
	struct pi_reader *rd = arg;
	struct pagein_space *s = rd->s;
	struct epoll_event evs[2];
	struct uffd_msg msgs[MSG_BATCH];
	int n, i;
	ssize_t got;

	this_reader = rd;
	for (;;) {
		n = epoll_wait(rd->epfd, evs, 2, -1);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			pi_log(s, PAGEIN_LOG_ERR, "epoll_wait: %s", strerror(errno));
			break;
		}
		for (i = 0; i < n; i++) {
			if (evs[i].data.fd == s->stop_efd)
				goto out;
			if (evs[i].data.fd == s->peer_pidfd && s->peer_pidfd >= 0) {
				/* the peer exited: its faults are over; say so once, wake the
				 * waiters (pagein_wait_complete answers -ESRCH), stop watching */
				epoll_ctl(rd->epfd, EPOLL_CTL_DEL, s->peer_pidfd, NULL);
				if (!atomic_exchange(&s->peer_gone, true)) {
					pi_log(s, PAGEIN_LOG_INFO, "the process whose memory this "
					       "space serves has exited");
					atomic_fetch_add(&s->progress, 1);
					pi_futex_wake(&s->progress);
				}
			}
		}
		for (;;) {
			got = read(rd->uffd, msgs, sizeof(msgs));
			if (got < 0 && errno == EINTR)
				continue;
			if (got <= 0)
				break; /* EAGAIN: another reader took it, or nothing left */
			for (i = 0; i < (int)(got / (ssize_t)sizeof(msgs[0])); i++) {
				on_event(s, &msgs[i]);
				serve_backlog(rd);
			}
		}
		log_deferred(s);
	}
out:
	this_reader = NULL;
	return NULL;
}

/* The reader's epoll set, made before its thread so that a failure fails the start. */
static int reader_epoll(struct pagein_space *s, struct pi_reader *rd)
{
	struct epoll_event ev;
	int ret;

	rd->epfd = pi_hooks.inject == PI_INJECT_EPOLL ? (errno = pi_hooks.inject_err, -1)
						      : epoll_create1(EPOLL_CLOEXEC);
	if (rd->epfd < 0) {
		ret = -errno;
		pi_log(s, PAGEIN_LOG_ERR, "epoll_create1 for a reader thread: %s", strerror(-ret));
		return ret;
	}
	ev.events = EPOLLIN | (rd->shared ? EPOLLEXCLUSIVE : 0);
	ev.data.fd = rd->uffd;
	if (epoll_ctl(rd->epfd, EPOLL_CTL_ADD, rd->uffd, &ev) < 0)
		goto err;
	ev.events = EPOLLIN;
	ev.data.fd = s->stop_efd;
	if (epoll_ctl(rd->epfd, EPOLL_CTL_ADD, s->stop_efd, &ev) < 0)
		goto err;
	if (s->peer_pidfd >= 0) {
		/* a remote space: the peer's exit ends it */
		ev.data.fd = s->peer_pidfd;
		if (epoll_ctl(rd->epfd, EPOLL_CTL_ADD, s->peer_pidfd, &ev) < 0)
			goto err;
	}
	return 0;
err:
	ret = -errno;
	pi_log(s, PAGEIN_LOG_ERR, "epoll_ctl for a reader thread: %s", strerror(-ret));
	close(rd->epfd);
	rd->epfd = -1;
	return ret;
}

int pi_readers_start(struct pagein_space *s)
{
	unsigned n, i, per;
	int ret;

	if (s->cfg.frontend == PAGEIN_FRONTEND_SELF)
		n = 1; /* events only */
	else
		n = s->cfg.readers < s->nuffds ? s->nuffds : s->cfg.readers;
	s->readers = calloc(n, sizeof(*s->readers));
	if (!s->readers)
		return -ENOMEM;
	s->nreaders = n;
	for (i = 0; i < n; i++)
		s->readers[i].epfd = -1;
	for (i = 0; i < n; i++) {
		struct pi_reader *rd = &s->readers[i];

		rd->s = s;
		rd->uffd = s->uffds[i % s->nuffds];
		per = n / s->nuffds + (i % s->nuffds < n % s->nuffds);
		rd->shared = per > 1;
		ret = reader_epoll(s, rd);
		if (ret < 0)
			goto err;
		if (pi_hooks.inject == PI_INJECT_READER_THREAD && i == n - 1)
			ret = -pi_hooks.inject_err;
		else
			ret = -pthread_create(&rd->thread, NULL, reader_main, rd);
		if (ret < 0) {
			pi_log(s, PAGEIN_LOG_ERR, "starting reader thread %u: %s", i,
				   strerror(-ret));
			goto err;
		}
		rd->running = true;
	}
	return 0;
err:
	pi_readers_stop(s);
	return ret;
}

void pi_readers_stop(struct pagein_space *s)
{
	uint64_t one = 1;
	unsigned i;

	if (!s->readers)
		return;
	/* level-triggered: the eventfd stays readable, so every reader sees it */
	if (write(s->stop_efd, &one, sizeof(one)) < 0)
		pi_log(s, PAGEIN_LOG_WARN, "stopping readers: %s", strerror(errno));
	for (i = 0; i < s->nreaders; i++) {
		if (s->readers[i].running)
			pthread_join(s->readers[i].thread, NULL);
		if (s->readers[i].epfd >= 0)
			close(s->readers[i].epfd);
	}
	/* read the stop signal back, so that the readers of a later start do not see it */
	if (read(s->stop_efd, &one, sizeof(one)) < 0 && errno != EAGAIN)
		pi_log(s, PAGEIN_LOG_WARN, "resetting the readers' stop signal: %s",
			   strerror(errno));
	log_deferred(s);
	free(s->readers);
	s->readers = NULL;
	s->nreaders = 0;
}
