// SPDX-License-Identifier: MIT
/*
 * t_net_stream_lost.c - an idle destination (nothing faults: only the bulk stream brings pages)
 * learns in bounded time that its stream failed, whatever the server does: a real page server in
 * a child process that is stopped (SIGSTOP), stopped cleanly (SIGTERM: pagein_server_free) or
 * killed; and a scripted server that closes cleanly between frames without END, or stalls in the
 * middle of a frame. Before the fix, the stream of each waited for ever. Last, the real commands:
 * `pagein restore --from ... -w none` against a `pagein serve` that is stopped ends with an error.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <fcntl.h>
#include <time.h>
#include <unistd.h>

#include "helpers.h"
#include "pagein-net.h"
#include "net/wire.h"

#define SIZE (256ull << 20)   /* the real server's image: far more than the sockets buffer */
#define FAKE_SIZE (64ull << 20)
#define TIMEOUT_MS 1000       /* the destination's fault time-out: the bulk read time-out */
#define BOUND_MS 15000        /* the failure must be known by then */

enum scenario { SC_STOP, SC_TERM, SC_KILL, SC_FAKE_CLOSE, SC_FAKE_MIDFRAME };

static const char *const names[] = { "server SIGSTOP", "server SIGTERM (clean stop)",
				     "server SIGKILL", "clean close without END",
				     "stall in the middle of a frame" };

static uint64_t ms_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* The real page server, in this (child) process: serve SIZE bytes, tell the parent the port,
 * then wait for SIGTERM and stop cleanly. */
static void __attribute__((noreturn)) real_server(int wfd)
{
	struct pagein_server_config cfg;
	struct pagein_server *srv;
	sigset_t set;
	uint8_t *mem;
	int port, sig;

	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	pthread_sigmask(SIG_BLOCK, &set, NULL); /* before the server's threads: they inherit it */
	mem = malloc(SIZE);
	if (!mem)
		_exit(2);
	t_fill(mem, 0, SIZE, 5, 0);
	pagein_server_config_init(&cfg);
	cfg.compress = false;
	if (pagein_server_new(&cfg, &srv) || pagein_server_add_memory(srv, 0, SIZE, mem) ||
	    pagein_server_start(srv))
		_exit(2);
	port = pagein_server_port(srv);
	if (write(wfd, &port, sizeof(port)) != sizeof(port))
		_exit(2);
	sigwait(&set, &sig);
	pagein_server_free(srv);
	_exit(0);
}

static int read_exact(int fd, void *buf, size_t n)
{
	size_t got = 0;
	ssize_t r;

	while (got < n) {
		r = read(fd, (uint8_t *)buf + got, n - got);
		if (r <= 0)
			return -1;
		got += (size_t)r;
	}
	return 0;
}

/* Accept one connection, read its HELLO, answer WELCOME (one region). Returns fd and role. */
static int fake_accept(int lfd, uint32_t *role)
{
	struct {
		struct pn_hdr h;
		struct pn_hello b;
	} __attribute__((packed)) hi;
	struct {
		struct pn_hdr h;
		struct pn_welcome w;
		struct pn_region r;
	} __attribute__((packed)) wm;
	int fd = accept(lfd, NULL, NULL);

	if (fd < 0 || read_exact(fd, &hi, sizeof(hi)))
		_exit(3);
	*role = hi.b.role;
	memset(&wm, 0, sizeof(wm));
	wm.h.len = sizeof(wm.w) + sizeof(wm.r);
	wm.h.type = PN_WELCOME;
	memcpy(wm.w.magic, PN_MAGIC, 8);
	wm.w.version = PN_VERSION;
	wm.w.page_size = PN_PAGE;
	wm.w.session = 42;
	wm.w.nregions = 1;
	wm.r.size = FAKE_SIZE;
	wm.r.digest = 1;
	if (write(fd, &wm, sizeof(wm)) != (ssize_t)sizeof(wm))
		_exit(3);
	return fd;
}

/* A scripted server: handshake the urgent and the bulk connection, stream 8 frames of zero
 * pages on the bulk one, then close it cleanly (no END) or stall in the middle of a frame. */
static void __attribute__((noreturn)) fake_server(int wfd, enum scenario sc)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t alen = sizeof(a);
	struct {
		struct pn_hdr h;
		struct pn_pages p;
		uint32_t desc[64];
	} __attribute__((packed)) f;
	uint32_t role;
	int lfd, fd, ufd = -1, bfd = -1, port, i;

	lfd = socket(AF_INET, SOCK_STREAM, 0);
	if (lfd < 0 || bind(lfd, (struct sockaddr *)&a, sizeof(a)) || listen(lfd, 4) ||
	    getsockname(lfd, (struct sockaddr *)&a, &alen))
		_exit(3);
	port = ntohs(a.sin_port);
	if (write(wfd, &port, sizeof(port)) != sizeof(port))
		_exit(3);
	for (i = 0; i < 2; i++) {
		fd = fake_accept(lfd, &role);
		if (role == PN_ROLE_BULK)
			bfd = fd;
		else
			ufd = fd;
	}
	if (ufd < 0 || bfd < 0)
		_exit(3);
	for (i = 0; i < 8; i++) {
		memset(&f, 0, sizeof(f));
		f.h.len = sizeof(f.p) + sizeof(f.desc);
		f.h.type = PN_PAGES;
		f.p.gpa = (uint64_t)i * 64 * PN_PAGE;
		f.p.npages = 64;
		for (unsigned k = 0; k < 64; k++)
			f.desc[k] = PN_PG_ZERO;
		if (write(bfd, &f, sizeof(f)) != (ssize_t)sizeof(f))
			_exit(3);
	}
	if (sc == SC_FAKE_CLOSE) {
		close(bfd); /* a FIN between frames, no END */
	} else {
		/* a header promising a body, and only part of it */
		memset(&f, 0, sizeof(f));
		f.h.len = sizeof(f.p) + sizeof(f.desc);
		f.h.type = PN_PAGES;
		f.p.gpa = 8ull * 64 * PN_PAGE;
		f.p.npages = 64;
		if (write(bfd, &f, sizeof(f.h) + 20) != (ssize_t)(sizeof(f.h) + 20))
			_exit(3);
	}
	for (;;)
		pause(); /* the parent kills us */
}

/* Start bin with args, its stdout and stderr into *out_fd (when out_fd), else to /dev/null. */
static pid_t spawn(const char *bin, char *const args[], int *out_fd)
{
	int p[2] = { -1, -1 };
	pid_t pid;

	if (out_fd)
		T_ASSERT(pipe(p) == 0);
	pid = fork();
	T_ASSERT(pid >= 0);
	if (pid == 0) {
		int fd = out_fd ? p[1] : open("/dev/null", O_WRONLY);

		prctl(PR_SET_PDEATHSIG, SIGKILL);
		dup2(fd, 1);
		dup2(fd, 2);
		execv(bin, args);
		_exit(127);
	}
	if (out_fd) {
		close(p[1]);
		*out_fd = p[0];
	}
	return pid;
}

/* Append what fd has (waiting up to ms) to buf; false on EOF or time-out. */
static bool read_more(int fd, char *buf, size_t size, int ms)
{
	struct pollfd pfd = { .fd = fd, .events = POLLIN };
	size_t len = strlen(buf);
	ssize_t r;

	if (poll(&pfd, 1, ms) != 1)
		return false;
	r = read(fd, buf + len, size - 1 - len);
	if (r <= 0)
		return false;
	buf[len + (size_t)r] = 0;
	return true;
}

/* The real commands: restore with an idle guest from a server that gets SIGSTOP. */
static void run_cli(const char *bin)
{
	char pf[] = "/tmp/t_net_stream_lost-XXXXXX", from[64], out[1 << 16] = "", ports[16] = "";
	char *serve[] = { (char *)bin, "serve", "--generate", "512M", "--no-compress",
			  "--port-file", pf, NULL };
	char *restore[] = { (char *)bin, "restore", "--from", from, "-w", "none", "--timeout",
			    "1000", "--pause-limit", "1500", NULL };
	uint64_t t0, waited;
	pid_t srv, rst;
	int fd, i, st;

	fd = mkstemp(pf);
	T_ASSERT(fd >= 0);
	close(fd);
	srv = spawn(bin, serve, NULL);
	for (i = 0; i < 300 && !ports[0]; i++) {
		fd = open(pf, O_RDONLY);
		if (fd >= 0) {
			if (read(fd, ports, sizeof(ports) - 1) <= 0)
				ports[0] = 0;
			close(fd);
		}
		if (!ports[0])
			usleep(50000);
	}
	unlink(pf);
	T_ASSERT(atoi(ports) > 0);
	snprintf(from, sizeof(from), "127.0.0.1:%d", atoi(ports));
	rst = spawn(bin, restore, &fd);
	/* the stream is on its way once restore says what it restores: then stop the server */
	for (i = 0; i < 100 && !strstr(out, "restoring"); i++)
		read_more(fd, out, sizeof(out), 100);
	T_ASSERT(strstr(out, "restoring"));
	usleep(100000);
	kill(srv, SIGSTOP);
	t0 = ms_now();
	while (ms_now() - t0 < BOUND_MS && read_more(fd, out, sizeof(out), BOUND_MS))
		;
	waited = ms_now() - t0;
	close(fd);
	/* its output ended: it exits now (a moment to be reaped), or it still waits */
	for (i = 0; i < 200 && waitpid(rst, &st, WNOHANG) != rst; i++)
		usleep(10000);
	if (i == 200) {
		kill(rst, SIGKILL);
		waitpid(rst, &st, 0);
		fprintf(stderr, "%s\nFAIL: pagein restore still waits %llu ms after the server "
			"stopped\n", out, (unsigned long long)waited);
		exit(1);
	}
	fprintf(stderr, "pagein restore, server SIGSTOP: exit %d after %llu ms\n",
		WIFEXITED(st) ? WEXITSTATUS(st) : -1, (unsigned long long)waited);
	T_ASSERT(WIFEXITED(st) && WEXITSTATUS(st) != 0);
	T_ASSERT(!strstr(out, "every region verified"));
	T_ASSERT(strstr(out, "bulk stream from 127.0.0.1"));
	kill(srv, SIGCONT);
	kill(srv, SIGKILL);
	T_ASSERT(waitpid(srv, &st, 0) == srv);
}

static void run(enum scenario sc)
{
	struct pagein_region_desc regs[PN_MAX_REGIONS];
	struct pagein_net_config nc;
	struct pagein_net_stats ns;
	struct pagein_config cfg;
	struct pagein_space *s;
	struct pagein_source *src;
	char addr[64];
	uint8_t *host;
	uint64_t t0, waited;
	bool fake = sc == SC_FAKE_CLOSE || sc == SC_FAKE_MIDFRAME;
	int pfd[2], port, n, i, st, status = -EINPROGRESS;
	pid_t pid;

	T_ASSERT(pipe(pfd) == 0);
	pid = fork();
	T_ASSERT(pid >= 0);
	if (pid == 0) {
		prctl(PR_SET_PDEATHSIG, SIGKILL); /* a failing test leaves no server behind */
		close(pfd[0]);
		if (fake)
			fake_server(pfd[1], sc);
		real_server(pfd[1]);
	}
	close(pfd[1]);
	T_ASSERT(read_exact(pfd[0], &port, sizeof(port)) == 0);
	close(pfd[0]);
	snprintf(addr, sizeof(addr), "127.0.0.1:%d", port);

	pagein_net_config_init(&nc);
	nc.addr = addr;
	nc.compress = false;
	nc.log = t_log;
	/* pause on (the default), briefly: the failure comes at the pause limit */
	nc.silence_ms = 300;
	nc.pause_limit_ms = 1500;
	T_EQ(pagein_source_net_new(&nc, &src), 0);
	n = pagein_net_regions(src, regs, PN_MAX_REGIONS);
	T_EQ(n, 1);
	pagein_config_init(&cfg);
	cfg.frontend = PAGEIN_FRONTEND_HANDLER;
	cfg.timeout_ms = TIMEOUT_MS;
	cfg.log = t_log;
	T_EQ(pagein_space_new(&cfg, &s), 0);
	T_EQ(pagein_region_add(s, regs[0].gpa, regs[0].size, PAGEIN_BACKING_ANON, (void **)&host),
	     0);
	T_EQ(pagein_space_set_source(s, src), 0);
	T_EQ(pagein_space_start(s), 0);
	T_EQ(pagein_net_stream_start(src, s), 0);
	if (sc == SC_STOP)
		kill(pid, SIGSTOP);
	else if (sc == SC_TERM)
		kill(pid, SIGTERM);
	else if (sc == SC_KILL)
		kill(pid, SIGKILL);

	/* nothing faults: only the stream's end, or its failure, can end this */
	t0 = ms_now();
	for (i = 0; i < BOUND_MS / 10; i++) {
		status = pagein_net_stream_status(src);
		if (status != -EINPROGRESS)
			break;
		usleep(10000);
	}
	waited = ms_now() - t0;
	pagein_net_stats_get(src, &ns);
	fprintf(stderr, "%s: stream status %d (%s) after %llu ms; %llu pages streamed, "
		"%llu connection errors\n", names[sc], status, status < 0 ? strerror(-status) : "",
		(unsigned long long)waited, (unsigned long long)ns.pages_bulk,
		(unsigned long long)ns.errors);
	/* the server went away before every page was sent: that is a failure, known in time */
	T_ASSERT(status != -EINPROGRESS);
	T_ASSERT(status < 0);
	T_ASSERT(!ns.stream_done);
	T_ASSERT(ns.errors >= 1);
	T_ASSERT(ns.pages_bulk < regs[0].size / PN_PAGE);
	/* a wait for it says the same, at once */
	T_EQ(pagein_net_stream_wait(src, 100), status);

	pagein_net_stream_stop(src);
	T_EQ(pagein_net_stream_status(src), -ENOTCONN);
	pagein_space_free(s);
	pagein_source_free(src);
	if (sc == SC_STOP)
		kill(pid, SIGCONT);
	kill(pid, SIGKILL);
	T_ASSERT(waitpid(pid, &st, 0) == pid);
}

int main(int argc, char **argv)
{
	const char *bin = t_pagein_bin(argv[0]);
	enum scenario sc;

	(void)argc;
	alarm(120);
	t_require_uffd();
	for (sc = SC_STOP; sc <= SC_FAKE_MIDFRAME; sc++)
		run(sc);
	run_cli(bin);
	t_pass("t_net_stream_lost");
}
