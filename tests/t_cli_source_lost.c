// SPDX-License-Identifier: MIT
/*
 * t_cli_source_lost.c - a source lost mid-restore ends `pagein restore` with exit 69 and a
 * summary, never a raw SIGBUS: `pagein serve` is killed while `pagein restore --from` (both
 * front-ends, only the workload bringing pages) is faulting its memory in. With --json, the
 * summary is one JSON object with state "source_lost" and the bytes still missing.
 */
#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "helpers.h"

#define RUN_MS 60000
#define WAIT_MS 30000

static const char *bin;
static char out[1 << 16], err[1 << 16];

/* The port `pagein serve --port-file` wrote, waiting up to WAIT_MS; 0 if none. */
static int read_port(const char *path)
{
	unsigned i;
	int port = 0;
	FILE *f;

	for (i = 0; i < WAIT_MS / 10 && !port; i++) {
		f = fopen(path, "r");
		if (!f || fscanf(f, "%d", &port) != 1)
			usleep(10000);
		if (f)
			fclose(f);
	}
	return port;
}

/* Read fd into err until want appears (or WAIT_MS pass); returns whether it did. */
static bool wait_for(int fd, const char *want, size_t *len)
{
	struct timespec t0, t;
	ssize_t n;

	clock_gettime(CLOCK_MONOTONIC, &t0);
	do {
		n = read(fd, err + *len, sizeof(err) - 1 - *len);
		if (n <= 0)
			return false;
		*len += (size_t)n;
		err[*len] = 0;
		if (strstr(err, want))
			return true;
		clock_gettime(CLOCK_MONOTONIC, &t);
	} while ((t.tv_sec - t0.tv_sec) * 1000 < WAIT_MS && *len < sizeof(err) - 1);
	return false;
}

/* Serve 256 MiB, restore it with frontend fe, kill the server once the restore has begun. */
static void lose(const char *dir, const char *fe, bool json)
{
	char pfile[96], addr[64], rest[sizeof(err)];
	char *sargs[] = { "pagein", "serve", "--generate", "256M", "--port-file", pfile, NULL };
	char *rargs[] = { "pagein", "restore", "--from", addr, "-f", (char *)fe, "--no-fill",
			  "--around", "1", "--timeout", "3000", "--pause-limit", "1500", "-v",
			  json ? "--json" : NULL, NULL };
	int sout, rout, rerr, status, rc, port;
	pid_t server, restore;
	size_t len = 0;

	snprintf(pfile, sizeof(pfile), "%s/port", dir);
	unlink(pfile);
	server = t_spawn(bin, sargs, &sout, NULL, NULL);
	T_ASSERT(server > 0);
	port = read_port(pfile);
	if (!port) {
		kill(server, SIGKILL);
		waitpid(server, NULL, 0);
	}
	T_ASSERT(port > 0);
	snprintf(addr, sizeof(addr), "127.0.0.1:%d", port);
	restore = t_spawn(bin, rargs, &rout, &rerr, NULL);
	T_ASSERT(restore > 0);
	/* -v logs the handshake, just before the space starts: 64 Ki pages, one round trip each,
	 * are far from done when the server dies */
	T_CHECK(wait_for(rerr, "connected to", &len), "%s: restore never connected: %s", fe, err);
	kill(server, SIGKILL);
	waitpid(server, NULL, 0);
	close(sout);
	status = t_collect(restore, rout, out, sizeof(out), rerr, rest, sizeof(rest), RUN_MS);
	rc = t_exit_code(status);
	if (rc == 71 && strstr(rest, "userfaultfd"))
		t_skip("SKIP: userfaultfd not permitted here: %s", rest);
	T_CHECK(rc == 69, "%s: exit %d (status 0x%x), want 69 (source lost); stderr:\n%s%s", fe, rc,
		status, err, rest);
	if (!json) {
		T_CHECK(strstr(out, "summary:") != NULL, "%s: no summary on stdout: %s", fe, out);
		T_CHECK(strstr(out, "RESULT: SOURCE LOST") != NULL, "%s: no RESULT line: %s", fe, out);
		T_CHECK(!strstr(out, ": verified") && !strstr(out, "every region verified"),
			"%s: claims something was verified: %s", fe, out);
	} else {
		static struct t_json_object o;
		char *nl = strchr(out, '\n');
		const struct t_json_member *st;

		T_CHECK(nl && !nl[1], "%s: want exactly one JSON line on stdout: %s", fe, out);
		if (nl)
			*nl = 0;
		T_CHECK(t_json_parse_line(out, &o), "%s: not a JSON object: %s", fe, out);
		st = t_json_get(&o, "state");
		T_CHECK(st && !strcmp(st->str, "source_lost"), "%s: state is not source_lost: %s", fe,
			out);
		T_CHECK(t_json_num(&o, "bytes_remaining") > 0 &&
			t_json_num(&o, "bytes_transferred") + t_json_num(&o, "bytes_remaining") ==
				t_json_num(&o, "bytes_total"),
			"%s: bytes do not add up: %s", fe, out);
		T_CHECK(t_json_num(&o, "regions_verified") == 0, "%s: verified regions: %s", fe, out);
		T_CHECK(strstr(rest, "RESULT: SOURCE LOST") != NULL, "%s: no RESULT on stderr", fe);
	}
	printf("  %s%s: exit %d with a summary\n", fe, json ? " --json" : "", rc);
}

int main(int argc, char **argv)
{
	char dir[] = "/tmp/t_cli_lost.XXXXXX", pfile[64];

	bin = t_pagein_bin(argv[0]);
	t_require_uffd();
	T_ASSERT(mkdtemp(dir));
	lose(dir, "self", false);
	lose(dir, "handler", false);
	lose(dir, "self", true);
	snprintf(pfile, sizeof(pfile), "%s/port", dir);
	unlink(pfile);
	rmdir(dir);
	if (t_failures)
		return 1;
	t_pass("t_cli_source_lost");
}
