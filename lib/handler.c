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

#define MSG_BATCH 32 /* messages read per read() */

struct pi_reader {
	pthread_t thread;
	struct pagein_space *s;
	int uffd;     /* the userfaultfd this thread reads */
	bool shared;  /* other readers read the same userfaultfd: EPOLLEXCLUSIVE */
	bool running; /* thread was created */
};

/* Errors met inside SIGBUS handlers are logged here, from an ordinary thread. */
static void log_deferred(struct pagein_space *s)
{
	int err = atomic_exchange(&s->last_err, 0);

	if (err)
		pagein_log(s, PAGEIN_LOG_ERR,
			   "the page at gpa %#llx could not be fetched: %s; it is poisoned (a "
			   "thread touching it gets SIGBUS, accessors get EIO)",
			   (unsigned long long)atomic_load(&s->last_err_gpa), strerror(-err));
}

static void on_pagefault(struct pagein_space *s, const struct uffd_msg *m)
{
	uintptr_t addr = (uintptr_t)m->arg.pagefault.address;
	struct pi_region *r = pagein_region_of_host(s, addr);
	uint64_t idx;
	int ret;

	if (!r) {
		pagein_log(s, PAGEIN_LOG_WARN, "fault at %#lx outside every region", (unsigned long)addr);
		return;
	}
	idx = (addr - (uintptr_t)r->host) >> r->page_shift;
	pi_kvm_note_fault(s, m->arg.pagefault.feat.ptid);
	ret = pagein_fault(s, r, idx, PI_WHY_HANDLER);
	if (ret < 0) {
		/* the faulter must not hang: poison wakes it with SIGBUS */
		pagein_poison(s, r, idx, 1);
		log_deferred(s);
	}
}

static void on_event(struct pagein_space *s, const struct uffd_msg *m)
{
	struct pi_region *r;

	switch (m->event) {
	case UFFD_EVENT_PAGEFAULT:
		on_pagefault(s, m);
		break;
	case UFFD_EVENT_REMOVE:
		/* nothing to undo: a later fault on a discarded present page is re-mapped the
		 * way the kernel would (engine.c remap), never fetched again */
		pagein_stat_add(s, PI_STAT(events_remove), 1);
		break;
	case UFFD_EVENT_UNMAP:
		pagein_stat_add(s, PI_STAT(events_unmap), 1);
		r = pagein_region_of_host(s, (uintptr_t)m->arg.remove.start);
		if (r) {
			atomic_store(&r->gone, true);
			pagein_log(s, PAGEIN_LOG_WARN,
				   "region at gpa %#llx was unmapped by the program; accessors on it "
				   "now fail with ENOENT",
				   (unsigned long long)r->gpa);
		}
		break;
	default:
		pagein_log(s, PAGEIN_LOG_WARN, "unexpected userfaultfd event %u", m->event);
		break;
	}
}

static void *reader_main(void *arg)
{
	struct pi_reader *rd = arg;
	struct pagein_space *s = rd->s;
	struct epoll_event ev, evs[2];
	struct uffd_msg msgs[MSG_BATCH];
	int epfd, n, i;
	ssize_t got;

	epfd = epoll_create1(EPOLL_CLOEXEC);
	if (epfd < 0) {
		pagein_log(s, PAGEIN_LOG_ERR, "epoll_create1: %s", strerror(errno));
		return NULL;
	}
	ev.events = EPOLLIN | (rd->shared ? EPOLLEXCLUSIVE : 0);
	ev.data.fd = rd->uffd;
	epoll_ctl(epfd, EPOLL_CTL_ADD, rd->uffd, &ev);
	ev.events = EPOLLIN;
	ev.data.fd = s->stop_efd;
	epoll_ctl(epfd, EPOLL_CTL_ADD, s->stop_efd, &ev);

	for (;;) {
		n = epoll_wait(epfd, evs, 2, -1);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			pagein_log(s, PAGEIN_LOG_ERR, "epoll_wait: %s", strerror(errno));
			break;
		}
		for (i = 0; i < n; i++)
			if (evs[i].data.fd == s->stop_efd)
				goto out;
		for (;;) {
			got = read(rd->uffd, msgs, sizeof(msgs));
			if (got < 0 && errno == EINTR)
				continue;
			if (got <= 0)
				break; /* EAGAIN: another reader took it, or nothing left */
			for (i = 0; i < (int)(got / (ssize_t)sizeof(msgs[0])); i++)
				on_event(s, &msgs[i]);
		}
		log_deferred(s);
	}
out:
	close(epfd);
	return NULL;
}

int pagein_readers_start(struct pagein_space *s)
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
	for (i = 0; i < n; i++) {
		struct pi_reader *rd = &s->readers[i];

		rd->s = s;
		rd->uffd = s->uffds[i % s->nuffds];
		per = n / s->nuffds + (i % s->nuffds < n % s->nuffds);
		rd->shared = per > 1;
		ret = -pthread_create(&rd->thread, NULL, reader_main, rd);
		if (ret < 0) {
			pagein_log(s, PAGEIN_LOG_ERR, "starting reader thread %u: %s", i,
				   strerror(-ret));
			pagein_readers_stop(s);
			return ret;
		}
		rd->running = true;
	}
	return 0;
}

void pagein_readers_stop(struct pagein_space *s)
{
	uint64_t one = 1;
	unsigned i;

	if (!s->readers)
		return;
	/* level-triggered: the eventfd stays readable, so every reader sees it */
	if (write(s->stop_efd, &one, sizeof(one)) < 0)
		pagein_log(s, PAGEIN_LOG_WARN, "stopping readers: %s", strerror(errno));
	for (i = 0; i < s->nreaders; i++)
		if (s->readers[i].running)
			pthread_join(s->readers[i].thread, NULL);
	log_deferred(s);
	free(s->readers);
	s->readers = NULL;
	s->nreaders = 0;
}
