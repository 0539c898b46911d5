// SPDX-License-Identifier: MIT
/*
 * t_ctl_status.c - machine-readable status while a migration runs, on both sides: `pagein ctl
 * PATH status` and the --status-file of `serve` and `restore` parse as JSON, carry what an
 * operator needs (server: sessions, pages sent, sent twice, requests, rate; destination: state,
 * pages present and remaining, MiB/s, faults, latency quantiles, blocked time per thread), and
 * change over time. The destination's last status file says DONE and verified. Both front-ends.
 */
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include "helpers.h"

#define WAIT_MS 20000

static const char *bin;
static char sout[1 << 14], serr[1 << 16], rout[1 << 16], rerr[1 << 16], reply[1 << 16];

/* The status file at path, parsed (waiting up to WAIT_MS for it to appear). */
static bool read_status(const char *path, struct t_json_object *o)
{
	uint64_t end = t_ms_now() + WAIT_MS;
	size_t n = 0;
	FILE *f;

	while (t_ms_now() < end) {
		f = fopen(path, "r");
		if (f) {
			n = fread(reply, 1, sizeof(reply) - 1, f);
			fclose(f);
			reply[n] = 0;
			if (n && reply[n - 1] == '\n')
				reply[n - 1] = 0;
			return t_json_parse_line(reply, o);
		}
		usleep(10000);
	}
	return false;
}

static const char *str(const struct t_json_object *o, const char *key)
{
	const struct t_json_member *m = t_json_get(o, key);

	return m && m->type == 's' ? m->str : "";
}

static void run(const char *dir, const char *fe)
{
	char pfile[96], ssock[96], rsock[96], sfile[96], rfile[96], addr[64];
	char *sargs[] = { "pagein", "serve", "--generate", "64M", "--port-file", pfile,
			  "--control", ssock, "--status-file", sfile, "--status-interval", "50",
			  NULL };
	/* one page per fault, one thread: slow enough to be seen under way */
	char *rargs[] = { "pagein", "restore", "--from", addr, "--no-fill", "--around", "1", "-t",
			  "1", "-f", (char *)fe, "-q", "-v", "--control", rsock, "--status-file",
			  rfile, "--status-interval", "50", NULL };
	static struct t_json_object a, b, s1, s2;
	int so, se, ro, re, rc, i, ret;
	double keys_a, keys_b;
	size_t rlen = 0;
	pid_t srv, rst;

	snprintf(pfile, sizeof(pfile), "%s/port", dir);
	snprintf(ssock, sizeof(ssock), "%s/s.sock", dir);
	snprintf(rsock, sizeof(rsock), "%s/r.sock", dir);
	snprintf(sfile, sizeof(sfile), "%s/s.json", dir);
	snprintf(rfile, sizeof(rfile), "%s/r.json", dir);
	unlink(pfile);
	unlink(rfile);
	srv = t_serve_start(bin, sargs, pfile, &so, &se, addr, sizeof(addr), WAIT_MS);
	rst = t_restore_connected(bin, rargs, &ro, &re, rerr, sizeof(rerr), &rlen, WAIT_MS);
	/* the destination's control socket, twice, some faults apart */
	for (i = 0, ret = -1; i < 500 && ret < 0; i++) {
		ret = t_ctl_query(rsock, "status", reply, sizeof(reply), 5000);
		if (ret < 0)
			usleep(10000);
	}
	T_CHECK(ret == 0, "%s: no answer on %s", fe, rsock);
	T_CHECK(t_json_parse_line(reply, &a), "%s: status is not JSON: %s", fe, reply);
	if (!strcmp(str(&a, "state"), "DONE") && strstr(rerr, "userfaultfd"))
		t_skip("SKIP: userfaultfd: %s", rerr);
	/* until it moved (a loaded machine may hold the workload thread back a while) */
	for (i = 0; i < 200; i++) {
		usleep(50000);
		T_CHECK(t_ctl_query(rsock, "status", reply, sizeof(reply), 5000) == 0, "%s: status",
			fe);
		T_CHECK(t_json_parse_line(reply, &b), "%s: status is not JSON: %s", fe, reply);
		if (t_json_num(&b, "pages_present") > t_json_num(&a, "pages_present"))
			break;
	}
	T_CHECK(!strcmp(str(&b, "role"), "destination") && !strcmp(str(&b, "state"), "RUNNING"),
		"%s: destination status: %s", fe, reply);
	T_CHECK(t_json_num(&b, "pages_present") > t_json_num(&a, "pages_present"),
		"%s: pages_present did not grow (%.0f then %.0f)", fe,
		t_json_num(&a, "pages_present"), t_json_num(&b, "pages_present"));
	T_CHECK(t_json_num(&b, "pages_present") + t_json_num(&b, "pages_remaining") ==
		t_json_num(&b, "pages_total") && t_json_num(&b, "pages_total") == 16384,
		"%s: pages do not add up: %s", fe, reply);
	T_CHECK(t_json_num(&b, "faults") > t_json_num(&a, "faults") &&
		t_json_num(&b, "fault_p50_us") > 0 && t_json_num(&b, "fault_p99_us") >=
		t_json_num(&b, "fault_p50_us") && t_json_num(&b, "mib_per_s") > 0,
		"%s: faults, latency or rate missing: %s", fe, reply);
	keys_a = t_json_get(&a, "threads") ? t_json_get(&a, "threads")->alen : 0;
	keys_b = t_json_get(&b, "threads") ? t_json_get(&b, "threads")->alen : 0;
	T_CHECK(keys_b >= 1 && keys_b >= keys_a && strstr(reply, "\"blocked_ms\":"),
		"%s: no blocked time per thread: %s", fe, reply);
	T_CHECK(!strstr(reply, "\"tid\":0,"), "%s: a thread without its id: %s", fe, reply);
	/* the server's status file, and its socket */
	T_CHECK(read_status(sfile, &s1), "server status file: %s", reply);
	T_CHECK(!strcmp(str(&s1, "role"), "server") && !strcmp(str(&s1, "state"), "serving") &&
		t_json_num(&s1, "sessions_active") == 1 && t_json_get(&s1, "sessions") &&
		t_json_get(&s1, "sessions")->alen == 1 && strstr(reply, "\"peer\":\"127.0.0.1\""),
		"server status: %s", reply);
	for (i = 0; i < 200; i++) {
		usleep(50000);
		T_CHECK(t_ctl_query(ssock, "status", reply, sizeof(reply), 5000) == 0,
			"server status");
		T_CHECK(t_json_parse_line(reply, &s2), "server status is not JSON: %s", reply);
		if (t_json_num(&s2, "requests") > t_json_num(&s1, "requests"))
			break;
	}
	T_CHECK(t_json_num(&s2, "seq") > 0 && t_json_num(&s2, "requests") >
		t_json_num(&s1, "requests") && t_json_num(&s2, "pages_sent") >
		t_json_num(&s1, "pages_sent") && t_json_get(&s2, "pages_sent_twice") &&
		t_json_get(&s2, "mib_per_s"), "server status did not move: %s", reply);
	rc = t_exit_code(t_collect(rst, ro, rout, sizeof(rout), re, rerr + rlen,
				   sizeof(rerr) - rlen, 60000));
	T_CHECK(rc == 0, "%s: restore exit %d: %s%s", fe, rc, rerr, rout);
	/* the destination's last word */
	T_CHECK(read_status(rfile, &a), "%s: no final status file", fe);
	T_CHECK(!strcmp(str(&a, "state"), "DONE") && !strcmp(str(&a, "result"), "verified") &&
		t_json_num(&a, "pages_remaining") == 0, "%s: final status: %s", fe, reply);
	T_CHECK(access(rsock, F_OK) != 0, "%s: the control socket was left behind", fe);
	kill(srv, SIGTERM);
	rc = t_exit_code(t_collect(srv, so, sout, sizeof(sout), se, serr, sizeof(serr), 30000));
	T_CHECK(rc == 0, "serve exit %d: %s", rc, serr);
	printf("  %s: destination at %.0f pages, %.0f threads with blocked time; server "
	       "%.0f -> %.0f requests; final state DONE, verified\n", fe,
	       t_json_num(&b, "pages_present"), keys_b, t_json_num(&s1, "requests"),
	       t_json_num(&s2, "requests"));
}

int main(int argc, char **argv)
{
	char dir[] = "/tmp/t_ctl_status.XXXXXX", p[128];

	bin = t_pagein_bin(argv[0]);
	t_require_uffd();
	T_ASSERT(mkdtemp(dir));
	run(dir, "self");
	run(dir, "handler");
	snprintf(p, sizeof(p), "%s/s.json", dir);
	unlink(p);
	snprintf(p, sizeof(p), "%s/r.json", dir);
	unlink(p);
	snprintf(p, sizeof(p), "%s/port", dir);
	unlink(p);
	rmdir(dir);
	if (t_failures)
		return 1;
	t_pass("t_ctl_status");
}
