/*
 * HKDF-SHA256 (RFC 5869) for libsodium releases that lack it (before
 * 1.0.19), with the upstream names and prototypes, built on libsodium's
 * HMAC-SHA256.  With a newer libsodium this file compiles to nothing.
 */

#include <errno.h>
#include <string.h>

#include <sodium.h>

#ifndef crypto_kdf_hkdf_sha256_KEYBYTES

#include "proto.h"

int
crypto_kdf_hkdf_sha256_extract(
    unsigned char prk[crypto_kdf_hkdf_sha256_KEYBYTES],
    const unsigned char *salt, size_t salt_len,
    const unsigned char *ikm, size_t ikm_len)
{
	static const unsigned char zeros[crypto_kdf_hkdf_sha256_KEYBYTES];
	crypto_auth_hmacsha256_state st;

	/* An absent salt is HashLen zero bytes (RFC 5869, section 2.2). */
	if (salt == NULL) {
		salt = zeros;
		salt_len = sizeof(zeros);
	}
	crypto_auth_hmacsha256_init(&st, salt, salt_len);
	crypto_auth_hmacsha256_update(&st, ikm, ikm_len);
	crypto_auth_hmacsha256_final(&st, prk);
	sodium_memzero(&st, sizeof(st));

	return (0);
}

int
crypto_kdf_hkdf_sha256_expand(unsigned char *out, size_t out_len,
    const char *ctx, size_t ctx_len,
    const unsigned char prk[crypto_kdf_hkdf_sha256_KEYBYTES])
{
	crypto_auth_hmacsha256_state st;
	unsigned char t[crypto_auth_hmacsha256_BYTES];
	unsigned char counter;
	size_t done, n;

	if (out_len > crypto_kdf_hkdf_sha256_BYTES_MAX) {
		errno = EINVAL;
		return (-1);
	}

	/* T(i) = HMAC(PRK, T(i-1) | info | i), T(0) empty. */
	for (done = 0, counter = 1; done < out_len; done += n, counter++) {
		crypto_auth_hmacsha256_init(&st, prk,
		    crypto_kdf_hkdf_sha256_KEYBYTES);
		if (done > 0)
			crypto_auth_hmacsha256_update(&st, t, sizeof(t));
		crypto_auth_hmacsha256_update(&st,
		    (const unsigned char *)ctx, ctx_len);
		crypto_auth_hmacsha256_update(&st, &counter, 1);
		crypto_auth_hmacsha256_final(&st, t);
		n = out_len - done;
		if (n > sizeof(t))
			n = sizeof(t);
		memcpy(out + done, t, n);
	}
	sodium_memzero(&st, sizeof(st));
	sodium_memzero(t, sizeof(t));

	return (0);
}

#endif /* !crypto_kdf_hkdf_sha256_KEYBYTES */
