/*
 * Fuzz target hs_msg3: the listener (Noise responder) with the fixed keys
 * reads the connector's real message 1, writes message 2 (payload
 * FUZZ_NAME_RESP), then reads the input, after its first byte, as message
 * 3 ("-> s, se", payload the connector's name; "-> s, se, psk" with a PSK)
 * through proto_hs_read().  The first byte's FUZZ_PSK makes it an
 * XXpsk3 handshake, and FUZZ_CHACHA picks ChaChaPoly.  When the message
 * is accepted, the handshake is split, as the program would.
 */

#include "fuzz.h"

/* The connector's message 1 for each pair of FUZZ_PSK and FUZZ_CHACHA. */
static uint8_t msg1[4][PROTO_MAXHSMSG];
static size_t msg1len[4];

/* The index of msg1 for the flags. */
static int
which(int flags)
{

	return ((flags & FUZZ_PSK ? 1 : 0) + (flags & FUZZ_CHACHA ? 2 : 0));
}

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	struct proto_hs *hs;
	int i;

	(void)argc;
	(void)argv;
	fuzz_init();
	/* i is which() of these flags. */
	for (i = 0; i < 4; i++) {
		hs = fuzz_hs(1, (i & 1 ? FUZZ_PSK : 0) |
		    (i & 2 ? FUZZ_CHACHA : 0));
		fuzz_check(proto_hs_write(hs, NULL, 0, msg1[i],
		    &msg1len[i]) == 0, "message 1 could not be written");
		proto_hs_free(hs);
	}
	return (0);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static uint8_t msg2[PROTO_MAXHSMSG];
	struct proto_hs *hs;
	size_t len;
	int w;

	if (size < 1)
		return (0);
	w = which(data[0]);
	hs = fuzz_hs(0, data[0] & (FUZZ_PSK | FUZZ_CHACHA));
	fuzz_check(fuzz_hs_read(hs, msg1[w], msg1len[w]) == 0,
	    "the real message 1 was refused");
	fuzz_check(proto_hs_write(hs, (const uint8_t *)FUZZ_NAME_RESP,
	    strlen(FUZZ_NAME_RESP), msg2, &len) == 0,
	    "message 2 could not be written");
	if (fuzz_hs_read(hs, data + 1, size - 1) == 0)
		fuzz_hs_finish(hs, FUZZ_NAME_RESP);
	proto_hs_free(hs);
	return (0);
}
