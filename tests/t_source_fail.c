// SPDX-License-Identifier: MIT
/*
 * t_source_fail.c - a source that fails or hangs never makes a fault hang: the faulting thread
 * gets SIGBUS within the configured time-out (both front-ends), on_fault_error reports the page
 * and error, accessors get -EIO / -ETIMEDOUT, pagein_wait_complete gets -EIO, and the other
 * pages stay usable.
 */
#include <signal.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "helpers.h"

#define SIZE (1ull << 20)
#define SEED 5
#define BAD_GPA (10 * 4096ull)

static struct t_space T;

/* async-signal-safe report: it may run inside the SIGBUS handler */
static void on_error(void *arg, uint64_t gpa, uint64_t len, int err)
{
	static const char hex[] = "0123456789abcdef";
	char msg[64] = "fault-error gpa 0x";
	size_t n = strlen(msg);
	int i;

	for (i = 60; i >= 0; i -= 4)
		msg[n++] = hex[gpa >> i & 15];
	msg[n++] = err == -ETIMEDOUT ? 'T' : 'E';
	msg[n++] = '\n';
	if (write(2, msg, n) < 0)
		_exit(5);
}

static void make(enum pagein_frontend fe, bool hang)
{
	struct pagein_config cfg;

	pagein_config_init(&cfg);
	cfg.frontend = fe;
	cfg.fault_around = 1;
	cfg.timeout_ms = 300;
	cfg.on_fault_error = on_error;
	cfg.log = t_log;
	t_space_make(&T, &cfg, PAGEIN_BACKING_ANON, SIZE, SEED);
	T.ts.fail_gpa = BAD_GPA;
	T.ts.fail_err = -EIO;
	T.ts.hang = hang;
	T_EQ(pagein_space_start(T.s), 0);
}

/* A thread touching the bad page dies of SIGBUS, quickly, with the error reported. */
static void faulter_dies(enum pagein_frontend fe, bool hang)
{
	int pfd[2], status;
	char out[4096] = "";
	uint64_t t0 = t_ms_now(), took;
	ssize_t got;
	pid_t pid;

	T_ASSERT(pipe(pfd) == 0);
	pid = fork();
	T_ASSERT(pid >= 0);
	if (pid == 0) {
		dup2(pfd[1], 2);
		close(pfd[0]);
		make(fe, hang);
		alarm(10);
		/* a good page first: it works */
		if (*(volatile uint64_t *)(T.host + 4096) != t_word(SEED, 4096))
			_exit(4);
		(void)*(volatile uint64_t *)(T.host + BAD_GPA);
		_exit(3); /* must not get here */
	}
	close(pfd[1]);
	got = read(pfd[0], out, sizeof(out) - 1);
	while (got > 0 && got < (ssize_t)sizeof(out) - 1) {
		ssize_t more = read(pfd[0], out + got, sizeof(out) - 1 - (size_t)got);

		if (more <= 0)
			break;
		got += more;
	}
	close(pfd[0]);
	T_ASSERT(waitpid(pid, &status, 0) == pid);
	took = t_ms_now() - t0;
	if (!WIFSIGNALED(status) || WTERMSIG(status) != SIGBUS) {
		fprintf(stderr, "FAIL: %s %s: child status %#x, want death by SIGBUS; it said:\n%s\n",
			pagein_frontend_name(fe), hang ? "hang" : "error", status, out);
		exit(1);
	}
	if (!strstr(out, "fault-error gpa 0x000000000000a000"))
		fprintf(stderr, "child said: %s\n", out);
	T_ASSERT(strstr(out, "fault-error gpa 0x000000000000a000") != NULL);
	T_ASSERT(strstr(out, hang ? "a000T" : "a000E") != NULL);
	T_ASSERT(took < 5000);
	printf("  %s, source %s: faulter got SIGBUS after %llu ms, error reported\n",
	       pagein_frontend_name(fe), hang ? "hangs (300 ms time-out)" : "fails -EIO",
	       (unsigned long long)took);
}

static void accessors(bool hang)
{
	uint64_t w, bad = 0, t0 = t_ms_now();
	unsigned fetched;

	make(PAGEIN_FRONTEND_HANDLER, hang);
	T_EQ(pagein_resolve(T.s, BAD_GPA - 4096, 3 * 4096, &bad), hang ? -ETIMEDOUT : -EIO);
	T_EQ(bad, BAD_GPA);
	T_ASSERT(t_ms_now() - t0 < 3000);
	/* failed for good now: fast -EIO, no more fetches */
	fetched = t_src_fetches(&T.ts, BAD_GPA);
	T_EQ(pagein_read(T.s, BAD_GPA + 8, &w, 8), -EIO);
	T_EQ(t_src_fetches(&T.ts, BAD_GPA), fetched);
	T_EQ(pagein_wait_complete(T.s, 1000), -EIO);
	/* nothing else lost: the neighbours arrive with their bytes */
	T_EQ(pagein_read(T.s, BAD_GPA + 4096, &w, 8), 0);
	T_EQ(w, t_word(SEED, BAD_GPA + 4096));
	T_EQ(pagein_read(T.s, BAD_GPA - 4096, &w, 8), 0);
	T_EQ(w, t_word(SEED, BAD_GPA - 4096));
	printf("  accessors, source %s: %s, neighbours intact\n", hang ? "hangs" : "fails",
	       hang ? "-ETIMEDOUT" : "-EIO");
	t_space_free(&T);
}

int main(void)
{
	t_require_uffd();
	alarm(60);
	faulter_dies(PAGEIN_FRONTEND_SELF, false);
	faulter_dies(PAGEIN_FRONTEND_HANDLER, false);
	faulter_dies(PAGEIN_FRONTEND_SELF, true);
	faulter_dies(PAGEIN_FRONTEND_HANDLER, true);
	accessors(false);
	accessors(true);
	t_pass("failing and hanging sources are bounded and reported");
}
