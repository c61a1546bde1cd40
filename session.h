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

#include <sys/types.h>

#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "proto.h"

#define SESSION_LABELMAX	128	/* "[ADDR:PORT]" and more */

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
	session_first_fn *before_ack;	/* NULL, or called by the receiver
				 * once the peer's CLOSE is written out and
				 * our output closed, before our ACK may
				 * go: a failure sends ERROR instead */
	void *ack_arg;			/* its arg */
	void (*over)(void *arg);	/* NULL, or called when the output is
				 * done with: once both ends are confirmed,
				 * before lingering for the peer's end of
				 * TCP, and (again) when the threads have
				 * ended, however the session did */
	void *over_arg;			/* its arg */
};

/* What a session moved, and how it ended. */
struct session_stats {
	uint64_t in;		/* bytes of the peer's data passed on */
	uint64_t out;		/* bytes of our data sent */
	int closed;		/* the peer's CLOSE came */
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

/*
 * A command as our end of a session (-e): /bin/sh -c CMD in a process
 * group of its own, its stdin and stdout the session's output and input.
 */
struct session_cmd {
	pid_t pid;		/* also its process group */
	int status;		/* from waitpid(), once reaped */
	int reaped;
	int err;		/* the read end of its stderr, or -1 */
	pthread_t relay;	/* passes its stderr lines on */
	int relaying;
	atomic_int stop;	/* the relay is to finish */
	char label[SESSION_LABELMAX];	/* before each of its stderr lines */
};

/*
 * session_cmd_start(sc, cmd, label):
 * Run /bin/sh -c cmd in a process group of its own, with default signal
 * dispositions, an empty signal mask, only descriptors 0 to 2 open and
 * our environment: its stdin becomes our stdout and its stdout our stdin,
 * so that the session run next carries them; its stderr lines go to ours,
 * each after label and made safe to show.  Return 0, or -1 after
 * reporting.
 */
int session_cmd_start(struct session_cmd *sc, const char *cmd,
    const char *label);

/*
 * session_cmd_result(sc, why, whylen):
 * Once the command's stdin is closed after the peer's CLOSE: wait for it
 * to exit.  Return 0 if it exited 0, else EXIT_RUNTIME with "command
 * exited with status N" or "command killed by signal N" in why.  Fit to
 * be a before_ack callback.
 */
int session_cmd_result(struct session_cmd *sc, char *why, size_t whylen);

/*
 * session_cmd_end(sc, clean):
 * The session is over.  Unless the peer's CLOSE came (clean), the
 * command's process group gets SIGTERM before its stdin closes, and
 * SIGKILL 5 s later if it still runs, so that a cut is never taken for
 * the end of its input.  Then its pipes close, it is reaped, and the last
 * of its stderr is passed on.
 */
void session_cmd_end(struct session_cmd *sc, int clean);

#endif /* !SESSION_H */
