// SPDX-License-Identifier: MIT
/*
 * cmd-serve.c - `pagein serve`: the migration source. Serves a snapshot file, or generated guest
 * memory (the seeded pattern `mksnap` writes, same layout), to destinations over TCP. The first
 * SIGINT/SIGTERM drains (no new destination, the migrations under way finish), a second one
 * stops at once and names the sessions it cut. Status for machines: --control, --status-file.
 */
#include <errno.h>
#include <getopt.h>
#include <stdatomic.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "pagein-net.h"
#include "tools.h"
#include "ctl.h"

#define TICK_MS 100       /* the main loop looks at signals, drain and --once this often */
#define MAX_LISTED 1024   /* sessions named when cut */

/* What the main loop and the control thread share. */
struct serve {
	struct pagein_server *srv;
	int port;
	uint64_t t0;
	_Atomic bool drain_asked;    /* `drain` on the control socket */
	_Atomic bool draining;       /* the server drains */
	_Atomic uint64_t bandwidth;  /* the limit now (bytes/s, 0 = none) */
	uint64_t last_ns, last_bytes; /* the previous status (control thread only): its rate */
};

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

static const char *session_state(uint32_t st)
{
	static const char *const names[] = { "idle", "resuming", "streaming", "sent" };

	return st < 4 ? names[st] : "?";
}

/* The server's status object (control thread). */
static void serve_status(void *arg, struct jbuf *j)
{
	static struct pagein_server_session ss[64];
	struct serve *sv = arg;
	struct pagein_server_stats st;
	uint64_t t = now_ns();
	int n, i;

	pagein_server_stats_get(sv->srv, &st);
	n = pagein_server_sessions(sv->srv, ss, 64);
	jb_str(j, "role", "server");
	jb_str(j, "state", atomic_load(&sv->draining) ? "draining" : "serving");
	jb_u64(j, "port", (uint64_t)sv->port);
	jb_num(j, "elapsed_s", (double)(t - sv->t0) / 1e9);
	jb_u64(j, "sessions_active", st.sessions_active);
	jb_u64(j, "sessions_total", st.sessions);
	jb_u64(j, "sessions_completed", st.sessions_completed);
	jb_open(j, "sessions", '[');
	for (i = 0; i < n && i < 64; i++) {
		char id[24];

		snprintf(id, sizeof(id), "%#llx", (unsigned long long)ss[i].id);
		jb_open(j, NULL, '{');
		jb_str(j, "id", id);
		jb_str(j, "peer", ss[i].peer);
		jb_str(j, "state", session_state(ss[i].state));
		jb_u64(j, "connections", ss[i].conns);
		jb_u64(j, "pages_left", ss[i].pages_left);
		jb_u64(j, "pages_total", ss[i].pages_total);
		jb_num(j, "age_s", (double)ss[i].age_ms / 1e3);
		jb_close(j, '}');
	}
	jb_close(j, ']');
	jb_u64(j, "connections", st.connections);
	jb_u64(j, "refused", st.refused);
	jb_u64(j, "requests", st.requests);
	jb_u64(j, "pages_sent", st.pages_urgent + st.pages_bulk);
	jb_u64(j, "pages_urgent", st.pages_urgent);
	jb_u64(j, "pages_bulk", st.pages_bulk);
	jb_u64(j, "pages_sent_twice", st.pages_twice);
	jb_u64(j, "bytes_sent", st.bytes_sent);
	jb_num(j, "mib_per_s", t > sv->last_ns ? (double)(st.bytes_sent - sv->last_bytes) /
					       ((double)(t - sv->last_ns) / 1e9) / (1 << 20) : 0.0);
	jb_u64(j, "max_bandwidth", atomic_load(&sv->bandwidth));
	jb_num(j, "bulk_throttled_s", (double)st.bulk_throttled_ns / 1e9);
	sv->last_ns = t;
	sv->last_bytes = st.bytes_sent;
}

/* bandwidth RATE | drain (control thread). */
static int serve_command(void *arg, const char *cmd, const char *a, struct jbuf *j, char *err,
			 size_t errlen)
{
	struct serve *sv = arg;
	uint64_t rate;

	if (!strcmp(cmd, "bandwidth")) {
		if (parse_rate(a, &rate) < 0) {
			snprintf(err, errlen, "bandwidth '%s': not a rate in bytes per second "
				 "(100M, 1.5G; 0 = no limit)", a);
			return -EINVAL;
		}
		pagein_server_set_bandwidth(sv->srv, rate);
		atomic_store(&sv->bandwidth, rate);
		jb_u64(j, "max_bandwidth", rate);
		return 0;
	}
	if (!strcmp(cmd, "drain")) {
		atomic_store(&sv->drain_asked, true);
		jb_str(j, "state", "draining");
		return 0;
	}
	return -ENOTSUP;
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
	       "  --once              exit when the first destination has every page (after\n"
	       "                      the other sessions under way finish)\n"
	       "  --max-bandwidth RATE  bytes per second for the bulk stream, all destinations\n"
	       "                      together (100M = 100 MiB/s, 1.5G, 0 = no limit); replies\n"
	       "                      to faults are never held back; change it live with\n"
	       "                      `pagein ctl PATH bandwidth RATE`\n"
	       "  --control PATH      a control socket: `pagein ctl PATH status|bandwidth RATE|\n"
	       "                      drain` (one JSON line answers each)\n"
	       "  --status-file PATH  the status JSON, rewritten atomically every interval\n"
	       "  --status-interval MS  for --status-file (default 1000)\n"
	       "  --json              JSON on stdout: a \"listening\" line, then one summary\n"
	       "  --json-interval SEC with --json: a JSON progress line every SEC seconds\n"
	       "  -v, --verbose       log every connection\n"
	       "SIGINT or SIGTERM drains: no new destination, the migrations under way finish,\n"
	       "then it prints what it served and exits 0. A second signal stops at once.\n"
	       "Exit: 0 served and stopped, 2 usage (also: plain TCP off loopback without\n"
	       "      --insecure), 69 the snapshot cannot be read, 71 local resources (memory,\n"
	       "      the address is in use), 75 stopped by a second signal with sessions cut\n"
	       "      (named on stderr), 1 anything else.\n");
}

/* long options without a letter (letters are taken) */
enum { OPT_PSK = 0x100, OPT_CERT, OPT_KEY, OPT_CA, OPT_INSECURE, OPT_ONCE, OPT_BW, OPT_CONTROL,
       OPT_STATUS, OPT_STATUS_MS };

/* Is the host of "HOST:PORT" a loopback address (127/8, ::1, localhost)? */
static bool loopback_listen(const char *listen)
{
	const char *colon = strrchr(listen, ':');
	size_t hl = colon ? (size_t)(colon - listen) : strlen(listen);

	return (hl >= 4 && !strncmp(listen, "127.", 4)) || (hl == 5 && !strncmp(listen, "[::1]", 5)) ||
	       (hl == 9 && !strncmp(listen, "localhost", 9));
}

/* The sessions a forced stop cuts, on stderr (before the stop: they are gone after it).
 * Returns how many. */
static int name_cut(struct pagein_server *srv)
{
	static struct pagein_server_session ss[MAX_LISTED];
	int n = pagein_server_sessions(srv, ss, MAX_LISTED), i;

	for (i = 0; i < n && i < MAX_LISTED; i++)
		pr_err("cut session %#llx: peer %s, %llu pages left of %llu (%s)",
		       (unsigned long long)ss[i].id, ss[i].peer,
		       (unsigned long long)ss[i].pages_left, (unsigned long long)ss[i].pages_total,
		       session_state(ss[i].state));
	if (n > MAX_LISTED)
		pr_err("... and %d more sessions cut", n - MAX_LISTED);
	return n;
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
		{ "json", no_argument, NULL, 'J' },
		{ "json-interval", required_argument, NULL, 'I' },
		{ "help", no_argument, NULL, 'h' },
		{ "psk-file", required_argument, NULL, OPT_PSK },
		{ "tls-cert", required_argument, NULL, OPT_CERT },
		{ "tls-key", required_argument, NULL, OPT_KEY },
		{ "tls-ca", required_argument, NULL, OPT_CA },
		{ "insecure", no_argument, NULL, OPT_INSECURE },
		{ "once", no_argument, NULL, OPT_ONCE },
		{ "max-bandwidth", required_argument, NULL, OPT_BW },
		{ "control", required_argument, NULL, OPT_CONTROL },
		{ "status-file", required_argument, NULL, OPT_STATUS },
		{ "status-interval", required_argument, NULL, OPT_STATUS_MS },
		{ NULL, 0, NULL, 0 },
	};
	static struct serve sv;
	struct ctl ctl = { .status = serve_status, .command = serve_command, .arg = &sv,
			   .commands = "bandwidth RATE, drain" };
	bool once = false, forced = false;
	uint64_t next_json = 0, rate;
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
		case OPT_ONCE: once = true; break;
		case OPT_BW:
			if (parse_rate(optarg, &rate) < 0)
				die_code(EXIT_USAGE, "--max-bandwidth: '%s' is not a rate in bytes per "
					 "second (examples: 100M, 1.5G, 8M/s; 0 = no limit)", optarg);
			cfg.max_bandwidth = rate;
			break;
		case OPT_CONTROL: ctl.path = optarg; break;
		case OPT_STATUS: ctl.status_file = optarg; break;
		case OPT_STATUS_MS:
			ctl.interval_ms = opt_uint("--status-interval", optarg, 10, 3600000);
			break;
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
	if (ctl.interval_ms && !ctl.status_file)
		die_code(EXIT_USAGE, "--status-interval needs --status-file");
	if (!cfg.psk_file && !cfg.tls_cert && !cfg.tls_key && !cfg.tls_ca && !cfg.insecure &&
	    !loopback_listen(cfg.listen))
		die_code(EXIT_USAGE, "refusing to serve memory on %s without authentication: give "
			 "--psk-file or --tls-cert/--tls-key/--tls-ca, or --insecure to allow plain "
			 "TCP off loopback", cfg.listen);

	ret = pagein_server_new(&cfg, &srv);
	if (ret < 0) /* the library logged why: a bad option or TLS file, or no memory */
		die_code(ret == -ENOMEM ? EXIT_LOCAL : EXIT_USAGE, "cannot serve: %s",
			 strerror(-ret));
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
	t0 = last_ns = now_ns();
	sv.srv = srv;
	sv.port = port;
	sv.t0 = sv.last_ns = t0;
	atomic_store(&sv.bandwidth, cfg.max_bandwidth);
	ctl_start(&ctl);
	/* the port file last: whoever waits for it finds the control socket there too */
	if (port_file)
		write_port_file(port_file, port);
	next_json = t0 + (uint64_t)(interval * 1e9);
	for (;;) {
		struct timespec ts = { 0, TICK_MS * 1000000L };
		const char *why = NULL;
		uint64_t t;

		sig = sigtimedwait(&set, NULL, &ts);
		if ((sig == SIGINT || sig == SIGTERM) && atomic_load(&sv.draining)) {
			forced = true;
			break;
		}
		if (sig == SIGINT || sig == SIGTERM)
			why = sig == SIGINT ? "SIGINT" : "SIGTERM";
		else if (atomic_load(&sv.drain_asked))
			why = "asked on the control socket";
		pagein_server_stats_get(srv, &st);
		if (!why && once && st.sessions_completed)
			why = "--once: a destination has every page";
		if (why && !atomic_load(&sv.draining)) {
			pagein_server_drain(srv);
			atomic_store(&sv.draining, true);
			if (st.sessions_active)
				pr_err("draining (%s): %llu session%s to finish, no new destination; "
				       "signal again to stop at once", why,
				       (unsigned long long)st.sessions_active,
				       st.sessions_active == 1 ? "" : "s");
			else
				pr_err("draining (%s): no session under way", why);
		}
		if (atomic_load(&sv.draining) && !st.sessions_active)
			break;
		t = now_ns();
		if (interval <= 0 || t < next_json)
			continue;
		next_json = t + (uint64_t)(interval * 1e9);
		json_begin("progress", "serving");
		json_server(&st, t0, t, (double)(st.bytes_sent - last_bytes) /
					((double)(t - last_ns) / 1e9) / (1 << 20));
		json_end();
		last_ns = t;
		last_bytes = st.bytes_sent;
	}
	if (forced && name_cut(srv) == 0)
		forced = false; /* the last session ended meanwhile: nothing was cut */
	ctl_stop(&ctl);
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
	return forced ? EXIT_CUT : EXIT_OK;
}
