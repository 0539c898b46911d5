// SPDX-License-Identifier: MIT
/*
 * cmd-restore.c - `pagein restore --from HOST:PORT | --from-file PATH`: migrate guest memory from
 * a page server (post-copy) or restore it lazily from a snapshot while a built-in workload runs
 * over it, with progress and a summary verified against the source's digests.
 */
#include <getopt.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tools.h"

static void usage(FILE *f)
{
	fprintf(f,
		"usage: pagein restore --from HOST:PORT | --from-file PATH |\n"
		"                      --raw FILE --layout GPA+SIZE[@OFFSET],... [options]\n"
		"  --from HOST:PORT   page server to migrate from (post-copy over TCP)\n"
		"  --from-file PATH   snapshot to restore (pagein mksnap makes one)\n"
		"  --raw FILE         a raw memory file (Firecracker's, a QEMU memory backend)\n"
		"  --layout SPEC      its regions: GPA+SIZE[@OFFSET],... (without @OFFSET a region\n"
		"                     follows the previous one in the file)\n"
		"  --record-ws WS     write the pages the restore touched, in order, to WS\n"
		"  --prefetch-ws WS   prefetch the working set WS (recorded from this image)\n"
		"  -f, --frontend F   self (SIGBUS self-resolve, default) | handler\n"
		"  -s, --backing B    anon (default) | shmem | hugetlb\n"
		"  -r, --readers N    handler threads (handler front-end; default 1)\n"
		"  -t, --threads N    workload threads (default 2)\n"
		"  -w, --workload W   seq (default) | rand | hotcold | none\n"
		"      --no-fill      no background fill or bulk stream: only what is touched\n"
		"                     arrives (the rest through accessors at the end)\n"
		"      --no-urgent    network: faults share the bulk connection\n"
		"      --bulk N       network: bulk connections streaming the rest (default 1)\n"
		"      --no-compress  network: do not accept LZ4-compressed pages\n"
		"      --around N     fault-around window, 1..64 pages (default: adaptive)\n"
		"      --timeout MS   longest a fault waits for its page (default 10000)\n"
		"      --psk-file F   network: TLS 1.3 with this pre-shared key\n"
		"      --tls-cert F --tls-key F --tls-ca F [--tls-name NAME]\n"
		"                     network: TLS 1.3 with certificates (the server's verified)\n"
		"      --insecure     network: allow plain TCP to a server off loopback\n"
		"      --pause-limit MS  network: on a lost or silent link, pause (faults wait),\n"
		"                     reconnect and resume; fail after MS (default 600000,\n"
		"                     0 = wait for ever)\n"
		"      --no-pause     network: fail at once on a lost link (no pause, no resume)\n"
		"      --reconnect HOST:PORT  network: an alternate server (a restarted one, or a\n"
		"                     replica of the same image): on a lost link, recovery tries\n"
		"                     --from and each --reconnect in turn (up to 7, repeatable)\n"
		"      --control PATH a control socket: `pagein ctl PATH status` (state, pages,\n"
		"                     MiB/s, faults, latency, blocked time per thread) or\n"
		"                     `reconnect HOST:PORT` (not with --no-pause)\n"
		"      --status-file PATH  the status JSON, rewritten atomically every interval\n"
		"      --status-interval MS  for --status-file (default 1000)\n"
		"      --json         print one JSON summary on stdout (the human report goes\n"
		"                     to stderr)\n"
		"      --json-interval SEC  with --json: a JSON progress line every SEC seconds\n"
		"  -q, --quiet        no progress line (progress goes to stderr)\n"
		"  -v, --verbose      log everything the library says\n"
		"exit: 0 verified, 2 usage, 65 wrong bytes, 69 source unreachable or lost,\n"
		"      71 local resources, 1 anything else\n");
}

int parse_restore_opt(struct restore_opts *o, int c, const char *arg);

/* Shared by restore and demo: apply one option; returns 0, or -1 if c is not a restore option. */
int parse_restore_opt(struct restore_opts *o, int c, const char *arg)
{
	switch (c) {
	case 'f':
		if (!strcmp(arg, "self"))
			o->frontend = PAGEIN_FRONTEND_SELF;
		else if (!strcmp(arg, "handler"))
			o->frontend = PAGEIN_FRONTEND_HANDLER;
		else
			die_code(EXIT_USAGE, "--frontend takes self or handler, not '%s'", arg);
		return 0;
	case 's':
		if (!strcmp(arg, "anon"))
			o->backing = PAGEIN_BACKING_ANON;
		else if (!strcmp(arg, "shmem"))
			o->backing = PAGEIN_BACKING_SHMEM;
		else if (!strcmp(arg, "hugetlb"))
			o->backing = PAGEIN_BACKING_HUGETLB;
		else
			die_code(EXIT_USAGE, "--backing takes anon, shmem or hugetlb, not '%s'", arg);
		return 0;
	case 'r':
		o->readers = opt_uint("--readers", arg, 1, 256);
		return 0;
	case 't':
		o->threads = opt_uint("--threads", arg, 0, 1024);
		return 0;
	case 'w':
		if (!strcmp(arg, "seq"))
			o->workload = WL_SEQ;
		else if (!strcmp(arg, "rand"))
			o->workload = WL_RAND;
		else if (!strcmp(arg, "hotcold"))
			o->workload = WL_HOTCOLD;
		else if (!strcmp(arg, "none"))
			o->workload = WL_NONE;
		else
			die_code(EXIT_USAGE, "--workload takes seq, rand, hotcold or none, not '%s'",
				 arg);
		return 0;
	case 'F':
		o->fill = false;
		return 0;
	case 'A':
		o->around = opt_uint("--around", arg, 1, PAGEIN_AROUND_MAX);
		return 0;
	case 'T':
		/* 0 would mean the library's default, not "no time-out": refuse it */
		o->timeout_ms = opt_uint("--timeout", arg, 1, 3600000);
		return 0;
	case 'q':
		o->quiet = true;
		return 0;
	case 'U':
		o->urgent = false;
		return 0;
	case 'B':
		o->bulk = opt_uint("--bulk", arg, 0, 16);
		return 0;
	case 'Z':
		o->compress = false;
		return 0;
	case 'v':
		tool_verbose = true;
		return 0;
	case 'J':
		o->json = true;
		return 0;
	case 'I':
		o->json_interval = opt_seconds("--json-interval", arg, 0.01, 86400);
		return 0;
	}
	return -1;
}

/* long options without a letter (letters are taken) */
enum { OPT_PSK = 0x100, OPT_CERT, OPT_KEY, OPT_CA, OPT_NAME, OPT_INSECURE, OPT_PAUSE,
       OPT_RECONNECT, OPT_NO_PAUSE, OPT_CONTROL, OPT_STATUS, OPT_STATUS_MS };

int cmd_restore(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "from", required_argument, NULL, 'o' },
		{ "from-file", required_argument, NULL, 'i' },
		{ "raw", required_argument, NULL, 'R' },
		{ "layout", required_argument, NULL, 'L' },
		{ "record-ws", required_argument, NULL, 'W' },
		{ "prefetch-ws", required_argument, NULL, 'P' },
		{ "no-urgent", no_argument, NULL, 'U' },
		{ "bulk", required_argument, NULL, 'B' },
		{ "no-compress", no_argument, NULL, 'Z' },
		{ "frontend", required_argument, NULL, 'f' },
		{ "backing", required_argument, NULL, 's' },
		{ "readers", required_argument, NULL, 'r' },
		{ "threads", required_argument, NULL, 't' },
		{ "workload", required_argument, NULL, 'w' },
		{ "no-fill", no_argument, NULL, 'F' },
		{ "around", required_argument, NULL, 'A' },
		{ "timeout", required_argument, NULL, 'T' },
		{ "quiet", no_argument, NULL, 'q' },
		{ "verbose", no_argument, NULL, 'v' },
		{ "json", no_argument, NULL, 'J' },
		{ "json-interval", required_argument, NULL, 'I' },
		{ "help", no_argument, NULL, 'h' },
		{ "psk-file", required_argument, NULL, OPT_PSK },
		{ "tls-cert", required_argument, NULL, OPT_CERT },
		{ "tls-key", required_argument, NULL, OPT_KEY },
		{ "tls-ca", required_argument, NULL, OPT_CA },
		{ "tls-name", required_argument, NULL, OPT_NAME },
		{ "insecure", no_argument, NULL, OPT_INSECURE },
		{ "pause-limit", required_argument, NULL, OPT_PAUSE },
		{ "reconnect", required_argument, NULL, OPT_RECONNECT },
		{ "no-pause", no_argument, NULL, OPT_NO_PAUSE },
		{ "control", required_argument, NULL, OPT_CONTROL },
		{ "status-file", required_argument, NULL, OPT_STATUS },
		{ "status-interval", required_argument, NULL, OPT_STATUS_MS },
		{ NULL, 0, NULL, 0 },
	};
	struct restore_opts o;
	int c;

	restore_opts_init(&o);
	while ((c = getopt_long(argc, argv, "f:s:r:t:w:qvh", longopts, NULL)) != -1) {
		if (c == 'i') {
			o.from_file = optarg;
		} else if (c == 'R') {
			o.from_raw = optarg;
		} else if (c == 'L') {
			o.layout = optarg;
		} else if (c == 'W') {
			o.record_ws = optarg;
		} else if (c == 'P') {
			o.prefetch_ws = optarg;
		} else if (c == 'o') {
			opt_hostport("--from", optarg, false);
			o.from_addr = optarg;
		} else if (c == 'h') {
			usage(stdout);
			return EXIT_OK;
		} else if (c == OPT_PSK) {
			o.psk_file = optarg;
		} else if (c == OPT_CERT) {
			o.tls_cert = optarg;
		} else if (c == OPT_KEY) {
			o.tls_key = optarg;
		} else if (c == OPT_CA) {
			o.tls_ca = optarg;
		} else if (c == OPT_NAME) {
			o.tls_name = optarg;
		} else if (c == OPT_INSECURE) {
			o.insecure = true;
		} else if (c == OPT_PAUSE) {
			o.pause_limit_ms = opt_uint("--pause-limit", optarg, 0, UINT32_MAX - 1);
		} else if (c == OPT_RECONNECT) {
			opt_hostport("--reconnect", optarg, false);
			if (o.nreconnect >= sizeof(o.reconnect) / sizeof(o.reconnect[0]))
				die_code(EXIT_USAGE, "--reconnect: at most %zu alternates",
					 sizeof(o.reconnect) / sizeof(o.reconnect[0]));
			o.reconnect[o.nreconnect++] = optarg;
		} else if (c == OPT_NO_PAUSE) {
			o.no_pause = true;
		} else if (c == OPT_CONTROL) {
			o.control = optarg;
		} else if (c == OPT_STATUS) {
			o.status_file = optarg;
		} else if (c == OPT_STATUS_MS) {
			o.status_ms = opt_uint("--status-interval", optarg, 10, 3600000);
		} else if (parse_restore_opt(&o, c, optarg) < 0) {
			usage(stderr);
			return EXIT_USAGE;
		}
	}
	if (optind < argc)
		die_code(EXIT_USAGE, "restore takes no operand ('%s'): give the source with --from or "
			 "--from-file", argv[optind]);
	if (!!o.from_file + !!o.from_addr + !!o.from_raw > 1)
		die_code(EXIT_USAGE, "--from, --from-file and --raw: give only one");
	if (!o.from_raw != !o.layout)
		die_code(EXIT_USAGE, "--raw and --layout go together: the file and its regions");
	if (o.record_ws && o.prefetch_ws)
		die_code(EXIT_USAGE, "--record-ws and --prefetch-ws: give only one (prefetched pages "
			 "are never touched through a fault, so they could not be recorded)");
	if (!o.from_file && !o.from_addr && !o.from_raw) {
		pr_err("restore needs one of --from HOST:PORT, --from-file PATH and --raw FILE");
		usage(stderr);
		return EXIT_USAGE;
	}
	if (o.json_interval > 0 && !o.json)
		die_code(EXIT_USAGE, "--json-interval needs --json");
	if (o.status_ms && !o.status_file)
		die_code(EXIT_USAGE, "--status-interval needs --status-file");
	if (o.no_pause && (o.nreconnect || o.pause_limit_ms != UINT_MAX))
		die_code(EXIT_USAGE, "--no-pause fails at once on a lost link: %s has nothing to do "
			 "then; give only one", o.nreconnect ? "--reconnect" : "--pause-limit");
	if ((o.no_pause || o.nreconnect || o.pause_limit_ms != UINT_MAX) && !o.from_addr)
		die_code(EXIT_USAGE, "--no-pause, --pause-limit and --reconnect are for a page server "
			 "(--from HOST:PORT)");
	return run_restore(&o);
}
