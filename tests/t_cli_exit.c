// SPDX-License-Identifier: MIT
/*
 * t_cli_exit.c - `pagein restore` exits with a code a script can act on: 0 when every region
 * verified, 65 when the bytes are wrong (a snapshot whose data was changed under its digests),
 * 69 when the source cannot be reached or read (no server on the port, a missing file), 71 when
 * a local resource fails (no file descriptors left), 2 for a usage error.
 */
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include "helpers.h"

#define RUN_MS 60000
#define SNAP_DATA 4096 /* lib/snapshot.c: region 0's bytes start after a 4 KiB header */

static const char *bin;
static char out[1 << 16], err[1 << 16];

static int run(char *const *args, void (*setup)(void))
{
	return t_exit_code(t_run_status(bin, args, out, sizeof(out), err, sizeof(err), RUN_MS,
					 setup));
}

/* In the child: one file descriptor beyond stdin, stdout and stderr: enough for the dynamic
 * loader, too few for the userfaultfd and its epoll. */
static void few_files(void)
{
	struct rlimit rl = { 4, 4 };

	setrlimit(RLIMIT_NOFILE, &rl);
}

/* A loopback port nothing listens on (bound, then closed). */
static int dead_port(void)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t len = sizeof(a);
	int fd = socket(AF_INET, SOCK_STREAM, 0);

	T_ASSERT(fd >= 0);
	T_ASSERT(bind(fd, (struct sockaddr *)&a, sizeof(a)) == 0);
	T_ASSERT(getsockname(fd, (struct sockaddr *)&a, &len) == 0);
	close(fd);
	return ntohs(a.sin_port);
}

static void expect(const char *what, int rc, int want, const char *out_has)
{
	T_CHECK(rc == want, "%s: exit %d, want %d; stdout: %s\nstderr: %s", what, rc, want, out, err);
	T_CHECK(!out_has || strstr(out, out_has), "%s: stdout lacks '%s': %s", what, out_has, out);
	printf("  %-40s exit %d\n", what, rc);
}

int main(int argc, char **argv)
{
	char dir[] = "/tmp/t_cli_exit.XXXXXX", snap[64], addr[64], missing[80];
	char byte = 0x5a;
	int fd, rc;

	bin = t_pagein_bin(argv[0]);
	t_require_uffd();
	T_ASSERT(mkdtemp(dir));
	snprintf(snap, sizeof(snap), "%s/s.snap", dir);
	snprintf(missing, sizeof(missing), "%s/missing.snap", dir);
	rc = run((char *[]){ "pagein", "mksnap", "--size", "8M", snap, NULL }, NULL);
	T_ASSERT(rc == 0);

	rc = run((char *[]){ "pagein", "restore", "--from-file", snap, "-q", NULL }, NULL);
	expect("verified", rc, 0, "every region verified");
	rc = run((char *[]){ "pagein", "restore", "--from-file", snap, "--no-such-option", NULL },
		 NULL);
	expect("usage", rc, 2, NULL);
	rc = run((char *[]){ "pagein", "restore", "--from-file", missing, "-q", NULL }, NULL);
	expect("missing snapshot", rc, 69, NULL);
	snprintf(addr, sizeof(addr), "127.0.0.1:%d", dead_port());
	rc = run((char *[]){ "pagein", "restore", "--from", addr, "-q", NULL }, NULL);
	expect("nothing listening", rc, 69, NULL);
	rc = run((char *[]){ "pagein", "restore", "--from-file", snap, "-q", NULL }, few_files);
	expect("no file descriptors", rc, 71, NULL);

	/* page 1 of region 0 holds the pattern (page 0 is one of the zero pages): change a byte */
	fd = open(snap, O_WRONLY);
	T_ASSERT(fd >= 0);
	T_ASSERT(pwrite(fd, &byte, 1, SNAP_DATA + 4096 + 100) == 1);
	close(fd);
	rc = run((char *[]){ "pagein", "restore", "--from-file", snap, "-q", NULL }, NULL);
	expect("wrong bytes", rc, 65, "WRONG BYTES");

	unlink(snap);
	rmdir(dir);
	if (t_failures)
		return 1;
	t_pass("t_cli_exit");
}
