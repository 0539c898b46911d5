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
#include <time.h>
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
		die_code(EXIT_LOCAL, "cannot allocate %llu MiB for the generated memory",
		    (unsigned long long)(*sizep >> 20));
	ret = pagein_server_add_memory(srv, regs[0].gpa, regs[0].size, img);
	if (ret == 0)
		ret = pagein_server_add_memory(srv, regs[1].gpa, regs[1].size,
					       (uint8_t *)img + regs[0].size);
	if (ret < 0)
		die_code(exit_for_errno(ret, EXIT_ERROR), "serving the generated memory: %s",
			 strerror(-ret));
	return img;
}

/* Write the port to path atomically (a temporary file renamed), so a reader never sees half. */
static void write_port_file(const char *path, int port)
{
	char tmp[4096];
	FILE *f;

	if (snprintf(tmp, sizeof(tmp), "%s.tmp%d", path, (int)getpid()) >= (int)sizeof(tmp))
		die_code(EXIT_USAGE, "--port-file path too long");
	f = fopen(tmp, "w");
	if (!f)
		die_code(exit_for_errno(errno, EXIT_ERROR), "cannot write %s: %s", tmp, strerror(errno));
	fprintf(f, "%d\n", port);
	if (fclose(f) != 0 || rename(tmp, path) != 0)
		die_code(exit_for_errno(errno, EXIT_ERROR), "cannot write %s: %s", path,
			 strerror(errno));
}

/* The members of every serve JSON line. */
static void json_server(const struct pagein_server_stats *st, uint64_t t0, uint64_t t, double mib_s)
{
	json_num("elapsed_s", (double)(t - t0) / 1e9);
	json_u64("sessions", st->sessions);
	json_u64("sessions_active", st->sessions_active);
	json_u64("connections", st->connections);
	json_u64("refused", st->refused);
	json_u64("malformed", st->malformed);
	json_u64("requests", st->requests);
	json_u64("pages_urgent", st->pages_urgent);
	json_u64("pages_bulk", st->pages_bulk);
	json_u64("pages_transferred", st->pages_urgent + st->pages_bulk);
	json_u64("pages_lz4", st->pages_lz4);
	json_u64("bytes_transferred", st->bytes_sent);
	json_num("mib_per_s", mib_s);
}

static void usage(void)
{
	printf("usage: pagein serve [OPTIONS] FILE          serve a snapshot\n"
	       "       pagein serve [OPTIONS] --generate SIZE  serve generated memory\n"
	       "  --listen ADDR:PORT  where to listen (default 127.0.0.1:0, a free port;\n"
	       "                      [::1]:PORT for IPv6, 0.0.0.0:PORT for every interface;\n"
	       "                      off loopback: --psk-file, certificates or --insecure)\n"
	       "  --port-file PATH    write the port number to PATH once listening\n"
	       "  --max-sessions N    destinations served at once (default 16)\n"
	       "  --timeout MS        drop a peer silent this long mid-frame (default 10000)\n"
	       "  --no-compress       never send LZ4 pages\n"
	       "  --generate SIZE     serve SIZE of generated memory (rounded up to 4 MiB) in the\n"
	       "                      layout and pattern of `pagein mksnap`\n"
	       "  --seed N            pattern seed for --generate (default 1, as mksnap)\n"
	       "  --zero-every N      every N-th page zero for --generate (default 16, 0 = none)\n"
	       "  --psk-file FILE     TLS 1.3 with this pre-shared key (IDENTITY:HEXKEY, mode 600)\n"
	       "  --tls-cert FILE --tls-key FILE --tls-ca FILE\n"
	       "                      TLS 1.3 with certificates, the client's verified against CA\n"
	       "  --insecure          allow plain TCP off loopback (otherwise refused)\n"
	       "  --json              JSON on stdout: a \"listening\" line, then one summary\n"
	       "  --json-interval SEC with --json: a JSON progress line every SEC seconds\n"
	       "  -v, --verbose       log every connection\n"
	       "Runs until SIGINT or SIGTERM, then prints what it served.\n"
	       "Exit: 0 served and stopped, 2 usage, 69 the snapshot cannot be read,\n"
	       "      71 local resources (memory, the address is in use), 1 anything else.\n");
}

/* long options without a letter (letters are taken) */
enum { OPT_PSK = 0x100, OPT_CERT, OPT_KEY, OPT_CA, OPT_INSECURE };

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
		{ "json", no_argument, NULL, 'J' },
		{ "json-interval", required_argument, NULL, 'I' },
		{ "help", no_argument, NULL, 'h' },
		{ "psk-file", required_argument, NULL, OPT_PSK },
		{ "tls-cert", required_argument, NULL, OPT_CERT },
		{ "tls-key", required_argument, NULL, OPT_KEY },
		{ "tls-ca", required_argument, NULL, OPT_CA },
		{ "insecure", no_argument, NULL, OPT_INSECURE },
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
	bool json = false;
	double interval = 0;
	uint64_t t0, last_ns, last_bytes = 0;

	pagein_server_config_init(&cfg);
	cfg.log = tool_log;
	while ((c = getopt_long(argc, argv, "l:vh", longopts, NULL)) != -1) {
		switch (c) {
		case 'l': opt_hostport("--listen", optarg, true); cfg.listen = optarg; break;
		case 'P': port_file = optarg; break;
		case 'm': cfg.max_sessions = opt_uint("--max-sessions", optarg, 1, 65536); break;
		case 't': cfg.timeout_ms = opt_uint("--timeout", optarg, 1, 3600000); break;
		case 'n': cfg.compress = false; break;
		case 'g': gen = opt_size("--generate", optarg, 1, 1ull << 40); break;
		case 'S': seed = opt_u64("--seed", optarg, 0, UINT64_MAX); break;
		case 'z': zero_every = opt_uint("--zero-every", optarg, 0, UINT32_MAX); break;
		case 'v': tool_verbose = true; break;
		case OPT_PSK: cfg.psk_file = optarg; break;
		case OPT_CERT: cfg.tls_cert = optarg; break;
		case OPT_KEY: cfg.tls_key = optarg; break;
		case OPT_CA: cfg.tls_ca = optarg; break;
		case OPT_INSECURE: cfg.insecure = true; break;
		case 'J': json = true; break;
		case 'I': interval = opt_seconds("--json-interval", optarg, 0.01, 86400); break;
		case 'h': usage(); return EXIT_OK;
		default: return EXIT_USAGE;
		}
	}
	if (optind < argc)
		file = argv[optind++];
	if (optind != argc || !!file == !!gen)
		die_code(EXIT_USAGE, "serve needs one snapshot FILE or --generate SIZE "
			 "(pagein serve --help)");
	if (interval > 0 && !json)
		die_code(EXIT_USAGE, "--json-interval needs --json");

	ret = pagein_server_new(&cfg, &srv);
	if (ret < 0) /* the library logged why */
		die_code(exit_for_errno(ret, EXIT_USAGE), "cannot serve: %s", strerror(-ret));
	if (file) {
		ret = pagein_server_add_snapshot(srv, file);
		if (ret < 0) /* the library logged why */
			die_code(exit_for_errno(ret, EXIT_SOURCE_LOST), "cannot serve %s", file);
	} else {
		img = generate(srv, &gen, seed, zero_every);
	}
	/* the server's threads inherit the mask: the signals come to sigwait() here */
	sigemptyset(&set);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGTERM);
	pthread_sigmask(SIG_BLOCK, &set, NULL);
	ret = pagein_server_start(srv);
	if (ret < 0) /* the library logged why; a busy address is this machine's, not the user's */
		die_code(ret == -EADDRINUSE || ret == -EADDRNOTAVAIL ? EXIT_LOCAL
			 : exit_for_errno(ret, EXIT_ERROR), "cannot serve on %s", cfg.listen);
	port = pagein_server_port(srv);
	colon = strrchr(cfg.listen, ':');
	if (json) {
		char host[256];

		snprintf(host, sizeof(host), "%.*s", (int)(colon - cfg.listen), cfg.listen);
		json_begin("listening", "serving");
		json_str("addr", host);
		json_u64("port", (uint64_t)port);
		json_end();
	} else {
		printf("listening on %.*s:%d\n", (int)(colon - cfg.listen), cfg.listen, port);
		fflush(stdout);
	}
	if (port_file)
		write_port_file(port_file, port);
	t0 = last_ns = now_ns();
	for (;;) {
		struct timespec ts = { 1, 0 };
		uint64_t t;

		if (interval > 0) {
			ts.tv_sec = (time_t)interval;
			ts.tv_nsec = (long)((interval - (double)ts.tv_sec) * 1e9);
		}
		sig = interval > 0 ? sigtimedwait(&set, NULL, &ts) : sigwaitinfo(&set, NULL);
		if (sig == SIGINT || sig == SIGTERM)
			break;
		if (interval <= 0 || sig >= 0 || errno != EAGAIN)
			continue;
		t = now_ns();
		pagein_server_stats_get(srv, &st);
		json_begin("progress", "serving");
		json_server(&st, t0, t, (double)(st.bytes_sent - last_bytes) /
					((double)(t - last_ns) / 1e9) / (1 << 20));
		json_end();
		last_ns = t;
		last_bytes = st.bytes_sent;
	}
	pagein_server_stop(srv);
	pagein_server_stats_get(srv, &st);
	if (json) {
		uint64_t t = now_ns();

		json_begin("summary", "stopped");
		json_server(&st, t0, t, (double)st.bytes_sent / ((double)(t - t0) / 1e9) / (1 << 20));
		json_end();
	} else {
		printf("served %llu sessions over %llu connections (%llu refused, %llu malformed): "
		       "%llu requests, %llu pages in replies, %llu pages streamed (%llu LZ4), "
		       "%.1f MiB sent\n",
		       (unsigned long long)st.sessions, (unsigned long long)st.connections,
		       (unsigned long long)st.refused, (unsigned long long)st.malformed,
		       (unsigned long long)st.requests, (unsigned long long)st.pages_urgent,
		       (unsigned long long)st.pages_bulk, (unsigned long long)st.pages_lz4,
		       (double)st.bytes_sent / (1 << 20));
		fflush(stdout);
	}
	pagein_server_free(srv);
	if (port_file)
		unlink(port_file);
	if (img)
		free(img);
	return 0;
}
