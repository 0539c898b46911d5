// SPDX-License-Identifier: MIT
/*
 * ctl.c - the running command's status for machines: a control socket (`--control PATH`, a Unix
 * stream socket taking one line command per connection, answering one JSON line) and a status
 * file (`--status-file PATH`, the same JSON as `status`, rewritten atomically every interval).
 * `serve` and `restore` supply the status and the commands; one thread of ours serves both.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "ctl.h"

#define CTL_LINE_MAX 512  /* longest command line taken */
#define CTL_READ_MS 2000  /* a client has this long to send its line */

void jb_raw(struct jbuf *j, const char *fmt, ...)
{
	va_list ap;
	int n;

	if (j->n >= sizeof(j->b))
		return;
	va_start(ap, fmt);
	n = vsnprintf(j->b + j->n, sizeof(j->b) - j->n, fmt, ap);
	va_end(ap);
	if (n > 0)
		j->n += (size_t)n < sizeof(j->b) - j->n ? (size_t)n : sizeof(j->b) - j->n - 1;
}

/* A comma before every member but the first of its object. */
static void jb_key(struct jbuf *j, const char *key)
{
	jb_raw(j, "%s\"%s\":", j->first ? "" : ",", key);
	j->first = false;
}

void jb_begin(struct jbuf *j)
{
	j->n = 0;
	j->b[0] = 0;
	j->first = true;
	jb_raw(j, "{");
}

void jb_open(struct jbuf *j, const char *key, char bracket)
{
	if (key)
		jb_key(j, key);
	else if (!j->first)
		jb_raw(j, ",");
	jb_raw(j, "%c", bracket);
	j->first = true;
}

void jb_close(struct jbuf *j, char bracket)
{
	jb_raw(j, "%c", bracket);
	j->first = false;
}

void jb_str(struct jbuf *j, const char *key, const char *v)
{
	const char *p;

	jb_key(j, key);
	jb_raw(j, "\"");
	for (p = v; *p; p++) {
		if (*p == '"' || *p == '\\')
			jb_raw(j, "\\%c", *p);
		else if ((unsigned char)*p < 0x20)
			jb_raw(j, "\\u%04x", (unsigned char)*p);
		else
			jb_raw(j, "%c", *p);
	}
	jb_raw(j, "\"");
}

void jb_u64(struct jbuf *j, const char *key, uint64_t v)
{
	jb_key(j, key);
	jb_raw(j, "%" PRIu64, v);
}

void jb_num(struct jbuf *j, const char *key, double v)
{
	jb_key(j, key);
	jb_raw(j, "%.3f", v == v && v < 1e300 && v > -1e300 ? v : 0.0);
}

void jb_bool(struct jbuf *j, const char *key, bool v)
{
	jb_key(j, key);
	jb_raw(j, "%s", v ? "true" : "false");
}

void jb_end(struct jbuf *j)
{
	jb_raw(j, "}");
}

/* The status object, as `status` answers and the status file holds. */
static void ctl_status(struct ctl *c, struct jbuf *j)
{
	jb_begin(j);
	jb_bool(j, "ok", true);
	jb_u64(j, "seq", ++c->seq);
	jb_u64(j, "pid", (uint64_t)getpid());
	c->status(c->arg, j);
	jb_end(j);
}

/* Rewrite the status file: a temporary file beside it, renamed over it (readers never see
 * half a file). Errors are reported once. */
static void ctl_write_file(struct ctl *c)
{
	struct jbuf *j = &c->fbuf;
	char tmp[4200];
	FILE *f;

	ctl_status(c, j);
	snprintf(tmp, sizeof(tmp), "%s.tmp%d", c->status_file, (int)getpid());
	f = fopen(tmp, "w");
	if (!f || fprintf(f, "%s\n", j->b) < 0 || fclose(f) != 0 || rename(tmp, c->status_file)) {
		if (!c->file_err)
			fprintf(stderr, "pagein: cannot write the status file %s: %s\n",
				c->status_file, strerror(errno));
		c->file_err = true;
		unlink(tmp);
		return;
	}
}

/* One client: read its line, answer it, close. */
static void ctl_client(struct ctl *c, int fd)
{
	struct pollfd pfd = { .fd = fd, .events = POLLIN };
	char line[CTL_LINE_MAX + 1], *nl = NULL, *arg;
	struct jbuf *j = &c->rbuf;
	size_t len = 0;
	ssize_t n;
	unsigned k;

	for (k = 0; k < 64 && !nl && len < CTL_LINE_MAX; k++) {
		if (poll(&pfd, 1, CTL_READ_MS) <= 0)
			goto out;
		n = read(fd, line + len, CTL_LINE_MAX - len);
		if (n <= 0)
			break;
		len += (size_t)n;
		line[len] = 0;
		nl = strchr(line, '\n');
	}
	line[len] = 0;
	if (nl)
		*nl = 0;
	if (len && line[strlen(line) - 1] == '\r')
		line[strlen(line) - 1] = 0;
	arg = strchr(line, ' ');
	if (arg) {
		*arg++ = 0;
		while (*arg == ' ')
			arg++;
	}
	if (!strcmp(line, "status")) {
		ctl_status(c, j);
	} else {
		char err[256] = "";
		int ret;

		jb_begin(j);
		jb_bool(j, "ok", true);
		ret = c->command ? c->command(c->arg, line, arg ? arg : "", j, err, sizeof(err))
				 : -ENOTSUP;
		if (ret == -ENOTSUP && !err[0])
			snprintf(err, sizeof(err), "unknown command '%s' (status, %s)", line,
				 c->commands ? c->commands : "");
		if (ret < 0) {
			jb_begin(j); /* nothing half-written goes out */
			jb_bool(j, "ok", false);
			jb_str(j, "error", err);
		}
		jb_end(j);
	}
	jb_raw(j, "\n");
	if (write(fd, j->b, j->n) < 0)
		goto out;
out:
	close(fd);
}

static void *ctl_main(void *arg)
{
	struct ctl *c = arg;
	struct pollfd pfd[2] = { { .fd = c->lfd, .events = POLLIN },
				 { .fd = c->stop_efd, .events = POLLIN } };
	uint64_t next = now_ns(), now;
	int fd, ms;

	for (;;) {
		now = now_ns();
		if (c->status_file && now >= next) {
			ctl_write_file(c);
			next = now + (uint64_t)c->interval_ms * 1000000ull;
		}
		ms = c->status_file ? (int)((next - now_ns() + 999999) / 1000000) : -1;
		if (ms < -1)
			ms = 0;
		if (poll(pfd, 2, ms) < 0 && errno != EINTR) /* a -1 fd is passed over */
			break;
		if (pfd[1].revents)
			break;
		if (c->lfd >= 0 && (pfd[0].revents & POLLIN)) {
			fd = accept4(c->lfd, NULL, NULL, SOCK_CLOEXEC);
			if (fd >= 0)
				ctl_client(c, fd);
		}
	}
	return NULL;
}

int ctl_start(struct ctl *c)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	sigset_t all, old;
	int ret;

	c->lfd = -1;
	if (!c->path && !c->status_file)
		return 0;
	if (!c->interval_ms)
		c->interval_ms = 1000;
	c->stop_efd = eventfd(0, EFD_CLOEXEC);
	if (c->stop_efd < 0)
		die_code(EXIT_LOCAL, "eventfd: %s", strerror(errno));
	if (c->path) {
		if (strlen(c->path) >= sizeof(sa.sun_path))
			die_code(EXIT_USAGE, "--control %s: longer than %zu bytes", c->path,
				 sizeof(sa.sun_path) - 1);
		strcpy(sa.sun_path, c->path);
		c->lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
		if (c->lfd < 0)
			die_code(EXIT_LOCAL, "socket: %s", strerror(errno));
		/* a socket a previous run left behind is replaced; anything else is kept */
		{
			struct stat st;

			if (lstat(c->path, &st) == 0 && S_ISSOCK(st.st_mode))
				unlink(c->path);
		}
		if (bind(c->lfd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(c->lfd, 8) < 0)
			die_code(exit_for_errno(errno, EXIT_ERROR), "--control %s: %s", c->path,
				 strerror(errno));
		/* the memory's state is for its owner: rw for the user only */
		chmod(c->path, 0600);
	}
	/* the thread takes no signal: they stay the command's */
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	ret = pthread_create(&c->thread, NULL, ctl_main, c);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (ret)
		die_code(EXIT_LOCAL, "pthread_create: %s", strerror(ret));
	c->started = true;
	return 0;
}

void ctl_stop(struct ctl *c)
{
	uint64_t one = 1;

	if (!c->started)
		return;
	if (write(c->stop_efd, &one, sizeof(one)) < 0)
		pr_err("stopping the control thread: %s", strerror(errno));
	pthread_join(c->thread, NULL);
	c->started = false;
	if (c->status_file)
		ctl_write_file(c); /* the last word: the final state */
	if (c->lfd >= 0) {
		close(c->lfd);
		unlink(c->path);
	}
	close(c->stop_efd);
}
