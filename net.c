/*
 * The network: addresses, the listener, accepting and connecting.  See
 * net.h.
 */

#include <sys/socket.h>
#include <sys/types.h>

#include <netinet/in.h>
#include <netinet/tcp.h>

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
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
		    listen(fd, 16) == 0)
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
