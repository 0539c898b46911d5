/* SPDX-License-Identifier: MIT */
/*
 * ctl.h - the control socket and status file of `serve` and `restore` (tools/ctl.c), and the
 * small JSON writer they answer with.
 */
#ifndef PAGEIN_TOOLS_CTL_H
#define PAGEIN_TOOLS_CTL_H

#include "tools.h"

/* A JSON object being written into a fixed buffer (truncated, never overrun). */
struct jbuf {
	char b[16384];
	size_t n;    /* bytes used */
	bool first;  /* no member yet in the innermost object or array */
};
void jb_begin(struct jbuf *j);  /* "{" */
void jb_end(struct jbuf *j);    /* "}" */
/* A nested object or array ('{' or '['), under key (NULL: an element of an array). */
void jb_open(struct jbuf *j, const char *key, char bracket);
void jb_close(struct jbuf *j, char bracket);
void jb_str(struct jbuf *j, const char *key, const char *v);
void jb_u64(struct jbuf *j, const char *key, uint64_t v);
void jb_num(struct jbuf *j, const char *key, double v);
void jb_bool(struct jbuf *j, const char *key, bool v);
void jb_raw(struct jbuf *j, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

struct ctl {
	const char *path;         /* --control: the socket, NULL = none */
	const char *status_file;  /* --status-file, NULL = none */
	unsigned interval_ms;     /* --status-interval (0: 1000) */
	const char *commands;     /* the commands besides status, for the error message */
	/* add the status members (called on the control thread only) */
	void (*status)(void *arg, struct jbuf *j);
	/* run cmd with arg: add members to j and return 0, or return -errno with err set
	 * (-ENOTSUP: not a command). Control thread only. */
	int (*command)(void *arg, const char *cmd, const char *arg_str, struct jbuf *j, char *err,
		       size_t errlen);
	void *arg;
	/* ours */
	int lfd, stop_efd;
	pthread_t thread;
	bool started, file_err;
	uint64_t seq;
	struct jbuf rbuf, fbuf;
};

/* Start serving c (nothing when neither path nor status_file is set); dies on failure. */
int ctl_start(struct ctl *c);
/* Stop the thread, write the status file a last time, remove the socket. */
void ctl_stop(struct ctl *c);

/* "100M", "1.5G", "0" (no limit): bytes per second (binary units). 0 or -EINVAL/-ERANGE. */
int parse_rate(const char *s, uint64_t *out);

#endif
