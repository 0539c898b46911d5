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
#include "vmm.h"

static void usage(FILE *f)
{
	fprintf(f,
		"usage: pagein handler --socket PATH (--raw FILE | --from-file SNAP | --from HOST:PORT)\n"
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
		"  --json              print the summary as one JSON line\n"
		"  -v, --verbose       log everything\n");
}

static _Atomic bool stop;

static void on_signal(int sig)
{
	atomic_store(&stop, true);
}

/* Map the VMM's regions onto the inner source's region table, in order, sizes equal. */
static int remap_new(struct pagein_source *inner, const struct pagein_region_desc *d, int nd,
		     const struct pi_fc_region *r, unsigned n, struct pagein_source **out)
{
	struct pi_raw_region map[PI_FC_MAX_REGIONS];
	unsigned i;

	if ((unsigned)nd != n) {
		pr_err("the VMM describes %u regions, the image has %d", n, nd);
		return -EINVAL;
	}
	for (i = 0; i < n; i++) {
		if (d[i].size != r[i].size) {
			pr_err("region %u: the VMM's is %llu bytes, the image's %llu", i,
			       (unsigned long long)r[i].size, (unsigned long long)d[i].size);
			return -EINVAL;
		}
		map[i] = (struct pi_raw_region){ d[i].gpa, r[i].size, r[i].offset };
	}
	return pi_source_remap_new(inner, map, n, out);
}

/* What the handler was asked to do. */
struct hopts {
	const char *socket, *raw, *snap, *addr, *record, *prefetch;
	int accept_timeout_ms;
	unsigned timeout_ms;
	bool json, check;
};

static void summary(const struct hopts *o, const struct pi_fc_serve_stats *st, unsigned n,
		    const struct pi_fc_peer_map *m, pid_t pid)
{
	uint64_t lat_buckets = 0, p50 = 0, p99 = 0, acc = 0, i;

	for (i = 0; i < PAGEIN_HIST_BUCKETS; i++)
		lat_buckets += st->lat_hist[i];
	for (i = 0; i < PAGEIN_HIST_BUCKETS && lat_buckets; i++) {
		acc += st->lat_hist[i];
		if (!p50 && acc * 2 >= lat_buckets)
			p50 = 2ull << i;
		if (!p99 && acc * 100 >= lat_buckets * 99)
			p99 = 2ull << i;
	}
	if (o->json) {
		printf("{\"vmm_pid\":%d,\"regions\":%u,\"backing\":\"%s\",\"faults\":%llu,"
		       "\"pages_demand\":%llu,\"pages_prefetch\":%llu,\"pages_zero\":%llu,"
		       "\"rezero\":%llu,\"fault_errors\":%llu,\"events_remove\":%llu,\"eexist\":%llu,\"eagain\":%llu,"
		       "\"bytes_read\":%llu,\"fault_p50_ns\":%llu,\"fault_p99_ns\":%llu,"
		       "\"wakes\":%llu,\"elapsed_ms\":%.1f,\"ws_refused\":%s,\"vmm_exited\":%s}\n",
		       (int)pid, n, pagein_backing_name(m[0].backing), (unsigned long long)st->faults,
		       (unsigned long long)st->pages_demand, (unsigned long long)st->pages_prefetch,
		       (unsigned long long)st->pages_zero, (unsigned long long)st->rezero,
		       (unsigned long long)st->fault_errors,
		       (unsigned long long)st->events_remove, (unsigned long long)st->eexist,
		       (unsigned long long)st->eagain, (unsigned long long)st->bytes_read,
		       (unsigned long long)p50, (unsigned long long)p99,
		       (unsigned long long)st->wakes, st->elapsed_ns / 1e6,
		       st->ws_refused ? "true" : "false", st->peer_exited ? "true" : "false");
	} else {
		pr_info("handler: VMM %d %s after %.1f ms: %u regions (%s), %llu faults, %llu pages "
			"on demand, %llu prefetched, %llu zero, %llu re-zeroed after a discard, "
			"%llu REMOVE events, %llu MiB read, fault latency p50 %llu us p99 %llu us",
			(int)pid, st->peer_exited ? "exited" : "stopped", st->elapsed_ns / 1e6, n,
			pagein_backing_name(m[0].backing), (unsigned long long)st->faults,
			(unsigned long long)st->pages_demand, (unsigned long long)st->pages_prefetch,
			(unsigned long long)st->pages_zero, (unsigned long long)st->rezero,
			(unsigned long long)st->events_remove,
			(unsigned long long)(st->bytes_read >> 20), (unsigned long long)(p50 / 1000),
			(unsigned long long)(p99 / 1000));
	}
	fflush(stdout);
}

static int run_handler(const struct hopts *o)
{
	static struct pi_fc_handoff h;
	struct pi_fc_region r[PI_FC_MAX_REGIONS];
	struct pi_fc_peer_map m[PI_FC_MAX_REGIONS];
	struct pagein_region_desc d[PI_FC_MAX_REGIONS];
	struct pi_fc_serve_opts so = { .timeout_ms = o->timeout_ms, .log = tool_log,
				       .stop = &stop, .record = o->record != NULL };
	struct pagein_source *inner = NULL, *src = NULL;
	struct pi_fc_serve_stats st;
	struct pi_ws ws = { .fd = -1 };
	char err[PI_ERRLEN];
	int lfd, n, nd = 0, i, ret, rc = 1;

	lfd = pi_fc_listen(o->socket, err, sizeof(err));
	if (lfd < 0)
		die("%s", err);
	if (o->prefetch && pi_ws_open(o->prefetch, &ws, err, sizeof(err)) < 0)
		die("%s", err);
	if (!o->json)
		pr_info("handler: waiting for a VMM on %s", o->socket);
	ret = pi_fc_accept(lfd, o->accept_timeout_ms, &h, err, sizeof(err));
	close(lfd);
	unlink(o->socket);
	if (ret < 0) {
		pr_err("%s", err);
		goto out;
	}
	n = pi_fc_parse(h.json, h.json_len, r, PI_FC_MAX_REGIONS, err, sizeof(err));
	if (n < 0) {
		pr_err("VMM %d: %s", (int)h.pid, err);
		goto out;
	}
	for (i = 0; i < n; i++)
		m[i] = (struct pi_fc_peer_map){ PAGEIN_BACKING_ANON, false };
	if (o->check) {
		ret = pi_fc_check_regions(h.pid, r, (unsigned)n, m, err, sizeof(err));
		if (ret == -EINVAL) {
			pr_err("VMM %d: %s", (int)h.pid, err);
			goto out;
		}
		if (ret < 0)
			pr_err("warning: %s; serving unchecked", err);
	}
	for (i = 0; i < n; i++)
		if (!r[i].page_size_given && m[i].backing == PAGEIN_BACKING_HUGETLB) {
			pr_err("VMM %d sent no page size (Firecracker before 1.7) but maps hugetlb "
			       "memory", (int)h.pid);
			goto out;
		}
	if (o->raw) {
		struct pi_raw_region l[PI_FC_MAX_REGIONS];

		for (i = 0; i < n; i++)
			l[i] = (struct pi_raw_region){ r[i].offset, r[i].size, r[i].offset };
		ret = pi_source_raw_new(o->raw, l, (unsigned)n, err, sizeof(err), &src);
		if (ret < 0) {
			pr_err("%s", err);
			goto out;
		}
		so.image_id = pi_source_raw_image_id(src);
	} else {
		if (o->snap) {
			ret = pagein_source_file_new(o->snap, &inner);
			nd = ret < 0 ? ret : pagein_snapshot_regions(o->snap, d, PI_FC_MAX_REGIONS);
		} else {
			struct pagein_net_config nc;

			pagein_net_config_init(&nc);
			nc.addr = o->addr;
			nc.log = tool_log;
			ret = pagein_source_net_new(&nc, &inner);
			nd = ret < 0 ? ret : pagein_net_regions(inner, d, PI_FC_MAX_REGIONS);
		}
		if (ret < 0 || nd < 0) {
			pr_err("cannot open %s: %s", o->snap ? o->snap : o->addr,
			       strerror(-(ret < 0 ? ret : nd)));
			goto out;
		}
		if (remap_new(inner, d, nd, r, (unsigned)n, &src) < 0)
			goto out;
		/* the image's identity: its regions' content digests */
		so.image_id = pagein_digest(d, sizeof(d[0]) * (unsigned)nd);
	}
	so.src = src;
	so.ws = o->prefetch ? &ws : NULL;
	ret = pi_fc_serve(&h, r, (unsigned)n, m, &so, &st);
	if (ret < 0) {
		pr_err("serving VMM %d failed: %s", (int)h.pid, strerror(-ret));
		goto out;
	}
	if (o->record) {
		ret = pi_ws_write(o->record, st.rec, st.nrec, r[0].page_size, so.image_id, src, err,
				  sizeof(err));
		free(st.rec);
		if (ret < 0) {
			pr_err("%s", err);
			goto out;
		}
		if (!o->json)
			pr_info("handler: working set of %llu pages written to %s",
				(unsigned long long)st.nrec, o->record);
	}
	summary(o, &st, (unsigned)n, m, h.pid);
	rc = 0;
out:
	pagein_source_free(src);
	pagein_source_free(inner);
	if (ws.fd >= 0)
		pi_ws_close(&ws);
	pi_fc_handoff_close(&h);
	return rc;
}

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
		{ NULL, 0, NULL, 0 },
	};
	struct hopts o = { .accept_timeout_ms = -1, .timeout_ms = 10000, .check = true };
	struct sigaction sa = { .sa_handler = on_signal };
	int c;

	while ((c = getopt_long(argc, argv, "vh", longopts, NULL)) != -1) {
		switch (c) {
		case 'S': o.socket = optarg; break;
		case 'R': o.raw = optarg; break;
		case 'L':
			die("handler: the layout comes from the VMM's region list (each region's "
			    "'offset' in the memory file); --layout is for pagein restore --raw");
		case 'i': o.snap = optarg; break;
		case 'o': o.addr = optarg; break;
		case 'W': o.record = optarg; break;
		case 'P': o.prefetch = optarg; break;
		case 'a': o.accept_timeout_ms = atoi(optarg); break;
		case 'T': o.timeout_ms = (unsigned)atoi(optarg); break;
		case 'N': o.check = false; break;
		case 'j': o.json = true; break;
		case 'v': tool_verbose = true; break;
		case 'h': usage(stdout); return 0;
		default: usage(stderr); return 2;
		}
	}
	if (!o.socket || (!!o.raw + !!o.snap + !!o.addr) != 1) {
		pr_err("handler needs --socket PATH and one of --raw FILE, --from-file SNAP, "
		       "--from HOST:PORT");
		usage(stderr);
		return 2;
	}
	if (o.record && o.prefetch)
		die("--record-ws and --prefetch-ws cannot go together: prefetched pages never "
		    "fault, so their touches cannot be recorded");
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);
	return run_handler(&o);
}
