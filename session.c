/*
 * A session after its handshake: its state, the signals that end it, and
 * the watcher, which decides when it is over, shuts the socket in order
 * and reports.  The sender thread is in session_send.c, the receiver
 * thread in session_recv.c.  See session.h.
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
#include "session_int.h"

#define GRACE_MS	2000	/* for the threads once the end is near */
#define LINGER_MS	5000	/* reading on after our end, for the peer's */

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
 * session_signal_came(void):
 * Return nonzero if an ending signal has come, even one still on its way
 * to the watcher.
 */
int
session_signal_came(void)
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

/*
 * session_poke(fd):
 * Wake whoever polls the read end of the pipe whose write end is fd.
 */
void
session_poke(int fd)
{

	/* A full pipe already holds a wake-up. */
	(void)write(fd, "x", 1);
}

/*
 * session_drain(fd):
 * Read what waits in the non-blocking pipe end fd, so that it polls
 * quiet again.
 */
void
session_drain(int fd)
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

/*
 * session_fail(s, code, fmt, ...):
 * Record a failure that ends the session without a word to the peer; the
 * first one recorded is the one reported, and none once the watcher is
 * shutting the socket.
 */
void
session_fail(struct session *s, int code, const char *fmt, ...)
{
	va_list ap;

	pthread_mutex_lock(&s->mu);
	va_start(ap, fmt);
	fail_locked(s, code, fmt, ap);
	va_end(ap);
	pthread_mutex_unlock(&s->mu);
	session_poke(s->notify[1]);
}

/*
 * session_fail_tell(s, code, reason, fmt, ...):
 * Record a failure of ours that the peer must hear of: the sender sends
 * ERROR with reason (at most PROTO_ERRORMAX bytes of it) before anything
 * else, and nothing after it.  Classic has no ERROR.
 */
void
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
	session_poke(s->wake[1]);
	session_poke(s->notify[1]);
}

/*
 * session_done(s, flag):
 * Mark a thread finished (flag is &s->tx_done or &s->rx_done), and tell
 * the watcher.
 */
void
session_done(struct session *s, int *flag)
{

	pthread_mutex_lock(&s->mu);
	*flag = 1;
	/* Classic: our end came first (x25519chat/2 says so at CLOSE). */
	if (s->c.classic && flag == &s->tx_done && !s->rx_done)
		s->we_left = 1;
	pthread_mutex_unlock(&s->mu);
	session_poke(s->notify[1]);
}

/*
 * session_trace_packet(s, dir, n, pkt, ptlen, type):
 * With -vv, one line for the packet pkt, the n-th sent or received (dir),
 * with ptlen bytes of plaintext of the given type.
 */
void
session_trace_packet(struct session *s, const char *dir, uint64_t n,
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
 * session_rekey(s, c, done):
 * Move c, one of the session's two directions, to its next key, and say
 * so (with -v) in the words done.  Return 0, or -1 after recording the
 * failure.
 */
int
session_rekey(struct session *s, struct proto_cipher *c, const char *done)
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
 * session_widen_pipe(fd):
 * If fd is a pipe, let it hold 1 MiB instead of the default 64 KiB.
 */
void
session_widen_pipe(int fd)
{
	struct stat st;

	if (fstat(fd, &st) == 0 && S_ISFIFO(st.st_mode))
		(void)fcntl(fd, F_SETPIPE_SZ, 1 << 20);
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
			session_poke(s->wake[1]);
		}
		/* Classic: when a person types our side, the peer leaving ends
		 * the session; x25519chat/2 does that with CLOSE. */
		if (s->c.classic && s->c.typed && s->rx_done && !s->stop) {
			s->stop = 1;
			session_poke(s->wake[1]);
		}
		if (until == 0 && (got_signal || s->txcode != 0 || s->stop ||
		    (s->c.chat && (s->ends.sent_close || s->tx_done))))
			until = now + GRACE_MS;
		if (until != 0 && now >= until)
			break;
		pthread_mutex_unlock(&s->mu);
		timeout = until != 0 ? (int)(until - now) : -1;
		if (poll(pfd, 2, timeout) > 0) {
			session_drain(sigwake[0]);
			session_drain(s->notify[0]);
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
			session_drain(s->notify[0]);
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
	int linger, stuck = 0, clean;

	pthread_mutex_lock(&s->mu);
	linger = !s->c.classic && !got_signal && (proto_ends_done(&s->ends) ||
	    s->want_error || s->peer_failed);
	s->stop = 1;
	/* What the threads meet from now on is our doing. */
	s->ending = 1;
	clean = !s->c.classic && proto_ends_done(&s->ends);
	pthread_mutex_unlock(&s->mu);
	if (clean && s->c.over != NULL)
		s->c.over(s->c.over_arg);
	session_poke(s->wake[1]);
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

	session_drain(sigwake[0]);
	got_signal = 0;
	catch_signals(1);
	if (s->c.chat && term_start() != 0)
		s->c.chat = 0;
	/* The threads are born with the ending signals blocked. */
	(void)pthread_sigmask(SIG_BLOCK, &caught, &mask);
	if ((rc = pthread_create(&rx, NULL, session_receiver, s)) == 0 &&
	    (rc2 = pthread_create(&tx, NULL, session_sender, s)) != 0) {
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
	/* However it ended, the output is done with now. */
	if (!stuck && s->c.over != NULL)
		s->c.over(s->c.over_arg);
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
	if (s->c.stats != NULL) {
		s->c.stats->in = s->bytes_in;
		s->c.stats->out = s->bytes_out;
		s->c.stats->closed = s->ends.got_close;
		memcpy(s->c.stats->result, msg, sizeof(s->c.stats->result));
	}
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
	    session_send_typed(&s, pkt, PROTO_DATA, 0) != 0)) {
		say_error("%s", s.txcode != 0 ? s.txmsg : s.msg);
		rc = s.txcode != 0 ? s.txcode : s.code;
	} else
		rc = session_threads(&s);
	session_close(&s);
	return (rc);
}

/*
 * session_refuse(c, reason):
 * A listener that cannot take the session c, its handshake done, sends
 * ERROR reason as its first packet instead of the empty DATA, shuts its
 * half of the connection and reads on until the peer closes, at most
 * LINGER_MS, so that no reset destroys the ERROR.  The socket stays
 * open.
 */
void
session_refuse(const struct session_conf *c, const char *reason)
{
	struct session s;
	uint8_t pkt[PROTO_HDRBYTES + 1 + PROTO_ERRORMAX], junk[512];
	size_t len = strlen(reason);
	struct pollfd pfd = { c->sock, POLLIN, 0 };
	int64_t end = proto_now_ms() + LINGER_MS, left;

	if (c->classic || c->initiator || len > PROTO_ERRORMAX ||
	    session_open(&s, c) != 0)
		return;
	memcpy(pkt + PROTO_HDRBYTES + 1, reason, len);
	if (proto_ends_send(&s.ends, PROTO_ERROR) == 0 &&
	    session_send_typed(&s, pkt, PROTO_ERROR, len) == 0 &&
	    shutdown(c->sock, SHUT_WR) == 0)
		while ((left = end - proto_now_ms()) > 0 &&
		    poll(&pfd, 1, (int)left) == 1 &&
		    read(c->sock, junk, sizeof(junk)) > 0)
			;
	session_close(&s);
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
