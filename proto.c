/*
 * The x25519chat protocols: the classic X25519-TCP-Chat exchange and the
 * default Noise_XX_25519_AESGCM_SHA256 handshake (Noise revision 34), the
 * transport packets both share, and key text.  See x25519chat(1) for the
 * wire format.
 */

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdint.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <sodium.h>

#include "proto.h"

#define NOISE_XX	"Noise_XX_25519_AESGCM_SHA256"
#define NOISE_XXPSK3	"Noise_XXpsk3_25519_AESGCM_SHA256"
#define CLASSIC_INFO	"handshake data"

/* Size of each x25519chat/1 handshake message with an empty payload. */
#define MSG1_BASE	PROTO_KEYBYTES
#define MSG2_BASE	(2 * PROTO_KEYBYTES + 2 * PROTO_TAGBYTES)
#define MSG3_BASE	(PROTO_KEYBYTES + 2 * PROTO_TAGBYTES)

struct proto_cipher {
	crypto_aead_aes256gcm_state st;	/* k expanded (beforenm) */
	uint8_t k[PROTO_KEYBYTES];
	uint64_t n;			/* next counter */
	uint64_t sealed;		/* plaintext bytes since keyed */
	int64_t keyed_at;		/* proto_now_ms() when keyed */
	int classic;
};

struct proto_hs {
	int initiator;
	int classic;
	int has_psk;
	int step;		/* handshake messages done so far */
	int failed;
	int split;
	/* Noise SymmetricState. */
	uint8_t ck[PROTO_KEYBYTES];
	uint8_t h[PROTO_KEYBYTES];
	uint8_t k[PROTO_KEYBYTES];
	int has_k;
	uint64_t n;
	/* Keys: ours (s, e) and the peer's (rs, re). */
	uint8_t s[PROTO_KEYBYTES], spub[PROTO_KEYBYTES];
	uint8_t e[PROTO_KEYBYTES], epub[PROTO_KEYBYTES];
	uint8_t rs[PROTO_KEYBYTES], re[PROTO_KEYBYTES];
	int has_rs;
	uint8_t psk[PROTO_KEYBYTES];
	uint8_t fixed_e[PROTO_KEYBYTES];
	int has_fixed_e;
	/* Classic: the X25519 shared secret and the derived key. */
	uint8_t secret[PROTO_KEYBYTES];
	uint8_t key[PROTO_KEYBYTES];
	proto_trace_fn *trace;
	void *trace_arg;
};

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

/* The Noise AESGCM nonce: 4 zero bytes, then n as 64-bit big-endian. */
static void
noise_nonce(uint8_t nonce[PROTO_NONCEBYTES], uint64_t n)
{
	int i;

	memset(nonce, 0, 4);
	for (i = 0; i < 8; i++)
		nonce[4 + i] = (uint8_t)(n >> (56 - 8 * i));
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
 * proto_session_code(out, hash):
 * Write the session code of a handshake hash: its first 6 bytes in
 * lowercase hex grouped "xxxx-xxxx-xxxx", and a NUL.
 */
void
proto_session_code(char out[PROTO_CODELEN + 1],
    const uint8_t hash[PROTO_KEYBYTES])
{
	char hex[13];

	sodium_bin2hex(hex, sizeof(hex), hash, 6);
	memcpy(out, hex, 4);
	out[4] = '-';
	memcpy(out + 5, hex + 4, 4);
	out[9] = '-';
	memcpy(out + 10, hex + 8, 4);
	out[14] = '\0';
}

/* Transport. */

static void
cipher_key(struct proto_cipher *c, const uint8_t key[PROTO_KEYBYTES])
{

	memcpy(c->k, key, PROTO_KEYBYTES);
	crypto_aead_aes256gcm_beforenm(&c->st, c->k);
	c->sealed = 0;
	c->keyed_at = proto_now_ms();
}

/*
 * proto_cipher_new(key, classic):
 * Return a cipher state for one direction keyed with key, or NULL with
 * errno set.  With classic, packets carry random nonces and nothing is
 * checked but the tag; otherwise nonces count 0, 1, 2, ... and the
 * receiver accepts only the next one.
 */
struct proto_cipher *
proto_cipher_new(const uint8_t key[PROTO_KEYBYTES], int classic)
{
	struct proto_cipher *c;

	if ((c = sodium_malloc(sizeof(*c))) == NULL)
		return (NULL);
	memset(c, 0, sizeof(*c));
	c->classic = classic;
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
 * ad, 32 zero bytes); the counter continues.  Return 0 or PROTO_EERRNO.
 */
int
proto_cipher_rekey(struct proto_cipher *c)
{
	uint8_t zeros[PROTO_KEYBYTES] = {0};
	uint8_t nk[PROTO_KEYBYTES];
	uint8_t tag[PROTO_TAGBYTES];
	uint8_t nonce[PROTO_NONCEBYTES];

	noise_nonce(nonce, UINT64_MAX);
	crypto_aead_aes256gcm_encrypt_detached_afternm(nk, tag, NULL, zeros,
	    sizeof(zeros), NULL, 0, NULL, nonce, &c->st);
	cipher_key(c, nk);
	sodium_memzero(nk, sizeof(nk));
	sodium_memzero(tag, sizeof(tag));
	return (0);
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

	/* A default packet always holds at least its type byte. */
	if (ptlen > PROTO_MAXPLAIN || (ptlen == 0 && !c->classic))
		return (PROTO_EBADLEN);
	/*
	 * Counter nonces stop short of 2^64-1, which Rekey() uses.  Random
	 * 96-bit nonces are safe for 2^32 packets under one key (NIST SP
	 * 800-38D); classic has no rekeying and both directions share its
	 * key, so each direction stops at 2^31.
	 */
	if (c->n == (c->classic ? (uint64_t)1 << 31 : UINT64_MAX))
		return (PROTO_ENONCES);
	store32_be(pkt, (uint32_t)(PROTO_NONCEBYTES + PROTO_TAGBYTES + ptlen));
	if (c->classic)
		randombytes_buf(nonce, PROTO_NONCEBYTES);
	else
		noise_nonce(nonce, c->n);
	crypto_aead_aes256gcm_encrypt_detached_afternm(body, tag, NULL, body,
	    ptlen, NULL, 0, NULL, nonce, &c->st);
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
	uint32_t min = PROTO_NONCEBYTES + PROTO_TAGBYTES + (c->classic ? 0 : 1);

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
	if (!c->classic) {
		if (c->n == UINT64_MAX)
			return (PROTO_ENONCES);
		noise_nonce(want, c->n);
		if (memcmp(nonce, want, sizeof(want)) != 0)
			return (PROTO_EBADNONCE);
	}
	if (crypto_aead_aes256gcm_decrypt_detached_afternm(body, NULL, body,
	    clen, tag, NULL, 0, nonce, &c->st) != 0) {
		sodium_memzero(body, clen);
		return (PROTO_EBADTAG);
	}
	c->n++;
	*ptlen = clen;
	return (0);
}

/* Handshakes. */

static void
trace(struct proto_hs *hs, const char *what, const uint8_t *buf, size_t len)
{

	if (hs->trace != NULL)
		hs->trace(hs->trace_arg, what, buf, len);
}

static int
dh(uint8_t out[PROTO_KEYBYTES],
    const uint8_t priv[PROTO_KEYBYTES], const uint8_t pub[PROTO_KEYBYTES])
{

	/* libsodium refuses (-1) when the result is all zero, which is what
	 * a low-order or zero public key yields. */
	if (crypto_scalarmult(out, priv, pub) != 0) {
		sodium_memzero(out, PROTO_KEYBYTES);
		return (PROTO_ELOWORDER);
	}
	return (0);
}

static void
mix_hash(struct proto_hs *hs, const uint8_t *data, size_t len)
{
	crypto_hash_sha256_state st;

	crypto_hash_sha256_init(&st);
	crypto_hash_sha256_update(&st, hs->h, sizeof(hs->h));
	crypto_hash_sha256_update(&st, data, len);
	crypto_hash_sha256_final(&st, hs->h);
	trace(hs, "h", hs->h, sizeof(hs->h));
}

/*
 * Noise's HKDF(ck, ikm, n) is RFC 5869 HKDF with ck as salt and empty
 * info, taking n * 32 bytes of output.
 */
static void
noise_hkdf(const uint8_t ck[PROTO_KEYBYTES], const uint8_t *ikm,
    size_t ikmlen, uint8_t *out, size_t outlen)
{
	uint8_t prk[crypto_kdf_hkdf_sha256_KEYBYTES];

	crypto_kdf_hkdf_sha256_extract(prk, ck, PROTO_KEYBYTES, ikm, ikmlen);
	crypto_kdf_hkdf_sha256_expand(out, outlen, NULL, 0, prk);
	sodium_memzero(prk, sizeof(prk));
}

static void
mix_key(struct proto_hs *hs, const uint8_t *ikm, size_t len)
{
	uint8_t out[2 * PROTO_KEYBYTES];

	noise_hkdf(hs->ck, ikm, len, out, sizeof(out));
	memcpy(hs->ck, out, PROTO_KEYBYTES);
	memcpy(hs->k, out + PROTO_KEYBYTES, PROTO_KEYBYTES);
	hs->has_k = 1;
	hs->n = 0;
	sodium_memzero(out, sizeof(out));
	trace(hs, "ck", hs->ck, sizeof(hs->ck));
	trace(hs, "k", hs->k, sizeof(hs->k));
}

static void
mix_key_and_hash(struct proto_hs *hs, const uint8_t *ikm, size_t len)
{
	uint8_t out[3 * PROTO_KEYBYTES];

	noise_hkdf(hs->ck, ikm, len, out, sizeof(out));
	memcpy(hs->ck, out, PROTO_KEYBYTES);
	trace(hs, "ck", hs->ck, sizeof(hs->ck));
	mix_hash(hs, out + PROTO_KEYBYTES, PROTO_KEYBYTES);
	memcpy(hs->k, out + 2 * PROTO_KEYBYTES, PROTO_KEYBYTES);
	hs->has_k = 1;
	hs->n = 0;
	sodium_memzero(out, sizeof(out));
	trace(hs, "k", hs->k, sizeof(hs->k));
}

/* EncryptAndHash: out receives len (+ 16 once keyed) bytes. */
static int
encrypt_and_hash(struct proto_hs *hs, const uint8_t *in, size_t len,
    uint8_t *out, size_t *outlen)
{
	uint8_t nonce[PROTO_NONCEBYTES];
	unsigned long long clen;

	if (!hs->has_k) {
		memmove(out, in, len);
		*outlen = len;
	} else {
		if (hs->n == UINT64_MAX)
			return (PROTO_ENONCES);
		noise_nonce(nonce, hs->n++);
		crypto_aead_aes256gcm_encrypt(out, &clen, in, len, hs->h,
		    sizeof(hs->h), NULL, nonce, hs->k);
		*outlen = (size_t)clen;
	}
	mix_hash(hs, out, *outlen);
	return (0);
}

/* DecryptAndHash: out receives len (- 16 once keyed) bytes. */
static int
decrypt_and_hash(struct proto_hs *hs, const uint8_t *in, size_t len,
    uint8_t *out, size_t *outlen)
{
	uint8_t nonce[PROTO_NONCEBYTES];
	unsigned long long mlen;

	if (!hs->has_k) {
		memmove(out, in, len);
		*outlen = len;
	} else {
		if (len < PROTO_TAGBYTES)
			return (PROTO_EBADMSG);
		if (hs->n == UINT64_MAX)
			return (PROTO_ENONCES);
		noise_nonce(nonce, hs->n++);
		if (crypto_aead_aes256gcm_decrypt(out, &mlen, NULL, in, len,
		    hs->h, sizeof(hs->h), nonce, hs->k) != 0)
			return (PROTO_EBADTAG);
		*outlen = (size_t)mlen;
	}
	mix_hash(hs, in, len);
	return (0);
}

/*
 * proto_hs_new(p):
 * Start a handshake with the parameters p (copied).  Return NULL with errno
 * set on failure.
 */
struct proto_hs *
proto_hs_new(const struct proto_hs_params *p)
{
	struct proto_hs *hs;
	const char *name;
	const uint8_t *prologue;
	size_t prologuelen;

	if ((hs = sodium_malloc(sizeof(*hs))) == NULL)
		return (NULL);
	memset(hs, 0, sizeof(*hs));
	hs->initiator = p->initiator;
	hs->classic = p->classic;
	hs->trace = p->trace;
	hs->trace_arg = p->trace_arg;
	if (p->e != NULL) {
		memcpy(hs->fixed_e, p->e, PROTO_KEYBYTES);
		hs->has_fixed_e = 1;
	}
	if (hs->classic)
		return (hs);

	if (p->s == NULL) {
		sodium_free(hs);
		errno = EINVAL;
		return (NULL);
	}
	memcpy(hs->s, p->s, PROTO_KEYBYTES);
	(void)crypto_scalarmult_base(hs->spub, hs->s);
	if (p->psk != NULL) {
		memcpy(hs->psk, p->psk, PROTO_KEYBYTES);
		hs->has_psk = 1;
	}

	/* InitializeSymmetric(protocol_name), MixHash(prologue). */
	name = hs->has_psk ? NOISE_XXPSK3 : NOISE_XX;
	trace(hs, name, NULL, 0);
	if (strlen(name) <= sizeof(hs->h))
		memcpy(hs->h, name, strlen(name));
	else
		crypto_hash_sha256(hs->h, (const uint8_t *)name, strlen(name));
	memcpy(hs->ck, hs->h, sizeof(hs->h));
	trace(hs, "h", hs->h, sizeof(hs->h));
	trace(hs, "ck", hs->ck, sizeof(hs->ck));
	prologue = p->prologue;
	prologuelen = p->prologuelen;
	if (prologue == NULL) {
		prologue = (const uint8_t *)PROTO_PROLOGUE;
		prologuelen = strlen(PROTO_PROLOGUE);
	}
	trace(hs, "prologue", prologue, prologuelen);
	mix_hash(hs, prologue, prologuelen);
	trace(hs, "s.public", hs->spub, sizeof(hs->spub));
	if (hs->has_psk)
		trace(hs, "psk", hs->psk, sizeof(hs->psk));
	return (hs);
}

/*
 * proto_hs_free(hs):
 * Wipe and free hs.  Does nothing if hs is NULL.
 */
void
proto_hs_free(struct proto_hs *hs)
{

	sodium_free(hs);
}

/*
 * proto_hs_next(hs):
 * Return what hs needs next: PROTO_HS_WRITE, PROTO_HS_READ or
 * PROTO_HS_DONE; or PROTO_HS_FAILED once a step has failed.
 */
int
proto_hs_next(const struct proto_hs *hs)
{
	/* Who writes message i: Noise starts with the initiator, classic with
	 * the listener. */
	int mine;

	if (hs->failed)
		return (PROTO_HS_FAILED);
	if (hs->step == (hs->classic ? 2 : 3))
		return (PROTO_HS_DONE);
	mine = (hs->step % 2 == 0) == (hs->initiator != hs->classic);
	return (mine ? PROTO_HS_WRITE : PROTO_HS_READ);
}

static void
new_ephemeral(struct proto_hs *hs)
{

	if (hs->has_fixed_e)
		memcpy(hs->e, hs->fixed_e, PROTO_KEYBYTES);
	else
		randombytes_buf(hs->e, PROTO_KEYBYTES);
	(void)crypto_scalarmult_base(hs->epub, hs->e);
	trace(hs, "e.private", hs->e, sizeof(hs->e));
	trace(hs, "e.public", hs->epub, sizeof(hs->epub));
}

/* The classic exchange: derive the single AES key from the shared secret. */
static int
classic_derive(struct proto_hs *hs)
{
	uint8_t prk[crypto_kdf_hkdf_sha256_KEYBYTES];
	int rc;

	if ((rc = dh(hs->secret, hs->e, hs->re)) != 0)
		return (rc);
	trace(hs, "shared secret = X25519(e, re)", hs->secret,
	    sizeof(hs->secret));
	crypto_kdf_hkdf_sha256_extract(prk, NULL, 0, hs->secret,
	    sizeof(hs->secret));
	crypto_kdf_hkdf_sha256_expand(hs->key, sizeof(hs->key), CLASSIC_INFO,
	    strlen(CLASSIC_INFO), prk);
	sodium_memzero(prk, sizeof(prk));
	trace(hs, "key = HKDF-SHA256(secret, no salt, \"" CLASSIC_INFO "\")",
	    hs->key, sizeof(hs->key));
	return (0);
}

/* Token "e" on the writing side; with a PSK, e also goes into MixKey. */
static void
tok_e_write(struct proto_hs *hs, uint8_t *msg, size_t *off)
{

	new_ephemeral(hs);
	memcpy(msg + *off, hs->epub, PROTO_KEYBYTES);
	*off += PROTO_KEYBYTES;
	mix_hash(hs, hs->epub, PROTO_KEYBYTES);
	if (hs->has_psk)
		mix_key(hs, hs->epub, PROTO_KEYBYTES);
}

static int
tok_e_read(struct proto_hs *hs, const uint8_t *msg, size_t len, size_t *off)
{

	if (len - *off < PROTO_KEYBYTES)
		return (PROTO_EBADMSG);
	memcpy(hs->re, msg + *off, PROTO_KEYBYTES);
	*off += PROTO_KEYBYTES;
	trace(hs, "re", hs->re, sizeof(hs->re));
	mix_hash(hs, hs->re, PROTO_KEYBYTES);
	if (hs->has_psk)
		mix_key(hs, hs->re, PROTO_KEYBYTES);
	return (0);
}

static int
tok_s_write(struct proto_hs *hs, uint8_t *msg, size_t *off)
{
	size_t n;
	int rc;

	if ((rc = encrypt_and_hash(hs, hs->spub, PROTO_KEYBYTES, msg + *off,
	    &n)) != 0)
		return (rc);
	trace(hs, "s (as sent)", msg + *off, n);
	*off += n;
	return (0);
}

static int
tok_s_read(struct proto_hs *hs, const uint8_t *msg, size_t len, size_t *off)
{
	size_t need = PROTO_KEYBYTES + (hs->has_k ? PROTO_TAGBYTES : 0);
	size_t n;
	int rc;

	if (len - *off < need)
		return (PROTO_EBADMSG);
	trace(hs, "s (as received)", msg + *off, need);
	if ((rc = decrypt_and_hash(hs, msg + *off, need, hs->rs, &n)) != 0)
		return (rc);
	*off += need;
	hs->has_rs = 1;
	trace(hs, "rs", hs->rs, sizeof(hs->rs));
	return (0);
}

/* Tokens ee, es, se: which keys meet depends on the role. */
static int
tok_dh(struct proto_hs *hs, const char *tok)
{
	uint8_t out[PROTO_KEYBYTES];
	const uint8_t *priv, *pub;
	char what[16];
	int rc;

	if (strcmp(tok, "ee") == 0) {
		priv = hs->e;
		pub = hs->re;
	} else if (strcmp(tok, "es") == 0) {
		priv = hs->initiator ? hs->e : hs->s;
		pub = hs->initiator ? hs->rs : hs->re;
	} else {
		priv = hs->initiator ? hs->s : hs->e;
		pub = hs->initiator ? hs->re : hs->rs;
	}
	if ((rc = dh(out, priv, pub)) != 0)
		return (rc);
	snprintf(what, sizeof(what), "DH(%s)", tok);
	trace(hs, what, out, sizeof(out));
	mix_key(hs, out, sizeof(out));
	sodium_memzero(out, sizeof(out));
	return (0);
}

static int
noise_write(struct proto_hs *hs, const uint8_t *payload, size_t plen,
    uint8_t *msg, size_t *msglen)
{
	size_t off = 0, n;
	int rc;

	if (plen > PROTO_MAXHSMSG - MSG2_BASE)
		return (PROTO_EBADLEN);
	switch (hs->step) {
	case 0:		/* -> e */
		trace(hs, "-> e", NULL, 0);
		tok_e_write(hs, msg, &off);
		break;
	case 1:		/* <- e, ee, s, es */
		trace(hs, "<- e, ee, s, es", NULL, 0);
		tok_e_write(hs, msg, &off);
		if ((rc = tok_dh(hs, "ee")) != 0 ||
		    (rc = tok_s_write(hs, msg, &off)) != 0 ||
		    (rc = tok_dh(hs, "es")) != 0)
			return (rc);
		break;
	default:	/* -> s, se [, psk] */
		trace(hs, hs->has_psk ? "-> s, se, psk" : "-> s, se", NULL, 0);
		if ((rc = tok_s_write(hs, msg, &off)) != 0 ||
		    (rc = tok_dh(hs, "se")) != 0)
			return (rc);
		if (hs->has_psk) {
			trace(hs, "psk", hs->psk, sizeof(hs->psk));
			mix_key_and_hash(hs, hs->psk, sizeof(hs->psk));
		}
		break;
	}
	trace(hs, "payload", payload, plen);
	if ((rc = encrypt_and_hash(hs, payload, plen, msg + off, &n)) != 0)
		return (rc);
	*msglen = off + n;
	return (0);
}

static int
noise_read(struct proto_hs *hs, const uint8_t *msg, size_t msglen,
    uint8_t *payload, size_t *plen)
{
	size_t off = 0;
	int rc;

	switch (hs->step) {
	case 0:
		trace(hs, "-> e", NULL, 0);
		trace(hs, "message received", msg, msglen);
		if ((rc = tok_e_read(hs, msg, msglen, &off)) != 0)
			return (rc);
		break;
	case 1:
		trace(hs, "<- e, ee, s, es", NULL, 0);
		trace(hs, "message received", msg, msglen);
		if ((rc = tok_e_read(hs, msg, msglen, &off)) != 0 ||
		    (rc = tok_dh(hs, "ee")) != 0 ||
		    (rc = tok_s_read(hs, msg, msglen, &off)) != 0 ||
		    (rc = tok_dh(hs, "es")) != 0)
			return (rc);
		break;
	default:
		trace(hs, hs->has_psk ? "-> s, se, psk" : "-> s, se", NULL, 0);
		trace(hs, "message received", msg, msglen);
		if ((rc = tok_s_read(hs, msg, msglen, &off)) != 0 ||
		    (rc = tok_dh(hs, "se")) != 0)
			return (rc);
		if (hs->has_psk) {
			trace(hs, "psk", hs->psk, sizeof(hs->psk));
			mix_key_and_hash(hs, hs->psk, sizeof(hs->psk));
		}
		break;
	}
	if ((rc = decrypt_and_hash(hs, msg + off, msglen - off, payload,
	    plen)) != 0)
		return (rc);
	trace(hs, "payload", payload, *plen);
	return (0);
}

/*
 * proto_hs_write(hs, payload, plen, msg, msglen):
 * Produce the next handshake message, carrying payload (plen bytes, or
 * NULL and 0; the classic handshake carries none), into msg, which has
 * room for it: 96 bytes more than plen always do; store its length in
 * *msglen.  Return 0 or a
 * PROTO_E* code; after an error hs is unusable.
 */
int
proto_hs_write(struct proto_hs *hs, const uint8_t *payload, size_t plen,
    uint8_t *msg, size_t *msglen)
{
	int rc;

	if (proto_hs_next(hs) != PROTO_HS_WRITE)
		return (PROTO_ESTATE);
	/* No payload is an empty one: memcpy() and friends want a pointer. */
	if (payload == NULL) {
		if (plen != 0)
			return (PROTO_ESTATE);
		payload = (const uint8_t *)"";
	}
	if (hs->classic) {
		if (plen != 0)
			return (PROTO_ESTATE);
		trace(hs, hs->initiator ? "-> e (raw 32 bytes)" :
		    "<- e (raw 32 bytes)", NULL, 0);
		new_ephemeral(hs);
		memcpy(msg, hs->epub, PROTO_KEYBYTES);
		*msglen = PROTO_KEYBYTES;
		/* The connector writes second: both keys are known now. */
		rc = hs->initiator ? classic_derive(hs) : 0;
	} else
		rc = noise_write(hs, payload, plen, msg, msglen);
	if (rc != 0)
		hs->failed = 1;
	else {
		trace(hs, "message sent", msg, *msglen);
		hs->step++;
	}
	return (rc);
}

/*
 * proto_hs_read(hs, msg, msglen, payload, plen):
 * Consume the peer's next handshake message and store its payload, which
 * is at most msglen bytes, in payload and its length in *plen.  Return 0
 * or a PROTO_E* code; after an error hs is unusable.
 */
int
proto_hs_read(struct proto_hs *hs, const uint8_t *msg, size_t msglen,
    uint8_t *payload, size_t *plen)
{
	int rc;

	if (proto_hs_next(hs) != PROTO_HS_READ)
		return (PROTO_ESTATE);
	*plen = 0;
	if (hs->classic) {
		trace(hs, hs->initiator ? "<- e (raw 32 bytes)" :
		    "-> e (raw 32 bytes)", NULL, 0);
		trace(hs, "message received", msg, msglen);
		if (msglen != PROTO_KEYBYTES)
			rc = PROTO_EBADMSG;
		else {
			memcpy(hs->re, msg, PROTO_KEYBYTES);
			trace(hs, "re", hs->re, sizeof(hs->re));
			/* The listener reads second: both keys are known. */
			rc = hs->initiator ? 0 : classic_derive(hs);
		}
	} else
		rc = noise_read(hs, msg, msglen, payload, plen);
	if (rc != 0) {
		hs->failed = 1;
		*plen = 0;
	} else
		hs->step++;
	return (rc);
}

/*
 * proto_hs_step(hs):
 * Return how many handshake messages hs has written or read so far.
 */
int
proto_hs_step(const struct proto_hs *hs)
{

	return (hs->step);
}

/*
 * proto_hs_remote_static(hs):
 * Return the peer's static public key once a message carrying it has been
 * read, else NULL.  Classic: the peer's (ephemeral) public key.
 */
const uint8_t *
proto_hs_remote_static(const struct proto_hs *hs)
{

	if (hs->classic)
		return (hs->step == 2 || (hs->step == 1 && hs->initiator) ?
		    hs->re : NULL);
	return (hs->has_rs ? hs->rs : NULL);
}

/*
 * proto_hs_hash(hs):
 * Noise: return the handshake hash h (32 bytes).  Classic: return the
 * X25519 shared secret.  Meaningful once proto_hs_next() says DONE.
 */
const uint8_t *
proto_hs_hash(const struct proto_hs *hs)
{

	return (hs->classic ? hs->secret : hs->h);
}

/*
 * proto_hs_split(hs, tx, rx):
 * Once the handshake is done, create the cipher states for sending (*tx)
 * and receiving (*rx) and wipe the handshake's key material.  Return 0 or
 * a PROTO_E* code.
 */
int
proto_hs_split(struct proto_hs *hs, struct proto_cipher **tx,
    struct proto_cipher **rx)
{
	uint8_t out[2 * PROTO_KEYBYTES];
	const uint8_t *k1, *k2;

	*tx = *rx = NULL;
	if (proto_hs_next(hs) != PROTO_HS_DONE || hs->split)
		return (PROTO_ESTATE);
	if (hs->classic) {
		/* One key serves both directions, as in the original. */
		k1 = k2 = hs->key;
	} else {
		trace(hs, "Split()", NULL, 0);
		noise_hkdf(hs->ck, NULL, 0, out, sizeof(out));
		k1 = out;
		k2 = out + PROTO_KEYBYTES;
		trace(hs, "c1 key (connector to listener)", k1, PROTO_KEYBYTES);
		trace(hs, "c2 key (listener to connector)", k2, PROTO_KEYBYTES);
	}
	*tx = proto_cipher_new(hs->initiator ? k1 : k2, hs->classic);
	*rx = proto_cipher_new(hs->initiator ? k2 : k1, hs->classic);
	sodium_memzero(out, sizeof(out));
	if (*tx == NULL || *rx == NULL) {
		proto_cipher_free(*tx);
		proto_cipher_free(*rx);
		*tx = *rx = NULL;
		return (PROTO_EERRNO);
	}

	/* Keep only what is still asked for: h (or the classic secret) and
	 * the peer's key. */
	hs->split = 1;
	sodium_memzero(hs->ck, sizeof(hs->ck));
	sodium_memzero(hs->k, sizeof(hs->k));
	sodium_memzero(hs->s, sizeof(hs->s));
	sodium_memzero(hs->e, sizeof(hs->e));
	sodium_memzero(hs->psk, sizeof(hs->psk));
	sodium_memzero(hs->fixed_e, sizeof(hs->fixed_e));
	sodium_memzero(hs->key, sizeof(hs->key));
	return (0);
}

/* The largest message x25519chat/1 accepts next (payloads are names). */
static size_t
msg_max(const struct proto_hs *hs)
{

	if (hs->classic)
		return (PROTO_KEYBYTES);
	switch (hs->step) {
	case 0:
		return (MSG1_BASE + (hs->has_psk ? PROTO_TAGBYTES : 0));
	case 1:
		return (MSG2_BASE + PROTO_NAMEMAX);
	default:
		return (MSG3_BASE + PROTO_NAMEMAX);
	}
}

static int
send_msg(int fd, const struct proto_hs *hs, uint8_t *buf, size_t msglen)
{

	/* buf has PROTO_LENBYTES of room before the message. */
	if (hs->classic)
		return (proto_write_full(fd, buf + PROTO_LENBYTES, msglen));
	store32_be(buf, (uint32_t)msglen);
	return (proto_write_full(fd, buf, PROTO_LENBYTES + msglen));
}

static int
recv_msg(int fd, const struct proto_hs *hs, uint8_t *msg, size_t *msglen,
    int64_t deadline)
{
	uint8_t prefix[PROTO_LENBYTES];
	size_t max = msg_max(hs);
	uint32_t len;
	int rc;

	if (hs->classic)
		len = PROTO_KEYBYTES;
	else {
		if ((rc = proto_read_full(fd, prefix, sizeof(prefix),
		    deadline)) != 0)
			return (rc);
		/* Refuse before reading: the peer never sizes our reads. */
		len = load32_be(prefix);
		if (len > max)
			return (PROTO_EBADMSG);
	}
	rc = proto_read_full(fd, msg, len, deadline);
	/* A message cut after its prefix is cut, not a clean end. */
	if (rc == PROTO_EEOF && !hs->classic)
		rc = PROTO_ETRUNC;
	*msglen = len;
	return (rc);
}

/*
 * proto_handshake(fd, hs, name, namelen, peername, peernamelen, deadline,
 *     verify, arg):
 * Run hs to completion over fd, framing Noise messages as "u32 big-endian
 * length | message" and classic ones as the bare 32-byte keys.  Send name
 * (namelen <= PROTO_NAMEMAX bytes) as our payload and store the peer's in
 * peername (room for PROTO_NAMEMAX bytes) and its length in *peernamelen.
 * Call verify, if not NULL, as soon as the peer's static key is known
 * (never in classic, which has no static keys).  Give up at deadline (a
 * proto_now_ms() reading; 0 means never).  Return 0 or a PROTO_E* code
 * (PROTO_EREJECT when verify refused).
 */
int
proto_handshake(int fd, struct proto_hs *hs, const uint8_t *name,
    size_t namelen, uint8_t *peername, size_t *peernamelen, int64_t deadline,
    proto_verify_fn *verify, void *arg)
{
	/* With names of at most PROTO_NAMEMAX bytes, message 2 is the
	 * largest message either way. */
	uint8_t buf[PROTO_LENBYTES + MSG2_BASE + PROTO_NAMEMAX];
	uint8_t payload[MSG2_BASE + PROTO_NAMEMAX];
	size_t msglen, plen;
	int step, rc = 0;

	*peernamelen = 0;
	if (namelen > PROTO_NAMEMAX)
		return (PROTO_EBADLEN);
	while (rc == 0) {
		step = hs->step;
		switch (proto_hs_next(hs)) {
		case PROTO_HS_DONE:
			return (0);
		case PROTO_HS_WRITE:
			/* The connector judges the listener's key before it
			 * reveals its own identity in message 3. */
			if (!hs->classic && step == 2 && verify != NULL &&
			    verify(arg, hs->rs) != 0)
				return (PROTO_EREJECT);
			/* Message 1 carries no payload. */
			if ((rc = proto_hs_write(hs, name,
			    hs->classic || step == 0 ? 0 : namelen,
			    buf + PROTO_LENBYTES, &msglen)) == 0)
				rc = send_msg(fd, hs, buf, msglen);
			break;
		case PROTO_HS_READ:
			if ((rc = recv_msg(fd, hs, buf, &msglen,
			    deadline)) != 0 ||
			    (rc = proto_hs_read(hs, buf, msglen, payload,
			    &plen)) != 0)
				break;
			if (hs->classic)
				break;
			if ((step == 0 && plen != 0) || plen > PROTO_NAMEMAX)
				return (PROTO_EBADMSG);
			memcpy(peername, payload, plen);
			*peernamelen = plen;
			if (step == 2 && verify != NULL &&
			    verify(arg, hs->rs) != 0)
				return (PROTO_EREJECT);
			break;
		default:
			return (PROTO_ESTATE);
		}
	}
	sodium_memzero(payload, sizeof(payload));
	return (rc);
}
