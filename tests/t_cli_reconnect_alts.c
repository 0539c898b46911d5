// SPDX-License-Identifier: MIT
/*
 * t_cli_reconnect_alts.c - alternate servers on the command line: `pagein restore --from A
 * --reconnect B --reconnect C` loses A (SIGKILL) mid-migration; recovery tries the list in turn
 * (A and B refuse: nothing listens there) and resumes from C, a server started from the same
 * image, then verifies every region. Also: --reconnect beyond the limit is a usage error.
 */
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "helpers.h"

#define WAIT_MS 20000

static const char *bin;
static char sout[1 << 14], serr[1 << 16], rout[1 << 16], rerr[1 << 16];

/* A loopback port nothing listens on (bound, then closed: connects to it are refused). */
static int dead_port(void)
{
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t len = sizeof(sa);
	int fd = socket(AF_INET, SOCK_STREAM, 0);

	T_ASSERT(fd >= 0);
	T_ASSERT(bind(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0);
	T_ASSERT(getsockname(fd, (struct sockaddr *)&sa, &len) == 0);
	close(fd);
	return ntohs(sa.sin_port);
}

int main(int argc, char **argv)
{
	char dir[] = "/tmp/t_cli_alts.XXXXXX", p1[96], p2[96], addr[64], dead[64], addr2[64];
	/* the first server is slow (4 MiB/s), so it dies with most of the image unsent */
	char *s1args[] = { "pagein", "serve", "--generate", "32M", "--port-file", p1,
			   "--max-bandwidth", "4M", NULL };
	char *s2args[] = { "pagein", "serve", "--generate", "32M", "--port-file", p2, NULL };
	char *rargs[] = { "pagein", "restore", "--from", addr, "-w", "none", "--pause-limit",
			  "30000", "--reconnect", dead, "--reconnect", addr2, "-v", NULL };
	char *many[] = { "pagein", "restore", "--from", "127.0.0.1:1", "--reconnect", "127.0.0.1:2",
			 "--reconnect", "127.0.0.1:3", "--reconnect", "127.0.0.1:4", "--reconnect",
			 "127.0.0.1:5", "--reconnect", "127.0.0.1:6", "--reconnect", "127.0.0.1:7",
			 "--reconnect", "127.0.0.1:8", "--reconnect", "127.0.0.1:9", NULL };
	int so1, se1, so2, se2, ro, re, rc;
	size_t rlen = 0;
	pid_t s1, s2, rst;

	bin = t_pagein_bin(argv[0]);
	/* eight alternates: one more than --from leaves room for */
	rc = t_exit_code(t_run_status(bin, many, rout, sizeof(rout), rerr, sizeof(rerr), 10000,
				      NULL));
	T_CHECK(rc == 2 && strstr(rerr, "--reconnect"), "8 x --reconnect: exit %d, want 2: %s", rc,
		rerr);
	t_require_uffd();
	T_ASSERT(mkdtemp(dir));
	snprintf(p1, sizeof(p1), "%s/p1", dir);
	snprintf(p2, sizeof(p2), "%s/p2", dir);
	s1 = t_serve_start(bin, s1args, p1, &so1, &se1, addr, sizeof(addr), WAIT_MS);
	s2 = t_serve_start(bin, s2args, p2, &so2, &se2, addr2, sizeof(addr2), WAIT_MS);
	snprintf(dead, sizeof(dead), "127.0.0.1:%d", dead_port());
	rst = t_restore_connected(bin, rargs, &ro, &re, rerr, sizeof(rerr), &rlen, WAIT_MS);
	usleep(700000);
	kill(s1, SIGKILL);
	t_collect(s1, so1, sout, sizeof(sout), se1, serr, sizeof(serr), 5000);
	rc = t_exit_code(t_collect(rst, ro, rout, sizeof(rout), re, rerr + rlen,
				   sizeof(rerr) - rlen, 60000));
	if (rc == 71 && strstr(rerr, "userfaultfd")) {
		kill(s2, SIGKILL);
		waitpid(s2, NULL, 0);
		t_skip("SKIP: userfaultfd not permitted here: %s", rerr);
	}
	T_CHECK(rc == 0 && strstr(rout, "every region verified"), "restore exit %d:\n%s%s", rc,
		rerr, rout);
	/* it went round the list: the dead alternate was tried, and the second server served */
	T_CHECK(strstr(rerr, dead) != NULL, "the dead alternate %s was never tried:\n%s", dead, rerr);
	T_CHECK(strstr(rerr, addr2) != NULL, "no word of the second server %s:\n%s", addr2, rerr);
	kill(s2, SIGTERM);
	rc = t_exit_code(t_collect(s2, so2, sout, sizeof(sout), se2, serr, sizeof(serr), 30000));
	T_CHECK(rc == 0, "second server exit %d: %s", rc, serr);
	unlink(p1);
	unlink(p2);
	rmdir(dir);
	if (t_failures)
		return 1;
	t_pass("t_cli_reconnect_alts");
}
