/* SPDX-License-Identifier: MIT */
/*
 * wire.h - the pagein wire protocol (docs/protocol.md): frame header, message bodies and their
 * limits, and the helpers both ends share (lib/net/wire.c): framing, region checks and the
 * exact-length socket I/O loops. Used by the page server (server.c) and the network source
 * (client.c, urgent.c, stream.c). All integers little-endian; structures are packed exactly as
 * they travel. Every length is checked against these limits before anything is read into memory.
 */
#ifndef PAGEIN_NET_WIRE_H
#define PAGEIN_NET_WIRE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#define PN_MAGIC "PAGEINET"       /* 8 bytes, HELLO and WELCOME */
/* Version 2 (docs/protocol.md): version 1's layouts, plus CHALLENGE/PROOF, HAVE, HEARTBEAT and
 * FAIL, negotiated as the PN_FEAT_* bits below. Each end refuses a version-1 peer with a text that
 * says which end to upgrade (a version-1 server reads a version-2 HELLO and refuses it too). */
#define PN_VERSION 2
#define PN_PAGE 4096u             /* the protocol's page: 4 KiB, whatever the backing */
#define PN_MAX_PAGES 512u         /* pages in one REQ or PAGES (2 MiB: one huge page) */
#define PN_MAX_REGIONS 64u
#define PN_MAX_TEXT 256u          /* ERROR text */
/* largest frame body: a PAGES of PN_MAX_PAGES raw pages with its descriptors */
#define PN_MAX_BODY (sizeof(struct pn_pages) + PN_MAX_PAGES * (4u + PN_PAGE))

/*
 * The reference server's jump lead (docs/protocol.md): after a request for [p, p+n) the bulk
 * stream goes on at page p+n+PN_JUMP_LEAD. Landing exactly at p+n, the stream only ever races the
 * faulting thread to the pages it touches next, and loses (they sit behind the data already in
 * flight), so they crossed the wire twice; measured with `pagein demo --size 512M`: 615-635 MiB
 * received with no lead, 480 MiB (no duplicates) with 256 or 1024. The faulting thread fetches the
 * lead itself, fault-around making that a few requests, while the stream gets ahead of it.
 */
#define PN_JUMP_LEAD 256u

/* Frame types. */
enum pn_type {
	PN_HELLO = 1,   /* client -> server, first frame of every connection */
	PN_WELCOME = 2, /* server -> client, answer to HELLO */
	PN_REQ = 3,     /* client -> server: send these pages now (a fault) */
	PN_PAGES = 4,   /* server -> client: pages (id = the REQ's, or 0 for the bulk stream) */
	PN_END = 5,     /* server -> client on a bulk connection: every page has been sent */
	PN_ERROR = 6,   /* either way: why the sender is closing the connection */
	PN_CHALLENGE = 7,  /* server -> client: a joining HELLO must prove the session (32 bytes) */
	PN_PROOF = 8,      /* client -> server: HMAC of the challenge under the session secret */
	PN_HEARTBEAT = 10, /* either way, empty, when PN_FEAT_HEARTBEAT was granted: "still here" */
	PN_FAIL = 11,      /* server -> client, when PN_FEAT_FAIL was granted: one REQ refused */
};

/* Connection roles (HELLO.role). */
enum pn_role {
	PN_ROLE_URGENT = 1, /* requests and their replies only */
	PN_ROLE_BULK = 2,   /* the server streams every page not sent yet; also answers REQs
			     * (that is how "urgent channel off" runs: one connection for all) */
};

/* Feature bits (HELLO.features asks, WELCOME.features grants). */
#define PN_FEAT_LZ4 (1u << 0) /* PAGES may carry LZ4-compressed pages */
/* Both ends send HEARTBEAT on a connection where they have sent nothing for PN_HEARTBEAT_MS, so
 * that a silent peer is told from an idle one within seconds (docs/protocol.md, HEARTBEAT). */
#define PN_FEAT_HEARTBEAT (1u << 1)
#define PN_HEARTBEAT_MS 500u
/* This connection opens a session that resumes a migration: HAVE frames (net/have.h) follow the
 * WELCOME, the session streams nothing before the last of them, then exactly the pages the
 * destination lacks (docs/protocol.md, HAVE). */
#define PN_FEAT_RESUME (1u << 2)
#define PN_HAVE_MAX_BODY (64u << 10) /* HAVE bodies are at most this (a window of 512 Ki pages) */
/* Session ids stop being capabilities: a session opened with this bit gets a 32-byte secret after
 * WELCOME's region table, and a connection joins it only by answering a CHALLENGE with a PROOF
 * made with that secret and bound to its own TLS channel (net/auth.h). */
#define PN_FEAT_PROOF (1u << 3)
/* A REQ the server cannot answer (outside the regions, a bad gpa or count, a read error on its
 * source) gets a FAIL with the REQ's id instead of an ERROR that closes the connection: the
 * client fails that fetch alone (docs/protocol.md, FAIL). */
#define PN_FEAT_FAIL (1u << 4)

/* Every frame starts with this. */
struct pn_hdr {
	uint32_t len;  /* body bytes after the header, <= PN_MAX_BODY */
	uint16_t type; /* enum pn_type */
	uint16_t flags; /* 0 */
	uint64_t id;   /* REQ: the requester's id (non-zero); PAGES: the REQ's id, or 0 (bulk) */
} __attribute__((packed));

struct pn_hello {
	char magic[8];      /* PN_MAGIC */
	uint32_t version;   /* PN_VERSION */
	uint32_t page_size; /* PN_PAGE */
	uint32_t role;      /* enum pn_role */
	uint32_t features;  /* PN_FEAT_* wanted */
	uint32_t batch_pages; /* bulk: pages per PAGES frame, 1..PN_MAX_PAGES, aligned batches */
	uint32_t reserved;  /* 0 */
	uint64_t session;   /* 0: a new session (urgent or first connection); else join it */
} __attribute__((packed));

struct pn_region {
	uint64_t gpa;    /* guest address, PN_PAGE-aligned */
	uint64_t size;   /* bytes, a multiple of PN_PAGE */
	uint64_t digest; /* XXH3-64 of the region's bytes (what the destination verifies) */
} __attribute__((packed));

struct pn_welcome {
	char magic[8];      /* PN_MAGIC */
	uint32_t version;   /* PN_VERSION */
	uint32_t page_size; /* PN_PAGE */
	uint64_t session;   /* the session this connection belongs to */
	uint32_t features;  /* PN_FEAT_* granted (a subset of what HELLO asked) */
	uint32_t nregions;  /* 1..PN_MAX_REGIONS; that many struct pn_region follow */
} __attribute__((packed));

struct pn_req {
	uint64_t gpa;     /* PN_PAGE-aligned, inside one region */
	uint32_t npages;  /* 1..PN_MAX_PAGES, not past the region's end */
	uint32_t reserved; /* 0 */
} __attribute__((packed));

/*
 * PAGES body: this, then npages uint32 descriptors, then the payloads one after another:
 * PN_PG_RAW: PN_PAGE bytes; PN_PG_ZERO: nothing; PN_PG_LZ4: (desc >> 8) bytes that decompress to
 * exactly PN_PAGE. The payload sizes must add up to the rest of the body exactly.
 */
struct pn_pages {
	uint64_t gpa;     /* first page, PN_PAGE-aligned, inside one region */
	uint32_t npages;  /* 1..PN_MAX_PAGES, not past the region's end; a reply has the REQ's */
	uint32_t reserved; /* 0 */
} __attribute__((packed));

#define PN_PG_RAW 0u
#define PN_PG_ZERO 1u
#define PN_PG_LZ4 2u
#define PN_PG_KIND(d) ((d) & 0xffu)
#define PN_PG_CSIZE(d) ((d) >> 8) /* LZ4 only: compressed bytes, 1..PN_PAGE-1 */

struct pn_error {
	uint32_t code; /* an errno value */
	/* then up to PN_MAX_TEXT bytes of text, not NUL-terminated */
} __attribute__((packed));

/* FAIL body (then up to PN_MAX_TEXT bytes of text, not NUL-terminated). */
struct pn_fail {
	uint32_t code;   /* an errno value: ERANGE, EINVAL, EIO */
	uint32_t npages; /* the REQ's */
	uint64_t gpa;    /* the REQ's */
} __attribute__((packed));

/* A checked PAGES body (pi_wire_parse_pages): pointers into the body. */
struct pi_wire_pages {
	uint64_t gpa;          /* first page */
	uint32_t npages;       /* 1..PN_MAX_PAGES */
	const uint8_t *desc;   /* npages little-endian uint32 descriptors */
	const uint8_t *data;   /* the payloads, one after another */
};

/* ---- shared helpers (wire.c): async-signal-safe but for pi_wire_log and the PAGES check ---- */

/* Format a message and hand it to log(arg, level, msg) when log is set (both ends' log sink).
 * Formats with vsnprintf: never from a fault's fetch or a signal handler. */
void pi_wire_log(void (*log)(void *arg, int level, const char *msg), void *arg, int level,
		 const char *fmt, ...) __attribute__((format(printf, 4, 5)));

/*
 * Copy a caller's config (its first field: uint32_t size, the sizeof its header had) over dst,
 * which holds this library's defaults: an older caller's missing fields keep them. -EINVAL when
 * size is 0 (never initialised) or a newer caller set fields this library does not know.
 */
int pi_wire_cfg_copy(void *dst, size_t dst_size, const void *src);

/* Fill a frame header (little-endian on the wire). */
void pi_wire_hdr(struct pn_hdr *h, uint32_t len, uint16_t type, uint64_t id);

/* Whether [gpa, gpa+len) lies inside the region [rgpa, rgpa+rsize) (no overflow). */
static inline bool pi_wire_in_region(uint64_t rgpa, uint64_t rsize, uint64_t gpa, uint64_t len)
{
	return gpa >= rgpa && gpa - rgpa < rsize && len <= rsize - (gpa - rgpa);
}

/* Index of the region of regs[0..n) (host byte order) holding [gpa, gpa+len), or -1. */
int pi_wire_region_find(const struct pn_region *regs, unsigned n, uint64_t gpa, uint64_t len);

/* Check a region against the protocol (non-empty, 4 KiB-aligned, no wrap) and against
 * regs[0..n) (no overlap). Returns 0, -EINVAL (bad), or -EEXIST with *other = the overlapped. */
int pi_wire_region_check(const struct pn_region *regs, unsigned n, uint64_t gpa, uint64_t size,
			 unsigned *other);

/*
 * Validate a PAGES body of len bytes: its header, the range inside one region of regs[0..nregs),
 * each descriptor (LZ4 only when lz4 was granted) and the payload sizes adding up to the body
 * exactly. Fills *pg. Returns 0, or -EPROTO with the reason in why.
 */
int pi_wire_parse_pages(const uint8_t *body, uint32_t len, const struct pn_region *regs,
			unsigned nregs, bool lz4, struct pi_wire_pages *pg, char *why, size_t whylen);

/* Milliseconds from now to deadline_ns for poll(): 0 when past, -1 for deadline 0 (none). */
int pi_wire_ms_left(uint64_t deadline_ns);

/*
 * The one exact-length receive loop: read len bytes of fd into buf. Never blocks past its limits:
 * idle_ms (-1 none) bounds each wait for more bytes, deadline_ns (0 none) the whole call, and
 * stop_fd (-1 none) becoming readable interrupts it. *got says how many arrived, whatever the
 * result. Returns 0, -ECONNRESET (EOF: the peer closed, *got tells where), -ETIMEDOUT,
 * -ESHUTDOWN (stop_fd), or recv/poll's -errno.
 */
int pi_wire_recv(int fd, void *buf, size_t len, size_t *got, int idle_ms, uint64_t deadline_ns,
		 int stop_fd);

/* Like pi_wire_recv, but returns as soon as some bytes (at most max) arrive: the count, 0 on
 * EOF, or the same errors (-ECONNRESET only for a reset). */
ssize_t pi_wire_recv_some(int fd, void *buf, size_t max, int idle_ms, int stop_fd);

/*
 * The one send loop: send every byte of iov[0..n) (modified) on fd, MSG_NOSIGNAL. The same
 * limits as pi_wire_recv. *sent counts the bytes that left. Returns 0, -ETIMEDOUT, -ESHUTDOWN or
 * send/poll's -errno (-EPIPE/-ECONNRESET: the peer is gone).
 */
int pi_wire_send(int fd, struct iovec *iov, int n, size_t *sent, int idle_ms,
		 uint64_t deadline_ns, int stop_fd);

#endif /* PAGEIN_NET_WIRE_H */
