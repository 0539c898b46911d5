// SPDX-License-Identifier: MIT
/*
 * t_cli_stderr.c - progress goes to stderr, results to stdout: `pagein restore` and `pagein demo`
 * print the header and the progress lines on stderr, and stdout holds only the result lines
 * (regions, summary, network, RESULT), so a script can read the results without the progress.
 */
#include <unistd.h>

#include "helpers.h"

#define RUN_MS 120000

static const char *bin;
static char out[1 << 16], err[1 << 16];

/* Every stdout line is a result line; stderr has the progress. */
static void check(const char *what, char *const *args)
{
	static const char *const results[] = { "  region ", "summary: ", "network: ", "RESULT: " };
	char *line, *save = NULL;
	unsigned i, n = 0;
	int rc;

	rc = t_exit_code(t_run_status(bin, args, out, sizeof(out), err, sizeof(err), RUN_MS, NULL));
	T_CHECK(rc == 0, "%s: exit %d: %s", what, rc, err);
	T_CHECK(strstr(err, "resident") && strstr(err, "restoring"),
		"%s: no header or progress on stderr: %s", what, err);
	for (line = strtok_r(out, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		for (i = 0; i < sizeof(results) / sizeof(results[0]); i++)
			if (!strncmp(line, results[i], strlen(results[i])))
				break;
		T_CHECK(i < sizeof(results) / sizeof(results[0]), "%s: not a result on stdout: %s",
			what, line);
		n++;
	}
	T_CHECK(n >= 4, "%s: %u result lines on stdout", what, n);
	printf("  %s: %u result lines on stdout, progress on stderr\n", what, n);
}

int main(int argc, char **argv)
{
	char dir[] = "/tmp/t_cli_stderr.XXXXXX", snap[64];
	int rc;

	bin = t_pagein_bin(argv[0]);
	t_require_uffd();
	T_ASSERT(mkdtemp(dir));
	snprintf(snap, sizeof(snap), "%s/s.snap", dir);
	rc = t_exit_code(t_run_status(bin, (char *[]){ "pagein", "mksnap", "--size", "8M", snap, NULL },
				      out, sizeof(out), err, sizeof(err), RUN_MS, NULL));
	T_ASSERT(rc == 0);
	check("restore", (char *[]){ "pagein", "restore", "--from-file", snap, NULL });
	check("demo", (char *[]){ "pagein", "demo", "--size", "8M", NULL });
	unlink(snap);
	rmdir(dir);
	if (t_failures)
		return 1;
	t_pass("t_cli_stderr");
}
