// SPDX-License-Identifier: MIT
/*
 * cmd-demo.c - `pagein demo` (what `make demo` runs): generate a snapshot, restore it lazily with
 * two worker threads touching memory while the background fill streams the rest, show progress,
 * and verify every byte against the snapshot's digests. Cleans up the file it made.
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/sysinfo.h>
#include <unistd.h>

#include "tools.h"

int parse_restore_opt(struct restore_opts *o, int c, const char *arg);

int cmd_demo(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "size", required_argument, NULL, 'b' },
		{ "frontend", required_argument, NULL, 'f' },
		{ "backing", required_argument, NULL, 's' },
		{ "workload", required_argument, NULL, 'w' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	char path[] = "/tmp/pagein-demo-XXXXXX";
	struct restore_opts o;
	struct sysinfo si;
	uint64_t size = 1ull << 30;
	int c, fd, ret;

	restore_opts_init(&o);
	/* 1 GiB unless memory is short: the image, the file's page cache and the restored copy */
	if (sysinfo(&si) == 0 && (uint64_t)si.freeram * si.mem_unit < 4 * size)
		size = ((uint64_t)si.freeram * si.mem_unit / 4) & ~((4ull << 20) - 1);
	while ((c = getopt_long(argc, argv, "b:f:s:w:h", longopts, NULL)) != -1) {
		if (c == 'b') {
			size = parse_size(optarg);
		} else if (c == 'h') {
			printf("usage: pagein demo [--size SIZE] [--frontend self|handler] "
			       "[--backing anon|shmem|hugetlb] [--workload seq|rand|hotcold]\n");
			return 0;
		} else if (parse_restore_opt(&o, c, optarg) < 0) {
			return 2;
		}
	}
	if (size < (4u << 20))
		die("--size must be at least 4M");
	fd = mkstemp(path);
	if (fd < 0)
		die("cannot create a file in /tmp");
	close(fd);
	pr_info("pagein demo: lazy restore of a generated %llu MiB snapshot", (unsigned long long)(size >> 20));
	ret = make_snapshot(path, size, 42, 16);
	if (ret < 0) {
		unlink(path);
		die("writing the snapshot %s: %s", path, strerror(-ret));
	}
	o.from_file = path;
	ret = run_restore(&o);
	unlink(path);
	return ret;
}
