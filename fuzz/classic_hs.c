/*
 * Fuzz target classic_hs: handshake_fd with the classic protocol forced,
 * so that the classic handshake is a target of its own.  The input's first
 * byte picks the role (FUZZ_CONNECT: the harness connects, else it
 * listens and writes its key first); the rest is what the peer sends, the
 * peer's raw 32-byte key in a valid exchange, fed to proto_handshake() over
 * a socketpair.
 */

#define FUZZ_ONLY_CLASSIC 1
#include "handshake_fd.c"
