#ifndef NET_H
#define NET_H

/*
 * The network: HOST:PORT arguments, the listening socket and the
 * connections it accepts, and connecting within a deadline.  Addresses
 * are shown numerically, "ADDR:PORT" or "[ADDR]:PORT".
 *
 * This room knows nothing of what travels over a connection: it hands
 * back a connected socket and leaves the handshake and the session to
 * its caller.
 */

#include <netdb.h>
#include <stddef.h>
#include <stdint.h>

/* Room for the text of a socket address and port, with its NUL. */
#define NET_ADDRLEN	(NI_MAXHOST + NI_MAXSERV + 4)

/*
 * net_parse_hostport(arg, listening, hbuf, hlen, pbuf, plen, host):
 * Split "HOST:PORT", "[V6]:PORT" or, when listening, "PORT" into the
 * host, written into hbuf (hlen bytes), and the decimal port, written
 * into pbuf (plen bytes).  Set *host to hbuf, or to NULL when arg names
 * no host.  A port is 1 to 65535, or 0 (any free port) when listening.
 * Return 0, or -1 after a usage error message.
 */
int net_parse_hostport(const char *arg, int listening, char *hbuf,
    size_t hlen, char *pbuf, size_t plen, const char **host);

/*
 * net_listen(host, port, family):
 * Open a TCP socket listening on host (NULL for every address) and port,
 * in family (AF_UNSPEC, AF_INET or AF_INET6): without host and family,
 * one IPv6 socket that takes IPv4 too where the system allows.  Say
 * "Server listening on ADDR:PORT".  Return the socket, or -1 after
 * reporting.
 */
int net_listen(const char *host, const char *port, int family);

/*
 * net_accept(lfd, peer, peerlen):
 * Wait for the next connection on the listening socket lfd, passing over
 * interruptions and connections aborted before they were accepted, and
 * write the peer's address text into peer (peerlen bytes, NET_ADDRLEN is
 * enough).  Return the connected socket, or -1 after reporting.
 */
int net_accept(int lfd, char *peer, size_t peerlen);

/*
 * net_connect(host, port, family, deadline):
 * Connect to host and port in family, trying each address in turn until
 * the proto_now_ms() reading deadline.  Return the connected socket, left
 * blocking, or -1 after reporting.
 */
int net_connect(const char *host, const char *port, int family,
    int64_t deadline);

/*
 * net_nodelay(fd):
 * Send what is written to the connected socket fd at once rather than
 * gather small writes: handshake messages and typed lines are small.
 */
void net_nodelay(int fd);

#endif /* !NET_H */
