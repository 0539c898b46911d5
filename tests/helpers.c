// SPDX-License-Identifier: MIT
/*
 * helpers.c - shared test helpers: exits, the seeded victim pattern, capability probes, the
 * log sink, the counting test source and space, and for the bench tests the JSON-lines reader and
 * the capture-with-timeout runner (see helpers.h).
 */
#include <ctype.h>
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "helpers.h"
#include "net/wire.h"

char t_last_log[512];
int t_failures;

void t_skip(const char *fmt, ...)
{
	va_list ap;

	printf("SKIP: ");
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	printf("\n");
	exit(77);
}

void t_pass(const char *name)
{
	printf("PASS %s\n", name);
	exit(0);
}

uint64_t t_word(uint64_t seed, uint64_t gpa)
{
	return pattern_word(seed, gpa);
}

void t_fill(void *buf, uint64_t gpa, uint64_t len, uint64_t seed, unsigned zero_every)
{
	pattern_fill(buf, gpa, len, seed, zero_every);
}

uint64_t t_check(const void *buf, uint64_t gpa, uint64_t len, uint64_t seed, unsigned zero_every)
{
	return pattern_check(buf, gpa, len, seed, zero_every);
}

void t_send_hello(int fd, uint32_t role, uint64_t session, uint32_t batch)
{
	struct {
		struct pn_hdr h;
		struct pn_hello b;
	} __attribute__((packed)) m;

	memset(&m, 0, sizeof(m));
	m.h.len = sizeof(m.b);
	m.h.type = PN_HELLO;
	memcpy(m.b.magic, PN_MAGIC, 8);
	m.b.version = PN_VERSION;
	m.b.page_size = PN_PAGE;
	m.b.role = role;
	m.b.batch_pages = batch;
	m.b.session = session;
	T_ASSERT(write(fd, &m, sizeof(m)) == (ssize_t)sizeof(m));
}

int t_connect_loopback(int port, int rcvbuf)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), one = 1;

	T_ASSERT(fd >= 0);
	if (rcvbuf > 0)
		T_ASSERT(setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof(rcvbuf)) == 0);
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	T_ASSERT(connect(fd, (struct sockaddr *)&a, sizeof(a)) == 0);
	return fd;
}

void t_require_uffd(void)
{
	struct pagein_space *s;
	int ret = pagein_space_new(NULL, &s);

	if (ret == -EPERM)
		t_skip("userfaultfd is not permitted for this user (run as root or set "
		       "vm.unprivileged_userfaultfd=1)");
	if (ret == -ENOSYS)
		t_skip("this kernel lacks userfaultfd or UFFD_FEATURE_SIGBUS");
	if (ret < 0) {
		fprintf(stderr, "FAIL: pagein_space_new: %s\n", strerror(-ret));
		exit(1);
	}
	pagein_space_free(s);
}

static long hugepages_free(void)
{
	char line[128];
	long v = -1;
	FILE *f = fopen("/proc/meminfo", "r");

	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "HugePages_Free: %ld", &v) == 1)
			break;
	fclose(f);
	return v;
}

void t_require_hugepages(unsigned n)
{
	long have = hugepages_free(), total = 0;
	FILE *f;

	if (have >= (long)n)
		return;
	f = fopen("/proc/sys/vm/nr_hugepages", "r+");
	if (f) {
		if (fscanf(f, "%ld", &total) == 1) {
			rewind(f);
			fprintf(f, "%ld\n", total + (long)n - (have > 0 ? have : 0));
		}
		fclose(f);
	}
	have = hugepages_free();
	if (have < (long)n)
		t_skip("needs %u free 2 MiB huge pages, %ld available (as root: echo %u > "
		       "/proc/sys/vm/nr_hugepages)",
		       n, have, n);
}

/* the library logs from its own threads too */
static pthread_mutex_t t_log_lock = PTHREAD_MUTEX_INITIALIZER;

void t_log(void *arg, int level, const char *msg)
{
	pthread_mutex_lock(&t_log_lock);
	snprintf(t_last_log, sizeof(t_last_log), "%s", msg);
	pthread_mutex_unlock(&t_log_lock);
	if (!getenv("T_QUIET"))
		fprintf(stderr, "  [pagein %d] %s\n", level, msg);
}

enum pagein_backing t_backing(const char *s)
{
	if (!strcmp(s, "anon"))
		return PAGEIN_BACKING_ANON;
	if (!strcmp(s, "shmem"))
		return PAGEIN_BACKING_SHMEM;
	if (!strcmp(s, "hugetlb"))
		return PAGEIN_BACKING_HUGETLB;
	fprintf(stderr, "unknown backing %s\n", s);
	exit(1);
}

enum pagein_frontend t_frontend(const char *s)
{
	if (!strcmp(s, "self"))
		return PAGEIN_FRONTEND_SELF;
	if (!strcmp(s, "handler"))
		return PAGEIN_FRONTEND_HANDLER;
	fprintf(stderr, "unknown front-end %s\n", s);
	exit(1);
}

uint64_t t_ms_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

uint64_t t_rand(uint64_t *state, uint64_t n)
{
	*state ^= *state << 13;
	*state ^= *state >> 7;
	*state ^= *state << 17;
	return *state % n;
}

static bool t_holds(uint64_t gpa, uint64_t len, uint64_t x)
{
	return x != UINT64_MAX && x >= gpa && x - gpa < len;
}

/* Async-signal-safe: atomics, nanosleep, memcpy. */
static int t_src_fetch(void *ctx, uint64_t gpa, void *dst, uint64_t len, uint64_t page_size,
		       uint64_t *zero_mask, uint64_t deadline_ns)
{
	struct t_src *t = ctx;
	uint64_t i;

	if (gpa < t->base || gpa + len > t->base + t->len)
		return -EINVAL;
	for (i = 0; i < len; i += 4096)
		atomic_fetch_add(&t->fetches[(gpa - t->base + i) / 4096], 1);
	if (t_holds(gpa, len, t->slow_gpa)) {
		struct timespec ts = { t->slow_us / 1000000, (long)(t->slow_us % 1000000) * 1000 };

		nanosleep(&ts, NULL);
	}
	if (t_holds(gpa, len, t->fail_gpa)) {
		if (!t->hang)
			return t->fail_err;
		for (;;) {
			struct timespec ts = { 0, 1000000 }, now;

			clock_gettime(CLOCK_MONOTONIC, &now);
			if (deadline_ns &&
			    (uint64_t)now.tv_sec * 1000000000ull + (uint64_t)now.tv_nsec >= deadline_ns)
				return -ETIMEDOUT;
			nanosleep(&ts, NULL);
		}
	}
	memcpy(dst, t->buf + (gpa - t->base), len);
	return 0;
}

static bool t_src_covers(void *ctx, uint64_t gpa, uint64_t len)
{
	struct t_src *t = ctx;

	return gpa >= t->base && gpa + len <= t->base + t->len;
}

int t_src_new(struct t_src *t, const void *buf, uint64_t base, uint64_t len,
	      struct pagein_source **out)
{
	static const struct pagein_source_ops ops = { .fetch = t_src_fetch, .covers = t_src_covers };

	t->buf = buf;
	t->base = base;
	t->len = len;
	t->fetches = calloc(len / 4096, sizeof(*t->fetches));
	t->slow_gpa = t->fail_gpa = UINT64_MAX;
	t->slow_us = 0;
	t->fail_err = -EIO;
	t->hang = false;
	if (!t->fetches)
		return -ENOMEM;
	return pagein_source_new(&ops, t, out);
}

unsigned t_src_fetches(struct t_src *t, uint64_t gpa)
{
	return atomic_load(&t->fetches[(gpa - t->base) / 4096]);
}

void t_space_make(struct t_space *t, const struct pagein_config *cfg, enum pagein_backing b,
		  uint64_t size, uint64_t seed)
{
	memset(t, 0, sizeof(*t));
	t->size = size;
	t->img = malloc(size);
	T_ASSERT(t->img);
	t_fill(t->img, 0, size, seed, 0);
	T_EQ(pagein_space_new(cfg, &t->s), 0);
	T_EQ(pagein_region_add(t->s, 0, size, b, (void **)&t->host), 0);
	T_EQ(t_src_new(&t->ts, t->img, 0, size, &t->src), 0);
	T_EQ(pagein_space_set_source(t->s, t->src), 0);
}

void t_space_free(struct t_space *t)
{
	pagein_space_free(t->s);
	pagein_source_free(t->src);
	free(t->ts.fetches);
	free(t->img);
}

const char *t_pagein_bin(const char *argv0)
{
	static char buf[4096];
	const char *bin = getenv("PAGEIN_BIN"), *slash = strrchr(argv0, '/');

	if (!bin || !*bin) {
		bin = "build/pagein";
		if (slash) {
			snprintf(buf, sizeof(buf), "%.*s/../pagein", (int)(slash - argv0), argv0);
			if (!access(buf, X_OK))
				bin = buf;
		}
	}
	if (access(bin, X_OK)) {
		printf("FAIL: %s is not an executable (build it with make, or set PAGEIN_BIN)\n",
		       bin);
		exit(1);
	}
	return bin;
}

static long t_ms_since(const struct timespec *t0)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (t.tv_sec - t0->tv_sec) * 1000 + (t.tv_nsec - t0->tv_nsec) / 1000000;
}

static void t_print_cmd(char *const args[])
{
	unsigned i;

	for (i = 0; args[i]; i++)
		fprintf(stderr, "%s%s", i ? " " : "", args[i]);
}

int t_run_capture(const char *bin, char *const args[], char *out, size_t outsz,
		  unsigned timeout_ms)
{
	struct timespec t0;
	struct pollfd pfd;
	size_t len = 0;
	int fd[2], status, i;
	ssize_t n;
	pid_t pid;

	out[0] = 0;
	if (pipe2(fd, O_CLOEXEC)) {
		perror("pipe2");
		return -1;
	}
	pid = fork();
	if (pid < 0) {
		perror("fork");
		close(fd[0]);
		close(fd[1]);
		return -1;
	}
	if (pid == 0) {
		dup2(fd[1], 1);
		execv(bin, args);
		fprintf(stderr, "exec %s: %s\n", bin, strerror(errno));
		_exit(127);
	}
	close(fd[1]);
	clock_gettime(CLOCK_MONOTONIC, &t0);
	pfd.fd = fd[0];
	pfd.events = POLLIN;
	/* read until end of file, a full buffer or the deadline; then wait, still to the deadline
	 * (a command that closes its stdout early must not hang the test) */
	while (len < outsz - 1 && t_ms_since(&t0) <= (long)timeout_ms) {
		if (poll(&pfd, 1, 1000) <= 0)
			continue;
		n = read(fd[0], out + len, outsz - 1 - len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		len += (size_t)n;
	}
	out[len] = 0;
	close(fd[0]);
	while ((i = waitpid(pid, &status, WNOHANG)) == 0 && t_ms_since(&t0) <= (long)timeout_ms)
		usleep(10000);
	if (i < 0) {
		perror("waitpid");
		return -1;
	}
	if (i == 0) {
		t_print_cmd(args);
		fprintf(stderr, ": did not finish in %u ms: stopping it\n", timeout_ms);
		kill(pid, SIGTERM);
		for (i = 0; i < 50 && waitpid(pid, &status, WNOHANG) == 0; i++)
			usleep(100000);
		if (i == 50) {
			kill(pid, SIGKILL);
			waitpid(pid, &status, 0);
		}
		return -1;
	}
	if (!WIFEXITED(status) || WEXITSTATUS(status)) {
		t_print_cmd(args);
		fprintf(stderr, ": exited with status 0x%x\n", status);
		return -1;
	}
	return 0;
}

/* The JSON reader: a cursor over one line; bad latches the first error. */
struct t_json_reader {
	const char *p;
	bool bad;
};

static void t_json_skip_ws(struct t_json_reader *r)
{
	while (*r->p == ' ' || *r->p == '\t')
		r->p++;
}

static bool t_json_eat(struct t_json_reader *r, char c)
{
	t_json_skip_ws(r);
	if (*r->p != c)
		return false;
	r->p++;
	return true;
}

static void t_json_string(struct t_json_reader *r, char *out, size_t outsz)
{
	size_t n = 0;

	if (!t_json_eat(r, '"')) {
		r->bad = true;
		return;
	}
	while (*r->p && *r->p != '"') {
		if (*r->p == '\\' && r->p[1])
			r->p++;
		if (out && n + 1 < outsz)
			out[n++] = *r->p;
		r->p++;
	}
	if (out)
		out[n] = 0;
	if (!t_json_eat(r, '"'))
		r->bad = true;
}

static double t_json_number(struct t_json_reader *r)
{
	char *end;
	double v;

	t_json_skip_ws(r);
	v = strtod(r->p, &end);
	if (end == r->p || !(*r->p == '-' || isdigit((unsigned char)*r->p)))
		r->bad = true;
	r->p = end;
	return v;
}

static void t_json_value(struct t_json_reader *r, struct t_json_member *m, unsigned depth);

static void t_json_array(struct t_json_reader *r, struct t_json_member *m, unsigned depth)
{
	struct t_json_member e;

	m->alen = 0;
	m->amin = 1e300;
	if (t_json_eat(r, ']'))
		return;
	do {
		memset(&e, 0, sizeof(e));
		t_json_value(r, &e, depth + 1);
		m->alen++;
		if (e.type != 'n')
			m->amin = -1;
		else if (m->amin >= 0 && e.num < m->amin)
			m->amin = e.num;
	} while (!r->bad && t_json_eat(r, ','));
	if (!t_json_eat(r, ']'))
		r->bad = true;
}

/* The members after '{'; kept in o when there is one (the top level), else only checked. */
static void t_json_members(struct t_json_reader *r, struct t_json_object *o, unsigned depth)
{
	struct t_json_member tmp, *m;
	char key[sizeof(tmp.key)];

	if (t_json_eat(r, '}'))
		return;
	do {
		t_json_string(r, key, sizeof(key));
		if (r->bad || !t_json_eat(r, ':') || (o && o->n == T_JSON_MAX_KEYS)) {
			r->bad = true;
			return;
		}
		m = o ? &o->m[o->n++] : &tmp;
		memset(m, 0, sizeof(*m));
		snprintf(m->key, sizeof(m->key), "%s", key);
		t_json_value(r, m, depth + 1);
	} while (!r->bad && t_json_eat(r, ','));
	if (!t_json_eat(r, '}'))
		r->bad = true;
}

static void t_json_value(struct t_json_reader *r, struct t_json_member *m, unsigned depth)
{
	t_json_skip_ws(r);
	if (depth > 8) {
		r->bad = true;
		return;
	}
	if (*r->p == '"') {
		m->type = 's';
		t_json_string(r, m->str, sizeof(m->str));
	} else if (*r->p == '[') {
		r->p++;
		m->type = 'a';
		t_json_array(r, m, depth);
	} else if (*r->p == '{') {
		r->p++;
		m->type = 'o';
		t_json_members(r, NULL, depth);
	} else if (!strncmp(r->p, "true", 4) || !strncmp(r->p, "false", 5)) {
		m->type = 'b';
		m->b = *r->p == 't';
		r->p += m->b ? 4 : 5;
	} else if (!strncmp(r->p, "null", 4)) {
		m->type = 'z';
		r->p += 4;
	} else {
		m->type = 'n';
		m->num = t_json_number(r);
	}
}

bool t_json_parse_line(const char *line, struct t_json_object *o)
{
	struct t_json_reader r = { .p = line, .bad = false };

	o->n = 0;
	if (!t_json_eat(&r, '{'))
		return false;
	t_json_members(&r, o, 0);
	t_json_skip_ws(&r);
	return !r.bad && *r.p == 0;
}

const struct t_json_member *t_json_get(const struct t_json_object *o, const char *key)
{
	unsigned i;

	for (i = 0; i < o->n; i++)
		if (!strcmp(o->m[i].key, key))
			return &o->m[i];
	return NULL;
}

double t_json_num(const struct t_json_object *o, const char *key)
{
	const struct t_json_member *m = t_json_get(o, key);

	return m && m->type == 'n' ? m->num : -1;
}

pid_t t_spawn(const char *bin, char *const args[], int *out_fd, int *err_fd,
	      void (*setup)(void))
{
	int o[2] = { -1, -1 }, e[2] = { -1, -1 }, i;
	pid_t pid;

	if ((out_fd && pipe2(o, O_CLOEXEC)) || (err_fd && pipe2(e, O_CLOEXEC))) {
		perror("pipe2");
		goto fail;
	}
	fflush(NULL);
	pid = fork();
	if (pid < 0) {
		perror("fork");
		goto fail;
	}
	if (pid == 0) {
		setpgid(0, 0);
		if (out_fd)
			dup2(o[1], 1);
		if (err_fd)
			dup2(e[1], 2);
		if (setup)
			setup();
		execv(bin, args);
		fprintf(stderr, "exec %s: %s\n", bin, strerror(errno));
		_exit(127);
	}
	if (out_fd) {
		close(o[1]);
		*out_fd = o[0];
	}
	if (err_fd) {
		close(e[1]);
		*err_fd = e[0];
	}
	return pid;
fail:
	for (i = 0; i < 2; i++) {
		if (o[i] >= 0)
			close(o[i]);
		if (e[i] >= 0)
			close(e[i]);
	}
	return -1;
}

int t_collect(pid_t pid, int out_fd, char *out, size_t outsz, int err_fd, char *err,
	      size_t errsz, unsigned timeout_ms)
{
	struct pollfd pfd[2] = { { .fd = out_fd, .events = POLLIN }, { .fd = err_fd, .events = POLLIN } };
	char *buf[2] = { out, err }, sink[4096];
	size_t len[2] = { 0, 0 }, sz[2] = { outsz, errsz };
	struct timespec t0;
	int status, i, killed = 0;
	ssize_t n;

	if (out)
		out[0] = 0;
	if (err)
		err[0] = 0;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	while ((pfd[0].fd >= 0 || pfd[1].fd >= 0) && t_ms_since(&t0) <= (long)timeout_ms) {
		if (poll(pfd, 2, 200) <= 0)
			continue;
		for (i = 0; i < 2; i++) {
			if (pfd[i].fd < 0 || !pfd[i].revents)
				continue;
			/* past the buffer, keep draining so the child never blocks on a full pipe */
			if (buf[i] && len[i] + 1 < sz[i])
				n = read(pfd[i].fd, buf[i] + len[i], sz[i] - 1 - len[i]);
			else
				n = read(pfd[i].fd, sink, sizeof(sink));
			if (n < 0 && errno == EINTR)
				continue;
			if (n <= 0) {
				close(pfd[i].fd);
				pfd[i].fd = -1;
				continue;
			}
			if (buf[i] && len[i] + 1 < sz[i]) {
				len[i] += (size_t)n;
				buf[i][len[i]] = 0;
			}
		}
	}
	for (i = 0; i < 2; i++)
		if (pfd[i].fd >= 0)
			close(pfd[i].fd);
	while ((i = waitpid(pid, &status, WNOHANG)) == 0 && t_ms_since(&t0) <= (long)timeout_ms)
		usleep(10000);
	if (i == 0) {
		fprintf(stderr, "pid %d did not finish in %u ms: killing it\n", (int)pid, timeout_ms);
		kill(-pid, SIGKILL);
		kill(pid, SIGKILL);
		i = waitpid(pid, &status, 0);
		killed = 1;
	}
	if (i < 0) {
		perror("waitpid");
		return -1;
	}
	return killed ? -1 : status;
}

int t_run_status(const char *bin, char *const args[], char *out, size_t outsz, char *err,
		 size_t errsz, unsigned timeout_ms, void (*setup)(void))
{
	int ofd = -1, efd = -1;
	pid_t pid = t_spawn(bin, args, &ofd, &efd, setup);

	if (pid < 0)
		return -1;
	return t_collect(pid, ofd, out, outsz, efd, err, errsz, timeout_ms);
}

int t_exit_code(int status)
{
	if (status < 0)
		return -1;
	if (WIFSIGNALED(status)) {
		fprintf(stderr, "the command was killed by signal %d (%s)\n", WTERMSIG(status),
			strsignal(WTERMSIG(status)));
		return -1;
	}
	return WEXITSTATUS(status);
}

const char *t_json_next(struct t_json_lines *it, struct t_json_object *o, const char *what)
{
	char *line;

	while ((line = strtok_r(it->rest, "\n", &it->save)) != NULL) {
		it->rest = NULL; /* strtok_r goes on from save */
		it->lines++;
		if (t_json_parse_line(line, o))
			return line;
		T_CHECK(0, "%s: line %u is not a JSON object: %s", what, it->lines, line);
	}
	return NULL;
}

int t_read_port_file(const char *path, unsigned ms)
{
	uint64_t end = t_ms_now() + ms;
	int port = 0;
	FILE *f;

	while (!port && t_ms_now() < end) {
		f = fopen(path, "r");
		if (!f || fscanf(f, "%d", &port) != 1) {
			port = 0;
			usleep(10000);
		}
		if (f)
			fclose(f);
	}
	return port;
}

pid_t t_serve_start(const char *bin, char *const args[], const char *pfile, int *out_fd,
		    int *err_fd, char *addr, size_t addrlen, unsigned ms)
{
	pid_t pid = t_spawn(bin, args, out_fd, err_fd, NULL);
	int port;

	T_ASSERT(pid > 0);
	port = t_read_port_file(pfile, ms);
	if (!port)
		kill(pid, SIGKILL);
	T_ASSERT(port > 0);
	snprintf(addr, addrlen, "127.0.0.1:%d", port);
	return pid;
}

pid_t t_restore_connected(const char *bin, char *const args[], int *out_fd, int *err_fd,
			  char *err, size_t errsz, size_t *len, unsigned ms)
{
	pid_t pid = t_spawn(bin, args, out_fd, err_fd, NULL);

	T_ASSERT(pid > 0);
	T_CHECK(t_wait_text(*err_fd, err, errsz, len, "connected to", ms),
		"restore never connected: %s", err);
	return pid;
}

bool t_wait_text(int fd, char *buf, size_t size, size_t *len, const char *want, unsigned ms)
{
	uint64_t end = t_ms_now() + ms, now;
	struct pollfd pfd = { .fd = fd, .events = POLLIN };
	ssize_t n;

	buf[*len] = 0;
	while (!strstr(buf, want) && *len < size - 1) {
		now = t_ms_now();
		if (now >= end || poll(&pfd, 1, (int)(end - now)) <= 0)
			return false;
		n = read(fd, buf + *len, size - 1 - *len);
		if (n <= 0)
			return false;
		*len += (size_t)n;
		buf[*len] = 0;
	}
	return strstr(buf, want) != NULL;
}

int t_ctl_query(const char *path, const char *cmd, char *reply, size_t size, unsigned ms)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	uint64_t end = t_ms_now() + ms, now;
	struct pollfd pfd;
	size_t len = 0;
	ssize_t n;
	int fd, ret = 0;
	char *nl;

	reply[0] = 0;
	if (strlen(path) >= sizeof(sa.sun_path))
		return -ENAMETOOLONG;
	strcpy(sa.sun_path, path);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 ||
	    dprintf(fd, "%s\n", cmd) < 0) {
		ret = -errno;
		goto out;
	}
	pfd = (struct pollfd){ .fd = fd, .events = POLLIN };
	while (!(nl = memchr(reply, '\n', len)) && len < size - 1) {
		now = t_ms_now();
		if (now >= end || poll(&pfd, 1, (int)(end - now)) <= 0) {
			ret = -ETIMEDOUT;
			goto out;
		}
		n = read(fd, reply + len, size - 1 - len);
		if (n <= 0) {
			ret = n < 0 ? -errno : -ECONNRESET;
			goto out;
		}
		len += (size_t)n;
		reply[len] = 0;
	}
	if (nl)
		*nl = 0;
out:
	close(fd);
	return ret;
}
