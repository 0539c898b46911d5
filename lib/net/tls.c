// SPDX-License-Identifier: MIT
/*
 * tls.c - the connection transport (tls.h): plain TCP or TLS 1.3 over OpenSSL (PSK with (EC)DHE,
 * or certificates verified both ways), handshakes with deadlines and reasons a person can act on,
 * then kernel TLS offload where the kernel has the `tls` module, exact reads and writes.
 *
 * Why OpenSSL 3.0 (Debian 12) and not GnuTLS 3.7: the KVM tier links `pagein` statically, and
 * only OpenSSL links statically from Debian's packages (libgnutls.a needs libp11-kit and
 * libunistring archives Debian does not ship); both do TLS 1.3 external PSK with (EC)DHE. Kernel
 * offload is set up here from the application traffic secrets (HKDF-Expand-Label), in both
 * directions: OpenSSL 3.0's own kTLS does TLS 1.3 transmit only, and only through its socket BIO,
 * which cannot send without SIGPIPE. OpenSSL forbids SSL_read and SSL_write at once on one SSL, so
 * user-space TLS takes a per-connection lock around each call, never held while waiting.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/tls.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/kdf.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "net/tls.h"

#ifndef SOL_TLS
#define SOL_TLS 282
#endif

#define PSK_MIN 16 /* key bytes: 128 bits at least */
#define PSK_MAX 64
#define PSK_IDENTITY "pagein" /* when the file gives none */

struct pi_tls_ctx {
	enum pi_tls_mode mode;
	bool server;
	bool no_ktls;
	bool keep_secrets;           /* tests: keep the traffic secrets after the handshake */
	char identity[128];          /* PSK identity */
	uint8_t key[PSK_MAX];        /* PSK */
	unsigned keylen;
	char server_name[256];       /* client, certificates: "" = any certificate the CA signed */
	SSL_CTX *ssl_ctx;
};

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* Milliseconds to the deadline, rounded up; -1 for no deadline; 0 when it has passed. */
static int ms_left(uint64_t deadline_ns)
{
	uint64_t now;

	if (!deadline_ns)
		return -1;
	now = now_ns();
	if (now >= deadline_ns)
		return 0;
	return (deadline_ns - now) / 1000000 >= INT_MAX ? INT_MAX
							: (int)((deadline_ns - now + 999999) / 1000000);
}

/* Wait until fd is ready for events or the deadline. Returns 0, -ETIMEDOUT or -errno. */
static int wait_fd(int fd, short events, uint64_t deadline_ns)
{
	struct pollfd pfd = { .fd = fd, .events = events };
	int ms = ms_left(deadline_ns), r;

	if (ms == 0)
		return -ETIMEDOUT;
	r = poll(&pfd, 1, ms);
	if (r < 0)
		return errno == EINTR ? 0 : -errno;
	return r == 0 ? -ETIMEDOUT : 0;
}

const char *pi_tls_mode_name(enum pi_tls_mode m)
{
	return m == PI_TLS_PSK ? "PSK" : m == PI_TLS_CERT ? "certificates" : "plain TCP";
}

enum pi_tls_mode pi_tls_ctx_mode(const struct pi_tls_ctx *t)
{
	return t ? t->mode : PI_TLS_NONE;
}

/* The reason of OpenSSL's last error, and clear its queue (it is per thread). */
static const char *ssl_reason(void)
{
	unsigned long e = ERR_peek_last_error();
	const char *r = e ? ERR_reason_error_string(e) : NULL;

	ERR_clear_error();
	return r ? r : "no reason given";
}

/* ------------------------------------------------------------------------------------------- */
/* credentials                                                                                */

static int hexval(int ch)
{
	if (ch >= '0' && ch <= '9')
		return ch - '0';
	if (ch >= 'a' && ch <= 'f')
		return ch - 'a' + 10;
	if (ch >= 'A' && ch <= 'F')
		return ch - 'A' + 10;
	return -1;
}

/* Read "IDENTITY:HEX" or "HEX" from the PSK file. */
static int load_psk(struct pi_tls_ctx *t, const char *path, char *why, size_t whylen)
{
	char buf[512], *hex, *colon;
	struct stat st;
	ssize_t n;
	size_t i, len;
	int fd, ret = 0;

	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		ret = -errno;
		snprintf(why, whylen, "cannot open the PSK file %s: %s", path, strerror(errno));
		return ret;
	}
	if (fstat(fd, &st) < 0) {
		ret = -errno;
		snprintf(why, whylen, "cannot stat the PSK file %s: %s", path, strerror(errno));
		goto close_fd;
	}
	if (st.st_mode & 077) {
		snprintf(why, whylen, "the PSK file %s can be read by others (mode %04o): "
			 "chmod 600 it", path, (unsigned)(st.st_mode & 07777));
		ret = -EPERM;
		goto close_fd;
	}
	n = read(fd, buf, sizeof(buf) - 1);
	if (n < 0) {
		ret = -errno;
		snprintf(why, whylen, "cannot read the PSK file %s: %s", path, strerror(errno));
		goto close_fd;
	}
	buf[n] = '\0';
	buf[strcspn(buf, "\r\n")] = '\0';
	colon = strrchr(buf, ':');
	hex = colon ? colon + 1 : buf;
	if (colon) {
		*colon = '\0';
		if (!buf[0] || strlen(buf) >= sizeof(t->identity))
			goto bad;
		snprintf(t->identity, sizeof(t->identity), "%s", buf);
	} else {
		snprintf(t->identity, sizeof(t->identity), "%s", PSK_IDENTITY);
	}
	len = strlen(hex);
	if (len % 2 || len / 2 < PSK_MIN || len / 2 > PSK_MAX)
		goto bad;
	for (i = 0; i < len / 2; i++) {
		int hi = hexval(hex[2 * i]), lo = hexval(hex[2 * i + 1]);

		if (hi < 0 || lo < 0)
			goto bad;
		t->key[i] = (uint8_t)(hi << 4 | lo);
	}
	t->keylen = (unsigned)(len / 2);
	goto close_fd;
bad:
	snprintf(why, whylen, "the PSK file %s does not hold IDENTITY:HEXKEY or HEXKEY with a key "
		 "of %d to %d bytes (make one with: (umask 077; echo pagein:$(head -c32 /dev/urandom "
		 "| od -An -tx1 | tr -d ' \\n') > FILE))", path, PSK_MIN, PSK_MAX);
	ret = -EINVAL;
close_fd:
	OPENSSL_cleanse(buf, sizeof(buf));
	close(fd);
	return ret;
}

static int ex_idx = -1;

static void ex_init(void)
{
	ex_idx = SSL_get_ex_new_index(0, NULL, NULL, NULL, NULL);
}

/* Where an SSL keeps its struct pi_conn (for the key log callback). */
static int ex_index(void)
{
	static pthread_once_t once = PTHREAD_ONCE_INIT;

	pthread_once(&once, ex_init);
	return ex_idx;
}

/* A TLS 1.3 session holding the external PSK: TLS_AES_128_GCM_SHA256 (its hash, SHA-256, is the
 * PSK's; the handshake may still pick any TLS 1.3 cipher with that hash). */
static SSL_SESSION *psk_session(SSL *ssl, const struct pi_tls_ctx *t)
{
	static const unsigned char aes128gcm[2] = { 0x13, 0x01 };
	const SSL_CIPHER *cipher = SSL_CIPHER_find(ssl, aes128gcm);
	SSL_SESSION *s;

	if (!cipher)
		return NULL;
	s = SSL_SESSION_new();
	if (!s)
		return NULL;
	if (!SSL_SESSION_set1_master_key(s, t->key, t->keylen) ||
	    !SSL_SESSION_set_cipher(s, cipher) ||
	    !SSL_SESSION_set_protocol_version(s, TLS1_3_VERSION)) {
		SSL_SESSION_free(s);
		return NULL;
	}
	return s;
}

static const struct pi_tls_ctx *ctx_of(SSL *ssl)
{
	return SSL_CTX_get_app_data(SSL_get_SSL_CTX(ssl));
}

static int psk_use_cb(SSL *ssl, const EVP_MD *md, const unsigned char **id, size_t *idlen,
		      SSL_SESSION **sess)
{
	const struct pi_tls_ctx *t = ctx_of(ssl);
	SSL_SESSION *s = psk_session(ssl, t);

	if (!s)
		return 0;
	if (md && md != SSL_CIPHER_get_handshake_digest(SSL_SESSION_get0_cipher(s))) {
		/* a HelloRetryRequest chose a cipher of another hash: no PSK then */
		SSL_SESSION_free(s);
		*sess = NULL;
		return 1;
	}
	*id = (const unsigned char *)t->identity;
	*idlen = strlen(t->identity);
	*sess = s;
	return 1;
}

static int psk_find_cb(SSL *ssl, const unsigned char *id, size_t idlen, SSL_SESSION **sess)
{
	const struct pi_tls_ctx *t = ctx_of(ssl);

	if (idlen != strlen(t->identity) || memcmp(id, t->identity, idlen)) {
		*sess = NULL; /* unknown identity: no PSK, and without a certificate no handshake */
		return 1;
	}
	*sess = psk_session(ssl, t);
	return *sess ? 1 : 0;
}

/* Keep the application traffic secrets for kernel TLS (OpenSSL hands them over only here). */
static void keylog_cb(const SSL *ssl, const char *line)
{
	struct pi_conn *c = SSL_get_ex_data(ssl, ex_index());
	const char *p;
	int dir;
	size_t i, n;

	if (!c)
		return;
	if (!strncmp(line, "CLIENT_TRAFFIC_SECRET_0 ", 24))
		dir = 0;
	else if (!strncmp(line, "SERVER_TRAFFIC_SECRET_0 ", 24))
		dir = 1;
	else
		return;
	p = strchr(line + 24, ' '); /* past the client random */
	if (!p)
		return;
	p++;
	n = strlen(p) / 2;
	if (n > sizeof(c->secret[dir]))
		return;
	for (i = 0; i < n; i++) {
		int hi = hexval(p[2 * i]), lo = hexval(p[2 * i + 1]);

		if (hi < 0 || lo < 0)
			return;
		c->secret[dir][i] = (uint8_t)(hi << 4 | lo);
	}
	c->secret_len[dir] = (unsigned)n;
}

int pi_tls_ctx_new(const struct pi_tls_opts *o, bool server, struct pi_tls_ctx **out, char *why,
		   size_t whylen)
{
	bool psk = o && o->psk_file, cert = o && (o->cert_file || o->key_file || o->ca_file);
	struct pi_tls_ctx *t;
	SSL_CTX *sc;
	int ret;

	why[0] = '\0';
	if (psk == cert) {
		snprintf(why, whylen, psk ? "give a PSK file or certificates, not both"
					  : "TLS needs a PSK file or certificates");
		return -EINVAL;
	}
	if (cert && (!o->cert_file || !o->key_file || !o->ca_file)) {
		snprintf(why, whylen, "certificate mode needs all three of a certificate, its key "
			 "and the CA file (--tls-cert, --tls-key, --tls-ca)");
		return -EINVAL;
	}
	t = calloc(1, sizeof(*t));
	if (!t)
		return -ENOMEM;
	t->server = server;
	t->no_ktls = o->no_ktls;
	t->keep_secrets = o->keep_secrets;
	t->mode = psk ? PI_TLS_PSK : PI_TLS_CERT;
	sc = t->ssl_ctx = SSL_CTX_new(server ? TLS_server_method() : TLS_client_method());
	if (!sc) {
		ret = -ENOMEM;
		goto free_t;
	}
	SSL_CTX_set_app_data(sc, t);
	/* TLS 1.3 only; no session tickets (nothing arrives after the handshake but data, which is
	 * what lets the kernel take the stream over at sequence 0); PSK only with (EC)DHE, which is
	 * OpenSSL's default without SSL_OP_ALLOW_NO_DHE_KEX: a stolen key does not decrypt a
	 * recorded session */
	SSL_CTX_set_min_proto_version(sc, TLS1_3_VERSION);
	SSL_CTX_set_max_proto_version(sc, TLS1_3_VERSION);
	SSL_CTX_set_options(sc, SSL_OP_NO_TICKET);
	SSL_CTX_set_num_tickets(sc, 0);
	SSL_CTX_set_session_cache_mode(sc, SSL_SESS_CACHE_OFF);
	SSL_CTX_set_mode(sc, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
	SSL_CTX_set_default_read_buffer_len(sc, 256u << 10); /* read-ahead: 256 KiB per recv */
	if (!t->no_ktls || t->keep_secrets)
		SSL_CTX_set_keylog_callback(sc, keylog_cb);
	if (psk) {
		ret = load_psk(t, o->psk_file, why, whylen);
		if (ret < 0)
			goto free_t;
		/* the PSK is bound to SHA-256: only ciphers of that hash may be chosen, or the
		 * server would pick TLS_AES_256_GCM_SHA384 and ignore the key */
		if (SSL_CTX_set_ciphersuites(sc, "TLS_AES_128_GCM_SHA256:"
					     "TLS_CHACHA20_POLY1305_SHA256") != 1) {
			snprintf(why, whylen, "TLS ciphers: %s", ssl_reason());
			ret = -EINVAL;
			goto free_t;
		}
		if (server)
			SSL_CTX_set_psk_find_session_callback(sc, psk_find_cb);
		else
			SSL_CTX_set_psk_use_session_callback(sc, psk_use_cb);
	} else {
		if (SSL_CTX_use_certificate_chain_file(sc, o->cert_file) != 1) {
			snprintf(why, whylen, "cannot load the certificate %s: %s", o->cert_file,
				 ssl_reason());
			ret = access(o->cert_file, R_OK) ? -ENOENT : -EBADMSG;
			goto free_t;
		}
		if (SSL_CTX_use_PrivateKey_file(sc, o->key_file, SSL_FILETYPE_PEM) != 1 ||
		    SSL_CTX_check_private_key(sc) != 1) {
			snprintf(why, whylen, "cannot load the key %s for the certificate %s: %s",
				 o->key_file, o->cert_file, ssl_reason());
			ret = access(o->key_file, R_OK) ? -ENOENT : -EBADMSG;
			goto free_t;
		}
		if (SSL_CTX_load_verify_locations(sc, o->ca_file, NULL) != 1) {
			snprintf(why, whylen, "cannot load a CA certificate from %s: %s", o->ca_file,
				 ssl_reason());
			ret = access(o->ca_file, R_OK) ? -ENOENT : -EBADMSG;
			goto free_t;
		}
		SSL_CTX_set_verify(sc, SSL_VERIFY_PEER | (server ? SSL_VERIFY_FAIL_IF_NO_PEER_CERT : 0),
				   NULL);
		if (o->server_name)
			snprintf(t->server_name, sizeof(t->server_name), "%s", o->server_name);
	}
	*out = t;
	return 0;
free_t:
	pi_tls_ctx_free(t);
	return ret;
}

void pi_tls_ctx_free(struct pi_tls_ctx *t)
{
	if (!t)
		return;
	SSL_CTX_free(t->ssl_ctx);
	OPENSSL_cleanse(t->key, sizeof(t->key));
	free(t);
}

/* ------------------------------------------------------------------------------------------- */
/* the socket BIO: non-blocking, MSG_NOSIGNAL (a library must not raise SIGPIPE), and it keeps the
 * first bytes the peer sent, to name a peer that speaks something other than TLS */

static int bio_write(BIO *b, const char *buf, int n)
{
	struct pi_conn *c = BIO_get_data(b);
	ssize_t w = send(c->fd, buf, (size_t)n, MSG_DONTWAIT | MSG_NOSIGNAL);

	BIO_clear_retry_flags(b);
	if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
		BIO_set_retry_write(b);
	return (int)w;
}

static int bio_read(BIO *b, char *buf, int n)
{
	struct pi_conn *c = BIO_get_data(b);
	ssize_t r;

	if (!c->nfirst) {
		/* OpenSSL reads a 5-byte record header first; a pagein frame needs 8 to be told */
		r = recv(c->fd, c->first, sizeof(c->first), MSG_PEEK | MSG_DONTWAIT);
		if (r > 0)
			c->nfirst = (unsigned)r;
	}
	r = recv(c->fd, buf, (size_t)n, MSG_DONTWAIT);
	BIO_clear_retry_flags(b);
	if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
		BIO_set_retry_read(b);
	return (int)r;
}

static long bio_ctrl(BIO *b, int cmd, long num, void *ptr)
{
	return cmd == BIO_CTRL_FLUSH ? 1 : 0;
}

static BIO_METHOD *bio_method;

static void bio_method_init(void)
{
	BIO_METHOD *m = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK, "pagein socket");

	if (m && BIO_meth_set_write(m, bio_write) && BIO_meth_set_read(m, bio_read) &&
	    BIO_meth_set_ctrl(m, bio_ctrl))
		bio_method = m;
	else
		BIO_meth_free(m);
}

/* ------------------------------------------------------------------------------------------- */
/* kernel TLS                                                                                 */

/* HKDF-Expand-Label(secret, label, "", len) of TLS 1.3 (RFC 8446 §7.1). */
static bool expand_label(const EVP_MD *md, const uint8_t *secret, size_t slen, const char *label,
			 uint8_t *out, size_t olen)
{
	uint8_t info[64];
	size_t n = 0, ll = strlen(label);
	int mode = EVP_KDF_HKDF_MODE_EXPAND_ONLY;
	EVP_KDF *kdf;
	EVP_KDF_CTX *kc;
	bool ok = false;

	info[n++] = (uint8_t)(olen >> 8);
	info[n++] = (uint8_t)olen;
	info[n++] = (uint8_t)(6 + ll);
	memcpy(info + n, "tls13 ", 6);
	n += 6;
	memcpy(info + n, label, ll);
	n += ll;
	info[n++] = 0; /* empty context */
	kdf = EVP_KDF_fetch(NULL, "HKDF", NULL);
	kc = kdf ? EVP_KDF_CTX_new(kdf) : NULL;
	if (kc) {
		OSSL_PARAM p[] = {
			OSSL_PARAM_construct_utf8_string(OSSL_KDF_PARAM_DIGEST,
							 (char *)EVP_MD_get0_name(md), 0),
			OSSL_PARAM_construct_int(OSSL_KDF_PARAM_MODE, &mode),
			OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_KEY, (void *)secret, slen),
			OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_INFO, info, n),
			OSSL_PARAM_construct_end(),
		};

		ok = EVP_KDF_derive(kc, out, olen, p) > 0;
	}
	EVP_KDF_CTX_free(kc);
	EVP_KDF_free(kdf);
	return ok;
}

int pi_tls_traffic_keys(const struct pi_conn *c, bool rx, struct pi_tls_keys *k)
{
	const SSL_CIPHER *ci = c->ssl ? SSL_get_current_cipher(c->ssl) : NULL;
	int dir = (c->server ? 1 : 0) ^ (rx ? 1 : 0); /* 0: the client's secret, 1: the server's */
	const EVP_MD *md;

	memset(k, 0, sizeof(*k));
	if (!ci || !c->secret_len[dir])
		return -ENOKEY;
	switch (SSL_CIPHER_get_id(ci) & 0xffff) {
	case 0x1301:
		k->cipher = TLS_CIPHER_AES_GCM_128;
		k->keylen = 16;
		break;
	case 0x1302:
		k->cipher = TLS_CIPHER_AES_GCM_256;
		k->keylen = 32;
		break;
	case 0x1303:
		k->cipher = TLS_CIPHER_CHACHA20_POLY1305;
		k->keylen = 32;
		break;
	default:
		return -EOPNOTSUPP;
	}
	md = SSL_CIPHER_get_handshake_digest(ci);
	if (!md || !expand_label(md, c->secret[dir], c->secret_len[dir], "key", k->key, k->keylen) ||
	    !expand_label(md, c->secret[dir], c->secret_len[dir], "iv", k->iv, 12)) {
		OPENSSL_cleanse(k, sizeof(*k));
		return -EIO;
	}
	return 0;
}

/* Give one direction to the kernel, at record sequence 0. */
static bool ktls_dir(struct pi_conn *c, bool rx)
{
	union {
		struct tls12_crypto_info_aes_gcm_128 g128;
		struct tls12_crypto_info_aes_gcm_256 g256;
		struct tls12_crypto_info_chacha20_poly1305 cc;
	} u;
	struct pi_tls_keys k;
	socklen_t len;
	bool ok;

	if (pi_tls_traffic_keys(c, rx, &k) < 0) {
		snprintf(c->ktls_why, sizeof(c->ktls_why), "no traffic keys for the cipher");
		return false;
	}
	memset(&u, 0, sizeof(u));
	switch (k.cipher) {
	case TLS_CIPHER_AES_GCM_128:
		u.g128.info.version = TLS_1_3_VERSION;
		u.g128.info.cipher_type = TLS_CIPHER_AES_GCM_128;
		memcpy(u.g128.salt, k.iv, 4);
		memcpy(u.g128.iv, k.iv + 4, 8);
		memcpy(u.g128.key, k.key, 16);
		len = sizeof(u.g128);
		break;
	case TLS_CIPHER_AES_GCM_256:
		u.g256.info.version = TLS_1_3_VERSION;
		u.g256.info.cipher_type = TLS_CIPHER_AES_GCM_256;
		memcpy(u.g256.salt, k.iv, 4);
		memcpy(u.g256.iv, k.iv + 4, 8);
		memcpy(u.g256.key, k.key, 32);
		len = sizeof(u.g256);
		break;
	default:
		u.cc.info.version = TLS_1_3_VERSION;
		u.cc.info.cipher_type = TLS_CIPHER_CHACHA20_POLY1305;
		memcpy(u.cc.iv, k.iv, 12);
		memcpy(u.cc.key, k.key, 32);
		len = sizeof(u.cc);
		break;
	}
	ok = setsockopt(c->fd, SOL_TLS, rx ? TLS_RX : TLS_TX, &u, len) == 0;
	if (!ok)
		snprintf(c->ktls_why, sizeof(c->ktls_why), "%s: %s", rx ? "TLS_RX" : "TLS_TX",
			 strerror(errno));
	OPENSSL_cleanse(&u, sizeof(u));
	OPENSSL_cleanse(&k, sizeof(k));
	return ok;
}

/*
 * After the handshake, nothing has been sent or received under the application keys (no session
 * tickets, and the protocol's first message comes after the handshake): both directions start at
 * sequence 0. Only a server may already hold the client's first record in OpenSSL; it then keeps
 * receiving in user space.
 */
static void ktls_try(struct pi_conn *c)
{
	if (setsockopt(c->fd, SOL_TCP, TCP_ULP, "tls", sizeof("tls")) == 0) {
		c->ktls_tx = ktls_dir(c, false);
		if (c->ktls_tx && !SSL_has_pending(c->ssl))
			c->ktls_rx = ktls_dir(c, true);
	} else {
		/* no `tls` module (CONFIG_TLS off): user-space TLS */
		snprintf(c->ktls_why, sizeof(c->ktls_why), "TCP_ULP tls: %s", strerror(errno));
	}
}

/* ------------------------------------------------------------------------------------------- */
/* connections                                                                                */

void pi_conn_plain(struct pi_conn *c, int fd)
{
	memset(c, 0, sizeof(*c));
	c->fd = fd;
	snprintf(c->desc, sizeof(c->desc), "plain TCP");
}

bool pi_addr_is_loopback(const struct sockaddr_storage *ss)
{
	if (ss->ss_family == AF_INET)
		return (ntohl(((const struct sockaddr_in *)ss)->sin_addr.s_addr) >> 24) == 127;
	if (ss->ss_family == AF_INET6) {
		const struct in6_addr *a = &((const struct sockaddr_in6 *)ss)->sin6_addr;

		return IN6_IS_ADDR_LOOPBACK(a) || (IN6_IS_ADDR_V4MAPPED(a) && a->s6_addr[12] == 127);
	}
	return false;
}

int pi_tls_ctx_from(const char *psk_file, const char *cert, const char *key, const char *ca,
		    const char *name, bool server, struct pi_tls_ctx **out, char *why,
		    size_t whylen)
{
	struct pi_tls_opts o = { .psk_file = psk_file, .cert_file = cert, .key_file = key,
				 .ca_file = ca, .server_name = name };

	*out = NULL;
	why[0] = '\0';
	if (!psk_file && !cert && !key && !ca)
		return 0;
	return pi_tls_ctx_new(&o, server, out, why, whylen);
}

bool pi_tls_looks_like_tls(const uint8_t *b, size_t n)
{
	/* a record header: content type (alert 21, handshake 22), legacy version 3.x */
	return n >= 3 && (b[0] == 21 || b[0] == 22) && b[1] == 3 && b[2] <= 4;
}

/* Does what the peer sent look like a pagein frame header (any type), i.e. a plain peer? */
static bool looks_like_pagein(const uint8_t *b, unsigned n)
{
	return n >= 8 && b[3] == 0 && b[4] >= 1 && b[4] <= 16 && !b[5] && !b[6] && !b[7];
}

/* Server: wait for the first byte and peek at it; -EPROTO when the peer is not starting TLS. */
static int peek_first(struct pi_conn *c, uint64_t deadline_ns)
{
	ssize_t r;
	int ret;

	for (;;) {
		ret = wait_fd(c->fd, POLLIN, deadline_ns);
		if (ret < 0)
			return ret;
		r = recv(c->fd, c->first, sizeof(c->first), MSG_PEEK | MSG_DONTWAIT);
		if (r > 0)
			break;
		if (r == 0)
			return -ECONNRESET;
		if (errno != EAGAIN && errno != EINTR)
			return -errno;
	}
	c->nfirst = (unsigned)r;
	if (c->first[0] != 22) {
		c->peer_plain = looks_like_pagein(c->first, c->nfirst);
		return -EPROTO;
	}
	c->nfirst = 0; /* recorded again as the handshake reads it */
	return 0;
}

static int ssl_lock(struct pi_conn *c)
{
	return pthread_mutex_lock(c->lock);
}

static void ssl_unlock(struct pi_conn *c)
{
	pthread_mutex_unlock(c->lock);
}

/* Why a handshake failed, in words a person can act on. */
static int handshake_why(struct pi_conn *c, const struct pi_tls_ctx *t, int err, char *why,
			 size_t whylen)
{
	const char *side = c->server ? "client" : "server";
	long vr = SSL_get_verify_result(c->ssl);
	const char *reason;

	if (c->nfirst && !pi_tls_looks_like_tls(c->first, c->nfirst)) {
		c->peer_plain = looks_like_pagein(c->first, c->nfirst);
		snprintf(why, whylen, "the %s %s: this end requires TLS (%s)", side,
			 c->peer_plain ? "speaks plain pagein, without TLS" : "does not speak TLS",
			 pi_tls_mode_name(t->mode));
		ERR_clear_error();
		return -EPROTO;
	}
	if (err == -ETIMEDOUT) {
		snprintf(why, whylen, "TLS handshake: no answer from the %s in time", side);
		ERR_clear_error();
		return -ETIMEDOUT;
	}
	if (t->mode == PI_TLS_CERT && vr != X509_V_OK) {
		snprintf(why, whylen, "the %s's certificate does not verify against our CA: %s", side,
			 X509_verify_cert_error_string(vr));
		ERR_clear_error();
		return -EACCES;
	}
	if (!ERR_peek_last_error()) {
		snprintf(why, whylen, "TLS handshake: the %s closed the connection%s", side,
			 c->nfirst ? "" : " without answering (does it speak TLS?)");
		return -ECONNRESET;
	}
	reason = ssl_reason();
	if (t->mode == PI_TLS_PSK)
		snprintf(why, whylen, "TLS handshake with the %s failed (%s): not the same "
			 "pre-shared key and identity?", side, reason);
	else
		snprintf(why, whylen, "TLS handshake with the %s failed (%s): %s", side, reason,
			 c->server ? "no certificate, or one our CA did not sign?"
				   : "our certificate is not signed by the server's CA?");
	return -EACCES;
}

int pi_conn_handshake(struct pi_conn *c, int fd, const struct pi_tls_ctx *t, bool server,
		      uint64_t deadline_ns, char *why, size_t whylen)
{
	static pthread_once_t once = PTHREAD_ONCE_INIT;
	pthread_mutex_t *lock;
	BIO *bio;
	int r, e, ret;

	why[0] = '\0';
	pi_conn_plain(c, fd);
	c->server = server;
	c->keep_secrets = t->keep_secrets;
	pthread_once(&once, bio_method_init);
	lock = malloc(sizeof(*lock));
	if (!lock || !bio_method) {
		free(lock);
		snprintf(why, whylen, "TLS: out of memory");
		return -ENOMEM;
	}
	pthread_mutex_init(lock, NULL);
	c->lock = lock;
	c->ssl = SSL_new(t->ssl_ctx);
	bio = BIO_new(bio_method);
	if (!c->ssl || !bio) {
		BIO_free(bio);
		snprintf(why, whylen, "TLS: out of memory");
		return -ENOMEM;
	}
	BIO_set_data(bio, c);
	BIO_set_init(bio, 1);
	SSL_set_bio(c->ssl, bio, bio);
	SSL_set_ex_data(c->ssl, ex_index(), c);
	if (t->mode == PI_TLS_CERT && !server && t->server_name[0]) {
		SSL_set_tlsext_host_name(c->ssl, t->server_name);
		SSL_set1_host(c->ssl, t->server_name);
	}
	if (server) {
		SSL_set_accept_state(c->ssl);
		ret = peek_first(c, deadline_ns);
		if (ret == -EPROTO) {
			snprintf(why, whylen, "the client %s: this server requires TLS (%s)",
				 c->peer_plain ? "speaks plain pagein, without TLS"
					       : "does not start a TLS handshake",
				 pi_tls_mode_name(t->mode));
			return ret;
		}
		if (ret < 0) {
			snprintf(why, whylen, "TLS handshake: %s",
				 ret == -ETIMEDOUT ? "the client sent nothing in time"
						   : "the client closed the connection");
			return ret;
		}
	} else {
		SSL_set_connect_state(c->ssl);
	}
	ERR_clear_error();
	for (;;) {
		r = SSL_do_handshake(c->ssl);
		if (r == 1)
			break;
		e = SSL_get_error(c->ssl, r);
		if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
			ret = wait_fd(fd, e == SSL_ERROR_WANT_READ ? POLLIN : POLLOUT, deadline_ns);
			if (ret < 0)
				return handshake_why(c, t, ret, why, whylen);
			continue;
		}
		return handshake_why(c, t, -EPROTO, why, whylen);
	}
	if (!t->no_ktls)
		ktls_try(c);
	if (!c->ktls_rx)
		/* user-space receive: let OpenSSL read ahead (many records per recv, not two
		 * syscalls per record); only now, so nothing past the handshake was read ahead
		 * before the kernel could have taken the receive side */
		SSL_set_read_ahead(c->ssl, 1);
	if (!c->keep_secrets) {
		OPENSSL_cleanse(c->secret, sizeof(c->secret));
		memset(c->secret_len, 0, sizeof(c->secret_len));
	}
	snprintf(c->desc, sizeof(c->desc), "%s, %s, %s, %s", SSL_get_version(c->ssl),
		 t->mode == PI_TLS_PSK ? "PSK with (EC)DHE" : "certificates",
		 SSL_CIPHER_get_name(SSL_get_current_cipher(c->ssl)),
		 c->ktls_rx ? "kernel TLS both ways" : c->ktls_tx ? "kernel TLS sending"
								  : "user-space TLS");
	return 0;
}

/* wait_fd with an idle limit and a stop fd, as lib/net/wire.c's: 0, -ETIMEDOUT, -ESHUTDOWN. */
static int wait_io(int fd, short events, int idle_ms, uint64_t deadline_ns, int stop_fd)
{
	struct pollfd pfd[2] = { { .fd = fd, .events = events }, { .fd = stop_fd, .events = POLLIN } };
	int ms, left, n;

	for (;;) {
		ms = idle_ms;
		left = ms_left(deadline_ns);
		if (left >= 0 && (ms < 0 || left < ms))
			ms = left;
		n = poll(pfd, stop_fd >= 0 ? 2 : 1, ms);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		if (stop_fd >= 0 && pfd[1].revents)
			return -ESHUTDOWN;
		return n ? 0 : -ETIMEDOUT;
	}
}

/* One user-space TLS read: the count, 0 at EOF, -EAGAIN (wait for *ev), or -errno. */
static ssize_t tls_read_once(struct pi_conn *c, void *buf, size_t max, short *ev)
{
	unsigned long err;
	size_t got;
	int r, e;

	ssl_lock(c);
	r = SSL_read_ex(c->ssl, buf, max, &got);
	e = r == 1 ? SSL_ERROR_NONE : SSL_get_error(c->ssl, r);
	err = e == SSL_ERROR_SSL ? ERR_peek_last_error() : 0;
	if (e != SSL_ERROR_NONE)
		ERR_clear_error();
	ssl_unlock(c);
	switch (e) {
	case SSL_ERROR_NONE:
		return (ssize_t)got;
	case SSL_ERROR_WANT_READ:
		*ev = POLLIN;
		return -EAGAIN;
	case SSL_ERROR_WANT_WRITE:
		*ev = POLLOUT;
		return -EAGAIN;
	case SSL_ERROR_ZERO_RETURN:
	case SSL_ERROR_SYSCALL:
		return 0; /* close_notify, or TCP closed without it: the framing tells truncation */
	default:
		snprintf(c->error, sizeof(c->error), "%s",
			 err && ERR_reason_error_string(err) ? ERR_reason_error_string(err)
							     : "TLS failure");
		if (ERR_GET_REASON(err) == SSL_R_DECRYPTION_FAILED_OR_BAD_RECORD_MAC ||
		    ERR_GET_REASON(err) == SSL_R_DECRYPTION_FAILED)
			return -EBADMSG;
		if (ERR_GET_REASON(err) == SSL_R_UNEXPECTED_EOF_WHILE_READING)
			return 0;
		return ERR_GET_REASON(err) >= SSL_AD_REASON_OFFSET ? -ECONNRESET : -EIO;
	}
}

/* One plain (or kernel TLS) read: the count, 0 at EOF, -EAGAIN, or -errno. */
static ssize_t fd_read_once(struct pi_conn *c, void *buf, size_t max)
{
	ssize_t r = recv(c->fd, buf, max, MSG_DONTWAIT);
	int e;

	if (r >= 0)
		return r;
	e = errno;
	if (e == EINTR || e == EAGAIN || e == EWOULDBLOCK)
		return -EAGAIN;
	if (c->ssl)
		snprintf(c->error, sizeof(c->error), "%s",
			 e == EBADMSG ? "bad record mac (kernel TLS)"
			 : e == EIO ? "a TLS alert or control record (kernel TLS)" : strerror(e));
	/* kernel TLS: EBADMSG is a record that failed authentication; EIO a record that is not
	 * data (an alert: the peer closes or refuses) */
	return e == EBADMSG ? -EBADMSG : (e == EIO && c->ssl) || e == EPIPE ? -ECONNRESET : -e;
}

ssize_t pi_conn_recv_some(struct pi_conn *c, void *buf, size_t max, int idle_ms, int stop_fd)
{
	ssize_t r;
	short ev = POLLIN;
	int ret;

	for (;;) {
		r = !c->ssl || c->ktls_rx ? fd_read_once(c, buf, max) : tls_read_once(c, buf, max, &ev);
		if (r != -EAGAIN)
			return r;
		ret = wait_io(c->fd, ev, idle_ms, 0, stop_fd);
		if (ret < 0)
			return ret;
	}
}

int pi_conn_recv_full(struct pi_conn *c, void *buf, size_t len, size_t *got, int idle_ms,
		      uint64_t deadline_ns, int stop_fd)
{
	ssize_t r;
	short ev;
	int ret;

	*got = 0;
	while (*got < len) {
		ev = POLLIN;
		r = !c->ssl || c->ktls_rx
			    ? fd_read_once(c, (uint8_t *)buf + *got, len - *got)
			    : tls_read_once(c, (uint8_t *)buf + *got, len - *got, &ev);
		if (r > 0) {
			*got += (size_t)r;
			continue;
		}
		if (r == 0)
			return -ECONNRESET;
		if (r != -EAGAIN)
			return (int)r;
		ret = wait_io(c->fd, ev, idle_ms, deadline_ns, stop_fd);
		if (ret < 0)
			return ret;
	}
	return 0;
}

/* Drop w sent bytes from the front of the iov array. */
static void iov_advance(struct iovec **iov, int *n, size_t w)
{
	while (*n && w >= (*iov)->iov_len) {
		w -= (*iov)->iov_len;
		(*iov)++;
		(*n)--;
	}
	if (*n) {
		(*iov)->iov_base = (uint8_t *)(*iov)->iov_base + w;
		(*iov)->iov_len -= w;
	}
}

int pi_conn_sendv(struct pi_conn *c, struct iovec *iov, int n, size_t *sent, int idle_ms,
		  uint64_t deadline_ns, int stop_fd)
{
	/* user-space TLS: whole records of up to 16 KiB gathered here, so a frame header and its
	 * descriptors do not each cost a record */
	uint8_t stage[16384];
	size_t have = 0, w;
	bool retry = false; /* OpenSSL wants the same bytes again after a WANT_* */
	short ev;
	int r, e, ret;

	*sent = 0;
	while (n > 0 && (!c->ssl || c->ktls_tx)) {
		struct msghdr mh = { .msg_iov = iov, .msg_iovlen = (size_t)n };
		ssize_t s = sendmsg(c->fd, &mh, MSG_NOSIGNAL | MSG_DONTWAIT);

		if (s < 0 && errno == EINTR)
			continue;
		if (s < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
			ret = wait_io(c->fd, POLLOUT, idle_ms, deadline_ns, stop_fd);
			if (ret < 0)
				return ret;
			continue;
		}
		if (s < 0)
			return errno == EPIPE ? -ECONNRESET : -errno;
		*sent += (size_t)s;
		iov_advance(&iov, &n, (size_t)s);
	}
	while (n > 0 || have) {
		/* fill the stage; a partly written record is sent again from the same bytes */
		while (!retry && n > 0 && have < sizeof(stage)) {
			size_t k = iov->iov_len < sizeof(stage) - have ? iov->iov_len
								       : sizeof(stage) - have;

			memcpy(stage + have, iov->iov_base, k);
			have += k;
			iov_advance(&iov, &n, k);
		}
		ssl_lock(c);
		r = SSL_write_ex(c->ssl, stage, have, &w);
		e = r == 1 ? SSL_ERROR_NONE : SSL_get_error(c->ssl, r);
		if (e != SSL_ERROR_NONE)
			ERR_clear_error();
		ssl_unlock(c);
		if (r == 1) {
			*sent += w;
			memmove(stage, stage + w, have - w);
			have -= w;
			retry = false;
			continue;
		}
		if (e != SSL_ERROR_WANT_WRITE && e != SSL_ERROR_WANT_READ)
			return e == SSL_ERROR_SYSCALL ? -ECONNRESET : -EIO;
		retry = true;
		ev = e == SSL_ERROR_WANT_READ ? POLLIN : POLLOUT;
		ret = wait_io(c->fd, ev, idle_ms, deadline_ns, stop_fd);
		if (ret < 0)
			return ret;
	}
	return 0;
}

int pi_conn_write(struct pi_conn *c, const void *buf, size_t n, uint64_t deadline_ns)
{
	struct iovec iov = { .iov_base = (void *)buf, .iov_len = n };
	size_t sent;
	return pi_conn_sendv(c, &iov, 1, &sent, -1, deadline_ns, -1);
}

ssize_t pi_conn_recv(struct pi_conn *c, void *buf, size_t n, uint64_t deadline_ns)
{
	ssize_t r;
	short ev;
	int ret;

	for (;;) {
		ev = POLLIN;
		r = !c->ssl || c->ktls_rx ? fd_read_once(c, buf, n) : tls_read_once(c, buf, n, &ev);
		if (r != -EAGAIN)
			return r;
		ret = wait_io(c->fd, ev, -1, deadline_ns, -1);
		if (ret < 0)
			return ret;
	}
}

int pi_conn_read_exact(struct pi_conn *c, void *buf, size_t n, uint64_t deadline_ns)
{
	uint8_t *p = buf;
	size_t got = 0;
	ssize_t r;

	while (got < n) {
		r = pi_conn_recv(c, p + got, n - got, deadline_ns);
		if (r < 0)
			return (int)r;
		if (r == 0)
			return got ? -EPIPE : 1;
		got += (size_t)r;
	}
	return 0;
}

int pi_conn_binding(struct pi_conn *c, uint8_t out[32])
{
	static const char label[] = "EXPORTER-pagein-join";
	int ok;

	memset(out, 0, 32);
	if (!c->ssl)
		return 0;
	/* exporting reads only the handshake's secrets: no record I/O, but OpenSSL wants one
	 * caller at a time */
	pthread_mutex_lock(c->lock);
	ok = SSL_export_keying_material(c->ssl, out, 32, label, sizeof(label) - 1, NULL, 0, 0);
	ERR_clear_error();
	pthread_mutex_unlock(c->lock);
	return ok == 1 ? 0 : -EIO;
}

size_t pi_conn_pending(const struct pi_conn *c)
{
	size_t n;

	if (!c->ssl || c->ktls_rx)
		return 0;
	/* read-ahead may hold whole records not yet decrypted: those count too (poll would not
	 * see them) */
	pthread_mutex_lock(c->lock);
	n = (size_t)SSL_pending(c->ssl);
	if (!n && SSL_has_pending(c->ssl))
		n = 1;
	pthread_mutex_unlock(c->lock);
	return n;
}

void pi_conn_drop_tls(struct pi_conn *c)
{
	int fd = c->fd;

	c->fd = -1;
	pi_conn_close(c); /* frees the session; fd is not closed */
	pi_conn_plain(c, fd);
}

void pi_conn_close(struct pi_conn *c)
{
	if (c->ssl) {
		/* close_notify while OpenSSL still owns sending; the BIO never blocks, so a full
		 * socket only loses the courtesy */
		if (!c->ktls_tx && SSL_is_init_finished(c->ssl))
			SSL_shutdown(c->ssl);
		ERR_clear_error();
		SSL_free(c->ssl);
		c->ssl = NULL;
	}
	if (c->lock) {
		pthread_mutex_destroy(c->lock);
		free(c->lock);
		c->lock = NULL;
	}
	OPENSSL_cleanse(c->secret, sizeof(c->secret));
	if (c->fd >= 0)
		close(c->fd);
	c->fd = -1;
}
