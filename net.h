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

/*
 * The service: a listener that stays up.  Each accepted connection gets a
 * process of its own, forked from the listener, which runs the handshake
 * and, once the peer is authenticated and a session slot is free, the
 * session.  The listener itself only accepts, counts and reaps: a stray
 * connection, a failed handshake or a crash ends that process alone.
 */

/* What the process of one connection knows of it. */
struct net_conn {
	int fd;				/* the connected socket */
	char peer[NET_ADDRLEN];		/* "ADDR:PORT" or "[ADDR]:PORT" */
	char addr[NI_MAXHOST];		/* the plain IP (IPv4 if mapped) */
	char port[NI_MAXSERV];		/* its decimal port */
	int busy;			/* no session slot was free when it
					 * was accepted (see net_busy()) */
	int ctl;			/* to the listener, for net_claim() */
};

/*
 * Called in the connection's own process; returns its exit status.  It
 * must call net_claim() once its peer is authenticated and before the
 * session, and run the session only if granted.
 */
typedef int net_serve_fn(struct net_conn *nc, void *arg);

/* How the service runs. */
struct net_service {
	int max_pending;	/* handshakes at once (each a process) */
	int max_sessions;	/* sessions at once */
	int keep;		/* -k: serve until a signal; else end after
				 * the first session granted a slot */
	int wait;		/* -w: seconds a handshake may take */
	net_serve_fn *serve;	/* run in each connection's process */
	void (*before_fork)(void *arg);	/* NULL, or called before each
				 * fork: a chance to reread trust files */
	void *arg;		/* for both */
};

/*
 * net_serve(lfd, sv):
 * Accept connections on lfd, each in a process of its own running
 * sv->serve(), at most sv->max_pending of them before their sessions:
 * when that many wait, a newcomer ends the oldest pending connection of
 * the source address (IPv6: the /64) that holds the most.  Session slots
 * are granted through net_claim(), at most sv->max_sessions at once.
 * Without sv->keep, return the exit status of the first connection
 * granted a slot, once it ends (the others are ended then); with it, run
 * until SIGINT, SIGTERM, SIGHUP or SIGQUIT.  After a signal, pass it on to
 * every connection's process, wait for them all, and return 128 plus its
 * number.  Return EXIT_RUNTIME after reporting a failure of its own.
 */
int net_serve(int lfd, const struct net_service *sv);

/*
 * net_claim(nc):
 * In a connection's process, whose peer is now authenticated: ask the
 * listener for a session slot.  Return 1 if granted, 0 if none is free
 * (the listener is busy), -1 if the listener is gone.
 */
int net_claim(struct net_conn *nc);

/*
 * net_busy(nc):
 * In a connection's process, once its peer's hello has come: whether the
 * listener is busy now (1: refuse the hello), has room (0), or is gone
 * (-1).
 */
int net_busy(struct net_conn *nc);

/*
 * net_release(nc):
 * In a connection's process whose session has ended cleanly: give its
 * slot back at once, while it lingers for the peer's end of TCP, so that
 * the next peer need not wait for that.
 */
void net_release(struct net_conn *nc);

#endif /* !NET_H */
