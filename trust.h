#ifndef TRUST_H
#define TRUST_H

/*
 * Whom we are and whom we trust: our identity and the other key files
 * (a PSK), --keygen and --pubkey, the --allow list of a listener, the
 * known_peers file in which a connector remembers the keys of listeners
 * it has met, and the verdict on the peer's key during a handshake.
 *
 * This room must not open sockets or run sessions.  It answers the
 * handshake through trust_verify_peer(); a first contact it notes there
 * is recorded with trust_known_add() by whoever runs the session, once
 * the session has proved it.
 */

#include <limits.h>
#include <stddef.h>
#include <stdint.h>

#include "proto.h"

/* The longest name a trust file can give a key. */
#define TRUST_NAMEMAX	32

/* Our keys and the keys we trust, gathered from the options. */
struct trust_keys {
	uint8_t *s;			/* our static private key (guarded) */
	uint8_t spub[PROTO_KEYBYTES];
	uint8_t *psk;			/* NULL, or the PSK (guarded) */
	uint8_t peer[PROTO_KEYBYTES];	/* --peer */
	int has_peer;
	int allowing;			/* only --allow's keys get in */
	uint8_t *allow;			/* --allow keys, 32 bytes each */
	char *allow_names;		/* their names ("" for none), each
					   TRUST_NAMEMAX + 1 bytes */
	size_t nallow;
	char known[PATH_MAX];		/* known_peers file (connector) */
	char hostport[300];		/* known_peers name of the listener */
	uint8_t *known_keys;		/* its keys there, 32 bytes each */
	size_t nknown;
	unsigned known_line;		/* the line of the first of them */
	char idpath[PATH_MAX];		/* the default identity */
	int create;			/* which does not exist yet */
};

/* What trust_verify_peer() needs, and what it concluded. */
struct trust_verify {
	struct trust_keys *k;
	int initiator;
	int first_contact;	/* known_peers had no line for this host */
	char why[PATH_MAX + 1024];	/* why the key was refused */
};

/*
 * trust_config_dir(out, len):
 * Write the default directory of our files, $XDG_CONFIG_HOME/x25519chat
 * or ~/.config/x25519chat, into out, which holds len bytes.  Return 0,
 * or -1 after reporting.
 */
int trust_config_dir(char *out, size_t len);

/*
 * trust_load_key(path, stdin_ok, key, what):
 * Load the secret key file at path (what names it in messages: "private
 * key" or "pre-shared key") into key.  The file must be a regular file
 * of ours that nobody else can read, or with stdin_ok and path "-",
 * standard input; it must hold one key as wg(8) writes it.  Return 0, or
 * -1 after reporting.
 */
int trust_load_key(const char *path, int stdin_ok,
    uint8_t key[PROTO_KEYBYTES], const char *what);

/*
 * trust_load_identity(path, k):
 * Load our identity from path, or the default one if path is NULL, into
 * k->s (already allocated) and k->spub.  A missing default identity is
 * only noted in k: trust_identity_create() makes it once everything else
 * has worked.  Return 0, or -1 after reporting.
 */
int trust_load_identity(const char *path, struct trust_keys *k);

/*
 * trust_identity_create(k):
 * Create the default identity if trust_load_identity() found none, load
 * it into k, and say so with its public key.  Return 0, or -1 after
 * reporting.
 */
int trust_identity_create(struct trust_keys *k);

/*
 * trust_read_allow(k, path):
 * Add the keys of the --allow file at path, and their names, to k->allow,
 * k->allow_names and k->nallow.  Each line is "KEY [NAME] [# comment]",
 * NAME being [A-Za-z0-9_][A-Za-z0-9._-]{0,31}; blank lines and lines
 * starting with # are skipped; a key listed twice under two names is an
 * error.  Return 0, or -1 after reporting the file and line.
 */
int trust_read_allow(struct trust_keys *k, const char *path);

/*
 * trust_allow_free(k):
 * Forget the --allow list: k->allow and k->allow_names are freed and
 * NULL, k->nallow is 0.
 */
void trust_allow_free(struct trust_keys *k);

/*
 * trust_name(k, key):
 * The name that the --allow list gives key, or NULL if it gives none.
 * Only our own files name keys: never what the peer says.
 */
const char *trust_name(const struct trust_keys *k,
    const uint8_t key[PROTO_KEYBYTES]);

/*
 * trust_read_known(k):
 * Add the keys that the known_peers file k->known records for the
 * listener k->hostport to k->known_keys and k->nknown, and note the line
 * of the first in k->known_line.  Each line is "HOST:PORT KEY"; blank
 * lines and lines starting with # are skipped; a missing file holds no
 * keys.  Return 0, or -1 after reporting.
 */
int trust_read_known(struct trust_keys *k);

/*
 * trust_known_add(path, hostport, key):
 * Append "HOST:PORT KEY" to the known_peers file at path on a line of its
 * own, creating the file (mode 0600) and its directories.  Return 0, or
 * -1 with errno set, without reporting.
 */
int trust_known_add(const char *path, const char *hostport,
    const uint8_t *key);

/*
 * trust_verify_peer(arg, rs):
 * The handshake's verify callback (proto.h); arg is a struct trust_verify.
 * Refuse the peer's static key rs if it is not --peer's, not in the
 * --allow list, or, for a connector without --peer, not the key that
 * known_peers holds for its listener; a connector that finds no key
 * there notes a first contact.  Return 0, or -1 with the reason in why.
 */
int trust_verify_peer(void *arg, const uint8_t rs[PROTO_KEYBYTES]);

/*
 * trust_keygen(path):
 * --keygen: write a new private key to path, never overwriting one, or to
 * the default identity if path is NULL, and print its public key on
 * stdout.  Return the exit status, after reporting.
 */
int trust_keygen(const char *path);

/*
 * trust_pubkey(path):
 * --pubkey: print on stdout the public key of the private key file at
 * path ("-" for stdin), or of the default identity if path is NULL.
 * Return the exit status, after reporting.
 */
int trust_pubkey(const char *path);

#endif /* !TRUST_H */
