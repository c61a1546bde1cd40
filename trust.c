/*
 * Whom we are and whom we trust: identity and key files, the --allow
 * list, known_peers and the verdict on the peer's key.  See trust.h.
 */

#include <sys/stat.h>
#include <sys/types.h>

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pwd.h>
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

/*
 * Key files.
 */

/*
 * trust_config_dir(out, len):
 * Write the default directory of our files, $XDG_CONFIG_HOME/x25519chat
 * or ~/.config/x25519chat, into out, which holds len bytes.  Return 0,
 * or -1 after reporting.
 */
int
trust_config_dir(char *out, size_t len)
{
	const char *base = getenv("XDG_CONFIG_HOME");
	const char *home = getenv("HOME");
	struct passwd *pw;
	int n;

	if (base != NULL && base[0] == '/')
		n = snprintf(out, len, "%s/" PROG, base);
	else {
		if ((home == NULL || home[0] == '\0') &&
		    (pw = getpwuid(getuid())) != NULL)
			home = pw->pw_dir;
		if (home == NULL) {
			say_error("cannot find the home directory; use -i");
			return (-1);
		}
		n = snprintf(out, len, "%s/.config/" PROG, home);
	}
	if (n < 0 || (size_t)n >= len) {
		say_error("configuration path too long");
		return (-1);
	}
	return (0);
}

/*
 * mkdir -p for the parent directories of path, new ones mode 0700.
 * Return 0, or -1 with errno set.
 */
static int
make_parents(const char *path)
{
	char buf[PATH_MAX];
	char *p;

	if (strlen(path) >= sizeof(buf))
		return (-1);
	strcpy(buf, path);
	for (p = buf + 1; (p = strchr(p, '/')) != NULL; p++) {
		*p = '\0';
		if (mkdir(buf, 0700) == -1 && errno != EEXIST)
			return (-1);
		*p = '/';
	}
	return (0);
}

/*
 * Read a key file whole into buf (at most len bytes): a regular file of
 * ours that nobody else can read, or with stdin_ok and path "-", standard
 * input.  Return the size, or -1 after reporting.
 */
static ssize_t
read_keyfile(const char *path, int stdin_ok, char *buf, size_t len)
{
	struct stat st;
	ssize_t n, r;
	char extra;
	int fd;

	if (stdin_ok && strcmp(path, "-") == 0)
		fd = STDIN_FILENO;
	else if ((fd = open(path, O_RDONLY | O_CLOEXEC)) == -1) {
		say_error("%s: %s", path, strerror(errno));
		return (-1);
	}
	if (fstat(fd, &st) == -1) {
		say_error("%s: %s", path, strerror(errno));
		goto fail;
	}
	if (fd != STDIN_FILENO) {
		if (!S_ISREG(st.st_mode)) {
			say_error("%s: not a regular file", path);
			goto fail;
		}
		if (st.st_uid != geteuid() && st.st_uid != 0) {
			say_error("%s: owned by another user; refusing a key "
			    "that others control", path);
			goto fail;
		}
		if ((st.st_mode & 077) != 0) {
			say_error("%s: permissions %04o are too open: others "
			    "can %s this key (run: chmod 600 %s)", path,
			    (unsigned)(st.st_mode & 07777),
			    (st.st_mode & 044) != 0 ? "read" : "change", path);
			goto fail;
		}
	}
	/* One byte more than fits tells a file that is too large. */
	for (n = 0; (size_t)n <= len; n += r) {
		r = read(fd, (size_t)n < len ? buf + n : &extra,
		    (size_t)n < len ? len - (size_t)n : 1);
		if (r == -1 && errno == EINTR) {
			r = 0;
			continue;
		}
		if (r == -1) {
			say_error("%s: %s", path, strerror(errno));
			goto fail;
		}
		if (r == 0)
			break;
	}
	if ((size_t)n > len) {
		say_error("%s: file too large for a key", path);
		goto fail;
	}
	if (fd != STDIN_FILENO)
		close(fd);
	return (n);

fail:
	if (fd != STDIN_FILENO)
		close(fd);
	return (-1);
}

/*
 * trust_load_key(path, stdin_ok, key, what):
 * Load the secret key file at path (what names it in messages: "private
 * key" or "pre-shared key") into key.  The file must be a regular file
 * of ours that nobody else can read, or with stdin_ok and path "-",
 * standard input; it must hold one key as wg(8) writes it.  Return 0, or
 * -1 after reporting.
 */
int
trust_load_key(const char *path, int stdin_ok, uint8_t key[PROTO_KEYBYTES],
    const char *what)
{
	char buf[PROTO_B64LEN + 2];
	ssize_t n;
	int rc;

	if ((n = read_keyfile(path, stdin_ok, buf, sizeof(buf))) == -1)
		return (-1);
	rc = proto_keyfile_parse(key, buf, (size_t)n);
	sodium_memzero(buf, sizeof(buf));
	if (rc != 0) {
		say_error("%s: not a valid %s (expected 44 base64 characters "
		    "and a newline, as %s writes)", path, what,
		    strcmp(what, "pre-shared key") == 0 ? "wg genpsk" :
		    "wg genkey");
		return (-1);
	}
	return (0);
}

/* Write a new private key to path (never overwriting); 0 or -1. */
static int
write_new_key(const char *path, uint8_t pub[PROTO_KEYBYTES])
{
	uint8_t *priv;
	char text[PROTO_B64LEN + 2];
	int fd, rc = -1;

	if ((priv = sodium_malloc(PROTO_KEYBYTES)) == NULL) {
		say_error("sodium_malloc: %s", strerror(errno));
		return (-1);
	}
	proto_keypair_new(priv, pub);
	proto_key_encode(text, priv);
	text[PROTO_B64LEN] = '\n';
	if ((fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW |
	    O_CLOEXEC, 0600)) == -1) {
		say_error("%s: %s%s", path, strerror(errno), errno == EEXIST ?
		    " (refusing to overwrite a key)" : "");
		goto out;
	}
	if (proto_write_full(fd, text, PROTO_B64LEN + 1) != 0 ||
	    fsync(fd) != 0) {
		say_error("%s: %s", path, strerror(errno));
		close(fd);
		(void)unlink(path);
		goto out;
	}
	close(fd);
	rc = 0;
out:
	sodium_memzero(text, sizeof(text));
	sodium_free(priv);
	return (rc);
}

/*
 * trust_load_identity(path, k):
 * Load our identity from path, or the default one if path is NULL, into
 * k->s (already allocated) and k->spub.  A missing default identity is
 * only noted in k: trust_identity_create() makes it once everything else
 * has worked.  Return 0, or -1 after reporting.
 */
int
trust_load_identity(const char *path, struct trust_keys *k)
{
	struct stat st;

	if (path == NULL) {
		if (trust_config_dir(k->idpath, sizeof(k->idpath) - 9) != 0)
			return (-1);
		strcat(k->idpath, "/identity");
		if (lstat(k->idpath, &st) == -1 && errno == ENOENT) {
			k->create = 1;
			return (0);
		}
		path = k->idpath;
	}
	if (trust_load_key(path, 0, k->s, "private key") != 0)
		return (-1);
	(void)crypto_scalarmult_base(k->spub, k->s);
	return (0);
}

/*
 * trust_identity_create(k):
 * Create the default identity if trust_load_identity() found none, load
 * it into k, and say so with its public key.  Return 0, or -1 after
 * reporting.
 */
int
trust_identity_create(struct trust_keys *k)
{
	char b64[PROTO_B64LEN + 1];

	if (!k->create)
		return (0);
	if (make_parents(k->idpath) != 0) {
		say_error("%s: cannot create its directory: %s", k->idpath,
		    strerror(errno));
		return (-1);
	}
	if (write_new_key(k->idpath, k->spub) != 0 ||
	    trust_load_key(k->idpath, 0, k->s, "private key") != 0)
		return (-1);
	k->create = 0;
	proto_key_encode(b64, k->spub);
	say_status(0, "Created a new identity in %s; public key %s", k->idpath,
	    b64);
	return (0);
}

/*
 * Key lists: --allow and known_peers.
 */

/*
 * Parse one line of a key list: the first word is returned in word (NUL
 * ended in place), the rest ignored.  Return 0 for a line with a word,
 * 1 for a blank or comment line.
 */
static int
split_line(char *line, char **word, char **rest)
{
	char *p = line, *end;

	while (*p == ' ' || *p == '\t')
		p++;
	if (*p == '\0' || *p == '#')
		return (1);
	end = p + strcspn(p, " \t");
	*rest = end;
	if (*end != '\0') {
		*end = '\0';
		(*rest)++;
		while (**rest == ' ' || **rest == '\t')
			(*rest)++;
	}
	*word = p;
	return (0);
}

/* Read a text file of lines; calls fn for each line.  0 or -1. */
static int
for_each_line(const char *path, int (*fn)(void *, char *, unsigned), void *arg,
    int missing_ok)
{
	FILE *f;
	char line[1024];
	unsigned lineno = 0;
	size_t len;
	int rc = 0;

	if ((f = fopen(path, "re")) == NULL) {
		if (missing_ok && errno == ENOENT)
			return (0);
		say_error("%s: %s", path, strerror(errno));
		return (-1);
	}
	while (rc == 0 && fgets(line, sizeof(line), f) != NULL) {
		lineno++;
		len = strlen(line);
		if (len > 0 && line[len - 1] == '\n') {
			line[--len] = '\0';
			/* A file written on Windows ends lines in CRLF. */
			if (len > 0 && line[len - 1] == '\r')
				line[--len] = '\0';
		}
		else if (!feof(f)) {
			say_error("%s:%u: line too long", path, lineno);
			rc = -1;
			break;
		}
		rc = fn(arg, line, lineno);
	}
	if (rc == 0 && ferror(f)) {
		say_error("%s: %s", path, strerror(errno));
		rc = -1;
	}
	fclose(f);
	return (rc);
}

/* Append one key to a growing array of 32-byte keys. */
static int
keys_add(uint8_t **keys, size_t *n, const uint8_t key[PROTO_KEYBYTES])
{
	uint8_t *more;

	if ((more = realloc(*keys, (*n + 1) * PROTO_KEYBYTES)) == NULL) {
		say_error("realloc: %s", strerror(errno));
		return (-1);
	}
	memcpy(more + *n * PROTO_KEYBYTES, key, PROTO_KEYBYTES);
	*keys = more;
	(*n)++;
	return (0);
}

/* The index of key in keys, or -1. */
static long
keys_index(const uint8_t *keys, size_t n, const uint8_t key[PROTO_KEYBYTES])
{
	size_t i;

	for (i = 0; i < n; i++)
		if (sodium_memcmp(keys + i * PROTO_KEYBYTES, key,
		    PROTO_KEYBYTES) == 0)
			return ((long)i);
	return (-1);
}

static int
keys_find(const uint8_t *keys, size_t n, const uint8_t key[PROTO_KEYBYTES])
{

	return (keys_index(keys, n, key) >= 0);
}

/*
 * Whether s is a name a trust file may give a key: one to TRUST_NAMEMAX
 * ASCII letters, digits, '_', '.' and '-', not starting with '.' or '-'.
 * Nothing else can pass for a label, an option or a path on its own.
 */
static int
name_ok(const char *s)
{
	static const char chars[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
	    "abcdefghijklmnopqrstuvwxyz0123456789_.-";
	size_t n = strlen(s);

	return (n >= 1 && n <= TRUST_NAMEMAX && s[0] != '.' && s[0] != '-' &&
	    strspn(s, chars) == n);
}

/* The text of a file, shown in an error: at most 40 bytes, made safe. */
#define SHOWN	40
static const char *
shown(char out[4 * SHOWN + 1], const char *text)
{
	size_t n = strlen(text);

	out[term_sanitize(out, (const uint8_t *)text, n < SHOWN ? n :
	    SHOWN)] = '\0';
	return (out);
}

struct allow_ctx {
	struct trust_keys *k;
	const char *path;
};

/* One line of --allow: "KEY [NAME] [# comment]". */
static int
allow_line(void *arg, char *line, unsigned lineno)
{
	struct allow_ctx *a = arg;
	struct trust_keys *k = a->k;
	uint8_t key[PROTO_KEYBYTES];
	char *word, *rest, *name = "", *tail, *more, safe[4 * SHOWN + 1];
	long at;

	if (split_line(line, &word, &rest) == 1)
		return (0);
	if (proto_key_decode(key, word, strlen(word)) != 0) {
		say_error("%s:%u: not a public key: %s", a->path, lineno,
		    shown(safe, word));
		return (-1);
	}
	if (split_line(rest, &name, &tail) == 1)
		name = "";
	else if (*tail != '\0' && *tail != '#') {
		say_error("%s:%u: expected \"KEY [NAME] [# comment]\"",
		    a->path, lineno);
		return (-1);
	} else if (!name_ok(name)) {
		say_error("%s:%u: not a name: %s (a name is 1 to %d "
		    "letters, digits, '_', '.' and '-', not starting with "
		    "'.' or '-')", a->path, lineno, shown(safe, name),
		    TRUST_NAMEMAX);
		return (-1);
	}
	if ((at = keys_index(k->allow, k->nallow, key)) >= 0) {
		if (strcmp(k->allow_names + at * (TRUST_NAMEMAX + 1),
		    name) == 0)
			return (0);
		say_error("%s:%u: this key is listed before under another "
		    "name", a->path, lineno);
		return (-1);
	}
	if ((more = realloc(k->allow_names, (k->nallow + 1) *
	    (TRUST_NAMEMAX + 1))) == NULL) {
		say_error("realloc: %s", strerror(errno));
		return (-1);
	}
	k->allow_names = more;
	snprintf(more + k->nallow * (TRUST_NAMEMAX + 1), TRUST_NAMEMAX + 1,
	    "%s", name);
	return (keys_add(&k->allow, &k->nallow, key));
}

/* One line of known_peers: keep the keys recorded for our listener. */
static int
known_line(void *arg, char *line, unsigned lineno)
{
	struct trust_keys *k = arg;
	uint8_t key[PROTO_KEYBYTES];
	char *word, *rest, *b64, *tail;

	if (split_line(line, &word, &rest) == 1)
		return (0);
	if (split_line(rest, &b64, &tail) != 0 || *tail != '\0' ||
	    proto_key_decode(key, b64, strlen(b64)) != 0) {
		say_error("%s:%u: expected \"HOST:PORT KEY\"", k->known,
		    lineno);
		return (-1);
	}
	if (strcmp(word, k->hostport) != 0)
		return (0);
	if (k->nknown == 0)
		k->known_line = lineno;
	return (keys_add(&k->known_keys, &k->nknown, key));
}

/*
 * trust_read_allow(k, path):
 * Add the keys of the --allow file at path, and their names, to k->allow,
 * k->allow_names and k->nallow.  Each line is "KEY [NAME] [# comment]",
 * NAME being [A-Za-z0-9_][A-Za-z0-9._-]{0,31}; blank lines and lines
 * starting with # are skipped; a key listed twice under two names is an
 * error.  Return 0, or -1 after reporting the file and line.
 */
int
trust_read_allow(struct trust_keys *k, const char *path)
{
	struct allow_ctx a = { k, path };

	return (for_each_line(path, allow_line, &a, 0));
}

/*
 * trust_allow_free(k):
 * Forget the --allow list: k->allow and k->allow_names are freed and
 * NULL, k->nallow is 0.
 */
void
trust_allow_free(struct trust_keys *k)
{

	free(k->allow);
	free(k->allow_names);
	k->allow = NULL;
	k->allow_names = NULL;
	k->nallow = 0;
}

/*
 * trust_name(k, key):
 * The name that the --allow list gives key, or NULL if it gives none.
 * Only our own files name keys: never what the peer says.
 */
const char *
trust_name(const struct trust_keys *k, const uint8_t key[PROTO_KEYBYTES])
{
	long at;
	const char *name;

	if ((at = keys_index(k->allow, k->nallow, key)) < 0)
		return (NULL);
	name = k->allow_names + at * (TRUST_NAMEMAX + 1);
	return (name[0] != '\0' ? name : NULL);
}

/*
 * trust_read_known(k):
 * Add the keys that the known_peers file k->known records for the
 * listener k->hostport to k->known_keys and k->nknown, and note the line
 * of the first in k->known_line.  Each line is "HOST:PORT KEY"; blank
 * lines and lines starting with # are skipped; a missing file holds no
 * keys.  Return 0, or -1 after reporting.
 */
int
trust_read_known(struct trust_keys *k)
{

	return (for_each_line(k->known, known_line, k, 1));
}

/*
 * trust_known_add(path, hostport, key):
 * Append "HOST:PORT KEY" to the known_peers file at path on a line of its
 * own, creating the file (mode 0600) and its directories.  Return 0, or
 * -1 with errno set, without reporting.
 */
int
trust_known_add(const char *path, const char *hostport, const uint8_t *key)
{
	char b64[PROTO_B64LEN + 1], line[400], last = '\n';
	struct stat st;
	int fd, n, err;

	if (make_parents(path) != 0)
		return (-1);
	if ((fd = open(path, O_RDWR | O_APPEND | O_CREAT | O_NOFOLLOW |
	    O_CLOEXEC, 0600)) == -1)
		return (-1);
	/* A file edited by hand may lack its last newline. */
	if (fstat(fd, &st) == 0 && st.st_size > 0 &&
	    pread(fd, &last, 1, st.st_size - 1) != 1)
		last = '\n';
	proto_key_encode(b64, key);
	n = snprintf(line, sizeof(line), "%s%s %s\n", last == '\n' ? "" :
	    "\n", hostport, b64);
	if (proto_write_full(fd, line, (size_t)n) != 0) {
		err = errno;
		close(fd);
		errno = err;
		return (-1);
	}
	return (close(fd));
}

/*
 * The verdict on the peer's key.
 */

/*
 * trust_verify_peer(arg, rs):
 * The handshake's verify callback (proto.h); arg is a struct trust_verify.
 * Refuse the peer's static key rs if it is not --peer's, not in the
 * --allow list, or, for a connector without --peer, not the key that
 * known_peers holds for its listener; a connector that finds no key
 * there notes a first contact.  Return 0, or -1 with the reason in why.
 */
int
trust_verify_peer(void *arg, const uint8_t rs[PROTO_KEYBYTES])
{
	struct trust_verify *v = arg;
	struct trust_keys *k = v->k;
	char b64[PROTO_B64LEN + 1], old[PROTO_B64LEN + 1];

	proto_key_encode(b64, rs);
	if (k->has_peer && sodium_memcmp(rs, k->peer, PROTO_KEYBYTES) != 0) {
		snprintf(v->why, sizeof(v->why), "peer key %s is not the "
		    "one --peer requires", b64);
		return (-1);
	}
	if (k->allowing && !keys_find(k->allow, k->nallow, rs)) {
		snprintf(v->why, sizeof(v->why), "peer key %s is not in the "
		    "--allow list", b64);
		return (-1);
	}
	if (!v->initiator || k->has_peer)
		return (0);

	/* Trust on first use: the connector remembers listeners' keys. */
	if (keys_find(k->known_keys, k->nknown, rs))
		return (0);
	if (k->nknown > 0) {
		proto_key_encode(old, k->known_keys);
		snprintf(v->why, sizeof(v->why), "REFUSING: the key of %s "
		    "has CHANGED from %s (%s line %u) to %s; someone may be "
		    "intercepting the connection. If the change is expected, "
		    "delete that line.", k->hostport, old, k->known,
		    k->known_line, b64);
		return (-1);
	}
	v->first_contact = 1;
	return (0);
}

/*
 * --keygen and --pubkey.
 */

/*
 * trust_keygen(path):
 * --keygen: write a new private key to path, never overwriting one, or to
 * the default identity if path is NULL, and print its public key on
 * stdout.  Return the exit status, after reporting.
 */
int
trust_keygen(const char *path)
{
	char def[PATH_MAX], b64[PROTO_B64LEN + 1];
	uint8_t pub[PROTO_KEYBYTES];

	if (path == NULL) {
		if (trust_config_dir(def, sizeof(def) - 9) != 0)
			return (EXIT_RUNTIME);
		strcat(def, "/identity");
		path = def;
		if (make_parents(path) != 0) {
			say_error("%s: cannot create its directory: %s", path,
			    strerror(errno));
			return (EXIT_RUNTIME);
		}
	}
	if (write_new_key(path, pub) != 0)
		return (EXIT_RUNTIME);
	proto_key_encode(b64, pub);
	printf("%s\n", b64);
	say_status(0, "Wrote a new private key to %s", path);
	return (fflush(stdout) == 0 ? EXIT_OK : EXIT_RUNTIME);
}

/*
 * trust_pubkey(path):
 * --pubkey: print on stdout the public key of the private key file at
 * path ("-" for stdin), or of the default identity if path is NULL.
 * Return the exit status, after reporting.
 */
int
trust_pubkey(const char *path)
{
	char def[PATH_MAX], b64[PROTO_B64LEN + 1];
	uint8_t *priv, pub[PROTO_KEYBYTES];
	int rc;

	if (path == NULL) {
		if (trust_config_dir(def, sizeof(def) - 9) != 0)
			return (EXIT_RUNTIME);
		strcat(def, "/identity");
		path = def;
	}
	if ((priv = sodium_malloc(PROTO_KEYBYTES)) == NULL) {
		say_error("sodium_malloc: %s", strerror(errno));
		return (EXIT_RUNTIME);
	}
	rc = trust_load_key(path, 1, priv, "private key");
	if (rc == 0)
		(void)crypto_scalarmult_base(pub, priv);
	sodium_free(priv);
	if (rc != 0)
		return (EXIT_RUNTIME);
	proto_key_encode(b64, pub);
	printf("%s\n", b64);
	return (fflush(stdout) == 0 ? EXIT_OK : EXIT_RUNTIME);
}
