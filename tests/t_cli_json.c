// SPDX-License-Identifier: MIT
/*
 * t_cli_json.c - `--json` on restore, serve and demo: stdout carries JSON objects only, one per
 * line (periodic "progress" lines with --json-interval, one "summary" at the end) with the fields
 * a monitoring system reads: state, bytes and pages transferred and remaining, MiB/s, faults,
 * fault-latency quantiles, blocked time; and the numbers add up.
 */
#include <signal.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "helpers.h"

#define RUN_MS 120000

static const char *bin;
static char out[1 << 20], err[1 << 16];
static struct t_json_object o;

static const char *const restore_keys[] = {
	"elapsed_s", "bytes_total", "bytes_transferred", "bytes_remaining", "pages_total",
	"pages_transferred", "pages_remaining", "mib_per_s", "faults", "fault_p50_us",
	"fault_p90_us", "fault_p99_us", "fault_p999_us", "blocked_s",
};

/* Every member of restore_keys is a number >= 0 in o. */
static void restore_fields(const char *what)
{
	unsigned i;

	for (i = 0; i < sizeof(restore_keys) / sizeof(restore_keys[0]); i++)
		T_CHECK(t_json_num(&o, restore_keys[i]) >= 0, "%s: no number '%s'", what,
			restore_keys[i]);
	T_CHECK(t_json_num(&o, "bytes_transferred") + t_json_num(&o, "bytes_remaining") ==
			t_json_num(&o, "bytes_total") &&
		t_json_num(&o, "pages_transferred") + t_json_num(&o, "pages_remaining") ==
			t_json_num(&o, "pages_total"), "%s: transferred + remaining != total", what);
	T_CHECK(t_json_num(&o, "fault_p50_us") <= t_json_num(&o, "fault_p90_us") &&
		t_json_num(&o, "fault_p90_us") <= t_json_num(&o, "fault_p99_us") &&
		t_json_num(&o, "fault_p99_us") <= t_json_num(&o, "fault_p999_us"),
		"%s: quantiles out of order", what);
}

/* The event and state of o, as "event/state". */
static const char *kind(char *buf, size_t len)
{
	const struct t_json_member *e = t_json_get(&o, "event"), *s = t_json_get(&o, "state");

	snprintf(buf, len, "%s/%s", e && e->type == 's' ? e->str : "?",
		 s && s->type == 's' ? s->str : "?");
	return buf;
}

/* Check a restore's stdout: JSON lines only, progress lines (at least min_progress) then one
 * verified summary for total bytes. */
static void check_restore(const char *what, char *text, unsigned min_progress, double total)
{
	unsigned lines = 0, progress = 0, summaries = 0;
	char *line, *save = NULL, k[64];
	double elapsed = 0;

	for (line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		lines++;
		if (!t_json_parse_line(line, &o)) {
			T_CHECK(0, "%s: line %u is not one JSON object: %s", what, lines, line);
			continue;
		}
		kind(k, sizeof(k));
		if (!strcmp(k, "progress/running")) {
			progress++;
			T_CHECK(!summaries, "%s: progress after the summary", what);
			restore_fields(what);
		} else if (!strcmp(k, "summary/verified")) {
			summaries++;
			restore_fields(what);
			T_CHECK(t_json_num(&o, "bytes_total") == total &&
				t_json_num(&o, "bytes_remaining") == 0 &&
				t_json_num(&o, "pages_remaining") == 0, "%s: summary: not all of %.0f "
				"bytes arrived: %s", what, total, line);
			T_CHECK(t_json_num(&o, "faults") > 0 && t_json_num(&o, "mib_per_s") > 0,
				"%s: no faults or rate: %s", what, line);
			elapsed = t_json_num(&o, "elapsed_s");
		} else {
			T_CHECK(0, "%s: unexpected %s: %s", what, k, line);
		}
	}
	T_CHECK(summaries == 1, "%s: %u summaries, want 1", what, summaries);
	/* the wait loop looks every 250 ms at most: a long run must have shown progress */
	T_CHECK(progress >= min_progress || elapsed < 0.6, "%s: %u progress lines in %.2f s", what,
		progress, elapsed);
	printf("  %s: %u progress lines, 1 summary, %.2f s\n", what, progress, elapsed);
}

int main(int argc, char **argv)
{
	char dir[] = "/tmp/t_cli_json.XXXXXX", pfile[64], addr[64], k[64];
	char *sargs[] = { "pagein", "serve", "--json", "--json-interval", "0.2", "--generate", "64M",
			  "--port-file", pfile, NULL };
	char *rargs[] = { "pagein", "restore", "--from", addr, "--no-fill", "--around", "1", "--json",
			  "--json-interval", "0.05", NULL };
	char *dargs[] = { "pagein", "demo", "--size", "8M", "--json", NULL };
	int sout, rc, status, port = 0, i;
	char *line, *save = NULL;
	unsigned listening = 0, summaries = 0;
	pid_t server;
	FILE *f;

	bin = t_pagein_bin(argv[0]);
	t_require_uffd();
	T_ASSERT(mkdtemp(dir));
	snprintf(pfile, sizeof(pfile), "%s/port", dir);

	/* serve --json, and a restore --json --json-interval from it */
	server = t_spawn(bin, sargs, &sout, NULL, NULL);
	T_ASSERT(server > 0);
	for (i = 0; i < 3000 && !port; i++) {
		f = fopen(pfile, "r");
		if (!f || fscanf(f, "%d", &port) != 1)
			usleep(10000);
		if (f)
			fclose(f);
	}
	if (!port) {
		kill(server, SIGKILL);
		waitpid(server, NULL, 0);
		T_ASSERT(port);
	}
	snprintf(addr, sizeof(addr), "127.0.0.1:%d", port);
	rc = t_exit_code(t_run_status(bin, rargs, out, sizeof(out), err, sizeof(err), RUN_MS, NULL));
	T_CHECK(rc == 0, "restore --json: exit %d: %s", rc, err);
	T_CHECK(strstr(err, "RESULT: every region verified") != NULL,
		"restore --json: the human report is not on stderr: %s", err);
	check_restore("restore --json --json-interval 0.05", out, 1, 64 << 20);
	usleep(300000); /* a serve progress line or two */
	kill(server, SIGTERM);
	status = t_collect(server, sout, out, sizeof(out), -1, NULL, 0, RUN_MS);
	T_CHECK(t_exit_code(status) == 0, "serve: status 0x%x", status);
	for (line = strtok_r(out, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		if (!t_json_parse_line(line, &o)) {
			T_CHECK(0, "serve: not one JSON object: %s", line);
			continue;
		}
		kind(k, sizeof(k));
		if (!strcmp(k, "listening/serving")) {
			listening++;
			T_CHECK(t_json_num(&o, "port") == port, "serve: port: %s", line);
		} else if (!strcmp(k, "summary/stopped")) {
			summaries++;
			T_CHECK(t_json_num(&o, "sessions") >= 1 &&
				t_json_num(&o, "bytes_transferred") >= 32 << 20 &&
				t_json_num(&o, "pages_transferred") >= 16384 &&
				t_json_num(&o, "mib_per_s") > 0, "serve: summary: %s", line);
		} else {
			T_CHECK(!strcmp(k, "progress/serving") &&
				t_json_num(&o, "bytes_transferred") >= 0, "serve: unexpected: %s", line);
		}
	}
	T_CHECK(listening == 1 && summaries == 1, "serve: %u listening lines, %u summaries",
		listening, summaries);
	printf("  serve --json: listening, summary\n");

	/* demo --json: one summary line, nothing else */
	rc = t_exit_code(t_run_status(bin, dargs, out, sizeof(out), err, sizeof(err), RUN_MS, NULL));
	T_CHECK(rc == 0, "demo --json: exit %d: %s", rc, err);
	check_restore("demo --json", out, 0, 8 << 20);

	unlink(pfile);
	rmdir(dir);
	if (t_failures)
		return 1;
	t_pass("t_cli_json");
}
