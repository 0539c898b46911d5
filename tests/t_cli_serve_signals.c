// SPDX-License-Identifier: MIT
/*
 * t_cli_serve_signals.c - `pagein serve` on SIGTERM drains: it takes no new destination but lets
 * the one mid-migration finish (the restore verifies and exits 0, the server then exits 0 and
 * said it was draining). A second signal forces the stop: the server exits 75 and names the
 * session it cut (id, peer, pages left).
 */
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include "helpers.h"

#define RUN_MS 60000
#define WAIT_MS 20000

static const char *bin;
static char sout[1 << 14], serr[1 << 16], rout[1 << 16], rerr[1 << 16];

static void run(const char *dir, bool force)
{
	char pfile[96], addr[64];
	char *sargs[] = { "pagein", "serve", "--generate", "32M", "--port-file", pfile, NULL };
	/* one page per fault, one thread, no stream: thousands of round trips, so the migration
	 * is still under way when the signal comes */
	char *rargs[] = { "pagein", "restore", "--from", addr, "--no-fill", "--around", "1", "-t",
			  "1", "-q", "-v", NULL };
	int so, se, ro, re, st, rst, rc, rrc;
	size_t slen = 0, rlen = 0;
	pid_t srv, rst_pid;

	snprintf(pfile, sizeof(pfile), "%s/port", dir);
	unlink(pfile);
	srv = t_serve_start(bin, sargs, pfile, &so, &se, addr, sizeof(addr), WAIT_MS);
	rst_pid = t_restore_connected(bin, rargs, &ro, &re, rerr, sizeof(rerr), &rlen, WAIT_MS);
	usleep(100000);
	kill(srv, SIGTERM);
	T_CHECK(t_wait_text(se, serr, sizeof(serr), &slen, "draining", WAIT_MS),
		"the server did not say it is draining: %s", serr);
	if (force)
		kill(srv, SIGTERM);
	rst = t_collect(rst_pid, ro, rout, sizeof(rout), re, rerr + rlen, sizeof(rerr) - rlen,
			RUN_MS);
	rrc = t_exit_code(rst);
	if (rrc == 71 && strstr(rerr, "userfaultfd")) {
		kill(srv, SIGKILL);
		waitpid(srv, NULL, 0);
		t_skip("SKIP: userfaultfd not permitted here: %s", rerr);
	}
	st = t_collect(srv, so, sout, sizeof(sout), se, serr + slen, sizeof(serr) - slen, RUN_MS);
	rc = t_exit_code(st);
	if (!force) {
		T_CHECK(rrc == 0, "drain: the destination exit %d, want 0 (verified):\n%s%s", rrc,
			rerr, rout);
		T_CHECK(strstr(rout, "every region verified") != NULL, "drain: not verified: %s",
			rout);
		T_CHECK(rc == 0, "drain: the server exit %d, want 0:\n%s", rc, serr);
		printf("  drain: destination verified, server exit %d\n", rc);
	} else {
		T_CHECK(rc == 75, "forced: the server exit %d, want 75 (sessions cut):\n%s", rc,
			serr);
		T_CHECK(strstr(serr, "cut session 0x") && strstr(serr, "127.0.0.1") &&
			strstr(serr, "pages left"),
			"forced: the cut session is not named (id, peer, pages left):\n%s", serr);
		T_CHECK(rrc != 0, "forced: the destination exit 0 though its server was stopped");
		printf("  forced: server exit %d, destination exit %d\n", rc, rrc);
	}
}

int main(int argc, char **argv)
{
	char dir[] = "/tmp/t_cli_sig.XXXXXX";

	bin = t_pagein_bin(argv[0]);
	t_require_uffd();
	T_ASSERT(mkdtemp(dir));
	run(dir, false);
	memset(serr, 0, sizeof(serr));
	memset(rerr, 0, sizeof(rerr));
	run(dir, true);
	rmdir(dir);
	if (t_failures)
		return 1;
	t_pass("t_cli_serve_signals");
}
