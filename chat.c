/*
 * x25519chat: a private chat, or a secure pipe, between two machines.
 *
 * This file owns the options, the sockets, the terminal and the two I/O
 * threads; proto.c owns every byte of cryptography.  The story: parse the
 * options, connect or accept, run the handshake, check the peer's key, run
 * one sender and one receiver thread until both directions have ended, and
 * report how it went in the exit status.
 */

#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/uio.h>

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
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
#include "trust.h"
#include "net.h"

#define DEFAULT_WAIT	10
#define SHOWMAX		4096		/* a received chat line shown at once */

static const char usage_text[] =
"usage: x25519chat -l [HOST:]PORT [-k] [options]\n"
"       x25519chat -c HOST:PORT [options]\n"
"       x25519chat --keygen [FILE]\n"
"       x25519chat --pubkey [FILE|-]\n"
"options:\n"
"  --classic          speak the original X25519-TCP-Chat protocol\n"
"                     (no authentication)\n"
"  -k                 after a peer leaves, listen for the next one\n"
"  -w SECS            connect and handshake timeout (default 10)\n"
"  -4 / -6            address family\n"
"  -v                 more status (repeatable; -vv traces the cryptography)\n"
"  -q                 no status\n"
"  -i FILE            identity key (default ~/.config/x25519chat/identity)\n"
"  -n NAME            display name sent to the peer\n"
"  --peer KEY         accept only the peer with this public key\n"
"  --known-peers FILE keys of listeners seen before (connector)\n"
"  --allow FILE       accept only the keys listed in FILE (listener)\n"
"  --psk FILE         require this pre-shared key too\n"
"  -h, --help         show this help;  -V, --version  show the version\n";

struct opts {
	const char *listen;	/* -l [HOST:]PORT */
	const char *connect;	/* -c HOST:PORT */
	int classic;
	int keep;		/* -k */
	int wait;		/* -w SECS */
	int family;		/* AF_UNSPEC, AF_INET or AF_INET6 */
	int verbose;		/* -1 with -q */
	const char *identity;	/* -i */
	const char *name;	/* -n */
	const char *peer;	/* --peer KEY */
	const char *known;	/* --known-peers */
	const char *allow;	/* --allow */
	const char *psk;	/* --psk */
	int keygen, pubkey;	/* --keygen, --pubkey */
	const char *keyfile;	/* operand of --keygen / --pubkey */
};

/* One connection, from handshake to the end of both directions. */
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

	/* Connector, first contact: the listener's key goes to known_peers
	 * once its first packet has proved the session (and any PSK). */
	const struct trust_keys *k;
	uint8_t rs[PROTO_KEYBYTES];
	int record;
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
 * The listener's first packet has proved the session: a first contact's
 * key goes into known_peers now.  0 or -1 (recorded).
 */
static int
record_peer(struct session *s)
{

	s->record = 0;
	if (trust_known_add(s->k->known, s->k->hostport, s->rs) != 0) {
		session_fail(s, EXIT_RUNTIME, "%s: cannot record the peer's "
		    "key: %s", s->k->known, strerror(errno));
		return (-1);
	}
	say_status(0, "First contact with %s: its key is now recorded in %s",
	    s->k->hostport, s->k->known);
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
		if (!r->opened && s->record && (rc = record_peer(s)) != 0)
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
session_run(struct session *s)
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
 * A session from handshake to end.
 */

static void
trace_step(void *arg, const char *what, const uint8_t *buf, size_t len)
{
	char *h;

	(void)arg;
	if (buf == NULL) {
		say_status(2, "[trace] %s", what);
		return;
	}
	if ((h = malloc(2 * len + 1)) == NULL)
		return;
	say_hex(h, buf, len);
	say_status(2, "[trace]   %s = %s", what, h);
	sodium_memzero(h, 2 * len + 1);
	free(h);
}

/*
 * Report why the handshake failed with rc, in the words of the step it
 * failed at, and return the exit status.
 */
static int
handshake_failed(int rc, const struct proto_hs *hs, const struct opts *o,
    const struct trust_keys *k, const char *peer)
{
	int connector = o->connect != NULL;
	/* The step at which we wait for the peer's first message. */
	int silent = proto_hs_step(hs) == (o->classic == connector ? 0 : 1);
	const char *why = proto_strerror(rc), *hint = "";

	if (rc == PROTO_EEOF || rc == PROTO_ETRUNC || (rc == PROTO_EERRNO &&
	    (errno == ECONNRESET || errno == EPIPE))) {
		/* The peer refused the handshake, or someone cut it. */
		why = "the connection closed during the handshake";
		if (silent)
			why = "the peer closed the connection without a word";
		if (!o->classic && connector)
			hint = " (does the listener want a --psk, or speak "
			    "--classic?)";
		else if (!o->classic && !silent)
			hint = " (the connector refused our key, or its --psk "
			    "differs)";
		say_error("handshake with %s failed: %s%s", peer, why, hint);
		return (EXIT_SECURITY);
	}
	if (rc == PROTO_ETIMEOUT && silent)
		hint = " waiting for the peer's first message (is one side "
		    "using --classic?)";
	else if ((rc == PROTO_EBADMSG || rc == PROTO_EBADTAG) && !o->classic) {
		if (!connector && silent)
			hint = " (one side uses --psk and the other does not, "
			    "or the peer speaks --classic?)";
		else if (k->psk != NULL)
			hint = " (a different --psk on each side, or tampering)";
		else if (connector && silent)
			hint = " (does the listener want a --psk, or speak "
			    "--classic?)";
	}
	say_error("handshake with %s failed: %s%s", peer, why, hint);
	return (say_exit_for(rc));
}

/*
 * Tell the user who is at the other end, record a first contact, and set
 * the label of the peer's lines.  Return 0 or an exit status.
 */
static int
report_peer(struct session *s, const struct opts *o, struct trust_keys *k,
    const struct proto_hs *hs, const struct trust_verify *v,
    const uint8_t *name, size_t namelen)
{
	char b64[PROTO_B64LEN + 1], code[PROTO_CODELEN + 1];
	char shown[4 * PROTO_NAMEMAX + 1], sec[2 * PROTO_KEYBYTES + 1];
	const uint8_t *rs = proto_hs_remote_static(hs);

	snprintf(s->label, sizeof(s->label), s->initiator ? "[server]" :
	    "[client]");
	if (o->classic) {
		say_hex(sec, proto_hs_hash(hs), PROTO_KEYBYTES);
		say_status(0, "Shared secret (hex) -> %s", sec);
		sodium_memzero(sec, sizeof(sec));
		return (0);
	}
	if (v->first_contact) {
		s->k = k;
		memcpy(s->rs, rs, PROTO_KEYBYTES);
		s->record = 1;
	}
	proto_key_encode(b64, rs);
	shown[term_sanitize(shown, name, namelen)] = '\0';
	say_status(0, "Peer key: %s%s%s%s", b64, namelen > 0 ? " (\"" : "",
	    shown, namelen > 0 ? "\")" : "");
	proto_session_code(code, proto_hs_hash(hs));
	say_status(0, "Session code: %s  (the same on both screens: no one in "
	    "the middle)", code);
	if (namelen > 0)
		snprintf(s->label, sizeof(s->label), "[%s]", shown);
	return (0);
}

/*
 * Run the handshake on s->sock, then give s its ciphers and its label.
 * peer names the other end in messages.  Return 0 or an exit status,
 * after reporting.
 */
static int
handshake(struct session *s, const struct opts *o, struct trust_keys *k,
    const char *peer)
{
	struct proto_hs_params hp;
	struct proto_hs *hs;
	struct trust_verify v;
	uint8_t name[PROTO_NAMEMAX];
	size_t namelen = 0;
	int rc;

	memset(&hp, 0, sizeof(hp));
	hp.initiator = s->initiator;
	hp.classic = o->classic;
	hp.s = k->s;
	hp.psk = k->psk;
	if (say_verbosity() >= 2) {
		hp.trace = trace_step;
		say_status(2, "[trace] WARNING: this trace shows secret keys; "
		    "never share it");
	}
	if ((hs = proto_hs_new(&hp)) == NULL) {
		say_error("proto_hs_new: %s", strerror(errno));
		return (EXIT_RUNTIME);
	}
	memset(&v, 0, sizeof(v));
	v.k = k;
	v.initiator = s->initiator;
	rc = proto_handshake(s->sock, hs, (const uint8_t *)o->name,
	    o->name != NULL ? strlen(o->name) : 0, name, &namelen,
	    proto_now_ms() + (int64_t)o->wait * 1000,
	    o->classic ? NULL : trust_verify_peer, &v);
	if (rc == PROTO_EREJECT) {
		say_error("%s: %s", peer, v.why);
		rc = EXIT_SECURITY;
	} else if (rc != 0)
		rc = handshake_failed(rc, hs, o, k, peer);
	else if ((rc = proto_hs_split(hs, &s->tx, &s->rx)) != 0) {
		say_error("%s", proto_strerror(rc));
		rc = EXIT_RUNTIME;
	} else
		rc = report_peer(s, o, k, hs, &v, name, namelen);
	proto_hs_free(hs);
	return (rc);
}

/*
 * Run the handshake and then the session on the connected socket fd.
 * Return the exit status, after reporting any failure.
 */
static int
serve(int fd, const struct opts *o, struct trust_keys *k, const char *peer)
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
	s.sock = fd;
	s.classic = o->classic;
	/* A chat needs a screen too: "-l PORT > file" at a shell is a pipe. */
	s.typed = isatty(STDIN_FILENO);
	s.chat = s.typed && isatty(STDOUT_FILENO);
	s.initiator = o->connect != NULL;
	s.verbose = say_verbosity();
	net_nodelay(fd);

	rc = handshake(&s, o, k, peer);
	/* Without -k no other handshake will need our secrets. */
	if (!o->keep) {
		sodium_free(k->s);
		sodium_free(k->psk);
		k->s = k->psk = NULL;
	}
	if (rc != 0)
		goto out;

	/* The listener's first packet tells the connector it was accepted. */
	if (!o->classic && !s.initiator &&
	    send_typed(&s, pkt, PROTO_DATA, 0) != 0) {
		say_error("%s", s.txcode != 0 ? s.txmsg : s.msg);
		rc = s.txcode != 0 ? s.txcode : s.code;
		goto out;
	}
	rc = session_run(&s);
out:
	pthread_cond_destroy(&s.cv);
	pthread_mutex_destroy(&s.mu);
	proto_cipher_free(s.tx);
	proto_cipher_free(s.rx);
	return (rc);
}

static int
run_listener(const struct opts *o, struct trust_keys *k, const char *host,
    const char *port)
{
	char peer[NET_ADDRLEN];
	int lfd, fd, rc;

	if ((lfd = net_listen(host, port, o->family)) == -1)
		return (EXIT_RUNTIME);
	if (trust_identity_create(k) != 0) {
		close(lfd);
		return (EXIT_RUNTIME);
	}
	for (;;) {
		if ((fd = net_accept(lfd, peer, sizeof(peer))) == -1) {
			close(lfd);
			return (EXIT_RUNTIME);
		}
		say_status(0, "Client %s connected", peer);
		rc = serve(fd, o, k, peer);
		close(fd);
		if (!o->keep || got_signal)
			break;
		say_status(1, "Listening for the next peer.");
	}
	close(lfd);
	return (rc);
}

static int
run_connector(const struct opts *o, struct trust_keys *k, const char *host,
    const char *port)
{
	int fd, rc;

	if ((fd = net_connect(host, port, o->family,
	    proto_now_ms() + (int64_t)o->wait * 1000)) == -1)
		return (EXIT_RUNTIME);
	say_status(0, "Connected to %s", k->hostport);
	if (trust_identity_create(k) != 0) {
		close(fd);
		return (EXIT_RUNTIME);
	}
	rc = serve(fd, o, k, k->hostport);
	close(fd);
	return (rc);
}

/*
 * Options.
 */

/* Set *slot to val unless it was set before. */
static int
once(const char **slot, const char *val, const char *name)
{

	if (*slot != NULL)
		return (say_usage("%s given twice", name));
	*slot = val;
	return (0);
}

/* Set the flag *slot unless it was set before. */
static int
flag(int *slot, const char *name)
{

	if (*slot)
		return (say_usage("%s given twice", name));
	*slot = 1;
	return (0);
}

static int
valid_name(const char *name)
{
	size_t i, n, len = strlen(name);
	uint32_t c;

	if (len > PROTO_NAMEMAX)
		return (0);
	for (i = 0; i < len; i += n)
		if ((n = term_utf8_len((const uint8_t *)name + i, len - i,
		    &c)) == 0 || term_unsafe_cp(c))
			return (0);
	return (1);
}

enum {
	OPT_CLASSIC = 256, OPT_KEYGEN, OPT_PUBKEY, OPT_PEER, OPT_KNOWN,
	OPT_ALLOW, OPT_PSK
};

/* The options as given, before they are checked against each other. */
struct given {
	const char *wait;
	int v4, v6, quiet;
};

/* Read the options of argv into o and g; exit status or 0. */
static int
scan_opts(int argc, char **argv, struct opts *o, struct given *g)
{
	static const struct option longopts[] = {
		{ "classic", no_argument, NULL, OPT_CLASSIC },
		{ "keygen", no_argument, NULL, OPT_KEYGEN },
		{ "pubkey", no_argument, NULL, OPT_PUBKEY },
		{ "peer", required_argument, NULL, OPT_PEER },
		{ "known-peers", required_argument, NULL, OPT_KNOWN },
		{ "allow", required_argument, NULL, OPT_ALLOW },
		{ "psk", required_argument, NULL, OPT_PSK },
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' },
		{ NULL, 0, NULL, 0 }
	};
	int ch, rc = 0;

	opterr = 0;
	while (rc == 0 && (ch = getopt_long(argc, argv, ":l:c:kw:46vqi:n:hV",
	    longopts, NULL)) != -1) {
		switch (ch) {
		case 'l': rc = once(&o->listen, optarg, "-l"); break;
		case 'c': rc = once(&o->connect, optarg, "-c"); break;
		case 'w': rc = once(&g->wait, optarg, "-w"); break;
		case 'i': rc = once(&o->identity, optarg, "-i"); break;
		case 'n': rc = once(&o->name, optarg, "-n"); break;
		case OPT_PEER: rc = once(&o->peer, optarg, "--peer"); break;
		case OPT_KNOWN:
			rc = once(&o->known, optarg, "--known-peers");
			break;
		case OPT_ALLOW: rc = once(&o->allow, optarg, "--allow"); break;
		case OPT_PSK: rc = once(&o->psk, optarg, "--psk"); break;
		case 'k': rc = flag(&o->keep, "-k"); break;
		case '4': rc = flag(&g->v4, "-4"); break;
		case '6': rc = flag(&g->v6, "-6"); break;
		case 'q': rc = flag(&g->quiet, "-q"); break;
		case OPT_CLASSIC: rc = flag(&o->classic, "--classic"); break;
		case OPT_KEYGEN: rc = flag(&o->keygen, "--keygen"); break;
		case OPT_PUBKEY: rc = flag(&o->pubkey, "--pubkey"); break;
		case 'v': o->verbose++; break;
		case 'h':
			fputs(usage_text, stdout);
			exit(fflush(stdout) == 0 ? EXIT_OK : EXIT_RUNTIME);
		case 'V':
			printf(PROG " " X25519CHAT_VERSION "\n");
			exit(fflush(stdout) == 0 ? EXIT_OK : EXIT_RUNTIME);
		case ':':
			return (say_usage("%s needs an argument",
			    argv[optind - 1]));
		default:
			/* A long option, or one given an argument it does not
			 * take, is named as it was written. */
			if (optopt > 0 && optopt < 256 &&
			    argv[optind - 1][1] != '-')
				return (say_usage("unknown option -%c",
				    optopt));
			return (say_usage("unknown option, or an argument "
			    "it does not take: %s", argv[optind - 1]));
		}
	}
	return (rc);
}

/* --keygen [FILE] and --pubkey [FILE|-]: alone, with one optional FILE. */
static int
check_keyfile_opts(int argc, char **argv, struct opts *o,
    const struct given *g)
{
	const char *mode = o->keygen ? "--keygen" : "--pubkey";

	if (o->keygen && o->pubkey)
		return (say_usage("--keygen and --pubkey cannot be combined"));
	if (o->listen || o->connect || o->classic || o->keep || g->wait ||
	    o->identity || o->name || o->peer || o->known || o->allow ||
	    o->psk || g->v4 || g->v6)
		return (say_usage("%s takes no other options", mode));
	if (argc - optind > 1)
		return (say_usage("unexpected argument: %s",
		    argv[optind + 1]));
	o->keyfile = optind < argc ? argv[optind] : NULL;
	if (o->keygen && o->keyfile && strcmp(o->keyfile, "-") == 0)
		return (say_usage("--keygen writes a file, not stdout"));
	return (0);
}

/* Each option conflict gets its own message; exit status or 0. */
static int
check_opts(struct opts *o, const struct given *g)
{
	const char *bad;
	char *end;
	long v;

	if (o->listen == NULL && o->connect == NULL)
		return (say_usage("one of -l or -c is needed"));
	if (o->listen != NULL && o->connect != NULL)
		return (say_usage("-l and -c cannot be combined"));
	if (o->keep && o->listen == NULL)
		return (say_usage("-k needs -l"));
	if (o->known != NULL && o->connect == NULL)
		return (say_usage("--known-peers needs -c"));
	if (o->allow != NULL && o->listen == NULL)
		return (say_usage("--allow needs -l"));
	bad = o->identity ? "-i" : o->name ? "-n" : o->peer ? "--peer" :
	    o->known ? "--known-peers" : o->allow ? "--allow" :
	    o->psk ? "--psk" : NULL;
	if (o->classic && bad != NULL)
		return (say_usage("%s cannot be used with --classic: the "
		    "original protocol has no keys to check", bad));
	if (o->name != NULL && !valid_name(o->name))
		return (say_usage("-n: a name is at most %d bytes of "
		    "printable UTF-8", PROTO_NAMEMAX));
	if (g->wait != NULL) {
		errno = 0;
		v = strtol(g->wait, &end, 10);
		if (!isdigit((unsigned char)g->wait[0]) || *end != '\0' ||
		    errno != 0 || v < 1 || v > 86400)
			return (say_usage("-w: %s: expected seconds from 1 "
			    "to 86400", g->wait));
		o->wait = (int)v;
	}
	return (0);
}

static int
parse_opts(int argc, char **argv, struct opts *o)
{
	struct given g;
	int rc;

	memset(o, 0, sizeof(*o));
	memset(&g, 0, sizeof(g));
	o->wait = DEFAULT_WAIT;
	if ((rc = scan_opts(argc, argv, o, &g)) != 0)
		return (rc);
	if (g.v4 && g.v6)
		return (say_usage("-4 and -6 cannot be combined"));
	o->family = g.v4 ? AF_INET : g.v6 ? AF_INET6 : AF_UNSPEC;
	if (g.quiet && o->verbose > 0)
		return (say_usage("-q and -v cannot be combined"));
	if (g.quiet)
		o->verbose = -1;
	if (o->keygen || o->pubkey)
		return (check_keyfile_opts(argc, argv, o, &g));
	if (optind < argc)
		return (say_usage("unexpected argument: %s", argv[optind]));
	return (check_opts(o, &g));
}

/* Everything a session needs, from the options; exit status or 0. */
static int
setup_keys(const struct opts *o, struct trust_keys *k, const char *host,
    const char *port)
{

	if (host != NULL && o->connect != NULL) {
		/* The known_peers name: "host:port", "[v6]:port". */
		char lower[256];
		size_t i;

		for (i = 0; host[i] != '\0' && i < sizeof(lower) - 1; i++)
			lower[i] = (char)tolower((unsigned char)host[i]);
		lower[i] = '\0';
		snprintf(k->hostport, sizeof(k->hostport),
		    strchr(lower, ':') != NULL ? "[%s]:%s" : "%s:%s", lower,
		    port);
	}
	if (o->classic)
		return (0);
	if (o->peer != NULL && proto_key_decode(k->peer, o->peer,
	    strlen(o->peer)) != 0)
		return (say_usage("--peer: not a public key (44 base64 "
		    "characters): %s", o->peer));
	k->has_peer = o->peer != NULL;
	if (o->psk != NULL) {
		if ((k->psk = sodium_malloc(PROTO_KEYBYTES)) == NULL) {
			say_error("sodium_malloc: %s", strerror(errno));
			return (EXIT_RUNTIME);
		}
		if (trust_load_key(o->psk, 0, k->psk, "pre-shared key") != 0)
			return (EXIT_RUNTIME);
	}
	if (o->allow != NULL) {
		if (trust_read_allow(k, o->allow) != 0)
			return (EXIT_RUNTIME);
		if (k->nallow == 0) {
			say_error("%s: no keys listed: no peer could connect",
			    o->allow);
			return (EXIT_RUNTIME);
		}
	}
	if (o->connect != NULL) {
		if (o->known != NULL)
			snprintf(k->known, sizeof(k->known), "%s", o->known);
		else if (trust_config_dir(k->known, sizeof(k->known) - 12) != 0)
			return (EXIT_RUNTIME);
		else
			strcat(k->known, "/known_peers");
		if (!k->has_peer && trust_read_known(k) != 0)
			return (EXIT_RUNTIME);
	}
	/* Last, as a missing default identity is created only later. */
	if ((k->s = sodium_malloc(PROTO_KEYBYTES)) == NULL) {
		say_error("sodium_malloc: %s", strerror(errno));
		return (EXIT_RUNTIME);
	}
	if (trust_load_identity(o->identity, k) != 0)
		return (EXIT_RUNTIME);
	return (0);
}

/*
 * Make sure descriptors 0 to 2 are open: otherwise the socket could become
 * descriptor 2 and receive our status lines, in clear.
 */
static void
std_fds(void)
{
	int fd;

	for (fd = 0; fd <= 2; fd++) {
		if (fcntl(fd, F_GETFD) != -1 || errno != EBADF)
			continue;
		/* open() takes the lowest free number: this one.  A closed
		 * stdout stays unwritable, so that what the peer sends fails
		 * loudly instead of vanishing. */
		if (open("/dev/null", fd == STDOUT_FILENO ? O_RDONLY :
		    O_RDWR) != fd)
			_exit(EXIT_RUNTIME);
	}
}

/* No core dumps: they would hold keys. */
static void
no_core(void)
{
	struct rlimit rl = { 0, 0 };

	(void)setrlimit(RLIMIT_CORE, &rl);
	(void)prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
}

int
main(int argc, char **argv)
{
	struct opts o;
	struct trust_keys k;
	char hbuf[256], pbuf[8];
	const char *host = NULL;
	int rc;

	std_fds();
	no_core();
	/* A closed socket or stdout is an error to report, not a signal. */
	(void)signal(SIGPIPE, SIG_IGN);
	if ((rc = parse_opts(argc, argv, &o)) != 0)
		return (rc);
	say_set_verbosity(o.verbose);
	if (sodium_init() < 0) {
		say_error("cannot initialise libsodium");
		return (EXIT_RUNTIME);
	}
	if (o.keygen)
		return (trust_keygen(o.keyfile));
	if (o.pubkey)
		return (trust_pubkey(o.keyfile));
	if (!crypto_aead_aes256gcm_is_available()) {
		say_error("this CPU has no AES-NI (hardware AES): libsodium's "
		    "AES-256-GCM cannot run here");
		return (EXIT_RUNTIME);
	}
	if (net_parse_hostport(o.listen != NULL ? o.listen : o.connect,
	    o.listen != NULL, hbuf, sizeof(hbuf), pbuf, sizeof(pbuf),
	    &host) != 0)
		return (EXIT_USAGE);

	memset(&k, 0, sizeof(k));
	if ((rc = setup_keys(&o, &k, host, pbuf)) == 0) {
		if (pipe2(wakefd, O_CLOEXEC | O_NONBLOCK) == -1) {
			say_error("pipe: %s", strerror(errno));
			rc = EXIT_RUNTIME;
		} else if (o.listen != NULL)
			rc = run_listener(&o, &k, host, pbuf);
		else
			rc = run_connector(&o, &k, host, pbuf);
	}
	sodium_free(k.s);
	sodium_free(k.psk);
	free(k.allow);
	free(k.known_keys);
	return (rc);
}
