/*
 * The handshakes of the x25519chat protocols: x25519chat/2's hello, the
 * Noise XX and XXpsk3 handshakes (Noise revision 34) with either suite,
 * and the classic X25519-TCP-Chat exchange, over byte buffers and over a
 * file descriptor.  The ciphers they end in, and the AEAD they use, are
 * proto.c's.  See x25519chat(1) for the wire format.
 */

#include <errno.h>
#include <stdio.h>
#include <stdint.h>
#include <string.h>

#include <sodium.h>

#include "proto.h"

#define CLASSIC_INFO	"handshake data"

/* Size of each Noise handshake message with an empty payload. */
#define MSG1_BASE	PROTO_KEYBYTES
#define MSG2_BASE	(2 * PROTO_KEYBYTES + 2 * PROTO_TAGBYTES)
#define MSG3_BASE	(PROTO_KEYBYTES + 2 * PROTO_TAGBYTES)

struct proto_hs {
	int initiator;
	int classic;
	int suite;		/* Noise: PROTO_AESGCM or PROTO_CHACHAPOLY */
	int has_psk;
	int step;		/* handshake messages done so far */
	int failed;
	int split;
	/* Noise SymmetricState. */
	uint8_t ck[PROTO_KEYBYTES];
	uint8_t h[PROTO_KEYBYTES];
	uint8_t h2[PROTO_KEYBYTES];	/* h right after message 2 */
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

/* The hello of x25519chat/2. */

/*
 * proto_hello_offer(h, suites, mode):
 * Start h as the connector: frame 1 offers the PROTO_OFFER_* bits suites
 * in mode PROTO_MODE_XX or PROTO_MODE_PSK.  Return 0, or PROTO_ESTATE for
 * another mode or no suite.
 */
int
proto_hello_offer(struct proto_hello *h, int suites, int mode)
{

	memset(h, 0, sizeof(*h));
	suites &= PROTO_OFFER_AESGCM | PROTO_OFFER_CHACHAPOLY;
	if (suites == 0 || (mode != PROTO_MODE_XX && mode != PROTO_MODE_PSK))
		return (PROTO_ESTATE);
	h->version = PROTO_VERSION;
	h->suites = suites;
	h->mode = mode;
	h->f1[0] = PROTO_VERSION;
	h->f1[1] = (uint8_t)suites;
	h->f1[2] = (uint8_t)mode;
	h->f1len = 3;
	return (0);
}

/* The listener's refusal: frame 2 = 0 | reason. */
static int
refuse(struct proto_hello *h, int reason)
{

	h->reason = reason;
	h->f2[0] = 0;
	h->f2[1] = (uint8_t)reason;
	h->f2len = 2;
	return (PROTO_EREFUSED);
}

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
int
proto_hello_answer(struct proto_hello *h, const uint8_t *f1, size_t len,
    int suites, int has_psk, int busy)
{
	int common;

	memset(h, 0, sizeof(*h));
	if (len == 0 || len > PROTO_HELLOMAX)
		return (PROTO_EBADHELLO);
	memcpy(h->f1, f1, len);
	h->f1len = len;
	/* Whatever a later version puts after its first byte, it is told
	 * plainly that we do not speak it. */
	h->version = f1[0];
	if (h->version != PROTO_VERSION)
		return (refuse(h, PROTO_REFUSE_VERSION));
	if (len < 3)
		return (PROTO_EBADHELLO);
	h->suites = f1[1];
	h->mode = f1[2];
	if (h->mode != PROTO_MODE_XX && h->mode != PROTO_MODE_PSK)
		return (refuse(h, PROTO_REFUSE_MODE));
	/* Modes 0 and 1 carry no mode data. */
	if (len != 3)
		return (PROTO_EBADHELLO);
	if (h->mode == PROTO_MODE_XX && has_psk)
		return (refuse(h, PROTO_REFUSE_NEEDPSK));
	if (h->mode == PROTO_MODE_PSK && !has_psk)
		return (refuse(h, PROTO_REFUSE_NOPSK));
	/* Bits we do not know are ignored. */
	common = h->suites & suites &
	    (PROTO_OFFER_AESGCM | PROTO_OFFER_CHACHAPOLY);
	if (common == 0)
		return (refuse(h, PROTO_REFUSE_CIPHER));
	if (busy)
		return (refuse(h, PROTO_REFUSE_BUSY));
	h->choice = (common & PROTO_OFFER_AESGCM) ? PROTO_AESGCM :
	    PROTO_CHACHAPOLY;
	h->f2[0] = (uint8_t)h->choice;
	h->f2len = 1;
	return (0);
}

/*
 * proto_hello_read_answer(h, f2, len):
 * As the connector, read frame 2's body (len bytes) into h.  Return 0 with
 * h->choice set; PROTO_EREFUSED with h->reason set (1 to 9); PROTO_ECHOICE
 * for a suite we did not offer; or PROTO_EBADHELLO for anything else.
 */
int
proto_hello_read_answer(struct proto_hello *h, const uint8_t *f2,
    size_t len)
{
	int bit;

	h->f2len = 0;
	h->choice = h->reason = 0;
	if (len == 0 || len > PROTO_HELLOMAX)
		return (PROTO_EBADHELLO);
	memcpy(h->f2, f2, len);
	h->f2len = len;
	if (f2[0] == 0) {
		if (len != 2 || f2[1] < PROTO_REFUSE_VERSION ||
		    f2[1] > PROTO_REFUSE_USEDCODE)
			return (PROTO_EBADHELLO);
		h->reason = f2[1];
		return (PROTO_EREFUSED);
	}
	if (len != 1 || (f2[0] != PROTO_AESGCM && f2[0] != PROTO_CHACHAPOLY))
		return (PROTO_EBADHELLO);
	bit = f2[0] == PROTO_AESGCM ? PROTO_OFFER_AESGCM :
	    PROTO_OFFER_CHACHAPOLY;
	if ((h->suites & bit) == 0)
		return (PROTO_ECHOICE);
	h->choice = f2[0];
	return (0);
}

/*
 * proto_hello_prologue(h, out):
 * Write the Noise prologue of the hello h into out (room for
 * PROTO_PROLOGUEMAX bytes) and return its length.
 */
size_t
proto_hello_prologue(const struct proto_hello *h, uint8_t *out)
{
	size_t n = strlen(PROTO_PROLOGUE);

	memcpy(out, PROTO_PROLOGUE, n);
	memcpy(out + n, h->f1, h->f1len);
	memcpy(out + n + h->f1len, h->f2, h->f2len);
	return (n + h->f1len + h->f2len);
}

/*
 * proto_refusal_text(reason):
 * Return the words for the refusal reason, or NULL if it is not one.
 */
const char *
proto_refusal_text(int reason)
{
	static const char *const text[] = {
		NULL,
		"the listener does not speak this version of the protocol",
		"the listener has no cipher in common with us",
		"the listener requires a pre-shared key (--psk)",
		"the listener has no pre-shared key (leave out --psk)",
		"the listener is busy",
		"the listener does not know the mode we asked for",
		"the listener requires a short code",
		"the listener has no short code",
		"this short code was already used",
	};

	if (reason < 1 || reason > PROTO_REFUSE_USEDCODE)
		return (NULL);
	return (text[reason]);
}

/* Handshakes. */

static void
trace(struct proto_hs *hs, const char *what, const uint8_t *buf, size_t len)
{

	if (hs->trace != NULL)
		hs->trace(hs->trace_arg, what, buf, len, 0);
}

/* A public key, which the trace also shows as its key text. */
static void
trace_pub(struct proto_hs *hs, const char *what, const uint8_t *key)
{

	if (hs->trace != NULL)
		hs->trace(hs->trace_arg, what, key, PROTO_KEYBYTES, 1);
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

/*
 * EncryptAndHash: out receives len (+ 16 once keyed) bytes, ciphertext
 * then tag, as Noise lays them out.  The trace shows the plaintext as
 * ptname and what goes out as ctname, either NULL for none, before h.
 */
static int
encrypt_and_hash(struct proto_hs *hs, const uint8_t *in, size_t len,
    uint8_t *out, size_t *outlen, const char *ptname, const char *ctname)
{
	int rc;

	if (ptname != NULL)
		trace(hs, ptname, in, len);
	if (!hs->has_k) {
		memmove(out, in, len);
		*outlen = len;
	} else {
		if (hs->n == UINT64_MAX)
			return (PROTO_ENONCES);
		if ((rc = proto_aead_encrypt(hs->suite, hs->k, hs->n++, hs->h,
		    sizeof(hs->h), in, len, out)) != 0)
			return (rc);
		*outlen = len + PROTO_TAGBYTES;
	}
	if (ctname != NULL)
		trace(hs, ctname, out, *outlen);
	mix_hash(hs, out, *outlen);
	return (0);
}

/*
 * DecryptAndHash: out receives len (- 16 once keyed) bytes.  The trace
 * shows what came in as ctname and the plaintext as ptname (a public key
 * if pub), either NULL for none, before h: in the order the writer's
 * trace shows them.
 */
static int
decrypt_and_hash(struct proto_hs *hs, const uint8_t *in, size_t len,
    uint8_t *out, size_t *outlen, const char *ctname, const char *ptname,
    int pub)
{
	int rc;

	if (ctname != NULL)
		trace(hs, ctname, in, len);
	if (!hs->has_k) {
		memmove(out, in, len);
		*outlen = len;
	} else {
		if (len < PROTO_TAGBYTES)
			return (PROTO_EBADMSG);
		if (hs->n == UINT64_MAX)
			return (PROTO_ENONCES);
		if ((rc = proto_aead_decrypt(hs->suite, hs->k, hs->n++, hs->h,
		    sizeof(hs->h), in, len, out)) != 0)
			return (rc);
		*outlen = len - PROTO_TAGBYTES;
	}
	if (ptname != NULL && pub && *outlen == PROTO_KEYBYTES)
		trace_pub(hs, ptname, out);
	else if (ptname != NULL)
		trace(hs, ptname, out, *outlen);
	mix_hash(hs, in, len);
	return (0);
}

/*
 * proto_hs_new(p):
 * Start a handshake with the parameters p (copied).  Return NULL with errno
 * set on failure (EINVAL for an unknown suite or a Noise one without s).
 */
struct proto_hs *
proto_hs_new(const struct proto_hs_params *p)
{
	struct proto_hs *hs;
	const uint8_t *prologue;
	char name[64];

	if (!proto_suite_usable(p->suite))
		return (NULL);
	if (p->suite != PROTO_CLASSIC && p->s == NULL) {
		errno = EINVAL;
		return (NULL);
	}
	if ((hs = sodium_malloc(sizeof(*hs))) == NULL)
		return (NULL);
	memset(hs, 0, sizeof(*hs));
	hs->initiator = p->initiator;
	hs->classic = p->suite == PROTO_CLASSIC;
	hs->suite = p->suite;
	hs->trace = p->trace;
	hs->trace_arg = p->trace_arg;
	if (p->e != NULL) {
		memcpy(hs->fixed_e, p->e, PROTO_KEYBYTES);
		hs->has_fixed_e = 1;
	}
	if (hs->classic)
		return (hs);

	memcpy(hs->s, p->s, PROTO_KEYBYTES);
	(void)crypto_scalarmult_base(hs->spub, hs->s);
	if (p->psk != NULL) {
		memcpy(hs->psk, p->psk, PROTO_KEYBYTES);
		hs->has_psk = 1;
	}

	/* InitializeSymmetric(protocol_name), MixHash(prologue). */
	snprintf(name, sizeof(name), "Noise_%s_25519_%s_SHA256",
	    hs->has_psk ? "XXpsk3" : "XX", proto_suite_name(hs->suite));
	trace(hs, name, NULL, 0);
	if (strlen(name) <= sizeof(hs->h))
		memcpy(hs->h, name, strlen(name));
	else
		crypto_hash_sha256(hs->h, (const uint8_t *)name, strlen(name));
	memcpy(hs->ck, hs->h, sizeof(hs->h));
	trace(hs, "h", hs->h, sizeof(hs->h));
	trace(hs, "ck", hs->ck, sizeof(hs->ck));
	prologue = p->prologuelen > 0 ? p->prologue : (const uint8_t *)"";
	trace(hs, "prologue", prologue, p->prologuelen);
	mix_hash(hs, prologue, p->prologuelen);
	trace_pub(hs, "s.public", hs->spub);
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
	trace_pub(hs, "e.public", hs->epub);
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
	trace_pub(hs, "re", hs->re);
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
	    &n, NULL, "s (as sent)")) != 0)
		return (rc);
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
	if ((rc = decrypt_and_hash(hs, msg + *off, need, hs->rs, &n,
	    "s (as received)", "rs", 1)) != 0)
		return (rc);
	*off += need;
	hs->has_rs = 1;
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

/*
 * Keep h as message 2 leaves it, the input of the session code: the
 * listener's side of it is fixed before a man in the middle sees anything
 * of the listener's, unlike the final h, which covers message 3.
 */
static void
keep_h2(struct proto_hs *hs)
{

	memcpy(hs->h2, hs->h, sizeof(hs->h2));
	trace(hs, "h2 (h after message 2, for the session code)", hs->h2,
	    sizeof(hs->h2));
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
	if ((rc = encrypt_and_hash(hs, payload, plen, msg + off, &n, "payload",
	    NULL)) != 0)
		return (rc);
	*msglen = off + n;
	if (hs->step == 1)
		keep_h2(hs);
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
		if ((rc = tok_e_read(hs, msg, msglen, &off)) != 0)
			return (rc);
		break;
	case 1:
		trace(hs, "<- e, ee, s, es", NULL, 0);
		if ((rc = tok_e_read(hs, msg, msglen, &off)) != 0 ||
		    (rc = tok_dh(hs, "ee")) != 0 ||
		    (rc = tok_s_read(hs, msg, msglen, &off)) != 0 ||
		    (rc = tok_dh(hs, "es")) != 0)
			return (rc);
		break;
	default:
		trace(hs, hs->has_psk ? "-> s, se, psk" : "-> s, se", NULL, 0);
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
	    plen, NULL, "payload", 0)) != 0)
		return (rc);
	if (hs->step == 1)
		keep_h2(hs);
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
		if (msglen != PROTO_KEYBYTES)
			rc = PROTO_EBADMSG;
		else {
			memcpy(hs->re, msg, PROTO_KEYBYTES);
			trace_pub(hs, "re", hs->re);
			/* The listener reads second: both keys are known. */
			rc = hs->initiator ? 0 : classic_derive(hs);
		}
	} else
		rc = noise_read(hs, msg, msglen, payload, plen);
	/* Last, as the writer shows the message it sent: in a failure too,
	 * which it helps to understand. */
	trace(hs, rc == 0 ? "message received" : "message received, and "
	    "refused", msg, msglen);
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
 * proto_hs_h2(hs):
 * Noise: return the handshake hash as it was right after message 2 (32
 * bytes), the input of proto_session_code(); NULL before message 2 or in
 * classic.
 */
const uint8_t *
proto_hs_h2(const struct proto_hs *hs)
{

	return (hs->classic || hs->step < 2 ? NULL : hs->h2);
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
	*tx = proto_cipher_new(hs->initiator ? k1 : k2, hs->suite);
	*rx = proto_cipher_new(hs->initiator ? k2 : k1, hs->suite);
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
send_msg(int fd, const struct proto_hs *hs, const uint8_t *msg,
    size_t msglen)
{

	if (hs->classic)
		return (proto_write_full(fd, msg, msglen));
	return (proto_frame_write(fd, msg, msglen));
}

static int
recv_msg(int fd, const struct proto_hs *hs, uint8_t *msg, size_t *msglen,
    int64_t deadline)
{
	int rc;

	if (!hs->classic) {
		rc = proto_frame_read(fd, msg, msg_max(hs), msglen, deadline);
		return (rc == PROTO_EBADLEN ? PROTO_EBADMSG : rc);
	}
	*msglen = PROTO_KEYBYTES;
	return (proto_read_full(fd, msg, PROTO_KEYBYTES, deadline));
}

/*
 * proto_hello_connect(fd, h, deadline):
 * Send h's frame 1 (made by proto_hello_offer()) on fd and read frame 2,
 * giving up at deadline (0: never).  Return as proto_hello_read_answer(),
 * or PROTO_EEOF, PROTO_ETRUNC, PROTO_ETIMEOUT or PROTO_EERRNO.
 */
int
proto_hello_connect(int fd, struct proto_hello *h, int64_t deadline)
{
	uint8_t f2[PROTO_HELLOMAX];
	size_t len;
	int rc;

	if ((rc = proto_frame_write(fd, h->f1, h->f1len)) != 0 ||
	    (rc = proto_frame_read(fd, f2, sizeof(f2), &len, deadline)) != 0)
		return (rc == PROTO_EBADLEN ? PROTO_EBADHELLO : rc);
	return (proto_hello_read_answer(h, f2, len));
}

/*
 * proto_hello_accept(fd, h, suites, has_psk, busy, deadline):
 * Read frame 1 from fd, answer it as proto_hello_answer() does and send
 * frame 2 (the choice, or the refusal), giving up at deadline (0: never).
 * Return as proto_hello_answer(), or PROTO_EEOF, PROTO_ETRUNC,
 * PROTO_ETIMEOUT or PROTO_EERRNO.
 */
int
proto_hello_accept(int fd, struct proto_hello *h, int suites,
    int has_psk, int busy, int64_t deadline)
{
	uint8_t f1[PROTO_HELLOMAX];
	size_t len;
	int rc, wrc;

	memset(h, 0, sizeof(*h));
	if ((rc = proto_frame_read(fd, f1, sizeof(f1), &len, deadline)) != 0)
		return (rc == PROTO_EBADLEN ? PROTO_EBADHELLO : rc);
	rc = proto_hello_answer(h, f1, len, suites, has_psk, busy);
	if ((rc == 0 || rc == PROTO_EREFUSED) &&
	    (wrc = proto_frame_write(fd, h->f2, h->f2len)) != 0)
		return (wrc);
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
	uint8_t buf[MSG2_BASE + PROTO_NAMEMAX];
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
			    buf, &msglen)) == 0)
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
