/* SPDX-License-Identifier: MIT */
/*
 * auth.h - session secrets and the PROOF of protocol version 2 (docs/protocol.md): a destination
 * joins or resumes a session by answering the server's CHALLENGE with an HMAC under the session
 * secret, bound to the connection's TLS channel, so a session id alone is worth nothing.
 * Pure functions over OpenSSL's HMAC; any thread.
 */
#ifndef PAGEIN_NET_AUTH_H
#define PAGEIN_NET_AUTH_H

#include <stdbool.h>
#include <stdint.h>

#define PN_SECRET 32     /* session secret K, in WELCOME */
#define PN_NONCE 32      /* CHALLENGE */
#define PN_MAC 32        /* PROOF */
#define PN_BINDING 32    /* TLS exporter bytes, or zeros on plain TCP */

/* Fill buf with n bytes from the kernel's random source. Returns 0 or -errno. */
int pi_random(void *buf, size_t n);

/* mac = HMAC-SHA256(K, "pagein v2 join" || nonce || le64(session) || le32(role) || binding). */
void pi_session_proof(const uint8_t k[PN_SECRET], const uint8_t nonce[PN_NONCE], uint64_t session,
		      uint32_t role, const uint8_t binding[PN_BINDING], uint8_t mac[PN_MAC]);

/* Does mac prove K for this challenge? Compares in constant time. */
bool pi_session_proof_ok(const uint8_t k[PN_SECRET], const uint8_t nonce[PN_NONCE],
			 uint64_t session, uint32_t role, const uint8_t binding[PN_BINDING],
			 const uint8_t mac[PN_MAC]);

#endif
