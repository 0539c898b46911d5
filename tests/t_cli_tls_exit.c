// SPDX-License-Identifier: MIT
/*
 * t_cli_tls_exit.c - the exit codes of a refused connection: a peer that refuses us (a wrong
 * PSK, TLS against plain and plain against TLS) is the source failing, exit 69 like any other
 * (not 71, a local resource); plain TCP off loopback without --insecure is the user's to fix,
 * exit 2 with a message naming --insecure, on both `serve` and `restore`. `pagein handler
 * --from` takes the same TLS options as restore.
 */
#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "helpers.h"

#define WAIT_MS 20000

static const char *bin;
static char out[1 << 16], err[1 << 16];

static void write_key(const char *path, const char *text)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);

	T_ASSERT(fd >= 0);
	T_ASSERT(write(fd, text, strlen(text)) == (ssize_t)strlen(text));
	close(fd);
}

/* Run args; check the exit code is want and stderr holds text (NULL: anything). */
static void expect(char *const args[], int want, const char *text, const char *what)
{
	int rc = t_exit_code(t_run_status(bin, args, out, sizeof(out), err, sizeof(err), 60000,
					  NULL));

	T_CHECK(rc == want && (!text || strstr(err, text)), "%s: exit %d, want %d%s%s:\n%s", what,
		rc, want, text ? " with " : "", text ? text : "", err);
	if (rc == want)
		printf("  %s: exit %d\n", what, rc);
}

int main(int argc, char **argv)
{
	char dir[] = "/tmp/t_cli_tls.XXXXXX", key[96], bad[96], pfile[96], addr[64], sock[96];
	char *tls_srv[] = { "pagein", "serve", "--generate", "4M", "--port-file", pfile,
			    "--psk-file", key, NULL };
	char *plain_srv[] = { "pagein", "serve", "--generate", "4M", "--port-file", pfile, NULL };
	char *wrong_psk[] = { "pagein", "restore", "--from", addr, "--psk-file", bad, "-q", NULL };
	char *plain_cli[] = { "pagein", "restore", "--from", addr, "-q", NULL };
	char *tls_cli[] = { "pagein", "restore", "--from", addr, "--psk-file", key, "-q", NULL };
	char *off_lo_srv[] = { "pagein", "serve", "--generate", "4M", "--listen", "0.0.0.0:0",
			       NULL };
	char *off_lo_cli[] = { "pagein", "restore", "--from", "192.0.2.1:7000", "-q", NULL };
	char *handler[] = { "pagein", "handler", "--socket", sock, "--from", addr, "--psk-file",
			    key, "--tls-name", "x", "--accept-timeout", "100", NULL };
	int so, se;
	pid_t srv;

	bin = t_pagein_bin(argv[0]);
	T_ASSERT(mkdtemp(dir));
	snprintf(key, sizeof(key), "%s/key", dir);
	snprintf(bad, sizeof(bad), "%s/bad", dir);
	snprintf(pfile, sizeof(pfile), "%s/port", dir);
	snprintf(sock, sizeof(sock), "%s/uffd.sock", dir);
	write_key(key, "pagein:8f3a0c7e55d1b2a4968e0f1d2c3b4a5968778695a4b3c2d1e0f1a2b3c4d5e6f7\n");
	write_key(bad, "pagein:0f3a0c7e55d1b2a4968e0f1d2c3b4a5968778695a4b3c2d1e0f1a2b3c4d5e6f7\n");

	expect(off_lo_srv, 2, "--insecure", "serve on 0.0.0.0 without TLS or --insecure");
	expect(off_lo_cli, 2, "--insecure", "restore from 192.0.2.1 without TLS or --insecure");

	/* a TLS server: a wrong key, and a plain client */
	srv = t_serve_start(bin, tls_srv, pfile, &so, &se, addr, sizeof(addr), WAIT_MS);
	expect(wrong_psk, 69, NULL, "restore with a wrong PSK");
	expect(plain_cli, 69, NULL, "plain restore against a TLS server");
	/* handler --from takes the TLS options: it waits for a VMM (none comes), not a usage
	 * error */
	{
		int rc = t_exit_code(t_run_status(bin, handler, out, sizeof(out), err, sizeof(err),
						  30000, NULL));

		T_CHECK(rc != 2 && !strstr(err, "unrecognized"), "handler --from --psk-file "
			"--tls-name: exit %d:\n%s", rc, err);
		printf("  handler --from with TLS options: exit %d (no VMM came)\n", rc);
	}
	kill(srv, SIGTERM);
	T_CHECK(t_exit_code(t_collect(srv, so, out, sizeof(out), se, err, sizeof(err),
				      WAIT_MS)) == 0, "TLS serve exit: %s", err);
	unlink(pfile);

	/* a plain server: a TLS client */
	srv = t_serve_start(bin, plain_srv, pfile, &so, &se, addr, sizeof(addr), WAIT_MS);
	expect(tls_cli, 69, NULL, "TLS restore against a plain server");
	kill(srv, SIGTERM);
	T_CHECK(t_exit_code(t_collect(srv, so, out, sizeof(out), se, err, sizeof(err),
				      WAIT_MS)) == 0, "plain serve exit: %s", err);
	unlink(pfile);
	unlink(key);
	unlink(bad);
	unlink(sock);
	rmdir(dir);
	if (t_failures)
		return 1;
	t_pass("t_cli_tls_exit");
}
