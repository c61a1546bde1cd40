/*
 * The sender thread of a session, the only writer of its socket: what
 * comes on stdin, or from the line editor in a chat, goes out as DATA (in
 * classic, as one packet per line), and CLOSE, ACK, PING and ERROR go out
 * when they are asked for or due, REKEY before the packet that finds it
 * due.  See session.h, and session.c for how the threads work together.
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
 * Sending: the sender thread, and the listener's first packet before it
 * starts.
 */
/* Seal the ptlen bytes at pkt + PROTO_HDRBYTES into a packet, in place. */
static int
seal(struct session *s, uint8_t *pkt, size_t ptlen)
{
	uint64_t n = proto_cipher_nonce(s->c.tx);
	int rc, type = s->c.classic ? 0 : pkt[PROTO_HDRBYTES];

	if ((rc = proto_seal(s->c.tx, pkt, ptlen)) != 0) {
		session_fail(s, EXIT_RUNTIME, "cannot send: %s",
		    proto_strerror(rc));
		return (-1);
	}
	session_trace_packet(s, "send", n, pkt, ptlen, type);
	if (s->c.classic)
		s->bytes_out += ptlen;
	else if (type == PROTO_DATA)
		s->bytes_out += ptlen - 1;
	return (0);
}

/* Write len bytes of sealed packets to the socket. */
static int
transmit(struct session *s, const uint8_t *buf, size_t len)
{
	int err;

	if (proto_write_full(s->c.sock, buf, len) == 0) {
		s->last_sent = proto_now_ms();
		return (0);
	}
	/* The receiver usually learns why the connection died (a cut, an
	 * ERROR): its report, if it makes one, comes first. */
	err = errno;
	pthread_mutex_lock(&s->mu);
	/* Once the watcher shuts the socket, a failed write is its doing;
	 * an ACK that failed then is still missing from ack_written. */
	if (s->txcode == 0 && !s->ending) {
		s->txcode = EXIT_RUNTIME;
		snprintf(s->txmsg, sizeof(s->txmsg), "send: %s%s",
		    strerror(err), err == EPIPE || err == ECONNRESET ?
		    ": the peer is gone; what we sent may not all have arrived" :
		    "");
	}
	pthread_mutex_unlock(&s->mu);
	session_poke(s->notify[1]);
	return (-1);
}

/* Default protocol: 1 GiB or 120 s have passed since the last key. */
static int
rekey_due(const struct session *s)
{

	return (!s->c.classic && proto_cipher_rekey_due(s->c.tx, proto_now_ms()));
}

/*
 * Send REKEY and move to the next key.  Packets sealed earlier must have
 * been written first.
 */
static int
rekey(struct session *s)
{
	uint8_t pkt[PROTO_HDRBYTES + 1];

	pkt[PROTO_HDRBYTES] = PROTO_REKEY;
	if (seal(s, pkt, 1) != 0 || transmit(s, pkt, sizeof(pkt)) != 0)
		return (-1);
	return (session_rekey(s, s->c.tx, "Rekeyed the sending direction."));
}

/*
 * session_send_typed(s, pkt, type, bodylen):
 * Sender thread (or the listener's first packet, before it starts): seal
 * and send one packet of the default protocol, type then the bodylen
 * bytes at pkt + PROTO_HDRBYTES + 1, rekeying first when that is due.
 * Return 0, or -1 after recording the failure.
 */
int
session_send_typed(struct session *s, uint8_t *pkt, uint8_t type, size_t bodylen)
{

	if (rekey_due(s) && rekey(s) != 0)
		return (-1);
	pkt[PROTO_HDRBYTES] = type;
	if (seal(s, pkt, 1 + bodylen) != 0)
		return (-1);
	return (transmit(s, pkt, PROTO_HDRBYTES + 1 + bodylen));
}

/*
 * Send CLOSE, ACK, PING or ERROR (with len bytes of body), recording it in
 * the session's order first: the receiver must know of our CLOSE before
 * the peer's ACK of it can come back.
 */
static int
send_control(struct session *s, int type, const char *body, size_t len)
{
	uint8_t pkt[PROTO_HDRBYTES + 1 + PROTO_ERRORMAX];
	int rc;

	pthread_mutex_lock(&s->mu);
	if ((rc = proto_ends_send(&s->ends, type)) == 0 &&
	    type == PROTO_CLOSE && !s->ends.got_close)
		s->we_left = 1;
	pthread_mutex_unlock(&s->mu);
	if (rc != 0 || len > PROTO_ERRORMAX) {
		session_fail(s, EXIT_RUNTIME, "cannot send %s now: %s",
		    proto_type_name(type), proto_strerror(PROTO_ESTATE));
		return (-1);
	}
	if (len > 0)
		memcpy(pkt + PROTO_HDRBYTES + 1, body, len);
	rc = session_send_typed(s, pkt, (uint8_t)type, len);
	if (rc == 0 && type == PROTO_ACK)
		s->ack_written = 1;
	if (type == PROTO_CLOSE || type == PROTO_ACK)
		session_poke(s->notify[1]);
	return (rc);
}

/* Send the ERROR the session was asked to; nothing is sent after it. */
static void
send_error(struct session *s)
{
	char reason[PROTO_ERRORMAX + 1];

	pthread_mutex_lock(&s->mu);
	memcpy(reason, s->errmsg, sizeof(reason));
	pthread_mutex_unlock(&s->mu);
	(void)send_control(s, PROTO_ERROR, reason, strlen(reason));
	pthread_mutex_lock(&s->mu);
	s->error_sent = 1;
	pthread_mutex_unlock(&s->mu);
	session_poke(s->notify[1]);
}

/*
 * The sender seals packets in place in one buffer of NSLOT packet-sized
 * slots, and writes as many as are ready at once.
 */
#define NSLOT		16
#define OUTBYTES	(NSLOT * PROTO_MAXPKT)

struct sender {
	struct session *s;
	uint8_t *out;		/* OUTBYTES: packets and room for them */
	size_t used;		/* classic: sealed packets waiting in out */
	int split;		/* classic: the last line sent had no newline */
	size_t touched;		/* how much of out has ever held data */
	int input;		/* stdin is still read */
};

/* Chat mode: one typed line is one packet (with its newline, by default). */
static int
send_line(void *arg, const char *line, size_t len)
{
	struct sender *sd = arg;
	struct session *s = sd->s;

	if (PROTO_HDRBYTES + 1 + len + 1 > sd->touched)
		sd->touched = PROTO_HDRBYTES + 1 + len + 1;
	if (!s->c.classic) {
		memcpy(sd->out + PROTO_HDRBYTES + 1, line, len);
		sd->out[PROTO_HDRBYTES + 1 + len] = '\n';
		return (session_send_typed(s, sd->out, PROTO_DATA, len + 1));
	}
	memcpy(sd->out + PROTO_HDRBYTES, line, len);
	if (seal(s, sd->out, len) != 0 ||
	    transmit(s, sd->out, PROTO_HDRBYTES + len) != 0)
		return (-1);
	return (0);
}

/* Classic: write out the packets waiting in the buffer. */
static int
flush_out(struct sender *sd)
{
	size_t used = sd->used;

	sd->used = 0;
	return (used > 0 ? transmit(sd->s, sd->out, used) : 0);
}

/* Classic: seal one line into the buffer, writing it out first if full. */
static int
queue_line(struct sender *sd, const uint8_t *line, size_t len)
{
	uint8_t *pkt;

	/* A quarter of the buffer is plenty for lines, and keeps it small. */
	if (sd->used + PROTO_HDRBYTES + len > OUTBYTES / 4 &&
	    flush_out(sd) != 0)
		return (-1);
	pkt = sd->out + sd->used;
	if (sd->used + PROTO_HDRBYTES + len > sd->touched)
		sd->touched = sd->used + PROTO_HDRBYTES + len;
	memcpy(pkt + PROTO_HDRBYTES, line, len);
	if (seal(sd->s, pkt, len) != 0)
		return (-1);
	sd->used += PROTO_HDRBYTES + len;
	return (0);
}

/*
 * Classic pipe mode: each line of input is one packet, without its
 * newline; a line longer than a packet is split.  buf holds *have bytes;
 * send the complete lines (all of them at EOF) and keep the rest.
 */
static int
send_lines(struct sender *sd, uint8_t *buf, size_t *have, int eof)
{
	uint8_t *nl;
	size_t start = 0, len;

	for (;;) {
		nl = memchr(buf + start, '\n', *have - start);
		if (nl != NULL)
			len = (size_t)(nl - (buf + start));
		else if (*have - start == PROTO_MAXPLAIN ||
		    (eof && *have > start))
			len = *have - start;
		else
			break;
		/* A line that filled whole packets ends with its newline
		 * alone: that is not one more (empty) line. */
		if ((len > 0 || nl == NULL || !sd->split) &&
		    queue_line(sd, buf + start, len) != 0)
			return (-1);
		sd->split = (nl == NULL);
		start += len + (nl != NULL);
	}
	memmove(buf, buf + start, *have - start);
	*have -= start;
	return (flush_out(sd));
}

/*
 * What a read of stdin that returned r leaves to do: 1 to take its bytes
 * (or its end), 0 to come back later (interrupted, nothing yet), -1 when
 * it failed (recorded).
 */
static int
took_input(struct session *s, ssize_t r)
{
	if (r >= 0)
		return (1);
	if (errno == EINTR || errno == EAGAIN)
		return (0);
	session_fail_tell(s, EXIT_RUNTIME, "read error on its input",
	    "read from stdin: %s", strerror(errno));
	return (-1);
}

/*
 * Default pipe mode: read what waits on stdin, up to NSLOT full packets,
 * straight into the slots, seal each in place and write them all at once.
 * Return 0, 1 at the end of stdin, or -1 on failure (recorded).
 */
static int
pump_stream(struct sender *sd)
{
	struct session *s = sd->s;
	struct iovec iov[NSLOT];
	uint8_t *pkt = sd->out, *from = sd->out, *end = sd->out;
	size_t len, i;
	ssize_t r;
	int rc;

	for (i = 0; i < NSLOT; i++) {
		iov[i].iov_base = sd->out + i * PROTO_MAXPKT +
		    PROTO_HDRBYTES + 1;
		iov[i].iov_len = PROTO_MAXPLAIN - 1;
	}
	r = readv(s->in, iov, NSLOT);
	if ((rc = took_input(s, r)) != 1)
		return (rc);
	if (r == 0)
		return (1);
	/* Every slot readv() reached holds plaintext now. */
	i = ((size_t)r + PROTO_MAXPLAIN - 2) / (PROTO_MAXPLAIN - 1);
	if (i * PROTO_MAXPKT > sd->touched)
		sd->touched = i * PROTO_MAXPKT;
	for (; r > 0; pkt += PROTO_MAXPKT, r -= (ssize_t)len) {
		len = (size_t)r < PROTO_MAXPLAIN - 1 ? (size_t)r :
		    PROTO_MAXPLAIN - 1;
		/* REKEY goes out after the packets sealed before it. */
		if (rekey_due(s)) {
			if (transmit(s, from, (size_t)(end - from)) != 0 ||
			    rekey(s) != 0)
				return (-1);
			from = pkt;
		}
		pkt[PROTO_HDRBYTES] = PROTO_DATA;
		if (seal(s, pkt, 1 + len) != 0)
			return (-1);
		end = pkt + PROTO_HDRBYTES + 1 + len;
	}
	return (transmit(s, from, (size_t)(end - from)) != 0 ? -1 : 0);
}

/*
 * Read what the terminal or the classic line splitter takes, into in
 * (*have bytes kept from before), and send it.  Return as pump_stream().
 */
static int
pump_lines(struct sender *sd, uint8_t *in, size_t *have)
{
	struct session *s = sd->s;
	ssize_t r;
	int rc;

	r = read(s->in, in + *have, PROTO_MAXPLAIN - *have);
	if ((rc = took_input(s, r)) != 1)
		return (rc);
	if (s->c.chat) {
		if (r == 0)
			return (1);
		rc = term_input(in, (size_t)r, send_line, sd);
		return (rc == 1 ? 1 : rc == 0 ? 0 : -1);
	}
	*have += (size_t)r;
	if (send_lines(sd, in, have, r == 0) != 0)
		return (-1);
	return (r == 0);
}

/*
 * Wait until stdin is readable (while it is read), the sender is woken,
 * or a PING is due (default protocol).  Return 1 when stdin is readable,
 * 0 when woken, 2 when a PING is due, -1 on error.
 */
static int
wait_input(struct sender *sd)
{
	struct session *s = sd->s;
	struct pollfd pfd[2];
	int64_t left;
	int pr;

	pfd[0].fd = sd->input ? s->in : -1;
	pfd[0].events = POLLIN;
	pfd[1].fd = s->wake[0];
	pfd[1].events = POLLIN;
	for (;;) {
		left = s->c.classic ? -1 :
		    s->last_sent + PROTO_PING_MS - proto_now_ms();
		if (!s->c.classic && left <= 0)
			return (2);
		pr = poll(pfd, 2, left > INT32_MAX ? INT32_MAX : (int)left);
		if (pr == -1 && errno == EINTR)
			continue;
		if (pr == -1)
			return (-1);
		if (pfd[1].revents != 0) {
			session_drain(s->wake[0]);
			return (0);
		}
		if (pfd[0].revents != 0)
			return (1);
	}
}

/*
 * Our input has ended.  Default protocol: CLOSE vouches that the stream
 * is complete, so a pipe cut short by a signal gets none, and the peer
 * reports an incomplete stream.  Classic: the end of TCP.  Return 0, or
 * -1 when the sender is to stop.
 */
static int
input_ended(struct sender *sd)
{
	struct session *s = sd->s;

	sd->input = 0;
	if (s->c.classic) {
		(void)shutdown(s->c.sock, SHUT_WR);
		return (-1);
	}
	if (!s->c.chat && session_signal_came())
		return (0);
	return (send_control(s, PROTO_CLOSE, NULL, 0));
}

/*
 * What the sender must send now that it is not reading: ERROR first and
 * alone, then ACK, then CLOSE.  Return 0 to go on, -1 to stop.
 */
static int
send_due(struct sender *sd)
{
	struct session *s = sd->s;
	int error, ack, close, stop;

	pthread_mutex_lock(&s->mu);
	error = s->want_error && !s->error_sent;
	ack = s->want_ack && !s->ends.sent_ack;
	close = s->want_close && sd->input;
	/* After a failure that is not ours to tell, nothing more is sent. */
	stop = s->stop || (s->code != 0 && !error);
	pthread_mutex_unlock(&s->mu);
	if (error) {
		send_error(s);
		return (-1);
	}
	if (stop)
		return (-1);
	if (ack && send_control(s, PROTO_ACK, NULL, 0) != 0)
		return (-1);
	/* Classic has no CLOSE: a chat leaves by ending TCP. */
	if (close)
		return (input_ended(sd));
	return (0);
}

/*
 * session_sender(s):
 * The sender thread of the session s, for pthread_create().
 */
void *
session_sender(void *arg)
{
	struct session *s = arg;
	struct sender sd;
	uint8_t *in = NULL;
	size_t have = 0;
	int rc;

	memset(&sd, 0, sizeof(sd));
	sd.s = s;
	sd.input = 1;
	if ((sd.out = malloc(OUTBYTES)) == NULL ||
	    (in = malloc(PROTO_MAXPLAIN)) == NULL) {
		session_fail_tell(s, EXIT_RUNTIME, "out of memory",
		    "malloc: %s", strerror(errno));
		/* The ERROR still goes out, from a buffer of its own. */
		(void)send_due(&sd);
		goto done;
	}
	if (!s->c.chat)
		session_widen_pipe(s->in);
	while (send_due(&sd) == 0) {
		if ((rc = wait_input(&sd)) == 2)
			rc = send_control(s, PROTO_PING, NULL, 0);
		else if (rc == 1 && (s->c.chat || s->c.classic))
			rc = pump_lines(&sd, in, &have);
		else if (rc == 1)
			rc = pump_stream(&sd);
		else if (rc == -1)
			session_fail(s, EXIT_RUNTIME, "poll: %s",
			    strerror(errno));
		if (rc == 1)
			rc = input_ended(&sd);
		if (rc == -1)
			break;
	}
	/* A failure the peer must hear of can come while we send. */
	(void)send_due(&sd);
done:
	if (in != NULL && (s->c.chat || s->c.classic))
		sodium_memzero(in, PROTO_MAXPLAIN);
	/* Only what was used: wiping untouched pages would fault them in. */
	if (sd.out != NULL)
		sodium_memzero(sd.out, sd.touched);
	free(in);
	free(sd.out);
	session_done(s, &s->tx_done);
	return (NULL);
}

