// SPDX-License-Identifier: MIT
/*
 * cmd-serve.c - `pagein serve`: the migration source. Serves a snapshot file, or generated guest
 * memory (the seeded pattern `mksnap` writes, same layout), to destinations over TCP until
 * SIGINT/SIGTERM, then prints what it served.
 */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "pagein-net.h"
#include "tools.h"

/*
 * Generated guest memory exactly as make_snapshot writes it (make_image: same layout, pattern and
 * zero pages), added to srv; returns the image (it must stay while the server runs).
 */
static void *generate(struct pagein_server *srv, uint64_t *sizep, uint64_t seed,
		      unsigned zero_every)
{
	struct pagein_region_desc regs[2];
	uint64_t *img;
	int ret;

	img = make_image(sizep, seed, zero_every, regs);
	if (!img)
		die("cannot allocate %llu MiB for the generated memory",
		    (unsigned long long)(*sizep >> 20));
	ret = pagein_server_add_memory(srv, regs[0].gpa, regs[0].size, img);
	if (ret == 0)
		ret = pagein_server_add_memory(srv, regs[1].gpa, regs[1].size,
					       (uint8_t *)img + regs[0].size);
	if (ret < 0)
		die("serving the generated memory: %s", strerror(-ret));
	return img;
}

/* Write the port to path atomically (a temporary file renamed), so a reader never sees half. */
static void write_port_file(const char *path, int port)
{
	char tmp[4096];
	FILE *f;

	if (snprintf(tmp, sizeof(tmp), "%s.tmp%d", path, (int)getpid()) >= (int)sizeof(tmp))
		die("--port-file path too long");
	f = fopen(tmp, "w");
	if (!f)
		die("cannot write %s: %s", tmp, strerror(errno));
	fprintf(f, "%d\n", port);
	if (fclose(f) != 0 || rename(tmp, path) != 0)
		die("cannot write %s: %s", path, strerror(errno));
}

static void usage(void)
{
	printf("usage: pagein serve [OPTIONS] FILE          serve a snapshot\n"
	       "       pagein serve [OPTIONS] --generate SIZE  serve generated memory\n"
	       "  --listen ADDR:PORT  where to listen (default 127.0.0.1:0, a free port;\n"
	       "                      [::1]:PORT for IPv6, 0.0.0.0:PORT for every interface)\n"
	       "  --port-file PATH    write the port number to PATH once listening\n"
	       "  --max-sessions N    destinations served at once (default 16)\n"
	       "  --timeout MS        drop a peer silent this long mid-frame (default 10000)\n"
	       "  --no-compress       never send LZ4 pages\n"
	       "  --generate SIZE     serve SIZE of generated memory (rounded up to 4 MiB) in the\n"
	       "                      layout and pattern of `pagein mksnap`\n"
	       "  --seed N            pattern seed for --generate (default 1, as mksnap)\n"
	       "  --zero-every N      every N-th page zero for --generate (default 16, 0 = none)\n"
	       "  -v, --verbose       log every connection\n"
	       "Runs until SIGINT or SIGTERM, then prints what it served.\n");
}

int cmd_serve(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "listen", required_argument, NULL, 'l' },
		{ "port-file", required_argument, NULL, 'P' },
		{ "max-sessions", required_argument, NULL, 'm' },
		{ "timeout", required_argument, NULL, 't' },
		{ "no-compress", no_argument, NULL, 'n' },
		{ "generate", required_argument, NULL, 'g' },
		{ "seed", required_argument, NULL, 'S' },
		{ "zero-every", required_argument, NULL, 'z' },
		{ "verbose", no_argument, NULL, 'v' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	struct pagein_server_config cfg;
	struct pagein_server_stats st;
	struct pagein_server *srv;
	const char *port_file = NULL, *file = NULL, *colon;
	uint64_t gen = 0, seed = 1;
	unsigned zero_every = 16;
	void *img = NULL;
	sigset_t set;
	int c, ret, sig, port;

	pagein_server_config_init(&cfg);
	cfg.log = tool_log;
	while ((c = getopt_long(argc, argv, "l:vh", longopts, NULL)) != -1) {
		switch (c) {
		case 'l': cfg.listen = optarg; break;
		case 'P': port_file = optarg; break;
		case 'm': cfg.max_sessions = (unsigned)strtoul(optarg, NULL, 0); break;
		case 't': cfg.timeout_ms = (unsigned)strtoul(optarg, NULL, 0); break;
		case 'n': cfg.compress = false; break;
		case 'g': gen = parse_size(optarg); break;
		case 'S': seed = strtoull(optarg, NULL, 0); break;
		case 'z': zero_every = (unsigned)atoi(optarg); break;
		case 'v': tool_verbose = true; break;
		case 'h': usage(); return 0;
		default: return 2;
		}
	}
	if (optind < argc)
		file = argv[optind++];
	if (optind != argc || !!file == !!gen)
		die("serve needs one snapshot FILE or --generate SIZE (pagein serve --help)");
	if (!cfg.max_sessions || !cfg.timeout_ms)
		die("--max-sessions and --timeout must be at least 1");

	ret = pagein_server_new(&cfg, &srv);
	if (ret < 0)
		die("cannot serve: %s", strerror(-ret)); /* the library logged why */
	if (file) {
		ret = pagein_server_add_snapshot(srv, file);
		if (ret < 0)
			die("cannot serve %s", file); /* the library logged why */
	} else {
		img = generate(srv, &gen, seed, zero_every);
	}
	/* the server's threads inherit the mask: the signals come to sigwait() here */
	sigemptyset(&set);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGTERM);
	pthread_sigmask(SIG_BLOCK, &set, NULL);
	ret = pagein_server_start(srv);
	if (ret < 0)
		die("cannot serve on %s", cfg.listen); /* the library logged why */
	port = pagein_server_port(srv);
	colon = strrchr(cfg.listen, ':');
	pr_info("listening on %.*s:%d", (int)(colon - cfg.listen), cfg.listen, port);
	if (port_file)
		write_port_file(port_file, port);
	for (;;) {
		if (sigwait(&set, &sig) == 0)
			break;
	}
	pagein_server_stop(srv);
	pagein_server_stats_get(srv, &st);
	pr_info("served %llu sessions over %llu connections (%llu refused, %llu malformed): "
		"%llu requests, %llu pages in replies, %llu pages streamed (%llu LZ4), %.1f MiB sent",
		(unsigned long long)st.sessions, (unsigned long long)st.connections,
		(unsigned long long)st.refused, (unsigned long long)st.malformed,
		(unsigned long long)st.requests, (unsigned long long)st.pages_urgent,
		(unsigned long long)st.pages_bulk, (unsigned long long)st.pages_lz4,
		(double)st.bytes_sent / (1 << 20));
	pagein_server_free(srv);
	if (port_file)
		unlink(port_file);
	if (img)
		free(img);
	return 0;
}
