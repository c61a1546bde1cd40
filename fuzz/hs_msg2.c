/*
 * Fuzz target hs_msg2: the connector (Noise initiator) with the fixed keys
 * writes handshake message 1, then reads the input, after its first byte,
 * as message 2 ("<- e, ee, s, es", payload the listener's name) through
 * proto_hs_read().  The first byte's FUZZ_PSK makes it an XXpsk3
 * handshake, and FUZZ_CHACHA picks ChaChaPoly.  When the message is accepted, the connector writes message 3
 * and splits, as the program would.
 */

#include "fuzz.h"

FUZZ_PLAIN_INIT

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static uint8_t msg1[PROTO_MAXHSMSG];
	struct proto_hs *hs;
	size_t len;

	if (size < 1)
		return (0);
	hs = fuzz_hs(1, data[0] & (FUZZ_PSK | FUZZ_CHACHA));
	fuzz_check(proto_hs_write(hs, NULL, 0, msg1, &len) == 0,
	    "message 1 could not be written");
	if (fuzz_hs_read(hs, data + 1, size - 1) == 0)
		fuzz_hs_finish(hs, FUZZ_NAME_INIT);
	proto_hs_free(hs);
	return (0);
}
