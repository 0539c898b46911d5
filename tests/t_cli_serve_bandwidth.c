// SPDX-License-Identifier: MIT
/*
 * t_cli_serve_bandwidth.c - `pagein serve --max-bandwidth 8M` holds the bulk stream to about
 * 8 MiB/s (the server's pages_bulk over a second) while faults are not held back (a hot/cold
 * workload's fault p50 stays far below what waiting for the limit would cost): a 32 MiB
 * migration is far from done after 2 s. Raised live with `pagein ctl PATH bandwidth 0`, the
 * rest arrives much faster, and every region verifies.
 */
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include "helpers.h"

#define WAIT_MS 20000
#define LIMIT (8u << 20)
#define SIZE (32u << 20)

static const char *bin;
static char sout[1 << 14], serr[1 << 16], rout[1 << 16], rerr[1 << 16], reply[1 << 16];

/* `status` on a control socket, parsed; fails the test when it does not answer JSON. */
static void status(const char *sock, struct t_json_object *o)
{
	int ret = t_ctl_query(sock, "status", reply, sizeof(reply), 5000);

	T_CHECK(ret == 0, "status on %s: %s", sock, strerror(-ret));
	T_ASSERT(t_json_parse_line(reply, o));
}

/* `pagein ctl PATH ARGS...`: its exit code; its output in reply. */
static int ctl(char *const args[])
{
	int st = t_run_status(bin, args, reply, sizeof(reply), rerr, sizeof(rerr), 10000, NULL);

	return t_exit_code(st);
}

int main(int argc, char **argv)
{
	char dir[] = "/tmp/t_cli_bw.XXXXXX", pfile[96], ssock[96], rsock[96], addr[64];
	char *sargs[] = { "pagein", "serve", "--generate", "32M", "--port-file", pfile,
			  "--max-bandwidth", "8M", "--control", ssock, "--no-compress", NULL };
	/* one thread, one page per fault, 9 of 10 touches in the first tenth: a few hundred
	 * faults a second, beside a stream that brings most pages */
	char *rargs[] = { "pagein", "restore", "--from", addr, "-w", "hotcold", "-t", "1",
			  "--around", "1", "-q", "-v", "--control", rsock, NULL };
	char *raise[] = { "pagein", "ctl", ssock, "bandwidth", "0", NULL };
	static struct t_json_object o;
	int so, se, ro, re, rc, i;
	double p1, t1, b0, b1, rate, tail_rate, fault_p50;
	uint64_t t_start, t_b0, t_b1, t_raise, t_done = 0;
	size_t rlen = 0;
	pid_t srv, rst;

	bin = t_pagein_bin(argv[0]);
	t_require_uffd();
	T_ASSERT(mkdtemp(dir));
	snprintf(pfile, sizeof(pfile), "%s/port", dir);
	snprintf(ssock, sizeof(ssock), "%s/serve.sock", dir);
	snprintf(rsock, sizeof(rsock), "%s/restore.sock", dir);
	srv = t_serve_start(bin, sargs, pfile, &so, &se, addr, sizeof(addr), WAIT_MS);
	rst = t_restore_connected(bin, rargs, &ro, &re, rerr, sizeof(rerr), &rlen, WAIT_MS);
	t_start = t_ms_now();
	/* the server's rate over a second, at the limit */
	usleep(500000);
	status(ssock, &o);
	b0 = t_json_num(&o, "pages_bulk") * 4096;
	t_b0 = t_ms_now();
	usleep(1000000);
	status(ssock, &o);
	b1 = t_json_num(&o, "pages_bulk") * 4096;
	t_b1 = t_ms_now();
	/* pages, not wire bytes: every 16th page is zero and costs 4 bytes, so the page rate may
	 * pass the byte limit by 1/15 */
	rate = (b1 - b0) / ((double)(t_b1 - t_b0) / 1e3);
	T_CHECK(t_json_num(&o, "max_bandwidth") == LIMIT, "server status: %s", reply);
	T_CHECK(rate > LIMIT * 0.5 && rate < LIMIT * 1.3, "the bulk stream brought %.1f MiB/s, "
		"want about 8 (limit 8M)", rate / (1 << 20));
	usleep(500000);
	status(rsock, &o);
	p1 = t_json_num(&o, "pages_present") * 4096;
	t1 = (double)(t_ms_now() - t_start) / 1e3;
	T_CHECK(p1 > 0 && t_json_num(&o, "pages_remaining") > 0, "after %.2f s: %s", t1, reply);
	T_CHECK(!strcmp(t_json_get(&o, "state") ? t_json_get(&o, "state")->str : "", "RUNNING"),
		"destination state: %s", reply);
	/* a fault waiting for the limit would wait for whole frames at 8 MiB/s (32 ms each) */
	fault_p50 = t_json_num(&o, "fault_p50_us");
	T_CHECK(t_json_num(&o, "faults") > 10 && fault_p50 > 0 && fault_p50 < 20000,
		"faults under the limit: %.0f, p50 %.0f us: %s", t_json_num(&o, "faults"),
		fault_p50, reply);
	/* lift the limit while it runs */
	rc = ctl(raise);
	T_CHECK(rc == 0 && strstr(reply, "\"ok\":true"), "ctl bandwidth 0: exit %d: %s", rc,
		reply);
	t_raise = t_ms_now();
	for (i = 0; i < 400; i++) {
		if (t_ctl_query(rsock, "status", reply, sizeof(reply), 5000) < 0)
			break; /* the restore finished and removed its socket */
		if (t_json_parse_line(reply, &o) && t_json_num(&o, "pages_remaining") == 0) {
			t_done = t_ms_now();
			break;
		}
		usleep(20000);
	}
	if (!t_done)
		t_done = t_ms_now();
	tail_rate = ((double)SIZE - p1) / ((double)(t_done - t_raise + 1) / 1e3);
	T_CHECK(tail_rate > LIMIT * 2, "after the limit was lifted: %.1f MiB/s, want well over 8",
		tail_rate / (1 << 20));
	rc = t_exit_code(t_collect(rst, ro, rout, sizeof(rout), re, rerr + rlen,
				   sizeof(rerr) - rlen, 60000));
	T_CHECK(rc == 0 && strstr(rout, "every region verified"), "restore exit %d: %s%s", rc,
		rerr, rout);
	kill(srv, SIGTERM);
	rc = t_exit_code(t_collect(srv, so, sout, sizeof(sout), se, serr, sizeof(serr), 30000));
	T_CHECK(rc == 0, "serve exit %d: %s", rc, serr);
	printf("  limited: bulk %.1f MiB/s (limit 8), fault p50 %.0f us, %.1f MiB present after "
	       "%.2f s; lifted: %.1f MiB/s for the rest; whole migration %.2f s\n",
	       rate / (1 << 20), fault_p50, p1 / (1 << 20), t1, tail_rate / (1 << 20),
	       (double)(t_done - t_start) / 1e3);
	unlink(pfile);
	rmdir(dir);
	if (t_failures)
		return 1;
	t_pass("t_cli_serve_bandwidth");
}
