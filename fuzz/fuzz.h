#ifndef FUZZ_H
#define FUZZ_H

/*
 * What the fuzz targets and the seed generator (mkseeds.c) share: fixed
 * keys, so that every handshake between the harness and its imagined peer
 * is the same one each run and the committed seeds stay valid inputs; the
 * names both sides send; and the input layouts of the targets.
 *
 * Changing anything here changes the meaning of the committed seeds:
 * regenerate them with mkseeds (see its top comment).
 */

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "../proto.h"

/* The fixed keys, by role. */
#define FUZZ_KEY_TRANSPORT	1	/* the key of open_packet's ciphers */
#define FUZZ_KEY_INIT_S	2	/* the connector's static private key */
#define FUZZ_KEY_RESP_S	3	/* the listener's static private key */
#define FUZZ_KEY_INIT_E	4	/* the connector's ephemeral private key */
#define FUZZ_KEY_RESP_E	5	/* the listener's ephemeral private key */
#define FUZZ_KEY_PSK	6	/* the pre-shared key */

/* Handshake payloads: the names the program would send. */
#define FUZZ_NAME_INIT	"connector"
#define FUZZ_NAME_RESP	"listener"

/* The known_peers name the keylists target looks for. */
#define FUZZ_HOSTPORT	"example.org:5000"

/*
 * Every target that needs choices takes them from the first byte of its
 * input, and the rest of the input is its subject: open_packet reads
 * FUZZ_CLASSIC, FUZZ_CHACHA, FUZZ_CONNECT and the FUZZ_ENDS_* bits;
 * hs_msg1, hs_msg2 and hs_msg3 read FUZZ_PSK and FUZZ_CHACHA;
 * handshake_fd reads the first five, classic_hs only FUZZ_CONNECT;
 * hello1 and hello2 read the FUZZ_HELLO_* bits.
 */
#define FUZZ_PSK	0x01	/* an XXpsk3 handshake */
#define FUZZ_CONNECT	0x02	/* the harness is the connector (initiator) */
#define FUZZ_CLASSIC	0x04	/* the classic protocol */
#define FUZZ_REFUSE	0x08	/* the verify callback refuses every key */
#define FUZZ_CHACHA	0x10	/* ChaChaPoly rather than AESGCM */
/* open_packet: where the session's packet order stands. */
#define FUZZ_ENDS_SENT_CLOSE	0x20
#define FUZZ_ENDS_GOT_CLOSE	0x40
#define FUZZ_ENDS_GOT_ANY	0x80
/* hello1 and hello2: the harness's suites (the low two bits, as the
 * suites byte has them), whether it has a PSK, and whether it is busy. */
#define FUZZ_HELLO_SUITES	0x03
#define FUZZ_HELLO_PSK		0x04
#define FUZZ_HELLO_BUSY		0x08

/*
 * fuzz_key(out, which):
 * Fill out with the fixed key number which; each number gives another
 * key.
 */
static inline void
fuzz_key(uint8_t out[PROTO_KEYBYTES], int which)
{
	int i;

	for (i = 0; i < PROTO_KEYBYTES; i++)
		out[i] = (uint8_t)(which * 0x21 + i * 0x07);
}

/*
 * fuzz_init(void):
 * Start libsodium; a target that cannot run AES-256-GCM would fuzz only
 * half of what it should, so stop loudly instead.
 */
static inline void
fuzz_init(void)
{

	if (sodium_init() < 0 || !crypto_aead_aes256gcm_is_available()) {
		fprintf(stderr, "fuzz: libsodium with AES-256-GCM is needed\n");
		abort();
	}
}

/*
 * FUZZ_PLAIN_INIT: the LLVMFuzzerInitialize() of a target that needs only
 * fuzz_init().
 */
#define FUZZ_PLAIN_INIT							\
int									\
LLVMFuzzerInitialize(int *argc, char ***argv)				\
{									\
	(void)argc;							\
	(void)argv;							\
	fuzz_init();							\
	return (0);							\
}

/*
 * fuzz_suites(suite):
 * The suites both ends offer in the hellos of the fuzz targets: both for
 * AESGCM, which is then chosen; ChaChaPoly alone for ChaChaPoly.
 */
static inline int
fuzz_suites(int suite)
{

	return (suite == PROTO_CHACHAPOLY ? PROTO_OFFER_CHACHAPOLY :
	    PROTO_OFFER_AESGCM | PROTO_OFFER_CHACHAPOLY);
}

/*
 * fuzz_hello(h, suite, psk):
 * The hello of two ends that offer fuzz_suites(suite): what goes into the
 * prologue of the handshake after it.
 */
static inline void
fuzz_hello(struct proto_hello *h, int suite, int psk)
{
	struct proto_hello offer;

	if (proto_hello_offer(&offer, fuzz_suites(suite), psk ?
	    PROTO_MODE_PSK : PROTO_MODE_XX) != 0 ||
	    proto_hello_answer(h, offer.f1, offer.f1len, fuzz_suites(suite),
	    psk, 0) != 0 || h->choice != suite) {
		fprintf(stderr, "fuzz: the hello failed\n");
		abort();
	}
}

/*
 * fuzz_hs_as(initiator, suite, psk, h):
 * Start a handshake with the fixed keys of that role, as the program
 * would after the hello h (NULL in classic), but for the fixed ephemeral
 * key.  Abort if that fails: it is not the input's doing.
 */
static inline struct proto_hs *
fuzz_hs_as(int initiator, int suite, int psk, const struct proto_hello *h)
{
	uint8_t s[PROTO_KEYBYTES], e[PROTO_KEYBYTES], k[PROTO_KEYBYTES];
	uint8_t prologue[PROTO_PROLOGUEMAX];
	struct proto_hs_params p;
	struct proto_hs *hs;

	fuzz_key(s, initiator ? FUZZ_KEY_INIT_S : FUZZ_KEY_RESP_S);
	fuzz_key(e, initiator ? FUZZ_KEY_INIT_E : FUZZ_KEY_RESP_E);
	fuzz_key(k, FUZZ_KEY_PSK);
	memset(&p, 0, sizeof(p));
	p.initiator = initiator;
	p.suite = suite;
	p.s = s;
	p.psk = psk ? k : NULL;
	p.e = e;
	if (h != NULL) {
		p.prologuelen = proto_hello_prologue(h, prologue);
		p.prologue = prologue;
	}
	if ((hs = proto_hs_new(&p)) == NULL) {
		perror("fuzz: proto_hs_new");
		abort();
	}
	return (hs);
}

/*
 * fuzz_hs(initiator, flags):
 * fuzz_hs_as() for the handshake the flag byte picks: classic, or Noise
 * in the suite of FUZZ_CHACHA, with a PSK for FUZZ_PSK, after the hello
 * that agreed on it.
 */
static inline struct proto_hs *
fuzz_hs(int initiator, int flags)
{
	struct proto_hello h;
	int suite = flags & FUZZ_CHACHA ? PROTO_CHACHAPOLY : PROTO_AESGCM;
	int psk = (flags & FUZZ_PSK) != 0;

	if (flags & FUZZ_CLASSIC)
		return (fuzz_hs_as(initiator, PROTO_CLASSIC, 0, NULL));
	fuzz_hello(&h, suite, psk);
	return (fuzz_hs_as(initiator, suite, psk, &h));
}

/*
 * fuzz_check(ok, what):
 * A broken contract of the code under test is a finding: abort, so that
 * libFuzzer saves the input.
 */
static inline void
fuzz_check(int ok, const char *what)
{

	if (!ok) {
		fprintf(stderr, "fuzz: contract broken: %s\n", what);
		abort();
	}
}

/*
 * fuzz_hs_read(hs, msg, msglen):
 * proto_hs_read() the message with exactly msglen bytes of room for the
 * payload, as its contract allows, so that ASan sees any byte more; hold
 * it to the rest of its contract too.  Return its result.
 */
static inline int
fuzz_hs_read(struct proto_hs *hs, const uint8_t *msg, size_t msglen)
{
	uint8_t *payload;
	size_t plen = SIZE_MAX;
	int rc;

	if ((payload = malloc(msglen)) == NULL && msglen > 0)
		abort();
	rc = proto_hs_read(hs, msg, msglen, payload, &plen);
	fuzz_check(plen <= msglen, "payload longer than the message");
	if (rc != 0)
		fuzz_check(plen == 0 && proto_hs_next(hs) == PROTO_HS_FAILED,
		    "a refused message left a payload or a usable state");
	free(payload);
	return (rc);
}

/*
 * fuzz_hs_finish(hs, name):
 * Go on as the program would after a message was accepted: write our
 * messages, with name as their payload, until the peer's turn comes or
 * the handshake is done; once done, split it into the two ciphers.
 */
static inline void
fuzz_hs_finish(struct proto_hs *hs, const char *name)
{
	static uint8_t msg[PROTO_MAXHSMSG];
	struct proto_cipher *tx, *rx;
	size_t msglen;

	while (proto_hs_next(hs) == PROTO_HS_WRITE)
		if (proto_hs_write(hs, (const uint8_t *)name, strlen(name),
		    msg, &msglen) != 0)
			return;
	if (proto_hs_next(hs) != PROTO_HS_DONE)
		return;
	fuzz_check(proto_hs_remote_static(hs) != NULL,
	    "done without the peer's static key");
	fuzz_check(proto_hs_split(hs, &tx, &rx) == 0, "split failed");
	proto_cipher_free(tx);
	proto_cipher_free(rx);
}

#endif /* !FUZZ_H */
