// SPDX-License-Identifier: MIT
/*
 * cmd-ctl.c - `pagein ctl PATH COMMAND [ARG]`: one command to a running `serve` or `restore`
 * through its --control socket; prints the JSON line it answers.
 */
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "tools.h"

#define CTL_REPLY_MS 10000 /* the longest a command may take to answer */

static void usage(FILE *f)
{
	fprintf(f,
		"usage: pagein ctl PATH COMMAND [ARG]\n"
		"  PATH is the --control socket of a running `pagein serve` or `pagein restore`.\n"
		"  status              the status as one JSON object (both)\n"
		"  bandwidth RATE      serve: the bulk stream's limit from now on (100M, 1.5G,\n"
		"                      0 = no limit)\n"
		"  drain               serve: as the first SIGTERM: finish the migrations under\n"
		"                      way, take no new one, then exit\n"
		"  reconnect HOST:PORT restore: resume from this server (a restarted one, or a\n"
		"                      replica of the same image); needs --pause-limit or\n"
		"                      --reconnect on the restore\n"
		"Prints the JSON answer. Exit: 0 done (\"ok\":true), 1 refused (\"ok\":false, the\n"
		"error says why), 2 usage, 69 nothing answers on PATH.\n");
}

int cmd_ctl(int argc, char **argv)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	char line[600], reply[1 << 16];
	struct pollfd pfd;
	uint64_t end;
	size_t len = 0;
	ssize_t n;
	int fd;

	if (argc >= 2 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))) {
		usage(stdout);
		return EXIT_OK;
	}
	if (argc < 3 || argc > 4) {
		usage(stderr);
		return EXIT_USAGE;
	}
	if (strlen(argv[1]) >= sizeof(sa.sun_path))
		die_code(EXIT_USAGE, "%s: a socket path is at most %zu bytes", argv[1],
			 sizeof(sa.sun_path) - 1);
	if (snprintf(line, sizeof(line), "%s%s%s\n", argv[2], argc == 4 ? " " : "",
		     argc == 4 ? argv[3] : "") >= (int)sizeof(line) || strpbrk(argv[2], " \n") ||
	    (argc == 4 && strchr(argv[3], '\n')))
		die_code(EXIT_USAGE, "command too long, or with a line break or blank in its name");
	strcpy(sa.sun_path, argv[1]);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		die_code(EXIT_LOCAL, "socket: %s", strerror(errno));
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0)
		die_code(EXIT_SOURCE_LOST, "%s: %s (is a pagein serve or restore with --control "
			 "%s running?)", argv[1], strerror(errno), argv[1]);
	if (write(fd, line, strlen(line)) != (ssize_t)strlen(line))
		die_code(EXIT_SOURCE_LOST, "%s: cannot send the command: %s", argv[1],
			 strerror(errno));
	pfd = (struct pollfd){ .fd = fd, .events = POLLIN };
	end = now_ns() + CTL_REPLY_MS * 1000000ull;
	while (len < sizeof(reply) - 1 && !memchr(reply, '\n', len)) {
		uint64_t t = now_ns();

		if (t >= end || poll(&pfd, 1, (int)((end - t) / 1000000 + 1)) <= 0)
			die_code(EXIT_SOURCE_LOST, "%s: no answer within %d ms", argv[1],
				 CTL_REPLY_MS);
		n = read(fd, reply + len, sizeof(reply) - 1 - len);
		if (n <= 0)
			break;
		len += (size_t)n;
	}
	close(fd);
	reply[len] = 0;
	if (!len)
		die_code(EXIT_SOURCE_LOST, "%s: closed without an answer", argv[1]);
	fputs(reply, stdout);
	if (reply[len - 1] != '\n')
		putchar('\n');
	return strstr(reply, "\"ok\":true") ? EXIT_OK : EXIT_ERROR;
}
