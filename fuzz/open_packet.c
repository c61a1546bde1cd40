/*
 * Fuzz target open_packet: the input's first byte picks a receiving
 * cipher, classic (FUZZ_CLASSIC) or a default one in AESGCM or ChaChaPoly
 * (FUZZ_CHACHA), keyed with the fixed transport key and fresh (counter 0);
 * the rest is one whole transport packet, length prefix included.  It goes
 * through the receiver's steps as session.c takes them: proto_open_len()
 * on the prefix, then proto_open() on the packet, then for a default
 * packet proto_ends_recv() on its type and body, with the order of the
 * session where the first byte puts it (FUZZ_CONNECT: we are the
 * connector; FUZZ_ENDS_*: what was sent and received before).
 * proto_open() is also given the packets the program would never pass it
 * (a bad prefix, a length that disagrees): it must refuse those itself.
 */

#include "fuzz.h"

FUZZ_PLAIN_INIT

/* Hold proto_ends_recv() to the rules x25519chat(1) states. */
static void
check_order(uint8_t flags, const uint8_t *pt, size_t ptlen)
{
	struct proto_ends e, before;
	const char *why;
	size_t bodylen = ptlen - 1;
	int type = pt[0], rc;

	memset(&e, 0, sizeof(e));
	e.initiator = (flags & FUZZ_CONNECT) != 0;
	e.sent_close = (flags & FUZZ_ENDS_SENT_CLOSE) != 0;
	e.got_close = (flags & FUZZ_ENDS_GOT_CLOSE) != 0;
	e.got_any = (flags & FUZZ_ENDS_GOT_ANY) != 0 || e.got_close;
	before = e;
	rc = proto_ends_recv(&e, type, bodylen, &why);
	if (rc != 0) {
		fuzz_check(why != NULL && memcmp(&e, &before, sizeof(e)) == 0,
		    "a refused packet changed the order or gave no reason");
		fuzz_check(rc == PROTO_EBADTYPE || rc == PROTO_EORDER,
		    "an unexpected error for a packet's order");
		return;
	}
	fuzz_check(proto_body_check(type, bodylen) == 0,
	    "a malformed body was taken");
	fuzz_check(type <= PROTO_PING, "an unknown type was taken");
	fuzz_check(!(type == PROTO_DATA && before.got_close),
	    "DATA taken after CLOSE");
	fuzz_check(!(type == PROTO_CLOSE && before.got_close),
	    "a second CLOSE taken");
	fuzz_check(!(type == PROTO_ACK && !before.sent_close),
	    "an ACK taken before our CLOSE");
	fuzz_check(!(before.initiator && !before.got_any &&
	    type != PROTO_ERROR && (type != PROTO_DATA || bodylen != 0)),
	    "the listener's first packet was neither empty DATA nor ERROR");
	fuzz_check(e.got_any, "an accepted packet was not recorded");
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	uint8_t key[PROTO_KEYBYTES];
	struct proto_cipher *c;
	uint8_t *pkt;
	size_t pktlen, len, ptlen;
	int classic, suite, lenok, rc;

	if (size < 1)
		return (0);
	classic = (data[0] & FUZZ_CLASSIC) != 0;
	suite = classic ? PROTO_CLASSIC : data[0] & FUZZ_CHACHA ?
	    PROTO_CHACHAPOLY : PROTO_AESGCM;
	pktlen = size - 1;

	fuzz_key(key, FUZZ_KEY_TRANSPORT);
	if ((c = proto_cipher_new(key, suite)) == NULL)
		abort();

	/* proto_open() decrypts in place: a copy of exactly pktlen bytes. */
	if ((pkt = malloc(pktlen)) == NULL && pktlen > 0)
		abort();
	memcpy(pkt, data + 1, pktlen);

	lenok = pktlen >= PROTO_LENBYTES &&
	    proto_open_len(c, pkt, &len) == 0 &&
	    len == pktlen - PROTO_LENBYTES;
	rc = proto_open(c, pkt, pktlen, &ptlen);
	if (!lenok)
		fuzz_check(rc == PROTO_EBADLEN,
		    "proto_open took a length proto_open_len refused");
	if (rc == 0) {
		fuzz_check(ptlen == pktlen - PROTO_HDRBYTES,
		    "plaintext length is not the packet's");
		fuzz_check(classic || ptlen >= 1,
		    "a default packet opened without its type byte");
		fuzz_check(proto_cipher_nonce(c) == 1,
		    "the counter did not advance");
		if (!classic)
			check_order(data[0], pkt + PROTO_HDRBYTES, ptlen);
	} else
		fuzz_check(proto_cipher_nonce(c) == 0,
		    "the counter moved on a refused packet");
	free(pkt);
	proto_cipher_free(c);
	return (0);
}
