#ifndef PROTO_H
#define PROTO_H

/*
 * The x25519chat protocols over byte buffers: the handshakes and the
 * hello before them (handshake.c), the ciphers, sealing and opening of
 * transport packets, the order of a session's packets, the session code,
 * key text, and the read-exactly/write-all helpers over a file descriptor
 * (proto.c).  Every byte of cryptography is here, and nothing here knows
 * about terminals, options or sockets: two peers can run through it in
 * memory.
 *
 * Every function that can fail returns 0 on success and one of the
 * negative PROTO_E* codes below on failure, which proto_strerror() names;
 * the key text functions, which can only fail one way, return -1.
 */

#include <sys/uio.h>

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

#define PROTO_KEYBYTES		32	/* X25519 keys, AEAD keys, hashes */
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
/* Length of the session code text "xxxx-xxxx-xxxx-xxxx" without its NUL. */
#define PROTO_CODELEN		19
/* Length of a key in base64 text without its NUL. */
#define PROTO_B64LEN		44

/*
 * The ciphers.  AESGCM and ChaChaPoly are the two Noise suites of the
 * default protocol, numbered as its choice byte numbers them; CLASSIC is
 * the original protocol's AES-256-GCM with random nonces.
 */
#define PROTO_AESGCM		1
#define PROTO_CHACHAPOLY	2
#define PROTO_CLASSIC		3
/* Bits of the suites byte of an offer. */
#define PROTO_OFFER_AESGCM	0x01
#define PROTO_OFFER_CHACHAPOLY	0x02

/* Default protocol: the first plaintext byte of every packet. */
#define PROTO_DATA		0x00	/* bytes of the stream */
#define PROTO_CLOSE		0x01	/* I will send no more DATA */
#define PROTO_REKEY		0x02	/* my direction moves to the next key */
#define PROTO_ACK		0x03	/* I got your CLOSE and all your DATA */
#define PROTO_ERROR		0x04	/* I failed: the body says why */
#define PROTO_PING		0x05	/* I am alive */
/* Length of an ERROR body: the reason, 1 to this many bytes. */
#define PROTO_ERRORMAX		200

/* A direction rekeys after this much plaintext, or this many ms. */
#define PROTO_REKEY_BYTES	((uint64_t)1 << 30)
#define PROTO_REKEY_MS		120000
/* A side that has sent nothing for this many ms sends PING. */
#define PROTO_PING_MS		15000

/* x25519chat/2's hello, the two frames before the Noise messages. */
#define PROTO_VERSION		2
#define PROTO_PROLOGUE		"x25519chat/2"
#define PROTO_MODE_XX		0	/* plain Noise XX */
#define PROTO_MODE_PSK		1	/* Noise XXpsk3 with a pre-shared key */
#define PROTO_MODE_CODE		2	/* a short code (not spoken yet) */
/* Largest hello frame body either side reads. */
#define PROTO_HELLOMAX		255
/* The reasons of a refusal, frame 2 = 0 | reason. */
#define PROTO_REFUSE_VERSION	1	/* unsupported version */
#define PROTO_REFUSE_CIPHER	2	/* no common cipher */
#define PROTO_REFUSE_NEEDPSK	3	/* the listener requires a PSK */
#define PROTO_REFUSE_NOPSK	4	/* the listener has no PSK */
#define PROTO_REFUSE_BUSY	5	/* busy */
#define PROTO_REFUSE_MODE	6	/* unknown mode */
#define PROTO_REFUSE_NEEDCODE	7	/* the listener requires a code */
#define PROTO_REFUSE_NOCODE	8	/* the listener has no code */
#define PROTO_REFUSE_USEDCODE	9	/* this code was already used */

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
#define PROTO_EREFUSED	(-14)	/* the listener refused the hello */
#define PROTO_EBADHELLO	(-15)	/* malformed hello frame */
#define PROTO_ECHOICE	(-16)	/* the listener chose a cipher not offered */
#define PROTO_EORDER	(-17)	/* packet type out of order */
#define PROTO_ECRYPTO	(-18)	/* the AEAD failed to seal (a library fault) */

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
 * proto_writev_full(fd, iov, n):
 * Write all the bytes of the n buffers of iov to fd, in order, as
 * proto_write_full() does; iov is used up in the process.  Return 0 or
 * PROTO_EERRNO.
 */
int proto_writev_full(int fd, struct iovec *iov, int n);

/*
 * proto_frame_write(fd, body, len):
 * Write one frame, "u32 big-endian len | body", to fd.  Return 0,
 * PROTO_EBADLEN if len does not fit in 32 bits, or PROTO_EERRNO.
 */
int proto_frame_write(int fd, const uint8_t *body, size_t len);

/*
 * proto_frame_read(fd, body, max, len, deadline):
 * Read one frame from fd: its u32 big-endian length, refused before
 * reading on if it exceeds max, then that many bytes into body; store the
 * length in *len.  Give up at deadline as proto_read_full() does.  Return
 * 0, PROTO_EBADLEN for a frame longer than max, PROTO_EEOF if the stream
 * ended before the frame, PROTO_ETRUNC if it ended inside it,
 * PROTO_ETIMEOUT or PROTO_EERRNO.
 */
int proto_frame_read(int fd, uint8_t *body, size_t max, size_t *len,
    int64_t deadline);

/*
 * proto_aead_encrypt(suite, key, n, ad, adlen, in, len, out):
 * Noise's ENCRYPT(k, n, ad, plaintext) in suite (PROTO_AESGCM or
 * PROTO_CHACHAPOLY): write the len-byte ciphertext of in, then the 16-byte
 * tag, to out.  Return 0; PROTO_ESTATE for another suite, or AESGCM
 * without hardware AES, with nothing written; or PROTO_ECRYPTO with out
 * wiped.
 */
int proto_aead_encrypt(int suite, const uint8_t key[PROTO_KEYBYTES],
    uint64_t n, const uint8_t *ad, size_t adlen, const uint8_t *in,
    size_t len, uint8_t *out);

/*
 * proto_aead_decrypt(suite, key, n, ad, adlen, in, len, out):
 * Noise's DECRYPT(k, n, ad, ciphertext): in is len >= 16 bytes, the
 * ciphertext and its tag; write the len - 16 bytes of plaintext to out.
 * Return 0; PROTO_ESTATE as proto_aead_encrypt() does; PROTO_EBADMSG if
 * len < 16; or PROTO_EBADTAG with out wiped.
 */
int proto_aead_decrypt(int suite, const uint8_t key[PROTO_KEYBYTES],
    uint64_t n, const uint8_t *ad, size_t adlen, const uint8_t *in,
    size_t len, uint8_t *out);

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
 * proto_session_code(out, h2):
 * Write the session code of a handshake whose hash after message 2 is h2:
 * t = SHA-512("x25519chat/2 code" || h2), then 65536 times
 * t = SHA-512(t || h2); the code is t[0..8) in lowercase hex grouped
 * "xxxx-xxxx-xxxx-xxxx", and a NUL.
 */
void proto_session_code(char out[PROTO_CODELEN + 1],
    const uint8_t h2[PROTO_KEYBYTES]);

/*
 * proto_suites_available(void):
 * Return the PROTO_OFFER_* bits of the suites this CPU can run: ChaChaPoly
 * always, AESGCM only with hardware AES.
 */
int proto_suites_available(void);

/*
 * proto_suite_usable(suite):
 * Return 1 if suite is PROTO_AESGCM, PROTO_CHACHAPOLY or PROTO_CLASSIC and
 * this CPU can run it; else 0 with errno set (EINVAL for an unknown suite,
 * ENOTSUP for AES without hardware AES).
 */
int proto_suite_usable(int suite);

/*
 * proto_suite_name(suite):
 * Return the Noise name of PROTO_AESGCM or PROTO_CHACHAPOLY ("AESGCM",
 * "ChaChaPoly"), or "classic AES-256-GCM" for PROTO_CLASSIC.
 */
const char *proto_suite_name(int suite);

/*
 * Transport: one struct proto_cipher protects one direction of one
 * session.  It lives in guarded memory and is wiped when freed.
 */
struct proto_cipher;

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
struct proto_cipher *proto_cipher_new(const uint8_t key[PROTO_KEYBYTES],
    int suite);

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
 * ad, 32 zero bytes) with c's suite; the counter continues.  Return 0, or
 * PROTO_ECRYPTO with c unchanged.
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
 * proto_type_name(type):
 * Return the name of a default packet type ("DATA" ... "PING"), or
 * "unknown".
 */
const char *proto_type_name(int type);

/*
 * proto_body_check(type, bodylen):
 * Check a default packet's type and the length of the body after it:
 * DATA any, CLOSE, REKEY, ACK and PING empty, ERROR 1 to PROTO_ERRORMAX
 * bytes.  Return 0, or PROTO_EBADTYPE for an unknown type or a body of the
 * wrong length.
 */
int proto_body_check(int type, size_t bodylen);

/*
 * The order of a session's packets (default protocol).  One struct
 * proto_ends records both directions; the caller guards it.  Each side
 * sends CLOSE once, and no DATA after it; it sends ACK once, only after
 * the peer's CLOSE.  The listener's first packet is an empty DATA or an
 * ERROR; after it PING, REKEY and ERROR may come at any time.
 */
struct proto_ends {
	int initiator;		/* we are the connector */
	int got_any;		/* a packet has arrived */
	int sent_close, sent_ack;
	int got_close, got_ack;
};

/*
 * proto_ends_recv(e, type, bodylen, why):
 * Check that a packet of type with a body of bodylen bytes may arrive now
 * and record it.  Return 0; or PROTO_EBADTYPE or PROTO_EORDER with *why
 * naming the fault ("DATA after CLOSE"), e unchanged.
 */
int proto_ends_recv(struct proto_ends *e, int type, size_t bodylen,
    const char **why);

/*
 * proto_ends_send(e, type):
 * Check that we may send a packet of type now, and record it.  Return 0,
 * or PROTO_ESTATE with e unchanged.
 */
int proto_ends_send(struct proto_ends *e, int type);

/*
 * proto_ends_done(e):
 * Return nonzero once both directions have ended cleanly: we sent CLOSE
 * and got its ACK, and we got the peer's CLOSE and sent its ACK.
 */
int proto_ends_done(const struct proto_ends *e);

/*
 * The hello of x25519chat/2: frame 1 (the connector's offer: version,
 * suites, mode) and frame 2 (the listener's choice, or a refusal), each
 * framed "u32 big-endian length | body".  Both bodies go into the
 * prologue of the Noise handshake that follows.
 */
struct proto_hello {
	uint8_t f1[PROTO_HELLOMAX];	/* frame 1's body */
	size_t f1len;
	uint8_t f2[PROTO_HELLOMAX];	/* frame 2's body */
	size_t f2len;
	int version;		/* of the offer */
	int suites;		/* PROTO_OFFER_* bits offered */
	int mode;		/* PROTO_MODE_* */
	int choice;		/* PROTO_AESGCM or PROTO_CHACHAPOLY once agreed */
	int reason;		/* PROTO_REFUSE_* of a refusal, else 0 */
};

/* The prologue: PROTO_PROLOGUE, frame 1's body, frame 2's body. */
#define PROTO_PROLOGUEMAX	(sizeof(PROTO_PROLOGUE) - 1 + 2 * PROTO_HELLOMAX)

/*
 * proto_hello_offer(h, suites, mode):
 * Start h as the connector: frame 1 offers the PROTO_OFFER_* bits suites
 * in mode PROTO_MODE_XX or PROTO_MODE_PSK.  Return 0, or PROTO_ESTATE for
 * another mode or no suite.
 */
int proto_hello_offer(struct proto_hello *h, int suites, int mode);

/*
 * proto_hello_answer(h, f1, len, suites, has_psk, busy):
 * As the listener, read frame 1's body (len bytes) into h and answer it in
 * h->f2: refuse an unknown version or mode, a PSK mode that differs from
 * has_psk, an offer without any of our suites, or anyone when busy, in that
 * order; else choose AESGCM if both sides can run it, else ChaChaPoly.
 * Return 0 with h->choice set; PROTO_EREFUSED with h->reason set and the
 * refusal in h->f2; or PROTO_EBADHELLO for a frame of the wrong length,
 * with nothing to send.
 */
int proto_hello_answer(struct proto_hello *h, const uint8_t *f1, size_t len,
    int suites, int has_psk, int busy);

/*
 * proto_hello_read_answer(h, f2, len):
 * As the connector, read frame 2's body (len bytes) into h.  Return 0 with
 * h->choice set; PROTO_EREFUSED with h->reason set (1 to 9); PROTO_ECHOICE
 * for a suite we did not offer; or PROTO_EBADHELLO for anything else.
 */
int proto_hello_read_answer(struct proto_hello *h, const uint8_t *f2,
    size_t len);

/*
 * proto_hello_prologue(h, out):
 * Write the Noise prologue of the hello h into out (room for
 * PROTO_PROLOGUEMAX bytes) and return its length.
 */
size_t proto_hello_prologue(const struct proto_hello *h, uint8_t *out);

/*
 * proto_refusal_text(reason):
 * Return the words for the refusal reason, or NULL if it is not one.
 */
const char *proto_refusal_text(int reason);

/*
 * proto_hello_connect(fd, h, deadline):
 * Send h's frame 1 (made by proto_hello_offer()) on fd and read frame 2,
 * giving up at deadline (0: never).  Return as proto_hello_read_answer(),
 * or PROTO_EEOF, PROTO_ETRUNC, PROTO_ETIMEOUT or PROTO_EERRNO.
 */
int proto_hello_connect(int fd, struct proto_hello *h, int64_t deadline);

/*
 * proto_hello_accept(fd, h, suites, has_psk, busy, deadline):
 * Read frame 1 from fd, answer it as proto_hello_answer() does and send
 * frame 2 (the choice, or the refusal), giving up at deadline (0: never).
 * Return as proto_hello_answer(), or PROTO_EEOF, PROTO_ETRUNC,
 * PROTO_ETIMEOUT or PROTO_EERRNO.
 */
int proto_hello_accept(int fd, struct proto_hello *h, int suites,
    int has_psk, int busy, int64_t deadline);

/*
 * Handshakes: struct proto_hs runs one handshake of either protocol, one
 * message at a time, over byte buffers.
 */
struct proto_hs;

/*
 * Called with each named value as the handshake computes it (for -vv);
 * pubkey says the value is a public key, which is also worth showing in
 * base64.  buf is NULL for a step that names no value.
 */
typedef void proto_trace_fn(void *arg, const char *what,
    const uint8_t *buf, size_t len, int pubkey);

struct proto_hs_params {
	int initiator;		/* connector: 1, listener: 0 */
	int suite;		/* Noise: PROTO_AESGCM or PROTO_CHACHAPOLY;
				 * PROTO_CLASSIC: the original protocol */
	const uint8_t *s;	/* Noise: our static private key */
	const uint8_t *psk;	/* Noise: NULL, or a 32-byte PSK (XXpsk3) */
	const uint8_t *prologue;	/* Noise: NULL and 0 for none */
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
 * set on failure (EINVAL for an unknown suite or a Noise one without s).
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
 * proto_hs_h2(hs):
 * Noise: return the handshake hash as it was right after message 2 (32
 * bytes), the input of proto_session_code(); NULL before message 2 or in
 * classic.
 */
const uint8_t *proto_hs_h2(const struct proto_hs *hs);

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
