/*
 * The receiver thread of a session, the only reader of its socket: it
 * opens each packet, checks its place in the session's order, writes DATA
 * out (or shows it, in a chat), and on the peer's CLOSE writes everything
 * out, flushes and closes the output before it asks the sender for the
 * ACK.  It keeps the keepalive limit, and after a failure reads on until
 * the peer's end.  See session.h, and session.c for how the threads work
 * together.
 */

#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/uio.h>

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <sodium.h>

#include "proto.h"
#include "say.h"
#include "term.h"
#include "session.h"
#include "session_int.h"

/*
 * The receiver reads as much as the socket holds into one buffer, opens
 * every whole packet in it in place, and writes their plaintexts out
 * together before reading on.
 */
#define INBYTES		(16 * PROTO_MAXPKT)

struct receiver {
	struct session *s;
	uint8_t *buf;		/* INBYTES */
	size_t have;		/* bytes in buf */
	size_t pos;		/* start of the first packet not yet opened */
	size_t touched;		/* how much of buf has ever held data */
	int opened;		/* a packet has been opened */
	int discard;		/* after a failure: only an ERROR still counts */
	int dead;		/* nothing more can be read (a bad packet) */
	int64_t silent;		/* ms waited since the peer's last byte */
	struct iovec iov[64];	/* plaintexts waiting for the output */
	int niov;
	struct term_stream ts;	/* chat: the stream shown a line at a time */
};
/*
 * The peer's first packet has proved the session: tell the caller, once.
 * 0 or -1 (recorded).
 */
static int
tell_first(struct receiver *r)
{
	struct session *s = r->s;
	session_first_fn *fn = s->c.first_packet;
	char why[sizeof(s->msg)];
	int code;

	s->c.first_packet = NULL;
	why[0] = '\0';
	if ((code = fn(s->c.first_arg, why, sizeof(why))) != 0) {
		/* The peer hears that we failed, not where: why may name our
		 * files. */
		session_fail_tell(s, code, "the connector could not go on",
		    "%s", why);
		r->discard = 1;
		return (-1);
	}
	return (0);
}

/*
 * Our output failed: the session ends, and the peer hears why at once,
 * not at its CLOSE.
 */
static void
output_failed(struct receiver *r, const char *what)
{
	char reason[PROTO_ERRORMAX + 1];

	snprintf(reason, sizeof(reason), "%s stdout: %s", what,
	    strerror(errno));
	session_fail_tell(r->s, EXIT_RUNTIME, reason, "%s", reason);
	r->discard = 1;
}

/* Write out the plaintexts waiting in r->iov.  0 or -1 (recorded). */
static int
flush_in(struct receiver *r)
{
	int n = r->niov;

	r->niov = 0;
	if (n > 0 && proto_writev_full(r->s->out, r->iov, n) != 0) {
		output_failed(r, "write to");
		return (-1);
	}
	return (0);
}

/* Pass len bytes of authenticated plaintext on: to stdout, or the screen. */
static int
deliver(struct receiver *r, const uint8_t *data, size_t len)
{
	struct session *s = r->s;

	if (r->discard)
		return (0);
	s->bytes_in += len;
	if (s->c.chat && s->c.classic)
		term_show(s->c.label, data, len);
	else if (s->c.chat)
		term_show_stream(&r->ts, s->c.label, data, len, 0);
	else if (len > 0) {
		/* Even an empty write fails on a stdout closed at start. */
		if (r->niov == (int)(sizeof(r->iov) / sizeof(r->iov[0])) &&
		    flush_in(r) != 0)
			return (-1);
		r->iov[r->niov].iov_base = (void *)data;
		r->iov[r->niov++].iov_len = len;
	}
	return (0);
}

/*
 * After the peer's CLOSE every byte it sent is ours to write out: flush
 * the output to its device and close it, so that whoever reads it sees the
 * end (unless it is kept for the next session, or is the screen).  The
 * descriptor is then /dev/null, never something opened later.  0 or -1
 * (recorded).
 */
static int
finish_output(struct receiver *r)
{
	struct session *s = r->s;
	struct stat st;
	int fd, copy;

	if (flush_in(r) != 0)
		return (-1);
	if (s->c.chat) {
		term_show_stream(&r->ts, s->c.label, NULL, 0, 1);
		return (0);
	}
	if (fstat(s->out, &st) == 0 && S_ISREG(st.st_mode) &&
	    fsync(s->out) != 0) {
		output_failed(r, "fsync");
		return (-1);
	}
	if (s->c.keep_out)
		return (0);
	/* /dev/null takes the output's place in one step, and the copy
	 * closed last reports what closing the output would. */
	if ((copy = dup(s->out)) == -1 ||
	    (fd = open("/dev/null", O_WRONLY | O_CLOEXEC)) == -1) {
		output_failed(r, "close");
		if (copy != -1)
			(void)close(copy);
		return (-1);
	}
	(void)dup2(fd, s->out);
	(void)close(fd);
	if (close(copy) != 0 && errno != EINTR) {
		output_failed(r, "close");
		return (-1);
	}
	return (0);
}

/*
 * The peer's CLOSE: write everything out, then have the sender ACK it, and
 * when a person types our side, end ours too, as nobody is left to press
 * Ctrl-D after a download.  0 or -1 (recorded).
 */
static int
peer_closed(struct receiver *r)
{
	struct session *s = r->s;
	char why[4 * PROTO_ERRORMAX];
	int code;

	if (finish_output(r) != 0)
		return (-1);
	/* What our output feeds (a command) may still fail it. */
	if (s->c.before_ack != NULL &&
	    (code = s->c.before_ack(s->c.ack_arg, why, sizeof(why))) != 0) {
		session_fail_tell(s, code, why, "%s", why);
		r->discard = 1;
		return (-1);
	}
	pthread_mutex_lock(&s->mu);
	s->want_ack = 1;
	if (s->c.typed)
		s->want_close = 1;
	pthread_mutex_unlock(&s->mu);
	session_poke(s->wake[1]);
	return (0);
}

/*
 * The peer's ERROR: its reason, shown safely.  As the listener's first
 * packet, "busy" says it had no room for us.
 */
static void
peer_failed(struct receiver *r, const uint8_t *body, size_t len, int first)
{
	struct session *s = r->s;
	char shown[4 * PROTO_ERRORMAX + 1];
	int busy;

	shown[term_sanitize(shown, body, len)] = '\0';
	busy = first && s->c.initiator && len == 4 &&
	    memcmp(body, "busy", 4) == 0;
	pthread_mutex_lock(&s->mu);
	if (!s->peer_failed) {
		s->peer_failed = 1;
		memcpy(s->peer_msg, shown, sizeof(s->peer_msg));
	}
	if (s->code == 0 && !s->ending) {
		s->busy = busy;
		s->code = busy ? EXIT_RUNTIME : EXIT_PEER;
		snprintf(s->msg, sizeof(s->msg), busy ? "the listener is busy" :
		    "peer failed: %s", shown);
	}
	pthread_mutex_unlock(&s->mu);
	session_poke(s->notify[1]);
	r->discard = 1;
}

/*
 * Wait until the socket has something to read, at most what is left of
 * the keepalive limit.  Only time spent waiting here counts as the peer's
 * silence: while our output blocks, we are not listening.  Classic peers
 * never PING.  Return 0, or -1 on failure (recorded).
 */
static int
wait_readable(struct receiver *r)
{
	struct session *s = r->s;
	struct pollfd pfd = { s->c.sock, POLLIN, 0 };
	int64_t limit, left = 0, t0;
	int pr;

	limit = s->c.classic ? 0 : (int64_t)s->c.keepalive * 1000;
	if (limit > 0 && (left = limit - r->silent) <= 0) {
		session_fail(s, EXIT_CUT, "no word from the peer in %d s",
		    s->c.keepalive);
		return (-1);
	}
	t0 = proto_now_ms();
	pr = poll(&pfd, 1, limit > 0 ? (int)left : -1);
	r->silent += proto_now_ms() - t0;
	if (pr == -1 && errno != EINTR) {
		session_fail(s, EXIT_RUNTIME, "poll: %s", strerror(errno));
		return (-1);
	}
	return (0);
}

/*
 * The stream ended (n == 0) or failed (errno says why): is that the end
 * of a finished session, or a failure, and which?  Return 1 for a quiet
 * end, or -1 after recording the failure.
 */
static int
stream_ended(struct receiver *r, ssize_t n)
{
	struct session *s = r->s;
	int cut, quiet, got_close, empty = r->have == r->pos;

	/* The connection itself died: reset, timed out, unreachable. */
	cut = n == 0 || errno == ECONNRESET || errno == ETIMEDOUT ||
	    errno == EHOSTUNREACH || errno == ENETUNREACH;
	pthread_mutex_lock(&s->mu);
	/* The end is no news once the session is over, or failed. */
	quiet = !s->c.classic && (s->code != 0 || s->ending ||
	    s->error_sent || proto_ends_done(&s->ends));
	got_close = s->ends.got_close;
	pthread_mutex_unlock(&s->mu);
	if (quiet || r->discard)
		return (1);
	if (!cut || (s->c.classic && empty && n != 0))
		session_fail(s, EXIT_RUNTIME, "receive: %s", strerror(errno));
	else if (s->c.classic && empty)
		/* Classic has no CLOSE: the end of TCP between packets. */
		return (1);
	else if (s->c.classic)
		session_fail(s, EXIT_SECURITY, "connection closed in the middle "
		    "of a packet");
	else if (!r->opened && empty && s->c.initiator)
		/* A listener that ends the connection before its first
		 * packet has refused us after the handshake. */
		session_fail(s, EXIT_SECURITY, "the listener closed the "
		    "connection after the handshake: it refused our key or "
		    "our pre-shared key");
	else if (!got_close)
		session_fail(s, EXIT_CUT, "connection cut before the peer had "
		    "finished: the stream is incomplete");
	else
		session_fail(s, EXIT_CUT, "connection cut before the peer "
		    "confirmed our end: what it sent is whole, but what we sent "
		    "may not have reached its output");
	return (-1);
}

/*
 * Read more from the socket, waiting as wait_readable() does.  Return 0,
 * 1 at the end of the stream when that is no failure, or -1 on failure
 * (recorded).
 */
static int
fill(struct receiver *r)
{
	struct session *s = r->s;
	ssize_t n;

	/* Move a partial packet to the front only when its rest might not
	 * fit behind it. */
	if (r->pos == r->have)
		r->pos = r->have = 0;
	else if (INBYTES - r->have < PROTO_MAXPKT) {
		memmove(r->buf, r->buf + r->pos, r->have - r->pos);
		r->have -= r->pos;
		r->pos = 0;
	}
	for (;;) {
		n = recv(s->c.sock, r->buf + r->have, INBYTES - r->have,
		    MSG_DONTWAIT);
		if (n > 0) {
			r->have += (size_t)n;
			r->silent = 0;
			if (r->have > r->touched)
				r->touched = r->have;
			return (0);
		}
		if (n == -1 && errno == EINTR)
			continue;
		if (n == 0 || (errno != EAGAIN && errno != EWOULDBLOCK))
			return (stream_ended(r, n));
		if (wait_readable(r) != 0)
			return (-1);
	}
}

/*
 * One opened packet of the default protocol, the n-th: check its place
 * in the session's order, then act on it.  Return 0, or -1 on failure
 * (recorded).
 */
static int
take(struct receiver *r, uint64_t n, const uint8_t *pt, size_t ptlen)
{
	struct session *s = r->s;
	const uint8_t *body = pt + 1;
	size_t len = ptlen - 1;
	const char *why;
	char reason[PROTO_ERRORMAX + 1];
	int first = !r->opened, rc;

	/* After a failure, the peer's ERROR is all that is still heard,
	 * and its REKEY, without which nothing after it would open. */
	if (r->discard) {
		if (proto_body_check(pt[0], len) != 0)
			return (0);
		if (pt[0] == PROTO_ERROR)
			peer_failed(r, body, len, 0);
		else if (pt[0] == PROTO_REKEY && (rc = proto_cipher_rekey(
		    s->c.rx)) != 0)
			r->dead = 1;
		return (0);
	}
	pthread_mutex_lock(&s->mu);
	rc = proto_ends_recv(&s->ends, pt[0], len, &why);
	pthread_mutex_unlock(&s->mu);
	if (rc != 0) {
		/* What came before it is authentic, and goes out. */
		(void)flush_in(r);
		snprintf(reason, sizeof(reason), "your packet %llu broke the "
		    "protocol: %s", (unsigned long long)n, why);
		session_fail_tell(s, EXIT_SECURITY, reason, "packet %llu from "
		    "the peer broke the protocol: %s", (unsigned long long)n,
		    why);
		r->discard = 1;
		return (-1);
	}
	r->opened = 1;
	switch (pt[0]) {
	case PROTO_DATA:
		/* The listener's empty DATA proves the session (and any
		 * PSK): a first contact is recorded now, not before. */
		if (first && s->c.first_packet != NULL && tell_first(r) != 0)
			return (-1);
		return (deliver(r, body, len));
	case PROTO_CLOSE:
		return (peer_closed(r));
	case PROTO_REKEY:
		return (session_rekey(s, s->c.rx,
		    "Peer rekeyed its sending direction."));
	case PROTO_ACK:
		session_poke(s->notify[1]);
		return (0);
	case PROTO_ERROR:
		/* Should that fail, ours comes first and the peer's second. */
		(void)flush_in(r);
		peer_failed(r, body, len, first);
		return (-1);
	default:	/* PING: the peer is alive, which fill() has noted. */
		return (0);
	}
}

/* Whether both ends of an x25519chat/2 session are confirmed. */
static int
ended_cleanly(struct session *s)
{
	int done;

	pthread_mutex_lock(&s->mu);
	done = !s->c.classic && proto_ends_done(&s->ends);
	pthread_mutex_unlock(&s->mu);
	return (done);
}

/*
 * Once both ends are confirmed, nothing changes how the session ended:
 * what still comes is read, so that closing does not reset the
 * connection, and dropped whole packet by whole packet, unopened.
 */
static void
skip_after_end(struct receiver *r)
{
	size_t len;

	while (r->have - r->pos >= PROTO_LENBYTES) {
		if (proto_open_len(r->s->c.rx, r->buf + r->pos, &len) != 0) {
			r->pos = r->have;
			return;
		}
		if (r->have - r->pos < PROTO_LENBYTES + len)
			return;
		r->pos += PROTO_LENBYTES + len;
	}
}

/*
 * Open every whole packet in the buffer and deliver what it carries;
 * after a failure that leaves the receiver listening (r->discard), go on
 * through the rest.  Return 0, or -1 on failure (recorded, with what came
 * before it delivered).
 */
static int
drain(struct receiver *r)
{
	static const uint8_t newline = '\n';
	struct session *s = r->s;
	uint8_t *pkt, *pt;
	size_t len, ptlen;
	uint64_t n;
	int rc = 0, step;

	while (!r->dead && r->have - r->pos >= PROTO_LENBYTES) {
		if (ended_cleanly(s)) {
			skip_after_end(r);
			break;
		}
		pkt = r->buf + r->pos;
		n = proto_cipher_nonce(s->c.rx);
		/* The length is checked before the rest is waited for. */
		if ((step = proto_open_len(s->c.rx, pkt, &len)) == 0 &&
		    r->have - r->pos < PROTO_LENBYTES + len)
			break;
		/* What fails to authenticate is never answered, and
		 * nothing after it can be read. */
		if (step != 0 || (step = proto_open(s->c.rx, pkt,
		    PROTO_LENBYTES + len, &ptlen)) != 0) {
			if (!r->discard)
				session_fail(s, say_exit_for(step), "packet "
				    "%llu from peer: %s", (unsigned long long)n,
				    proto_strerror(step));
			r->dead = 1;
			rc = -1;
			break;
		}
		r->pos += PROTO_LENBYTES + len;
		pt = pkt + PROTO_HDRBYTES;
		session_trace_packet(s, "recv", n, pkt, ptlen, s->c.classic ? 0 : pt[0]);
		if (!s->c.classic)
			step = take(r, n, pt, ptlen);
		else if (!r->opened && s->c.first_packet != NULL &&
		    (step = tell_first(r)) != 0)
			;
		else {
			r->opened = 1;
			/* The text, then the newline it lost. */
			step = deliver(r, pt, ptlen);
			if (step == 0 && !s->c.chat)
				step = deliver(r, &newline, 1);
		}
		if (step != 0) {
			rc = -1;
			if (!r->discard)
				break;
		}
	}
	/* However it ended, what was authenticated goes out. */
	if (flush_in(r) != 0)
		rc = -1;
	return (rc);
}

/*
 * session_receiver(s):
 * The receiver thread of the session s, for pthread_create().
 */
void *
session_receiver(void *arg)
{
	struct receiver r;

	memset(&r, 0, sizeof(r));
	r.s = arg;
	if ((r.buf = malloc(INBYTES)) == NULL) {
		session_fail_tell(r.s, EXIT_RUNTIME, "out of memory",
		    "malloc: %s", strerror(errno));
		goto done;
	}
	if (!r.s->c.chat)
		session_widen_pipe(r.s->out);
	/* After a failure that is told, or the peer's ERROR, read on (and
	 * discard) until the peer's end: its ERROR may still come, and the
	 * last packets either way must not be lost to a reset. */
	while (fill(&r) == 0)
		if (drain(&r) != 0 && (r.dead || !r.discard))
			break;
	if (r.s->c.chat)
		term_show_stream(&r.ts, r.s->c.label, NULL, 0, 1);
done:
	/* Only what was used: wiping untouched pages would fault them in. */
	if (r.buf != NULL)
		sodium_memzero(r.buf, r.touched);
	free(r.buf);
	sodium_memzero(&r.ts, sizeof(r.ts));
	session_done(r.s, &r.s->rx_done);
	return (NULL);
}

