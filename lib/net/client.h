/* SPDX-License-Identifier: MIT */
/*
 * client.h - what the network source's files share (internal): the source's context, one
 * connection and its receiver, the request slots. client.c owns connections, the handshake and
 * the receiver thread that parses frames; urgent.c the requests a fault sends and their replies;
 * stream.c the bulk stream (installing its pages, its state). Names here use pi_net_.
 */
#ifndef PAGEIN_NET_CLIENT_H
#define PAGEIN_NET_CLIENT_H

#include <netinet/in.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

#include "internal.h"
#include "pagein-net.h"
#include "net/link.h"
#include "net/tls.h"
#include "net/wire.h"

#define NS_SLOTS 256          /* requests in flight at once (one per faulting thread) */
#define NS_SLOT_BITS 16       /* low bits of a request id: slot index + 1 */
#define NS_MAX_BULK 16        /* bulk connections one source may open */
#define NS_MAX_ADDRS 8        /* addresses of the server's name tried, in the resolver's order */
#define NS_RBUF 4096u         /* receive buffer: frame headers, small frames read many at a time */
#define NS_HUGE (2ull << 20)  /* hugetlb page: bulk pages are gathered into whole ones */
#define NS_HUGE_PAGES (NS_HUGE / PN_PAGE)

/* Request slot states. A requester owns FREE->CLAIMED->WAITING and DONE->FREE; the receiver owns
 * WAITING->FILLING->DONE and ABANDONED->FREE; a requester that times out takes WAITING->ABANDONED. */
enum {
	SLOT_FREE = 0,
	SLOT_CLAIMED,   /* a requester is filling in the request */
	SLOT_WAITING,   /* the REQ may be on the wire; the requester sleeps on state */
	SLOT_FILLING,   /* the receiver is writing the reply into dst */
	SLOT_DONE,      /* result (and zmask) are set; the requester reads them */
	SLOT_ABANDONED, /* the requester timed out: the reply, if any, is read and dropped */
};

/* One outstanding request. */
struct ns_slot {
	_Atomic uint32_t state;  /* SLOT_*; also the futex word the requester sleeps on */
	_Atomic uint64_t id;     /* the REQ's id: generation << NS_SLOT_BITS | (index + 1) */
	uint64_t gpa;            /* first page asked for */
	uint32_t npages;         /* protocol pages asked for */
	uint64_t page_size;      /* the fetch's page size (zero_mask unit) */
	uint8_t *dst;            /* where the reply's bytes go (valid while WAITING/FILLING) */
	_Atomic uint64_t deadline_ns; /* the requester's deadline (0 none): a reply read into dst
				  * past it fails the request, unless the link is paused */
	uint64_t zmask;          /* zero pages of page_size, set by the receiver */
	int result;              /* 0 or -errno, set by the receiver */
	_Atomic unsigned gen;    /* generation of the main connection its REQ went out on: one
				  * older than the current main's is sent again after a resume */
} __attribute__((aligned(64)));

struct netsrc;

/* One TCP connection to the server and its receiver thread. */
struct ns_conn {
	struct netsrc *ns;
	int fd;
	struct pi_conn tc;         /* the transport on fd: plain TCP or TLS (owns fd) */
	uint32_t features;         /* PN_FEAT_* this connection's WELCOME granted */
	bool replies;              /* carries the replies to fetches (the main connection) */
	bool stream;               /* carries bulk pages (id 0) */
	bool ended;                /* its END arrived */
	pthread_t thread;
	bool thread_started;
	_Atomic bool dead;         /* closed: fetches fail at once */
	_Atomic bool quitting;     /* we are closing it: EOF is not an error */
	_Atomic uint32_t send_lock; /* futex lock: 0 free, 1 held, 2 held with waiters */
	_Atomic uint64_t last_send_ns; /* when a frame last went out (heartbeats) */
	uint8_t *rbuf;             /* NS_RBUF bytes of received, unparsed data */
	size_t rpos, rlen;         /* unread bytes are rbuf[rpos, rlen) */
	uint8_t *body;             /* the frame being handled (PN_MAX_BODY bytes) */
	uint8_t *stage;            /* bulk pages decoded here (PN_MAX_PAGES pages) */
	uint8_t *huge;             /* a hugetlb page gathered from smaller batches (NS_HUGE) */
	uint64_t huge_gpa;         /* its guest address, or UINT64_MAX */
	uint64_t huge_have[NS_HUGE_PAGES / 64]; /* its protocol pages received so far */
	uint64_t huge_zero[NS_HUGE_PAGES / 64]; /* of those, zero */
	unsigned gen;              /* main connections: its generation (1, 2, ... per resume) */
	struct ns_conn *old_next;  /* replaced main connections, freed with the source (a fetch
				    * may still hold one) */
};

/* The network source's context. */
struct netsrc {
	struct pagein_net_config cfg;
	char addr[256];                 /* copy of cfg.addr */
	struct sockaddr_storage sa[NS_MAX_ADDRS]; /* the addresses the server's name resolved to */
	socklen_t salen[NS_MAX_ADDRS];
	unsigned naddrs;                /* used entries of sa */
	_Atomic unsigned addr_ok;       /* the one the last connection reached: tried first */
	uint64_t session;
	uint32_t features;              /* PN_FEAT_* granted */
	unsigned nregions;
	struct pn_region regions[PN_MAX_REGIONS]; /* host byte order */
	struct ns_conn *_Atomic main;   /* urgent connection (or the single bulk one); replaced by a
					 * resume */
	struct ns_conn *bulk[NS_MAX_BULK];
	unsigned nbulk;
	pthread_mutex_t lock;           /* stream start/stop; attach of the main connection */
	struct pagein_space *_Atomic space; /* where bulk pages go, NULL when not streaming */
	_Atomic bool streaming;
	_Atomic uint32_t attach_seq;    /* futex word: bumped on attach/detach/fetch while parked */
	_Atomic int outstanding;        /* fetches waiting for a reply */
	_Atomic uint32_t slot_seq;      /* futex word: bumped when a slot is freed */
	_Atomic uint32_t slot_waiters;
	struct ns_slot slots[NS_SLOTS];
	/* statistics */
	_Atomic uint64_t requests, replies, pages_urgent, pages_bulk, pages_installed;
	_Atomic uint64_t bytes_received, errors, fails;
	_Atomic unsigned streams;       /* connections carrying the bulk stream */
	_Atomic unsigned ends;          /* of those, how many have sent END */
	_Atomic bool stream_done;       /* every streaming connection sent END */
	_Atomic int stream_err;         /* 0, or why the stream failed before its END (first wins) */
	_Atomic uint32_t stream_seq;    /* futex word: bumped when the stream ends, fails or stops */
	_Atomic int read_ms;            /* bulk read time-out: the space's timeout_ms (0 = none) */
	struct pi_link link;            /* RUNNING / PAUSED / FAILED (pause on) */
	/* user-space TLS: a fault's REQ is not sent from the fault path (OpenSSL is neither
	 * async-signal-safe nor lock-free) but by this thread: the fetch sets its slot's bit in
	 * tx_pending (atomic) and writes tx_efd (write(2)), both async-signal-safe */
	_Atomic uint64_t tx_pending[NS_SLOTS / 64];
	int tx_efd;                     /* eventfd, -1 when there is no sender thread */
	pthread_t tx_thread;
	bool tx_started;
	_Atomic bool tx_quit;
	_Atomic uint64_t tx_sent;       /* REQs the sender thread sent (tests) */
	pthread_t hb_thread;            /* sends heartbeats on idle connections */
	bool hb_started;
	_Atomic uint32_t hb_quit;       /* futex word: 1 stops the heartbeat thread */
	/* reconnect and resume (pause on, and a server that grants PN_FEAT_RESUME) */
	struct pi_tls_ctx *tls;         /* TLS credentials, NULL: plain TCP */
	uint8_t secret[32];             /* the session's secret (PN_FEAT_PROOF): joins prove it */
	bool has_secret;
	bool resume;
	bool reopen;                    /* the recovery thread's conn_open: compare the table */
	_Atomic uint64_t *have;         /* pages the destination has (table page index) */
	uint64_t total_pages;
	uint64_t first_page[PN_MAX_REGIONS]; /* table page index of each region's first page */
	pthread_t rc_thread;
	bool rc_started;
	_Atomic uint32_t rc_seq;        /* futex word: bumped when a connection is lost */
	_Atomic bool rc_quit;
	_Atomic unsigned gen;           /* the current main connection's generation */
	struct ns_conn *graveyard;      /* replaced main connections */
	char next_addr[256];            /* the address the next recovery attempt uses (lock) */
	bool addr_new;                  /* (lock) */
	/* the servers a recovery tries in turn (lock): cfg.addr, then pagein_net_add_alternate's;
	 * pagein_net_reconnect replaces them all */
	char alts[PAGEIN_NET_MAX_ALTERNATES][256];
	unsigned nalts, alt_cur;        /* how many; the one in use */
	_Atomic uint64_t resumes;       /* successful resumes */
	_Atomic uint64_t rejoins;       /* of those, into the same session (server grace) */
	bool rejoin;                    /* the recovery thread's conn_open joins to resume */
	_Atomic bool lost;              /* a connection was lost: data heard on another one does
					 * not end the pause, the resume does */
	_Atomic uint64_t last_recover_us; /* from the first attempt that connected to resumed */
};

/* Log through the source's callback (never from a fetch). */
#define pi_net_log(ns, level, ...) pi_wire_log((ns)->cfg.log, (ns)->cfg.log_arg, level, __VA_ARGS__)

/* client.c: lookups, frame decoding, connections */
const struct pn_region *pi_net_region_of(struct netsrc *ns, uint64_t gpa, uint64_t len);
struct netsrc *pi_net_of(struct pagein_source *src);
int pi_net_decode_pages(const struct pi_wire_pages *pg, uint8_t *dst, uint64_t *zero, char *why,
			size_t whylen);
uint64_t pi_net_zero_fold(const uint64_t *zero, uint32_t npages, uint64_t page_size,
			  uint8_t *dst);
struct ns_conn *pi_net_conn_open(struct netsrc *ns, int role, uint64_t session, int *err);
int pi_net_conn_start(struct ns_conn *c);
void pi_net_conn_close(struct ns_conn *c);

/* client.c: pause on silence (pause on): whether c's silence is waited out (0) or ends it */
int pi_net_silence(struct ns_conn *c);
/* The destination has pages [gpa, gpa + npages pages) (a reply delivered, bulk installed). */
void pi_net_have_mark(struct netsrc *ns, uint64_t gpa, uint64_t npages);

/* urgent.c: the sender thread of user-space TLS connections */
void *pi_net_sender_main(void *arg);
/* Whether REQs on c go through the sender thread (user-space TLS for sending). */
static inline bool pi_net_tx_queued(struct netsrc *ns, struct ns_conn *c)
{
	return ns->tx_efd >= 0 && c->tc.ssl && !c->tc.ktls_tx;
}

/* urgent.c: requests (async-signal-safe) and their replies */
int pi_net_send_all(struct ns_conn *c, const void *buf, size_t len, uint64_t deadline_ns);
/* Send a frame with an empty body (HEARTBEAT) under the send lock; gives up at the deadline. */
int pi_net_send_frame(struct ns_conn *c, uint16_t type, uint64_t id, uint64_t deadline_ns);
int pi_net_fetch(void *ctx, uint64_t gpa, void *dst, uint64_t len, uint64_t page_size,
		 uint64_t *zero_mask, uint64_t deadline_ns);
/* A reply read straight into its requester's buffer: begin takes the waiting slot, or NULL (read
 * the body whole, then pi_net_handle_reply); end completes it, fails it (err < 0), or puts it
 * back to waiting (err < 0, retry) (urgent.c). */
struct ns_slot *pi_net_reply_begin(struct ns_conn *c, uint64_t id, const struct pi_wire_pages *pg);
int pi_net_reply_end(struct ns_conn *c, struct ns_slot *sl, const struct pi_wire_pages *pg,
		     int err, bool retry);
int pi_net_handle_reply(struct ns_conn *c, uint64_t id, const struct pi_wire_pages *pg, char *why,
			size_t whylen);
/* A FAIL (one request refused by the server): that fetch alone fails with -code. */
int pi_net_handle_fail(struct ns_conn *c, uint64_t id, const struct pn_fail *f, const char *text,
		       uint32_t tlen, char *why, size_t whylen);
void pi_net_slots_fail_all(struct netsrc *ns, int err);
/* After a resume on main connection c: send again every waiting request that went out on an
 * older one, free the abandoned ones. */
void pi_net_resend(struct netsrc *ns, struct ns_conn *c);

/* stream.c: the bulk stream */
void pi_net_wake_parked(struct netsrc *ns);
void pi_net_handle_bulk(struct ns_conn *c, const struct pi_wire_pages *pg, char *why, size_t whylen,
			int *err);
/* An END arrived on c (receiver thread). */
void pi_net_stream_end(struct ns_conn *c);
/* The stream failed with err before every page was sent (the first failure is kept). */
void pi_net_stream_fail(struct netsrc *ns, int err);
/* After a resume: replace the bulk connections by ones joining the new session (lock not held). */
int pi_net_stream_reopen(struct netsrc *ns);

#endif /* PAGEIN_NET_CLIENT_H */
