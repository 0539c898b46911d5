// SPDX-License-Identifier: MIT
/*
 * t_bench_tiny.c - `pagein bench` at tiny sizes, so the benchmark cannot rot: runs the binary
 * (env PAGEIN_BIN, else ../pagein next to this test, else build/pagein) for both front-ends,
 * shmem and the restore comparison, and checks that every JSON line parses, has the required
 * keys with positive numbers, and that the fault counts add up.
 */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define RUN_TIMEOUT_MS 120000 /* one bench invocation at these sizes takes well under 10 s */
#define OUT_MAX (1u << 20)    /* stdout kept per invocation */
#define MAX_KEYS 64           /* top-level members kept per JSON object */

static int failures;

#define CHECK(cond, ...)                                                                     \
	do {                                                                                 \
		if (!(cond)) {                                                               \
			fprintf(stderr, "%s:%d: check failed: %s: ", __FILE__, __LINE__, #cond); \
			fprintf(stderr, __VA_ARGS__);                                        \
			fprintf(stderr, "\n");                                               \
			failures++;                                                          \
		}                                                                            \
	} while (0)

/* One top-level member of a JSON object. */
struct member {
	char key[48];
	char type;        /* 'n' number, 's' string, 'b' bool, 'z' null, 'a' array, 'o' object */
	double num;       /* 'n': the value */
	char str[32];     /* 's': the value (truncated) */
	unsigned alen;    /* 'a': elements */
	double amin;      /* 'a': smallest element if all are numbers, else -1 */
};

struct object {
	unsigned n;
	struct member m[MAX_KEYS];
};

/* A small JSON reader: enough to validate one line and keep its top-level members. */
struct reader {
	const char *p;
	bool bad;
};

static void skip_ws(struct reader *r)
{
	while (*r->p == ' ' || *r->p == '\t')
		r->p++;
}

static bool eat(struct reader *r, char c)
{
	skip_ws(r);
	if (*r->p != c)
		return false;
	r->p++;
	return true;
}

static void parse_string(struct reader *r, char *out, size_t outsz)
{
	size_t n = 0;

	if (!eat(r, '"')) {
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
	if (!eat(r, '"'))
		r->bad = true;
}

static double parse_number(struct reader *r)
{
	char *end;
	double v;

	skip_ws(r);
	v = strtod(r->p, &end);
	if (end == r->p || !(*r->p == '-' || isdigit((unsigned char)*r->p)))
		r->bad = true;
	r->p = end;
	return v;
}

static void parse_value(struct reader *r, struct member *m, unsigned depth);

static void parse_array(struct reader *r, struct member *m, unsigned depth)
{
	struct member e;

	m->alen = 0;
	m->amin = 1e300;
	if (eat(r, ']'))
		return;
	do {
		memset(&e, 0, sizeof(e));
		parse_value(r, &e, depth + 1);
		m->alen++;
		if (e.type != 'n')
			m->amin = -1;
		else if (m->amin >= 0 && e.num < m->amin)
			m->amin = e.num;
	} while (!r->bad && eat(r, ','));
	if (!eat(r, ']'))
		r->bad = true;
}

static void parse_object(struct reader *r, struct object *o, unsigned depth)
{
	struct member tmp, *m;
	char key[48];

	if (eat(r, '}'))
		return;
	do {
		parse_string(r, key, sizeof(key));
		if (r->bad || !eat(r, ':')) {
			r->bad = true;
			return;
		}
		m = o && o->n < MAX_KEYS ? &o->m[o->n++] : &tmp;
		memset(m, 0, sizeof(*m));
		snprintf(m->key, sizeof(m->key), "%s", key);
		parse_value(r, m, depth + 1);
	} while (!r->bad && eat(r, ','));
	if (!eat(r, '}'))
		r->bad = true;
}

static void parse_value(struct reader *r, struct member *m, unsigned depth)
{
	skip_ws(r);
	if (depth > 8) {
		r->bad = true;
		return;
	}
	if (*r->p == '"') {
		m->type = 's';
		parse_string(r, m->str, sizeof(m->str));
	} else if (*r->p == '[') {
		r->p++;
		m->type = 'a';
		parse_array(r, m, depth);
	} else if (*r->p == '{') {
		r->p++;
		m->type = 'o';
		parse_object(r, NULL, depth);
	} else if (!strncmp(r->p, "true", 4) || !strncmp(r->p, "false", 5)) {
		m->type = 'b';
		r->p += *r->p == 't' ? 4 : 5;
	} else if (!strncmp(r->p, "null", 4)) {
		m->type = 'z';
		r->p += 4;
	} else {
		m->type = 'n';
		m->num = parse_number(r);
	}
}

static bool parse_line(const char *line, struct object *o)
{
	struct reader r = { .p = line, .bad = false };

	o->n = 0;
	if (!eat(&r, '{'))
		return false;
	parse_object(&r, o, 0);
	skip_ws(&r);
	return !r.bad && *r.p == 0;
}

static const struct member *get(const struct object *o, const char *key)
{
	unsigned i;

	for (i = 0; i < o->n; i++)
		if (!strcmp(o->m[i].key, key))
			return &o->m[i];
	return NULL;
}

static double num(const struct object *o, const char *key)
{
	const struct member *m = get(o, key);

	return m && m->type == 'n' ? m->num : -1;
}

/* Run bin with args, capture stdout into out (NUL-terminated); 0 or -1 (already reported). */
static int run_bench(const char *bin, char *const args[], char *out)
{
	struct timespec t0, t;
	struct pollfd pfd;
	size_t len = 0;
	int fd[2], status;
	long waited;
	ssize_t n;
	pid_t pid;

	if (pipe2(fd, O_CLOEXEC)) {
		perror("pipe2");
		return -1;
	}
	pid = fork();
	if (pid < 0) {
		perror("fork");
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
	for (;;) {
		clock_gettime(CLOCK_MONOTONIC, &t);
		waited = (t.tv_sec - t0.tv_sec) * 1000 + (t.tv_nsec - t0.tv_nsec) / 1000000;
		if (waited > RUN_TIMEOUT_MS) {
			fprintf(stderr, "pagein bench did not finish in %d ms: killing it\n",
				RUN_TIMEOUT_MS);
			kill(pid, SIGKILL);
			break;
		}
		if (poll(&pfd, 1, 1000) <= 0)
			continue;
		n = read(fd[0], out + len, OUT_MAX - 1 - len);
		if (n <= 0)
			break;
		len += (size_t)n;
		if (len == OUT_MAX - 1)
			break;
	}
	out[len] = 0;
	close(fd[0]);
	if (waitpid(pid, &status, 0) < 0) {
		perror("waitpid");
		return -1;
	}
	if (!WIFEXITED(status) || WEXITSTATUS(status)) {
		fprintf(stderr, "pagein bench exited with status 0x%x\n", status);
		return -1;
	}
	return 0;
}

static const char *const num_keys[] = {
	"vcpus", "pages", "seconds", "pages_per_sec", "lat_p50_us", "lat_p99_us",
};

/* Check one invocation's JSON lines; want lists the frontends that must appear. */
static void check_output(const char *what, char *out, const char *const want[], unsigned nwant)
{
	static struct object o;
	unsigned lines = 0, i, seen = 0;
	const struct member *fe, *ar;
	char *line, *save = NULL;
	double pages, faults;
	bool restore, lib;

	for (line = strtok_r(out, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		lines++;
		if (!parse_line(line, &o)) {
			CHECK(0, "%s: line %u is not a JSON object: %s", what, lines, line);
			continue;
		}
		fe = get(&o, "frontend");
		CHECK(fe && fe->type == 's', "%s: line %u has no frontend", what, lines);
		CHECK(get(&o, "backing") && get(&o, "backing")->type == 's',
		      "%s: line %u has no backing", what, lines);
		if (!fe || fe->type != 's')
			continue;
		for (i = 0; i < sizeof(num_keys) / sizeof(num_keys[0]); i++)
			CHECK(num(&o, num_keys[i]) > 0, "%s: %s: key %s missing or not > 0", what,
			      fe->str, num_keys[i]);
		restore = get(&o, "mode") && !strcmp(get(&o, "mode")->str, "restore");
		lib = !strcmp(fe->str, "self") || !strcmp(fe->str, "handler");
		pages = num(&o, "pages");
		faults = num(&o, "faults");
		/* with fill on, the fill may install every page before a fault: 0 is honest there */
		CHECK(restore ? faults >= 0 : faults > 0, "%s: %s: faults %.0f", what, fe->str,
		      faults);
		CHECK(restore ? num(&o, "cpu_us_per_fault") >= 0 : num(&o, "cpu_us_per_fault") > 0,
		      "%s: %s: cpu_us_per_fault missing or not > 0", what, fe->str);
		ar = get(&o, "per_vcpu_pages_per_sec");
		CHECK(ar && ar->type == 'a' && ar->alen == (unsigned)num(&o, "vcpus") && ar->amin > 0,
		      "%s: %s: per_vcpu_pages_per_sec is not one positive number per vCPU", what,
		      fe->str);
		/* one fault per page without the library, and at least one per page with it when
		 * fault-around is off (around 1) and there is no fill */
		if (!lib && !restore)
			CHECK(faults == pages, "%s: %s: %.0f faults for %.0f pages", what, fe->str,
			      faults, pages);
		if (lib) {
			CHECK(get(&o, "races_lost") && get(&o, "lib_eexist"),
			      "%s: %s: the library's counters are missing", what, fe->str);
			if (!restore && num(&o, "around") == 1)
				CHECK(faults >= pages && faults <= 2 * pages,
				      "%s: %s: %.0f faults for %.0f pages with fault-around off", what,
				      fe->str, faults, pages);
		}
		for (i = 0; i < nwant; i++)
			if (!strcmp(fe->str, want[i]))
				seen |= 1u << i;
	}
	CHECK(lines > 0, "%s: no JSON lines", what);
	for (i = 0; i < nwant; i++)
		CHECK(seen & (1u << i), "%s: no row for frontend %s", what, want[i]);
}

static const char *find_bin(const char *argv0, char *buf, size_t sz)
{
	const char *env = getenv("PAGEIN_BIN"), *slash;

	if (env && *env)
		return env;
	slash = strrchr(argv0, '/');
	if (slash) {
		snprintf(buf, sz, "%.*s/../pagein", (int)(slash - argv0), argv0);
		if (!access(buf, X_OK))
			return buf;
	}
	return "build/pagein";
}

int main(int argc, char **argv)
{
	static const char *const want_self[] = { "floor", "bare-self", "bare-handler", "self" };
	static const char *const want_handler[] = { "floor", "bare-self", "bare-handler",
						    "handler" };
	static const char *const want_restore[] = { "floor", "self" };
	char path[4096];
	const char *bin;
	char *out;
	int fd;

	(void)argc;
	bin = find_bin(argv[0], path, sizeof(path));
	if (access(bin, X_OK)) {
		printf("FAIL: %s is not an executable (build it with make, or set PAGEIN_BIN)\n",
		       bin);
		return 1;
	}
	fd = (int)syscall(SYS_userfaultfd, O_CLOEXEC);
	if (fd < 0) {
		printf("SKIP: userfaultfd not available (%s): run as root, or set "
		       "vm.unprivileged_userfaultfd=1\n", strerror(errno));
		return 77;
	}
	close(fd);
	out = malloc(OUT_MAX);
	if (!out)
		return 1;

	{
		char *const a[] = { (char *)bin, "bench", "-v", "2", "-b", "1M", "-f", "self",
				    "--json", NULL };
		if (!run_bench(bin, a, out))
			check_output("self, anon", out, want_self, 4);
		else
			failures++;
	}
	{
		char *const a[] = { (char *)bin, "bench", "-v", "2", "-b", "1M", "-f", "handler",
				    "-r", "2", "--json", NULL };
		if (!run_bench(bin, a, out))
			check_output("handler, anon", out, want_handler, 4);
		else
			failures++;
	}
	{
		char *const a[] = { (char *)bin, "bench", "-v", "2", "-b", "1M", "-f", "handler",
				    "-s", "shmem", "-a", "rand", "--json", NULL };
		if (!run_bench(bin, a, out))
			check_output("handler, shmem, random", out, want_handler, 4);
		else
			failures++;
	}
	{
		char *const a[] = { (char *)bin, "bench", "--restore", "8M", "--json", NULL };
		if (!run_bench(bin, a, out))
			check_output("restore 8M", out, want_restore, 2);
		else
			failures++;
	}
	free(out);
	if (failures) {
		printf("FAIL: %d checks failed\n", failures);
		return 1;
	}
	printf("PASS: pagein bench at tiny sizes: every JSON line parses with the required keys\n");
	return 0;
}
