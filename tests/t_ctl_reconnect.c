// SPDX-License-Identifier: MIT
/*
 * t_ctl_reconnect.c - pointing a running destination at a new address: `pagein restore` with a
 * pause limit loses its server (SIGKILL) mid-migration and pauses (its status says PAUSED);
 * `pagein ctl PATH reconnect HOST:PORT` sends it to a second server started from the same image
 * on another port, where it resumes and verifies every region.
 */
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include "helpers.h"

#define WAIT_MS 20000

static const char *bin;
static char sout[1 << 14], serr[1 << 16], rout[1 << 16], rerr[1 << 16], reply[1 << 16];

int main(int argc, char **argv)
{
	char dir[] = "/tmp/t_ctl_rc.XXXXXX", p1[96], p2[96], rsock[96], rfile[96], addr[64],
	     addr2[64];
	/* the first server is slow (4 MiB/s), so it dies with most of the image unsent */
	char *s1args[] = { "pagein", "serve", "--generate", "32M", "--port-file", p1,
			   "--max-bandwidth", "4M", NULL };
	char *s2args[] = { "pagein", "serve", "--generate", "32M", "--port-file", p2, NULL };
	char *rargs[] = { "pagein", "restore", "--from", addr, "-w", "none", "--pause-limit",
			  "30000", "-q", "-v", "--control", rsock, "--status-file", rfile, NULL };
	char *ctl[] = { "pagein", "ctl", rsock, "reconnect", addr2, NULL };
	static struct t_json_object o;
	int so1, se1, so2, se2, ro, re, rc, i;
	const struct t_json_member *m;
	double before = 0;
	bool paused = false;
	size_t rlen = 0;
	pid_t s1, s2, rst;
	FILE *f;

	bin = t_pagein_bin(argv[0]);
	t_require_uffd();
	T_ASSERT(mkdtemp(dir));
	snprintf(p1, sizeof(p1), "%s/p1", dir);
	snprintf(p2, sizeof(p2), "%s/p2", dir);
	snprintf(rsock, sizeof(rsock), "%s/r.sock", dir);
	snprintf(rfile, sizeof(rfile), "%s/r.json", dir);
	s1 = t_serve_start(bin, s1args, p1, &so1, &se1, addr, sizeof(addr), WAIT_MS);
	rst = t_restore_connected(bin, rargs, &ro, &re, rerr, sizeof(rerr), &rlen, WAIT_MS);
	usleep(700000);
	kill(s1, SIGKILL);
	t_collect(s1, so1, sout, sizeof(sout), se1, serr, sizeof(serr), 5000);
	/* the destination pauses: its status says so */
	for (i = 0; i < 500 && !paused; i++) {
		if (t_ctl_query(rsock, "status", reply, sizeof(reply), 5000) == 0 &&
		    t_json_parse_line(reply, &o)) {
			m = t_json_get(&o, "state");
			paused = m && !strcmp(m->str, "PAUSED");
			before = t_json_num(&o, "pages_remaining");
		}
		if (!paused)
			usleep(20000);
	}
	T_CHECK(paused && before > 0, "the destination did not pause with pages left: %s", reply);
	s2 = t_serve_start(bin, s2args, p2, &so2, &se2, addr2, sizeof(addr2), WAIT_MS);
	rc = t_exit_code(t_run_status(bin, ctl, reply, sizeof(reply), serr, sizeof(serr), 10000,
				      NULL));
	T_CHECK(rc == 0 && strstr(reply, "\"ok\":true"), "ctl reconnect: exit %d: %s%s", rc, reply,
		serr);
	rc = t_exit_code(t_collect(rst, ro, rout, sizeof(rout), re, rerr + rlen,
				   sizeof(rerr) - rlen, 60000));
	if (rc == 71 && strstr(rerr, "userfaultfd")) {
		kill(s2, SIGKILL);
		waitpid(s2, NULL, 0);
		t_skip("SKIP: userfaultfd not permitted here: %s", rerr);
	}
	T_CHECK(rc == 0 && strstr(rout, "every region verified"), "restore exit %d:\n%s%s", rc,
		rerr, rout);
	f = fopen(rfile, "r");
	T_ASSERT(f);
	reply[fread(reply, 1, sizeof(reply) - 1, f)] = 0;
	fclose(f);
	*strchrnul(reply, '\n') = 0;
	T_CHECK(t_json_parse_line(reply, &o) && t_json_num(&o, "net_resumes") >= 1 &&
		strstr(reply, "\"result\":\"verified\""), "final status: %s", reply);
	kill(s2, SIGTERM);
	rc = t_exit_code(t_collect(s2, so2, sout, sizeof(sout), se2, serr, sizeof(serr), 30000));
	T_CHECK(rc == 0, "second server exit %d: %s", rc, serr);
	printf("  paused with %.0f pages left; ctl reconnect to the second server: resumed %.0f "
	       "time(s), verified\n", before, t_json_num(&o, "net_resumes"));
	unlink(p1);
	unlink(p2);
	unlink(rfile);
	rmdir(dir);
	if (t_failures)
		return 1;
	t_pass("t_ctl_reconnect");
}
