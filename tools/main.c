// SPDX-License-Identifier: MIT
/*
 * main.c - the pagein command: dispatches to one subcommand per file (cmd-*.c) from a table,
 * and holds the helpers they share (printing, dying, sizes, the log sink).
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "tools.h"

bool tool_verbose;

static const struct {
	const char *name; /* subcommand */
	int (*fn)(int argc, char **argv);
	const char *help; /* one line */
} cmds[] = {
	{ "demo", cmd_demo, "a lazy restore of a generated snapshot, with progress and verification" },
	{ "restore", cmd_restore, "restore guest memory lazily from a snapshot and run a workload" },
	{ "mksnap", cmd_mksnap, "write a snapshot file filled with a seeded pattern" },
	{ "serve", cmd_serve, "serve guest memory (a snapshot) to migration destinations" },
	{ "handler", cmd_handler, "serve a Firecracker-style VMM's page faults (UFFD hand-off)" },
	{ "bench", cmd_bench, "the demand-paging benchmark (demand_paging_test's shape)" },
};

void die(const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "pagein: ");
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, "\n");
	exit(1);
}

void pr_err(const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "pagein: ");
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, "\n");
}

void pr_info(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	printf("\n");
	fflush(stdout);
}

void tool_log(void *arg, int level, const char *msg)
{
	if (level <= PAGEIN_LOG_WARN || tool_verbose)
		fprintf(stderr, "pagein: %s\n", msg);
}

uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

uint64_t xorshift(uint64_t *s)
{
	uint64_t x = *s;

	x ^= x << 13;
	x ^= x >> 7;
	x ^= x << 17;
	*s = x;
	return x;
}

int cmp_u32(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;

	return x < y ? -1 : x > y;
}

uint64_t parse_size(const char *s)
{
	char *end;
	unsigned long long v;

	errno = 0;
	v = strtoull(s, &end, 0);
	if (errno || end == s)
		die("'%s' is not a size (examples: 4096, 64K, 256M, 1G)", s);
	switch (*end) {
	case 'k': case 'K': v <<= 10; end++; break;
	case 'm': case 'M': v <<= 20; end++; break;
	case 'g': case 'G': v <<= 30; end++; break;
	case '\0': break;
	default: die("'%s' is not a size (examples: 4096, 64K, 256M, 1G)", s);
	}
	if (*end == 'i' || *end == 'B')
		end += *end == 'i' ? (end[1] == 'B' ? 2 : 1) : 1;
	if (*end)
		die("'%s' is not a size (examples: 4096, 64K, 256M, 1G)", s);
	return v;
}

static void usage(FILE *f)
{
	unsigned i;

	fprintf(f, "usage: pagein COMMAND [OPTIONS]   (pagein COMMAND --help for its options)\n\n");
	for (i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++)
		fprintf(f, "  %-8s %s\n", cmds[i].name, cmds[i].help);
}

int main(int argc, char **argv)
{
	unsigned i;

	if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
		usage(argc < 2 ? stderr : stdout);
		return argc < 2 ? 2 : 0;
	}
	for (i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++)
		if (!strcmp(argv[1], cmds[i].name))
			return cmds[i].fn(argc - 1, argv + 1);
	pr_err("unknown command '%s'", argv[1]);
	usage(stderr);
	return 2;
}
