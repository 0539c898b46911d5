/* SPDX-License-Identifier: MIT */
/*
 * proxy.h - a fault-injecting TCP proxy for the tests: it listens on 127.0.0.1 and forwards each
 * connection to a target port (the page server), and on cue cuts every connection (RST), stalls
 * the link (stops forwarding, both ways, for a time or for ever), keeps the link down (new
 * connections are reset) or flips one byte of the server's stream. Cues come from the test
 * (t_proxy_cut, t_proxy_stall) or from the traffic: N cuts or one stall at random moments,
 * measured in bytes forwarded. One thread, poll-driven; bounded in connections; always stopped by
 * the test with t_proxy_stop.
 */
#ifndef PAGEIN_TEST_PROXY_H
#define PAGEIN_TEST_PROXY_H

#include <stdbool.h>
#include <stdint.h>

#define T_PROXY_MAX_PAIRS 64   /* connections forwarded at once; more are reset */
#define T_PROXY_MAX_EVENTS 64  /* recovery latencies kept */

enum t_proxy_mode {
	T_PROXY_PASS = 0,    /* forward only (cues from the test still work) */
	T_PROXY_CUT,         /* cut every connection at `cuts` random moments */
	T_PROXY_STALL,       /* at one random moment, stall for stall_ms (0: for ever) */
	T_PROXY_FLIP,        /* flip one byte of the server's stream (see flip_*) */
};

struct t_proxy_config {
	int target_port;          /* 127.0.0.1:target_port, changeable with t_proxy_set_target */
	enum t_proxy_mode mode;
	unsigned cuts;            /* T_PROXY_CUT: how many (1..) */
	/* random moments: each cut (or the stall) comes after a number of bytes forwarded (both
	 * ways, all connections) drawn uniformly from [gap_min, gap_max] since the start or the
	 * last cut */
	uint64_t gap_min, gap_max;
	unsigned down_ms;         /* after each cut, connections arriving within this are reset */
	unsigned stall_ms;        /* T_PROXY_STALL: how long; 0 = until t_proxy_stop */
	unsigned flip_conn;       /* T_PROXY_FLIP: the n-th connection accepted (0-based) */
	uint64_t flip_offset;     /* ... its server-to-client byte at this offset is XORed */
	uint8_t flip_mask;        /* with this (0 means 0x01) */
	uint64_t seed;            /* for the random moments (0 means 1) */
};

/* Counters, read with t_proxy_stats (a consistent copy). */
struct t_proxy_stats {
	unsigned accepted;        /* connections accepted and forwarded */
	unsigned refused;         /* reset at once (link down, or too many) */
	unsigned cuts;            /* cut events done (each cuts every live connection) */
	unsigned conns_cut;       /* connections those cut */
	unsigned stalls;          /* stall events begun */
	bool stalled;             /* a stall is in progress */
	bool flipped;             /* the flip was made */
	uint64_t bytes_up;        /* client -> server */
	uint64_t bytes_down;      /* server -> client */
	/* for each time the link came back (end of a down period or a stall): microseconds until
	 * the next server-to-client byte went through (0 while none has yet) */
	unsigned nrecover;
	uint64_t recover_us[T_PROXY_MAX_EVENTS];
};

struct t_proxy;

/* Fill cfg with defaults: PASS, gaps [64 KiB, 4 MiB], no down time, seed 1. */
void t_proxy_config_init(struct t_proxy_config *cfg, int target_port);
/* Listen on an ephemeral loopback port and start the proxy's thread. Returns 0 or -errno. */
int t_proxy_start(const struct t_proxy_config *cfg, struct t_proxy **out);
/* The port destinations connect to. */
int t_proxy_port(struct t_proxy *p);
/* Forward new connections to another port from now on (a restarted server). */
void t_proxy_set_target(struct t_proxy *p, int port);
/* Cut every live connection now (RST); the link then stays down for down_ms. */
void t_proxy_cut(struct t_proxy *p);
/* Stall now for ms (0: until t_proxy_resume or t_proxy_stop). */
void t_proxy_stall(struct t_proxy *p, unsigned ms);
/* End a stall now. */
void t_proxy_resume(struct t_proxy *p);
void t_proxy_stats(struct t_proxy *p, struct t_proxy_stats *st);
/* Stop the thread, close every socket, free p. Safe on NULL. */
void t_proxy_stop(struct t_proxy *p);

#endif
