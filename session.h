#ifndef SESSION_H
#define SESSION_H

/*
 * A session after its handshake: one sender thread (stdin, or the line
 * editor in a chat, sealed onto the socket) and one receiver thread (the
 * socket opened onto stdout, or shown above the prompt line); the packets
 * of both protocols and, in x25519chat/2, the order in which a session
 * ends (CLOSE, ACK, ERROR), PING and the keepalive limit, REKEY; the
 * signals that end a session; and the exit status it comes to.
 *
 * This room must not parse options or record trust: what it needs comes
 * in a struct session_conf, and the one thing its caller must do during
 * a session, recording a first contact, goes to a callback it is given.
 */

#include <stddef.h>
#include <stdint.h>

#include "proto.h"

/*
 * Called at most once, by the receiver thread, after the peer's first
 * packet has authenticated and before what it carries is delivered.
 * Return 0 to go on, or an exit status with its one-line message written
 * into why (whylen bytes), which then ends the session as its failure.
 */
typedef int session_first_fn(void *arg, char *why, size_t whylen);

/* How a session runs: filled in by its caller before session_run(). */
struct session_conf {
	int sock;		/* connected, its handshake done */
	int classic;		/* the original protocol */
	int initiator;		/* we connected; the listener accepted */
	int chat;		/* stdin and stdout are terminals */
	int typed;		/* stdin is a terminal (chat or not) */
	int verbose;		/* 1: rekeys; 2 or more: a trace line per packet */
	int keepalive;		/* seconds of silence that end the session;
				 * 0: no limit */
	int keep_out;		/* leave stdout open at the end (-k) */
	struct proto_cipher *tx;	/* our direction */
	struct proto_cipher *rx;	/* the peer's direction */
	char label[4 * PROTO_NAMEMAX + 3];	/* "[name]", shown safely */
	session_first_fn *first_packet;	/* NULL, or called as above */
	void *first_arg;		/* its arg */
	struct session_stats *stats;	/* NULL, or filled in at the end */
};

/* What a session moved, and how it ended. */
struct session_stats {
	uint64_t in;		/* bytes of the peer's data passed on */
	uint64_t out;		/* bytes of our data sent */
	char result[4 * PROTO_ERRORMAX + 64];	/* the failure reported,
				 * or "" for a clean end */
};

/*
 * session_init(void):
 * Prepare what sessions share, once before the first: the pipe through
 * which a signal wakes the thread that watches a session.  Return 0, or
 * -1 after reporting.
 */
int session_init(void);

/*
 * session_run(c):
 * Run the session c describes until both directions have ended, or a
 * failure or a signal ends it; a listener first sends the empty DATA
 * packet that tells the connector it was accepted.  In x25519chat/2 it
 * ends cleanly only once each side has sent CLOSE and had it acknowledged;
 * a failure of ours goes to the peer as an ERROR, and the peer's ERROR is
 * reported.  While it runs, SIGINT, SIGTERM, SIGQUIT and SIGHUP (unless
 * ignored) end it, a chat once our CLOSE is out, and a chat has the
 * terminal in raw mode.  The ciphers stay the caller's to free; the
 * socket stays open.  Return the exit status, after reporting any
 * failure.
 */
int session_run(const struct session_conf *c);

/*
 * session_refuse(c, reason):
 * A listener that cannot take the session c, its handshake done, sends
 * ERROR reason (at most PROTO_ERRORMAX bytes) as its first packet instead
 * of the empty DATA, and waits a moment for the peer to close, so that
 * the ERROR is not lost to a reset.  The socket stays open.
 */
void session_refuse(const struct session_conf *c, const char *reason);

/*
 * session_signal(void):
 * Return the number of the signal that ended the last session, or 0.
 */
int session_signal(void);

#endif /* !SESSION_H */
