// SPDX-License-Identifier: MIT
/*
 * cmd-mksnap.c - `pagein mksnap`: write a snapshot file of generated guest memory (a seeded
 * pattern with some all-zero pages), for demos, tests and benchmarks. The file appears whole or
 * not at all (a temporary file beside it, renamed), and an existing one is kept unless --force.
 */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tools.h"

static void usage(FILE *f)
{
	fprintf(f, "usage: pagein mksnap [OPTIONS] FILE\n"
		   "  --size SIZE       guest memory (default 256M; rounded up to 4 MiB; K/M/G/T,\n"
		   "                    fractions: 1.5G)\n"
		   "  --seed N          pattern seed (default 1)\n"
		   "  --zero-every N    every N-th page all zero (default 16, 0 = none)\n"
		   "  --force           replace FILE if it exists\n"
		   "  -v, --verbose     log everything the library says\n");
}

int cmd_mksnap(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "size", required_argument, NULL, 'b' },
		{ "seed", required_argument, NULL, 'S' },
		{ "zero-every", required_argument, NULL, 'z' },
		{ "force", no_argument, NULL, 'F' },
		{ "verbose", no_argument, NULL, 'v' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	uint64_t size = 256ull << 20, seed = 1;
	unsigned zero_every = 16;
	bool force = false;
	int c, ret;

	while ((c = getopt_long(argc, argv, "b:vh", longopts, NULL)) != -1) {
		switch (c) {
		case 'b':
			/* the image is built in memory first: 1 TiB is far past any machine here */
			size = opt_size("--size", optarg, 1, 1ull << 40);
			break;
		case 'S':
			seed = opt_u64("--seed", optarg, 0, UINT64_MAX);
			break;
		case 'z':
			zero_every = opt_uint("--zero-every", optarg, 0, UINT32_MAX);
			break;
		case 'F':
			force = true;
			break;
		case 'v':
			tool_verbose = true;
			break;
		case 'h':
			usage(stdout);
			return EXIT_OK;
		default:
			usage(stderr);
			return EXIT_USAGE;
		}
	}
	if (optind != argc - 1)
		die_code(EXIT_USAGE, "mksnap needs exactly one FILE (pagein mksnap --help)");
	ret = make_snapshot(argv[optind], size, seed, zero_every, force);
	if (ret == -EEXIST)
		die_code(EXIT_USAGE, "%s exists: give --force to replace it", argv[optind]);
	if (ret < 0)
		die_code(exit_for_errno(ret, EXIT_ERROR), "writing %s: %s (no file was left behind)",
			 argv[optind], strerror(-ret));
	printf("wrote %s: %llu MiB of guest memory in 2 regions\n", argv[optind],
	       (unsigned long long)(((size + (4u << 20) - 1) & ~((4ull << 20) - 1)) >> 20));
	return EXIT_OK;
}
