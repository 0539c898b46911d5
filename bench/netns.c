// SPDX-License-Identifier: MIT
/*
 * netns.c - the delayed link of `pagein bench --net`: two network namespaces joined by veth with
 * netem adding 100 us each way (the page server and raw peer forked into one), or, where netem
 * is missing, a user-space relay on loopback that holds every chunk 100 us in each direction.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "net.h"
#include "pagein.h"
#include "pagein-net.h"
#include "tools.h"

/* ---------------------------------------------------------------------------------------------
 * The delay relay (when netem is missing): listens on loopback, connects each client to the
 * target, and forwards every chunk it reads after holding it delay_ns, in each direction.
 */

/* One direction of one relayed connection. */
struct pump {
	struct relay *r;
	int in, out;           /* read from in, write to out */
	pthread_t thread;
	bool started;
	_Atomic bool done;
};

/* One relayed connection. */
struct rconn {
	int a, b;              /* client side, target side */
	struct pump up, down;  /* a->b, b->a */
};

/* One chunk held back: its bytes and when it may go. */
struct held {
	uint64_t due;
	uint32_t len;
	uint8_t *buf;
};

static void *pump_main(void *arg)
{
	struct pump *p = arg;
	struct held *ring = calloc(RELAY_SLOTS, sizeof(*ring));
	uint64_t head = 0, tail = 0, now;
	bool eof = false, err = false;
	struct pollfd pfd;
	struct timespec ts;
	ssize_t n;
	int64_t wait;
	unsigned i;

	/* the relay's hold time is a timer: ask the kernel for no slack on it */
	prctl(PR_SET_TIMERSLACK, 1UL);
	if (!ring)
		err = true;
	while (!err && !atomic_load(&p->r->stop)) {
		now = now_ns();
		while (head != tail && ring[head % RELAY_SLOTS].due <= now) {
			struct held *h = &ring[head % RELAY_SLOTS];

			if (send_all(p->out, h->buf, h->len)) {
				err = true;
				break;
			}
			head++;
			now = now_ns();
		}
		if (err)
			break;
		if (eof && head == tail) {
			shutdown(p->out, SHUT_WR);
			break;
		}
		wait = head != tail ? (int64_t)(ring[head % RELAY_SLOTS].due - now) : 50000000;
		if (wait < 0)
			wait = 0;
		ts.tv_sec = wait / 1000000000;
		ts.tv_nsec = wait % 1000000000;
		pfd.fd = !eof && tail - head < RELAY_SLOTS ? p->in : -1;
		pfd.events = POLLIN;
		pfd.revents = 0;
		if (ppoll(&pfd, 1, &ts, NULL) <= 0 || !pfd.revents)
			continue;
		{
			struct held *h = &ring[tail % RELAY_SLOTS];

			if (!h->buf && !(h->buf = malloc(NB_CHUNK))) {
				err = true;
				break;
			}
			n = recv(p->in, h->buf, NB_CHUNK, MSG_DONTWAIT);
			if (n < 0 && (errno == EINTR || errno == EAGAIN))
				continue;
			if (n <= 0) {
				eof = n == 0;
				err = n < 0;
				continue;
			}
			h->len = (uint32_t)n;
			h->due = now_ns() + p->r->delay_ns;
			tail++;
		}
	}
	if (err) {
		shutdown(p->in, SHUT_RDWR);
		shutdown(p->out, SHUT_RDWR);
	}
	for (i = 0; ring && i < RELAY_SLOTS; i++)
		free(ring[i].buf);
	free(ring);
	atomic_store(&p->done, true);
	return NULL;
}

static void rconn_free(struct rconn *c)
{
	shutdown(c->a, SHUT_RDWR);
	shutdown(c->b, SHUT_RDWR);
	if (c->up.started)
		pthread_join(c->up.thread, NULL);
	if (c->down.started)
		pthread_join(c->down.thread, NULL);
	close(c->a);
	close(c->b);
	free(c);
}

static void *relay_main(void *arg)
{
	struct relay *r = arg;
	struct pollfd pfd = { .fd = r->lfd, .events = POLLIN };
	char target[32];
	struct rconn *c;
	unsigned i;
	int fd;

	snprintf(target, sizeof(target), "127.0.0.1:%d", r->target_port);
	while (!atomic_load(&r->stop)) {
		/* close the connections both of whose directions have ended */
		for (i = 0; i < r->nconns; i++) {
			c = r->conns[i];
			if (atomic_load(&c->up.done) && atomic_load(&c->down.done)) {
				rconn_free(c);
				r->conns[i--] = r->conns[--r->nconns];
			}
		}
		if (poll(&pfd, 1, 100) <= 0)
			continue;
		fd = accept4(r->lfd, NULL, NULL, SOCK_CLOEXEC);
		if (fd < 0)
			continue;
		if (r->nconns == RELAY_MAX_CONNS || !(c = calloc(1, sizeof(*c)))) {
			close(fd);
			continue;
		}
		set_timeouts(fd);
		c->a = fd;
		c->b = connect_to(target);
		c->up = (struct pump){ .r = r, .in = c->a, .out = c->b };
		c->down = (struct pump){ .r = r, .in = c->b, .out = c->a };
		c->up.started = !pthread_create(&c->up.thread, NULL, pump_main, &c->up);
		c->down.started = !pthread_create(&c->down.thread, NULL, pump_main, &c->down);
		if (!c->up.started || !c->down.started)
			die("relay: cannot start its threads");
		r->conns[r->nconns++] = c;
	}
	for (i = 0; i < r->nconns; i++)
		rconn_free(r->conns[i]);
	r->nconns = 0;
	return NULL;
}

void relay_start(struct relay *r, int target_port, uint64_t delay_ns)
{
	int ret;

	memset(r, 0, sizeof(*r));
	r->target_port = target_port;
	r->delay_ns = delay_ns;
	r->lfd = listen_on("127.0.0.1", &r->port);
	ret = pthread_create(&r->thread, NULL, relay_main, r);
	if (ret)
		die("pthread_create: %s", strerror(ret));
}

void relay_stop(struct relay *r)
{
	atomic_store(&r->stop, true);
	pthread_join(r->thread, NULL);
	close(r->lfd);
}

/* ---------------------------------------------------------------------------------------------
 * netem: two network namespaces joined by veth, 100 us added on both ends. Everything made here
 * is removed by ns_teardown (atexit, the watchdog, or at the end), with async-signal-safe calls.
 */

char ns_srv[32], ns_dst[32];
static char veth_srv[16], veth_dst[16];
static const char *ip_bin = "ip";
static volatile sig_atomic_t ns_made;   /* namespaces exist */
static pid_t ns_child = -1;             /* the server process inside ns_srv */
static _Atomic int ns_td;               /* teardown: 0 not begun, 1 under way, 2 done */

/* Run argv (no shell), its stderr into err; returns the exit status, or -1. */
static int run_cmd(char *const argv[], char *err, size_t errlen)
{
	int pfd[2], status;
	ssize_t n;
	size_t got = 0;
	pid_t pid;

	if (err && errlen)
		err[0] = 0;
	if (pipe2(pfd, O_CLOEXEC))
		return -1;
	pid = fork();
	if (pid < 0) {
		close(pfd[0]);
		close(pfd[1]);
		return -1;
	}
	if (pid == 0) {
		int devnull = open("/dev/null", O_WRONLY);

		dup2(devnull, 1);
		dup2(pfd[1], 2);
		execvp(argv[0], argv);
		_exit(127);
	}
	close(pfd[1]);
	while (err && got + 1 < errlen && (n = read(pfd[0], err + got, errlen - 1 - got)) > 0)
		got += (size_t)n;
	if (err && errlen) {
		err[got] = 0;
		while (got && (err[got - 1] == '\n' || err[got - 1] == ' '))
			err[--got] = 0;
	}
	close(pfd[0]);
	if (waitpid(pid, &status, 0) < 0)
		return -1;
	return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

/* Kill the server child and delete both namespaces (the veth pair goes with them). Only
 * async-signal-safe calls: it also runs from the watchdog. */
void ns_teardown(void)
{
	char *del_s[] = { (char *)ip_bin, "netns", "del", ns_srv, NULL };
	char *del_d[] = { (char *)ip_bin, "netns", "del", ns_dst, NULL };
	char *del_v[] = { (char *)ip_bin, "link", "del", veth_srv, NULL };
	char *const *cmds[] = { del_s, del_d, del_v };
	struct timespec ms = { .tv_nsec = 1000000 };
	int status, expect = 0;
	unsigned i;
	pid_t pid;

	if (!atomic_compare_exchange_strong(&ns_td, &expect, 1)) {
		/* a signal handler on another thread is at it: the process must not exit under it */
		for (i = 0; i < 10000 && atomic_load(&ns_td) != 2; i++)
			nanosleep(&ms, NULL);
		return;
	}
	if (ns_child > 0) {
		kill(ns_child, SIGKILL);
		waitpid(ns_child, &status, 0);
		ns_child = -1;
	}
	for (i = 0; ns_made && i < 3; i++) {
		pid = fork();
		if (pid == 0) {
			int devnull = open("/dev/null", O_WRONLY);

			dup2(devnull, 1);
			dup2(devnull, 2);
			execvp(cmds[i][0], cmds[i]);
			_exit(127);
		}
		if (pid > 0)
			waitpid(pid, &status, 0);
	}
	ns_made = 0;
	atomic_store(&ns_td, 2);
}

void ns_teardown_atexit(void)
{
	ns_teardown();
}

/*
 * Make the namespaces, the veth pair and the netem qdiscs. Returns 0, or -1 with why[] saying
 * what failed (and nothing left behind).
 */
int netem_setup(char *why, size_t whylen)
{
	static const char *const ips[] = { "/usr/sbin/ip", "/sbin/ip", "/usr/bin/ip", "/bin/ip" };
	char err[512], delay[32];
	unsigned i;
	int pid = (int)getpid();

	for (i = 0; i < sizeof(ips) / sizeof(ips[0]); i++)
		if (!access(ips[i], X_OK))
			ip_bin = ips[i];
	snprintf(ns_srv, sizeof(ns_srv), "pnb-srv-%d", pid);
	snprintf(ns_dst, sizeof(ns_dst), "pnb-dst-%d", pid);
	snprintf(veth_srv, sizeof(veth_srv), "pnbs%d", pid % 10000000);
	snprintf(veth_dst, sizeof(veth_dst), "pnbd%d", pid % 10000000);
	snprintf(delay, sizeof(delay), "%lluus", NB_DELAY_NS / 1000);
	{
		char *ip = (char *)ip_bin;
		char *const steps[][16] = {
			{ ip, "netns", "add", ns_srv, NULL },
			{ ip, "netns", "add", ns_dst, NULL },
			{ ip, "link", "add", veth_srv, "type", "veth", "peer", "name", veth_dst, NULL },
			{ ip, "link", "set", veth_srv, "netns", ns_srv, NULL },
			{ ip, "link", "set", veth_dst, "netns", ns_dst, NULL },
			{ ip, "-n", ns_srv, "addr", "add", "10.213.7.1/24", "dev", veth_srv, NULL },
			{ ip, "-n", ns_dst, "addr", "add", "10.213.7.2/24", "dev", veth_dst, NULL },
			{ ip, "-n", ns_srv, "link", "set", veth_srv, "up", NULL },
			{ ip, "-n", ns_dst, "link", "set", veth_dst, "up", NULL },
			{ ip, "-n", ns_srv, "link", "set", "lo", "up", NULL },
			{ ip, "-n", ns_dst, "link", "set", "lo", "up", NULL },
			{ ip, "netns", "exec", ns_srv, "tc", "qdisc", "add", "dev", veth_srv, "root",
			  "netem", "delay", delay, NULL },
			{ ip, "netns", "exec", ns_dst, "tc", "qdisc", "add", "dev", veth_dst, "root",
			  "netem", "delay", delay, NULL },
		};

		for (i = 0; i < sizeof(steps) / sizeof(steps[0]); i++) {
			int rc = run_cmd(steps[i], err, sizeof(err));

			if (i == 0 && rc == 0)
				ns_made = 1;
			if (rc != 0) {
				unsigned k;
				size_t off;

				off = (size_t)snprintf(why, whylen, "`");
				for (k = 0; steps[i][k] && off < whylen; k++)
					off += (size_t)snprintf(why + off, whylen - off, "%s%s",
								k ? " " : "", steps[i][k]);
				if (off < whylen)
					snprintf(why + off, whylen - off, "` failed: %s",
						 err[0] ? err : "(no message)");
				/* the veth may exist outside the namespaces if a move failed */
				ns_made = 1;
				ns_teardown();
				return -1;
			}
		}
	}
	return 0;
}

/* In ns_srv: the page server and the raw peer on 10.213.7.1, run by a forked child until the
 * parent closes ctl. Writes "RAWPORT SRVPORT\n" on portw. */
static void ns_child_main(int portw, int ctl)
{
	struct pagein_server_config sc;
	struct pagein_server *srv;
	struct rawsrv rs;
	char path[64], line[32];
	int nsfd, ret;
	unsigned i;

	/* the namespaces are the parent's to remove */
	ns_made = 0;
	signal(SIGALRM, SIG_DFL);
	signal(SIGTERM, SIG_DFL);
	signal(SIGINT, SIG_DFL);
	prctl(PR_SET_PDEATHSIG, SIGKILL);
	snprintf(path, sizeof(path), "/run/netns/%s", ns_srv);
	nsfd = open(path, O_RDONLY | O_CLOEXEC);
	if (nsfd < 0 || setns(nsfd, CLONE_NEWNET))
		_exit(2);
	pagein_server_config_init(&sc);
	sc.listen = "10.213.7.1:0";
	sc.compress = false;
	sc.log = tool_log;
	if (pagein_server_new(&sc, &srv))
		_exit(3);
	for (i = 0; i < 2; i++)
		if (pagein_server_add_memory(srv, net_image_regs[i].gpa, net_image_regs[i].size,
					     net_image + (i ? net_image_regs[0].size : 0)))
			_exit(4);
	ret = pagein_server_start(srv);
	if (ret)
		_exit(5);
	rawsrv_start(&rs, "10.213.7.1");
	snprintf(line, sizeof(line), "%d %d\n", rs.port, pagein_server_port(srv));
	if (write(portw, line, strlen(line)) < 0)
		_exit(6);
	while (read(ctl, line, sizeof(line)) > 0)
		;
	rawsrv_stop(&rs);
	pagein_server_stop(srv);
	pagein_server_free(srv);
	_exit(0);
}

/* Fork the server child into ns_srv and fill l's addresses. Returns the parent's end of the
 * control pipe (close it to stop the child), or -1. */
int ns_child_start(struct link *l)
{
	int portp[2], ctlp[2], rawport = 0, srvport = 0;
	char line[64] = "";
	ssize_t n;

	if (pipe2(portp, O_CLOEXEC) || pipe2(ctlp, O_CLOEXEC))
		die("pipe2: %s", strerror(errno));
	fflush(NULL);
	ns_child = fork();
	if (ns_child < 0)
		die("fork: %s", strerror(errno));
	if (ns_child == 0) {
		close(portp[0]);
		close(ctlp[1]);
		ns_child_main(portp[1], ctlp[0]);
	}
	close(portp[1]);
	close(ctlp[0]);
	n = read(portp[0], line, sizeof(line) - 1);
	close(portp[0]);
	if (n <= 0 || sscanf(line, "%d %d", &rawport, &srvport) != 2) {
		close(ctlp[1]);
		return -1;
	}
	snprintf(l->raw_addr, sizeof(l->raw_addr), "10.213.7.1:%d", rawport);
	snprintf(l->srv_addr, sizeof(l->srv_addr), "10.213.7.1:%d", srvport);
	return ctlp[1];
}
