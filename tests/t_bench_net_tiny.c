// SPDX-License-Identifier: MIT
/*
 * t_bench_net_tiny.c - `pagein bench --net --size 8M --json`, so the network bench cannot rot:
 * runs the binary (env PAGEIN_BIN, else ../pagein next to this test, else build/pagein) and
 * checks that every line is a flat JSON object with the required keys and sane values, and that
 * every test appears for loopback and for the delayed link (urgent on and off).
 */
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

#define RUN_TIMEOUT_MS 90000 /* the run takes 10-20 s at 8M; the test runner allows 120 s */
#define OUT_MAX (1u << 20)   /* stdout kept */
#define MAX_KEYS 32          /* members kept per object */

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

/* One member of a flat JSON object (the bench prints no nested values). */
struct member {
	char key[40];
	char type;     /* 'n' number, 's' string, 't' true, 'f' false, 'z' null */
	double num;
	char str[32];
};

struct object {
	unsigned n;
	struct member m[MAX_KEYS];
};

/* Parse one line as a flat object: {"key":value,...} with string, number, bool or null values.
 * Returns false on anything else. */
static bool parse_flat(const char *p, struct object *o)
{
	struct member *m;
	size_t k;
	char *end;

	o->n = 0;
	if (*p++ != '{')
		return false;
	if (*p == '}')
		return !p[1];
	for (;;) {
		if (o->n == MAX_KEYS || *p++ != '"')
			return false;
		m = &o->m[o->n++];
		memset(m, 0, sizeof(*m));
		for (k = 0; *p && *p != '"'; p++)
			if (k + 1 < sizeof(m->key))
				m->key[k++] = *p;
		if (*p++ != '"' || *p++ != ':')
			return false;
		if (*p == '"') {
			m->type = 's';
			for (p++, k = 0; *p && *p != '"'; p++)
				if (k + 1 < sizeof(m->str))
					m->str[k++] = *p;
			if (*p++ != '"')
				return false;
		} else if (!strncmp(p, "true", 4)) {
			m->type = 't';
			p += 4;
		} else if (!strncmp(p, "false", 5)) {
			m->type = 'f';
			p += 5;
		} else if (!strncmp(p, "null", 4)) {
			m->type = 'z';
			p += 4;
		} else {
			m->type = 'n';
			m->num = strtod(p, &end);
			if (end == p)
				return false;
			p = end;
		}
		if (*p == '}')
			return !p[1];
		if (*p++ != ',')
			return false;
	}
}

static const struct member *get(const struct object *o, const char *key)
{
	unsigned i;

	for (i = 0; i < o->n; i++)
		if (!strcmp(o->m[i].key, key))
			return &o->m[i];
	return NULL;
}

/* The number under key, or -1 when it is missing or not a number. */
static double num(const struct object *o, const char *key)
{
	const struct member *m = get(o, key);

	return m && m->type == 'n' ? m->num : -1;
}

/* Run bin with args, stdout into out (NUL-terminated). 0, or -1 (reported). On a time-out the
 * bench gets SIGTERM first (it removes any network namespace it made), then SIGKILL. */
static int run_bench(const char *bin, char *const args[], char *out)
{
	struct timespec t0, t;
	struct pollfd pfd;
	size_t len = 0;
	int fd[2], status, i;
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
			fprintf(stderr, "pagein bench --net did not finish in %d ms: stopping it\n",
				RUN_TIMEOUT_MS);
			kill(pid, SIGTERM);
			for (i = 0; i < 50 && waitpid(pid, &status, WNOHANG) == 0; i++)
				usleep(100000);
			kill(pid, SIGKILL);
			waitpid(pid, &status, 0);
			close(fd[0]);
			return -1;
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
		fprintf(stderr, "pagein bench --net exited with status 0x%x\n", status);
		return -1;
	}
	return 0;
}

/* Check a latency pair: positive, p99 >= p50, under 10 s. */
static void check_lat(const struct object *o, const char *what)
{
	double p50 = num(o, "lat_p50_us"), p99 = num(o, "lat_p99_us");

	CHECK(p50 > 0 && p99 >= p50 && p99 < 1e7, "%s: lat_p50_us %g lat_p99_us %g", what, p50,
	      p99);
}

/* Check a throughput line: MiB/s and ratios positive and not absurd. */
static void check_rate(const struct object *o, const char *what, bool paired)
{
	double mibs = num(o, "mib_per_sec"), ratio = num(o, "ratio_to_raw");

	CHECK(mibs > 0 && mibs < 1e6, "%s: mib_per_sec %g", what, mibs);
	CHECK(ratio > 0 && ratio < 100, "%s: ratio_to_raw %g", what, ratio);
	if (paired)
		CHECK(num(o, "raw_mib_per_sec") > 0, "%s: raw_mib_per_sec missing or not > 0", what);
}

static const char *const tests[] = { "raw-tcp", "rtt", "rtt-bulk", "bulk", "fault-idle",
				     "fault-bulk", "residency" };
#define NTESTS (sizeof(tests) / sizeof(tests[0]))

static void check_output(char *out)
{
	static const char *const keys[] = { "test", "link", "urgent", "mib_per_sec",
					    "ratio_to_raw", "lat_p50_us", "lat_p99_us", "seconds" };
	unsigned lines = 0, i, t, seen[2][NTESTS] = { { 0 } }, urgent_off = 0;
	const struct member *test, *link, *urg;
	char *line, *save = NULL, what[96];
	static struct object o;
	int slow;

	for (line = strtok_r(out, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		lines++;
		if (!parse_flat(line, &o)) {
			CHECK(0, "line %u is not a flat JSON object: %s", lines, line);
			continue;
		}
		for (i = 0; i < sizeof(keys) / sizeof(keys[0]); i++)
			CHECK(get(&o, keys[i]), "line %u has no key %s: %s", lines, keys[i], line);
		test = get(&o, "test");
		link = get(&o, "link");
		urg = get(&o, "urgent");
		if (!test || test->type != 's' || !link || link->type != 's' || !urg) {
			CHECK(0, "line %u: test, link or urgent missing or of the wrong type", lines);
			continue;
		}
		slow = !strcmp(link->str, "netem-100us") || !strcmp(link->str, "relay-100us");
		CHECK(slow || !strcmp(link->str, "loopback"), "line %u: unknown link %s", lines,
		      link->str);
		for (t = 0; t < NTESTS && strcmp(tests[t], test->str); t++)
			;
		if (t == NTESTS) {
			CHECK(0, "line %u: unknown test %s", lines, test->str);
			continue;
		}
		seen[slow][t]++;
		snprintf(what, sizeof(what), "%s/%s%s", link->str, test->str,
			 urg->type == 'f' ? " (urgent off)" : "");
		CHECK(num(&o, "seconds") > 0 && num(&o, "seconds") < 600, "%s: seconds %g", what,
		      num(&o, "seconds"));
		CHECK(num(&o, "samples") > 0, "%s: samples missing or not > 0", what);
		if (t <= 2) {
			/* the baseline is not a migration */
			CHECK(urg->type == 'z', "%s: urgent should be null", what);
		} else {
			CHECK(urg->type == 't' || urg->type == 'f', "%s: urgent is not a bool", what);
			urgent_off += urg->type == 'f';
		}
		if (!strcmp(test->str, "raw-tcp")) {
			check_rate(&o, what, false);
			CHECK(num(&o, "ratio_to_raw") == 1, "%s: ratio_to_raw of the baseline is not 1",
			      what);
		} else if (!strcmp(test->str, "rtt-bulk")) {
			check_lat(&o, what);
			CHECK(num(&o, "p99_ratio_to_idle") > 0, "%s: p99_ratio_to_idle missing", what);
		} else if (!strcmp(test->str, "rtt")) {
			check_lat(&o, what);
			if (slow)
				CHECK(num(&o, "added_rtt_p50_us") > 0, "%s: added_rtt_p50_us missing",
				      what);
		} else if (!strcmp(test->str, "bulk")) {
			check_rate(&o, what, true);
		} else if (!strcmp(test->str, "residency")) {
			check_rate(&o, what, true);
			CHECK(num(&o, "ratio_to_ideal") > 0, "%s: ratio_to_ideal missing", what);
		} else {
			check_lat(&o, what);
			CHECK(num(&o, "runq_wait_us_per_fault") >= 0,
			      "%s: runq_wait_us_per_fault missing", what);
			if (!strcmp(test->str, "fault-bulk"))
				CHECK(num(&o, "p99_ratio_to_idle") > 0,
				      "%s: p99_ratio_to_idle missing", what);
		}
	}
	CHECK(lines > 0, "no JSON lines");
	for (slow = 0; slow < 2; slow++)
		for (t = 0; t < NTESTS; t++)
			CHECK(seen[slow][t] >= 1, "no %s line for the %s link", tests[t],
			      slow ? "delayed" : "loopback");
	/* the delayed link runs bulk, fault-bulk and residency with the urgent channel off too */
	CHECK(urgent_off >= 3, "%u lines with the urgent channel off, want 3", urgent_off);
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
		char *const a[] = { (char *)bin, "bench", "--net", "--size", "8M", "--json", NULL };

		if (!run_bench(bin, a, out))
			check_output(out);
		else
			failures++;
	}
	free(out);
	if (failures) {
		printf("FAIL: %d checks failed\n", failures);
		return 1;
	}
	printf("PASS: pagein bench --net at 8M: every JSON line has the keys with sane values\n");
	return 0;
}
