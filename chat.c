/*
 * x25519chat: a private chat, or a secure pipe, between two machines.
 *
 * The story, as main() tells it: read the options; gather our keys and
 * the keys we trust; listen and accept, or connect; run the handshake and
 * judge the peer's key; run the session until both directions have
 * ended; and report how it went in the exit status.
 *
 * This file holds the story only.  The machinery lives in rooms below
 * it, each with a header that states its contract, each using only the
 * rooms beneath it:
 *
 *   session.c      the sender and receiver threads, REKEY, CLOSE, signals
 *   net.c          HOST:PORT, the listener, accept, connect with a deadline
 *   trust.c        identity and key files, --allow, known_peers, and the
 *                  verdict on the peer's key
 *   term.c         raw mode, the line editor, safe display of peer bytes
 *   say.c          status lines, errors, verbosity, exit statuses
 *   proto.c        every byte of cryptography, and the wire format
 *   sodium_shim.c  HKDF-SHA256 where libsodium lacks it
 *
 * Where a room must reach up, it is handed a callback instead: the voice
 * calls a hook the terminal installs to redraw the prompt line, the line
 * editor hands each finished line to the sender, and the session tells
 * this file of the peer's first packet, so that a first contact's key is
 * recorded only once the session has proved it.
 */

#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <sodium.h>

#include "proto.h"
#include "say.h"
#include "term.h"
#include "trust.h"
#include "net.h"
#include "session.h"

#define DEFAULT_WAIT	10
#define DEFAULT_KEEPALIVE	60
#define MIN_KEEPALIVE	30
#define DEFAULT_PENDING	64	/* --max-pending */
#define MAX_PENDING	1024
#define DEFAULT_SESSIONS	16	/* --max-sessions, with -e */
#define MAX_SESSIONS	1024

static const char usage_text[] =
"usage: x25519chat -l [HOST:]PORT [-k] [options]\n"
"       x25519chat -c HOST:PORT [options]\n"
"       x25519chat --keygen [FILE]\n"
"       x25519chat --pubkey [FILE|-]\n"
"options:\n"
"  --classic          speak the original X25519-TCP-Chat protocol\n"
"                     (no authentication)\n"
"  -k                 after a peer leaves, listen for the next one\n"
"  --max-pending N    handshakes in progress at once (default 64)\n"
"  -e, --exec CMD     run /bin/sh -c CMD for each session, its stdin and\n"
"                     stdout the session's (listener; needs --allow,\n"
"                     --peer or --psk)\n"
"  --max-sessions N   sessions at once with -e (default 16)\n"
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
"  --cipher NAME      use only this cipher: aesgcm or chachapoly\n"
"  --keepalive SECS   end the session after SECS of silence from the peer\n"
"                     (default 60, at least 30; 0: never)\n"
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
	int suites;		/* PROTO_OFFER_* bits we may use (--cipher) */
	int keepalive;		/* --keepalive SECS */
	int max_pending;	/* --max-pending N */
	int max_sessions;	/* --max-sessions N */
	const char *exec;	/* -e CMD */
	int keygen, pubkey;	/* --keygen, --pubkey */
	const char *keyfile;	/* operand of --keygen / --pubkey */
};

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
	OPT_ALLOW, OPT_PSK, OPT_CIPHER, OPT_KEEPALIVE, OPT_MAXPENDING,
	OPT_MAXSESSIONS
};

/* The options as given, before they are checked against each other. */
struct given {
	const char *wait;
	const char *cipher;
	const char *keepalive;
	const char *max_pending;
	const char *max_sessions;
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
		{ "cipher", required_argument, NULL, OPT_CIPHER },
		{ "keepalive", required_argument, NULL, OPT_KEEPALIVE },
		{ "max-pending", required_argument, NULL, OPT_MAXPENDING },
		{ "max-sessions", required_argument, NULL, OPT_MAXSESSIONS },
		{ "exec", required_argument, NULL, 'e' },
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' },
		{ NULL, 0, NULL, 0 }
	};
	int ch, rc = 0;

	opterr = 0;
	while (rc == 0 && (ch = getopt_long(argc, argv, ":l:c:kw:46vqi:n:e:hV",
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
		case OPT_CIPHER:
			rc = once(&g->cipher, optarg, "--cipher");
			break;
		case OPT_KEEPALIVE:
			rc = once(&g->keepalive, optarg, "--keepalive");
			break;
		case OPT_MAXPENDING:
			rc = once(&g->max_pending, optarg, "--max-pending");
			break;
		case OPT_MAXSESSIONS:
			rc = once(&g->max_sessions, optarg, "--max-sessions");
			break;
		case 'e': rc = once(&o->exec, optarg, "-e"); break;
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
	    o->psk || g->cipher || g->keepalive || g->max_pending ||
	    g->max_sessions || o->exec || g->v4 || g->v6)
		return (say_usage("%s takes no other options", mode));
	if (argc - optind > 1)
		return (say_usage("unexpected argument: %s",
		    argv[optind + 1]));
	o->keyfile = optind < argc ? argv[optind] : NULL;
	if (o->keygen && o->keyfile && strcmp(o->keyfile, "-") == 0)
		return (say_usage("--keygen writes a file, not stdout"));
	return (0);
}

/*
 * The decimal number arg into *out if it is `zero` (0 or 1: whether 0 is
 * allowed), or from min to max; 0, or -1 if it is none of those.
 */
static int
number(const char *arg, int zero, long min, long max, int *out)
{
	char *end;
	long v;

	errno = 0;
	v = strtol(arg, &end, 10);
	if (!isdigit((unsigned char)arg[0]) || *end != '\0' || errno != 0 ||
	    v > max || (v < min && !(zero && v == 0)))
		return (-1);
	*out = (int)v;
	return (0);
}

/* Each option conflict gets its own message; exit status or 0. */
static int
check_opts(struct opts *o, const struct given *g)
{
	const char *bad;

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
	if (g->max_pending != NULL && o->listen == NULL)
		return (say_usage("--max-pending needs -l"));
	if (o->exec != NULL && o->listen == NULL)
		return (say_usage("-e needs -l"));
	if (g->max_sessions != NULL && o->exec == NULL)
		return (say_usage("--max-sessions needs -e: a listener without "
		    "it runs one session at a time"));
	if (o->exec != NULL && o->classic)
		return (say_usage("-e cannot be used with --classic: anyone "
		    "could run the command"));
	if (o->exec != NULL && o->allow == NULL && o->peer == NULL &&
	    o->psk == NULL)
		return (say_usage("-e needs --allow, --peer or --psk: "
		    "otherwise anyone could run the command"));
	bad = o->identity ? "-i" : o->name ? "-n" : o->peer ? "--peer" :
	    o->known ? "--known-peers" : o->allow ? "--allow" :
	    o->psk ? "--psk" : NULL;
	if (o->classic && bad != NULL)
		return (say_usage("%s cannot be used with --classic: the "
		    "original protocol has no keys to check", bad));
	if (o->classic && (g->cipher != NULL || g->keepalive != NULL))
		return (say_usage("%s cannot be used with --classic: the "
		    "original protocol has one cipher and no keepalive",
		    g->cipher != NULL ? "--cipher" : "--keepalive"));
	if (o->name != NULL && !valid_name(o->name))
		return (say_usage("-n: a name is at most %d bytes of "
		    "printable UTF-8", PROTO_NAMEMAX));
	if (g->wait != NULL && number(g->wait, 0, 1, 86400, &o->wait) != 0)
		return (say_usage("-w: %s: expected seconds from 1 to 86400",
		    g->wait));
	if (g->keepalive != NULL && number(g->keepalive, 1, MIN_KEEPALIVE,
	    86400, &o->keepalive) != 0)
		return (say_usage("--keepalive: %s: expected 0 (no limit) or "
		    "seconds from %d to 86400", g->keepalive, MIN_KEEPALIVE));
	if (g->max_pending != NULL && number(g->max_pending, 0, 1,
	    MAX_PENDING, &o->max_pending) != 0)
		return (say_usage("--max-pending: %s: expected a number from 1 "
		    "to %d", g->max_pending, MAX_PENDING));
	if (g->max_sessions != NULL && number(g->max_sessions, 0, 1,
	    MAX_SESSIONS, &o->max_sessions) != 0)
		return (say_usage("--max-sessions: %s: expected a number from "
		    "1 to %d", g->max_sessions, MAX_SESSIONS));
	if (g->cipher != NULL) {
		if (strcmp(g->cipher, "aesgcm") == 0)
			o->suites = PROTO_OFFER_AESGCM;
		else if (strcmp(g->cipher, "chachapoly") == 0)
			o->suites = PROTO_OFFER_CHACHAPOLY;
		else
			return (say_usage("--cipher: %s: expected aesgcm or "
			    "chachapoly", g->cipher));
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
	o->keepalive = DEFAULT_KEEPALIVE;
	o->max_pending = DEFAULT_PENDING;
	o->max_sessions = DEFAULT_SESSIONS;
	o->suites = PROTO_OFFER_AESGCM | PROTO_OFFER_CHACHAPOLY;
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

/*
 * Keys.
 */

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
		k->allowing = 1;
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
 * A session from handshake to end.
 */

/* What the handshake learnt of the peer: its key (to record, for a
 * connector's first contact) and the session code, if shown. */
struct first_contact {
	const struct trust_keys *k;
	uint8_t rs[PROTO_KEYBYTES];
	char code[PROTO_CODELEN + 1];
};

/*
 * The session's first-packet callback: the listener's first packet has
 * proved the session (and any PSK), so a first contact's key goes into
 * known_peers now.  Return 0, or EXIT_RUNTIME with the message in why.
 */
static int
record_peer(void *arg, char *why, size_t whylen)
{
	const struct first_contact *fc = arg;
	const struct trust_keys *k = fc->k;

	if (trust_known_add(k->known, k->hostport, fc->rs) != 0) {
		snprintf(why, whylen, "%s: cannot record the peer's key: %s",
		    k->known, strerror(errno));
		return (EXIT_RUNTIME);
	}
	say_status(0, "First contact with %s: its key is now recorded in %s",
	    k->hostport, k->known);
	return (0);
}

/* -vv: each step of the handshake, a public key also as its key text. */
static void
trace_step(void *arg, const char *what, const uint8_t *buf, size_t len,
    int pubkey)
{
	char b64[PROTO_B64LEN + 1];
	char *h;

	(void)arg;
	if (buf == NULL) {
		say_status(2, "[trace] %s", what);
		return;
	}
	if ((h = malloc(2 * len + 1)) == NULL)
		return;
	say_hex(h, buf, len);
	if (pubkey && len == PROTO_KEYBYTES) {
		proto_key_encode(b64, buf);
		say_status(2, "[trace]   %s = %s (%s)", what, h, b64);
	} else
		say_status(2, "[trace]   %s = %s", what, h);
	sodium_memzero(h, 2 * len + 1);
	free(h);
}

/*
 * In a listener, a connection that fails before its peer is known (a
 * port scan, garbage, a timeout, a wrong PSK) is one line with -v; the
 * connector, and a refused key, say it always.
 */
static int strays_quiet;

static void fail(const char *fmt, ...)
    __attribute__((format(printf, 1, 2)));

static void
fail(const char *fmt, ...)
{
	char line[1024];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	if (strays_quiet)
		say_status(1, "%s", line);
	else
		say_error("%s", line);
}

/* Was rc the connection closing under us? */
static int
closed_under(int rc)
{

	return (rc == PROTO_EEOF || rc == PROTO_ETRUNC || (rc == PROTO_EERRNO &&
	    (errno == ECONNRESET || errno == EPIPE)));
}

/* Why a listener refused a connector's hello, in the listener's words. */
static const char *
refused_why(const struct proto_hello *h)
{

	switch (h->reason) {
	case PROTO_REFUSE_VERSION:
		return ("it speaks another version of the protocol");
	case PROTO_REFUSE_CIPHER:
		return ("it offers no cipher we may use");
	case PROTO_REFUSE_NEEDPSK:
		return ("it has no pre-shared key, and we require one");
	case PROTO_REFUSE_NOPSK:
		return ("it offered a pre-shared key, and we have none");
	case PROTO_REFUSE_BUSY:
		return ("we are busy");
	default:
		return ("it asked for a mode we do not know");
	}
}

/*
 * Report why the hello with peer failed with rc, and return the exit
 * status.  A refusal is only a hint, as nothing authenticates it; it is
 * worth the words all the same.
 */
static int
hello_failed(int rc, const struct proto_hello *h, int connector,
    const char *peer)
{

	if (rc == PROTO_EREFUSED && connector) {
		fail("%s refused the connection: %s", peer,
		    proto_refusal_text(h->reason));
		return (h->reason == PROTO_REFUSE_BUSY ? EXIT_RUNTIME :
		    EXIT_SECURITY);
	}
	if (rc == PROTO_EREFUSED) {
		fail("refused %s: %s", peer, refused_why(h));
		return (EXIT_SECURITY);
	}
	if (closed_under(rc))
		fail("handshake with %s failed: the %s closed the "
		    "connection without a word", peer, connector ? "listener" :
		    "peer");
	else
		fail("handshake with %s failed: %s", peer,
		    proto_strerror(rc));
	return (closed_under(rc) ? EXIT_SECURITY : say_exit_for(rc));
}

/*
 * The hello: offer our suites (the connector) or choose one (the
 * listener), before any cryptography.  Return 0 with the agreed suite in
 * h->choice, or an exit status after reporting.
 */
static int
hello(int sock, int connector, struct proto_hello *h, const struct opts *o,
    const struct trust_keys *k, const char *peer, int busy, int64_t deadline)
{
	int suites = o->suites & proto_suites_available(), rc;

	if (connector) {
		if (proto_hello_offer(h, suites, k->psk != NULL ?
		    PROTO_MODE_PSK : PROTO_MODE_XX) != 0) {
			say_error("no cipher to offer");
			return (EXIT_RUNTIME);
		}
		trace_step(NULL, "hello: frame 1 (version, suites, mode)",
		    h->f1, h->f1len, 0);
		rc = proto_hello_connect(sock, h, deadline);
	} else {
		rc = proto_hello_accept(sock, h, suites, k->psk != NULL, busy,
		    deadline);
		if (h->f1len > 0)
			trace_step(NULL, "hello: frame 1 (version, suites, mode)",
			    h->f1, h->f1len, 0);
	}
	if (h->f2len > 0)
		trace_step(NULL, "hello: frame 2 (choice, or 0 and a reason)",
		    h->f2, h->f2len, 0);
	if (rc != 0)
		return (hello_failed(rc, h, connector, peer));
	say_status(1, "Cipher: %s", proto_suite_name(h->choice));
	return (0);
}

/*
 * Report why the handshake failed with rc, in the words of the step it
 * failed at, and return the exit status.
 */
static int
handshake_failed(int rc, const struct proto_hs *hs, int connector,
    const struct trust_keys *k, const char *peer)
{
	const char *why = proto_strerror(rc), *hint = "";

	if (closed_under(rc)) {
		/* The peer refused the handshake, or someone cut it. */
		why = "the connection closed during the handshake";
		if (!connector && proto_hs_step(hs) == 2)
			hint = " (the connector refused our key?)";
		fail("handshake with %s failed: %s%s", peer, why, hint);
		return (EXIT_SECURITY);
	}
	if (rc == PROTO_EBADTAG || rc == PROTO_EBADMSG) {
		if (k->psk != NULL && !connector && proto_hs_step(hs) == 2)
			hint = " (a different --psk on each side, or tampering)";
		else if (rc == PROTO_EBADTAG)
			hint = " (the connection was tampered with)";
	}
	fail("handshake with %s failed: %s%s", peer, why, hint);
	return (say_exit_for(rc));
}

/*
 * Tell the user who is at the other end, have a first contact recorded
 * (into fc) once the session proves it, and set the label of the peer's
 * lines.  Return 0 or an exit status.
 */
static int
report_peer(struct session_conf *c, struct first_contact *fc,
    const struct opts *o, struct trust_keys *k, const struct proto_hs *hs,
    const struct trust_verify *v, const uint8_t *name, size_t namelen)
{
	char b64[PROTO_B64LEN + 1], code[PROTO_CODELEN + 1];
	char shown[4 * PROTO_NAMEMAX + 1], sec[2 * PROTO_KEYBYTES + 1];
	const uint8_t *rs = proto_hs_remote_static(hs);

	snprintf(c->label, sizeof(c->label), c->initiator ? "[server]" :
	    "[client]");
	if (o->classic) {
		/* A secret on the screen is for learning: -v asks for it. */
		if (say_verbosity() >= 1) {
			say_hex(sec, proto_hs_hash(hs), PROTO_KEYBYTES);
			say_status(1, "Shared secret (hex) -> %s", sec);
			sodium_memzero(sec, sizeof(sec));
		}
		return (0);
	}
	memcpy(fc->rs, rs, PROTO_KEYBYTES);
	if (v->first_contact) {
		fc->k = k;
		c->first_packet = record_peer;
		c->first_arg = fc;
	}
	proto_key_encode(b64, rs);
	shown[term_sanitize(shown, name, namelen)] = '\0';
	say_status(0, "Peer key: %s%s%s%s", b64, namelen > 0 ? " (\"" : "",
	    shown, namelen > 0 ? "\")" : "");
	/* 65537 hashes are worth it only for a code someone reads: a
	 * listener running commands shows it only with -v. */
	if (say_verbosity() >= (o->exec != NULL ? 1 : 0)) {
		proto_session_code(code, proto_hs_h2(hs));
		say_status(0, "Session code: %s  Compare this code with your "
		    "peer's: if it differs, someone is in the middle.", code);
		memcpy(fc->code, code, sizeof(fc->code));
	}
	if (namelen > 0)
		snprintf(c->label, sizeof(c->label), "[%s]", shown);
	return (0);
}

/*
 * A listener's connection asks whether it is busy once the hello has
 * come, not when it was accepted: a session may have ended in between.
 * The connector has none to ask (0).
 */
static int
busy_now(struct net_conn *nc, int64_t deadline)
{
	struct pollfd pfd;
	int64_t left;
	int busy;

	if (nc == NULL)
		return (0);
	pfd.fd = nc->fd;
	pfd.events = POLLIN;
	while ((left = deadline - proto_now_ms()) > 0 &&
	    poll(&pfd, 1, (int)left) == -1 && errno == EINTR)
		;
	return ((busy = net_busy(nc)) == -1 ? nc->busy : busy);
}

/*
 * Run the hello and the handshake on c->sock, then give c its ciphers,
 * its label and any first contact to record (kept in fc).  peer names
 * the other end in messages.  Return 0 or an exit status, after
 * reporting.
 */
static int
handshake(struct session_conf *c, struct first_contact *fc,
    const struct opts *o, struct trust_keys *k, const char *peer,
    struct net_conn *nc)
{
	uint8_t prologue[PROTO_PROLOGUEMAX];
	int64_t deadline = proto_now_ms() + (int64_t)o->wait * 1000;
	struct proto_hs_params hp;
	struct proto_hello h;
	struct proto_hs *hs;
	struct trust_verify v;
	uint8_t name[PROTO_NAMEMAX];
	size_t namelen = 0;
	int rc;

	memset(&hp, 0, sizeof(hp));
	if (say_verbosity() >= 2) {
		hp.trace = trace_step;
		say_status(2, "[trace] WARNING: this trace shows secret keys; "
		    "never share it");
	}
	hp.suite = PROTO_CLASSIC;
	if (!o->classic) {
		if ((rc = hello(c->sock, c->initiator, &h, o, k, peer,
		    busy_now(nc, deadline), deadline)) != 0)
			return (rc);
		hp.suite = h.choice;
		hp.prologuelen = proto_hello_prologue(&h, prologue);
		hp.prologue = prologue;
	}
	hp.initiator = c->initiator;
	hp.s = k->s;
	hp.psk = k->psk;
	if ((hs = proto_hs_new(&hp)) == NULL) {
		say_error("proto_hs_new: %s", strerror(errno));
		return (EXIT_RUNTIME);
	}
	memset(&v, 0, sizeof(v));
	v.k = k;
	v.initiator = c->initiator;
	rc = proto_handshake(c->sock, hs, (const uint8_t *)o->name,
	    o->name != NULL ? strlen(o->name) : 0, name, &namelen, deadline,
	    o->classic ? NULL : trust_verify_peer, &v);
	if (rc == PROTO_EREJECT) {
		say_error("%s: %s", peer, v.why);
		rc = EXIT_SECURITY;
	} else if (rc != 0)
		rc = handshake_failed(rc, hs, c->initiator, k, peer);
	else if ((rc = proto_hs_split(hs, &c->tx, &c->rx)) != 0) {
		say_error("%s", proto_strerror(rc));
		rc = EXIT_RUNTIME;
	} else {
		if (!c->initiator)
			say_status(0, "Client %s connected", peer);
		rc = report_peer(c, fc, o, k, hs, &v, name, namelen);
	}
	proto_hs_free(hs);
	return (rc);
}

/* A listener's session is done with the output: its slot is free for
 * the next, once. */
static void
release_slot(void *arg)
{
	static int released;

	if (!released)
		net_release(arg);
	released = 1;
}

/*
 * A listener's session, and the one line that tells how it went: always
 * with -k, where sessions follow one another on the same output, and
 * with -v.  Return its exit status.
 */
static int
serve_logged(struct session_conf *c, const struct opts *o, const char *peer,
    struct session_stats *st)
{
	int64_t t0 = proto_now_ms(), ms;
	int rc;

	memset(st, 0, sizeof(*st));
	c->stats = st;
	rc = session_run(c);
	c->stats = NULL;
	ms = proto_now_ms() - t0;
	say_status(o->keep || o->exec != NULL ? 0 : 1, "Session with %s ended "
	    "after %lld.%01lld s: %llu bytes in, %llu bytes out: %s (exit %d)",
	    peer, (long long)(ms / 1000), (long long)(ms % 1000 / 100),
	    (unsigned long long)st->in, (unsigned long long)st->out,
	    rc == 0 ? "clean end" : st->result[0] != '\0' ? st->result :
	    "failed", rc);
	return (rc);
}

/* The before_ack callback of a session whose end is a command. */
static int
command_done(void *arg, char *why, size_t whylen)
{

	return (session_cmd_result(arg, why, whylen));
}

/*
 * The command's environment holds only what the listener verified: the
 * peer's key, the name our --allow list gives it (never one the peer
 * claims), its address and port, the session code if shown.
 */
static void
command_env(const struct net_conn *nc, const struct first_contact *fc,
    const char *name)
{
	char b64[PROTO_B64LEN + 1];

	proto_key_encode(b64, fc->rs);
	(void)setenv("X25519CHAT_PEER_KEY", b64, 1);
	if (name != NULL)
		(void)setenv("X25519CHAT_PEER_NAME", name, 1);
	else
		(void)unsetenv("X25519CHAT_PEER_NAME");
	(void)setenv("X25519CHAT_PEER_ADDR", nc->addr, 1);
	(void)setenv("X25519CHAT_PEER_PORT", nc->port, 1);
	if (fc->code[0] != '\0')
		(void)setenv("X25519CHAT_SESSION_CODE", fc->code, 1);
	else
		(void)unsetenv("X25519CHAT_SESSION_CODE");
}

/*
 * -e: the session's end is CMD.  Its stdout's end sends our CLOSE; on the
 * peer's CLOSE its stdin closes, and our ACK waits for it to exit 0 (else
 * ERROR with its status); a session that ends without the peer's CLOSE
 * has it signalled before its stdin closes.  Return the exit status.
 */
static int
serve_exec(struct session_conf *c, const struct opts *o, const char *peer,
    const struct net_conn *nc, const struct first_contact *fc,
    const char *name)
{
	struct session_stats st;
	struct session_cmd sc;
	char label[SESSION_LABELMAX];
	int rc;

	command_env(nc, fc, name);
	snprintf(label, sizeof(label), "[%s]", peer);
	if (session_cmd_start(&sc, o->exec, label) != 0) {
		session_refuse(c, "the listener cannot run its command");
		return (EXIT_RUNTIME);
	}
	c->typed = c->chat = 0;
	c->keep_out = 0;
	c->before_ack = command_done;
	c->ack_arg = &sc;
	rc = serve_logged(c, o, peer, &st);
	session_cmd_end(&sc, st.closed);
	c->before_ack = NULL;
	c->ack_arg = NULL;
	return (rc);
}

/*
 * Run the handshake and then the session on the connected socket fd.  A
 * listener's connection (nc) asks the listener for a session slot once
 * its peer is authenticated, and is turned away as busy without one.
 * Return the exit status, after reporting any failure.
 */
static int
serve(int fd, const struct opts *o, struct trust_keys *k, const char *peer,
    struct net_conn *nc)
{
	struct session_conf c;
	struct first_contact fc;
	int rc, slot;

	memset(&c, 0, sizeof(c));
	memset(&fc, 0, sizeof(fc));
	c.sock = fd;
	c.classic = o->classic;
	/* A chat needs a screen too: "-l PORT > file" at a shell is a pipe. */
	c.typed = isatty(STDIN_FILENO);
	c.chat = c.typed && isatty(STDOUT_FILENO);
	c.initiator = o->connect != NULL;
	c.verbose = say_verbosity();
	c.keepalive = o->keepalive;
	c.keep_out = o->keep;
	net_nodelay(fd);

	rc = handshake(&c, &fc, o, k, peer, nc);
	/* No other handshake of this process will need our secrets. */
	sodium_free(k->s);
	sodium_free(k->psk);
	k->s = k->psk = NULL;
	strays_quiet = 0;
	if (rc == 0 && nc != NULL && (slot = net_claim(nc)) != 1) {
		if (slot == 0) {
			say_status(0, "Turned %s away: busy with another "
			    "session", peer);
			session_refuse(&c, "busy");
		}
		rc = EXIT_RUNTIME;
	} else if (rc == 0 && nc == NULL)
		rc = session_run(&c);
	else if (rc == 0) {
		struct session_stats st;
		const char *name = trust_name(k, fc.rs);
		char who[SESSION_LABELMAX - 2];	/* as "[%s]" in a label */

		/* The logs name the peer as our --allow list does. */
		snprintf(who, sizeof(who), "%s%s%s", name ? name : "",
		    name ? " at " : "", peer);
		c.over = release_slot;
		c.over_arg = nc;
		if (o->exec != NULL)
			rc = serve_exec(&c, o, who, nc, &fc, name);
		else
			rc = serve_logged(&c, o, who, &st);
	}
	proto_cipher_free(c.tx);
	proto_cipher_free(c.rx);
	return (rc);
}

/*
 * The two roles.
 */

/* What each of the listener's connections needs. */
struct listener {
	const struct opts *o;
	struct trust_keys *k;
	struct timespec allow_mtime;	/* of --allow, when last read */
};

/* In a connection's own process: serve it.  Returns its exit status. */
static int
serve_conn(struct net_conn *nc, void *arg)
{
	struct listener *L = arg;
	int rc;

	/* The pipe that wakes a session on a signal: this process's own. */
	if (session_init() != 0)
		return (EXIT_RUNTIME);
	strays_quiet = 1;
	rc = serve(nc->fd, L->o, L->k, nc->peer, nc);
	close(nc->fd);
	/* This process ends here, not in main(). */
	trust_allow_free(L->k);
	free(L->k->known_keys);
	L->k->known_keys = NULL;
	return (rc);
}

/*
 * Before each connection: read --allow again if it changed, as sshd
 * reads authorized_keys.  A file that no longer reads admits nobody.
 */
static void
reread_allow(void *arg)
{
	struct listener *L = arg;
	struct trust_keys *k = L->k;
	struct stat st;

	if (L->o->allow == NULL)
		return;
	if (stat(L->o->allow, &st) != 0)
		st.st_mtim.tv_sec = st.st_mtim.tv_nsec = -1;
	else if (st.st_mtim.tv_sec == L->allow_mtime.tv_sec &&
	    st.st_mtim.tv_nsec == L->allow_mtime.tv_nsec)
		return;
	trust_allow_free(k);
	if (trust_read_allow(k, L->o->allow) == 0 && k->nallow > 0)
		say_status(1, "%s changed: %zu keys allowed now", L->o->allow,
		    k->nallow);
	else {
		/* k->allowing stays: an empty list admits nobody. */
		say_error("%s: no keys read: nobody is allowed in until it is "
		    "fixed", L->o->allow);
		trust_allow_free(k);
	}
	L->allow_mtime = st.st_mtim;
}

/*
 * The listener: each connection in a process of its own, which runs its
 * handshake and, once the peer is authenticated and no other session
 * runs, its session.  Without -k the first session's exit status is the
 * listener's; with -k it serves until a signal.
 */
static int
run_listener(const struct opts *o, struct trust_keys *k, const char *host,
    const char *port)
{
	struct net_service sv;
	struct listener L;
	struct stat st;
	int lfd, rc;

	if ((lfd = net_listen(host, port, o->family)) == -1)
		return (EXIT_RUNTIME);
	if (trust_identity_create(k) != 0) {
		close(lfd);
		return (EXIT_RUNTIME);
	}
	memset(&L, 0, sizeof(L));
	L.o = o;
	L.k = k;
	if (o->allow != NULL && stat(o->allow, &st) == 0)
		L.allow_mtime = st.st_mtim;
	memset(&sv, 0, sizeof(sv));
	sv.max_pending = o->max_pending;
	sv.max_sessions = o->exec != NULL ? o->max_sessions : 1;
	sv.keep = o->keep;
	sv.wait = o->wait;
	sv.serve = serve_conn;
	sv.before_fork = reread_allow;
	sv.arg = &L;
	rc = net_serve(lfd, &sv);
	return (rc);
}

/* The connector: connect within -w seconds and serve that connection. */
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
	rc = serve(fd, o, k, k->hostport, NULL);
	close(fd);
	return (rc);
}

/*
 * The process.
 */

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
	/* Without hardware AES, libsodium has no AES-256-GCM. */
	if (!crypto_aead_aes256gcm_is_available() &&
	    (o.classic || o.suites == PROTO_OFFER_AESGCM)) {
		say_error("%s needs AES-256-GCM, which libsodium runs only on "
		    "x86 CPUs with AES-NI, and this CPU is not one%s",
		    o.classic ? "--classic" : "--cipher aesgcm", o.classic ?
		    "" : ": leave out --cipher");
		return (EXIT_RUNTIME);
	}
	if (net_parse_hostport(o.listen != NULL ? o.listen : o.connect,
	    o.listen != NULL, hbuf, sizeof(hbuf), pbuf, sizeof(pbuf),
	    &host) != 0)
		return (EXIT_USAGE);

	memset(&k, 0, sizeof(k));
	if ((rc = setup_keys(&o, &k, host, pbuf)) == 0) {
		/* A listener's connections each prepare their own. */
		if (o.listen != NULL)
			rc = run_listener(&o, &k, host, pbuf);
		else if (session_init() != 0)
			rc = EXIT_RUNTIME;
		else
			rc = run_connector(&o, &k, host, pbuf);
	}
	sodium_free(k.s);
	sodium_free(k.psk);
	trust_allow_free(&k);
	free(k.known_keys);
	return (rc);
}
