/*
 * The network: addresses, the listener, accepting and connecting.  See
 * net.h.
 */

#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/wait.h>

#include <netinet/in.h>
#include <netinet/tcp.h>

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "proto.h"
#include "say.h"
#include "net.h"

/*
 * net_parse_hostport(arg, listening, hbuf, hlen, pbuf, plen, host):
 * Split "HOST:PORT", "[V6]:PORT" or, when listening, "PORT" into the
 * host, written into hbuf (hlen bytes), and the decimal port, written
 * into pbuf (plen bytes).  Set *host to hbuf, or to NULL when arg names
 * no host.  A port is 1 to 65535, or 0 (any free port) when listening.
 * Return 0, or -1 after a usage error message.
 */
int
net_parse_hostport(const char *arg, int listening, char *hbuf, size_t hlen,
    char *pbuf, size_t plen, const char **host)
{
	const char *colon, *port, *end;
	size_t len;
	long v;
	char *ep;

	*host = NULL;
	if (arg[0] == '[') {
		if ((end = strchr(arg, ']')) == NULL || end[1] != ':')
			goto bad;
		len = (size_t)(end - arg - 1);
		if (len == 0 || len >= hlen)
			goto bad;
		memcpy(hbuf, arg + 1, len);
		hbuf[len] = '\0';
		*host = hbuf;
		port = end + 2;
	} else if ((colon = strrchr(arg, ':')) != NULL) {
		if (memchr(arg, ':', (size_t)(colon - arg)) != NULL) {
			say_error("%s: put IPv6 addresses in brackets, "
			    "as [::1]:PORT", arg);
			return (-1);
		}
		len = (size_t)(colon - arg);
		if (len == 0 || len >= hlen)
			goto bad;
		memcpy(hbuf, arg, len);
		hbuf[len] = '\0';
		*host = hbuf;
		port = colon + 1;
	} else if (listening)
		port = arg;
	else
		goto bad;

	/* A decimal port, 0 (any free port) only when listening. */
	if (!isdigit((unsigned char)port[0]) || strlen(port) > 5)
		goto badport;
	errno = 0;
	v = strtol(port, &ep, 10);
	if (*ep != '\0' || v < (listening ? 0 : 1) || v > 65535)
		goto badport;
	snprintf(pbuf, plen, "%ld", v);
	return (0);

badport:
	say_error("%s: port must be a number from %d to 65535", arg,
	    listening ? 0 : 1);
	return (-1);
bad:
	say_error("%s: expected %s", arg, listening ? "[HOST:]PORT" :
	    "HOST:PORT");
	return (-1);
}

/* "ADDR:PORT" or "[ADDR]:PORT" of a socket address, numerically. */
static void
addr_text(const struct sockaddr *sa, socklen_t len, char *out, size_t outlen)
{
	char h[NI_MAXHOST], p[NI_MAXSERV];

	if (getnameinfo(sa, len, h, sizeof(h), p, sizeof(p),
	    NI_NUMERICHOST | NI_NUMERICSERV) != 0) {
		snprintf(out, outlen, "?");
		return;
	}
	snprintf(out, outlen, sa->sa_family == AF_INET6 ? "[%s]:%s" :
	    "%s:%s", h, p);
}

/*
 * net_listen(host, port, family):
 * Open a TCP socket listening on host (NULL for every address) and port,
 * in family (AF_UNSPEC, AF_INET or AF_INET6): without host and family,
 * one IPv6 socket that takes IPv4 too where the system allows.  Say
 * "Server listening on ADDR:PORT".  Return the socket, or -1 after
 * reporting.
 */
int
net_listen(const char *host, const char *port, int family)
{
	struct addrinfo hints, *res, *ai;
	struct sockaddr_storage ss;
	socklen_t sslen = sizeof(ss);
	char where[NET_ADDRLEN];
	int fd = -1, on = 1, off = 0, rc, err = 0;

	memset(&hints, 0, sizeof(hints));
	hints.ai_family = family;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
	/* No host and no family: one IPv6 socket that takes IPv4 too. */
	if (host == NULL && family == AF_UNSPEC)
		hints.ai_family = AF_INET6;
	rc = getaddrinfo(host, port, &hints, &res);
	if (rc != 0 && host == NULL && family == AF_UNSPEC) {
		hints.ai_family = AF_INET;
		rc = getaddrinfo(host, port, &hints, &res);
	}
	if (rc != 0) {
		say_error("%s: %s", host != NULL ? host : "listen",
		    gai_strerror(rc));
		return (-1);
	}
	for (ai = res; ai != NULL; ai = ai->ai_next) {
		if ((fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC,
		    ai->ai_protocol)) == -1) {
			err = errno;
			continue;
		}
		(void)setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on,
		    sizeof(on));
		if (ai->ai_family == AF_INET6)
			(void)setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY,
			    family == AF_INET6 ? &on : &off, sizeof(on));
		if (bind(fd, ai->ai_addr, ai->ai_addrlen) == 0 &&
		    listen(fd, SOMAXCONN) == 0)
			break;
		err = errno;
		close(fd);
		fd = -1;
	}
	freeaddrinfo(res);
	if (fd == -1 && host == NULL && family == AF_UNSPEC &&
	    err == EAFNOSUPPORT)
		return (net_listen("0.0.0.0", port, AF_INET));
	if (fd == -1) {
		say_error("cannot listen on %s:%s: %s",
		    host != NULL ? host : "*", port, strerror(err));
		return (-1);
	}
	if (getsockname(fd, (struct sockaddr *)&ss, &sslen) == 0) {
		addr_text((struct sockaddr *)&ss, sslen, where, sizeof(where));
		say_status(0, "Server listening on %s", where);
	}
	return (fd);
}

/*
 * net_accept(lfd, peer, peerlen):
 * Wait for the next connection on the listening socket lfd, passing over
 * interruptions and connections aborted before they were accepted, and
 * write the peer's address text into peer (peerlen bytes, NET_ADDRLEN is
 * enough).  Return the connected socket, or -1 after reporting.
 */
int
net_accept(int lfd, char *peer, size_t peerlen)
{
	struct sockaddr_storage ss;
	socklen_t sslen;
	int fd;

	for (;;) {
		sslen = sizeof(ss);
		fd = accept4(lfd, (struct sockaddr *)&ss, &sslen,
		    SOCK_CLOEXEC);
		if (fd != -1)
			break;
		if (errno != EINTR && errno != ECONNABORTED) {
			say_error("accept: %s", strerror(errno));
			return (-1);
		}
	}
	addr_text((struct sockaddr *)&ss, sslen, peer, peerlen);
	return (fd);
}

/*
 * net_connect(host, port, family, deadline):
 * Connect to host and port in family, trying each address in turn until
 * the proto_now_ms() reading deadline.  Return the connected socket, left
 * blocking, or -1 after reporting.
 */
int
net_connect(const char *host, const char *port, int family, int64_t deadline)
{
	struct addrinfo hints, *res, *ai;
	struct pollfd pfd;
	socklen_t len;
	int fd = -1, rc, err = ETIMEDOUT, flags;
	int64_t left;

	memset(&hints, 0, sizeof(hints));
	hints.ai_family = family;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_NUMERICSERV;
	if ((rc = getaddrinfo(host, port, &hints, &res)) != 0) {
		say_error("%s: %s", host, gai_strerror(rc));
		return (-1);
	}
	for (ai = res; ai != NULL; ai = ai->ai_next) {
		if ((fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC,
		    ai->ai_protocol)) == -1) {
			err = errno;
			continue;
		}
		flags = fcntl(fd, F_GETFL);
		(void)fcntl(fd, F_SETFL, flags | O_NONBLOCK);
		if (connect(fd, ai->ai_addr, ai->ai_addrlen) == 0)
			goto connected;
		if (errno != EINPROGRESS) {
			err = errno;
			goto next;
		}
		pfd.fd = fd;
		pfd.events = POLLOUT;
		do {
			left = deadline - proto_now_ms();
			rc = left <= 0 ? 0 : poll(&pfd, 1, (int)left);
		} while (rc == -1 && errno == EINTR);
		if (rc == 0) {
			err = ETIMEDOUT;
			goto next;
		}
		len = sizeof(err);
		if (rc == -1 || getsockopt(fd, SOL_SOCKET, SO_ERROR, &err,
		    &len) == -1)
			err = errno;
		if (err == 0)
			goto connected;
next:
		close(fd);
		fd = -1;
	}
	freeaddrinfo(res);
	say_error("cannot connect to %s port %s: %s", host, port,
	    strerror(err));
	return (-1);

connected:
	freeaddrinfo(res);
	(void)fcntl(fd, F_SETFL, flags);
	return (fd);
}

/*
 * net_nodelay(fd):
 * Send what is written to the connected socket fd at once rather than
 * gather small writes: handshake messages and typed lines are small.
 */
void
net_nodelay(int fd)
{
	int one = 1;

	(void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
}

/*
 * The service.
 */

/* What the listener keeps of each connection's process. */
enum { PENDING, SESSION, ENDED };
struct child {
	pid_t pid;
	int ctl;		/* our end of its control socket, or -1 */
	int state;		/* PENDING: before its session; SESSION; ENDED:
				 * told to end, not yet reaped */
	uint8_t src[9];		/* its source: family tag, then the IPv4
				 * address or the IPv6 /64 */
	int64_t since;		/* proto_now_ms() when accepted */
	int64_t claimed;	/* when it asked for a slot that was not free
				 * (it waits for one a moment), or 0 */
};

/* How long a claim waits for a session that is ending to free its slot. */
#define CLAIM_WAIT_MS	1000

/* The signal that ends the service, and the pipe its handler wakes. */
static volatile sig_atomic_t serve_sig;
static int wake[2] = { -1, -1 };

static const int serve_sigs[] = { SIGINT, SIGTERM, SIGHUP, SIGQUIT };
#define NSIGS	(sizeof(serve_sigs) / sizeof(serve_sigs[0]))
static struct sigaction saved[NSIGS + 1];	/* and SIGCHLD's */

static void
on_signal(int sig)
{
	int e = errno;

	if (sig != SIGCHLD && serve_sig == 0)
		serve_sig = sig;
	(void)write(wake[1], "", 1);
	errno = e;
}

/*
 * Catch the signals that end the service (those not ignored) and
 * SIGCHLD; with restore, put back what was there.  0 or -1.
 */
static int
catch_signals(int restore)
{
	struct sigaction sa;
	size_t i;
	int sig;

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_signal;
	sigemptyset(&sa.sa_mask);
	for (i = 0; i <= NSIGS; i++) {
		sig = i < NSIGS ? serve_sigs[i] : SIGCHLD;
		if (restore)
			(void)sigaction(sig, &saved[i], NULL);
		else if (sigaction(sig, NULL, &saved[i]) == -1 ||
		    (saved[i].sa_handler != SIG_IGN &&
		    sigaction(sig, &sa, NULL) == -1))
			return (-1);
	}
	return (0);
}

/*
 * The source of a connection, as eviction counts it: an IPv4 address
 * (also when mapped into IPv6), or the /64 of an IPv6 address.  Also its
 * plain IP and port text.
 */
static void
source_of(const struct sockaddr_storage *ss, uint8_t src[9],
    struct net_conn *nc)
{
	const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)ss;
	struct sockaddr_in s4;
	const struct sockaddr *sa = (const struct sockaddr *)ss;
	socklen_t len = sizeof(*s6);

	memset(src, 0, 9);
	if (ss->ss_family == AF_INET6 && IN6_IS_ADDR_V4MAPPED(&s6->sin6_addr)) {
		memset(&s4, 0, sizeof(s4));
		s4.sin_family = AF_INET;
		s4.sin_port = s6->sin6_port;
		memcpy(&s4.sin_addr, s6->sin6_addr.s6_addr + 12, 4);
		sa = (const struct sockaddr *)&s4;
		len = sizeof(s4);
	}
	if (sa->sa_family == AF_INET) {
		src[0] = 4;
		memcpy(src + 1, &((const struct sockaddr_in *)sa)->sin_addr, 4);
		len = sizeof(struct sockaddr_in);
	} else {
		src[0] = 6;
		memcpy(src + 1, s6->sin6_addr.s6_addr, 8);
	}
	if (getnameinfo(sa, len, nc->addr, sizeof(nc->addr), nc->port,
	    sizeof(nc->port), NI_NUMERICHOST | NI_NUMERICSERV) != 0) {
		snprintf(nc->addr, sizeof(nc->addr), "?");
		snprintf(nc->port, sizeof(nc->port), "?");
	}
}

/* The listener's table of connections. */
struct service {
	const struct net_service *sv;
	int lfd;
	struct child *kids;
	size_t nkids, cap;
	struct pollfd *pfd;	/* for poll(): the wake pipe, lfd, each ctl */
	size_t *who;		/* the kid of each pfd entry (-1: lfd) */
	int pending, sessions;	/* how many kids are in each state */
	pid_t granted;		/* without -k: the one session, or 0 */
	int granted_rc;		/* its exit status, once reaped */
	int granted_done;
};

/* Tell the process of kid i to end (with sig), and stop counting it. */
static void
end_kid(struct service *sv, size_t i, int sig)
{
	struct child *k = &sv->kids[i];

	(void)kill(k->pid, sig);
	if (k->state == PENDING)
		sv->pending--;
	else if (k->state == SESSION)
		sv->sessions--;
	k->state = ENDED;
}

/*
 * The cap on pending handshakes is reached: end the oldest pending
 * connection of the source that holds the most.
 */
static void
evict(struct service *sv)
{
	size_t i, j, best = 0;
	int n, most = 0;

	for (i = 0; i < sv->nkids; i++) {
		if (sv->kids[i].state != PENDING)
			continue;
		for (n = 0, j = 0; j < sv->nkids; j++)
			if (sv->kids[j].state == PENDING &&
			    memcmp(sv->kids[j].src, sv->kids[i].src, 9) == 0)
				n++;
		/* kids are in the order accepted: the first of the most
		 * numerous source is its oldest. */
		if (n > most) {
			most = n;
			best = i;
		}
	}
	if (most > 0) {
		say_status(1, "Too many pending handshakes: dropped the oldest "
		    "from the busiest source");
		end_kid(sv, best, SIGKILL);
	}
}

static void grant_waiting(struct service *);

/* The process pid has ended with status st: forget it. */
static void
gone(struct service *sv, pid_t pid, int st)
{
	size_t i;

	for (i = 0; i < sv->nkids && sv->kids[i].pid != pid; i++)
		;
	if (i == sv->nkids)
		return;
	if (pid == sv->granted) {
		sv->granted_rc = WIFEXITED(st) ? WEXITSTATUS(st) :
		    WIFSIGNALED(st) ? 128 + WTERMSIG(st) : EXIT_RUNTIME;
		sv->granted_done = 1;
	}
	if (sv->kids[i].state == SESSION && sv->sv->keep && serve_sig == 0)
		say_status(1, "Listening for the next peer.");
	if (sv->kids[i].state == PENDING)
		sv->pending--;
	else if (sv->kids[i].state == SESSION)
		sv->sessions--;
	if (sv->kids[i].ctl != -1)
		close(sv->kids[i].ctl);
	/* Keep the order of acceptance, which eviction goes by. */
	memmove(&sv->kids[i], &sv->kids[i + 1],
	    (sv->nkids - i - 1) * sizeof(sv->kids[0]));
	sv->nkids--;
	grant_waiting(sv);
}

/* Reap every process that has ended, without waiting. */
static void
reap(struct service *sv)
{
	pid_t pid;
	int st;

	while ((pid = waitpid(-1, &st, WNOHANG)) > 0)
		gone(sv, pid, st);
}

/* Point stdin and stdout at /dev/null: the session has them now. */
static void
let_go_of_stdio(void)
{
	int fd;

	if ((fd = open("/dev/null", O_RDWR | O_CLOEXEC)) == -1)
		return;
	(void)dup2(fd, STDIN_FILENO);
	(void)dup2(fd, STDOUT_FILENO);
	close(fd);
}

/* Whether a session slot is free. */
static int
room(const struct service *sv)
{

	return (sv->sessions < sv->sv->max_sessions &&
	    (sv->sv->keep || sv->granted == 0));
}

/* Give kid k, whose peer is authenticated, a session slot. */
static void
grant(struct service *sv, struct child *k)
{

	sv->pending--;
	sv->sessions++;
	k->state = SESSION;
	k->claimed = 0;
	(void)write(k->ctl, "y", 1);
	/* Without -k this is the one session: those who come while it runs
	 * hear that we are busy, and the listener ends with it. */
	if (!sv->sv->keep) {
		sv->granted = k->pid;
		let_go_of_stdio();
	}
}

/* A slot came free: the longest waiting claim gets it. */
static void
grant_waiting(struct service *sv)
{
	struct child *first = NULL;
	size_t i;

	for (i = 0; i < sv->nkids; i++)
		if (sv->kids[i].state == PENDING && sv->kids[i].claimed != 0 &&
		    (first == NULL || sv->kids[i].claimed < first->claimed))
			first = &sv->kids[i];
	if (first != NULL && room(sv))
		grant(sv, first);
}

/* Answer what kid i says on its control socket. */
static void
answer(struct service *sv, size_t i)
{
	struct child *k = &sv->kids[i];
	char c;
	ssize_t n;

	n = read(k->ctl, &c, 1);
	if (n == -1 && (errno == EINTR || errno == EAGAIN))
		return;
	if (n == 1 && c == 'q') {
		/* Before its hello is answered: is there room? */
		(void)write(k->ctl, sv->sessions < sv->sv->max_sessions &&
		    (sv->sv->keep || sv->granted == 0) ? "f" : "b", 1);
		return;
	}
	if (n == 1 && c == 'r' && k->state == SESSION) {
		/* Its session is over; it only ends now. */
		sv->sessions--;
		k->state = ENDED;
		if (sv->sv->keep)
			say_status(1, "Listening for the next peer.");
		grant_waiting(sv);
		return;
	}
	if (n != 1 || c != 'c' || k->state != PENDING || k->claimed != 0) {
		/* Its process is ending; reap() will see it. */
		close(k->ctl);
		k->ctl = -1;
		return;
	}
	if (room(sv))
		grant(sv, k);
	else if (sv->sv->keep)
		/* A session that is ending gives its slot back in a moment:
		 * wait for that, up to CLAIM_WAIT_MS (see expire()). */
		k->claimed = proto_now_ms();
	else
		/* Without -k the one session runs: the listener ends with
		 * it. */
		(void)write(k->ctl, "n", 1);
}

/*
 * In the new process of a connection: let go of what is the listener's,
 * and serve.  Does not return.
 */
static void
child(struct service *sv, struct net_conn *nc, pid_t listener)
{
	size_t i;

	/* Killing the listener, even with SIGKILL, ends its sessions as it
	 * would if they ran inside it. */
	if (prctl(PR_SET_PDEATHSIG, SIGKILL) == -1 || getppid() != listener)
		_exit(EXIT_RUNTIME);
	(void)catch_signals(1);
	close(wake[0]);
	close(wake[1]);
	close(sv->lfd);
	for (i = 0; i < sv->nkids; i++)
		if (sv->kids[i].ctl != -1)
			close(sv->kids[i].ctl);
	free(sv->kids);
	free(sv->pfd);
	free(sv->who);
	exit(sv->sv->serve(nc, sv->sv->arg));
}

/* Accept one connection and give it its process; 0, or -1 if none was
 * waiting. */
static int
take(struct service *sv)
{
	struct sockaddr_storage ss;
	socklen_t sslen = sizeof(ss);
	struct net_conn nc;
	struct child *k;
	int fd, pair[2];
	pid_t pid, self = getpid();

	if ((fd = accept4(sv->lfd, (struct sockaddr *)&ss, &sslen,
	    SOCK_CLOEXEC)) == -1) {
		if (errno != EINTR && errno != EAGAIN && errno !=
		    ECONNABORTED && errno != EWOULDBLOCK)
			say_status(0, "accept: %s", strerror(errno));
		if (errno == EMFILE || errno == ENFILE)
			(void)poll(NULL, 0, 100);
		return (-1);
	}
	memset(&nc, 0, sizeof(nc));
	nc.fd = fd;
	addr_text((struct sockaddr *)&ss, sslen, nc.peer, sizeof(nc.peer));
	k = &sv->kids[sv->nkids];
	source_of(&ss, k->src, &nc);
	if (sv->pending >= sv->sv->max_pending)
		evict(sv);
	nc.busy = sv->sessions >= sv->sv->max_sessions ||
	    (!sv->sv->keep && sv->granted != 0);
	if (sv->sv->before_fork != NULL)
		sv->sv->before_fork(sv->sv->arg);
	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, pair)
	    == -1) {
		say_status(0, "socketpair: %s", strerror(errno));
		close(fd);
		return (0);
	}
	if ((pid = fork()) == -1) {
		say_status(0, "fork: %s", strerror(errno));
		close(pair[0]);
		close(pair[1]);
		close(fd);
		return (0);
	}
	if (pid == 0) {
		close(pair[0]);
		nc.ctl = pair[1];
		child(sv, &nc, self);
	}
	close(pair[1]);
	close(fd);
	k->pid = pid;
	k->ctl = pair[0];
	k->state = PENDING;
	k->since = proto_now_ms();
	sv->nkids++;
	sv->pending++;
	return (0);
}

/*
 * End pending handshakes that outlived -w (by two seconds' grace), and
 * tell claims that waited CLAIM_WAIT_MS for a slot that we are busy.
 * Return the milliseconds until the next of these, or -1.
 */
static int
expire(struct service *sv)
{
	int64_t now = proto_now_ms(), limit = (int64_t)sv->sv->wait * 1000 +
	    2000, next = -1, left;
	size_t i;

	for (i = 0; i < sv->nkids; i++) {
		struct child *k = &sv->kids[i];

		if (k->state != PENDING)
			continue;
		if (k->claimed != 0 && now - k->claimed >= CLAIM_WAIT_MS) {
			k->claimed = 0;
			(void)write(k->ctl, "n", 1);
		} else if (k->claimed != 0 && (next == -1 ||
		    k->claimed + CLAIM_WAIT_MS - now < next))
			next = k->claimed + CLAIM_WAIT_MS - now;
		if ((left = k->since + limit - now) <= 0)
			end_kid(sv, i, SIGKILL);
		else if (next == -1 || left < next)
			next = left;
	}
	return (next > INT32_MAX ? INT32_MAX : (int)next);
}

int
net_serve(int lfd, const struct net_service *nsv)
{
	struct service sv;
	struct pollfd *pfd;
	size_t i, n, *who;
	int timeout, rc, st;
	char junk[64];
	pid_t pid;

	memset(&sv, 0, sizeof(sv));
	sv.sv = nsv;
	sv.lfd = lfd;
	/* Room for every pending and running connection, and as many again
	 * told to end and not yet reaped. */
	sv.cap = 2 * (size_t)nsv->max_pending + (size_t)nsv->max_sessions;
	sv.kids = calloc(sv.cap, sizeof(*sv.kids));
	sv.pfd = pfd = calloc(sv.cap + 2, sizeof(*pfd));
	sv.who = who = calloc(sv.cap + 2, sizeof(*who));
	if (sv.kids == NULL || pfd == NULL || who == NULL ||
	    pipe2(wake, O_CLOEXEC | O_NONBLOCK) == -1 ||
	    fcntl(lfd, F_SETFL, fcntl(lfd, F_GETFL) | O_NONBLOCK) == -1 ||
	    catch_signals(0) == -1) {
		say_error("cannot start the listener: %s", strerror(errno));
		free(sv.kids);
		free(pfd);
		free(who);
		return (EXIT_RUNTIME);
	}
	while (serve_sig == 0 && !sv.granted_done) {
		n = 0;
		pfd[n].fd = wake[0];
		pfd[n++].events = POLLIN;
		if (sv.lfd != -1 && sv.nkids < sv.cap) {
			pfd[n].fd = sv.lfd;
			pfd[n].events = POLLIN;
			who[n++] = (size_t)-1;
		}
		for (i = 0; i < sv.nkids; i++)
			if (sv.kids[i].ctl != -1) {
				pfd[n].fd = sv.kids[i].ctl;
				pfd[n].events = POLLIN;
				who[n++] = i;
			}
		timeout = expire(&sv);
		if (poll(pfd, n, timeout) == -1 && errno != EINTR)
			break;
		while (read(wake[0], junk, sizeof(junk)) > 0)
			;
		for (i = 1; i < n; i++) {
			if (pfd[i].revents == 0)
				continue;
			if (who[i] == (size_t)-1)
				(void)take(&sv);
			else
				answer(&sv, who[i]);
		}
		reap(&sv);
	}
	/* A signal: pass it on, and wait for every connection to end. */
	if (sv.lfd != -1)
		close(sv.lfd);
	for (i = 0; i < sv.nkids; i++)
		if (serve_sig != 0)
			(void)kill(sv.kids[i].pid, sv.kids[i].state == PENDING ?
			    SIGKILL : serve_sig);
		else if (sv.kids[i].state != ENDED)
			end_kid(&sv, i, SIGKILL);
	while (sv.nkids > 0) {
		if ((pid = waitpid(-1, &st, 0)) > 0)
			gone(&sv, pid, st);
		else if (errno != EINTR)
			break;
	}
	rc = sv.granted_done ? sv.granted_rc : serve_sig != 0 ?
	    128 + serve_sig : EXIT_RUNTIME;
	(void)catch_signals(1);
	close(wake[0]);
	close(wake[1]);
	free(sv.kids);
	free(pfd);
	free(who);
	return (rc);
}

/* Ask the listener q; 1 for the answer yes, 0 for no, -1 for none. */
static int
ask(struct net_conn *nc, char q, char yes, char no)
{
	char c;
	ssize_t n;

	if (write(nc->ctl, &q, 1) != 1)
		return (-1);
	while ((n = read(nc->ctl, &c, 1)) == -1 && errno == EINTR)
		;
	if (n != 1)
		return (-1);
	return (c == yes ? 1 : c == no ? 0 : -1);
}

/*
 * net_claim(nc):
 * In a connection's process, whose peer is now authenticated: ask the
 * listener for a session slot.  Return 1 if granted, 0 if none is free
 * (the listener is busy), -1 if the listener is gone.
 */
int
net_claim(struct net_conn *nc)
{

	return (ask(nc, 'c', 'y', 'n'));
}

/*
 * net_busy(nc):
 * In a connection's process, once its peer's hello has come: whether the
 * listener is busy now (1), has room (0), or is gone (-1).
 */
int
net_busy(struct net_conn *nc)
{

	return (ask(nc, 'q', 'b', 'f'));
}

/*
 * net_release(nc):
 * In a connection's process whose session has ended cleanly: give its
 * slot back at once, while it lingers for the peer's end of TCP, so that
 * the next peer need not wait for that.
 */
void
net_release(struct net_conn *nc)
{

	(void)write(nc->ctl, "r", 1);
}
