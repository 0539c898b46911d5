// SPDX-License-Identifier: MIT
/*
 * t_tls.c - the TLS transport (lib/net/tls.c) over real loopback handshakes: the right PSK and
 * certificates both ways work and carry data (one thread reading while another writes); a wrong
 * PSK, a wrong identity, a wrong CA on either side, a plain client against a TLS server and the
 * reverse are each refused with a clear reason; a byte flipped in flight (through the test proxy)
 * fails the read cleanly (-EBADMSG); a silent server times out; the traffic keys handed to the
 * kernel decrypt a real record.
 */
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>
#include <linux/tls.h>
#include <poll.h>
#include <pthread.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "helpers.h"
#include "net/auth.h"
#include "net/tls.h"
#include "proxy.h"

#define STREAM (4u << 20) /* bytes the server sends after the handshake */

static char dir[64];

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static uint8_t pat(uint64_t i)
{
	return (uint8_t)(i * 13 + (i >> 11));
}

static const char *path(const char *name)
{
	static char buf[8][128];
	static unsigned k;
	char *p = buf[k++ % 8];

	snprintf(p, 128, "%s/%s", dir, name);
	return p;
}

static void write_file(const char *name, const char *text, mode_t mode)
{
	int fd = open(path(name), O_WRONLY | O_CREAT | O_TRUNC, mode);

	T_ASSERT(fd >= 0);
	T_ASSERT(write(fd, text, strlen(text)) == (ssize_t)strlen(text));
	T_ASSERT(fchmod(fd, mode) == 0);
	close(fd);
}

/* ------------------------------------------------------------------------------------------- */
/* certificates, made here: a CA (or the wrong one) signs a leaf                              */

static EVP_PKEY *key_new(void)
{
	EVP_PKEY *k = EVP_EC_gen("P-256");

	T_ASSERT(k);
	return k;
}

static X509 *cert_new(const char *cn, EVP_PKEY *key, X509 *issuer, EVP_PKEY *ikey, bool ca)
{
	X509 *x = X509_new();
	X509V3_CTX v3;
	X509_EXTENSION *ext;
	static long serial = 1;

	T_ASSERT(x);
	X509_set_version(x, 2);
	ASN1_INTEGER_set(X509_get_serialNumber(x), serial++);
	X509_gmtime_adj(X509_getm_notBefore(x), -3600);
	X509_gmtime_adj(X509_getm_notAfter(x), 86400);
	X509_NAME_add_entry_by_txt(X509_get_subject_name(x), "CN", MBSTRING_ASC,
				   (const unsigned char *)cn, -1, -1, 0);
	X509_set_issuer_name(x, issuer ? X509_get_subject_name(issuer) : X509_get_subject_name(x));
	X509_set_pubkey(x, key);
	X509V3_set_ctx(&v3, issuer ? issuer : x, x, NULL, NULL, 0);
	ext = X509V3_EXT_conf_nid(NULL, &v3, NID_basic_constraints, ca ? "critical,CA:TRUE"
									: "CA:FALSE");
	T_ASSERT(ext);
	X509_add_ext(x, ext, -1);
	X509_EXTENSION_free(ext);
	if (!ca) {
		ext = X509V3_EXT_conf_nid(NULL, &v3, NID_subject_alt_name, "DNS:pagein.test");
		T_ASSERT(ext);
		X509_add_ext(x, ext, -1);
		X509_EXTENSION_free(ext);
	}
	T_ASSERT(X509_sign(x, issuer ? ikey : key, EVP_sha256()) > 0);
	return x;
}

static void save(const char *name, X509 *x, EVP_PKEY *k)
{
	FILE *f = fopen(path(name), "w");

	T_ASSERT(f);
	if (x)
		T_ASSERT(PEM_write_X509(f, x) == 1);
	else
		T_ASSERT(PEM_write_PrivateKey(f, k, NULL, NULL, 0, NULL, NULL) == 1);
	fclose(f);
	chmod(path(name), 0600);
}

static void make_pki(void)
{
	EVP_PKEY *cak = key_new(), *bad_cak = key_new(), *sk = key_new(), *ck = key_new(),
		 *bk = key_new();
	X509 *ca = cert_new("pagein test CA", cak, NULL, NULL, true);
	X509 *bad_ca = cert_new("someone else's CA", bad_cak, NULL, NULL, true);
	X509 *srv = cert_new("server", sk, ca, cak, false);
	X509 *cli = cert_new("client", ck, ca, cak, false);
	X509 *bad = cert_new("client", bk, bad_ca, bad_cak, false);

	save("ca.pem", ca, NULL);
	save("bad-ca.pem", bad_ca, NULL);
	save("srv.pem", srv, NULL);
	save("srv.key", NULL, sk);
	save("cli.pem", cli, NULL);
	save("cli.key", NULL, ck);
	save("bad.pem", bad, NULL);
	save("bad.key", NULL, bk);
	X509_free(ca);
	X509_free(bad_ca);
	X509_free(srv);
	X509_free(cli);
	X509_free(bad);
	EVP_PKEY_free(cak);
	EVP_PKEY_free(bad_cak);
	EVP_PKEY_free(sk);
	EVP_PKEY_free(ck);
	EVP_PKEY_free(bk);
}

/* ------------------------------------------------------------------------------------------- */
/* one server connection in a thread                                                          */

struct srv {
	int lfd, port;
	struct pi_tls_ctx *tls;   /* NULL: a plain server */
	bool stream;              /* after the handshake: read 8 bytes, send STREAM bytes */
	bool raw_check;           /* read the client's first record raw and decrypt it by hand */
	int ret;                  /* the handshake's result */
	char why[256];
	bool peer_plain;
	int stream_ret;
	int raw_ret;
	uint8_t binding[32];      /* the server end's channel binding */
	pthread_t th;
};

static int listen_any(int *port)
{
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t sl = sizeof(sa);
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	T_ASSERT(fd >= 0);
	T_ASSERT(bind(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0);
	T_ASSERT(listen(fd, 8) == 0);
	T_ASSERT(getsockname(fd, (struct sockaddr *)&sa, &sl) == 0);
	*port = ntohs(sa.sin_port);
	return fd;
}

/* Decrypt one TLS 1.3 record of the client's (sequence 0) with the keys the kernel would get. */
static int raw_decrypt(struct pi_conn *c, uint8_t *out, size_t *outlen)
{
	struct pi_tls_keys k;
	uint8_t hdr[5], rec[1024];
	size_t len;
	int n, m, ret;
	EVP_CIPHER_CTX *cx;

	ret = pi_tls_traffic_keys(c, true, &k);
	if (ret < 0)
		return ret;
	if (k.cipher != TLS_CIPHER_AES_GCM_128 && k.cipher != TLS_CIPHER_AES_GCM_256)
		return -EOPNOTSUPP;
	/* the socket is non-blocking now: wait for the record */
	if (pi_conn_pending(c))
		return -EAGAIN;
	{
		struct pollfd pfd = { .fd = c->fd, .events = POLLIN };

		poll(&pfd, 1, 5000);
	}
	if (recv(c->fd, hdr, 5, MSG_WAITALL) != 5 || hdr[0] != 23)
		return -EPROTO;
	len = (size_t)hdr[3] << 8 | hdr[4];
	if (len > sizeof(rec) || len < 17 || recv(c->fd, rec, len, MSG_WAITALL) != (ssize_t)len)
		return -EPROTO;
	cx = EVP_CIPHER_CTX_new();
	/* nonce = iv XOR sequence (0): the iv itself */
	EVP_DecryptInit_ex(cx, k.keylen == 16 ? EVP_aes_128_gcm() : EVP_aes_256_gcm(), NULL, k.key,
			   k.iv);
	EVP_DecryptUpdate(cx, NULL, &n, hdr, 5);
	EVP_DecryptUpdate(cx, out, &n, rec, (int)len - 16);
	EVP_CIPHER_CTX_ctrl(cx, EVP_CTRL_GCM_SET_TAG, 16, rec + len - 16);
	ret = EVP_DecryptFinal_ex(cx, out + n, &m) == 1 ? 0 : -EBADMSG;
	EVP_CIPHER_CTX_free(cx);
	/* the inner plaintext ends with its content type (23, data) */
	if (!ret && (n < 1 || out[n - 1] != 23))
		ret = -EPROTO;
	*outlen = (size_t)n - 1;
	return ret;
}

static void *srv_main(void *arg)
{
	struct srv *s = arg;
	struct pi_conn c;
	uint8_t buf[65536];
	int fd = accept4(s->lfd, NULL, NULL, SOCK_CLOEXEC);

	if (fd < 0) {
		s->ret = -errno;
		return NULL;
	}
	if (!s->tls) {
		/* a plain pagein server: a TLS client is told so in a pagein ERROR frame */
		uint8_t first[16];
		ssize_t r = recv(fd, first, sizeof(first), 0);

		s->ret = r > 0 && pi_tls_looks_like_tls(first, (size_t)r) ? -EPROTO : 0;
		if (s->ret) {
			static const char text[] = "this server speaks plain pagein, not TLS";
			uint8_t f[16 + 4 + sizeof(text) - 1] = { 0 };

			f[0] = (uint8_t)(4 + sizeof(text) - 1);
			f[4] = 6; /* PN_ERROR */
			f[16] = EPROTONOSUPPORT;
			memcpy(f + 20, text, sizeof(text) - 1);
			T_ASSERT(send(fd, f, sizeof(f), MSG_NOSIGNAL) == (ssize_t)sizeof(f));
			snprintf(s->why, sizeof(s->why), "the client speaks TLS");
		}
		shutdown(fd, SHUT_WR);
		usleep(100000);
		close(fd);
		return NULL;
	}
	s->ret = pi_conn_handshake(&c, fd, s->tls, true, now_ns() + 3000000000ull, s->why,
				   sizeof(s->why));
	s->peer_plain = c.peer_plain;
	if (!s->ret)
		T_EQ(pi_conn_binding(&c, s->binding), 0);
	if (!s->ret && s->raw_check) {
		size_t n = 0;

		s->raw_ret = raw_decrypt(&c, buf, &n);
		if (!s->raw_ret && (n != 11 || memcmp(buf, "hello, kTLS", 11)))
			s->raw_ret = -EILSEQ;
	} else if (!s->ret && s->stream) {
		uint64_t off;

		s->stream_ret = pi_conn_read_exact(&c, &off, 8, now_ns() + 5000000000ull);
		while (!s->stream_ret && off < STREAM) {
			size_t n = STREAM - off < sizeof(buf) ? STREAM - off : sizeof(buf), i, sent;
			/* as a frame goes out: a small header, descriptors, then payload */
			struct iovec iov[3] = { { buf, 16 }, { buf + 16, 100 },
						{ buf + 116, n - 116 } };

			for (i = 0; i < n; i++)
				buf[i] = pat(off + i);
			s->stream_ret = pi_conn_sendv(&c, iov, 3, &sent, 5000, 0, -1);
			if (!s->stream_ret && sent != n)
				s->stream_ret = -EMSGSIZE;
			off += n;
		}
		/* the client's small messages, read while the stream went out */
		if (!s->stream_ret) {
			uint32_t k, v;

			for (k = 0; k < 1000 && !s->stream_ret; k++) {
				s->stream_ret = pi_conn_read_exact(&c, &v, 4, now_ns() + 5000000000ull);
				if (!s->stream_ret && v != k)
					s->stream_ret = -EILSEQ;
			}
		}
	}
	if (s->ret)
		fprintf(stderr, "  server: %s\n", s->why);
	pi_conn_close(&c);
	return NULL;
}

static void srv_start_raw(struct srv *s, struct pi_tls_ctx *tls, bool stream, bool raw)
{
	memset(s, 0, sizeof(*s));
	s->raw_check = raw;
	s->tls = tls;
	s->stream = stream;
	s->lfd = listen_any(&s->port);
	T_ASSERT(pthread_create(&s->th, NULL, srv_main, s) == 0);
}

static void srv_start(struct srv *s, struct pi_tls_ctx *tls, bool stream)
{
	srv_start_raw(s, tls, stream, false);
}

static void srv_join(struct srv *s)
{
	pthread_join(s->th, NULL);
	close(s->lfd);
}

static struct pi_tls_ctx *ctx(bool server, const char *psk, const char *cert, const char *key,
			      const char *ca)
{
	struct pi_tls_opts o = { 0 };
	struct pi_tls_ctx *t;
	char why[256];
	int ret;

	o.psk_file = psk ? path(psk) : NULL;
	o.cert_file = cert ? path(cert) : NULL;
	o.key_file = key ? path(key) : NULL;
	o.ca_file = ca ? path(ca) : NULL;
	ret = pi_tls_ctx_new(&o, server, &t, why, sizeof(why));
	if (ret)
		fprintf(stderr, "pi_tls_ctx_new: %s\n", why);
	T_EQ(ret, 0);
	return t;
}

/* A client handshake to port; returns its result, the connection open on success. */
static int client(struct pi_conn *c, int port, struct pi_tls_ctx *t, char *why, size_t wl)
{
	int fd = t_connect_loopback(port, 0), ret;

	ret = pi_conn_handshake(c, fd, t, false, now_ns() + 3000000000ull, why, wl);
	if (ret)
		fprintf(stderr, "  client: %s\n", why);
	return ret;
}

struct reader {
	struct pi_conn *c;
	int ret;
	uint64_t got;
};

static void *reader_main(void *arg)
{
	struct reader *r = arg;
	uint8_t buf[50000];

	while (r->got < STREAM) {
		ssize_t n, i;

		/* the three receive loops in turn */
		if (r->got % 3 == 0) {
			n = pi_conn_recv(r->c, buf, sizeof(buf), now_ns() + 5000000000ull);
		} else if (r->got % 3 == 1) {
			n = pi_conn_recv_some(r->c, buf, sizeof(buf), 5000, -1);
		} else {
			size_t got, want = STREAM - r->got < 3000 ? STREAM - r->got : 3000;
			int ret = pi_conn_recv_full(r->c, buf, want, &got, 5000, 0, -1);

			n = ret ? ret : (ssize_t)got;
			if (ret == -ECONNRESET)
				n = 0;
		}
		if (n <= 0) {
			r->ret = n ? (int)n : -EPIPE;
			return NULL;
		}
		for (i = 0; i < n; i++)
			if (buf[i] != pat(r->got + (uint64_t)i)) {
				r->ret = -EILSEQ;
				return NULL;
			}
		r->got += (uint64_t)n;
	}
	return NULL;
}

/* A good pair: the stream arrives intact while this thread writes 1000 small messages. */
static void good_pair(struct pi_tls_ctx *st, struct pi_tls_ctx *ct, const char *name)
{
	struct srv s;
	struct pi_conn c;
	struct reader r = { .c = &c };
	pthread_t th;
	uint64_t zero = 0;
	uint32_t k;
	uint8_t cb[32];
	char why[256];

	srv_start(&s, st, true);
	T_EQ(client(&c, s.port, ct, why, sizeof(why)), 0);
	printf("%s: %s\n", name, c.desc);
	T_ASSERT(strstr(c.desc, "TLSv1.3"));
	{
		/* a session proof made with this connection's binding */
		static uint8_t prev[32];
		uint8_t b[32], zero32[32] = { 0 }, key[PN_SECRET], nonce[PN_NONCE], mac[PN_MAC];

		T_EQ(pi_conn_binding(&c, b), 0);
		T_ASSERT(memcmp(b, zero32, 32) && memcmp(b, prev, 32));
		memcpy(prev, b, 32);
		memcpy(cb, b, 32);
		T_EQ(pi_random(key, sizeof(key)), 0);
		T_EQ(pi_random(nonce, sizeof(nonce)), 0);
		pi_session_proof(key, nonce, 0x1234, 1, b, mac);
		T_ASSERT(pi_session_proof_ok(key, nonce, 0x1234, 1, b, mac));
		T_ASSERT(!pi_session_proof_ok(key, nonce, 0x1235, 1, b, mac));   /* another session */
		T_ASSERT(!pi_session_proof_ok(key, nonce, 0x1234, 2, b, mac));   /* another role */
		T_ASSERT(!pi_session_proof_ok(key, nonce, 0x1234, 1, zero32, mac)); /* replayed on
										     * another channel */
		nonce[0] ^= 1;
		T_ASSERT(!pi_session_proof_ok(key, nonce, 0x1234, 1, b, mac));   /* old challenge */
		nonce[0] ^= 1;
		key[0] ^= 1;
		T_ASSERT(!pi_session_proof_ok(key, nonce, 0x1234, 1, b, mac));   /* guessed secret */
	}
	T_EQ(pi_conn_write(&c, &zero, 8, now_ns() + 5000000000ull), 0);
	T_ASSERT(pthread_create(&th, NULL, reader_main, &r) == 0);
	for (k = 0; k < 1000; k++)
		T_EQ(pi_conn_write(&c, &k, 4, now_ns() + 5000000000ull), 0);
	pthread_join(th, NULL);
	T_EQ(r.ret, 0);
	T_EQ(r.got, STREAM);
	pi_conn_close(&c);
	srv_join(&s);
	T_EQ(s.ret, 0);
	T_EQ(s.stream_ret, 0);
	T_ASSERT(memcmp(cb, s.binding, 32) == 0); /* both ends derived the same binding */
}

/* A refused pair: both ends fail; the server's result is want_srv. */
static void refused(struct pi_tls_ctx *st, struct pi_tls_ctx *ct, int want_srv, const char *name,
		    const char *srv_says)
{
	struct srv s;
	struct pi_conn c;
	char why[256];
	int ret;

	srv_start(&s, st, true);
	ret = client(&c, s.port, ct, why, sizeof(why));
	if (ret == 0) {
		/* TLS 1.3: the client is done before the server has checked its certificate;
		 * the server's refusal (an alert) is what its first read gets */
		uint64_t zero = 0;
		uint8_t b[16];

		ret = pi_conn_write(&c, &zero, 8, now_ns() + 5000000000ull); /* may be reset */
		T_ASSERT(ret == 0 || ret == -ECONNRESET || ret == -EPIPE);
		ret = (int)pi_conn_recv(&c, b, sizeof(b), now_ns() + 5000000000ull);
		snprintf(why, sizeof(why), "first read: %d %s", ret, c.error);
		T_ASSERT(ret == -ECONNRESET || ret == 0 || ret == -EIO);
		ret = -ECONNRESET;
	}
	pi_conn_close(&c);
	srv_join(&s);
	printf("%s: refused; client: %s; server: %s\n", name, why, s.why);
	T_ASSERT(ret == -EACCES || ret == -ECONNRESET);
	T_ASSERT(why[0]);
	T_EQ(s.ret, want_srv);
	T_ASSERT(strstr(s.why, srv_says));
}

int main(void)
{
	struct pi_tls_ctx *spsk, *cpsk, *cbadpsk, *cbadid, *scert, *ccert, *cwrongca, *cbadcert;
	struct pi_tls_opts o = { 0 };
	struct t_proxy_config pc;
	struct t_proxy *px;
	struct pi_conn c;
	struct srv s = { 0 };
	char why[256];
	uint8_t hello[56] = { 40, 0, 0, 0, 1 };
	int ret, fd, lfd, port;

	alarm(60);
	snprintf(dir, sizeof(dir), "/tmp/t_tls.XXXXXX");
	T_ASSERT(mkdtemp(dir));
	make_pki();
	write_file("psk", "pagein:00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff\n",
		   0600);
	write_file("psk-bad", "pagein:ff112233445566778899aabbccddeeff00112233445566778899aabbccddeeff",
		   0600);
	write_file("psk-id", "other:00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff",
		   0600);
	write_file("psk-open", "00112233445566778899aabbccddeeff", 0644);
	write_file("psk-short", "0011223344556677", 0600);

	/* credential errors are named */
	o.psk_file = path("psk-open");
	T_EQ(pi_tls_ctx_new(&o, false, &spsk, why, sizeof(why)), -EPERM);
	printf("open PSK file: %s\n", why);
	o.psk_file = path("psk-short");
	T_EQ(pi_tls_ctx_new(&o, false, &spsk, why, sizeof(why)), -EINVAL);
	o.psk_file = path("nonexistent");
	T_EQ(pi_tls_ctx_new(&o, false, &spsk, why, sizeof(why)), -ENOENT);
	o.psk_file = NULL;
	T_EQ(pi_tls_ctx_new(&o, false, &spsk, why, sizeof(why)), -EINVAL);
	o.cert_file = path("cli.pem");
	T_EQ(pi_tls_ctx_new(&o, false, &spsk, why, sizeof(why)), -EINVAL); /* no key, no CA */
	o.key_file = path("srv.key"); /* not the certificate's key */
	o.ca_file = path("ca.pem");
	T_EQ(pi_tls_ctx_new(&o, false, &spsk, why, sizeof(why)), -EBADMSG);
	printf("mismatched key: %s\n", why);

	spsk = ctx(true, "psk", NULL, NULL, NULL);
	cpsk = ctx(false, "psk", NULL, NULL, NULL);
	cbadpsk = ctx(false, "psk-bad", NULL, NULL, NULL);
	cbadid = ctx(false, "psk-id", NULL, NULL, NULL);
	scert = ctx(true, NULL, "srv.pem", "srv.key", "ca.pem");
	ccert = ctx(false, NULL, "cli.pem", "cli.key", "ca.pem");
	cwrongca = ctx(false, NULL, "cli.pem", "cli.key", "bad-ca.pem");
	cbadcert = ctx(false, NULL, "bad.pem", "bad.key", "ca.pem");

	/* the right key, the right certificates: data both ways at once */
	good_pair(spsk, cpsk, "PSK");
	good_pair(scert, ccert, "certificates");

	/* refusals, each with a reason on both ends */
	refused(spsk, cbadpsk, -EACCES, "wrong PSK", "pre-shared key");
	refused(spsk, cbadid, -EACCES, "unknown PSK identity", "pre-shared key");
	refused(scert, cbadcert, -EACCES, "client certificate from another CA", "certificate");
	/* the client trusts another CA: it refuses the server */
	srv_start(&s, scert, true);
	ret = client(&c, s.port, cwrongca, why, sizeof(why));
	pi_conn_close(&c);
	srv_join(&s);
	printf("wrong CA at the client: %s\n", why);
	T_EQ(ret, -EACCES);
	T_ASSERT(strstr(why, "certificate does not verify"));
	T_ASSERT(s.ret != 0);

	/* a plain pagein client against a TLS server: the server names it */
	srv_start(&s, spsk, true);
	fd = t_connect_loopback(s.port, 0);
	T_ASSERT(write(fd, hello, sizeof(hello)) == (ssize_t)sizeof(hello));
	srv_join(&s);
	close(fd);
	printf("plain client, TLS server: %s\n", s.why);
	T_EQ(s.ret, -EPROTO);
	T_ASSERT(s.peer_plain);
	T_ASSERT(strstr(s.why, "plain pagein"));

	/* a TLS client against a plain server: the client names it */
	srv_start(&s, NULL, false);
	ret = client(&c, s.port, cpsk, why, sizeof(why));
	pi_conn_close(&c);
	srv_join(&s);
	printf("TLS client, plain server: %s\n", why);
	T_EQ(ret, -EPROTO);
	T_ASSERT(c.peer_plain);
	T_ASSERT(strstr(why, "plain pagein"));
	T_EQ(s.ret, -EPROTO);

	/* a byte flipped in the server's stream, well after the handshake: the read fails
	 * cleanly with -EBADMSG, having delivered only authentic bytes */
	srv_start(&s, spsk, true);
	t_proxy_config_init(&pc, s.port);
	pc.mode = T_PROXY_FLIP;
	pc.flip_offset = 300000;
	T_EQ(t_proxy_start(&pc, &px), 0);
	T_EQ(client(&c, t_proxy_port(px), cpsk, why, sizeof(why)), 0);
	{
		struct reader r = { .c = &c };
		uint64_t zero = 0;

		T_EQ(pi_conn_write(&c, &zero, 8, now_ns() + 5000000000ull), 0);
		reader_main(&r);
		printf("flipped byte: read failed with %d (%s) after %llu good bytes\n", r.ret,
		       strerror(-r.ret), (unsigned long long)r.got);
		T_EQ(r.ret, -EBADMSG);
		T_ASSERT(r.got < pc.flip_offset);
	}
	pi_conn_close(&c);
	t_proxy_stop(px); /* the server's writes fail; it returns */
	srv_join(&s);

	/* an established TLS connection that goes silent: the idle limit and the stop fd end a
	 * wait, as lib/net/wire.c's loops do */
	srv_start(&s, spsk, true);
	T_EQ(client(&c, s.port, cpsk, why, sizeof(why)), 0);
	{
		int pfd[2];
		size_t got;
		uint8_t b[16];
		uint64_t t0 = now_ns();

		T_EQ(pi_conn_recv_some(&c, b, sizeof(b), 150, -1), -ETIMEDOUT);
		T_ASSERT(now_ns() - t0 >= 140000000ull);
		T_ASSERT(pipe(pfd) == 0);
		T_ASSERT(write(pfd[1], "x", 1) == 1);
		T_EQ(pi_conn_recv_full(&c, b, sizeof(b), &got, -1, 0, pfd[0]), -ESHUTDOWN);
		T_EQ(got, 0);
		T_EQ(pi_conn_recv_full(&c, b, sizeof(b), &got, -1, now_ns() + 100000000ull, -1),
		     -ETIMEDOUT);
		close(pfd[0]);
		close(pfd[1]);
	}
	pi_conn_close(&c); /* the server's read of the start offset fails; it returns */
	srv_join(&s);

	/* a server that accepts and says nothing: the handshake ends at its deadline */
	lfd = listen_any(&port);
	fd = t_connect_loopback(port, 0);
	{
		uint64_t t0 = now_ns();

		ret = pi_conn_handshake(&c, fd, cpsk, false, t0 + 300000000ull, why, sizeof(why));
		T_EQ(ret, -ETIMEDOUT);
		T_ASSERT(now_ns() - t0 < 2000000000ull);
	}
	pi_conn_close(&c);
	close(lfd);

	/* the keys the kernel would get decrypt a real record (checked here even without the
	 * kernel's `tls` module) */
	{
		struct pi_tls_ctx *sk, *ck;

		o = (struct pi_tls_opts){ .psk_file = path("psk"), .no_ktls = true,
					  .keep_secrets = true };
		T_EQ(pi_tls_ctx_new(&o, true, &sk, why, sizeof(why)), 0);
		T_EQ(pi_tls_ctx_new(&o, false, &ck, why, sizeof(why)), 0);
		srv_start_raw(&s, sk, false, true);
		T_EQ(client(&c, s.port, ck, why, sizeof(why)), 0);
		T_EQ(pi_conn_write(&c, "hello, kTLS", 11, now_ns() + 5000000000ull), 0);
		srv_join(&s);
		T_EQ(s.ret, 0);
		T_EQ(s.raw_ret, 0);
		pi_conn_close(&c);
		pi_tls_ctx_free(sk);
		pi_tls_ctx_free(ck);
	}
	/* say whether this kernel would have offloaded (the handshakes above tried) */
	lfd = listen_any(&port);
	fd = t_connect_loopback(port, 0);
	ret = setsockopt(fd, SOL_TCP, TCP_ULP, "tls", sizeof("tls"));
	printf("kernel TLS here: %s\n", ret == 0 ? "available (the handshakes above used it)"
					       : "not available (TCP_ULP tls refused: user-space TLS)");
	close(fd);
	close(lfd);

	pi_tls_ctx_free(spsk);
	pi_tls_ctx_free(cpsk);
	pi_tls_ctx_free(cbadpsk);
	pi_tls_ctx_free(cbadid);
	pi_tls_ctx_free(scert);
	pi_tls_ctx_free(ccert);
	pi_tls_ctx_free(cwrongca);
	pi_tls_ctx_free(cbadcert);
	{
		char cmd[128];

		snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
		T_EQ(system(cmd), 0);
	}
	t_pass("t_tls");
}
