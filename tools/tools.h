/* SPDX-License-Identifier: MIT */
/*
 * tools.h - what the pagein command's files share: the subcommand entry points, printing and
 * dying helpers, size parsing, and the restore engine that `restore` and `demo` drive.
 */
#ifndef PAGEIN_TOOLS_H
#define PAGEIN_TOOLS_H

#include <stdbool.h>
#include <stdint.h>

#include "pagein.h"

void die(const char *fmt, ...) __attribute__((noreturn, format(printf, 1, 2)));
void pr_err(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void pr_info(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* CLOCK_MONOTONIC in ns. */
uint64_t now_ns(void);
/* xorshift64: the next pseudo-random number of state *s (never 0 if *s is not 0). */
uint64_t xorshift(uint64_t *s);
/* qsort comparator for uint32_t. */
int cmp_u32(const void *a, const void *b);

/* "4096", "64K", "256M", "1G" -> bytes; dies with a message on anything else. */
uint64_t parse_size(const char *s);
/* Log sink for pagein_config.log that prints "pagein: msg" to stderr (errors and warnings only
 * unless verbose). */
void tool_log(void *arg, int level, const char *msg);
extern bool tool_verbose;

/* Subcommands: one file each (tools/cmd-NAME.c). */
int cmd_bench(int argc, char **argv);
/* `pagein bench --net` (tools/bench-net.c): migration over TCP against the raw TCP baseline. */
int bench_net(int argc, char **argv);
int cmd_demo(int argc, char **argv);
int cmd_handler(int argc, char **argv);
int cmd_mksnap(int argc, char **argv);
int cmd_restore(int argc, char **argv);
int cmd_serve(int argc, char **argv);

/* Workloads a restore runs over the guest memory while it arrives. */
enum workload { WL_SEQ, WL_RAND, WL_HOTCOLD, WL_NONE };

/* What tools/restore.c is asked to do. */
struct restore_opts {
	const char *from_file;           /* snapshot path */
	enum pagein_frontend frontend;
	enum pagein_backing backing;
	unsigned readers;                /* handler threads */
	unsigned threads;                /* workload threads */
	enum workload workload;
	bool fill;                       /* background fill */
	unsigned around;                 /* fault-around (PAGEIN_AROUND_AUTO by default) */
	unsigned timeout_ms;             /* per-fault time-out */
	bool quiet;                      /* no progress line */
	const char *from_addr;           /* HOST:PORT of a page server (instead of from_file) */
	bool urgent;                     /* network: faults on their own connection */
	unsigned bulk;                   /* network: bulk connections (0: faults only) */
	bool compress;                   /* network: accept LZ4 pages */
};

/* The generated guest image the demo and the snapshots use: *size (rounded up to 4 MiB) bytes
 * of the seeded pattern, every zero_every-th page zero, split into two regions described by
 * regs (digests filled in). Returns the buffer (free() it) or NULL. */
uint64_t *make_image(uint64_t *size, uint64_t seed, unsigned zero_every,
		     struct pagein_region_desc regs[2]);

void restore_opts_init(struct restore_opts *o);
/* Create zero-filled regions (from the snapshot's table), restore lazily, run the workload,
 * show progress, verify every region's digest. Returns 0 when verified, 1 otherwise. */
int run_restore(const struct restore_opts *o);
/* Write a snapshot of size bytes in two regions, pattern from seed, every zero_every-th page
 * zero. Returns 0 or -errno. */
int make_snapshot(const char *path, uint64_t size, uint64_t seed, unsigned zero_every);

#endif
