/*
 * Fuzz target hello2: the connector, having offered the suites in the
 * low bits of the input's first byte (FUZZ_HELLO_SUITES; none offered
 * means both) and a PSK if FUZZ_HELLO_PSK, reads the rest of the input as
 * the body of hello frame 2 (the listener's answer) through
 * proto_hello_read_answer().  It must take only a suite it offered, or a
 * well-formed refusal.
 */

#include "fuzz.h"

FUZZ_PLAIN_INIT

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct proto_hello h;
	const uint8_t *f2 = data + 1;
	size_t len = size - 1;
	int offer, rc;

	if (size < 1)
		return (0);
	if ((offer = data[0] & FUZZ_HELLO_SUITES) == 0)
		offer = PROTO_OFFER_AESGCM | PROTO_OFFER_CHACHAPOLY;
	fuzz_check(proto_hello_offer(&h, offer, data[0] & FUZZ_HELLO_PSK ?
	    PROTO_MODE_PSK : PROTO_MODE_XX) == 0, "the offer failed");
	rc = proto_hello_read_answer(&h, f2, len);
	switch (rc) {
	case 0:
		fuzz_check(len == 1 && h.choice == f2[0] &&
		    (h.choice == PROTO_AESGCM ? offer & PROTO_OFFER_AESGCM :
		    h.choice == PROTO_CHACHAPOLY &&
		    (offer & PROTO_OFFER_CHACHAPOLY)),
		    "a choice we did not offer was taken");
		break;
	case PROTO_EREFUSED:
		fuzz_check(len == 2 && f2[0] == 0 && h.reason == f2[1] &&
		    proto_refusal_text(h.reason) != NULL,
		    "a refusal of the wrong shape was taken");
		break;
	case PROTO_ECHOICE:
		fuzz_check(len == 1 && (f2[0] == PROTO_AESGCM ||
		    f2[0] == PROTO_CHACHAPOLY), "ECHOICE for no suite");
		break;
	case PROTO_EBADHELLO:
		break;
	default:
		fuzz_check(0, "an unexpected return code");
	}
	if (rc != PROTO_EBADHELLO || (len > 0 && len <= PROTO_HELLOMAX))
		fuzz_check(h.f2len == len, "frame 2 not kept whole");
	return (0);
}
