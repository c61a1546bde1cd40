/*
 * Fuzz target hs_msg1: the listener (Noise responder) with the fixed keys
 * reads the input, after its first byte, as handshake message 1 ("-> e",
 * payload empty), through proto_hs_read().  The first byte's FUZZ_PSK
 * makes it an XXpsk3 handshake, whose message 1 carries a tag, and
 * FUZZ_CHACHA picks ChaChaPoly.  When the message is accepted, the
 * responder goes on to write message 2 as the program would.
 */

#include "fuzz.h"

FUZZ_PLAIN_INIT

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct proto_hs *hs;

	if (size < 1)
		return (0);
	hs = fuzz_hs(0, data[0] & (FUZZ_PSK | FUZZ_CHACHA));
	if (fuzz_hs_read(hs, data + 1, size - 1) == 0)
		fuzz_hs_finish(hs, FUZZ_NAME_RESP);
	proto_hs_free(hs);
	return (0);
}
