/* SPDX-License-Identifier: MIT */
/*
 * net.h - what the two files of `pagein bench --net` share: net.c measures (raw TCP baseline,
 * migrations, the report) and owns the socket helpers and the raw TCP peer; netns.c makes the
 * delayed link (network namespaces with netem, else the user-space delay relay).
 */
#ifndef PAGEIN_BENCH_NET_H
#define PAGEIN_BENCH_NET_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "pagein.h"

#define NB_PAGE 4096u
#define NB_MAX_REGIONS 4u
#define NB_CHUNK (64u << 10)         /* raw TCP writes, relay reads */
#define NB_RAW_BYTES (512ull << 20)  /* bytes per baseline raw throughput run (at most) */
#define NB_RAW_MIN (64ull << 20)     /* smallest raw run */
#define NB_RAW_RUNS 3u               /* raw throughput runs, the median is kept */
#define NB_RTT_N 3000u               /* request/reply round trips */
#define NB_RUNS 7u                   /* bulk, residency, bytes runs (--runs), the median is kept */
#define NB_P99_PAIRS 5u              /* fault-idle + fault-bulk pairs; the median ratio is kept */
#define NB_RUNS_MAX 31u              /* --runs at most */
#define NB_IDLE_FAULTS 3000u         /* timed faults with no bulk traffic */
#define NB_BULK_FAULTS 2000u         /* timed faults wanted under a bulk stream */
#define NB_BULK_MIGS 8u              /* most migrations run to collect them */
#define NB_WAIT_MS 60000             /* longest a migration may take to complete */
#define NB_WATCHDOG_S 400u           /* the whole run, so nothing can hang a test */
#define NB_DELAY_NS 100000ull        /* added one-way delay: 100 us */
#define NB_IO_TIMEOUT_S 10           /* raw server and relay sockets give up after this */
#define RAWSRV_THREADS 2u            /* raw peer connections served at once */
#define RELAY_SLOTS 256u             /* chunks a relay direction holds in flight */
#define RELAY_MAX_CONNS 256u         /* connections one relay serves over its life */

/* One network path and its baseline. */
struct link {
	const char *name;      /* "loopback", "netem-100us" or "relay-100us" */
	char raw_addr[64];     /* HOST:PORT of the raw TCP peer over this path */
	char srv_addr[64];     /* HOST:PORT of the page server over this path */
	double raw_mibs;       /* raw TCP throughput, MiB/s */
	double rtt_p50, rtt_p99; /* request/reply round trip, us */
	double rtt_bulk_p50, rtt_bulk_p99; /* the same under a raw TCP stream, us */
	double idle_p50, idle_p99; /* fault latency with no bulk traffic, us */
	bool handler;          /* migrations use the HANDLER front-end whatever -f says (the TLS
	                        * rows: user-space TLS takes a lock, SELF needs kernel TLS) */
	const char *psk_file;  /* migrations over TLS with this PSK file; NULL: plain TCP */
};

struct rawsrv {
	int lfd;               /* listening socket (non-blocking: several threads accept) */
	int port;
	pthread_t thread[RAWSRV_THREADS]; /* each serves one connection at a time */
	_Atomic bool stop;
};

struct rconn;

/* The delay relay: an acceptor thread and two pump threads per connection. */
struct relay {
	int lfd;
	int port;
	int target_port;       /* on 127.0.0.1 */
	uint64_t delay_ns;
	pthread_t thread;
	_Atomic bool stop;
	struct rconn *conns[RELAY_MAX_CONNS];
	unsigned nconns;       /* acceptor thread only, until stop */
};

/* net.c: the source image the page servers serve, and its two regions. */
extern uint8_t *net_image;
extern struct pagein_region_desc net_image_regs[2];

/* net.c: socket helpers (every helper dies on a setup failure: it is a benchmark). */
/* Receive and send time-outs of NB_IO_TIMEOUT_S, and TCP_NODELAY. */
void set_timeouts(int fd);
/* Send or receive exactly len bytes; 0, or -1 on an error or the end of the stream. */
int send_all(int fd, const void *buf, size_t len);
int recv_all(int fd, void *buf, size_t len);
/* A listening TCP socket on host, port 0 (any free one). Returns the fd; *port gets the port. */
int listen_on(const char *host, int *port);
/* Connect to "HOST:PORT" (IPv4), blocking, with the I/O time-outs set. */
int connect_to(const char *addr);
/* The raw TCP peer on host (a free port in rs->port), and its end. */
void rawsrv_start(struct rawsrv *rs, const char *host);
void rawsrv_stop(struct rawsrv *rs);

/* netns.c: the delayed links. */
/* The delay relay: a loopback listener (r->port) forwarding to 127.0.0.1:target_port, every
 * chunk held delay_ns in each direction. */
void relay_start(struct relay *r, int target_port, uint64_t delay_ns);
void relay_stop(struct relay *r);
/* The namespaces ns_srv and ns_dst, a veth pair and netem qdiscs. 0, or -1 with why[] saying
 * what failed (and nothing left behind). */
int netem_setup(char *why, size_t whylen);
/* Remove what netem_setup made and stop the server child; async-signal-safe. */
void ns_teardown(void);
void ns_teardown_atexit(void);
/* Fork the page server and raw peer into ns_srv and fill l's addresses. Returns the parent's
 * end of the control pipe (close it to stop the child), or -1. */
int ns_child_start(struct link *l);
extern char ns_srv[32], ns_dst[32];

#endif
