/*
 * A session after its handshake: the sender and receiver threads, the
 * packets both protocols share, how an x25519chat/2 session ends, the
 * keepalive, and the signals that end a session.  See session.h.
 *
 * Who does what.  The sender thread is the only writer of the socket: it
 * reads stdin (or the line editor) into DATA, and sends CLOSE, ACK, PING
 * and ERROR when it is asked to or when they are due.  The receiver thread
 * is the only reader: it opens packets, checks their order, writes DATA
 * out, and on the peer's CLOSE flushes and closes the output before it
 * asks the sender for the ACK.  The calling thread watches: it decides
 * when the session is over, shuts the socket in the right order, and
 * alone reports and picks the exit status.
 */

#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/uio.h>

#include <netinet/in.h>
#include <netinet/tcp.h>

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <sodium.h>

#include "proto.h"
#include "say.h"
#include "term.h"
#include "session.h"

#define GRACE_MS	2000	/* for the threads once the end is near */
#define LINGER_MS	5000	/* reading on after our end, for the peer's */

/* One connection, from its handshake to the end of both directions. */
struct session {
	/* As the caller gave it: the sender thread owns c.tx, the receiver
	 * c.rx, and c.first_packet, which it sets to NULL once called. */
	struct session_conf c;
	int in, out;		/* what we send, where what we get goes */
	int64_t last_sent;	/* when our last packet went (sender only) */
	int ack_written;	/* our ACK is in the socket (sender only) */
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

/* Written by signal handlers, read by every thread: a lock-free atomic. */
static atomic_int got_signal;
static int sigwake[2] = { -1, -1 };
/* The signals caught during a session: only the watcher takes them. */
static sigset_t caught;

/*
 * Signals: SIGINT, SIGTERM, SIGHUP and SIGQUIT during a session wake the
 * watcher, which ends a pipe at once and has a chat leave with CLOSE.
 */

static void
on_signal(int sig)
{
	int saved = errno;

	got_signal = sig;
	(void)write(sigwake[1], "s", 1);
	errno = saved;
}

/*
 * Catch the ending signals during a session (on), or put back what was
 * there before (off).  An ignored SIGHUP stays ignored, so that nohup keeps
 * working.
 */
static void
catch_signals(int on)
{
	static const int sigs[] = { SIGINT, SIGTERM, SIGHUP, SIGQUIT };
	static struct sigaction saved[4];
	struct sigaction sa;
	size_t i;

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_signal;
	sigemptyset(&sa.sa_mask);
	sigemptyset(&caught);
	for (i = 0; i < 4; i++) {
		if (!on)
			(void)sigaction(sigs[i], &saved[i], NULL);
		else if (sigaction(sigs[i], NULL, &saved[i]) == 0 &&
		    (sigs[i] != SIGHUP || saved[i].sa_handler != SIG_IGN) &&
		    sigaction(sigs[i], &sa, NULL) == 0)
			(void)sigaddset(&caught, sigs[i]);
	}
}

/*
 * Has an ending signal come, even one not yet handled?  The threads block
 * them, so a signal on its way to the watcher is pending here: a pipe
 * whose writer was killed by the same Ctrl-C must not look finished.
 */
static int
signal_came(void)
{
	sigset_t pending;
	int sig;

	if (got_signal != 0)
		return (1);
	if (sigpending(&pending) != 0)
		return (0);
	for (sig = 1; sig < NSIG; sig++)
		if (sigismember(&caught, sig) == 1 &&
		    sigismember(&pending, sig) == 1)
			return (1);
	return (0);
}

/* Wake whoever polls the read end of the pipe whose write end is fd. */
static void
poke(int fd)
{

	/* A full pipe already holds a wake-up. */
	(void)write(fd, "x", 1);
}

static void
drain_fd(int fd)
{
	char buf[64];

	while (read(fd, buf, sizeof(buf)) > 0)
		;
}

/*
 * The session's state: thread results go through the session struct;
 * only the watcher reports and decides the exit status.
 */

/* Record a failure, the first one being the one reported.  Locked. */
static void
fail_locked(struct session *s, int code, const char *fmt, va_list ap)
{

	if (s->code == 0 && !s->ending) {
		s->code = code;
		vsnprintf(s->msg, sizeof(s->msg), fmt, ap);
	}
}

/* Record a failure that ends the session without a word to the peer. */
static void
session_fail(struct session *s, int code, const char *fmt, ...)
{
	va_list ap;

	pthread_mutex_lock(&s->mu);
	va_start(ap, fmt);
	fail_locked(s, code, fmt, ap);
	va_end(ap);
	pthread_mutex_unlock(&s->mu);
	poke(s->notify[1]);
}

/*
 * Record a failure of ours that the peer must hear of: the sender sends
 * ERROR with reason (at most PROTO_ERRORMAX bytes of it) before anything
 * else, and nothing after it.  Classic has no ERROR.
 */
static void
session_fail_tell(struct session *s, int code, const char *reason,
    const char *fmt, ...)
{
	va_list ap;

	pthread_mutex_lock(&s->mu);
	if (s->code == 0 && !s->ending && !s->c.classic && !s->want_error) {
		snprintf(s->errmsg, sizeof(s->errmsg), "%s", reason);
		s->want_error = 1;
	}
	va_start(ap, fmt);
	fail_locked(s, code, fmt, ap);
	va_end(ap);
	pthread_mutex_unlock(&s->mu);
	poke(s->wake[1]);
	poke(s->notify[1]);
}

/* Mark a thread finished, and tell the watcher. */
static void
session_done(struct session *s, int *flag)
{

	pthread_mutex_lock(&s->mu);
	*flag = 1;
	/* Classic: our end came first (x25519chat/2 says so at CLOSE). */
	if (s->c.classic && flag == &s->tx_done && !s->rx_done)
		s->we_left = 1;
	pthread_mutex_unlock(&s->mu);
	poke(s->notify[1]);
}

/* -vv: one line per packet. */
static void
trace_packet(struct session *s, const char *dir, uint64_t n,
    const uint8_t *pkt, size_t ptlen, int type)
{
	char nonce[2 * PROTO_NONCEBYTES + 1], tag[2 * PROTO_TAGBYTES + 1];

	if (s->c.verbose < 2)
		return;
	say_hex(nonce, pkt + PROTO_LENBYTES, PROTO_NONCEBYTES);
	say_hex(tag, pkt + PROTO_LENBYTES + PROTO_NONCEBYTES, PROTO_TAGBYTES);
	say_status(2, "[trace] %s n=%llu type=%s length=%zu nonce=%s tag=%s",
	    dir, (unsigned long long)n, s->c.classic ? "text" :
	    proto_type_name(type), ptlen + PROTO_NONCEBYTES + PROTO_TAGBYTES,
	    nonce, tag);
}

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
	trace_packet(s, "send", n, pkt, ptlen, type);
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
	poke(s->notify[1]);
	return (-1);
}

/* Default protocol: 1 GiB or 120 s have passed since the last key. */
static int
rekey_due(const struct session *s)
{

	return (!s->c.classic && proto_cipher_rekey_due(s->c.tx, proto_now_ms()));
}

/*
 * Move c, one of our two directions, to its next key, and say so (with
 * -v) in the words done.  0 or -1 (recorded).
 */
static int
rekey_cipher(struct session *s, struct proto_cipher *c, const char *done)
{
	int rc;

	if ((rc = proto_cipher_rekey(c)) != 0) {
		session_fail(s, EXIT_RUNTIME, "cannot rekey: %s",
		    proto_strerror(rc));
		return (-1);
	}
	say_status(1, "%s", done);
	return (0);
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
	return (rekey_cipher(s, s->c.tx, "Rekeyed the sending direction."));
}

/*
 * Send one packet of the default protocol: type, then the bodylen bytes
 * at pkt + PROTO_HDRBYTES + 1.
 */
static int
send_typed(struct session *s, uint8_t *pkt, uint8_t type, size_t bodylen)
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
	rc = send_typed(s, pkt, (uint8_t)type, len);
	if (rc == 0 && type == PROTO_ACK)
		s->ack_written = 1;
	if (type == PROTO_CLOSE || type == PROTO_ACK)
		poke(s->notify[1]);
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
	poke(s->notify[1]);
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
		return (send_typed(s, sd->out, PROTO_DATA, len + 1));
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

	for (i = 0; i < NSLOT; i++) {
		iov[i].iov_base = sd->out + i * PROTO_MAXPKT +
		    PROTO_HDRBYTES + 1;
		iov[i].iov_len = PROTO_MAXPLAIN - 1;
	}
	if ((r = readv(s->in, iov, NSLOT)) == 0)
		return (1);
	if (r == -1 && (errno == EINTR || errno == EAGAIN))
		return (0);
	if (r == -1) {
		session_fail_tell(s, EXIT_RUNTIME, "read error on its input",
		    "read from stdin: %s", strerror(errno));
		return (-1);
	}
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
	if (r == -1 && (errno == EINTR || errno == EAGAIN))
		return (0);
	if (r == -1) {
		session_fail_tell(s, EXIT_RUNTIME, "read error on its input",
		    "read from stdin: %s", strerror(errno));
		return (-1);
	}
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
			drain_fd(s->wake[0]);
			return (0);
		}
		if (pfd[0].revents != 0)
			return (1);
	}
}

/* A pipe on our side may hold more than the default 64 KiB. */
static void
widen_pipe(int fd)
{
	struct stat st;

	if (fstat(fd, &st) == 0 && S_ISFIFO(st.st_mode))
		(void)fcntl(fd, F_SETPIPE_SZ, 1 << 20);
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
	if (!s->c.chat && signal_came())
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

/* The sender thread: stdin -> seal -> socket, and what else must go. */
static void *
sender_main(void *arg)
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
		widen_pipe(s->in);
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

	if (finish_output(r) != 0)
		return (-1);
	pthread_mutex_lock(&s->mu);
	s->want_ack = 1;
	if (s->c.typed)
		s->want_close = 1;
	pthread_mutex_unlock(&s->mu);
	poke(s->wake[1]);
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
	poke(s->notify[1]);
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
		return (rekey_cipher(s, s->c.rx,
		    "Peer rekeyed its sending direction."));
	case PROTO_ACK:
		poke(s->notify[1]);
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
		trace_packet(s, "recv", n, pkt, ptlen, s->c.classic ? 0 : pt[0]);
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

/* The receiver thread: socket -> open -> stdout. */
static void *
receiver_main(void *arg)
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
		widen_pipe(r.s->out);
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

/*
 * The watcher.
 */

/* Whether the session is over, or must end now.  Locked. */
static int
over(struct session *s)
{

	if (s->code != 0)
		return (1);
	if (s->c.classic) {
		if (s->rx_done && s->tx_done)
			return (1);
		/* Ctrl-D in a classic chat leaves, as the original. */
		if (s->c.chat && s->tx_done)
			return (1);
		return (got_signal && (s->tx_done || !s->c.chat));
	}
	/* A signal cuts a pipe: no CLOSE vouches for what it sent. */
	return (proto_ends_done(&s->ends) || (got_signal && !s->c.chat) ||
	    (s->rx_done && s->tx_done));
}

/*
 * Watch the session until it is over, or must end.  Once the end is
 * near the threads get two seconds: after a signal (a chat leaves with
 * CLOSE), after the socket refused our data (the receiver may know why),
 * and once a chat has left (a chat peer answers a CLOSE at once, and one
 * that does not must not keep us here).
 */
static void
session_watch(struct session *s)
{
	struct pollfd pfd[2];
	int64_t until = 0, now;
	int timeout;

	pfd[0].fd = sigwake[0];
	pfd[0].events = POLLIN;
	pfd[1].fd = s->notify[0];
	pfd[1].events = POLLIN;
	pthread_mutex_lock(&s->mu);
	while (!over(s)) {
		now = proto_now_ms();
		if (got_signal && s->c.chat && !s->want_close) {
			s->want_close = 1;
			poke(s->wake[1]);
		}
		/* Classic: when a person types our side, the peer leaving ends
		 * the session; x25519chat/2 does that with CLOSE. */
		if (s->c.classic && s->c.typed && s->rx_done && !s->stop) {
			s->stop = 1;
			poke(s->wake[1]);
		}
		if (until == 0 && (got_signal || s->txcode != 0 || s->stop ||
		    (s->c.chat && (s->ends.sent_close || s->tx_done))))
			until = now + GRACE_MS;
		if (until != 0 && now >= until)
			break;
		pthread_mutex_unlock(&s->mu);
		timeout = until != 0 ? (int)(until - now) : -1;
		if (poll(pfd, 2, timeout) > 0) {
			drain_fd(sigwake[0]);
			drain_fd(s->notify[0]);
		}
		pthread_mutex_lock(&s->mu);
	}
	pthread_mutex_unlock(&s->mu);
}

/* Wait up to ms for *flag (a thread's done flag) to be set. */
static void
wait_flag(struct session *s, const int *flag, int ms)
{
	struct pollfd pfd = { s->notify[0], POLLIN, 0 };
	int64_t until = proto_now_ms() + ms, left;
	int done;

	for (;;) {
		pthread_mutex_lock(&s->mu);
		done = *flag;
		pthread_mutex_unlock(&s->mu);
		if (done || (left = until - proto_now_ms()) <= 0)
			return;
		if (poll(&pfd, 1, (int)left) > 0)
			drain_fd(s->notify[0]);
	}
}

/*
 * End the session on the socket, in order.  The sender goes first, with
 * a moment to send what it must (an ERROR).  Then, after a clean end or an
 * ERROR either way, our half of the connection is shut and the receiver
 * reads on until the peer's end, at most LINGER_MS: closing with unread
 * input would send a reset, which can destroy the last ACK or ERROR still
 * on its way.  After a cut, a bad packet or a signal there is nothing more
 * to say or hear.  Return nonzero if a thread is stuck on stdin or stdout,
 * which no shutdown reaches.
 */
static int
session_end(struct session *s, pthread_t tx, pthread_t rx)
{
	struct timespec ts;
	int linger, stuck = 0;

	pthread_mutex_lock(&s->mu);
	linger = !s->c.classic && !got_signal && (proto_ends_done(&s->ends) ||
	    s->want_error || s->peer_failed);
	s->stop = 1;
	/* What the threads meet from now on is our doing. */
	s->ending = 1;
	pthread_mutex_unlock(&s->mu);
	poke(s->wake[1]);
	if (!linger)
		(void)shutdown(s->c.sock, SHUT_RDWR);
	wait_flag(s, &s->tx_done, GRACE_MS);
	/* A sender blocked on a full socket: that is what unblocks it. */
	(void)shutdown(s->c.sock, linger ? SHUT_WR : SHUT_RDWR);
	if (linger)
		wait_flag(s, &s->rx_done, LINGER_MS);
	(void)shutdown(s->c.sock, SHUT_RDWR);
	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_sec += GRACE_MS / 1000;
	stuck = pthread_timedjoin_np(tx, NULL, &ts) != 0;
	stuck = pthread_timedjoin_np(rx, NULL, &ts) != 0 || stuck;
	return (stuck);
}

/*
 * How the session ended: its exit status, and in msg the failure to
 * report (empty if none).  In x25519chat/2 a session is clean only once
 * both sides sent CLOSE and both got the other's ACK.
 */
static int
session_result(struct session *s, char *msg, size_t len)
{

	msg[0] = '\0';
	if (s->code != 0) {
		snprintf(msg, len, "%s", s->msg);
		return (s->code);
	}
	if (!s->c.classic && proto_ends_done(&s->ends) && s->ack_written)
		return (EXIT_OK);
	/* Classic: once the peer has left, our own end may find it gone. */
	if (s->txcode != 0 && !(s->c.classic && s->c.typed && s->rx_done)) {
		snprintf(msg, len, "%s", s->txmsg);
		return (s->txcode);
	}
	if (got_signal && !(s->c.classic && s->c.chat && s->tx_done)) {
		snprintf(msg, len, "interrupted by signal %d: the session was "
		    "cut before its end", (int)got_signal);
		return (128 + got_signal);
	}
	if (!s->c.classic) {
		snprintf(msg, len, "the peer did not confirm the end of the "
		    "session: %s", s->ends.got_close ? "what it sent is whole, "
		    "but what we sent may not have reached its output" :
		    "the stream may be incomplete");
		return (EXIT_CUT);
	}
	return (EXIT_OK);
}

/*
 * Run both threads until the session ends; return the exit status, with
 * any failure reported.
 */
static int
session_threads(struct session *s)
{
	pthread_t tx, rx;
	sigset_t mask;
	char msg[sizeof(s->msg)];
	int rc, rc2 = 0, stuck;

	drain_fd(sigwake[0]);
	got_signal = 0;
	catch_signals(1);
	if (s->c.chat && term_start() != 0)
		s->c.chat = 0;
	/* The threads are born with the ending signals blocked. */
	(void)pthread_sigmask(SIG_BLOCK, &caught, &mask);
	if ((rc = pthread_create(&rx, NULL, receiver_main, s)) == 0 &&
	    (rc2 = pthread_create(&tx, NULL, sender_main, s)) != 0) {
		(void)shutdown(s->c.sock, SHUT_RDWR);
		pthread_join(rx, NULL);
	}
	(void)pthread_sigmask(SIG_SETMASK, &mask, NULL);
	if (rc != 0 || rc2 != 0) {
		term_stop();
		catch_signals(0);
		say_error("pthread_create: %s", strerror(rc != 0 ? rc : rc2));
		return (EXIT_RUNTIME);
	}

	session_watch(s);
	stuck = session_end(s, tx, rx);
	rc = session_result(s, msg, sizeof(msg));
	if (stuck) {
		/* That thread may hold a lock of the terminal or of the
		 * voice: no say_error(). */
		term_restore();
		if (msg[0] == '\0')
			snprintf(msg, sizeof(msg), "standard input or output is "
			    "blocked; giving up");
		dprintf(STDERR_FILENO, PROG ": %s\n", msg);
		_exit(rc != 0 ? rc : EXIT_RUNTIME);
	}
	term_stop();
	catch_signals(0);
	if (msg[0] != '\0')
		say_error("%s", msg);
	/* Ours was the failure reported; the peer's comes second. */
	if (s->peer_failed && rc != EXIT_PEER && s->code != 0 && !s->busy)
		say_error("peer failed: %s", s->peer_msg);
	if (rc == EXIT_OK)
		say_status(0, !s->c.chat ? "Peer finished sending." :
		    s->we_left ? "Left the chat." : "Peer left.");
	return (rc);
}

/*
 * session_init(void):
 * Prepare what sessions share, once before the first: the pipe through
 * which a signal wakes the thread that watches a session.  Return 0, or
 * -1 after reporting.
 */
int
session_init(void)
{

	if (pipe2(sigwake, O_CLOEXEC | O_NONBLOCK) == -1) {
		say_error("pipe: %s", strerror(errno));
		return (-1);
	}
	return (0);
}

/*
 * A dead peer is noticed by the keepalive limit; TCP keepalive also
 * probes a connection that has gone quiet, below us.
 */
static void
tcp_keepalive(int sock)
{
	int on = 1, idle = 30, intvl = 10, cnt = 3;

	(void)setsockopt(sock, SOL_SOCKET, SO_KEEPALIVE, &on, sizeof(on));
	(void)setsockopt(sock, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof(idle));
	(void)setsockopt(sock, IPPROTO_TCP, TCP_KEEPINTVL, &intvl,
	    sizeof(intvl));
	(void)setsockopt(sock, IPPROTO_TCP, TCP_KEEPCNT, &cnt, sizeof(cnt));
}

/* The session struct of the configuration c, its pipes open; 0 or -1. */
static int
session_open(struct session *s, const struct session_conf *c)
{

	memset(s, 0, sizeof(*s));
	s->wake[0] = s->wake[1] = s->notify[0] = s->notify[1] = -1;
	if (pipe2(s->wake, O_CLOEXEC | O_NONBLOCK) == -1 ||
	    pipe2(s->notify, O_CLOEXEC | O_NONBLOCK) == -1) {
		say_error("pipe: %s", strerror(errno));
		return (-1);
	}
	pthread_mutex_init(&s->mu, NULL);
	s->c = *c;
	s->in = STDIN_FILENO;
	s->out = STDOUT_FILENO;
	s->ends.initiator = c->initiator;
	s->last_sent = proto_now_ms();
	return (0);
}

static void
session_close(struct session *s)
{
	int i;

	for (i = 0; i < 2; i++) {
		if (s->wake[i] != -1)
			close(s->wake[i]);
		if (s->notify[i] != -1)
			close(s->notify[i]);
	}
	pthread_mutex_destroy(&s->mu);
}

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
int
session_run(const struct session_conf *c)
{
	struct session s;
	uint8_t pkt[PROTO_HDRBYTES + 1];
	int rc;

	if (session_open(&s, c) != 0) {
		session_close(&s);
		return (EXIT_RUNTIME);
	}
	if (!s.c.classic)
		tcp_keepalive(s.c.sock);
	/* The listener's first packet tells the connector it was accepted. */
	if (!s.c.classic && !s.c.initiator &&
	    (proto_ends_send(&s.ends, PROTO_DATA) != 0 ||
	    send_typed(&s, pkt, PROTO_DATA, 0) != 0)) {
		say_error("%s", s.txcode != 0 ? s.txmsg : s.msg);
		rc = s.txcode != 0 ? s.txcode : s.code;
	} else
		rc = session_threads(&s);
	session_close(&s);
	return (rc);
}

/*
 * session_signal(void):
 * Return the number of the signal that ended the last session, or 0.
 */
int
session_signal(void)
{

	return (got_signal);
}
