// SPDX-License-Identifier: MIT
/*
 * cmd-mksnap.c - `pagein mksnap`: write a snapshot file of generated guest memory (a seeded
 * pattern with some all-zero pages), for demos, tests and benchmarks.
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tools.h"

int cmd_mksnap(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "size", required_argument, NULL, 'b' },
		{ "seed", required_argument, NULL, 'S' },
		{ "zero-every", required_argument, NULL, 'z' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	uint64_t size = 256ull << 20, seed = 1;
	unsigned zero_every = 16;
	int c, ret;

	while ((c = getopt_long(argc, argv, "b:h", longopts, NULL)) != -1) {
		switch (c) {
		case 'b':
			size = parse_size(optarg);
			break;
		case 'S':
			seed = strtoull(optarg, NULL, 0);
			break;
		case 'z':
			zero_every = (unsigned)atoi(optarg);
			break;
		case 'h':
			printf("usage: pagein mksnap [--size SIZE] [--seed N] [--zero-every N] FILE\n"
			       "  --size SIZE       guest memory (default 256M; rounded up to 4 MiB)\n"
			       "  --seed N          pattern seed (default 1)\n"
			       "  --zero-every N    every N-th page all zero (default 16, 0 = none)\n");
			return 0;
		default:
			return 2;
		}
	}
	if (optind != argc - 1)
		die("mksnap needs exactly one FILE (pagein mksnap --help)");
	if (!size)
		die("--size must be more than 0");
	ret = make_snapshot(argv[optind], size, seed, zero_every);
	if (ret < 0)
		die("writing %s: %s", argv[optind], strerror(-ret));
	pr_info("wrote %s: %llu MiB of guest memory in 2 regions", argv[optind],
		(unsigned long long)(((size + (4u << 20) - 1) & ~((4ull << 20) - 1)) >> 20));
	return 0;
}
