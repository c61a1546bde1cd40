/*
 * A session after its handshake: the sender and receiver threads, the
 * packets both roles share, and the signals that end a session.  See
 * session.h.
 */

#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/uio.h>

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

#define SHOWMAX		4096		/* a received chat line shown at once */

/* One connection, from its handshake to the end of both directions. */
struct session {
	int sock;
	int classic;
	int chat;		/* stdin and stdout are terminals */
	int typed;		/* stdin is a terminal (chat or not) */
	int initiator;
	int verbose;
	struct proto_cipher *tx;	/* owned by the sender thread */
	struct proto_cipher *rx;	/* owned by the receiver thread */
	char label[4 * PROTO_NAMEMAX + 3];	/* "[name]", shown safely */
	/* Told of the peer's first packet, then NULL (receiver only). */
	session_first_fn *first_packet;
	void *first_arg;

	pthread_mutex_t mu;	/* guards everything below */
	pthread_cond_t cv;
	int tx_done, rx_done;
	int we_left;		/* our direction ended before the peer's */
	int stop;		/* main asks the sender to finish */
	int ending;		/* main is closing the socket: not a failure */
	int code;		/* first failure's exit status, or 0 */
	char msg[512];		/* first failure's message */
	int txcode;		/* the socket refused our data, or 0 */
	char txmsg[128];
};

/* Written by signal handlers, read by every thread: a lock-free atomic. */
static atomic_int got_signal;
static int wakefd[2] = { -1, -1 };

/*
 * Signals: SIGINT, SIGTERM and SIGHUP during a session wake the sender,
 * which sends CLOSE; the main thread then ends the session.
 */

static void
on_signal(int sig)
{
	int saved = errno;

	got_signal = sig;
	(void)write(wakefd[1], "s", 1);
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
	for (i = 0; i < 4; i++) {
		if (!on)
			(void)sigaction(sigs[i], &saved[i], NULL);
		else if (sigaction(sigs[i], NULL, &saved[i]) == 0 &&
		    (sigs[i] != SIGHUP || saved[i].sa_handler != SIG_IGN))
			(void)sigaction(sigs[i], &sa, NULL);
	}
}

static void
wake_drain(void)
{
	char buf[64];

	while (read(wakefd[0], buf, sizeof(buf)) > 0)
		;
}

/*
 * The session: thread results go through the session struct; only the
 * main thread reports and decides the exit status.
 */

/* Record a failure; the first one is the one reported. */
static void
session_fail(struct session *s, int code, const char *fmt, ...)
{
	va_list ap;

	pthread_mutex_lock(&s->mu);
	if (s->code == 0 && !s->ending) {
		s->code = code;
		va_start(ap, fmt);
		vsnprintf(s->msg, sizeof(s->msg), fmt, ap);
		va_end(ap);
	}
	pthread_cond_signal(&s->cv);
	pthread_mutex_unlock(&s->mu);
}

static void
session_done(struct session *s, int *flag)
{

	pthread_mutex_lock(&s->mu);
	*flag = 1;
	if (flag == &s->tx_done && !s->rx_done)
		s->we_left = 1;
	pthread_cond_signal(&s->cv);
	pthread_mutex_unlock(&s->mu);
}

static int
session_stopping(struct session *s)
{
	int stop;

	pthread_mutex_lock(&s->mu);
	stop = s->stop || s->code != 0;
	pthread_mutex_unlock(&s->mu);
	return (stop);
}

static int
session_failed(struct session *s)
{
	int code;

	pthread_mutex_lock(&s->mu);
	code = s->code;
	pthread_mutex_unlock(&s->mu);
	return (code != 0);
}

static const char *
type_name(int classic, int type)
{

	if (classic)
		return ("text");
	switch (type) {
	case PROTO_DATA:
		return ("DATA");
	case PROTO_CLOSE:
		return ("CLOSE");
	case PROTO_REKEY:
		return ("REKEY");
	default:
		return ("unknown");
	}
}

/* -vv: one line per packet. */
static void
trace_packet(struct session *s, const char *dir, uint64_t n,
    const uint8_t *pkt, size_t ptlen, int type)
{
	char nonce[2 * PROTO_NONCEBYTES + 1], tag[2 * PROTO_TAGBYTES + 1];

	if (s->verbose < 2)
		return;
	say_hex(nonce, pkt + PROTO_LENBYTES, PROTO_NONCEBYTES);
	say_hex(tag, pkt + PROTO_LENBYTES + PROTO_NONCEBYTES, PROTO_TAGBYTES);
	say_status(2, "[trace] %s n=%llu type=%s length=%zu nonce=%s tag=%s",
	    dir, (unsigned long long)n, type_name(s->classic, type),
	    ptlen + PROTO_NONCEBYTES + PROTO_TAGBYTES, nonce, tag);
}

/* Seal the ptlen bytes at pkt + PROTO_HDRBYTES into a packet, in place. */
static int
seal(struct session *s, uint8_t *pkt, size_t ptlen)
{
	uint64_t n = proto_cipher_nonce(s->tx);
	int rc, type = s->classic ? 0 : pkt[PROTO_HDRBYTES];

	if ((rc = proto_seal(s->tx, pkt, ptlen)) != 0) {
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

	if (proto_write_full(s->sock, buf, len) == 0)
		return (0);
	/* The receiver usually learns why the connection died (a cut, a
	 * refusal): its report, if it makes one, comes first. */
	err = errno;
	pthread_mutex_lock(&s->mu);
	if (s->txcode == 0 && !s->ending) {
		s->txcode = EXIT_RUNTIME;
		snprintf(s->txmsg, sizeof(s->txmsg), "send: %s%s",
		    strerror(err), err == EPIPE || err == ECONNRESET ?
		    ": the peer is gone; what we sent may not all have arrived" :
		    "");
	}
	pthread_cond_signal(&s->cv);
	pthread_mutex_unlock(&s->mu);
	return (-1);
}

/* Default protocol: 1 GiB or 120 s have passed since the last key. */
static int
rekey_due(const struct session *s)
{

	return (!s->classic && proto_cipher_rekey_due(s->tx, proto_now_ms()));
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
	(void)proto_cipher_rekey(s->tx);
	say_status(1, "Rekeyed the sending direction.");
	return (0);
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

/* The end of our direction: CLOSE, or in classic the end of TCP. */
static int
send_close(struct session *s)
{
	uint8_t pkt[PROTO_HDRBYTES + 1];

	if (!s->classic && send_typed(s, pkt, PROTO_CLOSE, 0) != 0)
		return (-1);
	(void)shutdown(s->sock, SHUT_WR);
	return (0);
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
};

/* Chat mode: one typed line is one packet (with its newline, by default). */
static int
send_line(void *arg, const char *line, size_t len)
{
	struct sender *sd = arg;
	struct session *s = sd->s;

	if (PROTO_HDRBYTES + 1 + len + 1 > sd->touched)
		sd->touched = PROTO_HDRBYTES + 1 + len + 1;
	if (!s->classic) {
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
	if ((r = readv(STDIN_FILENO, iov, NSLOT)) == 0)
		return (1);
	if (r == -1 && (errno == EINTR || errno == EAGAIN))
		return (0);
	if (r == -1) {
		session_fail(s, EXIT_RUNTIME, "read from stdin: %s",
		    strerror(errno));
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

	r = read(STDIN_FILENO, in + *have, PROTO_MAXPLAIN - *have);
	if (r == -1 && (errno == EINTR || errno == EAGAIN))
		return (0);
	if (r == -1) {
		session_fail(s, EXIT_RUNTIME, "read from stdin: %s",
		    strerror(errno));
		return (-1);
	}
	if (s->chat) {
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
 * Wait until stdin is readable or the sender is told to stop.  Return 1
 * when readable, 0 when stopping, -1 on error.
 */
static int
wait_input(struct session *s)
{
	struct pollfd pfd[2];

	for (;;) {
		pfd[0].fd = STDIN_FILENO;
		pfd[0].events = POLLIN;
		pfd[1].fd = wakefd[0];
		pfd[1].events = POLLIN;
		if (poll(pfd, 2, -1) == -1) {
			if (errno == EINTR)
				continue;
			return (-1);
		}
		if (pfd[1].revents != 0) {
			wake_drain();
			if (got_signal || session_stopping(s))
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

/* The sender thread: stdin -> seal -> socket, then the end of stream. */
static void *
sender_main(void *arg)
{
	struct session *s = arg;
	struct sender sd;
	uint8_t *in = NULL;
	size_t have = 0;
	int rc = 0;

	memset(&sd, 0, sizeof(sd));
	sd.s = s;
	if ((sd.out = malloc(OUTBYTES)) == NULL ||
	    (in = malloc(PROTO_MAXPLAIN)) == NULL) {
		session_fail(s, EXIT_RUNTIME, "malloc: %s", strerror(errno));
		goto done;
	}
	if (!s->chat)
		widen_pipe(STDIN_FILENO);
	while (rc == 0) {
		if ((rc = wait_input(s)) == 0)
			break;
		if (rc == -1) {
			session_fail(s, EXIT_RUNTIME, "poll: %s",
			    strerror(errno));
			goto done;
		}
		if (s->chat || s->classic)
			rc = pump_lines(&sd, in, &have);
		else
			rc = pump_stream(&sd);
	}
	if (rc == -1)
		goto done;

	/*
	 * The end of our direction, unless the session failed.  CLOSE vouches
	 * that the stream is complete: a pipe cut short by a signal gets no
	 * CLOSE, so the peer reports an incomplete stream.
	 */
	if (session_failed(s) || (got_signal && !s->chat))
		goto done;
	(void)send_close(s);
done:
	if (in != NULL && (s->chat || s->classic))
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
 * Chat mode, default protocol: DATA is a byte stream; show it a line at a
 * time, holding back a partial line until its newline arrives.
 */
static void
show_stream(struct session *s, uint8_t *held, size_t *nheld,
    const uint8_t *data, size_t len, int flush)
{
	size_t take;
	const uint8_t *nl;

	while (len > 0) {
		nl = memchr(data, '\n', len);
		take = nl != NULL ? (size_t)(nl - data) : len;
		if (take > SHOWMAX - *nheld)
			take = SHOWMAX - *nheld;
		memcpy(held + *nheld, data, take);
		*nheld += take;
		data += take;
		len -= take;
		if (len > 0 && *data == '\n') {
			data++;
			len--;
		} else if (*nheld < SHOWMAX)
			continue;
		term_show(s->label, held, *nheld);
		*nheld = 0;
	}
	if (flush && *nheld > 0) {
		term_show(s->label, held, *nheld);
		*nheld = 0;
	}
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
	struct iovec iov[64];	/* plaintexts waiting for stdout */
	int niov;
	uint8_t held[SHOWMAX];	/* chat: a line waiting for its end */
	size_t nheld;
};

/*
 * The peer's first packet has proved the session: tell the caller, once.
 * 0 or -1 (recorded).
 */
static int
tell_first(struct session *s)
{
	session_first_fn *fn = s->first_packet;
	char why[sizeof(s->msg)];
	int code;

	s->first_packet = NULL;
	why[0] = '\0';
	if ((code = fn(s->first_arg, why, sizeof(why))) != 0) {
		session_fail(s, code, "%s", why);
		return (-1);
	}
	return (0);
}

/* Write out the plaintexts waiting in r->iov.  0 or -1 (recorded). */
static int
flush_in(struct receiver *r)
{
	struct iovec *iov = r->iov;
	int n = r->niov;
	ssize_t w;

	r->niov = 0;
	while (n > 0) {
		if ((w = writev(STDOUT_FILENO, iov, n)) == -1 &&
		    errno == EINTR)
			continue;
		/* Someone else may have made stdout non-blocking. */
		if (w == -1 && errno == EAGAIN) {
			struct pollfd pfd = { STDOUT_FILENO, POLLOUT, 0 };

			if (poll(&pfd, 1, -1) != -1 || errno == EINTR)
				continue;
		}
		if (w == -1) {
			session_fail(r->s, EXIT_RUNTIME, "write to stdout: %s",
			    strerror(errno));
			return (-1);
		}
		for (; n > 0 && (size_t)w >= iov->iov_len; iov++, n--)
			w -= (ssize_t)iov->iov_len;
		if (n > 0) {
			iov->iov_base = (uint8_t *)iov->iov_base + w;
			iov->iov_len -= (size_t)w;
		}
	}
	return (0);
}

/* Pass len bytes of authenticated plaintext on: to stdout, or the screen. */
static int
deliver(struct receiver *r, const uint8_t *data, size_t len)
{
	struct session *s = r->s;

	if (s->chat && s->classic)
		term_show(s->label, data, len);
	else if (s->chat)
		show_stream(s, r->held, &r->nheld, data, len, 0);
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
 * Read more from the socket.  Return 0, 1 at a clean end of the stream,
 * or -1 on failure (recorded).
 */
static int
fill(struct receiver *r)
{
	struct session *s = r->s;
	ssize_t n;
	int cut;

	/* Move a partial packet to the front only when its rest might not
	 * fit behind it. */
	if (r->pos == r->have)
		r->pos = r->have = 0;
	else if (INBYTES - r->have < PROTO_MAXPKT) {
		memmove(r->buf, r->buf + r->pos, r->have - r->pos);
		r->have -= r->pos;
		r->pos = 0;
	}
	do
		n = read(s->sock, r->buf + r->have, INBYTES - r->have);
	while (n == -1 && errno == EINTR);
	if (n > 0) {
		r->have += (size_t)n;
		if (r->have > r->touched)
			r->touched = r->have;
		return (0);
	}
	/* The connection itself died: reset, timed out, unreachable. */
	cut = n == 0 || errno == ECONNRESET || errno == ETIMEDOUT ||
	    errno == EHOSTUNREACH || errno == ENETUNREACH;
	if (!cut || (s->classic && r->have == r->pos && n != 0))
		session_fail(s, EXIT_RUNTIME, "receive: %s", strerror(errno));
	else if (s->classic && r->have == r->pos)
		/* Classic has no CLOSE: the end of TCP between packets. */
		return (1);
	else if (s->classic)
		session_fail(s, EXIT_SECURITY, "connection closed in the middle "
		    "of a packet");
	else if (!r->opened && r->have == r->pos && s->initiator)
		/* A listener that ends the connection before its first
		 * packet has refused us after the handshake. */
		session_fail(s, EXIT_SECURITY, "the listener closed the "
		    "connection after the handshake: it refused our key or "
		    "our pre-shared key");
	else
		session_fail(s, EXIT_CUT, "connection cut before the peer's "
		    "CLOSE: the stream is incomplete");
	return (-1);
}

/*
 * Open every whole packet in the buffer and deliver what it carries.
 * Return 0, 1 after the peer's CLOSE, or -1 on failure (recorded, with
 * what came before it delivered).
 */
static int
drain(struct receiver *r)
{
	static const uint8_t newline = '\n';
	struct session *s = r->s;
	uint8_t *pkt, *pt;
	size_t len, ptlen;
	uint64_t n;
	int rc = 0, type;

	while (rc == 0 && r->have - r->pos >= PROTO_LENBYTES) {
		pkt = r->buf + r->pos;
		n = proto_cipher_nonce(s->rx);
		/* The length is checked before the rest is waited for. */
		if ((rc = proto_open_len(s->rx, pkt, &len)) == 0 &&
		    r->have - r->pos < PROTO_LENBYTES + len)
			break;
		if (rc != 0 || (rc = proto_open(s->rx, pkt,
		    PROTO_LENBYTES + len, &ptlen)) != 0) {
			session_fail(s, say_exit_for(rc), "packet %llu from "
			    "peer: %s", (unsigned long long)n,
			    proto_strerror(rc));
			rc = -1;
			break;
		}
		r->pos += PROTO_LENBYTES + len;
		if (!r->opened && s->first_packet != NULL &&
		    (rc = tell_first(s)) != 0)
			break;
		r->opened = 1;
		pt = pkt + PROTO_HDRBYTES;
		type = s->classic ? PROTO_DATA : pt[0];
		trace_packet(s, "recv", n, pkt, ptlen, type);
		if (s->classic) {
			/* The text, then the newline it lost. */
			rc = deliver(r, pt, ptlen);
			if (rc == 0 && !s->chat)
				rc = deliver(r, &newline, 1);
		} else if (type == PROTO_DATA)
			rc = deliver(r, pt + 1, ptlen - 1);
		else if (ptlen != 1 ||
		    (type != PROTO_CLOSE && type != PROTO_REKEY)) {
			session_fail(s, EXIT_SECURITY, "packet %llu from "
			    "peer: %s", (unsigned long long)n,
			    proto_strerror(PROTO_EBADTYPE));
			rc = -1;
		} else if (type == PROTO_CLOSE)
			rc = 1;
		else {
			(void)proto_cipher_rekey(s->rx);
			say_status(1, "Peer rekeyed its sending direction.");
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
		session_fail(r.s, EXIT_RUNTIME, "malloc: %s", strerror(errno));
		goto done;
	}
	if (!r.s->chat)
		widen_pipe(STDOUT_FILENO);
	while (fill(&r) == 0 && drain(&r) == 0)
		;
	if (r.s->chat)
		show_stream(r.s, r.held, &r.nheld, NULL, 0, 1);
done:
	/* Only what was used: wiping untouched pages would fault them in. */
	if (r.buf != NULL)
		sodium_memzero(r.buf, r.touched);
	free(r.buf);
	sodium_memzero(r.held, sizeof(r.held));
	session_done(r.s, &r.s->rx_done);
	return (NULL);
}

/*
 * The main thread's watch over a session: wait until it has ended, or
 * must end.  Say whether the peer's direction ended (*ended) and ours did
 * cleanly (*closed).
 */
static void
session_wait(struct session *s, int *ended, int *closed)
{
	struct timespec ts;
	int64_t until = 0;

	pthread_mutex_lock(&s->mu);
	for (;;) {
		if (s->code != 0 || (s->rx_done && s->tx_done))
			break;
		/* A signal ends a chat once our CLOSE is out, a pipe at once. */
		if (got_signal && (s->tx_done || !s->chat))
			break;
		/* Ctrl-D in classic chat mode leaves, as the original. */
		if (s->classic && s->chat && s->tx_done)
			break;
		/*
		 * When a person types our side, the peer leaving ends the
		 * session, chat or not: nobody is left to press Ctrl-D after a
		 * download into a file.
		 */
		if (s->rx_done && s->typed && !s->stop) {
			s->stop = 1;
			(void)write(wakefd[1], "x", 1);
		}
		/*
		 * Once the end is near, the threads get two seconds to finish:
		 * after a signal, after the socket refused our data, and in a
		 * chat once either side has left (a chat peer answers a CLOSE
		 * at once; one that stops reading must not keep us here).
		 */
		if (until == 0 && (got_signal || s->txcode != 0 || s->stop ||
		    (s->chat && s->tx_done)))
			until = proto_now_ms() + 2000;
		if (until != 0 && proto_now_ms() >= until)
			break;
		/* Wake up now and then: a signal handler cannot signal cv. */
		clock_gettime(CLOCK_MONOTONIC, &ts);
		ts.tv_nsec += 200 * 1000000;
		if (ts.tv_nsec >= 1000000000) {
			ts.tv_sec++;
			ts.tv_nsec -= 1000000000;
		}
		(void)pthread_cond_timedwait(&s->cv, &s->mu, &ts);
	}
	*ended = s->rx_done;
	*closed = s->tx_done && s->txcode == 0;
	s->stop = 1;
	/* What the threads see once the socket is shut is our doing. */
	s->ending = 1;
	pthread_mutex_unlock(&s->mu);

}

static int session_result(struct session *, int, int, char *, size_t);

/*
 * Run both threads until the session ends; return the exit status, with
 * any failure reported.
 */
static int
session_threads(struct session *s)
{
	pthread_t tx, rx;
	struct timespec ts;
	char msg[600];
	int rc, ended, closed, stuck;

	wake_drain();
	got_signal = 0;
	catch_signals(1);
	if (s->chat && term_start() != 0)
		s->chat = 0;
	if ((rc = pthread_create(&rx, NULL, receiver_main, s)) != 0) {
		term_stop();
		catch_signals(0);
		say_error("pthread_create: %s", strerror(rc));
		return (EXIT_RUNTIME);
	}
	if ((rc = pthread_create(&tx, NULL, sender_main, s)) != 0) {
		(void)shutdown(s->sock, SHUT_RDWR);
		pthread_join(rx, NULL);
		term_stop();
		catch_signals(0);
		say_error("pthread_create: %s", strerror(rc));
		return (EXIT_RUNTIME);
	}

	session_wait(s, &ended, &closed);

	/*
	 * Unblock whichever thread is still waiting, then collect both.  A
	 * thread stuck on stdin or stdout, which no shutdown reaches, gets
	 * two seconds; then the process ends without it.
	 */
	(void)write(wakefd[1], "x", 1);
	(void)shutdown(s->sock, SHUT_RDWR);
	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_sec += 2;
	stuck = pthread_timedjoin_np(tx, NULL, &ts) != 0;
	stuck = pthread_timedjoin_np(rx, NULL, &ts) != 0 || stuck;
	rc = session_result(s, ended, closed, msg, sizeof(msg));
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
	else if (ended)
		say_status(0, !s->chat ? "Peer finished sending." : s->we_left ?
		    "Left the chat." : "Peer left.");
	return (rc);
}

/*
 * How the session ended: its exit status, and in msg the failure to
 * report (empty if none).
 */
static int
session_result(struct session *s, int ended, int closed, char *msg,
    size_t len)
{

	msg[0] = '\0';
	if (s->code != 0) {
		snprintf(msg, len, "%s", s->msg);
		return (s->code);
	}
	/* Once the peer has left, our own CLOSE may find it gone. */
	if (s->txcode != 0 && !(s->typed && ended)) {
		snprintf(msg, len, "%s", s->txmsg);
		return (s->txcode);
	}
	if (got_signal && !(s->chat && closed)) {
		snprintf(msg, len, "interrupted by signal %d: the session was "
		    "cut before its end", (int)got_signal);
		return (128 + got_signal);
	}
	return (EXIT_OK);
}

/*
 * session_init(void):
 * Prepare what sessions share, once before the first: the pipe through
 * which signals and the main thread wake the sender.  Return 0, or -1
 * after reporting.
 */
int
session_init(void)
{

	if (pipe2(wakefd, O_CLOEXEC | O_NONBLOCK) == -1) {
		say_error("pipe: %s", strerror(errno));
		return (-1);
	}
	return (0);
}

/*
 * session_run(c):
 * Run the session c describes until both directions have ended, or a
 * failure or a signal ends it; a listener first sends the empty DATA
 * packet that tells the connector it was accepted.  While it runs,
 * SIGINT, SIGTERM, SIGQUIT and SIGHUP (unless ignored) end it, a chat
 * once our CLOSE is out, and a chat has the terminal in raw mode.  The
 * ciphers stay the caller's to free; the socket stays open.  Return the
 * exit status, after reporting any failure.
 */
int
session_run(const struct session_conf *c)
{
	struct session s;
	pthread_condattr_t ca;
	uint8_t pkt[PROTO_HDRBYTES + 1];
	int rc;

	memset(&s, 0, sizeof(s));
	pthread_mutex_init(&s.mu, NULL);
	/* The main thread's waits must not stretch if the clock is set. */
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&s.cv, &ca);
	pthread_condattr_destroy(&ca);
	s.sock = c->sock;
	s.classic = c->classic;
	s.chat = c->chat;
	s.typed = c->typed;
	s.initiator = c->initiator;
	s.verbose = c->verbose;
	s.tx = c->tx;
	s.rx = c->rx;
	memcpy(s.label, c->label, sizeof(s.label));
	s.first_packet = c->first_packet;
	s.first_arg = c->first_arg;

	/* The listener's first packet tells the connector it was accepted. */
	if (!s.classic && !s.initiator &&
	    send_typed(&s, pkt, PROTO_DATA, 0) != 0) {
		say_error("%s", s.txcode != 0 ? s.txmsg : s.msg);
		rc = s.txcode != 0 ? s.txcode : s.code;
	} else
		rc = session_threads(&s);
	pthread_cond_destroy(&s.cv);
	pthread_mutex_destroy(&s.mu);
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
