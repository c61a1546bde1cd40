/*
 * The x25519chat protocols below their handshakes (handshake.c): the two
 * Noise ciphers and the classic one, the transport packets of both
 * protocols and the order of a session's packets, the session code, key
 * text, and exact reads and writes of a file descriptor.  See
 * x25519chat(1) for the wire format.
 */

#include <sys/uio.h>

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdint.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <sodium.h>

#include "proto.h"

#define CODE_LABEL	"x25519chat/2 code"
#define CODE_ROUNDS	65536

struct proto_cipher {
	crypto_aead_aes256gcm_state st;	/* AES: k expanded (beforenm) */
	uint8_t k[PROTO_KEYBYTES];
	uint64_t n;			/* next counter */
	uint64_t sealed;		/* plaintext bytes since keyed */
	int64_t keyed_at;		/* proto_now_ms() when keyed */
	int suite;			/* PROTO_AESGCM, _CHACHAPOLY, _CLASSIC */
};

static void
store32_be(uint8_t *p, uint32_t v)
{

	p[0] = (uint8_t)(v >> 24);
	p[1] = (uint8_t)(v >> 16);
	p[2] = (uint8_t)(v >> 8);
	p[3] = (uint8_t)v;
}

static uint32_t
load32_be(const uint8_t *p)
{

	return ((uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 |
	    (uint32_t)p[2] << 8 | (uint32_t)p[3]);
}

/*
 * proto_strerror(err):
 * Return a short English description of the PROTO_E* code err.
 */
const char *
proto_strerror(int err)
{

	switch (err) {
	case 0:
		return ("success");
	case PROTO_EERRNO:
		return (strerror(errno));
	case PROTO_EEOF:
		return ("connection closed by peer");
	case PROTO_ETRUNC:
		return ("connection closed in the middle of a message");
	case PROTO_ETIMEOUT:
		return ("timed out");
	case PROTO_EBADLEN:
		return ("packet length out of bounds");
	case PROTO_EBADTAG:
		return ("authentication failed (bad tag)");
	case PROTO_EBADNONCE:
		return ("unexpected nonce (replayed, reordered or dropped packet)");
	case PROTO_EBADTYPE:
		return ("malformed packet (unknown type or body)");
	case PROTO_ELOWORDER:
		return ("peer sent a low-order public key");
	case PROTO_EBADMSG:
		return ("malformed handshake message");
	case PROTO_ENONCES:
		return ("nonce counter exhausted");
	case PROTO_EREJECT:
		return ("peer key refused");
	case PROTO_ESTATE:
		return ("protocol state error");
	case PROTO_EREFUSED:
		return ("the listener refused the connection");
	case PROTO_EBADHELLO:
		return ("malformed hello (not an x25519chat/2 peer?)");
	case PROTO_ECHOICE:
		return ("the listener chose a cipher we did not offer");
	case PROTO_EORDER:
		return ("packet out of order (protocol violation)");
	case PROTO_ECRYPTO:
		return ("the cipher failed to seal");
	default:
		return ("unknown error");
	}
}

/*
 * proto_now_ms(void):
 * Return a monotonic clock reading in milliseconds.
 */
int64_t
proto_now_ms(void)
{
	struct timespec ts;

	/* CLOCK_MONOTONIC cannot fail with a valid pointer. */
	(void)clock_gettime(CLOCK_MONOTONIC, &ts);
	return ((int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000);
}

/*
 * proto_read_full(fd, buf, len, deadline):
 * Read exactly len bytes from fd into buf, retrying after EINTR.  When
 * deadline is not 0, give up at that proto_now_ms() reading.  Return 0,
 * PROTO_EEOF if the stream ended before the first byte, PROTO_ETRUNC if it
 * ended after some, PROTO_ETIMEOUT, or PROTO_EERRNO.
 */
int
proto_read_full(int fd, void *buf, size_t len, int64_t deadline)
{
	uint8_t *p = buf;
	size_t done = 0;
	struct pollfd pfd;
	int64_t left;
	ssize_t r;
	int pr;

	while (done < len) {
		if (deadline != 0) {
			left = deadline - proto_now_ms();
			if (left <= 0)
				return (PROTO_ETIMEOUT);
			pfd.fd = fd;
			pfd.events = POLLIN;
			pr = poll(&pfd, 1, left > INT32_MAX ? INT32_MAX :
			    (int)left);
			if (pr == -1 && errno == EINTR)
				continue;
			if (pr == -1)
				return (PROTO_EERRNO);
			if (pr == 0)
				return (PROTO_ETIMEOUT);
		}
		r = read(fd, p + done, len - done);
		if (r == -1 && errno == EINTR)
			continue;
		if (r == -1)
			return (PROTO_EERRNO);
		if (r == 0)
			return (done == 0 ? PROTO_EEOF : PROTO_ETRUNC);
		done += (size_t)r;
	}
	return (0);
}

/* Wait until fd can take more; 0, or -1 with errno set. */
static int
wait_writable(int fd)
{
	struct pollfd pfd;

	pfd.fd = fd;
	pfd.events = POLLOUT;
	while (poll(&pfd, 1, -1) == -1)
		if (errno != EINTR)
			return (-1);
	return (0);
}

/*
 * proto_write_full(fd, buf, len):
 * Write all len bytes of buf to fd, retrying after EINTR and short writes,
 * and waiting if fd turns out to be non-blocking.  Return 0 or
 * PROTO_EERRNO.
 */
int
proto_write_full(int fd, const void *buf, size_t len)
{
	const uint8_t *p = buf;
	ssize_t r;

	while (len > 0) {
		r = write(fd, p, len);
		if (r == -1 && errno == EINTR)
			continue;
		/* Someone else may have made fd non-blocking: wait instead. */
		if (r == -1 && errno == EAGAIN && wait_writable(fd) == 0)
			continue;
		if (r == -1)
			return (PROTO_EERRNO);
		p += r;
		len -= (size_t)r;
	}
	return (0);
}

/*
 * proto_writev_full(fd, iov, n):
 * Write all the bytes of the n buffers of iov to fd, in order, as
 * proto_write_full() does; iov is used up in the process.  Return 0 or
 * PROTO_EERRNO.
 */
int
proto_writev_full(int fd, struct iovec *iov, int n)
{
	ssize_t w;

	while (n > 0) {
		if ((w = writev(fd, iov, n)) == -1 && errno == EINTR)
			continue;
		/* Someone else may have made fd non-blocking: wait instead. */
		if (w == -1 && errno == EAGAIN && wait_writable(fd) == 0)
			continue;
		if (w == -1)
			return (PROTO_EERRNO);
		for (; n > 0 && (size_t)w >= iov->iov_len; iov++, n--)
			w -= (ssize_t)iov->iov_len;
		if (n > 0) {
			iov->iov_base = (uint8_t *)iov->iov_base + w;
			iov->iov_len -= (size_t)w;
		}
	}
	return (0);
}

/*
 * proto_frame_write(fd, body, len):
 * Write one frame, "u32 big-endian len | body", to fd.  Return 0,
 * PROTO_EBADLEN if len does not fit in 32 bits, or PROTO_EERRNO.
 */
int
proto_frame_write(int fd, const uint8_t *body, size_t len)
{
	uint8_t prefix[PROTO_LENBYTES];
	struct iovec iov[2];

	if (len > UINT32_MAX)
		return (PROTO_EBADLEN);
	store32_be(prefix, (uint32_t)len);
	iov[0].iov_base = prefix;
	iov[0].iov_len = sizeof(prefix);
	iov[1].iov_base = (void *)(uintptr_t)body;
	iov[1].iov_len = len;
	/* One system call, and so one segment, unless the write falls short. */
	return (proto_writev_full(fd, iov, 2));
}

/*
 * proto_type_name(type):
 * Return the name of a default packet type ("DATA" ... "PING"), or
 * "unknown".
 */
const char *
proto_type_name(int type)
{
	static const char *const names[] = { "DATA", "CLOSE", "REKEY", "ACK",
	    "ERROR", "PING" };

	return (type >= 0 && type <= PROTO_PING ? names[type] : "unknown");
}

/*
 * proto_frame_read(fd, body, max, len, deadline):
 * Read one frame from fd: its u32 big-endian length, refused before
 * reading on if it exceeds max, then that many bytes into body; store the
 * length in *len.  Give up at deadline as proto_read_full() does.  Return
 * 0, PROTO_EBADLEN for a frame longer than max, PROTO_EEOF if the stream
 * ended before the frame, PROTO_ETRUNC if it ended inside it,
 * PROTO_ETIMEOUT or PROTO_EERRNO.
 */
int
proto_frame_read(int fd, uint8_t *body, size_t max, size_t *len,
    int64_t deadline)
{
	uint8_t prefix[PROTO_LENBYTES];
	uint32_t l;
	int rc;

	*len = 0;
	if ((rc = proto_read_full(fd, prefix, sizeof(prefix), deadline)) != 0)
		return (rc);
	/* The peer never sizes our reads. */
	if ((l = load32_be(prefix)) > max)
		return (PROTO_EBADLEN);
	/* A frame cut after its prefix is cut, not a clean end. */
	if ((rc = proto_read_full(fd, body, l, deadline)) == PROTO_EEOF)
		rc = PROTO_ETRUNC;
	*len = l;
	return (rc);
}

/*
 * The nonce of counter n in suite: 4 zero bytes, then n as a 64-bit
 * number, big-endian for AESGCM (Noise section 12.4), little-endian for
 * ChaChaPoly (section 12.3).
 */
static void
noise_nonce(uint8_t nonce[PROTO_NONCEBYTES], int suite, uint64_t n)
{
	int i;

	memset(nonce, 0, 4);
	for (i = 0; i < 8; i++)
		nonce[4 + i] = (uint8_t)(n >> (suite == PROTO_CHACHAPOLY ?
		    8 * i : 56 - 8 * i));
}

/*
 * One AEAD of a suite.  key is the raw key; st, if not NULL, the AES key
 * already expanded from it.  The AES calls never fail with a valid state
 * and the ChaCha20-Poly1305 ones only past their length limit, but a
 * failure is still a failure: no caller can then send what is in out.
 */
static int
aead_seal(int suite, const uint8_t *key, const crypto_aead_aes256gcm_state *st,
    const uint8_t nonce[PROTO_NONCEBYTES], const uint8_t *ad, size_t adlen,
    const uint8_t *in, size_t len, uint8_t *out, uint8_t tag[PROTO_TAGBYTES])
{
	int rc;

	if (suite == PROTO_CHACHAPOLY)
		rc = crypto_aead_chacha20poly1305_ietf_encrypt_detached(out,
		    tag, NULL, in, len, ad, adlen, NULL, nonce, key);
	else if (st != NULL)
		rc = crypto_aead_aes256gcm_encrypt_detached_afternm(out, tag,
		    NULL, in, len, ad, adlen, NULL, nonce, st);
	else
		rc = crypto_aead_aes256gcm_encrypt_detached(out, tag, NULL, in,
		    len, ad, adlen, NULL, nonce, key);
	if (rc != 0) {
		sodium_memzero(out, len);
		sodium_memzero(tag, PROTO_TAGBYTES);
		return (PROTO_ECRYPTO);
	}
	return (0);
}

/* The inverse of aead_seal(); on failure out holds no plaintext. */
static int
aead_open(int suite, const uint8_t *key, const crypto_aead_aes256gcm_state *st,
    const uint8_t nonce[PROTO_NONCEBYTES], const uint8_t *ad, size_t adlen,
    const uint8_t *in, size_t len, const uint8_t tag[PROTO_TAGBYTES],
    uint8_t *out)
{
	int rc;

	if (suite == PROTO_CHACHAPOLY)
		rc = crypto_aead_chacha20poly1305_ietf_decrypt_detached(out,
		    NULL, in, len, tag, ad, adlen, nonce, key);
	else if (st != NULL)
		rc = crypto_aead_aes256gcm_decrypt_detached_afternm(out, NULL,
		    in, len, tag, ad, adlen, nonce, st);
	else
		rc = crypto_aead_aes256gcm_decrypt_detached(out, NULL, in, len,
		    tag, ad, adlen, nonce, key);
	if (rc != 0) {
		sodium_memzero(out, len);
		return (PROTO_EBADTAG);
	}
	return (0);
}

/* A Noise suite this CPU can run: the only ones proto_aead_* take. */
static int
noise_suite(int suite)
{

	return ((suite == PROTO_AESGCM || suite == PROTO_CHACHAPOLY) &&
	    proto_suite_usable(suite));
}

/*
 * proto_aead_encrypt(suite, key, n, ad, adlen, in, len, out):
 * Noise's ENCRYPT(k, n, ad, plaintext) in suite (PROTO_AESGCM or
 * PROTO_CHACHAPOLY): write the len-byte ciphertext of in, then the 16-byte
 * tag, to out.  Return 0; PROTO_ESTATE for another suite, or AESGCM
 * without hardware AES, with nothing written; or PROTO_ECRYPTO with out
 * wiped.
 */
int
proto_aead_encrypt(int suite, const uint8_t key[PROTO_KEYBYTES], uint64_t n,
    const uint8_t *ad, size_t adlen, const uint8_t *in, size_t len,
    uint8_t *out)
{
	uint8_t nonce[PROTO_NONCEBYTES];

	if (!noise_suite(suite))
		return (PROTO_ESTATE);
	noise_nonce(nonce, suite, n);
	return (aead_seal(suite, key, NULL, nonce, ad, adlen, in, len, out,
	    out + len));
}

/*
 * proto_aead_decrypt(suite, key, n, ad, adlen, in, len, out):
 * Noise's DECRYPT(k, n, ad, ciphertext): in is len >= 16 bytes, the
 * ciphertext and its tag; write the len - 16 bytes of plaintext to out.
 * Return 0; PROTO_ESTATE as proto_aead_encrypt() does; PROTO_EBADMSG if
 * len < 16; or PROTO_EBADTAG with out wiped.
 */
int
proto_aead_decrypt(int suite, const uint8_t key[PROTO_KEYBYTES], uint64_t n,
    const uint8_t *ad, size_t adlen, const uint8_t *in, size_t len,
    uint8_t *out)
{
	uint8_t nonce[PROTO_NONCEBYTES];

	if (!noise_suite(suite))
		return (PROTO_ESTATE);
	if (len < PROTO_TAGBYTES)
		return (PROTO_EBADMSG);
	noise_nonce(nonce, suite, n);
	return (aead_open(suite, key, NULL, nonce, ad, adlen, in,
	    len - PROTO_TAGBYTES, in + len - PROTO_TAGBYTES, out));
}

/*
 * proto_key_encode(out, key):
 * Write the 32-byte key as 44 characters of standard base64 and a NUL.
 */
void
proto_key_encode(char out[PROTO_B64LEN + 1],
    const uint8_t key[PROTO_KEYBYTES])
{

	sodium_bin2base64(out, PROTO_B64LEN + 1, key, PROTO_KEYBYTES,
	    sodium_base64_VARIANT_ORIGINAL);
}

/*
 * proto_key_decode(key, text, len):
 * Parse exactly len bytes of text as one key in base64 (44 characters,
 * standard alphabet, '=' padding, no other bytes).  Return 0 or -1.
 */
int
proto_key_decode(uint8_t key[PROTO_KEYBYTES], const char *text, size_t len)
{
	uint8_t tmp[PROTO_KEYBYTES];
	const char *end;
	size_t binlen, i;

	/*
	 * 43 characters of the standard alphabet, then '='.  The alphabet is
	 * checked here because libsodium 1.0.18 reads bytes above 0x7f as
	 * '/'.  libsodium rejects nonzero bits after the last full byte, so
	 * every key has exactly one text form.
	 */
	if (len != PROTO_B64LEN || text[len - 1] != '=')
		return (-1);
	for (i = 0; i < len - 1; i++)
		if (!((text[i] >= 'A' && text[i] <= 'Z') ||
		    (text[i] >= 'a' && text[i] <= 'z') ||
		    (text[i] >= '0' && text[i] <= '9') ||
		    text[i] == '+' || text[i] == '/'))
			return (-1);
	if (sodium_base642bin(tmp, sizeof(tmp), text, len, NULL, &binlen,
	    &end, sodium_base64_VARIANT_ORIGINAL) != 0 ||
	    binlen != sizeof(tmp) || end != text + len) {
		sodium_memzero(tmp, sizeof(tmp));
		return (-1);
	}
	memcpy(key, tmp, sizeof(tmp));
	sodium_memzero(tmp, sizeof(tmp));
	return (0);
}

/*
 * proto_keyfile_parse(key, text, len):
 * Parse the contents of a key file: one base64 key as proto_key_decode()
 * reads it, optionally followed by one newline.  Return 0 or -1.
 */
int
proto_keyfile_parse(uint8_t key[PROTO_KEYBYTES], const char *text,
    size_t len)
{

	if (len == PROTO_B64LEN + 1 && text[PROTO_B64LEN] == '\n')
		len--;
	return (proto_key_decode(key, text, len));
}

/*
 * proto_keypair_new(priv, pub):
 * Generate a fresh X25519 private key, clamped as WireGuard clamps it, and
 * its public key.
 */
void
proto_keypair_new(uint8_t priv[PROTO_KEYBYTES], uint8_t pub[PROTO_KEYBYTES])
{

	randombytes_buf(priv, PROTO_KEYBYTES);
	priv[0] &= 248;
	priv[31] &= 127;
	priv[31] |= 64;
	/* Cannot fail: the base point is not low-order. */
	(void)crypto_scalarmult_base(pub, priv);
}

/*
 * proto_session_code(out, h2):
 * Write the session code of a handshake whose hash after message 2 is h2:
 * t = SHA-512("x25519chat/2 code" || h2), then 65536 times
 * t = SHA-512(t || h2); the code is t[0..8) in lowercase hex grouped
 * "xxxx-xxxx-xxxx-xxxx", and a NUL.
 */
void
proto_session_code(char out[PROTO_CODELEN + 1],
    const uint8_t h2[PROTO_KEYBYTES])
{
	crypto_hash_sha512_state st;
	uint8_t t[crypto_hash_sha512_BYTES];
	char hex[17];
	int i;

	/* Each round costs a man in the middle the same as us: grinding a
	 * code he can steer (the connector's side only) takes 2^16 times
	 * longer per try. */
	crypto_hash_sha512_init(&st);
	crypto_hash_sha512_update(&st, (const uint8_t *)CODE_LABEL,
	    strlen(CODE_LABEL));
	crypto_hash_sha512_update(&st, h2, PROTO_KEYBYTES);
	crypto_hash_sha512_final(&st, t);
	for (i = 0; i < CODE_ROUNDS; i++) {
		crypto_hash_sha512_init(&st);
		crypto_hash_sha512_update(&st, t, sizeof(t));
		crypto_hash_sha512_update(&st, h2, PROTO_KEYBYTES);
		crypto_hash_sha512_final(&st, t);
	}
	sodium_bin2hex(hex, sizeof(hex), t, 8);
	for (i = 0; i < 4; i++) {
		memcpy(out + 5 * i, hex + 4 * i, 4);
		out[5 * i + 4] = i < 3 ? '-' : '\0';
	}
	sodium_memzero(&st, sizeof(st));
	sodium_memzero(t, sizeof(t));
}

/*
 * proto_suites_available(void):
 * Return the PROTO_OFFER_* bits of the suites this CPU can run: ChaChaPoly
 * always, AESGCM only with hardware AES.
 */
int
proto_suites_available(void)
{

	return (PROTO_OFFER_CHACHAPOLY |
	    (crypto_aead_aes256gcm_is_available() ? PROTO_OFFER_AESGCM : 0));
}

/*
 * proto_suite_name(suite):
 * Return the Noise name of PROTO_AESGCM or PROTO_CHACHAPOLY ("AESGCM",
 * "ChaChaPoly"), or "classic AES-256-GCM" for PROTO_CLASSIC.
 */
const char *
proto_suite_name(int suite)
{

	switch (suite) {
	case PROTO_AESGCM:
		return ("AESGCM");
	case PROTO_CHACHAPOLY:
		return ("ChaChaPoly");
	case PROTO_CLASSIC:
		return ("classic AES-256-GCM");
	default:
		return ("unknown");
	}
}

/* Transport. */

static void
cipher_key(struct proto_cipher *c, const uint8_t key[PROTO_KEYBYTES])
{

	memcpy(c->k, key, PROTO_KEYBYTES);
	if (c->suite != PROTO_CHACHAPOLY)
		crypto_aead_aes256gcm_beforenm(&c->st, c->k);
	c->sealed = 0;
	c->keyed_at = proto_now_ms();
}

/* The AES-expanded key of c, for the AES suites; NULL for ChaChaPoly. */
static const crypto_aead_aes256gcm_state *
cipher_st(const struct proto_cipher *c)
{

	return (c->suite == PROTO_CHACHAPOLY ? NULL : &c->st);
}

/*
 * proto_suite_usable(suite):
 * Return 1 if suite is PROTO_AESGCM, PROTO_CHACHAPOLY or PROTO_CLASSIC and
 * this CPU can run it; else 0 with errno set (EINVAL for an unknown suite,
 * ENOTSUP for AES without hardware AES).
 */
int
proto_suite_usable(int suite)
{

	if (suite == PROTO_CHACHAPOLY)
		return (1);
	if (suite != PROTO_AESGCM && suite != PROTO_CLASSIC) {
		errno = EINVAL;
		return (0);
	}
	/* libsodium's AES-GCM would fault without hardware AES. */
	if (!crypto_aead_aes256gcm_is_available()) {
		errno = ENOTSUP;
		return (0);
	}
	return (1);
}

/*
 * proto_cipher_new(key, suite):
 * Return a cipher state for one direction keyed with key, or NULL with
 * errno set (EINVAL for an unknown suite, ENOTSUP for an AES one on a CPU
 * without hardware AES).  suite is PROTO_AESGCM or PROTO_CHACHAPOLY,
 * whose nonces count 0, 1, 2, ... and whose receiver accepts only the
 * next one; or
 * PROTO_CLASSIC, whose packets carry random nonces and where nothing is
 * checked but the tag.
 */
struct proto_cipher *
proto_cipher_new(const uint8_t key[PROTO_KEYBYTES], int suite)
{
	struct proto_cipher *c;

	if (!proto_suite_usable(suite))
		return (NULL);
	if ((c = sodium_malloc(sizeof(*c))) == NULL)
		return (NULL);
	memset(c, 0, sizeof(*c));
	c->suite = suite;
	cipher_key(c, key);
	return (c);
}

/*
 * proto_cipher_free(c):
 * Wipe and free c.  Does nothing if c is NULL.
 */
void
proto_cipher_free(struct proto_cipher *c)
{

	/* sodium_free() wipes the whole allocation. */
	sodium_free(c);
}

/*
 * proto_cipher_nonce(c):
 * Return the counter of the next packet c seals or opens.
 */
uint64_t
proto_cipher_nonce(const struct proto_cipher *c)
{

	return (c->n);
}

/*
 * proto_cipher_rekey(c):
 * Apply Noise Rekey() to c: k = first 32 bytes of ENCRYPT(k, 2^64-1, empty
 * ad, 32 zero bytes) with c's suite; the counter continues.  Return 0, or
 * PROTO_ECRYPTO with c unchanged.
 */
int
proto_cipher_rekey(struct proto_cipher *c)
{
	uint8_t zeros[PROTO_KEYBYTES] = {0};
	uint8_t nk[PROTO_KEYBYTES];
	uint8_t tag[PROTO_TAGBYTES];
	uint8_t nonce[PROTO_NONCEBYTES];
	int rc;

	noise_nonce(nonce, c->suite, UINT64_MAX);
	if ((rc = aead_seal(c->suite, c->k, cipher_st(c), nonce, NULL, 0,
	    zeros, sizeof(zeros), nk, tag)) == 0)
		cipher_key(c, nk);
	sodium_memzero(nk, sizeof(nk));
	sodium_memzero(tag, sizeof(tag));
	return (rc);
}

/*
 * proto_cipher_rekey_due(c, now):
 * Return nonzero if c has sealed PROTO_REKEY_BYTES of plaintext, or
 * PROTO_REKEY_MS have passed, since it was keyed or last rekeyed.
 */
int
proto_cipher_rekey_due(const struct proto_cipher *c, int64_t now)
{

	return (c->sealed >= PROTO_REKEY_BYTES ||
	    now - c->keyed_at >= PROTO_REKEY_MS);
}

/*
 * proto_seal(c, pkt, ptlen):
 * pkt holds PROTO_HDRBYTES of room followed by ptlen <= PROTO_MAXPLAIN
 * bytes of plaintext (at least 1, its type byte, unless classic).  Fill in
 * the length prefix, nonce and tag, and encrypt the plaintext in place:
 * pkt then holds the whole packet, PROTO_HDRBYTES + ptlen bytes.  Return 0
 * or a PROTO_E* code.
 */
int
proto_seal(struct proto_cipher *c, uint8_t *pkt, size_t ptlen)
{
	uint8_t *nonce = pkt + PROTO_LENBYTES;
	uint8_t *tag = nonce + PROTO_NONCEBYTES;
	uint8_t *body = pkt + PROTO_HDRBYTES;
	int classic = c->suite == PROTO_CLASSIC, rc;

	/* A default packet always holds at least its type byte. */
	if (ptlen > PROTO_MAXPLAIN || (ptlen == 0 && !classic))
		return (PROTO_EBADLEN);
	/*
	 * Counter nonces stop short of 2^64-1, which Rekey() uses.  Random
	 * 96-bit nonces are safe for 2^32 packets under one key (NIST SP
	 * 800-38D); classic has no rekeying and both directions share its
	 * key, so each direction stops at 2^31.
	 */
	if (c->n == (classic ? (uint64_t)1 << 31 : UINT64_MAX))
		return (PROTO_ENONCES);
	store32_be(pkt, (uint32_t)(PROTO_NONCEBYTES + PROTO_TAGBYTES + ptlen));
	if (classic)
		randombytes_buf(nonce, PROTO_NONCEBYTES);
	else
		noise_nonce(nonce, c->suite, c->n);
	/* On failure the plaintext is wiped: nothing can go out in clear. */
	if ((rc = aead_seal(c->suite, c->k, cipher_st(c), nonce, NULL, 0, body,
	    ptlen, body, tag)) != 0)
		return (rc);
	c->n++;
	c->sealed += ptlen;
	return (0);
}

/*
 * proto_open_len(c, prefix, len):
 * Check the 4-byte length prefix of a packet for c and store in *len the
 * number of bytes that follow it.  Return 0 or PROTO_EBADLEN.
 */
int
proto_open_len(const struct proto_cipher *c,
    const uint8_t prefix[PROTO_LENBYTES], size_t *len)
{
	uint32_t l = load32_be(prefix);
	/* Default packets always carry a type byte. */
	uint32_t min = PROTO_NONCEBYTES + PROTO_TAGBYTES +
	    (c->suite == PROTO_CLASSIC ? 0 : 1);

	if (l < min || l > PROTO_NONCEBYTES + PROTO_TAGBYTES + PROTO_MAXPLAIN)
		return (PROTO_EBADLEN);
	*len = l;
	return (0);
}

/*
 * proto_open(c, pkt, pktlen, ptlen):
 * pkt holds one whole packet of pktlen bytes, prefix included.  Check its
 * length and (unless classic) that its nonce is c's next counter, then
 * verify and decrypt it in place.  On success the plaintext is the *ptlen
 * bytes at pkt + PROTO_HDRBYTES and the counter has advanced.  On failure
 * return a PROTO_E* code and no plaintext is left in pkt.
 */
int
proto_open(struct proto_cipher *c, uint8_t *pkt, size_t pktlen,
    size_t *ptlen)
{
	uint8_t *nonce = pkt + PROTO_LENBYTES;
	uint8_t *tag = nonce + PROTO_NONCEBYTES;
	uint8_t *body = pkt + PROTO_HDRBYTES;
	uint8_t want[PROTO_NONCEBYTES];
	size_t len, clen;
	int rc;

	if (pktlen < PROTO_LENBYTES)
		return (PROTO_EBADLEN);
	if ((rc = proto_open_len(c, pkt, &len)) != 0)
		return (rc);
	if (len != pktlen - PROTO_LENBYTES)
		return (PROTO_EBADLEN);
	clen = pktlen - PROTO_HDRBYTES;
	if (c->suite != PROTO_CLASSIC) {
		if (c->n == UINT64_MAX)
			return (PROTO_ENONCES);
		noise_nonce(want, c->suite, c->n);
		if (memcmp(nonce, want, sizeof(want)) != 0)
			return (PROTO_EBADNONCE);
	}
	if ((rc = aead_open(c->suite, c->k, cipher_st(c), nonce, NULL, 0, body,
	    clen, tag, body)) != 0)
		return (rc);
	c->n++;
	*ptlen = clen;
	return (0);
}

/*
 * proto_body_check(type, bodylen):
 * Check a default packet's type and the length of the body after it:
 * DATA any, CLOSE, REKEY, ACK and PING empty, ERROR 1 to PROTO_ERRORMAX
 * bytes.  Return 0, or PROTO_EBADTYPE for an unknown type or a body of the
 * wrong length.
 */
int
proto_body_check(int type, size_t bodylen)
{

	switch (type) {
	case PROTO_DATA:
		return (0);
	case PROTO_CLOSE:
	case PROTO_REKEY:
	case PROTO_ACK:
	case PROTO_PING:
		return (bodylen == 0 ? 0 : PROTO_EBADTYPE);
	case PROTO_ERROR:
		return (bodylen >= 1 && bodylen <= PROTO_ERRORMAX ? 0 :
		    PROTO_EBADTYPE);
	default:
		return (PROTO_EBADTYPE);
	}
}

/*
 * proto_ends_recv(e, type, bodylen, why):
 * Check that a packet of type with a body of bodylen bytes may arrive now
 * and record it.  Return 0; or PROTO_EBADTYPE or PROTO_EORDER with *why
 * naming the fault ("DATA after CLOSE"), e unchanged.
 */
int
proto_ends_recv(struct proto_ends *e, int type, size_t bodylen,
    const char **why)
{

	*why = NULL;
	if (proto_body_check(type, bodylen) != 0) {
		*why = type < 0 || type > PROTO_PING ? "unknown packet type" :
		    type == PROTO_ERROR ? "ERROR with an empty or too long "
		    "reason" : "a body on a packet that takes none";
		return (PROTO_EBADTYPE);
	}
	/* The listener's first packet says whether it accepted us. */
	if (e->initiator && !e->got_any && type != PROTO_ERROR &&
	    (type != PROTO_DATA || bodylen != 0))
		*why = "the listener's first packet is neither an empty DATA "
		    "nor an ERROR";
	else if (type == PROTO_DATA && e->got_close)
		*why = "DATA after CLOSE";
	else if (type == PROTO_CLOSE && e->got_close)
		*why = "a second CLOSE";
	else if (type == PROTO_ACK && !e->sent_close)
		*why = "ACK before our CLOSE";
	else if (type == PROTO_ACK && e->got_ack)
		*why = "a second ACK";
	if (*why != NULL)
		return (PROTO_EORDER);
	e->got_any = 1;
	if (type == PROTO_CLOSE)
		e->got_close = 1;
	else if (type == PROTO_ACK)
		e->got_ack = 1;
	return (0);
}

/*
 * proto_ends_send(e, type):
 * Check that we may send a packet of type now, and record it.  Return 0,
 * or PROTO_ESTATE with e unchanged.
 */
int
proto_ends_send(struct proto_ends *e, int type)
{

	if ((type == PROTO_DATA || type == PROTO_CLOSE) && e->sent_close)
		return (PROTO_ESTATE);
	if (type == PROTO_ACK && (!e->got_close || e->sent_ack))
		return (PROTO_ESTATE);
	if (type == PROTO_CLOSE)
		e->sent_close = 1;
	else if (type == PROTO_ACK)
		e->sent_ack = 1;
	return (0);
}

/*
 * proto_ends_done(e):
 * Return nonzero once both directions have ended cleanly: we sent CLOSE
 * and got its ACK, and we got the peer's CLOSE and sent its ACK.
 */
int
proto_ends_done(const struct proto_ends *e)
{

	return (e->sent_close && e->got_ack && e->got_close && e->sent_ack);
}

