// SPDX-License-Identifier: MIT
/*
 * t_cli_help.c - the pagein command's help and naming: `pagein --version` prints the version,
 * the top-level help calls demo a migration (not "a lazy restore of a generated snapshot"),
 * -v means verbose in every user command, --from with --from-file says "give only one", and a
 * port outside 1..65535 is refused (0 allowed for serve --listen: a free port).
 */
#include "helpers.h"

#define RUN_MS 30000

static const char *bin;
static char out[1 << 16], err[1 << 16];

static int run(char *const *args)
{
	return t_exit_code(t_run_status(bin, args, out, sizeof(out), err, sizeof(err), RUN_MS, NULL));
}

int main(int argc, char **argv)
{
	static const char *const cmds[] = { "restore", "demo", "serve", "mksnap" };
	unsigned i, major, minor, patch;
	int rc;

	bin = t_pagein_bin(argv[0]);
	rc = run((char *[]){ "pagein", "--version", NULL });
	T_CHECK(rc == 0 && sscanf(out, "pagein %u.%u.%u", &major, &minor, &patch) == 3,
		"--version: exit %d: %s%s", rc, out, err);

	rc = run((char *[]){ "pagein", "--help", NULL });
	T_CHECK(rc == 0 && strstr(out, "demo") && strstr(out, "migration") &&
		!strstr(out, "lazy restore of a generated snapshot"),
		"top-level help: exit %d: %s", rc, out);
	T_CHECK(strstr(out, "--version") && strstr(out, "exit codes"),
		"top-level help lacks --version or the exit codes: %s", out);

	/* -v is --verbose everywhere: each command's help lists it so */
	for (i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++) {
		rc = run((char *[]){ "pagein", (char *)cmds[i], "--help", NULL });
		T_CHECK(rc == 0 && (strstr(out, "-v, --verbose") || strstr(out, "[--verbose]") ||
				    strstr(out, "-v]")),
			"%s --help: exit %d, no -v/--verbose: %s", cmds[i], rc, out);
		rc = run((char *[]){ "pagein", (char *)cmds[i], "-v", "--help", NULL });
		T_CHECK(rc == 0, "%s -v --help: exit %d: %s", cmds[i], rc, err);
	}

	rc = run((char *[]){ "pagein", "restore", "--from", "127.0.0.1:1", "--from-file", "x",
			     NULL });
	T_CHECK(rc == 2 && strstr(err, "give only one"), "--from and --from-file: exit %d: %s", rc,
		err);
	rc = run((char *[]){ "pagein", "restore", "--from", "127.0.0.1:65536", NULL });
	T_CHECK(rc == 2 && strstr(err, "port"), "port 65536: exit %d: %s", rc, err);
	rc = run((char *[]){ "pagein", "restore", "--from", "127.0.0.1:0", NULL });
	T_CHECK(rc == 2 && strstr(err, "port"), "port 0: exit %d: %s", rc, err);
	rc = run((char *[]){ "pagein", "restore", "--from", "127.0.0.1", NULL });
	T_CHECK(rc == 2 && strstr(err, "HOST:PORT"), "no port: exit %d: %s", rc, err);
	rc = run((char *[]){ "pagein", "serve", "--listen", "127.0.0.1:99999", "--generate", "4M",
			     NULL });
	T_CHECK(rc == 2 && strstr(err, "port"), "serve port 99999: exit %d: %s", rc, err);
	if (t_failures)
		return 1;
	t_pass("t_cli_help");
}
