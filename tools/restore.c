// SPDX-License-Identifier: MIT
/*
 * restore.c - the restore engine the `restore` and `demo` commands drive: map the regions of a
 * snapshot or a page server as a pagein space, run workload threads over the memory while it
 * arrives (faults) and the fill or the bulk stream brings the rest, print progress (stderr, or
 * JSON lines), then verify every region's digest. A page the source cannot give ends the
 * workload thread that touched it (its SIGBUS is caught), not the process, so a lost source
 * still ends in a summary. Also generates the images the demo serves and snapshots hold.
 */
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <limits.h>
#include <inttypes.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "pagein-net.h"
#include "pagein-vmm.h"
#include "pattern.h"
#include "tools.h"
#include "ctl.h"

/* The most regions the snapshot format and the protocol hold (the library's PAGEIN_MAX_REGIONS
 * once every tree has it). A source with more is refused, never restored in part. */
#define MAX_REGIONS 64

void restore_opts_init(struct restore_opts *o)
{
	memset(o, 0, sizeof(*o));
	o->frontend = PAGEIN_FRONTEND_SELF;
	o->backing = PAGEIN_BACKING_ANON;
	o->readers = 1;
	o->threads = 2;
	o->workload = WL_SEQ;
	o->fill = true;
	o->around = PAGEIN_AROUND_AUTO;
	o->timeout_ms = 10000;
	o->urgent = true;
	o->bulk = 1;
	o->compress = true;
	o->pause_limit_ms = UINT_MAX; /* the library's default */
}


uint64_t *make_image(uint64_t *size, uint64_t seed, unsigned zero_every,
		     struct pagein_region_desc regs[2])
{
	uint64_t *img, lo, sz = (*size + (4u << 20) - 1) & ~((4ull << 20) - 1);

	img = malloc(sz);
	if (!img)
		return NULL;
	pattern_fill(img, 0, sz, seed, zero_every);
	/* two regions, like a PC's RAM below and above a hole: 3/4 at 0, 1/4 at 4 GiB */
	lo = sz / 4 * 3 & ~((2ull << 20) - 1);
	regs[0] = (struct pagein_region_desc){ .gpa = 0, .size = lo };
	regs[1] = (struct pagein_region_desc){ .gpa = 4ull << 30, .size = sz - lo };
	regs[0].digest = pagein_digest(img, lo);
	regs[1].digest = pagein_digest((uint8_t *)img + lo, sz - lo);
	*size = sz;
	return img;
}

int make_snapshot(const char *path, uint64_t size, uint64_t seed, unsigned zero_every, bool force)
{
	struct pagein_region_desc regs[2];
	const void *data[2];
	char tmp[4096];
	uint64_t *img;
	int ret, fd;

	/* beside path, so the rename stays in one file system and is atomic */
	if (snprintf(tmp, sizeof(tmp), "%s.tmp-XXXXXX", path) >= (int)sizeof(tmp))
		return -ENAMETOOLONG;
	if (!force && access(path, F_OK) == 0)
		return -EEXIST;
	img = make_image(&size, seed, zero_every, regs);
	if (!img)
		return -ENOMEM;
	fd = mkstemp(tmp);
	if (fd < 0) {
		ret = -errno;
		goto out_free;
	}
	close(fd);
	data[0] = img;
	data[1] = (uint8_t *)img + regs[0].size;
	ret = pagein_snapshot_save(tmp, regs, data, 2);
	if (ret == 0) {
		/* mkstemp made it 0600; a snapshot is as readable as any file the user writes */
		mode_t um = umask(0);

		umask(um);
		if (chmod(tmp, 0666 & ~um) < 0)
			ret = -errno;
	}
	/* without --force, link() refuses to replace a file that appeared meanwhile; on a file
	 * system without hard links the access() check above has to do */
	if (ret == 0 && !force && link(tmp, path) < 0) {
		ret = -errno;
		if (ret == -EPERM || ret == -EOPNOTSUPP)
			ret = rename(tmp, path) < 0 ? -errno : 0;
	} else if (ret == 0 && force && rename(tmp, path) < 0) {
		ret = -errno;
	}
	unlink(tmp); /* the link's other name, or what a failure left; gone after a rename */
out_free:
	free(img);
	return ret;
}

struct workload_arg {
	const struct restore_opts *o;
	uint8_t **host;          /* per region */
	uint64_t *pages;         /* per region, 4 KiB pages */
	unsigned nreg;
	unsigned id;             /* thread number */
	_Atomic uint64_t *touched;
	volatile uint64_t sum;   /* keeps the reads from being optimised away */
	bool lost;               /* stopped by SIGBUS: a page it touched could not be fetched */
};

/* A page could not be fetched (on_fault_error ran, or a workload thread got SIGBUS). */
static _Atomic bool source_lost;
/* Armed while a workload thread touches guest memory: where its SIGBUS handler jumps to. */
static __thread sigjmp_buf *workload_jmp;

/* The i-th 4 KiB page over all regions. */
static volatile uint64_t *page_word(struct workload_arg *a, uint64_t i)
{
	unsigned r = 0;

	while (r < a->nreg && i >= a->pages[r])
		i -= a->pages[r++];
	return (volatile uint64_t *)(a->host[r] + i * 4096);
}

static void __attribute__((noinline)) workload_touch(struct workload_arg *a)
{
	uint64_t total = 0, per, first, i, j, st = 0x2545f4914f6cdd1dull * (a->id + 1), sum = 0;
	unsigned r;

	for (r = 0; r < a->nreg; r++)
		total += a->pages[r];
	per = total / a->o->threads;
	first = per * a->id;
	if (a->id == a->o->threads - 1)
		per = total - first;
	for (i = 0; i < per; i++) {
		switch (a->o->workload) {
		case WL_SEQ:
			j = first + i;
			break;
		case WL_RAND:
			st ^= st << 13, st ^= st >> 7, st ^= st << 17;
			j = first + st % per;
			break;
		default: /* hot/cold: 9 of 10 touches in the first tenth of memory */
			st ^= st << 13, st ^= st >> 7, st ^= st << 17;
			j = (st % 10) ? st / 16 % (total / 10 + 1) : st / 16 % total;
			break;
		}
		sum += *page_word(a, j);
		atomic_fetch_add_explicit(a->touched, 1, memory_order_relaxed);
	}
	a->sum = sum;
}

static void *workload_main(void *p)
{
	struct workload_arg *a = p;
	sigjmp_buf jb;

	/* a page the source could not give is poisoned, and touching it raises SIGBUS in this
	 * thread: the handler jumps back here, and the thread ends as lost instead of the process
	 * dying by the signal, so run_restore can still print its summary */
	if (sigsetjmp(jb, 1)) {
		workload_jmp = NULL;
		a->lost = true;
		return NULL;
	}
	workload_jmp = &jb;
	workload_touch(a);
	workload_jmp = NULL;
	return NULL;
}

/* SIGBUS behind pagein's own handler (which serves the faults it can and hands on the rest):
 * what reaches here is a page that failed for good. Async-signal-safe. */
static void on_sigbus(int sig, siginfo_t *si, void *uctx)
{
	static const char msg[] = "pagein: a page of guest memory could not be fetched outside "
				  "the workload: the source failed or went away\n";
	ssize_t w;

	/* a workload thread touches guest memory only: its SIGBUS is a page that failed */
	if (workload_jmp) {
		atomic_store(&source_lost, true);
		siglongjmp(*workload_jmp, 1);
	}
	/* anywhere else, a SIGBUS with no failed page reported is a real one: die by it (the
	 * access faults again under the default action) */
	if (!atomic_load(&source_lost)) {
		signal(SIGBUS, SIG_DFL);
		return;
	}
	/* another thread touched a lost page: no summary can be printed from here */
	w = write(2, msg, sizeof(msg) - 1);
	(void)w;
	_exit(EXIT_SOURCE_LOST);
}

static void catch_sigbus(void)
{
	struct sigaction sa;

	memset(&sa, 0, sizeof(sa));
	sa.sa_sigaction = on_sigbus;
	/* SA_NODEFER: pagein's handler may call this one while SIGBUS is being handled */
	sa.sa_flags = SA_SIGINFO | SA_NODEFER;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGBUS, &sa, NULL);
}

/* What progress() needs besides its arguments (the wait loop passes only those). */
static struct {
	const struct restore_opts *o;
	bool human;            /* the progress line on stderr */
	uint64_t next_json_ns; /* when the next periodic JSON line is due */
	uint64_t page_size;    /* of the backing: the unit of pagein_residency */
	uint64_t last_bytes;   /* resident bytes at the last JSON line */
	uint64_t last_json_ns;
} rep;

/* The fault-latency quantile q in microseconds, interpolated inside its log2 bucket. */
static double fault_us(const struct pagein_stats *st, double q)
{
	return hist_quantile(st->lat_hist, PAGEIN_HIST_BUCKETS, q) / 1000.0;
}

/* The members every restore JSON line has: where the transfer stands. */
static void json_transfer(struct pagein_space *s, const struct pagein_stats *st, uint64_t t0,
			  uint64_t t, double mib_s)
{
	uint64_t present, total, faults = st->faults_self + st->faults_handler;

	pagein_residency(s, &present, &total);
	json_num("elapsed_s", (double)(t - t0) / 1e9);
	json_u64("page_size", rep.page_size);
	json_u64("pages_total", total);
	json_u64("pages_transferred", present);
	json_u64("pages_remaining", total - present);
	json_u64("bytes_total", total * rep.page_size);
	json_u64("bytes_transferred", present * rep.page_size);
	json_u64("bytes_remaining", (total - present) * rep.page_size);
	json_num("mib_per_s", mib_s);
	json_u64("faults", faults);
	json_num("fault_p50_us", fault_us(st, 0.5));
	json_num("fault_p90_us", fault_us(st, 0.9));
	json_num("fault_p99_us", fault_us(st, 0.99));
	json_num("fault_p999_us", fault_us(st, 0.999));
	json_num("fault_mean_us", faults ? (double)st->fault_ns / (double)faults / 1000.0 : 0.0);
	json_num("blocked_s", (double)st->blocked_ns / 1e9);
	json_u64("fetch_errors", st->fetch_errors);
}

static void progress(struct pagein_space *s, uint64_t t0, uint64_t *last_present,
		     uint64_t *last_faults, uint64_t *last_t, bool final)
{
	struct pagein_stats st;
	uint64_t present, total, t = now_ns(), faults;
	double dt = (double)(t - *last_t) / 1e9;
	bool tty = isatty(2);

	pagein_residency(s, &present, &total);
	pagein_stats_get(s, &st);
	faults = st.faults_self + st.faults_handler;
	if (rep.human) {
		fprintf(stderr, "%s  resident %5.1f%%  %7.1f MiB/s  faults/s %7.0f  p99 fault %7.1f us"
			"  %5.2f s%s", tty ? "\r" : "", 100.0 * (double)present / (double)total,
			dt > 0 ? (double)(present - *last_present) * 4096 / dt / (1 << 20) : 0.0,
			dt > 0 ? (double)(faults - *last_faults) / dt : 0.0, fault_us(&st, 0.99),
			(double)(t - t0) / 1e9, tty && !final ? "" : "\n");
		fflush(stderr);
	}
	if (rep.o->json && rep.o->json_interval > 0 && !final && t >= rep.next_json_ns) {
		double jdt = (double)(t - rep.last_json_ns) / 1e9;

		json_begin("progress", "running");
		json_transfer(s, &st, t0, t, jdt > 0 ? (double)(present * rep.page_size -
						rep.last_bytes) / jdt / (1 << 20) : 0.0);
		json_end();
		rep.last_bytes = present * rep.page_size;
		rep.last_json_ns = t;
		rep.next_json_ns = t + (uint64_t)(rep.o->json_interval * 1e9);
	}
	*last_present = present;
	*last_faults = faults;
	*last_t = t;
}

/* A fault could not be served: say so before the SIGBUS that follows ends the faulting thread.
 * Async-signal-safe (it runs in the faulting thread's SIGBUS handler in self mode). */
static void on_fault_error(void *arg, uint64_t gpa, uint64_t len, int err)
{
	static const char hex[] = "0123456789abcdef";
	static const char head[] = "pagein: the page at gpa 0x";
	static const char tail[] = " could not be fetched (errno ";
	static const char end[] = "): the source failed or went away\n";
	char msg[192];
	size_t n = 0;
	int i, e = err < 0 ? -err : err;

	/* report only the first: after a lost connection every page in flight fails */
	if (atomic_exchange(&source_lost, true))
		return;
	memcpy(msg, head, sizeof(head) - 1);
	n = sizeof(head) - 1;
	for (i = 60; i >= 0; i -= 4)
		msg[n++] = hex[gpa >> i & 15];
	memcpy(msg + n, tail, sizeof(tail) - 1);
	n += sizeof(tail) - 1;
	if (e >= 100)
		msg[n++] = (char)('0' + e / 100 % 10);
	if (e >= 10)
		msg[n++] = (char)('0' + e / 10 % 10);
	msg[n++] = (char)('0' + e % 10);
	memcpy(msg + n, end, sizeof(end) - 1);
	n += sizeof(end) - 1;
	if (write(2, msg, n) < 0)
		return;
}

/* What the control thread reads (tools/ctl.c): set before ctl_start, result at the end. */
static struct {
	const struct restore_opts *o;
	struct pagein_space *s;
	struct pagein_source *src;   /* network source (from_addr), else NULL */
	uint64_t t0, page_size;
	/* the rate's window (control thread only): it restarts once it is a second old, so the
	 * control socket and the status file, which share it, both see a rate over 1-2 s rather
	 * than over the few ms since the other's status */
	uint64_t last_ns, last_present;
	double last_rate; /* MiB/s over the window before, while the new one is under 250 ms */
	_Atomic(const char *) result;   /* "verified", "wrong_bytes", "source_lost" at the end */
} cs;

static const char *net_state_name(int st)
{
	static const char *const names[] = { "RUNNING", "PAUSED", "RESUMING", "DONE", "FAILED" };

	return st >= 0 && st < 5 ? names[st] : "?";
}

/* The destination's status object (control thread). */
static void restore_status(void *arg, struct jbuf *j)
{
	static struct pagein_thread_blocked bt[256];
	struct pagein_stats st;
	uint64_t present, total, t = now_ns(), faults;
	const char *res = atomic_load(&cs.result);
	double rate;
	int n, i;

	(void)arg;
	pagein_residency(cs.s, &present, &total);
	pagein_stats_get(cs.s, &st);
	faults = st.faults_self + st.faults_handler;
	jb_str(j, "role", "destination");
	/* every page present is DONE whatever the link says (a stream-less migration never gets
	 * the stream's END) */
	jb_str(j, "state", present == total ? "DONE" : cs.src ?
			   net_state_name(pagein_net_state(cs.src)) : "RUNNING");
	if (res)
		jb_str(j, "result", res);
	jb_str(j, "source", cs.o->from_addr ? cs.o->from_addr : cs.o->from_raw ? cs.o->from_raw
			    : cs.o->from_file);
	jb_num(j, "elapsed_s", (double)(t - cs.t0) / 1e9);
	jb_u64(j, "page_size", cs.page_size);
	jb_u64(j, "pages_total", total);
	jb_u64(j, "pages_present", present);
	jb_u64(j, "pages_remaining", total - present);
	if (t - cs.last_ns >= 250000000u || (cs.last_ns == cs.t0 && t > cs.t0))
		rate = (double)((present - cs.last_present) * cs.page_size) /
		       ((double)(t - cs.last_ns) / 1e9) / (1 << 20);
	else
		rate = cs.last_rate;
	jb_num(j, "mib_per_s", rate);
	jb_u64(j, "faults", faults);
	jb_num(j, "fault_p50_us", fault_us(&st, 0.5));
	jb_num(j, "fault_p90_us", fault_us(&st, 0.9));
	jb_num(j, "fault_p99_us", fault_us(&st, 0.99));
	jb_num(j, "fault_p999_us", fault_us(&st, 0.999));
	jb_num(j, "blocked_s", (double)st.blocked_ns / 1e9);
	jb_u64(j, "fetch_errors", st.fetch_errors);
	n = pagein_blocktime_get(cs.s, bt, 256);
	jb_open(j, "threads", '[');
	for (i = 0; i < n && i < 256; i++) {
		jb_open(j, NULL, '{');
		jb_u64(j, "tid", (uint64_t)bt[i].tid);
		jb_u64(j, "faults", bt[i].faults);
		jb_num(j, "blocked_ms", (double)bt[i].blocked_ns / 1e6);
		jb_close(j, '}');
	}
	jb_close(j, ']');
	if (cs.src) {
		struct pagein_net_stats ns;

		pagein_net_stats_get(cs.src, &ns);
		jb_u64(j, "net_requests", ns.requests);
		jb_u64(j, "net_pages_urgent", ns.pages_urgent);
		jb_u64(j, "net_pages_bulk", ns.pages_bulk);
		jb_u64(j, "net_bytes_received", ns.bytes_received);
		jb_u64(j, "net_errors", ns.errors);
		jb_u64(j, "net_pauses", ns.pauses);
		jb_u64(j, "net_resumes", ns.resumes);
		jb_bool(j, "net_stream_done", ns.stream_done);
	}
	if (t - cs.last_ns >= 1000000000u) {
		cs.last_ns = t;
		cs.last_present = present;
		cs.last_rate = rate;
	}
}

/* reconnect HOST:PORT (control thread). */
static int restore_command(void *arg, const char *cmd, const char *a, struct jbuf *j, char *err,
			   size_t errlen)
{
	unsigned port;

	(void)arg;
	if (strcmp(cmd, "reconnect"))
		return -ENOTSUP;
	if (!cs.src) {
		snprintf(err, errlen, "this restore is not from a page server");
		return -EINVAL;
	}
	if (cs.o->no_pause) {
		snprintf(err, errlen, "this restore runs with --no-pause: a lost source fails it, "
			 "it never reconnects");
		return -EINVAL;
	}
	if (parse_hostport(a, false, &port) < 0 || pagein_net_reconnect(cs.src, a) < 0) {
		snprintf(err, errlen, "reconnect '%s': not HOST:PORT", a);
		return -EINVAL;
	}
	jb_str(j, "reconnect", a);
	jb_str(j, "state", net_state_name(pagein_net_state(cs.src)));
	return 0;
}

/* Does HOST of "HOST:PORT" resolve to loopback addresses only? (A name that does not resolve
 * counts as loopback here: the library then says it does not resolve.) */
static bool loopback_only(const char *hostport)
{
	struct addrinfo hints = { .ai_socktype = SOCK_STREAM }, *res, *ai;
	const char *colon = strrchr(hostport, ':');
	char host[256];
	bool lo = true;

	snprintf(host, sizeof(host), "%.*s", (int)(colon - hostport), hostport);
	if (host[0] == '[' && host[strlen(host) - 1] == ']') {
		memmove(host, host + 1, strlen(host));
		host[strlen(host) - 1] = 0;
	}
	if (getaddrinfo(host, NULL, &hints, &res) != 0)
		return true;
	for (ai = res; ai; ai = ai->ai_next) {
		if (ai->ai_family == AF_INET)
			lo &= (ntohl(((struct sockaddr_in *)ai->ai_addr)->sin_addr.s_addr) >> 24) == 127;
		else if (ai->ai_family == AF_INET6)
			lo &= IN6_IS_ADDR_LOOPBACK(&((struct sockaddr_in6 *)ai->ai_addr)->sin6_addr);
	}
	freeaddrinfo(res);
	return lo;
}

/* Connect to the page server o->from_addr (dies with the reason when it cannot). */
static struct pagein_source *net_source(const struct restore_opts *o)
{
	struct pagein_net_config nc;
	struct pagein_source *src;
	unsigned i;
	int ret;

	pagein_net_config_init(&nc);
	nc.addr = o->from_addr;
	nc.urgent = o->urgent;
	nc.bulk = o->fill ? o->bulk : 0;
	nc.compress = o->compress;
	nc.batch_pages = o->backing == PAGEIN_BACKING_HUGETLB ? 512 : 64;
	nc.log = tool_log;
	nc.psk_file = o->psk_file;
	nc.tls_cert = o->tls_cert;
	nc.tls_key = o->tls_key;
	nc.tls_ca = o->tls_ca;
	nc.tls_name = o->tls_name;
	nc.insecure = o->insecure;
	nc.no_pause = o->no_pause;
	if (o->pause_limit_ms != UINT_MAX)
		nc.pause_limit_ms = o->pause_limit_ms;
	/* refusing plain TCP off loopback is the user's choice to make: a usage error, not a
	 * source failure */
	if (!o->psk_file && !o->tls_cert && !o->tls_key && !o->tls_ca && !o->insecure &&
	    !loopback_only(o->from_addr))
		die_code(EXIT_USAGE, "refusing to migrate from %s without authentication: give "
			 "--psk-file or --tls-cert/--tls-key/--tls-ca, or --insecure to allow plain "
			 "TCP off loopback", o->from_addr);
	ret = pagein_source_net_new(&nc, &src);
	/* a peer that refused us (a wrong PSK or CA, TLS against plain) is the source failing,
	 * like any other: EACCES is not a local permission here */
	if (ret < 0)
		die_code(ret == -EACCES ? EXIT_SOURCE_LOST : ret == -EPERM && o->psk_file ?
			 EXIT_USAGE /* a PSK file others can read: the log says so */
			 : exit_for_errno(ret, EXIT_SOURCE_LOST), "cannot migrate from %s: %s%s",
			 o->from_addr, strerror(-ret),
			 ret == -EPROTO ? " (the server speaks another protocol: see above)" : "");
	for (i = 0; i < o->nreconnect; i++)
		if (pagein_net_add_alternate(src, o->reconnect[i]) < 0)
			die_code(EXIT_USAGE, "--reconnect %s: not HOST:PORT", o->reconnect[i]);
	return src;
}

/* The raw file's region table from --layout (digests filled in at the end, for the check). */
static int raw_regions(const struct restore_opts *o, struct pagein_region_desc *regs,
		       struct pagein_raw_region *l)
{
	char err[256];
	int n, i;

	n = pagein_raw_layout_parse(o->layout, l, MAX_REGIONS, err, sizeof(err));
	if (n < 0)
		die_code(EXIT_USAGE, "--layout: %s", err);
	for (i = 0; i < n; i++)
		regs[i] = (struct pagein_region_desc){ l[i].gpa, l[i].size, o->backing, 0, 0 };
	return n;
}

/* What the raw file holds for region i: the digest the restored memory must have. Read after
 * the restore (mapped, not copied), so it never warms the page cache for the restore itself. */
static uint64_t raw_digest(const char *path, const struct pagein_raw_region *l)
{
	uint64_t d = 0;
	void *m;
	int fd;

	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return 0;
	m = mmap(NULL, l->size, PROT_READ, MAP_PRIVATE, fd, (off_t)l->offset);
	if (m != MAP_FAILED) {
		d = pagein_digest(m, l->size);
		munmap(m, l->size);
	}
	close(fd);
	return d;
}

/* The working-set prefetch on a thread of its own beside a workload: this restore and
 * `pagein bench --ws` run it the same way. */
static void *ws_prefetch_main(void *arg)
{
	struct ws_prefetch *p = arg;

	p->st.size = sizeof(p->st);
	p->ret = pagein_ws_prefetch(p->s, p->path, p->image_id, &p->st, p->err, sizeof(p->err));
	return NULL;
}

int ws_prefetch_start(struct ws_prefetch *p, struct pagein_space *s, const char *path,
		      uint64_t image_id)
{
	*p = (struct ws_prefetch){ .s = s, .path = path, .image_id = image_id };
	return pthread_create(&p->thread, NULL, ws_prefetch_main, p);
}

void ws_prefetch_join(struct ws_prefetch *p)
{
	pthread_join(p->thread, NULL);
}

uint64_t snapshot_image_id(const struct pagein_region_desc *regs, unsigned n)
{
	return pagein_digest(regs, sizeof(regs[0]) * n);
}

int run_restore(const struct restore_opts *ro)
{
	struct pagein_raw_region layout[MAX_REGIONS];
	struct ws_prefetch pf = { 0 };
	uint64_t image_id = 0;
	struct pagein_region_desc regs[MAX_REGIONS + 1];
	struct workload_arg *args = NULL;
	struct pagein_source *src = NULL;
	struct pagein_space *s = NULL;
	struct restore_opts oc = *ro;
	const struct restore_opts *o = &oc;
	struct pagein_config cfg;
	struct pagein_stats st;
	uint8_t *host[MAX_REGIONS];
	uint64_t pages[MAX_REGIONS], bytes = 0, t0, t_work = 0, t_full = 0, lp = 0, lf = 0, lt;
	_Atomic uint64_t touched = 0;
	pthread_t *th = NULL;
	int n, i, ret, bad = 0, code;
	unsigned t;
	uint64_t ps = pagein_backing_page_size(o->backing);
	bool stream = o->from_addr && o->fill && o->bulk;  /* network bulk stream */
	bool filling = o->from_addr ? stream : o->fill;     /* something brings untouched pages */
	bool lost = false;
	const char *state;
	FILE *out = o->json ? stderr : stdout; /* the human results; stdout is JSON's with --json */
	struct ctl *ctl_p = NULL;

	/* the wait loop below calls progress() while !o->quiet: with periodic JSON lines asked
	 * for, it must call it even when the human progress line is off */
	rep.o = o;
	rep.human = !ro->quiet;
	rep.page_size = ps;
	oc.quiet = ro->quiet && !(ro->json && ro->json_interval > 0);
	/* one more than we hold: a source with more regions is refused, not restored in part */
	if (o->from_addr) {
		src = net_source(o);
		n = pagein_net_regions(src, regs, MAX_REGIONS + 1);
		if (n < 0)
			die_code(EXIT_SOURCE_LOST, "%s: cannot read the region table: %s", o->from_addr,
				 strerror(-n));
	} else if (o->from_raw) {
		n = raw_regions(o, regs, layout);
	} else {
		n = pagein_snapshot_regions(o->from_file, regs, MAX_REGIONS + 1);
		if (n == -ENODATA)
			die_code(EXIT_SOURCE_LOST, "%s is truncated: it is shorter than its header says",
				 o->from_file);
		if (n < 0)
			die_code(exit_for_errno(n, EXIT_SOURCE_LOST), "%s: %s", o->from_file,
				 n == -EINVAL ? "not a pagein snapshot (bad magic, version or header digest)"
					      : strerror(-n));
	}
	if (n > MAX_REGIONS)
		die_code(EXIT_ERROR, "%s has more than %d regions: pagein restores at most %d (nothing "
			 "was restored)", o->from_addr ? o->from_addr : o->from_file, MAX_REGIONS,
			 MAX_REGIONS);
	if (n == 0)
		die_code(EXIT_SOURCE_LOST, "%s has no regions", o->from_addr ? o->from_addr : o->from_file);
	catch_sigbus();
	pagein_config_init(&cfg);
	cfg.frontend = o->frontend;
	cfg.readers = o->readers;
	cfg.fault_around = o->around;
	cfg.timeout_ms = o->timeout_ms;
	cfg.log = tool_log;
	cfg.on_fault_error = on_fault_error;
	ret = pagein_space_new(&cfg, &s);
	if (ret < 0)
		die_code(exit_for_errno(ret, EXIT_ERROR), "cannot create the space: %s", strerror(-ret));
	for (i = 0; i < n; i++) {
		if (regs[i].size % ps)
			die_code(EXIT_USAGE, "region %d (%" PRIu64 " bytes) is not a whole number of %s "
				 "pages", i, regs[i].size, pagein_backing_name(o->backing));
		ret = pagein_region_add(s, regs[i].gpa, regs[i].size, o->backing, (void **)&host[i]);
		if (ret < 0)
			die_code(exit_for_errno(ret, EXIT_ERROR), "region %d of %d (%.1f MiB at gpa 0x%"
				 PRIx64 "): %s (nothing was restored)", i, n,
				 (double)regs[i].size / (1 << 20), regs[i].gpa, strerror(-ret));
		pages[i] = regs[i].size / 4096;
		bytes += regs[i].size;
	}
	if (o->from_raw) {
		char err[256];

		ret = pagein_source_raw_new(o->from_raw, layout, (unsigned)n, err, sizeof(err), &src);
		if (ret < 0)
			die_code(ret == -ENODATA || ret == -EINVAL ? EXIT_USAGE :
				 exit_for_errno(ret, EXIT_SOURCE_LOST), "%s", err);
		image_id = pagein_source_raw_image_id(src);
	} else {
		/* snapshots and servers: the region table with its content digests */
		image_id = snapshot_image_id(regs, (unsigned)n);
	}
	if (!src && (ret = pagein_source_file_new(o->from_file, &src)) < 0)
		die_code(exit_for_errno(ret, EXIT_SOURCE_LOST), "%s: %s", o->from_file, strerror(-ret));
	if (o->record_ws && (ret = pagein_ws_record_start(s, 0)) < 0)
		die_code(exit_for_errno(ret, EXIT_ERROR), "--record-ws: %s", strerror(-ret));
	ret = pagein_space_set_source(s, src);
	if (ret < 0)
		die_code(EXIT_SOURCE_LOST, "the source does not cover the regions: %s", strerror(-ret));

	if (!ro->quiet) {
		char how[96];

		if (o->from_addr)
			snprintf(how, sizeof(how), "bulk stream %s (%u connection%s), urgent channel %s",
				 stream ? "on" : "off", stream ? o->bulk : 0,
				 stream && o->bulk == 1 ? "" : "s", o->urgent ? "on" : "off");
		else
			snprintf(how, sizeof(how), "background fill %s", o->fill ? "on" : "off");
		fprintf(stderr, "restoring %.1f MiB in %d regions lazily from %s: front-end %s, %s "
			"memory, %u workload threads (%s), %s\n",
			(double)bytes / (1 << 20), n, o->from_addr ? o->from_addr :
			o->from_raw ? o->from_raw : o->from_file,
			pagein_frontend_name(o->frontend), pagein_backing_name(o->backing), o->threads,
			o->workload == WL_SEQ ? "sequential" : o->workload == WL_RAND ? "random"
				: o->workload == WL_HOTCOLD ? "hot/cold" : "none", how);
		fflush(stderr);
	}
	t0 = lt = now_ns();
	rep.last_json_ns = t0;
	rep.next_json_ns = t0 + (uint64_t)(o->json_interval * 1e9);
	ret = pagein_space_start(s);
	if (ret < 0)
		die_code(exit_for_errno(ret, EXIT_ERROR), "start: %s", strerror(-ret));
	if (o->control || o->status_file) {
		static struct ctl ctl;

		cs.o = o;
		cs.s = s;
		cs.src = o->from_addr ? src : NULL;
		cs.t0 = cs.last_ns = t0;
		cs.page_size = ps;
		ctl = (struct ctl){ .path = o->control, .status_file = o->status_file,
				    .interval_ms = o->status_ms, .status = restore_status,
				    .command = restore_command, .commands = "reconnect HOST:PORT" };
		ctl_start(&ctl);
		ctl_p = &ctl;
	}
	if (stream && (ret = pagein_net_stream_start(src, s)) < 0)
		die_code(exit_for_errno(ret, EXIT_SOURCE_LOST),
			 "cannot open the bulk connection to %s: %s", o->from_addr, strerror(-ret));
	else if (!o->from_addr && o->fill && (ret = pagein_fill_start(s)) < 0)
		die_code(exit_for_errno(ret, EXIT_ERROR), "fill: %s", strerror(-ret));
	if (o->prefetch_ws) {
		ret = ws_prefetch_start(&pf, s, o->prefetch_ws, image_id);
		if (ret)
			die_code(EXIT_LOCAL, "pthread_create: %s", strerror(ret));
	}

	if (o->workload != WL_NONE && o->threads) {
		th = calloc(o->threads, sizeof(*th));
		args = calloc(o->threads, sizeof(*args));
		if (!th || !args)
			die_code(EXIT_LOCAL, "out of memory");
		for (t = 0; t < o->threads; t++) {
			args[t] = (struct workload_arg){ o, host, pages, (unsigned)n, t, &touched, 0,
							 false };
			ret = pthread_create(&th[t], NULL, workload_main, &args[t]);
			if (ret)
				die_code(EXIT_LOCAL, "pthread_create: %s", strerror(ret));
		}
	}
	/* progress until the workload is done and (with fill) every page is present */
	for (;;) {
		uint64_t present, total;
		uint64_t want = 0;

		for (i = 0; i < n; i++)
			want += pages[i];
		ret = pagein_wait_complete(s, 250);
		if (!t_work && (o->workload == WL_NONE || !th ||
				atomic_load(&touched) >= want))
			t_work = now_ns();
		if (!o->quiet)
			progress(s, t0, &lp, &lf, &lt, false);
		pagein_residency(s, &present, &total);
		if (ret == 0 || ret == -EIO || (!filling && t_work))
			break;
		if (stream) {
			int ss = pagein_net_stream_status(src);

			/* a stream that failed before every page was sent ends the restore, idle
			 * guest or not: nothing else would bring the pages nobody touches */
			if (ss < 0 && ss != -EINPROGRESS) {
				pr_err("the bulk stream from %s failed: %s", o->from_addr,
				       strerror(-ss));
				lost = true; /* a summary, then EXIT_SOURCE_LOST */
				break;
			}
			if (ss == 0 && t_work)
				break; /* faults and the accessors below bring the rest */
		}
	}
	for (t = 0; th && t < o->threads; t++) {
		pthread_join(th[t], NULL);
		lost |= args[t].lost;
	}
	/* the workload's touches are the working set; the accessors below are not */
	if (o->record_ws)
		pagein_ws_record_stop(s);
	if (o->prefetch_ws) {
		ws_prefetch_join(&pf);
		if (pf.ret < 0)
			pr_err("working set not prefetched: %s", pf.err);
	}
	if (!t_work)
		t_work = now_ns();
	if (ret == -EIO)
		pr_err("a page could not be fetched from the source");
	lost |= ret == -EIO;
	/* without the fill, the accessors bring in what the workload did not touch */
	for (i = 0; i < n && !lost; i++) {
		ret = pagein_resolve(s, regs[i].gpa, regs[i].size, NULL);
		if (ret < 0) {
			pr_err("resolving region %d: %s", i, strerror(-ret));
			lost = true;
		}
	}
	lost |= atomic_load(&source_lost);
	t_full = now_ns();
	if (!ro->quiet)
		progress(s, t0, &lp, &lf, &lt, true);

	for (i = 0; o->from_raw && i < n; i++)
		regs[i].digest = raw_digest(o->from_raw, &layout[i]);
	/* a lost source leaves failed (poisoned) pages: reading them for a digest would fault */
	for (i = 0; i < n; i++) {
		uint64_t d = lost ? 0 : pagein_digest(host[i], regs[i].size);
		bool ok = d == regs[i].digest;

		bad += !lost && !ok;
		fprintf(out, "  region %d gpa 0x%" PRIx64 " %.1f MiB: ", i, regs[i].gpa,
			(double)regs[i].size / (1 << 20));
		if (lost)
			fprintf(out, "not verified: the source was lost\n");
		else
			fprintf(out, "digest %016" PRIx64 " %s %s%s\n", d, ok ? "==" : "!=",
				o->from_addr ? "server" : o->from_raw ? "file" : "snapshot",
				ok ? ": verified" : ": WRONG BYTES");
	}
	pagein_stats_get(s, &st);
	fprintf(out, "summary: %.1f MiB in %.3f s (%.0f MiB/s); workload done at %.3f s; faults %"
		PRIu64 " (self %" PRIu64 ", handler %" PRIu64 "), pages on demand %" PRIu64
		", fault-around %" PRIu64 ", fill %" PRIu64 ", accessors %" PRIu64 ", zero %" PRIu64
		"; fault p50 %.1f us p99 %.1f us; blocked %.3f s\n",
		(double)bytes / (1 << 20), (double)(t_full - t0) / 1e9,
		(double)bytes / (1 << 20) / ((double)(t_full - t0) / 1e9), (double)(t_work - t0) / 1e9,
		st.faults_self + st.faults_handler, st.faults_self, st.faults_handler, st.pages_demand,
		st.pages_around, st.pages_fill, st.pages_accessor, st.pages_zero, fault_us(&st, 0.5),
		fault_us(&st, 0.99), (double)st.blocked_ns / 1e9);
	if (o->prefetch_ws && pf.ret == 0)
		fprintf(out, "working set: %" PRIu64 " pages, %" PRIu64 " prefetched (%" PRIu64
			" were there first), %.1f MiB in one read of %.1f ms\n", pf.st.pages,
			pf.st.installed, pf.st.skipped, (double)pf.st.bytes_read / (1 << 20),
			(double)pf.st.read_ns / 1e6);
	if (o->record_ws) {
		char err[256];

		ret = pagein_ws_record_save(s, o->record_ws, image_id, err, sizeof(err));
		if (ret < 0)
			pr_err("--record-ws: %s", err);
		else
			fprintf(out, "working set recorded to %s\n", o->record_ws);
	}
	state = lost ? "source_lost" : bad ? "wrong_bytes" : "verified";
	atomic_store(&cs.result, state);
	code = lost ? EXIT_SOURCE_LOST : bad ? EXIT_WRONG_BYTES : EXIT_OK;
	if (o->json) {
		uint64_t present, total;

		pagein_residency(s, &present, &total);
		json_begin("summary", state);
		json_str("source", o->from_addr ? o->from_addr : o->from_raw ? o->from_raw :
				   o->from_file);
		json_str("frontend", pagein_frontend_name(o->frontend));
		json_str("backing", pagein_backing_name(o->backing));
		json_u64("regions", (uint64_t)n);
		json_u64("regions_verified", lost ? 0 : (uint64_t)(n - bad));
		json_transfer(s, &st, t0, t_full, (double)(present * ps) / (1 << 20) /
					      ((double)(t_full - t0) / 1e9));
		json_num("workload_s", (double)(t_work - t0) / 1e9);
		json_u64("faults_self", st.faults_self);
		json_u64("faults_handler", st.faults_handler);
		json_u64("pages_demand", st.pages_demand);
		json_u64("pages_around", st.pages_around);
		json_u64("pages_fill", st.pages_fill);
		json_u64("pages_accessor", st.pages_accessor);
		json_u64("pages_zero", st.pages_zero);
		json_u64_array("fault_hist_ns", st.lat_hist, PAGEIN_HIST_BUCKETS);
		if (o->prefetch_ws) {
			json_bool("ws_used", pf.ret == 0);
			json_u64("ws_pages_prefetched", pf.st.installed);
		}
	}
	if (o->from_addr) {
		struct pagein_net_stats ns;

		pagein_net_stream_stop(src);
		pagein_net_stats_get(src, &ns);
		/* issue 11's bytes target: what crossed the wire against the non-zero bytes */
		uint64_t nz = bytes > st.pages_zero * ps ? bytes - st.pages_zero * ps : 0;

		fprintf(out, "network: %" PRIu64 " requests, %" PRIu64 " replies, %" PRIu64
			" pages on demand, %" PRIu64 " streamed (%" PRIu64 " installed, the rest were "
			"faulted in first), %.1f MiB received (%.3fx the %.1f MiB of non-zero pages), %"
			PRIu64 " connection errors%s\n",
			ns.requests, ns.replies, ns.pages_urgent, ns.pages_bulk, ns.pages_installed,
			(double)ns.bytes_received / (1 << 20),
			nz ? (double)ns.bytes_received / (double)nz : 0.0, (double)nz / (1 << 20),
			ns.errors, ns.stream_done ? ", stream complete" : "");
		if (o->json) {
			json_u64("net_requests", ns.requests);
			json_u64("net_pages_urgent", ns.pages_urgent);
			json_u64("net_pages_bulk", ns.pages_bulk);
			json_u64("net_bytes_received", ns.bytes_received);
			json_u64("net_nonzero_bytes", nz);
			json_u64("net_errors", ns.errors);
			json_bool("net_stream_done", ns.stream_done);
		}
	}
	if (o->json)
		json_end();
	fprintf(out, "RESULT: %s\n", lost ? "SOURCE LOST: memory not fully restored, not verified"
				    : bad ? "FAILED verification" : "every region verified");
	fflush(out);
	if (ctl_p)
		ctl_stop(ctl_p); /* the status file's last version has the result */
	pagein_space_free(s);
	pagein_source_free(src);
	free(th);
	free(args);
	return code;
}
