// SPDX-License-Identifier: MIT
/*
 * t_cli_man.c - docs/man/pagein.1 documents the command as built: every long option that
 * `pagein COMMAND --help` lists for restore, serve, mksnap and demo appears in the man page,
 * and so does every exit code the top-level help names.
 */
#include <ctype.h>

#include "helpers.h"

#define RUN_MS 30000

static char out[1 << 16], err[1 << 16], man[1 << 18];

/* Read the man page: argv0's ../../docs/man/pagein.1 (build/tests/t_x), else from the cwd. */
static void read_man(const char *argv0)
{
	char path[4096];
	const char *slash = strrchr(argv0, '/');
	size_t n;
	FILE *f = NULL;

	if (slash) {
		snprintf(path, sizeof(path), "%.*s/../../docs/man/pagein.1", (int)(slash - argv0),
			 argv0);
		f = fopen(path, "r");
	}
	if (!f)
		f = fopen("docs/man/pagein.1", "r");
	T_ASSERT(f);
	n = fread(man, 1, sizeof(man) - 1, f);
	man[n] = 0;
	fclose(f);
}

int main(int argc, char **argv)
{
	static const char *const cmds[] = { "restore", "serve", "mksnap", "demo" };
	const char *bin = t_pagein_bin(argv[0]);
	char opt[64], roff[140], *p;
	unsigned i, n, checked = 0, code;
	int rc;

	read_man(argv[0]);
	for (i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++) {
		rc = t_exit_code(t_run_status(bin, (char *[]){ "pagein", (char *)cmds[i], "--help",
							     NULL }, out, sizeof(out), err,
					      sizeof(err), RUN_MS, NULL));
		T_ASSERT(rc == 0);
		for (p = out; (p = strstr(p, "--")); ) {
			p += 2;
			for (n = 0; n + 1 < sizeof(opt) && (islower((unsigned char)p[n]) || p[n] == '-');
			     n++)
				opt[n] = p[n];
			opt[n] = 0;
			if (n < 2)
				continue;
			/* roff writes a hyphen as \- */
			snprintf(roff, sizeof(roff), "\\-\\-");
			for (char *q = opt, *r = roff + 4; *q; q++) {
				if (*q == '-')
					*r++ = '\\';
				*r++ = *q;
				*r = 0;
			}
			T_CHECK(strstr(man, roff) != NULL, "pagein %s --%s is not in pagein.1", cmds[i],
				opt);
			checked++;
		}
	}
	rc = t_exit_code(t_run_status(bin, (char *[]){ "pagein", "--help", NULL }, out, sizeof(out),
				      err, sizeof(err), RUN_MS, NULL));
	T_ASSERT(rc == 0);
	p = strstr(out, "exit codes:");
	T_ASSERT(p);
	for (n = 0; *p; p++) {
		if (!isdigit((unsigned char)*p) || isdigit((unsigned char)p[-1]))
			continue;
		code = (unsigned)strtoul(p, NULL, 10);
		if (code == 1 && p[1] == ')') /* "pagein(1)" */
			continue;
		snprintf(roff, sizeof(roff), ".B %u\n", code);
		T_CHECK(strstr(man, roff) != NULL, "exit code %u is not in pagein.1", code);
		n++;
	}
	T_CHECK(n >= 6, "the top-level help names %u exit codes", n);
	printf("  %u options and %u exit codes documented\n", checked, n);
	if (t_failures)
		return 1;
	t_pass("t_cli_man");
}
