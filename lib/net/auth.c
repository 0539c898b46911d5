// SPDX-License-Identifier: MIT
/*
 * auth.c - session secrets and proofs (auth.h): HMAC-SHA256 over the challenge, the session, the
 * role and the TLS channel binding; random bytes from getrandom.
 */
#include <endian.h>
#include <errno.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <string.h>
#include <sys/random.h>

#include "net/auth.h"

#define LABEL "pagein v2 join" /* 14 bytes, no terminator */

int pi_random(void *buf, size_t n)
{
	uint8_t *p = buf;
	ssize_t r;

	while (n) {
		r = getrandom(p, n, 0);
		if (r < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		p += r;
		n -= (size_t)r;
	}
	return 0;
}

void pi_session_proof(const uint8_t k[PN_SECRET], const uint8_t nonce[PN_NONCE], uint64_t session,
		      uint32_t role, const uint8_t binding[PN_BINDING], uint8_t mac[PN_MAC])
{
	uint8_t msg[sizeof(LABEL) - 1 + PN_NONCE + 8 + 4 + PN_BINDING], *p = msg;
	unsigned len = PN_MAC;
	uint64_t s = htole64(session);
	uint32_t r = htole32(role);

	memcpy(p, LABEL, sizeof(LABEL) - 1);
	p += sizeof(LABEL) - 1;
	memcpy(p, nonce, PN_NONCE);
	p += PN_NONCE;
	memcpy(p, &s, 8);
	p += 8;
	memcpy(p, &r, 4);
	p += 4;
	memcpy(p, binding, PN_BINDING);
	if (!HMAC(EVP_sha256(), k, PN_SECRET, msg, sizeof(msg), mac, &len) || len != PN_MAC)
		memset(mac, 0, PN_MAC); /* never matches a real proof: pi_random keys are not 0 */
}

bool pi_session_proof_ok(const uint8_t k[PN_SECRET], const uint8_t nonce[PN_NONCE],
			 uint64_t session, uint32_t role, const uint8_t binding[PN_BINDING],
			 const uint8_t mac[PN_MAC])
{
	uint8_t want[PN_MAC], zero[PN_MAC] = { 0 };
	bool ok;

	pi_session_proof(k, nonce, session, role, binding, want);
	ok = CRYPTO_memcmp(want, mac, PN_MAC) == 0 && CRYPTO_memcmp(want, zero, PN_MAC) != 0;
	OPENSSL_cleanse(want, sizeof(want));
	return ok;
}
