/* SPDX-License-Identifier: MIT */
/*
 * pagein-net.h - the network half of libpagein: post-copy migration. The page server (the
 * migration source: lib/net/server.c) serves guest memory or a snapshot; the network source (the
 * destination: lib/net/client.c, urgent.c, stream.c) fetches faulting pages over an urgent
 * connection and streams the rest over bulk connections. Wire format: docs/protocol.md.
 * Every function returns 0 (or a count) or -errno.
 */
#ifndef PAGEIN_NET_H
#define PAGEIN_NET_H

#include "pagein.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---------------------------------------------------------------------------------------------
 * The page server (the migration source)
 */

struct pagein_server; /* the migration source: serves guest memory to destinations */

/* Fill it with pagein_server_config_init() first (it sets size), then change fields. Fields added
 * later go at the end: a program built against an older header passes a smaller size and gets
 * their defaults. */
struct pagein_server_config {
	uint32_t size;           /* sizeof(struct pagein_server_config) the caller was built with:
	                          * set by pagein_server_config_init; pagein_server_new refuses 0 */
	const char *listen;      /* "ADDR:PORT" to listen on; default "127.0.0.1:0" (a free port) */
	unsigned max_sessions;   /* destinations served at once (default 16); more are refused */
	bool compress;           /* LZ4 for bulk pages when it pays, if the client accepts (default
	                          * true) */
	unsigned timeout_ms;     /* a peer silent this long in the middle of a frame is dropped
	                          * (default 10000) */
	void (*log)(void *arg, int level, const char *msg); /* NULL = silent */
	void *log_arg;
	unsigned idle_ms;        /* a session that has neither opened a bulk connection nor sent a
	                          * request for this long is closed, so idle peers cannot hold
	                          * every session slot (default 30000; 0 = never) */
	unsigned max_sessions_per_peer; /* sessions one peer address may hold at once (default 8;
	                                 * 0 = only max_sessions) */
	unsigned max_conns_per_peer; /* connections one peer address may hold at once, handshakes
	                              * included (default 40: two destinations with 16 bulk
	                              * connections each; 0 = only the server-wide limit) */
	/* TLS 1.3 on every connection: a pre-shared key (PSK with (EC)DHE; a file holding
	 * IDENTITY:HEXKEY, 16..64 bytes, readable by its owner only) or certificates verified both
	 * ways (all three of cert, key, CA). Kernel TLS offload is used where the kernel has it.
	 * Without either, the server listens on loopback only unless insecure is set. */
	const char *psk_file;
	const char *tls_cert, *tls_key, *tls_ca;
	bool insecure;           /* allow plain TCP off loopback */
	uint64_t max_bandwidth;  /* bytes per second for the bulk stream, all sessions together
	                          * (a token bucket); replies to requests are never held back.
	                          * 0 = no limit (default). Changed live by
	                          * pagein_server_set_bandwidth */
	unsigned grace_ms;       /* a resumable session (a destination with pause on) outlives its
	                          * last connection this long (default 60000; 0 = ends with it): a
	                          * destination that lost its link rejoins it with a proof of its
	                          * secret and gets exactly the pages it lacks. Sessions in their
	                          * grace period count against max_sessions; a new session evicts
	                          * the oldest of them rather than being refused */
};

/* Fill cfg with the defaults above. */
void pagein_server_config_init(struct pagein_server_config *cfg);

/* Create a server (not listening yet) with a copy of cfg (NULL = defaults). The log callback is
 * called from the server's threads, concurrently. Returns 0 and *out, -EINVAL (bad listen
 * address, max_sessions or timeout_ms of 0, cfg->size not set by pagein_server_config_init),
 * -ENOMEM. */
int pagein_server_new(const struct pagein_server_config *cfg, struct pagein_server **out);

/* Serve [gpa, gpa+size) from mem (the source VMM's own guest memory, paused: it must not change
 * while served). Before start; 4 KiB-aligned, no overlap, at most 64 regions in all. Returns 0 or
 * -EINVAL/-EBUSY/-ENOSPC. */
int pagein_server_add_memory(struct pagein_server *srv, uint64_t gpa, uint64_t size,
			     const void *mem);

/* Serve every region of a snapshot file. Before start. Returns 0 or the errors of
 * pagein_source_file_new (-EINVAL, -ENODATA, open's -errno), -EBUSY, -ENOSPC. */
int pagein_server_add_snapshot(struct pagein_server *srv, const char *path);

/* Bind, listen, and serve from a thread of the server's own (one more per connection). Returns
 * 0, -EINVAL (no region), or the -errno of socket/bind/listen (logged with the address). */
int pagein_server_start(struct pagein_server *srv);

/* The TCP port the server listens on (after start), or -ENOTCONN. */
int pagein_server_port(struct pagein_server *srv);

/* Close every connection and stop the server's threads. Idempotent; a stopped server cannot be
 * started again (-EBUSY). */
void pagein_server_stop(struct pagein_server *srv);
void pagein_server_free(struct pagein_server *srv);

struct pagein_server_stats {
	uint64_t sessions;        /* sessions opened so far */
	uint64_t sessions_active; /* open now */
	uint64_t connections;     /* connections accepted so far */
	uint64_t refused;         /* connections refused (handshake, limits) */
	uint64_t malformed;       /* connections closed for a malformed or out-of-range message */
	uint64_t requests;        /* REQ frames answered */
	uint64_t pages_urgent;    /* pages sent in replies */
	uint64_t pages_bulk;      /* pages sent by the bulk stream */
	uint64_t pages_lz4;       /* of those, sent LZ4-compressed */
	uint64_t bytes_sent;      /* on the wire, headers included */
	uint64_t pages_twice;     /* pages a request asked for that the session had sent already
	                          * (in flight on the stream, or asked twice) */
	uint64_t sessions_completed; /* sessions that ended with every page sent */
	uint64_t bulk_throttled_ns; /* time bulk connections waited for the bandwidth limit */
	uint64_t reserved[5];     /* room for counters added later (the size never changes); 0 */
};
void pagein_server_stats_get(struct pagein_server *srv, struct pagein_server_stats *st);

/*
 * Drain: from now on refuse new destinations (a HELLO that opens a session gets an ERROR saying
 * the server is draining), while the sessions open now go on, and their destinations may still
 * join them with more connections. The server stops nothing by itself: wait for
 * sessions_active (pagein_server_stats_get) to reach 0, then pagein_server_stop. Idempotent.
 * Returns 0, or -ENOTCONN when the server is not running. Any thread.
 */
int pagein_server_drain(struct pagein_server *srv);

/* The bulk stream's limit in bytes per second from now on, all sessions together (0 = none);
 * replies to requests are never held back. Returns 0. Any thread. */
int pagein_server_set_bandwidth(struct pagein_server *srv, uint64_t bytes_per_s);

/* Where one session stands (pagein_server_sessions). */
enum pagein_session_state {
	PAGEIN_SESSION_IDLE = 0,  /* open, no bulk connection and no request yet */
	PAGEIN_SESSION_RESUMING,  /* opened to resume: reading what the destination has */
	PAGEIN_SESSION_STREAMING, /* pages left to send */
	PAGEIN_SESSION_SENT,      /* every page sent; ends when the destination leaves */
};

struct pagein_server_session {
	uint64_t id;          /* the session id (as in the server's log) */
	char peer[64];        /* the destination's address, without port */
	uint32_t state;       /* enum pagein_session_state */
	uint32_t conns;       /* connections attached */
	uint64_t pages_left;  /* pages not sent yet */
	uint64_t pages_total; /* pages served */
	uint64_t age_ms;      /* since it was opened */
	uint64_t reserved[4]; /* 0 */
};

/* The sessions open now into out[0..max). Returns how many are open (possibly more than max:
 * only max are written). Any thread. */
int pagein_server_sessions(struct pagein_server *srv, struct pagein_server_session *out,
			   unsigned max);

/* ---------------------------------------------------------------------------------------------
 * The network source (the destination)
 */

/* Fill it with pagein_net_config_init() first (it sets size), then change fields; fields added
 * later go at the end, as for pagein_server_config. */
struct pagein_net_config {
	uint32_t size;           /* sizeof(struct pagein_net_config) the caller was built with: set
	                          * by pagein_net_config_init; pagein_source_net_new refuses 0 */
	const char *addr;        /* "HOST:PORT" of the page server (required); every address the
	                          * name resolves to is tried in turn */
	bool urgent;             /* faults on their own connection (default true); false: faults
	                          * share the bulk connection (one channel, for comparison) */
	unsigned bulk;           /* bulk connections streaming the rest (default 1; 0 = none) */
	bool compress;           /* accept LZ4 pages (default true) */
	unsigned batch_pages;    /* bulk pages per frame (default 64; use 512 for hugetlb spaces) */
	unsigned connect_timeout_ms; /* connect + handshake (default 5000) */
	void (*log)(void *arg, int level, const char *msg); /* NULL = silent; never from a fetch */
	void *log_arg;
	/* Pause, don't fail (DESIGN.md §6), on by default. Both ends send heartbeats (when the
	 * server grants them); a server that sends nothing for silence_ms pauses the migration:
	 * faults and accessors wait instead of failing (also threads waiting on a page another
	 * thread fetches: their timeout_ms does not run while paused, and starts again at the
	 * resume), until data flows again (RUNNING) or the pause has lasted pause_limit_ms
	 * (FAILED: pages then fail as with pause off). A lost connection (error, reset, closed)
	 * pauses too: the source reconnects with backoff (20 ms doubling to 5 s) to the same
	 * address, or to one given by pagein_net_reconnect, resumes from the pages the destination
	 * has, sends its waiting requests again, and goes back to RUNNING. Works against a
	 * restarted server or a replica serving the same image (same region table and digests).
	 * The idle destination pauses too: the bulk stream waits and resumes with the rest.
	 * no_pause: the old behaviour, a lost or silent server fails pages at once (or after
	 * timeout_ms). A zeroed field is the default, so the flag is negative. */
	bool no_pause;           /* default false: pause on */
	unsigned silence_ms;     /* default 2000 */
	unsigned pause_limit_ms; /* default 600000 (10 min); 0 = wait for ever (as QEMU) */
	void (*on_paused)(void *arg, const char *why);     /* NULL = none; not from a fetch */
	void (*on_resumed)(void *arg, uint64_t paused_ns); /* NULL = none */
	void *cb_arg;
	/* TLS, as for the server (the same PSK file, or this side's certificate, key and the CA
	 * the server's certificate must chain to); tls_name: the name the server's certificate
	 * must carry (NULL: any the CA signed). Without TLS only a loopback server is accepted
	 * unless insecure is set. Under user-space TLS a fault's request is sent by a thread of
	 * the source (the fault only queues it, async-signal-safe), so SELF mode works with
	 * either kind of TLS. */
	const char *psk_file;
	const char *tls_cert, *tls_key, *tls_ca, *tls_name;
	bool insecure;
};

void pagein_net_config_init(struct pagein_net_config *cfg);

/* A destination's migration state (pagein_net_state). */
enum pagein_net_state {
	PAGEIN_NET_RUNNING = 0,
	PAGEIN_NET_PAUSED,   /* the server is silent: faults wait */
	PAGEIN_NET_RESUMING, /* reconnected: handshake, HAVE and re-sent requests under way */
	PAGEIN_NET_DONE,     /* the stream is complete */
	PAGEIN_NET_FAILED,   /* the pause limit passed: pages fail */
};

/* The migration's state now; -EINVAL for a source that is not a network source. Any thread. */
int pagein_net_state(struct pagein_source *src);

/* Reconnect to addr ("HOST:PORT") from now on (pause on, the default): a migration paused by a lost
 * connection tries it at its next attempt, at once. Returns 0, -EINVAL. Any thread but a fault
 * path. */
int pagein_net_reconnect(struct pagein_source *src, const char *addr);

/* Add an alternate server ("HOST:PORT": a restarted one, a replica of the same image) that
 * recovery tries in turn with the first (pause on): after a failed attempt on one address the
 * next attempt uses the next, round the list, the backoff running on as before. A server that
 * serves another image is refused as ever (-ESTALE). pagein_net_reconnect replaces the list with
 * its one address. Returns 0, -EINVAL (not HOST:PORT, not a network source), -ENOSPC (already
 * PAGEIN_NET_MAX_ALTERNATES addresses, the first included). Any thread but a fault path. */
#define PAGEIN_NET_MAX_ALTERNATES 8
int pagein_net_add_alternate(struct pagein_source *src, const char *addr);

/*
 * Connect to a page server (the urgent connection, or the single one when urgent is off),
 * with a copy of cfg (cfg->size set by pagein_net_config_init, else -EINVAL),
 * handshake and learn its region table. The source's fetch sends a request and waits for its
 * reply until the fault's deadline (async-signal-safe: usable from SELF mode). A lost or silent
 * server pauses the migration (the default; see pause above): fetches wait, bounded by the pause
 * limit, then fail with -ECONNRESET/-ETIMEDOUT. With no_pause, a dead or lying server fails
 * fetches at once with -ECONNRESET/-EPROTO/-ETIMEDOUT (-ENOTCONN once the connection is gone).
 * A request the server refuses alone (FAIL) fails that fetch with the server's errno (-EIO,
 * -ERANGE, -EINVAL); the connection stays. Never a hang. Returns 0 and *out, -ECONNREFUSED/-ETIMEDOUT/-EHOSTUNREACH... (the last
 * address tried), -ENXIO (the host name does not resolve) or -EAGAIN (the resolver failed for
 * now: the log has the resolver's words), -EPROTO (the server speaks something else: logged).
 */
int pagein_source_net_new(const struct pagein_net_config *cfg, struct pagein_source **out);

/*
 * The server's region table (gpa, size, digest) into regs[0..max). Returns the region count
 * (1..64) when it fits; -E2BIG (logged) when the server has more regions than max, writing
 * nothing, so a caller never mistakes a prefix for the whole table. regs NULL with max 0 returns
 * the count alone. -EINVAL when src is not a network source.
 */
int pagein_net_regions(struct pagein_source *src, struct pagein_region_desc *regs, unsigned max);

/*
 * Open the bulk connection(s); pages they bring are installed into space (pagein_supply) while
 * faults keep their own connection. The space must outlive the stream: call
 * pagein_net_stream_stop (or pagein_source_free) before pagein_space_free. With urgent off, the
 * single connection keeps carrying faults after stream_stop; bulk pages on it are then dropped.
 * A bulk connection on which the server sends nothing for the space's timeout_ms before its END,
 * or that closes before its END, fails the stream (see pagein_net_stream_status).
 * Returns 0, -EALREADY, or a connect error.
 */
int pagein_net_stream_start(struct pagein_source *src, struct pagein_space *space);

/* Close the bulk connection(s). Idempotent. pagein_source_free() stops everything. */
void pagein_net_stream_stop(struct pagein_source *src);

/*
 * Where the bulk stream stands: 0 once every page has been sent (END on every bulk connection),
 * -EINPROGRESS while it runs, -ENOTCONN when no stream is started (or it was stopped), or the
 * error that ended it before every page was sent: -ECONNRESET (the server closed a bulk
 * connection early, or said why in an ERROR), -ETIMEDOUT (the server sent nothing for the
 * space's timeout_ms), -EPROTO (a malformed message). After a failure the pages not yet present
 * arrive only by faults and accessors. Any thread; never blocks.
 */
int pagein_net_stream_status(struct pagein_source *src);

/*
 * Wait up to timeout_ms (-1: no limit) for the stream to end, well or not. Returns what
 * pagein_net_stream_status returns then (-EINPROGRESS: it still runs). Any thread but a fault
 * path; returns at once when stream_stop or source_free runs meanwhile.
 */
int pagein_net_stream_wait(struct pagein_source *src, int timeout_ms);

struct pagein_net_stats {
	uint64_t requests;        /* REQs sent */
	uint64_t replies;         /* replies received */
	uint64_t pages_urgent;    /* pages that came in replies */
	uint64_t pages_bulk;      /* pages the bulk stream brought */
	uint64_t pages_installed; /* of those, installed (the rest had been faulted in already) */
	uint64_t bytes_received;  /* on the wire, headers included */
	uint64_t errors;          /* connections closed or lost: a malformed message, an I/O error, a
	                           * silent server, or a bulk connection closed before its END */
	bool stream_done;         /* the server said every page has been sent */
	uint64_t pauses;          /* times the migration paused (pause on) */
	uint64_t paused_ms;       /* time spent paused, ended pauses */
	uint64_t resumes;         /* reconnected and resumed after a lost connection */
	uint64_t last_recover_us; /* the last resume: from its first connect to RUNNING */
	uint64_t fails;           /* requests the server refused alone (FAIL): their pages failed,
	                           * the connection stayed */
	uint64_t rejoins;         /* of the resumes, those that rejoined the same session on the
	                           * server (kept for its grace period); the rest opened a new one
	                           * (a restarted server, or a replica) */
	uint64_t reserved[2];     /* room for counters added later (the size never changes); 0 */
};
void pagein_net_stats_get(struct pagein_source *src, struct pagein_net_stats *st);

#ifdef __cplusplus
}
#endif

#endif /* PAGEIN_NET_H */
