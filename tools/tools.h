/* SPDX-License-Identifier: MIT */
/*
 * tools.h - what the pagein command's files share: the subcommand entry points, printing and
 * dying helpers, size parsing, and the restore engine that `restore` and `demo` drive.
 */
#ifndef PAGEIN_TOOLS_H
#define PAGEIN_TOOLS_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "pagein.h"
#include "pagein-vmm.h"

/*
 * Exit codes scripts can act on (docs/man/pagein.1 lists them). Beyond 0 and usage's 2 they are
 * the <sysexits.h> values: set only on purpose, they never collide with 1 (any other failure,
 * a sanitizer's report included), with the shell's 126/127 or with 128+N for death by signal.
 */
enum tool_exit {
	EXIT_OK = 0,            /* restored and every region verified (or: the command did its job) */
	EXIT_ERROR = 1,         /* anything else (a bug, an unexpected error) */
	EXIT_USAGE = 2,         /* bad option, number or combination; nothing was done */
	EXIT_WRONG_BYTES = 65,  /* EX_DATAERR: memory restored, but a digest did not match */
	EXIT_SOURCE_LOST = 69,  /* EX_UNAVAILABLE: the source (server or snapshot) could not be
				 * reached or read, or failed or went away during the restore */
	EXIT_LOCAL = 71,        /* EX_OSERR: a local resource failed: memory, userfaultfd
				 * permission, huge pages, threads, disk space */
	EXIT_CUT = 75,          /* EX_TEMPFAIL: serve stopped by a second signal with sessions
				 * under way (named on stderr); their destinations may resume
				 * from another server */
};

/* Print "pagein: msg" on stderr and exit 1 (die) or with code (die_code). */
void die(const char *fmt, ...) __attribute__((noreturn, format(printf, 1, 2)));
void die_code(int code, const char *fmt, ...) __attribute__((noreturn, format(printf, 2, 3)));
/* The exit code for a failed local call's -errno: EXIT_LOCAL for want of memory, files,
 * permission or space, else fallback. */
int exit_for_errno(int err, int fallback);
void pr_err(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void pr_info(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* CLOCK_MONOTONIC in ns. */
uint64_t now_ns(void);
/* xorshift64: the next pseudo-random number of state *s (never 0 if *s is not 0). */
uint64_t xorshift(uint64_t *s);
/* qsort comparator for uint32_t. */
int cmp_u32(const void *a, const void *b);

/* The number parser (tools/parse.c). parse_*: 0 or -EINVAL (not such a number) / -ERANGE (it
 * overflows) / -EDOM (a port out of range); nothing printed. opt_*: the value, or a message naming opt and the range and exit
 * EXIT_USAGE. Whole numbers are decimal or 0x hex, no sign; sizes are "4096", "64K", "1.5G",
 * "2T" (binary units, an optional "iB"/"B", fractions rounded down to a byte). */
int parse_u64(const char *s, uint64_t *out);
int parse_size_bytes(const char *s, uint64_t *out);
int parse_seconds(const char *s, double *out);
/* "HOST:PORT" ([v6]:PORT): the port must be 1..65535 (0 too when zero_ok). */
int parse_hostport(const char *s, bool zero_ok, unsigned *port);
uint64_t opt_u64(const char *opt, const char *arg, uint64_t min, uint64_t max);
unsigned opt_uint(const char *opt, const char *arg, unsigned min, unsigned max);
uint64_t opt_size(const char *opt, const char *arg, uint64_t min, uint64_t max);
double opt_seconds(const char *opt, const char *arg, double min, double max);
void opt_hostport(const char *opt, const char *arg, bool zero_ok);
/* A size of any value; exits EXIT_USAGE with a message on anything else (opt_size names the
 * option: prefer it). */
uint64_t parse_size(const char *s);

/* The report (tools/report.c). Latency at quantile q (0..1) of a log2 histogram, in ns,
 * interpolated within its bucket by rank (never a bucket edge: the midpoint rule), 0 if empty. */
double hist_quantile(const uint64_t *hist, unsigned nbuckets, double q);
/* JSON output: one object per line on stdout, built with these (not thread-safe). */
void json_begin(const char *event, const char *state);
void json_str(const char *key, const char *val);
void json_u64(const char *key, uint64_t v);
void json_num(const char *key, double v);
void json_bool(const char *key, bool v);
void json_u64_array(const char *key, const uint64_t *v, unsigned n);
void json_end(void);
/* Log sink for pagein_config.log that prints "pagein: msg" to stderr (errors and warnings only
 * unless verbose). */
void tool_log(void *arg, int level, const char *msg);
extern bool tool_verbose;

/* Subcommands: one file each (tools/cmd-NAME.c); the benchmark has its own folder (bench/). */
int cmd_bench(int argc, char **argv);
int cmd_ctl(int argc, char **argv);
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
	bool quiet;                      /* no progress line (on stderr) */
	bool json;                       /* stdout: one JSON summary; human results to stderr */
	double json_interval;            /* > 0: a JSON progress line this often (seconds) */
	const char *from_addr;           /* HOST:PORT of a page server (instead of from_file) */
	bool urgent;                     /* network: faults on their own connection */
	unsigned bulk;                   /* network: bulk connections (0: faults only) */
	bool compress;                   /* network: accept LZ4 pages */
	const char *from_raw;            /* a raw memory file (instead of from_file/from_addr) */
	const char *layout;              /* its layout, "GPA+SIZE[@OFFSET],..." */
	const char *record_ws;           /* record the working set to this file */
	const char *prefetch_ws;         /* prefetch this working set */
	const char *psk_file;            /* network: TLS with a pre-shared key */
	const char *tls_cert, *tls_key, *tls_ca, *tls_name; /* network: TLS with certificates */
	bool insecure;                   /* network: plain TCP off loopback */
	bool no_pause;                   /* network: fail at once on a lost link (default: pause,
					  * reconnect and resume) */
	unsigned pause_limit_ms;         /* network: then fail after this (0 = never) */
	const char *reconnect[7];        /* network: alternate servers a recovery tries in turn
					  * after --from (--reconnect, repeatable) */
	unsigned nreconnect;
	const char *control;             /* --control: a control socket (tools/ctl.c) */
	const char *status_file;         /* --status-file: the status JSON, rewritten */
	unsigned status_ms;              /* --status-interval (0: 1000) */
};

/* The generated guest image the demo and the snapshots use: *size (rounded up to 4 MiB) bytes
 * of the seeded pattern, every zero_every-th page zero, split into two regions described by
 * regs (digests filled in). Returns the buffer (free() it) or NULL. */
uint64_t *make_image(uint64_t *size, uint64_t seed, unsigned zero_every,
		     struct pagein_region_desc regs[2]);

void restore_opts_init(struct restore_opts *o);
/* Create zero-filled regions (from the snapshot's table), restore lazily, run the workload,
 * show progress, verify every region's digest. Returns EXIT_OK when verified, EXIT_WRONG_BYTES
 * or EXIT_SOURCE_LOST (after a summary); dies with EXIT_SOURCE_LOST / EXIT_LOCAL / EXIT_USAGE
 * when it cannot start. */
int run_restore(const struct restore_opts *o);
/* Write a snapshot of size bytes in two regions, pattern from seed, every zero_every-th page
 * zero, to a temporary file beside path renamed over it at the end (so a failure, ENOSPC
 * included, leaves no partial file); an existing path is kept (-EEXIST) unless force. Returns
 * 0 or -errno. */
int make_snapshot(const char *path, uint64_t size, uint64_t seed, unsigned zero_every,
		  bool force);

/* A snapshot's (or a page server's) identity for working sets: its region table with the
 * regions' content digests, as pagein_snapshot_regions reads it. */
uint64_t snapshot_image_id(const struct pagein_region_desc *regs, unsigned n);

/* pagein_ws_prefetch on a thread of its own beside a workload (restore, bench --ws). */
struct ws_prefetch {
	struct pagein_space *s;
	const char *path;
	uint64_t image_id;
	pthread_t thread;
	struct pagein_ws_stats st; /* its counters, after the join */
	int ret;                   /* its return, after the join */
	char err[256];             /* why, when ret < 0 */
};
/* Start it; returns 0 or pthread_create's error number. */
int ws_prefetch_start(struct ws_prefetch *p, struct pagein_space *s, const char *path,
		      uint64_t image_id);
void ws_prefetch_join(struct ws_prefetch *p);

#endif
