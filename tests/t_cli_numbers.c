// SPDX-License-Identifier: MIT
/*
 * t_cli_numbers.c - every number the pagein command takes is checked: a bad or out-of-range
 * count, seed, time-out, size or port exits 2 (usage) with a message naming the option and
 * nothing done (no restore run, no file written), sizes take T and fractions, and a size that
 * overflows 64 bits says so. Runs the real binary.
 */
#include <sys/stat.h>
#include <unistd.h>

#include "helpers.h"

#define RUN_MS 60000

static const char *bin;
static char out[1 << 16], err[1 << 16];

/* Run pagein with args (NULL-terminated, without argv[0]); returns the exit code. */
static int run(const char *const *args)
{
	char *argv[32];
	unsigned i;

	argv[0] = (char *)"pagein";
	for (i = 0; args[i] && i < 30; i++)
		argv[i + 1] = (char *)args[i];
	argv[i + 1] = NULL;
	return t_exit_code(t_run_status(bin, argv, out, sizeof(out), err, sizeof(err), RUN_MS, NULL));
}

/* args must exit 2 with a message on stderr that names opt, and print no result on stdout. */
static void refused(const char *opt, const char *const *args, const char *also)
{
	int rc = run(args);

	T_CHECK(rc == 2, "%s %s: exit %d, want 2 (usage); stderr: %s", args[0], opt, rc, err);
	T_CHECK(strstr(err, opt) != NULL, "%s: stderr does not name the option: %s", opt, err);
	T_CHECK(!also || strstr(err, also), "%s: stderr does not say '%s': %s", opt, also, err);
	T_CHECK(!strstr(out, "RESULT") && !strstr(out, "wrote"), "%s: it ran anyway: %s", opt, out);
}

int main(int argc, char **argv)
{
	char dir[] = "/tmp/t_cli_numbers.XXXXXX", snap[64], made[64];
	struct stat sb;
	int rc;

	bin = t_pagein_bin(argv[0]);
	T_ASSERT(mkdtemp(dir));
	snprintf(snap, sizeof(snap), "%s/s.snap", dir);
	snprintf(made, sizeof(made), "%s/m.snap", dir);
	rc = run((const char *[]){ "mksnap", "--size", "4M", snap, NULL });
	T_ASSERT(rc == 0);

	/* restore: -t abc used to run no workload and exit 0 */
	refused("--threads", (const char *[]){ "restore", "--from-file", snap, "-t", "abc", NULL }, NULL);
	refused("--threads", (const char *[]){ "restore", "--from-file", snap, "-t", "-1", NULL }, NULL);
	refused("--threads", (const char *[]){ "restore", "--from-file", snap, "-t", "2x", NULL }, NULL);
	refused("--readers", (const char *[]){ "restore", "--from-file", snap, "-r", "0", NULL }, NULL);
	refused("--around", (const char *[]){ "restore", "--from-file", snap, "--around", "abc", NULL }, NULL);
	refused("--around", (const char *[]){ "restore", "--from-file", snap, "--around", "65", NULL },
		"out of range");
	refused("--timeout", (const char *[]){ "restore", "--from-file", snap, "--timeout", "abc", NULL }, NULL);
	refused("--timeout", (const char *[]){ "restore", "--from-file", snap, "--timeout", "0", NULL }, NULL);
	refused("--bulk", (const char *[]){ "restore", "--from-file", snap, "--bulk", "abc", NULL }, NULL);
	refused("--bulk", (const char *[]){ "restore", "--from-file", snap, "--bulk", "17", NULL }, NULL);
	/* pause options: only with a page server, and --no-pause excludes the other two */
	refused("--pause-limit", (const char *[]){ "restore", "--from-file", snap, "--pause-limit",
						   "5", NULL }, "page server");
	refused("--pause-limit", (const char *[]){ "restore", "--from", "127.0.0.1:1", "--pause-limit",
						   "abc", NULL }, NULL);
	refused("--reconnect", (const char *[]){ "restore", "--from", "127.0.0.1:1", "--no-pause",
						 "--reconnect", "127.0.0.1:2", NULL }, "only one");
	refused("--threads", (const char *[]){ "restore", "--from-file", snap, "-t",
					       "99999999999999999999999", NULL }, "overflows");
	/* mksnap */
	refused("--seed", (const char *[]){ "mksnap", "--seed", "abc", made, NULL }, NULL);
	refused("--zero-every", (const char *[]){ "mksnap", "--zero-every", "-1", made, NULL }, NULL);
	refused("--size", (const char *[]){ "mksnap", "--size", "12Q", made, NULL }, NULL);
	refused("--size", (const char *[]){ "mksnap", "--size", "1.5", made, NULL }, NULL);
	refused("--size", (const char *[]){ "mksnap", "--size", "99999999T", made, NULL }, "overflows");
	refused("--size", (const char *[]){ "mksnap", "--size", "18446744073709551616", made, NULL },
		"overflows");
	T_CHECK(stat(made, &sb) < 0, "a refused mksnap wrote %s", made);
	/* serve and demo */
	refused("--max-sessions", (const char *[]){ "serve", "--max-sessions", "abc", snap, NULL }, NULL);
	refused("--timeout", (const char *[]){ "serve", "--timeout", "0", snap, NULL }, NULL);
	refused("--seed", (const char *[]){ "serve", "--seed", "x1", "--generate", "4M", NULL }, NULL);
	refused("--generate", (const char *[]){ "serve", "--generate", "1.2.3M", NULL }, NULL);
	refused("--size", (const char *[]){ "demo", "--size", "abc", NULL }, NULL);
	refused("--threads", (const char *[]){ "demo", "-t", "abc", NULL }, NULL);

	/* sizes take fractions and T: 5.5M is 5632 KiB, rounded up to 8 MiB of guest memory */
	rc = run((const char *[]){ "mksnap", "--size", "5.5M", made, NULL });
	T_CHECK(rc == 0 && strstr(out, "8 MiB"), "mksnap --size 5.5M: exit %d, %s%s", rc, out, err);
	T_CHECK(stat(made, &sb) == 0, "mksnap --size 5.5M wrote nothing");
	unlink(made);
	rc = run((const char *[]){ "mksnap", "--size", "0.00000381T", made, NULL });
	T_CHECK(rc == 0 && strstr(out, "4 MiB"), "mksnap --size 0.00000381T: exit %d, %s%s", rc,
		out, err);
	unlink(made);
	/* and the valid numbers still work: a restore with -t 3 --around 8 --timeout 5000 */
	rc = run((const char *[]){ "restore", "--from-file", snap, "-t", "3", "--around", "8",
				   "--timeout", "5000", "-q", NULL });
	if (rc == 71 && strstr(err, "userfaultfd"))
		t_skip("SKIP: userfaultfd not permitted here: %s", err);
	T_CHECK(rc == 0 && strstr(out, "every region verified"), "valid restore: exit %d: %s%s", rc,
		out, err);

	unlink(snap);
	rmdir(dir);
	if (t_failures)
		return 1;
	t_pass("t_cli_numbers");
}
