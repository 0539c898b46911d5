// SPDX-License-Identifier: MIT
/*
 * cmd-handler.c - `pagein handler --socket PATH (--raw FILE | --from-file SNAP | --from HOST:PORT)`:
 * the external page-fault handler of a Firecracker-style VMM (docs/firecracker.md). Listens on a
 * Unix socket, takes the VMM's userfaultfd and region list, checks them, serves the VMM's faults
 * from the memory file (or a snapshot, or a page server) until the VMM exits, records or
 * prefetches a working set, and prints a summary (one JSON line with --json).
 */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tools.h"
#include "pagein-net.h"
#include "pagein-vmm.h"

static void usage(FILE *f)
{
	fprintf(f,
		"usage: pagein handler --socket PATH\n"
		"                      (--raw FILE | --from-file SNAP | --from HOST:PORT)\n"
		"                      [--record-ws WS | --prefetch-ws WS] [options]\n"
		"  --socket PATH       Unix socket the VMM connects to (Firecracker's uffd socket)\n"
		"  --raw FILE          the VMM's memory file; each region's bytes start at the\n"
		"                      'offset' the VMM sends (Firecracker's snapshot memory file)\n"
		"  --from-file SNAP    a pagein snapshot: its regions, in order, are the VMM's\n"
		"  --from HOST:PORT    a pagein page server: its regions, in order, are the VMM's\n"
		"  --record-ws WS      write the pages the VMM touched, in first-touch order, to WS\n"
		"  --prefetch-ws WS    install the working set WS ahead of the VMM's faults\n"
		"  --accept-timeout MS how long to wait for the VMM (default: forever)\n"
		"  --timeout MS        longest one page read may take (default 10000)\n"
		"  --no-check          do not check the regions against the VMM's mappings\n"
		"  --psk-file F        --from: TLS 1.3 with this pre-shared key\n"
		"  --tls-cert F --tls-key F --tls-ca F [--tls-name NAME]\n"
		"                      --from: TLS 1.3 with certificates (the server's verified)\n"
		"  --insecure          --from: allow plain TCP to a server off loopback\n"
		"  --json              print the summary as one JSON line\n"
		"  -v, --verbose       log everything\n");
}

/* Map the VMM's regions onto the inner source's region table, in order, sizes equal. */
static int remap_new(struct pagein_source *inner, const struct pagein_region_desc *d, int nd,
		     const struct pagein_vmm_region *r, unsigned n, struct pagein_source **out)
{
	struct pagein_raw_region map[PAGEIN_RAW_MAX_REGIONS];
	unsigned i;

	if ((unsigned)nd != n || n > PAGEIN_RAW_MAX_REGIONS) {
		pr_err("the VMM describes %u regions, the image has %d", n, nd);
		return -EINVAL;
	}
	for (i = 0; i < n; i++) {
		if (d[i].size != r[i].size) {
			pr_err("region %u: the VMM's is %llu bytes, the image's %llu", i,
			       (unsigned long long)r[i].size, (unsigned long long)d[i].size);
			return -EINVAL;
		}
		map[i] = (struct pagein_raw_region){ d[i].gpa, r[i].size, r[i].offset, 0 };
	}
	return pagein_source_remap_new(inner, map, n, out);
}

/* What the handler was asked to do, besides the library's config. */
struct hopts {
	const char *raw, *snap, *addr;
	const char *psk_file, *tls_cert, *tls_key, *tls_ca, *tls_name; /* --from: TLS */
	bool insecure;                                                 /* --from: plain off lo */
	int accept_timeout_ms;
	bool json;
};

static void summary(const struct hopts *o, struct pagein_handler *h,
		    const struct pagein_vmm_region *r, unsigned n)
{
	struct pagein_handler_stats st = { .size = sizeof(st) };
	uint64_t total = 0, p50 = 0, p99 = 0, acc = 0, i;
	bool exited;

	pagein_handler_stats_get(h, &st);
	exited = st.flags & PAGEIN_HANDLER_VMM_EXITED;
	for (i = 0; i < PAGEIN_HIST_BUCKETS; i++)
		total += st.lat_hist[i];
	for (i = 0; i < PAGEIN_HIST_BUCKETS && total; i++) {
		acc += st.lat_hist[i];
		if (!p50 && acc * 2 >= total)
			p50 = 2ull << i;
		if (!p99 && acc * 100 >= total * 99)
			p99 = 2ull << i;
	}
	if (o->json) {
		printf("{\"vmm_pid\":%d,\"regions\":%u,\"backing\":\"%s\",\"faults\":%llu,"
		       "\"pages_demand\":%llu,\"pages_prefetch\":%llu,\"pages_zero\":%llu,"
		       "\"rezero\":%llu,\"fault_errors\":%llu,\"events_remove\":%llu,"
		       "\"eexist\":%llu,\"eagain\":%llu,\"bytes_read\":%llu,\"fault_p50_ns\":%llu,"
		       "\"fault_p99_ns\":%llu,\"wakes\":%llu,\"ws_pages\":%llu,\"elapsed_ms\":%.1f,"
		       "\"ws_refused\":%s,\"vmm_exited\":%s}\n",
		       pagein_handler_pid(h), n, pagein_backing_name(r[0].backing),
		       (unsigned long long)st.faults, (unsigned long long)st.pages_demand,
		       (unsigned long long)st.pages_prefetch, (unsigned long long)st.pages_zero,
		       (unsigned long long)st.rezero, (unsigned long long)st.fault_errors,
		       (unsigned long long)st.events_remove, (unsigned long long)st.eexist,
		       (unsigned long long)st.eagain, (unsigned long long)st.bytes_read,
		       (unsigned long long)p50, (unsigned long long)p99,
		       (unsigned long long)st.wakes, (unsigned long long)st.ws_pages,
		       st.elapsed_ns / 1e6, st.flags & PAGEIN_HANDLER_WS_REFUSED ? "true" : "false",
		       exited ? "true" : "false");
	} else {
		pr_info("handler: VMM %d %s after %.1f ms: %u regions (%s), %llu faults, %llu pages "
			"on demand, %llu prefetched, %llu zero, %llu re-zeroed after a discard, "
			"%llu failed, %llu REMOVE events, %llu MiB read, fault service p50 %llu us "
			"p99 %llu us", pagein_handler_pid(h), exited ? "exited" : "stopped",
			st.elapsed_ns / 1e6, n, pagein_backing_name(r[0].backing),
			(unsigned long long)st.faults, (unsigned long long)st.pages_demand,
			(unsigned long long)st.pages_prefetch, (unsigned long long)st.pages_zero,
			(unsigned long long)st.rezero, (unsigned long long)st.fault_errors,
			(unsigned long long)st.events_remove,
			(unsigned long long)(st.bytes_read >> 20), (unsigned long long)(p50 / 1000),
			(unsigned long long)(p99 / 1000));
		if (st.ws_pages)
			pr_info("handler: working set of %llu pages written",
				(unsigned long long)st.ws_pages);
	}
	fflush(stdout);
}

static struct pagein_handler *the_handler; /* for the signal handler */

static void on_signal(int sig)
{
	if (the_handler)
		pagein_handler_stop(the_handler);
}

static int run_handler(const struct hopts *o, const struct pagein_handler_config *cfg)
{
	struct pagein_vmm_region r[PAGEIN_RAW_MAX_REGIONS];
	struct pagein_region_desc d[PAGEIN_RAW_MAX_REGIONS];
	struct pagein_source *inner = NULL, *src = NULL;
	struct pagein_handler *h;
	uint64_t image_id;
	char err[256];
	int n, nd = 0, i, ret, rc = 1;

	ret = pagein_handler_new(cfg, &h);
	if (ret < 0)
		return 1; /* logged */
	the_handler = h;
	if (!o->json)
		pr_info("handler: waiting for a VMM on %s", cfg->socket);
	n = pagein_handler_accept(h, o->accept_timeout_ms);
	if (n < 0)
		goto out; /* logged */
	n = pagein_handler_regions(h, r, PAGEIN_RAW_MAX_REGIONS);
	if (n > PAGEIN_RAW_MAX_REGIONS) {
		pr_err("the VMM has %d regions, at most %d are served", n, PAGEIN_RAW_MAX_REGIONS);
		goto out;
	}
	if (o->raw) {
		struct pagein_raw_region l[PAGEIN_RAW_MAX_REGIONS];

		/* the file's layout is the VMM's: each region at its offset */
		for (i = 0; i < n; i++)
			l[i] = (struct pagein_raw_region){ r[i].offset, r[i].size, r[i].offset, 0 };
		ret = pagein_source_raw_new(o->raw, l, (unsigned)n, err, sizeof(err), &src);
		if (ret < 0) {
			pr_err("%s", err);
			goto out;
		}
		image_id = pagein_source_raw_image_id(src);
	} else {
		if (o->snap) {
			ret = pagein_source_file_new(o->snap, &inner);
			nd = ret < 0 ? ret
				     : pagein_snapshot_regions(o->snap, d, PAGEIN_RAW_MAX_REGIONS);
		} else {
			struct pagein_net_config nc;

			pagein_net_config_init(&nc);
			nc.addr = o->addr;
			nc.log = tool_log;
			nc.psk_file = o->psk_file;
			nc.tls_cert = o->tls_cert;
			nc.tls_key = o->tls_key;
			nc.tls_ca = o->tls_ca;
			nc.tls_name = o->tls_name;
			nc.insecure = o->insecure;
			ret = pagein_source_net_new(&nc, &inner);
			nd = ret < 0 ? ret : pagein_net_regions(inner, d, PAGEIN_RAW_MAX_REGIONS);
		}
		if (ret < 0 || nd < 0) {
			pr_err("cannot open %s: %s", o->snap ? o->snap : o->addr,
			       strerror(-(ret < 0 ? ret : nd)));
			/* the source failed or refused us (TLS included), as restore says it */
			rc = exit_for_errno(ret < 0 ? ret : nd, EXIT_SOURCE_LOST);
			if (ret == -EACCES)
				rc = EXIT_SOURCE_LOST;
			goto out;
		}
		if (remap_new(inner, d, nd, r, (unsigned)n, &src) < 0)
			goto out;
		/* the image's identity: its region table with the regions' content digests */
		image_id = snapshot_image_id(d, (unsigned)nd);
	}
	ret = pagein_handler_serve(h, src, image_id);
	if (ret < 0)
		goto out; /* logged */
	summary(o, h, r, (unsigned)n);
	rc = 0;
out:
	the_handler = NULL;
	pagein_handler_free(h);
	pagein_source_free(src);
	pagein_source_free(inner);
	return rc;
}

/* long options without a letter (letters are taken) */
enum { OPT_PSK = 0x100, OPT_CERT, OPT_KEY, OPT_CA, OPT_NAME, OPT_INSECURE };

int cmd_handler(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "socket", required_argument, NULL, 'S' },
		{ "raw", required_argument, NULL, 'R' },
		{ "layout", required_argument, NULL, 'L' },
		{ "from-file", required_argument, NULL, 'i' },
		{ "from", required_argument, NULL, 'o' },
		{ "record-ws", required_argument, NULL, 'W' },
		{ "prefetch-ws", required_argument, NULL, 'P' },
		{ "accept-timeout", required_argument, NULL, 'a' },
		{ "timeout", required_argument, NULL, 'T' },
		{ "no-check", no_argument, NULL, 'N' },
		{ "json", no_argument, NULL, 'j' },
		{ "verbose", no_argument, NULL, 'v' },
		{ "help", no_argument, NULL, 'h' },
		{ "psk-file", required_argument, NULL, OPT_PSK },
		{ "tls-cert", required_argument, NULL, OPT_CERT },
		{ "tls-key", required_argument, NULL, OPT_KEY },
		{ "tls-ca", required_argument, NULL, OPT_CA },
		{ "tls-name", required_argument, NULL, OPT_NAME },
		{ "insecure", no_argument, NULL, OPT_INSECURE },
		{ NULL, 0, NULL, 0 },
	};
	struct hopts o = { .accept_timeout_ms = -1 };
	struct pagein_handler_config cfg;
	struct sigaction sa = { .sa_handler = on_signal };
	int c;

	pagein_handler_config_init(&cfg);
	cfg.log = tool_log;
	while ((c = getopt_long(argc, argv, "vh", longopts, NULL)) != -1) {
		switch (c) {
		case 'S': cfg.socket = optarg; break;
		case 'R': o.raw = optarg; break;
		case 'L':
			die_code(EXIT_USAGE, "handler: the layout comes from the VMM's region "
				 "list (each region's 'offset' in the memory file); --layout is for "
				 "pagein restore --raw");
		case 'i': o.snap = optarg; break;
		case 'o': o.addr = optarg; break;
		case 'W': cfg.record_ws = optarg; break;
		case 'P': cfg.prefetch_ws = optarg; break;
		case 'a':
			o.accept_timeout_ms = (int)opt_uint("--accept-timeout", optarg, 1, 86400000);
			break;
		case 'T': cfg.timeout_ms = opt_uint("--timeout", optarg, 1, 3600000); break;
		case 'N': cfg.check_regions = false; break;
		case 'j': o.json = true; break;
		case 'v': tool_verbose = true; break;
		case OPT_PSK: o.psk_file = optarg; break;
		case OPT_CERT: o.tls_cert = optarg; break;
		case OPT_KEY: o.tls_key = optarg; break;
		case OPT_CA: o.tls_ca = optarg; break;
		case OPT_NAME: o.tls_name = optarg; break;
		case OPT_INSECURE: o.insecure = true; break;
		case 'h': usage(stdout); return 0;
		default: usage(stderr); return EXIT_USAGE;
		}
	}
	if (!cfg.socket || (!!o.raw + !!o.snap + !!o.addr) != 1) {
		pr_err("handler needs --socket PATH and one of --raw FILE, --from-file SNAP, "
		       "--from HOST:PORT");
		usage(stderr);
		return EXIT_USAGE;
	}
	if (!o.addr && (o.psk_file || o.tls_cert || o.tls_key || o.tls_ca || o.tls_name ||
			o.insecure))
		die_code(EXIT_USAGE, "--psk-file, --tls-* and --insecure are for --from HOST:PORT");
	if (o.addr)
		opt_hostport("--from", o.addr, false);
	if (cfg.record_ws && cfg.prefetch_ws)
		die_code(EXIT_USAGE, "--record-ws and --prefetch-ws cannot go together: "
			 "prefetched pages never fault, so their touches cannot be recorded");
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);
	return run_handler(&o, &cfg);
}
