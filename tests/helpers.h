/* SPDX-License-Identifier: MIT */
/*
 * helpers.h - what the test programs share: an assert that prints file:line, the expression and
 * errno; skip/pass exits (0 pass, 1 fail, 77 skip with the reason printed); the seeded victim
 * pattern; capability probes (userfaultfd, huge pages); a log sink that keeps the last message;
 * a counting test source and space; for the bench tests, a soft check, a JSON-lines reader and a
 * runner that captures a command's stdout under a time limit.
 */
#ifndef PAGEIN_TEST_HELPERS_H
#define PAGEIN_TEST_HELPERS_H

#include <errno.h>
#include <stdbool.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pagein.h"
#include "pattern.h"

#define T_ASSERT(expr)                                                                         \
	do {                                                                                   \
		if (!(expr)) {                                                                 \
			int e_ = errno;                                                        \
			fprintf(stderr, "FAIL %s:%d: %s (errno %d %s)\n", __FILE__, __LINE__,  \
				#expr, e_, strerror(e_));                                      \
			exit(1);                                                               \
		}                                                                              \
	} while (0)

/* Assert a -errno style call returned want; print both on mismatch. */
#define T_EQ(got, want)                                                                        \
	do {                                                                                   \
		long long g_ = (long long)(got), w_ = (long long)(want);                       \
		if (g_ != w_) {                                                                \
			fprintf(stderr, "FAIL %s:%d: %s = %lld (%s), want %lld\n", __FILE__,   \
				__LINE__, #got, g_, g_ < 0 ? strerror((int)-g_) : "", w_);     \
			exit(1);                                                               \
		}                                                                              \
	} while (0)

/* Print why and exit 77. */
void t_skip(const char *fmt, ...) __attribute__((noreturn, format(printf, 1, 2)));
/* Print "PASS name" and exit 0. */
void t_pass(const char *name) __attribute__((noreturn));

/* The victim pattern (tools/pattern.h, the one the command writes): 8 bytes at guest address
 * gpa for seed. Never all-zero pages unless zero_every divides the page number (to exercise
 * zero pages). */
uint64_t t_word(uint64_t seed, uint64_t gpa);
/* Fill buf (guest addresses [gpa, gpa+len)) with the pattern; every zero_every-th 4 KiB page
 * stays zero (0 = none). */
void t_fill(void *buf, uint64_t gpa, uint64_t len, uint64_t seed, unsigned zero_every);
/* Check buf against the pattern; returns the first bad gpa, or UINT64_MAX when all match. */
uint64_t t_check(const void *buf, uint64_t gpa, uint64_t len, uint64_t seed, unsigned zero_every);

/* A TCP connection to 127.0.0.1:port (TCP_NODELAY; rcvbuf > 0 sets SO_RCVBUF first, to keep a
 * stream close to the reader). Fails the test if it cannot connect. */
int t_connect_loopback(int port, int rcvbuf);

/* Send a raw HELLO on fd (a hand-made client): role 1 urgent / 2 bulk, session 0 for a new one,
 * batch bulk pages per frame. Fails the test if it cannot be written. */
void t_send_hello(int fd, uint32_t role, uint64_t session, uint32_t batch);

/* Skip unless userfaultfd with the SIGBUS feature works here. */
void t_require_uffd(void);
/* Make sure n huge pages of 2 MiB can be had (raising vm.nr_hugepages as root), else skip. */
void t_require_hugepages(unsigned n);

/* Log sink for pagein_config.log: prints to stderr and keeps the last message. */
void t_log(void *arg, int level, const char *msg);
extern char t_last_log[512];

/* Parse "anon|shmem|hugetlb" and "self|handler"; exit 1 on anything else. */
enum pagein_backing t_backing(const char *s);
enum pagein_frontend t_frontend(const char *s);

/* CLOCK_MONOTONIC in milliseconds. */
uint64_t t_ms_now(void);

/* Random number in [0, n) from a per-caller state. */
uint64_t t_rand(uint64_t *state, uint64_t n);

/* A test source over a buffer that counts fetches per 4 KiB page and can be slow, fail, or hang
 * (until the fetch's deadline, then -ETIMEDOUT) for ranges holding chosen addresses. */
struct t_src {
	const uint8_t *buf;        /* image of [base, base+len) */
	uint64_t base, len;
	_Atomic unsigned *fetches; /* per 4 KiB page; allocated by t_src_new */
	uint64_t slow_gpa;         /* fetches holding it sleep slow_us (UINT64_MAX: none) */
	unsigned slow_us;
	uint64_t fail_gpa;         /* fetches holding it fail with fail_err (UINT64_MAX: none) */
	int fail_err;
	bool hang;                 /* fail_gpa hangs until the deadline instead */
};
/* Set defaults (nothing slow, nothing failing) and wrap t as a source. */
int t_src_new(struct t_src *t, const void *buf, uint64_t base, uint64_t len,
	      struct pagein_source **out);
/* Fetches of the page holding gpa so far. */
unsigned t_src_fetches(struct t_src *t, uint64_t gpa);
/* A simple space: one region of size bytes at gpa 0 with backing b, the pattern in a t_src.
 * Returns the host address; *img gets the image. */
struct t_space {
	struct pagein_space *s;
	struct pagein_source *src;
	struct t_src ts;
	uint8_t *host;
	void *img;
	uint64_t size;
};
void t_space_make(struct t_space *t, const struct pagein_config *cfg, enum pagein_backing b,
		  uint64_t size, uint64_t seed);
void t_space_free(struct t_space *t);

/* A check that reports file:line, the expression and a printf message on stderr, counts the
 * failure in t_failures and goes on (for tests that check every line of an output). */
#define T_CHECK(cond, ...)                                                                   \
	do {                                                                                 \
		if (!(cond)) {                                                               \
			fprintf(stderr, "%s:%d: check failed: %s: ", __FILE__, __LINE__, #cond); \
			fprintf(stderr, __VA_ARGS__);                                        \
			fprintf(stderr, "\n");                                               \
			t_failures++;                                                        \
		}                                                                            \
	} while (0)
/* Failed T_CHECKs so far (main thread only). */
extern int t_failures;

/* The pagein command a test runs: env PAGEIN_BIN, else ../pagein next to the test (from argv0),
 * else build/pagein. Prints FAIL and exits 1 when that is not executable. The path may be in a
 * static buffer: call it once, from main. */
const char *t_pagein_bin(const char *argv0);

/* Run bin with args (args[0] included, NULL-terminated) and capture its stdout into out,
 * NUL-terminated, at most outsz - 1 bytes; stderr stays the caller's. After timeout_ms the
 * command gets SIGTERM (pagein bench cleans up on it), 5 s later SIGKILL. Returns 0 when it
 * exited 0, else -1 with the reason printed on stderr. Blocks; any one thread. */
int t_run_capture(const char *bin, char *const args[], char *out, size_t outsz,
		  unsigned timeout_ms);

#define T_JSON_MAX_KEYS 64 /* top-level members t_json_parse_line keeps; a line with more fails */

/* One top-level member of a JSON object as t_json_parse_line keeps it. */
struct t_json_member {
	char key[48];  /* truncated */
	char type;     /* 'n' number, 's' string, 'b' bool, 'z' null, 'a' array, 'o' object */
	double num;    /* 'n': the value */
	bool b;        /* 'b': the value */
	char str[32];  /* 's': the value (truncated) */
	unsigned alen; /* 'a': elements */
	double amin;   /* 'a': smallest element if all are numbers, else -1 */
};

/* A parsed JSON object: its top-level members in order (nested values are checked, not kept). */
struct t_json_object {
	unsigned n;
	struct t_json_member m[T_JSON_MAX_KEYS];
};

/* Parse line as exactly one JSON object (blanks around tokens allowed, nesting to depth 8) into
 * o. Returns false on anything else, or on more than T_JSON_MAX_KEYS top-level members; o is
 * then partly filled. */
bool t_json_parse_line(const char *line, struct t_json_object *o);
/* The member named key, or NULL; points into o. */
const struct t_json_member *t_json_get(const struct t_json_object *o, const char *key);
/* The number under key, or -1 when it is missing or not a number. */
double t_json_num(const struct t_json_object *o, const char *key);

/* Walks the lines of a command's output (cut in place, as strtok_r does) as JSON objects. Start
 * with { .rest = out }; lines counts every line read so far. */
struct t_json_lines {
	char *rest, *save;
	unsigned lines;
};
/* The next line that parses as a JSON object, parsed into o; a line that does not fails a
 * T_CHECK ("<what>: line N is not a JSON object") and is passed over. NULL after the last. */
const char *t_json_next(struct t_json_lines *it, struct t_json_object *o, const char *what);

#endif

/* The pagein command's tests (t_cli_*): a child running bin with args (args[0] included), its
 * stdout and stderr on pipes (*out_fd, *err_fd; NULL leaves the stream the caller's), in a
 * process group of its own; setup, when not NULL, runs in the child before exec (limits,
 * signal dispositions). Returns the pid, or -1 with the reason printed. */
pid_t t_spawn(const char *bin, char *const args[], int *out_fd, int *err_fd,
	      void (*setup)(void));
/* Read the child's pipes (fd -1: none) into out/err (NUL-terminated, truncated to the buffers)
 * until both end, then reap it; after timeout_ms it gets SIGKILL. Returns its wait status, or -1
 * when it had to be killed or could not be waited for (reason printed). Closes the fds. */
int t_collect(pid_t pid, int out_fd, char *out, size_t outsz, int err_fd, char *err,
	      size_t errsz, unsigned timeout_ms);
/* t_spawn + t_collect: run, capture both streams, return the wait status (or -1). */
int t_run_status(const char *bin, char *const args[], char *out, size_t outsz, char *err,
		 size_t errsz, unsigned timeout_ms, void (*setup)(void));
/* The exit code of a wait status, or -1 (printing the signal) when the child did not exit. */
int t_exit_code(int status);

/* The port a `pagein serve --port-file PATH` wrote, waiting up to ms for it; 0 if none came. */
int t_read_port_file(const char *path, unsigned ms);
/* Start `pagein serve` (args must give --port-file pfile) and wait up to ms for its port: writes
 * "127.0.0.1:PORT" into addr and returns the pid. A server that writes no port is killed and
 * the test stops (T_ASSERT). */
pid_t t_serve_start(const char *bin, char *const args[], const char *pfile, int *out_fd,
		    int *err_fd, char *addr, size_t addrlen, unsigned ms);
/* Start `pagein restore` (args; its stderr must carry -v's "connected to") and wait up to ms
 * until it has connected: its stderr so far is in err (*len bytes, kept for t_collect's
 * err + *len). Returns the pid; a restore that never connects is a test failure (T_CHECK). */
pid_t t_restore_connected(const char *bin, char *const args[], int *out_fd, int *err_fd,
			  char *err, size_t errsz, size_t *len, unsigned ms);
/* Read fd (a child's pipe) into buf (NUL-terminated; *len bytes so far, kept across calls) until
 * want appears, the pipe ends, or ms pass. Returns whether want is in buf. */
bool t_wait_text(int fd, char *buf, size_t size, size_t *len, const char *want, unsigned ms);
/* One command on a `pagein --control PATH` socket: send cmd and a newline, read the one reply
 * line into reply (NUL-terminated, newline cut) within ms. Returns 0, or -errno (the socket
 * is not there yet: -ENOENT / -ECONNREFUSED). */
int t_ctl_query(const char *path, const char *cmd, char *reply, size_t size, unsigned ms);
