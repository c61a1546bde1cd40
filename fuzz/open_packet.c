/*
 * Fuzz target open_packet: the input's first byte picks a classic or a
 * default receiving cipher (FUZZ_CLASSIC), keyed with the fixed transport
 * key and fresh (counter 0); the rest is one whole transport packet, length
 * prefix included.  It goes through the receiver's two steps, as
 * session.c's drain() takes them: proto_open_len() on the prefix, then
 * proto_open() on the packet.  proto_open() is also given the packets the
 * program would never pass it (a bad prefix, a length that disagrees): it
 * must refuse those itself.
 */

#include "fuzz.h"

FUZZ_PLAIN_INIT

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	uint8_t key[PROTO_KEYBYTES];
	struct proto_cipher *c;
	uint8_t *pkt;
	size_t pktlen, len, ptlen;
	int classic, lenok, rc;

	if (size < 1)
		return (0);
	classic = (data[0] & FUZZ_CLASSIC) != 0;
	pktlen = size - 1;

	fuzz_key(key, FUZZ_KEY_TRANSPORT);
	if ((c = proto_cipher_new(key, classic)) == NULL)
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
	} else
		fuzz_check(proto_cipher_nonce(c) == 0,
		    "the counter moved on a refused packet");
	free(pkt);
	proto_cipher_free(c);
	return (0);
}
