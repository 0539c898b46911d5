// SPDX-License-Identifier: MIT
/*
 * cmd-demo.c - `pagein demo` (what `make demo` runs): a live post-copy migration over loopback. A
 * child process serves a generated guest image (pagein_server_*); this process migrates it into
 * a destination with two worker threads touching memory while the bulk stream brings the rest,
 * shows progress, verifies every byte against the server's digests, then stops the server.
 */
#include <errno.h>
#include <getopt.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/sysinfo.h>
#include <sys/wait.h>
#include <unistd.h>

#include "pagein-net.h"
#include "tools.h"

int parse_restore_opt(struct restore_opts *o, int c, const char *arg);

static pid_t server_pid = -1;

/* Stop and reap the server child; runs on every way out (atexit covers die()). */
static void server_reap(void)
{
	if (server_pid <= 0)
		return;
	kill(server_pid, SIGKILL);
	waitpid(server_pid, NULL, 0);
	server_pid = -1;
}

/* The child: serve the image on a free loopback port, report the port (0 on failure) through
 * fd, then serve until killed. Never returns. */
static void __attribute__((noreturn)) serve_child(int fd, uint64_t size)
{
	struct pagein_server_config cfg;
	struct pagein_region_desc regs[2];
	struct pagein_server *srv;
	uint64_t *img;
	int port = 0, ret = -ENOMEM, i;

	/* if the destination dies (even by SIGBUS), the server goes with it */
	prctl(PR_SET_PDEATHSIG, SIGKILL);
	if (getppid() == 1)
		_exit(1);
	img = make_image(&size, 42, 16, regs);
	if (!img)
		goto report;
	pagein_server_config_init(&cfg);
	cfg.log = tool_log;
	ret = pagein_server_new(&cfg, &srv);
	for (i = 0; ret == 0 && i < 2; i++)
		ret = pagein_server_add_memory(srv, regs[i].gpa, regs[i].size,
					       (uint8_t *)img + (i ? regs[0].size : 0));
	if (ret == 0)
		ret = pagein_server_start(srv);
	if (ret == 0)
		port = pagein_server_port(srv);
report:
	if (port <= 0)
		pr_err("the page server could not start: %s", strerror(ret < 0 ? -ret : EINVAL));
	if (write(fd, &port, sizeof(port)) != sizeof(port))
		_exit(1);
	close(fd);
	if (port <= 0)
		_exit(1);
	for (;;)
		pause();
}

/* Start the server child; returns its port (dies on failure). */
static int server_start(uint64_t size)
{
	struct pollfd pfd;
	int p[2], port = 0;

	if (pipe(p) < 0)
		die_code(EXIT_LOCAL, "pipe: %s", strerror(errno));
	fflush(NULL);
	server_pid = fork();
	if (server_pid < 0)
		die_code(EXIT_LOCAL, "fork: %s", strerror(errno));
	if (server_pid == 0) {
		close(p[0]);
		serve_child(p[1], size);
	}
	close(p[1]);
	atexit(server_reap);
	/* generating the image takes about a second per GiB */
	pfd = (struct pollfd){ .fd = p[0], .events = POLLIN };
	if (poll(&pfd, 1, 120000) != 1 || read(p[0], &port, sizeof(port)) != sizeof(port) ||
	    port <= 0)
		die_code(EXIT_LOCAL, "the page server did not start (see above)");
	close(p[0]);
	return port;
}

int cmd_demo(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "size", required_argument, NULL, 'b' },
		{ "frontend", required_argument, NULL, 'f' },
		{ "backing", required_argument, NULL, 's' },
		{ "workload", required_argument, NULL, 'w' },
		{ "threads", required_argument, NULL, 't' },
		{ "readers", required_argument, NULL, 'r' },
		{ "no-urgent", no_argument, NULL, 'U' },
		{ "bulk", required_argument, NULL, 'B' },
		{ "no-compress", no_argument, NULL, 'Z' },
		{ "no-fill", no_argument, NULL, 'F' },
		{ "verbose", no_argument, NULL, 'v' },
		{ "json", no_argument, NULL, 'J' },
		{ "json-interval", required_argument, NULL, 'I' },
		{ "quiet", no_argument, NULL, 'q' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	char addr[64];
	struct restore_opts o;
	struct sysinfo si;
	uint64_t size = 1ull << 30;
	int c, port, ret;

	restore_opts_init(&o);
	/* 1 GiB unless memory is short: the server's image and the destination's copy, and room */
	if (sysinfo(&si) == 0 && (uint64_t)si.freeram * si.mem_unit < 4 * size)
		size = ((uint64_t)si.freeram * si.mem_unit / 4) & ~((4ull << 20) - 1);
	while ((c = getopt_long(argc, argv, "b:f:s:w:t:r:qvh", longopts, NULL)) != -1) {
		if (c == 'b') {
			size = opt_size("--size", optarg, 4u << 20, 1ull << 40);
		} else if (c == 'h') {
			printf("usage: pagein demo [--size SIZE] [--frontend self|handler] "
			       "[--backing anon|shmem|hugetlb] [--workload seq|rand|hotcold|none]\n"
			       "                  [--threads N] [--readers N] [--no-urgent] [--bulk N] "
			       "[--no-compress] [--no-fill]\n"
			       "                  [--json [--json-interval SEC]] [--quiet] [--verbose]\n"
			       "A live post-copy migration over loopback: a child serves a generated guest,\n"
			       "this process migrates it in while threads touch it, then verifies every byte.\n"
			       "Exit codes as pagein restore (pagein restore --help).\n");
			return EXIT_OK;
		} else if (parse_restore_opt(&o, c, optarg) < 0) {
			return EXIT_USAGE;
		}
	}
	if (optind < argc)
		die_code(EXIT_USAGE, "demo takes no operand ('%s')", argv[optind]);
	if (o.json_interval > 0 && !o.json)
		die_code(EXIT_USAGE, "--json-interval needs --json");
	size = (size + (4u << 20) - 1) & ~((4ull << 20) - 1);
	fprintf(stderr, "pagein demo: post-copy live migration of a generated %llu MiB guest over "
		"loopback\n", (unsigned long long)(size >> 20));
	port = server_start(size);
	snprintf(addr, sizeof(addr), "127.0.0.1:%d", port);
	fprintf(stderr, "page server: pid %d serving on %s; the destination runs %u worker threads\n",
		(int)server_pid, addr, o.threads);
	o.from_addr = addr;
	ret = run_restore(&o);
	server_reap();
	fprintf(stderr, "page server stopped\n");
	return ret;
}
