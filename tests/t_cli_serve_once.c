// SPDX-License-Identifier: MIT
/*
 * t_cli_serve_once.c - `pagein serve --once` exits by itself, 0, once its first destination has
 * every page; the destination verifies. A destination arriving after that is refused with a
 * clear error (the server drains), never served half.
 */
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include "helpers.h"

#define WAIT_MS 20000

static const char *bin;
static char sout[1 << 14], serr[1 << 16], rout[1 << 16], rerr[1 << 16];

int main(int argc, char **argv)
{
	char dir[] = "/tmp/t_cli_once.XXXXXX", pfile[96], addr[64];
	char *sargs[] = { "pagein", "serve", "--generate", "16M", "--port-file", pfile, "--once",
			  NULL };
	char *rargs[] = { "pagein", "restore", "--from", addr, "-q", NULL };
	int so, se, port, rc, st;
	uint64_t t0;
	pid_t srv;

	bin = t_pagein_bin(argv[0]);
	t_require_uffd();
	T_ASSERT(mkdtemp(dir));
	snprintf(pfile, sizeof(pfile), "%s/port", dir);
	srv = t_spawn(bin, sargs, &so, &se, NULL);
	T_ASSERT(srv > 0);
	port = t_read_port_file(pfile, WAIT_MS);
	if (!port) {
		kill(srv, SIGKILL);
		t_collect(srv, so, sout, sizeof(sout), se, serr, sizeof(serr), 5000);
		fprintf(stderr, "serve: %s%s\n", sout, serr);
	}
	T_ASSERT(port > 0);
	snprintf(addr, sizeof(addr), "127.0.0.1:%d", port);
	st = t_run_status(bin, rargs, rout, sizeof(rout), rerr, sizeof(rerr), 60000, NULL);
	rc = t_exit_code(st);
	if (rc == 71 && strstr(rerr, "userfaultfd")) {
		kill(srv, SIGKILL);
		waitpid(srv, NULL, 0);
		t_skip("SKIP: userfaultfd not permitted here: %s", rerr);
	}
	T_CHECK(rc == 0 && strstr(rout, "every region verified"), "restore exit %d: %s%s", rc,
		rerr, rout);
	/* the server ends by itself: no signal is sent */
	t0 = t_ms_now();
	st = t_collect(srv, so, sout, sizeof(sout), se, serr, sizeof(serr), WAIT_MS);
	rc = t_exit_code(st);
	T_CHECK(rc == 0, "serve --once: exit %d (status %d) after %llu ms, want 0 by itself:\n%s%s",
		rc, st, (unsigned long long)(t_ms_now() - t0), sout, serr);
	T_CHECK(strstr(sout, "served 1 sessions") != NULL, "serve --once summary: %s", sout);
	printf("  --once: the server exited %d %llu ms after its destination verified\n", rc,
	       (unsigned long long)(t_ms_now() - t0));
	/* nothing listens any more: a late destination finds no server */
	st = t_run_status(bin, rargs, rout, sizeof(rout), rerr, sizeof(rerr), 30000, NULL);
	rc = t_exit_code(st);
	T_CHECK(rc == 69, "a destination after --once ended: exit %d, want 69: %s", rc, rerr);
	unlink(pfile);
	rmdir(dir);
	if (t_failures)
		return 1;
	t_pass("t_cli_serve_once");
}
