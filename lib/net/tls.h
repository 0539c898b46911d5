/* SPDX-License-Identifier: MIT */
/*
 * tls.h - one network connection's transport (internal): plain TCP, or TLS 1.3 over OpenSSL with a
 * pre-shared key (PSK with (EC)DHE: forward secret) or certificates verified on both sides; after
 * the handshake, kernel TLS offload (the `tls` module) takes over each direction where the kernel
 * has it, so the bulk stream is encrypted (and decrypted) by the kernel. Exact reads and writes
 * with deadlines, and the clear errors a refused peer deserves (wrong key, wrong CA, a plain peer
 * against TLS and the reverse, a record changed in flight).
 *
 * Threads: a connection may be used by one reading and one writing thread at once (user-space
 * TLS serialises them on a per-connection lock that is never held while waiting); writers must
 * serialise among themselves, as must readers. With ktls_tx set, plain send() on fd is a valid
 * write (the kernel encrypts): that path takes no lock and is async-signal-safe. A credential
 * context is read-only after pi_tls_ctx_new and may serve any number of connections and threads.
 */
#ifndef PAGEIN_NET_TLS_H
#define PAGEIN_NET_TLS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* What the program configures (the command line: --psk-file, --tls-cert/--tls-key/--tls-ca). */
struct pi_tls_opts {
	const char *psk_file;    /* PSK mode: "IDENTITY:HEX" (psktool's format) or "HEX", 16..64
				  * key bytes; must not be readable by group or others */
	const char *cert_file;   /* certificate mode: this side's certificate chain (PEM) */
	const char *key_file;    /* ... its private key (PEM) */
	const char *ca_file;     /* ... the CA(s) the peer's certificate must chain to (PEM) */
	const char *server_name; /* client, certificate mode: the name the server's certificate
				  * must carry; NULL: any certificate the CA signed (a private CA
				  * for pagein hosts only) */
	bool no_ktls;            /* never use kernel TLS offload (user-space TLS only) */
	bool keep_secrets;       /* tests only: keep the traffic secrets after the handshake, for
				  * pi_tls_traffic_keys (they are wiped otherwise) */
};

enum pi_tls_mode {
	PI_TLS_NONE = 0, /* plain TCP */
	PI_TLS_PSK,
	PI_TLS_CERT,
};

struct pi_tls_ctx; /* credentials and settings for one side (client or server) */

/*
 * Read the key or certificates named in o (which must name exactly one mode) for a client
 * (server = false) or a server. Returns 0 and *out, or -errno with a reason in why:
 * -EINVAL (no or two modes, a malformed key), -ENOENT/-EACCES (files), -EPERM (a PSK file
 * others can read), -EBADMSG (a PEM file that does not parse), -ENOMEM.
 */
int pi_tls_ctx_new(const struct pi_tls_opts *o, bool server, struct pi_tls_ctx **out, char *why,
		   size_t whylen);
void pi_tls_ctx_free(struct pi_tls_ctx *t);
enum pi_tls_mode pi_tls_ctx_mode(const struct pi_tls_ctx *t);
/* "PSK" or "certificates": for messages. */
const char *pi_tls_mode_name(enum pi_tls_mode m);

/* One connection. Fields are read-only for users of this header. */
struct pi_conn {
	int fd;           /* the TCP socket (non-blocking under TLS); -1 when closed */
	void *ssl;        /* OpenSSL's SSL, NULL for plain TCP */
	void *lock;       /* pthread_mutex_t around every SSL call (user-space TLS) */
	bool server;      /* this end accepted the connection */
	bool ktls_tx;     /* the kernel encrypts what this end sends: plain send() on fd is safe */
	bool ktls_rx;     /* the kernel decrypts what this end receives */
	bool peer_plain;  /* the handshake failed because the peer speaks plain pagein, not TLS */
	uint8_t first[16]; /* the first bytes the peer sent during the handshake (diagnostics) */
	unsigned nfirst;
	uint8_t secret[2][64]; /* TLS 1.3 application traffic secrets (client, server), kept from
				* the handshake until the kernel has the keys, then wiped */
	unsigned secret_len[2];
	bool keep_secrets; /* see pi_tls_opts */
	char desc[96];    /* "TLSv1.3, PSK with (EC)DHE, TLS_AES_128_GCM_SHA256, user-space TLS" */
	char ktls_why[64]; /* why kernel TLS was not used (or not for both ways), for logs */
	char error[96];   /* the TLS reason of the last failed receive ("bad record mac",
			   * "tlsv13 alert certificate required"); written by the reader only */
};

/* Use fd as a plain TCP connection (no handshake). Takes ownership of fd. */
void pi_conn_plain(struct pi_conn *c, int fd);

/*
 * Run the TLS handshake on the connected, blocking socket fd (ownership passes to c even on
 * failure; pi_conn_close closes it) as the client or the server of t, before deadline_ns
 * (CLOCK_MONOTONIC). Then try kernel TLS offload unless t says not to, both directions (nothing
 * was sent or received under the application keys yet, so both sequence numbers are 0; a server
 * whose client's first request already sits in OpenSSL's buffers keeps receiving in user space).
 * The socket is non-blocking from then on. Returns 0, or -errno with a reason in why:
 * -EACCES     the peer did not prove the key, or its certificate does not verify (wrong PSK,
 *             wrong CA, expired, no certificate),
 * -EPROTO     the peer does not speak TLS 1.3 (c->peer_plain: it speaks plain pagein),
 * -ETIMEDOUT  no handshake by the deadline, -ECONNRESET the peer closed, -ENOMEM.
 */
int pi_conn_handshake(struct pi_conn *c, int fd, const struct pi_tls_ctx *t, bool server,
		      uint64_t deadline_ns, char *why, size_t whylen);

/*
 * Write all n bytes before deadline_ns (0: no deadline). Never raises SIGPIPE. A write cut short
 * leaves the stream unusable (the caller shuts the connection down). Returns 0, -ETIMEDOUT,
 * -EPIPE/-ECONNRESET, or -EIO (a TLS failure).
 */
int pi_conn_write(struct pi_conn *c, const void *buf, size_t n, uint64_t deadline_ns);

/*
 * Receive up to n bytes, blocking until at least one is there, or until deadline_ns (0: no
 * deadline). Returns the count, 0 at end of stream, -ETIMEDOUT, -ECONNRESET (the peer's TLS
 * alert, or the connection was reset), -EBADMSG (a record failed authentication: changed in
 * flight), -EIO (another TLS failure), or -errno; c->error then says what TLS reported.
 */
ssize_t pi_conn_recv(struct pi_conn *c, void *buf, size_t n, uint64_t deadline_ns);

/*
 * The same three loops as lib/net/wire.c's fd versions (pi_wire_recv_some, pi_wire_recv,
 * pi_wire_send), over a connection that may be TLS, with the same limits and results: idle_ms
 * (-1 none) bounds each wait, deadline_ns (0 none) the call, stop_fd (-1 none) readable interrupts
 * it (-ESHUTDOWN). TLS adds -EBADMSG (a record failed authentication) and -EIO.
 * pi_conn_recv_some: the count, 0 on EOF, or -errno. pi_conn_recv_full: 0, -ECONNRESET on EOF
 * (*got says where), or -errno. pi_conn_sendv: 0 or -errno; *sent counts what left (iov is
 * modified). Under user-space TLS, sendv gathers small pieces into whole records.
 */
#include <sys/uio.h>
ssize_t pi_conn_recv_some(struct pi_conn *c, void *buf, size_t max, int idle_ms, int stop_fd);
int pi_conn_recv_full(struct pi_conn *c, void *buf, size_t len, size_t *got, int idle_ms,
		      uint64_t deadline_ns, int stop_fd);
int pi_conn_sendv(struct pi_conn *c, struct iovec *iov, int n, size_t *sent, int idle_ms,
		  uint64_t deadline_ns, int stop_fd);

/* Read exactly n bytes before deadline_ns (0: none). Returns 0, 1 on a clean end of stream
 * before the first byte, -EPIPE on one after it, or pi_conn_recv's errors. */
int pi_conn_read_exact(struct pi_conn *c, void *buf, size_t n, uint64_t deadline_ns);

/* Bytes waiting in user space (decrypted, or records read ahead; then at least 1): poll() on
 * fd does not see them, so a caller that polls checks this first. */
size_t pi_conn_pending(const struct pi_conn *c);

/* After a failed handshake: forget TLS (free the session), keep fd as a plain connection, so that
 * a plain peer can be told in its own framing why it is refused. */
void pi_conn_drop_tls(struct pi_conn *c);

/* Say goodbye (TLS close_notify, best effort, never blocking), close fd, free the session. */
void pi_conn_close(struct pi_conn *c);

/* One direction's TLS 1.3 record protection, as the kernel needs it. */
struct pi_tls_keys {
	unsigned cipher;  /* TLS_CIPHER_AES_GCM_128, _AES_GCM_256 or _CHACHA20_POLY1305 (linux/tls.h) */
	unsigned keylen;  /* 16 or 32 */
	uint8_t key[32];
	uint8_t iv[12];   /* the write IV; a record's nonce is it XOR its sequence number */
};

/* The keys of the direction this end receives (rx) or sends, derived from the traffic secret
 * (HKDF-Expand-Label "key" and "iv"). Only right after the handshake, or with keep_secrets.
 * Returns 0, -ENOKEY (secret gone) or -EOPNOTSUPP (a cipher the kernel does not take). */
int pi_tls_traffic_keys(const struct pi_conn *c, bool rx, struct pi_tls_keys *k);

/* The connection's channel binding for session proofs: 32 bytes of the TLS exporter (RFC 8446
 * §7.5, label "EXPORTER-pagein-join", empty context), the same at both ends of one connection and
 * unpredictable for any other; 32 zero bytes on plain TCP. Returns 0 or -EIO. */
int pi_conn_binding(struct pi_conn *c, uint8_t out[32]);

/* Is this address loopback (127.0.0.0/8, ::1, or ::ffff:127.x)? The rule "no authentication off
 * loopback" (secure by default) asks it. */
struct sockaddr_storage;
bool pi_addr_is_loopback(const struct sockaddr_storage *ss);

/* Build a credential context from the four options a server or a client is given (all NULL:
 * *out = NULL, plain TCP). Returns 0 or pi_tls_ctx_new's errors, with the reason in why. */
int pi_tls_ctx_from(const char *psk_file, const char *cert, const char *key, const char *ca,
		    const char *name, bool server, struct pi_tls_ctx **out, char *why,
		    size_t whylen);

/* Does buf (n >= 3 bytes) start like a TLS record (handshake or alert)? For a plain endpoint to
 * tell a TLS peer from a confused one. */
bool pi_tls_looks_like_tls(const uint8_t *buf, size_t n);

#endif
