// SPDX-License-Identifier: MIT
/*
 * main.c - the pagein command: dispatches to one subcommand per file (cmd-*.c) from a table,
 * and holds the helpers they share (printing, dying with an exit code, the log sink).
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
	{ "demo", cmd_demo, "a live post-copy migration over loopback: a page server child serves a\n"
	  "           generated guest, this process migrates it in while threads touch it, verified" },
	{ "restore", cmd_restore, "restore guest memory lazily from a snapshot and run a workload" },
	{ "mksnap", cmd_mksnap, "write a snapshot file filled with a seeded pattern" },
	{ "serve", cmd_serve, "serve guest memory (a snapshot) to migration destinations" },
	{ "handler", cmd_handler, "serve a Firecracker-style VMM's page faults (UFFD hand-off)" },
	{ "bench", cmd_bench, "the demand-paging benchmark (demand_paging_test's shape)" },
	{ "ctl", cmd_ctl, "ask a running serve or restore (--control socket): status, bandwidth,\n"
	  "           drain, reconnect" },
};

static void __attribute__((noreturn)) vdie(int code, const char *fmt, va_list ap)
{
	fflush(stdout);
	fprintf(stderr, "pagein: ");
	vfprintf(stderr, fmt, ap);
	fprintf(stderr, "\n");
	exit(code);
}

void die(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vdie(EXIT_ERROR, fmt, ap);
}

void die_code(int code, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vdie(code, fmt, ap);
}

int exit_for_errno(int err, int fallback)
{
	switch (err < 0 ? -err : err) {
	case ENOMEM: case EPERM: case EACCES: case ENOSPC: case EDQUOT: case EFBIG:
	case EMFILE: case ENFILE: case EAGAIN: case ENOSYS: case EROFS:
		return EXIT_LOCAL;
	default:
		return fallback;
	}
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

static void usage(FILE *f)
{
	unsigned i;

	fprintf(f, "usage: pagein COMMAND [OPTIONS]   (pagein COMMAND --help for its options)\n"
		   "       pagein --version\n\n");
	for (i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++)
		fprintf(f, "  %-8s %s\n", cmds[i].name, cmds[i].help);
	fprintf(f, "\nexit codes: 0 done (restore: every region verified), 1 other failure, 2 usage,\n"
		   "  65 wrong bytes, 69 source unreachable or lost, 71 local resources,\n"
		   "  75 serve stopped with sessions cut (see pagein(1))\n");
}

int main(int argc, char **argv)
{
	unsigned i;

	if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
		usage(argc < 2 ? stderr : stdout);
		return argc < 2 ? 2 : 0;
	}
	if (!strcmp(argv[1], "--version") || !strcmp(argv[1], "-V")) {
		printf("pagein %s\n", pagein_version()); /* the library's: one VERSION file */
		return 0;
	}
	for (i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++)
		if (!strcmp(argv[1], cmds[i].name))
			return cmds[i].fn(argc - 1, argv + 1);
	pr_err("unknown command '%s'", argv[1]);
	usage(stderr);
	return 2;
}
