#ifndef PROTO_H
#define PROTO_H

/*
 * The x25519chat protocols over byte buffers: the handshakes, sealing and
 * opening of transport packets, key text, and the read-exactly/write-all
 * helpers over a file descriptor.  Nothing here knows about terminals,
 * options or sockets; two peers can run through it in memory.
 *
 * Every function that can fail returns 0 on success and one of the
 * negative PROTO_E* codes below on failure, which proto_strerror() names;
 * the key text functions, which can only fail one way, return -1.
 */

#include <stddef.h>
#include <stdint.h>

#include <sodium.h>

/*
 * libsodium before 1.0.19 lacks HKDF-SHA256; sodium_shim.c supplies these
 * with the upstream names and prototypes.
 */
#ifndef crypto_kdf_hkdf_sha256_KEYBYTES
#define crypto_kdf_hkdf_sha256_KEYBYTES crypto_auth_hmacsha256_BYTES
#define crypto_kdf_hkdf_sha256_BYTES_MIN 0U
#define crypto_kdf_hkdf_sha256_BYTES_MAX (0xff * crypto_auth_hmacsha256_BYTES)
int crypto_kdf_hkdf_sha256_extract(
    unsigned char prk[crypto_kdf_hkdf_sha256_KEYBYTES],
    const unsigned char *salt, size_t salt_len,
    const unsigned char *ikm, size_t ikm_len);
int crypto_kdf_hkdf_sha256_expand(unsigned char *out, size_t out_len,
    const char *ctx, size_t ctx_len,
    const unsigned char prk[crypto_kdf_hkdf_sha256_KEYBYTES]);
#endif

#define PROTO_KEYBYTES		32	/* X25519 keys, AES-256 keys, hashes */
#define PROTO_LENBYTES		4	/* big-endian length prefix */
#define PROTO_NONCEBYTES	12
#define PROTO_TAGBYTES		16
/* length | nonce | tag: the plaintext of a packet starts this far in. */
#define PROTO_HDRBYTES	(PROTO_LENBYTES + PROTO_NONCEBYTES + PROTO_TAGBYTES)
/* Largest plaintext of one transport packet, in both protocols. */
#define PROTO_MAXPLAIN		65536
/* Size of a buffer that holds any transport packet, prefix included. */
#define PROTO_MAXPKT		(PROTO_HDRBYTES + PROTO_MAXPLAIN)
/* Largest handshake message (after its length prefix). */
#define PROTO_MAXHSMSG		65535
/* Largest display name carried in the handshake. */
#define PROTO_NAMEMAX		64
#define PROTO_PROLOGUE		"x25519chat/1"
/* Length of the session code text "xxxx-xxxx-xxxx" without its NUL. */
#define PROTO_CODELEN		14
/* Length of a key in base64 text without its NUL. */
#define PROTO_B64LEN		44

/* Default protocol: the first plaintext byte of every packet. */
#define PROTO_DATA		0x00
#define PROTO_CLOSE		0x01
#define PROTO_REKEY		0x02

/* A direction rekeys after this much plaintext, or this many ms. */
#define PROTO_REKEY_BYTES	((uint64_t)1 << 30)
#define PROTO_REKEY_MS		120000

/* Error codes. */
#define PROTO_EERRNO	(-1)	/* system call failed; errno says why */
#define PROTO_EEOF	(-2)	/* stream ended cleanly before the first byte */
#define PROTO_ETRUNC	(-3)	/* stream ended inside a packet or message */
#define PROTO_ETIMEOUT	(-4)	/* the deadline passed */
#define PROTO_EBADLEN	(-5)	/* length prefix out of bounds */
#define PROTO_EBADTAG	(-6)	/* authentication tag did not verify */
#define PROTO_EBADNONCE	(-7)	/* nonce is not the expected counter */
#define PROTO_EBADTYPE	(-8)	/* unknown packet type or malformed body */
#define PROTO_ELOWORDER	(-9)	/* peer key is low-order: DH output zero */
#define PROTO_EBADMSG	(-10)	/* malformed handshake message */
#define PROTO_ENONCES	(-11)	/* nonce counter exhausted */
#define PROTO_EREJECT	(-12)	/* peer's static key refused by policy */
#define PROTO_ESTATE	(-13)	/* call out of order (a bug, not the peer) */

/*
 * proto_strerror(err):
 * Return a short English description of the PROTO_E* code err.
 */
const char *proto_strerror(int err);

/*
 * proto_now_ms(void):
 * Return a monotonic clock reading in milliseconds.
 */
int64_t proto_now_ms(void);

/*
 * proto_read_full(fd, buf, len, deadline):
 * Read exactly len bytes from fd into buf, retrying after EINTR.  When
 * deadline is not 0, give up at that proto_now_ms() reading.  Return 0,
 * PROTO_EEOF if the stream ended before the first byte, PROTO_ETRUNC if it
 * ended after some, PROTO_ETIMEOUT, or PROTO_EERRNO.
 */
int proto_read_full(int fd, void *buf, size_t len, int64_t deadline);

/*
 * proto_write_full(fd, buf, len):
 * Write all len bytes of buf to fd, retrying after EINTR and short writes,
 * and waiting if fd turns out to be non-blocking.  Return 0 or
 * PROTO_EERRNO.
 */
int proto_write_full(int fd, const void *buf, size_t len);

/*
 * proto_key_encode(out, key):
 * Write the 32-byte key as 44 characters of standard base64 and a NUL.
 */
void proto_key_encode(char out[PROTO_B64LEN + 1],
    const uint8_t key[PROTO_KEYBYTES]);

/*
 * proto_key_decode(key, text, len):
 * Parse exactly len bytes of text as one key in base64 (44 characters,
 * standard alphabet, '=' padding, no other bytes).  Return 0 or -1.
 */
int proto_key_decode(uint8_t key[PROTO_KEYBYTES], const char *text,
    size_t len);

/*
 * proto_keyfile_parse(key, text, len):
 * Parse the contents of a key file: one base64 key as proto_key_decode()
 * reads it, optionally followed by one newline.  Return 0 or -1.
 */
int proto_keyfile_parse(uint8_t key[PROTO_KEYBYTES], const char *text,
    size_t len);

/*
 * proto_keypair_new(priv, pub):
 * Generate a fresh X25519 private key, clamped as WireGuard clamps it, and
 * its public key.
 */
void proto_keypair_new(uint8_t priv[PROTO_KEYBYTES],
    uint8_t pub[PROTO_KEYBYTES]);

/*
 * proto_session_code(out, hash):
 * Write the session code of a handshake hash: its first 6 bytes in
 * lowercase hex grouped "xxxx-xxxx-xxxx", and a NUL.
 */
void proto_session_code(char out[PROTO_CODELEN + 1],
    const uint8_t hash[PROTO_KEYBYTES]);

/*
 * Transport: one struct proto_cipher protects one direction of one
 * session.  It lives in guarded memory and is wiped when freed.
 */
struct proto_cipher;

/*
 * proto_cipher_new(key, classic):
 * Return a cipher state for one direction keyed with key, or NULL with
 * errno set.  With classic, packets carry random nonces and nothing is
 * checked but the tag; otherwise nonces count 0, 1, 2, ... and the
 * receiver accepts only the next one.
 */
struct proto_cipher *proto_cipher_new(const uint8_t key[PROTO_KEYBYTES],
    int classic);

/*
 * proto_cipher_free(c):
 * Wipe and free c.  Does nothing if c is NULL.
 */
void proto_cipher_free(struct proto_cipher *c);

/*
 * proto_cipher_nonce(c):
 * Return the counter of the next packet c seals or opens.
 */
uint64_t proto_cipher_nonce(const struct proto_cipher *c);

/*
 * proto_cipher_rekey(c):
 * Apply Noise Rekey() to c: k = first 32 bytes of ENCRYPT(k, 2^64-1, empty
 * ad, 32 zero bytes); the counter continues.  Return 0 or PROTO_EERRNO.
 */
int proto_cipher_rekey(struct proto_cipher *c);

/*
 * proto_cipher_rekey_due(c, now):
 * Return nonzero if c has sealed PROTO_REKEY_BYTES of plaintext, or
 * PROTO_REKEY_MS have passed, since it was keyed or last rekeyed.
 */
int proto_cipher_rekey_due(const struct proto_cipher *c, int64_t now);

/*
 * proto_seal(c, pkt, ptlen):
 * pkt holds PROTO_HDRBYTES of room followed by ptlen <= PROTO_MAXPLAIN
 * bytes of plaintext (at least 1, its type byte, unless classic).  Fill in
 * the length prefix, nonce and tag, and encrypt the plaintext in place:
 * pkt then holds the whole packet, PROTO_HDRBYTES + ptlen bytes.  Return 0
 * or a PROTO_E* code.
 */
int proto_seal(struct proto_cipher *c, uint8_t *pkt, size_t ptlen);

/*
 * proto_open_len(c, prefix, len):
 * Check the 4-byte length prefix of a packet for c and store in *len the
 * number of bytes that follow it.  Return 0 or PROTO_EBADLEN.
 */
int proto_open_len(const struct proto_cipher *c,
    const uint8_t prefix[PROTO_LENBYTES], size_t *len);

/*
 * proto_open(c, pkt, pktlen, ptlen):
 * pkt holds one whole packet of pktlen bytes, prefix included.  Check its
 * length and (unless classic) that its nonce is c's next counter, then
 * verify and decrypt it in place.  On success the plaintext is the *ptlen
 * bytes at pkt + PROTO_HDRBYTES and the counter has advanced.  On failure
 * return a PROTO_E* code and no plaintext is left in pkt.
 */
int proto_open(struct proto_cipher *c, uint8_t *pkt, size_t pktlen,
    size_t *ptlen);

/*
 * Handshakes: struct proto_hs runs one handshake of either protocol, one
 * message at a time, over byte buffers.
 */
struct proto_hs;

/* Called with each named value as the handshake computes it (for -vv). */
typedef void proto_trace_fn(void *arg, const char *what,
    const uint8_t *buf, size_t len);

struct proto_hs_params {
	int initiator;		/* connector: 1, listener: 0 */
	int classic;		/* the original protocol, not Noise */
	const uint8_t *s;	/* Noise: our static private key */
	const uint8_t *psk;	/* Noise: NULL, or a 32-byte PSK (XXpsk3) */
	const uint8_t *prologue;	/* Noise: NULL means PROTO_PROLOGUE */
	size_t prologuelen;
	const uint8_t *e;	/* tests only: fixed ephemeral private key */
	proto_trace_fn *trace;	/* NULL, or called with each step */
	void *trace_arg;
};

#define PROTO_HS_WRITE	1	/* proto_hs_write() comes next */
#define PROTO_HS_READ	2	/* proto_hs_read() comes next */
#define PROTO_HS_DONE	3	/* proto_hs_split() comes next */
#define PROTO_HS_FAILED	4	/* a step failed; hs is unusable */

/*
 * proto_hs_new(p):
 * Start a handshake with the parameters p (copied).  Return NULL with errno
 * set on failure.
 */
struct proto_hs *proto_hs_new(const struct proto_hs_params *p);

/*
 * proto_hs_free(hs):
 * Wipe and free hs.  Does nothing if hs is NULL.
 */
void proto_hs_free(struct proto_hs *hs);

/*
 * proto_hs_next(hs):
 * Return what hs needs next: PROTO_HS_WRITE, PROTO_HS_READ or
 * PROTO_HS_DONE; or PROTO_HS_FAILED once a step has failed.
 */
int proto_hs_next(const struct proto_hs *hs);

/*
 * proto_hs_write(hs, payload, plen, msg, msglen):
 * Produce the next handshake message, carrying payload (plen bytes, or
 * NULL and 0; the classic handshake carries none), into msg, which has
 * room for it: 96 bytes more than plen always do; store its length in
 * *msglen.  Return 0 or a
 * PROTO_E* code; after an error hs is unusable.
 */
int proto_hs_write(struct proto_hs *hs, const uint8_t *payload, size_t plen,
    uint8_t *msg, size_t *msglen);

/*
 * proto_hs_read(hs, msg, msglen, payload, plen):
 * Consume the peer's next handshake message and store its payload, which
 * is at most msglen bytes, in payload and its length in *plen.  Return 0
 * or a PROTO_E* code; after an error hs is unusable.
 */
int proto_hs_read(struct proto_hs *hs, const uint8_t *msg, size_t msglen,
    uint8_t *payload, size_t *plen);

/*
 * proto_hs_step(hs):
 * Return how many handshake messages hs has written or read so far.
 */
int proto_hs_step(const struct proto_hs *hs);

/*
 * proto_hs_remote_static(hs):
 * Return the peer's static public key once a message carrying it has been
 * read, else NULL.  Classic: the peer's (ephemeral) public key.
 */
const uint8_t *proto_hs_remote_static(const struct proto_hs *hs);

/*
 * proto_hs_hash(hs):
 * Noise: return the handshake hash h (32 bytes).  Classic: return the
 * X25519 shared secret.  Meaningful once proto_hs_next() says DONE.
 */
const uint8_t *proto_hs_hash(const struct proto_hs *hs);

/*
 * proto_hs_split(hs, tx, rx):
 * Once the handshake is done, create the cipher states for sending (*tx)
 * and receiving (*rx) and wipe the handshake's key material.  Return 0 or
 * a PROTO_E* code.
 */
int proto_hs_split(struct proto_hs *hs, struct proto_cipher **tx,
    struct proto_cipher **rx);

/*
 * Policy called once the peer's static key is known and before anything
 * more is sent or accepted: return 0 to go on, -1 to refuse.
 */
typedef int proto_verify_fn(void *arg, const uint8_t rs[PROTO_KEYBYTES]);

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
int proto_handshake(int fd, struct proto_hs *hs, const uint8_t *name,
    size_t namelen, uint8_t *peername, size_t *peernamelen, int64_t deadline,
    proto_verify_fn *verify, void *arg);

#endif /* !PROTO_H */
