// SPDX-License-Identifier: MIT
/*
 * t_bench_usage.c - `pagein bench` usage errors exit 2 (EXIT_USAGE), like every other command's:
 * --vs-install without --restore, --vs-install with a backing it cannot measure, a bad -n, a bad
 * --net --seed, --net --runs. Each must fail before measuring anything, with a message on stderr.
 */
#include <stdio.h>
#include <string.h>

#include "helpers.h"

static char out[1 << 16], err[1 << 16];

static void expect_usage(const char *bin, char *const args[], const char *what)
{
	int st = t_run_status(bin, args, out, sizeof(out), err, sizeof(err), 30000, NULL);

	T_CHECK(t_exit_code(st) == 2, "%s: exit %d, want 2 (stderr: %.200s)", what,
		t_exit_code(st), err);
	T_CHECK(err[0], "%s: nothing on stderr", what);
}

int main(int argc, char **argv)
{
	const char *bin = t_pagein_bin(argv[0]);

	(void)argc;
	{
		char *const a[] = { (char *)bin, "bench", "--vs-install", NULL };

		expect_usage(bin, a, "--vs-install without --restore");
	}
	{
		char *const a[] = { (char *)bin, "bench", "--restore", "8M", "--vs-install", "-s",
				    "shmem", NULL };

		expect_usage(bin, a, "--vs-install -s shmem");
	}
	{
		char *const a[] = { (char *)bin, "bench", "--restore", "8M", "--vs-install", "-n",
				    "0", NULL };

		expect_usage(bin, a, "--vs-install -n 0");
	}
	{
		char *const a[] = { (char *)bin, "bench", "--net", "--seed", "0", NULL };

		expect_usage(bin, a, "--net --seed 0");
	}
	{
		char *const a[] = { (char *)bin, "bench", "--net", "--runs", "0", NULL };
		char *const b[] = { (char *)bin, "bench", "--net", "--runs", "32", NULL };

		expect_usage(bin, a, "--net --runs 0");
		expect_usage(bin, b, "--net --runs 32");
	}
	if (t_failures) {
		printf("FAIL: %d checks failed\n", t_failures);
		return 1;
	}
	printf("PASS: pagein bench usage errors exit 2\n");
	return 0;
}
