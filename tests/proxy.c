// SPDX-License-Identifier: MIT
/*
 * proxy.c - the tests' fault-injecting TCP proxy (proxy.h): one thread polls the listener and
 * every forwarded pair of sockets, copies bytes through a buffer per direction, and applies the
 * cuts, stalls, down periods and byte flips the test or the traffic cues.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "proxy.h"

#define BUFSZ (64u << 10) /* per direction per pair */

/* One direction of a pair: bytes read from `from` and not yet written to `to`. */
struct dir {
	uint8_t buf[BUFSZ];
	size_t pos, len;
	bool eof;            /* `from` said EOF: after the buffer drains, half-close `to` */
	bool shut;           /* `to` has been half-closed */
};

struct pair {
	bool used;
	bool connecting;     /* sfd's connect has not completed */
	int cfd, sfd;        /* client side (accepted), server side */
	unsigned index;      /* accept order, for flips */
	uint64_t down_off;   /* server-to-client bytes forwarded so far */
	struct dir up, down; /* client -> server, server -> client */
};

struct t_proxy {
	struct t_proxy_config cfg;
	pthread_t thread;
	pthread_mutex_t lock;   /* everything below; not held across poll */
	int lfd, wake[2];
	int port;
	bool quit;
	uint64_t rng;
	uint64_t total;         /* bytes forwarded both ways */
	uint64_t next_at;       /* total at which the next random event fires (UINT64_MAX: none) */
	unsigned cuts_left;
	bool stall_done;        /* T_PROXY_STALL: the random stall has begun */
	bool stalled;
	uint64_t stall_until;   /* ns; 0 with stalled: for ever */
	uint64_t down_until;    /* ns: connections arriving before this are reset */
	bool await_recover;     /* a recovery latency is being measured */
	uint64_t back_at;       /* ns: when the link came back */
	struct t_proxy_stats st;
	struct pair pairs[T_PROXY_MAX_PAIRS];
};

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static uint64_t rnd(struct t_proxy *p)
{
	p->rng ^= p->rng << 13;
	p->rng ^= p->rng >> 7;
	p->rng ^= p->rng << 17;
	return p->rng;
}

static void arm_next(struct t_proxy *p)
{
	uint64_t lo = p->cfg.gap_min, hi = p->cfg.gap_max;

	if (hi < lo)
		hi = lo;
	if ((p->cfg.mode == T_PROXY_CUT && p->cuts_left) ||
	    (p->cfg.mode == T_PROXY_STALL && !p->stall_done))
		p->next_at = p->total + lo + rnd(p) % (hi - lo + 1);
	else
		p->next_at = UINT64_MAX;
}

/* Close with RST: what a cut link looks like to both ends once they notice. */
static void reset_close(int fd)
{
	struct linger l = { .l_onoff = 1, .l_linger = 0 };

	if (fd < 0)
		return;
	setsockopt(fd, SOL_SOCKET, SO_LINGER, &l, sizeof(l));
	close(fd);
}

static void pair_drop(struct pair *pr, bool rst)
{
	if (rst) {
		reset_close(pr->cfd);
		reset_close(pr->sfd);
	} else {
		close(pr->cfd);
		close(pr->sfd);
	}
	pr->used = false;
}

static void begin_recover(struct t_proxy *p, uint64_t back_at)
{
	p->await_recover = true;
	p->back_at = back_at;
}

static void do_cut(struct t_proxy *p)
{
	unsigned i, n = 0;
	uint64_t now = now_ns();

	for (i = 0; i < T_PROXY_MAX_PAIRS; i++)
		if (p->pairs[i].used) {
			pair_drop(&p->pairs[i], true);
			n++;
		}
	p->st.cuts++;
	p->st.conns_cut += n;
	p->down_until = now + (uint64_t)p->cfg.down_ms * 1000000ull;
	begin_recover(p, p->down_until);
}

static void do_stall(struct t_proxy *p, unsigned ms)
{
	p->stalled = true;
	p->st.stalls++;
	p->stall_until = ms ? now_ns() + (uint64_t)ms * 1000000ull : 0;
}

static void do_resume(struct t_proxy *p)
{
	if (!p->stalled)
		return;
	p->stalled = false;
	begin_recover(p, now_ns());
}

/* Bytes went through: fire the random event when its moment has come. */
static void account(struct t_proxy *p, size_t n)
{
	p->total += n;
	if (p->total < p->next_at)
		return;
	if (p->cfg.mode == T_PROXY_CUT && p->cuts_left) {
		p->cuts_left--;
		do_cut(p);
	} else if (p->cfg.mode == T_PROXY_STALL && !p->stall_done) {
		p->stall_done = true;
		do_stall(p, p->cfg.stall_ms);
	}
	arm_next(p);
}

static void accept_one(struct t_proxy *p)
{
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	struct pair *pr = NULL;
	int cfd, sfd, one = 1;
	unsigned i;

	cfd = accept4(p->lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
	if (cfd < 0)
		return;
	for (i = 0; i < T_PROXY_MAX_PAIRS && !pr; i++)
		if (!p->pairs[i].used)
			pr = &p->pairs[i];
	if (!pr || now_ns() < p->down_until) {
		p->st.refused++;
		reset_close(cfd);
		return;
	}
	sfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (sfd < 0) {
		p->st.refused++;
		reset_close(cfd);
		return;
	}
	setsockopt(cfd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	setsockopt(sfd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	sa.sin_port = htons((uint16_t)p->cfg.target_port);
	memset(pr, 0, sizeof(*pr));
	pr->connecting = connect(sfd, (struct sockaddr *)&sa, sizeof(sa)) < 0;
	if (pr->connecting && errno != EINPROGRESS) {
		/* nothing listens there (a server being restarted): refuse as a dead link would */
		p->st.refused++;
		reset_close(cfd);
		close(sfd);
		return;
	}
	pr->used = true;
	pr->cfd = cfd;
	pr->sfd = sfd;
	pr->index = p->st.accepted++;
}

/* Move bytes one way. Returns false when the pair must be dropped. */
static bool pump(struct t_proxy *p, struct pair *pr, int from, int to, struct dir *d, bool down,
		 short rev_from, short rev_to)
{
	ssize_t n;

	if (d->len == d->pos && !d->eof && (rev_from & (POLLIN | POLLHUP | POLLERR))) {
		n = recv(from, d->buf, BUFSZ, 0);
		if (n == 0) {
			d->eof = true;
		} else if (n < 0) {
			if (errno != EAGAIN && errno != EINTR)
				return false;
		} else {
			d->pos = 0;
			d->len = (size_t)n;
			if (down && p->cfg.mode == T_PROXY_FLIP && pr->index == p->cfg.flip_conn &&
			    p->cfg.flip_offset >= pr->down_off &&
			    p->cfg.flip_offset < pr->down_off + (uint64_t)n) {
				d->buf[p->cfg.flip_offset - pr->down_off] ^=
					p->cfg.flip_mask ? p->cfg.flip_mask : 0x01;
				p->st.flipped = true;
			}
			if (down)
				pr->down_off += (uint64_t)n;
			rev_to |= POLLOUT; /* try to write at once */
		}
	}
	if (d->pos < d->len && (rev_to & POLLOUT)) {
		n = send(to, d->buf + d->pos, d->len - d->pos, MSG_NOSIGNAL);
		if (n < 0) {
			if (errno != EAGAIN && errno != EINTR)
				return false;
		} else {
			d->pos += (size_t)n;
			if (down) {
				p->st.bytes_down += (uint64_t)n;
				if (p->await_recover && n > 0) {
					uint64_t now = now_ns();

					p->await_recover = false;
					if (p->st.nrecover < T_PROXY_MAX_EVENTS)
						p->st.recover_us[p->st.nrecover++] =
							now > p->back_at ? (now - p->back_at) / 1000 : 0;
				}
			} else {
				p->st.bytes_up += (uint64_t)n;
			}
			account(p, (size_t)n);
			if (!pr->used)
				return true; /* the event cut it */
		}
	}
	if (d->eof && d->pos == d->len && !d->shut) {
		shutdown(to, SHUT_WR);
		d->shut = true;
	}
	return true;
}

static void *proxy_main(void *arg)
{
	struct t_proxy *p = arg;
	struct pollfd pfd[2 + 2 * T_PROXY_MAX_PAIRS];
	int map[2 + 2 * T_PROXY_MAX_PAIRS];
	unsigned i, n;
	int timeout;

	for (;;) {
		uint64_t now;

		pthread_mutex_lock(&p->lock);
		if (p->quit) {
			pthread_mutex_unlock(&p->lock);
			break;
		}
		now = now_ns();
		if (p->stalled && p->stall_until && now >= p->stall_until)
			do_resume(p);
		timeout = 50;
		n = 0;
		pfd[n++] = (struct pollfd){ .fd = p->wake[0], .events = POLLIN };
		pfd[n++] = (struct pollfd){ .fd = p->lfd, .events = POLLIN };
		if (!p->stalled) {
			for (i = 0; i < T_PROXY_MAX_PAIRS; i++) {
				struct pair *pr = &p->pairs[i];

				if (!pr->used)
					continue;
				map[n] = (int)i;
				pfd[n++] = (struct pollfd){
					.fd = pr->cfd,
					.events = (short)((pr->up.pos == pr->up.len && !pr->up.eof &&
							   !pr->connecting ? POLLIN : 0) |
							  (pr->down.pos < pr->down.len ? POLLOUT : 0)),
				};
				map[n] = (int)i;
				pfd[n++] = (struct pollfd){
					.fd = pr->sfd,
					.events = (short)(pr->connecting ? POLLOUT
						   : ((pr->down.pos == pr->down.len && !pr->down.eof
						       ? POLLIN : 0) |
						      (pr->up.pos < pr->up.len ? POLLOUT : 0))),
				};
			}
		}
		pthread_mutex_unlock(&p->lock);

		if (poll(pfd, n, timeout) < 0 && errno != EINTR)
			break;

		pthread_mutex_lock(&p->lock);
		if (pfd[0].revents & POLLIN) {
			char b[64];

			while (read(p->wake[0], b, sizeof(b)) > 0)
				;
		}
		if (pfd[1].revents & POLLIN)
			accept_one(p);
		for (i = 2; i + 1 < n; i += 2) {
			struct pair *pr = &p->pairs[map[i]];
			short rc = pfd[i].revents, rs = pfd[i + 1].revents;

			if (!pr->used || p->stalled || pr->cfd != pfd[i].fd)
				continue; /* cut or stalled by an earlier pair's bytes */
			if (pr->connecting) {
				int err = 0;
				socklen_t el = sizeof(err);

				if (!(rs & (POLLOUT | POLLERR | POLLHUP)))
					continue;
				if (getsockopt(pr->sfd, SOL_SOCKET, SO_ERROR, &err, &el) < 0 || err) {
					pair_drop(pr, true); /* the server is gone: look like a dead link */
					continue;
				}
				pr->connecting = false;
				continue;
			}
			if (!pump(p, pr, pr->cfd, pr->sfd, &pr->up, false, rc, rs) ||
			    (pr->used && !pump(p, pr, pr->sfd, pr->cfd, &pr->down, true, rs, rc))) {
				if (pr->used)
					pair_drop(pr, true);
				continue;
			}
			if (pr->used && pr->up.shut && pr->down.shut)
				pair_drop(pr, false);
		}
		pthread_mutex_unlock(&p->lock);
	}
	return NULL;
}

void t_proxy_config_init(struct t_proxy_config *cfg, int target_port)
{
	memset(cfg, 0, sizeof(*cfg));
	cfg->target_port = target_port;
	cfg->mode = T_PROXY_PASS;
	cfg->gap_min = 64u << 10;
	cfg->gap_max = 4u << 20;
	cfg->seed = 1;
}

int t_proxy_start(const struct t_proxy_config *cfg, struct t_proxy **out)
{
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t sl = sizeof(sa);
	struct t_proxy *p;
	int ret, one = 1;

	p = calloc(1, sizeof(*p));
	if (!p)
		return -ENOMEM;
	p->cfg = *cfg;
	p->rng = cfg->seed ? cfg->seed : 1;
	p->cuts_left = cfg->mode == T_PROXY_CUT ? cfg->cuts : 0;
	pthread_mutex_init(&p->lock, NULL);
	arm_next(p);
	if (pipe2(p->wake, O_NONBLOCK | O_CLOEXEC) < 0) {
		ret = -errno;
		goto free_p;
	}
	p->lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (p->lfd < 0) {
		ret = -errno;
		goto close_pipe;
	}
	setsockopt(p->lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(p->lfd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(p->lfd, 64) < 0 ||
	    getsockname(p->lfd, (struct sockaddr *)&sa, &sl) < 0) {
		ret = -errno;
		goto close_lfd;
	}
	p->port = ntohs(sa.sin_port);
	ret = -pthread_create(&p->thread, NULL, proxy_main, p);
	if (ret)
		goto close_lfd;
	*out = p;
	return 0;
close_lfd:
	close(p->lfd);
close_pipe:
	close(p->wake[0]);
	close(p->wake[1]);
free_p:
	pthread_mutex_destroy(&p->lock);
	free(p);
	return ret;
}

int t_proxy_port(struct t_proxy *p)
{
	return p->port;
}

static void poke(struct t_proxy *p)
{
	ssize_t r = write(p->wake[1], "x", 1);

	(void)r; /* a full pipe already wakes it */
}

void t_proxy_set_target(struct t_proxy *p, int port)
{
	pthread_mutex_lock(&p->lock);
	p->cfg.target_port = port;
	pthread_mutex_unlock(&p->lock);
}

void t_proxy_cut(struct t_proxy *p)
{
	pthread_mutex_lock(&p->lock);
	do_cut(p);
	pthread_mutex_unlock(&p->lock);
	poke(p);
}

void t_proxy_stall(struct t_proxy *p, unsigned ms)
{
	pthread_mutex_lock(&p->lock);
	do_stall(p, ms);
	pthread_mutex_unlock(&p->lock);
	poke(p);
}

void t_proxy_resume(struct t_proxy *p)
{
	pthread_mutex_lock(&p->lock);
	do_resume(p);
	pthread_mutex_unlock(&p->lock);
	poke(p);
}

void t_proxy_stats(struct t_proxy *p, struct t_proxy_stats *st)
{
	pthread_mutex_lock(&p->lock);
	*st = p->st;
	st->stalled = p->stalled;
	pthread_mutex_unlock(&p->lock);
}

void t_proxy_stop(struct t_proxy *p)
{
	unsigned i;

	if (!p)
		return;
	pthread_mutex_lock(&p->lock);
	p->quit = true;
	pthread_mutex_unlock(&p->lock);
	poke(p);
	pthread_join(p->thread, NULL);
	for (i = 0; i < T_PROXY_MAX_PAIRS; i++)
		if (p->pairs[i].used)
			pair_drop(&p->pairs[i], true);
	close(p->lfd);
	close(p->wake[0]);
	close(p->wake[1]);
	pthread_mutex_destroy(&p->lock);
	free(p);
}
