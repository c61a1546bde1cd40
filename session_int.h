#ifndef SESSION_INT_H
#define SESSION_INT_H

/*
 * Inside the session room (session.c, session_send.c, session_recv.c):
 * the state the sender thread, the receiver thread and the watcher
 * share, and the few functions they call across files.  Nothing outside
 * the room includes this; its contract is session.h.
 */

#include <sys/types.h>

#include <pthread.h>
#include <stdint.h>

#include "proto.h"
#include "session.h"

/* One connection, from its handshake to the end of both directions. */
struct session {
	/* As the caller gave it: the sender thread owns c.tx, the receiver
	 * c.rx, and c.first_packet, which it sets to NULL once called. */
	struct session_conf c;
	int in, out;		/* what we send, where what we get goes */
	int64_t last_sent;	/* when our last packet went (sender only) */
	int ack_written;	/* our ACK is in the socket (sender only) */
	uint64_t bytes_out;	/* of DATA sealed (sender only) */
	uint64_t bytes_in;	/* of DATA passed on (receiver only) */
	int wake[2];		/* to the sender: something to send, or stop */
	int notify[2];		/* to the watcher: something changed */

	pthread_mutex_t mu;	/* guards everything below */
	struct proto_ends ends;	/* CLOSE and ACK, both ways */
	int want_ack;		/* the peer's CLOSE is written out: ACK it */
	int want_close;		/* send our CLOSE now */
	int want_error;		/* send ERROR with errmsg, then nothing more */
	char errmsg[PROTO_ERRORMAX + 1];
	int error_sent;
	int peer_failed;	/* the peer's ERROR came */
	char peer_msg[4 * PROTO_ERRORMAX + 1];	/* its reason, shown safely */
	int tx_done, rx_done;	/* the threads have finished */
	int we_left;		/* our CLOSE (or end) went before the peer's */
	int stop;		/* the sender must finish */
	int ending;		/* the watcher is shutting the socket */
	int code;		/* first failure's exit status, or 0 */
	char msg[4 * PROTO_ERRORMAX + 64];	/* first failure's message */
	int busy;		/* the listener's first packet said "busy" */
	int txcode;		/* the socket refused our data, or 0 */
	char txmsg[128];
};

/*
 * session_fail(s, code, fmt, ...):
 * Record a failure that ends the session without a word to the peer; the
 * first one recorded is the one reported, and none once the watcher is
 * shutting the socket.
 */
void session_fail(struct session *s, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/*
 * session_fail_tell(s, code, reason, fmt, ...):
 * Record a failure of ours that the peer must hear of: the sender sends
 * ERROR with reason (at most PROTO_ERRORMAX bytes of it) before anything
 * else, and nothing after it.  Classic has no ERROR.
 */
void session_fail_tell(struct session *s, int code, const char *reason,
    const char *fmt, ...) __attribute__((format(printf, 4, 5)));

/*
 * session_done(s, flag):
 * Mark a thread finished (flag is &s->tx_done or &s->rx_done), and tell
 * the watcher.
 */
void session_done(struct session *s, int *flag);

/*
 * session_poke(fd):
 * Wake whoever polls the read end of the pipe whose write end is fd.
 */
void session_poke(int fd);

/*
 * session_drain(fd):
 * Read what waits in the non-blocking pipe end fd, so that it polls
 * quiet again.
 */
void session_drain(int fd);

/*
 * session_trace_packet(s, dir, n, pkt, ptlen, type):
 * With -vv, one line for the packet pkt, the n-th sent or received (dir),
 * with ptlen bytes of plaintext of the given type.
 */
void session_trace_packet(struct session *s, const char *dir, uint64_t n,
    const uint8_t *pkt, size_t ptlen, int type);

/*
 * session_rekey(s, c, done):
 * Move c, one of the session's two directions, to its next key, and say
 * so (with -v) in the words done.  Return 0, or -1 after recording the
 * failure.
 */
int session_rekey(struct session *s, struct proto_cipher *c,
    const char *done);

/*
 * session_widen_pipe(fd):
 * If fd is a pipe, let it hold 1 MiB instead of the default 64 KiB.
 */
void session_widen_pipe(int fd);

/*
 * session_signal_came(void):
 * Return nonzero if an ending signal has come, even one still on its way
 * to the watcher.
 */
int session_signal_came(void);

/*
 * session_send_typed(s, pkt, type, bodylen):
 * Sender thread (or the listener's first packet, before it starts): seal
 * and send one packet of the default protocol, type then the bodylen
 * bytes at pkt + PROTO_HDRBYTES + 1, rekeying first when that is due.
 * Return 0, or -1 after recording the failure.
 */
int session_send_typed(struct session *s, uint8_t *pkt, uint8_t type,
    size_t bodylen);

/*
 * session_sender(s):
 * The sender thread of the session s, for pthread_create().
 */
void *session_sender(void *s);

/*
 * session_receiver(s):
 * The receiver thread of the session s, for pthread_create().
 */
void *session_receiver(void *s);

#endif /* !SESSION_INT_H */
