/*
 * Fuzz target hello1: the listener reads the input, after its first byte,
 * as the body of hello frame 1 (the connector's offer) through
 * proto_hello_answer().  The first byte gives the listener's suites
 * (FUZZ_HELLO_SUITES, as the suites byte has them), whether it holds a
 * PSK (FUZZ_HELLO_PSK) and whether it is busy (FUZZ_HELLO_BUSY).  Its
 * answer must be what x25519chat(1) says, byte for byte, and go into the
 * prologue whole.
 */

#include "fuzz.h"

FUZZ_PLAIN_INIT

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	uint8_t prologue[PROTO_PROLOGUEMAX];
	struct proto_hello h;
	const uint8_t *f1 = data + 1;
	size_t len = size - 1, plen;
	int ours, psk, busy, rc;

	if (size < 1)
		return (0);
	ours = data[0] & FUZZ_HELLO_SUITES;
	psk = (data[0] & FUZZ_HELLO_PSK) != 0;
	busy = (data[0] & FUZZ_HELLO_BUSY) != 0;
	rc = proto_hello_answer(&h, f1, len, ours, psk, busy);
	switch (rc) {
	case 0:
		fuzz_check(len == 3 && f1[0] == PROTO_VERSION &&
		    f1[2] == (psk ? PROTO_MODE_PSK : PROTO_MODE_XX) && !busy,
		    "an offer of the wrong shape or mode was taken");
		fuzz_check(h.f2len == 1 && h.f2[0] == h.choice,
		    "the choice is not frame 2");
		fuzz_check(h.choice == PROTO_AESGCM ?
		    (f1[1] & ours & PROTO_OFFER_AESGCM) != 0 :
		    h.choice == PROTO_CHACHAPOLY &&
		    (f1[1] & ours & PROTO_OFFER_CHACHAPOLY) != 0 &&
		    (f1[1] & ours & PROTO_OFFER_AESGCM) == 0,
		    "a suite not both can run, or ChaChaPoly over AESGCM");
		break;
	case PROTO_EREFUSED:
		fuzz_check(h.f2len == 2 && h.f2[0] == 0 &&
		    h.f2[1] == h.reason && h.reason >= PROTO_REFUSE_VERSION &&
		    h.reason <= PROTO_REFUSE_MODE,
		    "a refusal that is not 0 | reason");
		fuzz_check((h.reason == PROTO_REFUSE_VERSION) ==
		    (f1[0] != PROTO_VERSION),
		    "a version refused for another reason, or version 2 as one");
		break;
	case PROTO_EBADHELLO:
		fuzz_check(h.f2len == 0, "something to send for a bad frame");
		fuzz_check(len == 0 || len > PROTO_HELLOMAX ||
		    f1[0] == PROTO_VERSION,
		    "another version called malformed, not refused");
		break;
	default:
		fuzz_check(0, "an unexpected return code");
	}
	if (rc != PROTO_EBADHELLO) {
		fuzz_check(h.f1len == len && memcmp(h.f1, f1, len) == 0,
		    "frame 1 not kept whole");
		plen = proto_hello_prologue(&h, prologue);
		fuzz_check(plen == strlen(PROTO_PROLOGUE) + len + h.f2len &&
		    memcmp(prologue + plen - h.f2len, h.f2, h.f2len) == 0,
		    "the prologue is not label | frame 1 | frame 2");
	}
	return (0);
}
