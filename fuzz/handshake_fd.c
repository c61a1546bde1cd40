/*
 * Fuzz target handshake_fd: what the program calls on one end of a
 * socketpair, with the fixed keys: proto_hello_connect() or
 * proto_hello_accept(), then proto_handshake() in the suite and with the
 * prologue the hello gave; in classic, proto_handshake() alone.  The
 * input's first byte picks the role (FUZZ_CONNECT: the harness connects,
 * else it listens), the protocol (FUZZ_CLASSIC), a PSK (FUZZ_PSK), the
 * suites offered (FUZZ_CHACHA: ChaChaPoly alone, else both) and whether
 * the verify callback refuses every key (FUZZ_REFUSE; otherwise it
 * accepts the fixed peer's key only, as --peer does).  The rest of the
 * input is what the peer sends: it is written to the other end, which is
 * then shut for writing, so the handshake meets the end of the stream
 * instead of waiting.  classic_hs.c builds this file again with the
 * classic protocol forced.
 */

#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include "fuzz.h"

#ifndef FUZZ_ONLY_CLASSIC
#define FUZZ_ONLY_CLASSIC 0
#endif

/* The peer's bytes wait in the socket buffer: keep well below its size. */
#define PEER_MAX	65536

/* The static public key each role expects of its peer. */
static uint8_t want_resp[PROTO_KEYBYTES];	/* what the connector wants */
static uint8_t want_init[PROTO_KEYBYTES];	/* what the listener wants */

/* The verify callback: accept only the key arg points to, if any. */
static int
verify(void *arg, const uint8_t rs[PROTO_KEYBYTES])
{
	const uint8_t *want = arg;

	if (want == NULL || sodium_memcmp(rs, want, PROTO_KEYBYTES) != 0)
		return (-1);
	return (0);
}

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	uint8_t s[PROTO_KEYBYTES];

	(void)argc;
	(void)argv;
	fuzz_init();
	/* As in the program: a closed socket is an error, not a signal. */
	(void)signal(SIGPIPE, SIG_IGN);
	fuzz_key(s, FUZZ_KEY_RESP_S);
	(void)crypto_scalarmult_base(want_resp, s);
	fuzz_key(s, FUZZ_KEY_INIT_S);
	(void)crypto_scalarmult_base(want_init, s);
	return (0);
}

/*
 * The hello, as the program runs it: return its result, with the hello in
 * *h; hold it to its contract.
 */
static int
hello(int fd, int initiator, int psk, int chacha, int64_t deadline,
    struct proto_hello *h)
{
	int suites = fuzz_suites(chacha ? PROTO_CHACHAPOLY : PROTO_AESGCM);
	int rc;

	if (initiator) {
		fuzz_check(proto_hello_offer(h, suites, psk ? PROTO_MODE_PSK :
		    PROTO_MODE_XX) == 0, "the offer failed");
		rc = proto_hello_connect(fd, h, deadline);
	} else
		rc = proto_hello_accept(fd, h, suites, psk, 0, deadline);
	if (rc == 0)
		fuzz_check(h->choice == PROTO_AESGCM ?
		    (suites & PROTO_OFFER_AESGCM) != 0 :
		    h->choice == PROTO_CHACHAPOLY, "a suite we cannot run");
	return (rc);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	uint8_t peername[PROTO_NAMEMAX];
	struct proto_cipher *tx, *rx;
	struct proto_hs *hs = NULL;
	struct proto_hello h;
	const char *name;
	size_t peernamelen = 0;
	int sv[2], initiator, classic, refuse, psk, rc = 0;
	int64_t deadline;

	if (size < 1 || size - 1 > PEER_MAX)
		return (0);
	initiator = (data[0] & FUZZ_CONNECT) != 0;
	classic = FUZZ_ONLY_CLASSIC || (data[0] & FUZZ_CLASSIC) != 0;
	refuse = (data[0] & FUZZ_REFUSE) != 0;
	psk = !classic && (data[0] & FUZZ_PSK) != 0;

	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0 ||
	    proto_write_full(sv[1], data + 1, size - 1) != 0 ||
	    shutdown(sv[1], SHUT_WR) != 0) {
		perror("fuzz: socketpair");
		abort();
	}
	/* The stream has ended, so nothing should wait; the deadline only
	 * bounds a handshake that would, with room for a slow machine. */
	deadline = proto_now_ms() + 3000;
	if (classic)
		hs = fuzz_hs_as(initiator, PROTO_CLASSIC, 0, NULL);
	else if ((rc = hello(sv[0], initiator, psk,
	    (data[0] & FUZZ_CHACHA) != 0, deadline, &h)) == 0)
		hs = fuzz_hs_as(initiator, h.choice, psk, &h);
	fuzz_check(hs != NULL || rc != PROTO_ETIMEOUT,
	    "the hello waited on a stream that had ended");
	if (hs == NULL)
		goto out;
	name = initiator ? FUZZ_NAME_INIT : FUZZ_NAME_RESP;
	rc = proto_handshake(sv[0], hs, (const uint8_t *)name, strlen(name),
	    peername, &peernamelen, deadline, classic ? NULL : verify,
	    refuse ? NULL : initiator ? want_resp : want_init);

	fuzz_check(peernamelen <= PROTO_NAMEMAX, "peer name too long");
	fuzz_check(rc != PROTO_ETIMEOUT,
	    "the handshake waited on a stream that had ended");
	if (rc == 0) {
		fuzz_check(!refuse || classic,
		    "a handshake succeeded although verify refused the key");
		fuzz_check(!classic || peernamelen == 0,
		    "classic handshake with a peer name");
		fuzz_check(proto_hs_split(hs, &tx, &rx) == 0, "split failed");
		proto_cipher_free(tx);
		proto_cipher_free(rx);
	}
	proto_hs_free(hs);
out:
	close(sv[0]);
	close(sv[1]);
	return (0);
}
