/*
 * Fuzz target keyfile: the input is the contents of a key file (identity
 * or PSK), given whole to proto_keyfile_parse(), as trust.c's
 * trust_load_key() does with what read_keyfile() read.  A key that
 * parses must have been written in its one canonical form:
 * proto_key_encode() of the result gives back the input's first 44
 * bytes.
 */

#include "fuzz.h"

FUZZ_PLAIN_INIT

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	uint8_t key[PROTO_KEYBYTES];
	char text[PROTO_B64LEN + 1];

	if (proto_keyfile_parse(key, (const char *)data, size) != 0)
		return (0);
	fuzz_check(size == PROTO_B64LEN ||
	    (size == PROTO_B64LEN + 1 && data[PROTO_B64LEN] == '\n'),
	    "a key file of the wrong size parsed");
	proto_key_encode(text, key);
	fuzz_check(memcmp(text, data, PROTO_B64LEN) == 0,
	    "a key parsed from a text that is not its own");
	return (0);
}
