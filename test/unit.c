/*
 * Unit tests for proto.c and sodium_shim.c.  Known answers come from the
 * JSON vector files in the directory named on the command line (their
 * fields are described in the README that travels with them); the other
 * checks hold proto.h's contracts against two peers run in memory, or
 * over a socketpair.
 *
 * Each check prints one line to stdout, "PASS: what" or "FAIL: what: why";
 * details that help to debug a failure go to stderr.  The exit status is
 * 0 only if every check passed.
 */

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <sodium.h>

#include "../proto.h"

#if defined(__GNUC__)
#define PRINTFLIKE(f, a)	__attribute__((format(printf, f, a)))
#else
#define PRINTFLIKE(f, a)
#endif

#define NOISE_XX	"Noise_XX_25519_AESGCM_SHA256"
#define NOISE_XXPSK3	"Noise_XXpsk3_25519_AESGCM_SHA256"

/* Counters below this are reached by sealing that many packets first. */
#define SMALL_N		1000

/* Bounds of the JSON reader. */
#define JSON_MAXFILE	(4 << 20)
#define JSON_MAXDEPTH	32

/* Largest value decoded from one hex field of a vector. */
#define BLOBMAX		4096

/* Low-order keys libsodium refuses, kept for the handshake tests. */
#define LOWORDER_MAX	64

static int npassed, nfailed;
static char whybuf[512];

static const uint8_t zero32[32];

static uint8_t loworder[LOWORDER_MAX][PROTO_KEYBYTES];
static size_t nloworder;

/* Static keys of the two test peers: [0] connects, [1] listens. */
static uint8_t statics[2][PROTO_KEYBYTES];
static uint8_t staticpubs[2][PROTO_KEYBYTES];

/* Handshake payloads, as x25519chat sends them: names, none in message 1. */
static const char *const names[3] = { "", "listener", "connector" };

static int why(const char *, ...) PRINTFLIKE(1, 2);
static void report(int, const char *, ...) PRINTFLIKE(2, 3);

/* Reporting. */

/*
 * why(fmt, ...):
 * Record why the check under way failed, for report(); return 0 so that a
 * check can end with "return (why(...));".
 */
static int
why(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(whybuf, sizeof(whybuf), fmt, ap);
	va_end(ap);
	return (0);
}

/*
 * why_in(where):
 * Put "where: " before the recorded reason; return 0.
 */
static int
why_in(const char *where)
{
	char tmp[sizeof(whybuf)];

	memcpy(tmp, whybuf, sizeof(tmp));
	return (why("%s: %s", where, tmp));
}

/*
 * report(ok, fmt, ...):
 * Print the one result line of a check and count it.
 */
static void
report(int ok, const char *fmt, ...)
{
	va_list ap;

	printf("%s: ", ok ? "PASS" : "FAIL");
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	if (ok)
		npassed++;
	else {
		printf(": %s", whybuf[0] != '\0' ? whybuf :
		    "failed without a recorded reason");
		nfailed++;
	}
	putchar('\n');
	fflush(stdout);
	whybuf[0] = '\0';
}

/*
 * hexstr(out, buf, len):
 * Write up to the first 16 bytes of buf in hex to out, for messages.
 */
static const char *
hexstr(char out[40], const uint8_t *buf, size_t len)
{
	size_t n = len > 16 ? 16 : len;

	sodium_bin2hex(out, 40, buf, n);
	if (n < len)
		strcat(out, "...");
	return (out);
}

/*
 * same(what, got, glen, want, wlen):
 * Return 1 if the two byte strings are equal; else record the difference
 * and return 0.
 */
static int
same(const char *what, const uint8_t *got, size_t glen, const uint8_t *want,
    size_t wlen)
{
	char g[40], w[40];

	if (glen == wlen && memcmp(got, want, wlen) == 0)
		return (1);
	return (why("%s: got %zu bytes %s, want %zu bytes %s", what, glen,
	    hexstr(g, got, glen), wlen, hexstr(w, want, wlen)));
}

/*
 * xmalloc(len):
 * Allocate len bytes; a test that cannot get memory cannot go on.
 */
static void *
xmalloc(size_t len)
{
	void *p;

	if ((p = malloc(len)) == NULL) {
		printf("FAIL: memory: %s\n", strerror(errno));
		exit(1);
	}
	return (p);
}

/* A small JSON reader: whole values into a tree, bounded, strict. */

enum { J_NULL, J_FALSE, J_TRUE, J_NUM, J_STR, J_ARR, J_OBJ };

struct json {
	int type;
	char *key;		/* member name, when the parent is an object */
	size_t keylen;
	char *text;		/* J_STR: decoded value; J_NUM: as written */
	size_t len;		/* bytes in text, without the NUL */
	struct json *kids;	/* J_ARR, J_OBJ: the first element */
	struct json *next;	/* the next element of the parent */
};

struct jparse {
	const char *p;		/* next byte to read */
	const char *end;
	int depth;
	const char *err;	/* the first error, or NULL */
};

static struct json *jp_value(struct jparse *);

/*
 * jfree(j):
 * Free j, its siblings and everything below them.
 */
static void
jfree(struct json *j)
{
	struct json *next;

	/* Siblings in a loop; recursion only as deep as the nesting. */
	while (j != NULL) {
		next = j->next;
		jfree(j->kids);
		free(j->key);
		free(j->text);
		free(j);
		j = next;
	}
}

static void *
jp_fail(struct jparse *jp, const char *err)
{

	if (jp->err == NULL)
		jp->err = err;
	return (NULL);
}

static void
jp_ws(struct jparse *jp)
{

	while (jp->p < jp->end && (*jp->p == ' ' || *jp->p == '\t' ||
	    *jp->p == '\n' || *jp->p == '\r'))
		jp->p++;
}

static struct json *
jp_node(struct jparse *jp, int type)
{
	struct json *j;

	if ((j = calloc(1, sizeof(*j))) == NULL)
		return (jp_fail(jp, "out of memory"));
	j->type = type;
	return (j);
}

/* Parse the 4 hex digits at s. */
static int
hex4(const char *s, unsigned long *v)
{
	int i, d;

	*v = 0;
	for (i = 0; i < 4; i++) {
		if (s[i] >= '0' && s[i] <= '9')
			d = s[i] - '0';
		else if (s[i] >= 'a' && s[i] <= 'f')
			d = s[i] - 'a' + 10;
		else if (s[i] >= 'A' && s[i] <= 'F')
			d = s[i] - 'A' + 10;
		else
			return (0);
		*v = *v << 4 | (unsigned long)d;
	}
	return (1);
}

/* Store code point cp at out as UTF-8; return the number of bytes. */
static size_t
utf8_put(char *out, unsigned long cp)
{

	if (cp < 0x80) {
		out[0] = (char)cp;
		return (1);
	}
	if (cp < 0x800) {
		out[0] = (char)(0xc0 | cp >> 6);
		out[1] = (char)(0x80 | (cp & 0x3f));
		return (2);
	}
	if (cp < 0x10000) {
		out[0] = (char)(0xe0 | cp >> 12);
		out[1] = (char)(0x80 | (cp >> 6 & 0x3f));
		out[2] = (char)(0x80 | (cp & 0x3f));
		return (3);
	}
	out[0] = (char)(0xf0 | cp >> 18);
	out[1] = (char)(0x80 | (cp >> 12 & 0x3f));
	out[2] = (char)(0x80 | (cp >> 6 & 0x3f));
	out[3] = (char)(0x80 | (cp & 0x3f));
	return (4);
}

/* Return the byte a backslash and c stand for in a string; -1 if none. */
static int
unescape(char c)
{
	static const char from[] = "\"\\/bfnrt", to[] = "\"\\/\b\f\n\r\t";
	const char *e;

	if (c == '\0' || (e = strchr(from, c)) == NULL)
		return (-1);
	return ((unsigned char)to[e - from]);
}

/*
 * jp_string(jp, lenp):
 * Parse the string whose opening quote is at jp->p.  Return its decoded
 * bytes in a new NUL-terminated buffer and their count in *lenp.
 */
static char *
jp_string(struct jparse *jp, size_t *lenp)
{
	const char *s, *q;
	char *out;
	size_t n = 0;
	unsigned long cp, lo;
	int c;

	/* Find the closing quote first: decoding never makes text longer. */
	s = q = jp->p + 1;
	while (q < jp->end && *q != '"') {
		if ((unsigned char)*q < 0x20)
			return (jp_fail(jp, "control character in a string"));
		q += (*q == '\\') ? 2 : 1;
	}
	if (q >= jp->end)
		return (jp_fail(jp, "unterminated string"));
	if ((out = malloc((size_t)(q - s) + 1)) == NULL)
		return (jp_fail(jp, "out of memory"));
	while (s < q) {
		if (*s != '\\') {
			out[n++] = *s++;
			continue;
		}
		if (s[1] != 'u') {
			if ((c = unescape(s[1])) == -1)
				goto bad;
			out[n++] = (char)c;
			s += 2;
			continue;
		}
		if (q - s < 6 || !hex4(s + 2, &cp))
			goto bad;
		s += 6;
		if (cp >= 0xdc00 && cp <= 0xdfff)
			goto bad;
		if (cp >= 0xd800 && cp <= 0xdbff) {
			/* A high surrogate must pair with a low one. */
			if (q - s < 6 || s[0] != '\\' || s[1] != 'u' ||
			    !hex4(s + 2, &lo) || lo < 0xdc00 || lo > 0xdfff)
				goto bad;
			s += 6;
			cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
		}
		n += utf8_put(out + n, cp);
	}
	out[n] = '\0';
	*lenp = n;
	jp->p = q + 1;
	return (out);

bad:
	free(out);
	return (jp_fail(jp, "bad escape in a string"));
}

/* Skip one or more digits at *pp; return 0 if there are none. */
static int
jp_digits(const struct jparse *jp, const char **pp)
{
	const char *p = *pp;

	while (p < jp->end && *p >= '0' && *p <= '9')
		p++;
	if (p == *pp)
		return (0);
	*pp = p;
	return (1);
}

static struct json *
jp_number(struct jparse *jp)
{
	const char *p = jp->p;
	struct json *j;
	size_t len;

	if (p < jp->end && *p == '-')
		p++;
	if (p < jp->end && *p == '0')
		p++;
	else if (p >= jp->end || *p < '1' || *p > '9' || !jp_digits(jp, &p))
		return (jp_fail(jp, "bad number"));
	if (p < jp->end && *p == '.') {
		p++;
		if (!jp_digits(jp, &p))
			return (jp_fail(jp, "bad number"));
	}
	if (p < jp->end && (*p == 'e' || *p == 'E')) {
		p++;
		if (p < jp->end && (*p == '+' || *p == '-'))
			p++;
		if (!jp_digits(jp, &p))
			return (jp_fail(jp, "bad number"));
	}
	len = (size_t)(p - jp->p);
	if ((j = jp_node(jp, J_NUM)) == NULL)
		return (NULL);
	if ((j->text = malloc(len + 1)) == NULL) {
		free(j);
		return (jp_fail(jp, "out of memory"));
	}
	memcpy(j->text, jp->p, len);
	j->text[len] = '\0';
	j->len = len;
	jp->p = p;
	return (j);
}

static struct json *
jp_literal(struct jparse *jp, const char *word, int type)
{
	size_t n = strlen(word);

	if ((size_t)(jp->end - jp->p) < n || memcmp(jp->p, word, n) != 0)
		return (jp_fail(jp, "unexpected character"));
	jp->p += n;
	return (jp_node(jp, type));
}

/* Return the member of object o named key (klen bytes), or NULL. */
static const struct json *
jfind(const struct json *o, const char *key, size_t klen)
{
	const struct json *k;

	for (k = o->kids; k != NULL; k = k->next)
		if (k->keylen == klen && memcmp(k->key, key, klen) == 0)
			return (k);
	return (NULL);
}

/*
 * jp_container(jp, type):
 * Parse the array or object whose opening bracket is at jp->p.  Duplicate
 * member names are refused, so that no lookup is ambiguous.
 */
static struct json *
jp_container(struct jparse *jp, int type)
{
	struct json *node, *kid, **tail;
	char close = (type == J_ARR) ? ']' : '}';
	char *key = NULL;
	size_t klen = 0;

	if (++jp->depth > JSON_MAXDEPTH)
		return (jp_fail(jp, "nested too deeply"));
	if ((node = jp_node(jp, type)) == NULL)
		return (NULL);
	tail = &node->kids;
	jp->p++;
	jp_ws(jp);
	if (jp->p < jp->end && *jp->p == close) {
		jp->p++;
		goto done;
	}
	for (;;) {
		if (type == J_OBJ) {
			jp_ws(jp);
			if (jp->p >= jp->end || *jp->p != '"') {
				jp_fail(jp, "expected a member name");
				goto fail;
			}
			if ((key = jp_string(jp, &klen)) == NULL)
				goto fail;
			if (jfind(node, key, klen) != NULL) {
				jp_fail(jp, "duplicate member name");
				goto fail;
			}
			jp_ws(jp);
			if (jp->p >= jp->end || *jp->p != ':') {
				jp_fail(jp, "expected ':'");
				goto fail;
			}
			jp->p++;
		}
		if ((kid = jp_value(jp)) == NULL)
			goto fail;
		kid->key = key;
		kid->keylen = klen;
		key = NULL;
		*tail = kid;
		tail = &kid->next;
		jp_ws(jp);
		if (jp->p < jp->end && *jp->p == ',') {
			jp->p++;
			continue;
		}
		if (jp->p < jp->end && *jp->p == close) {
			jp->p++;
			break;
		}
		jp_fail(jp, "expected ',' or a closing bracket");
		goto fail;
	}
done:
	jp->depth--;
	return (node);

fail:
	free(key);
	jfree(node);
	return (NULL);
}

static struct json *
jp_value(struct jparse *jp)
{
	struct json *j;

	jp_ws(jp);
	if (jp->p >= jp->end)
		return (jp_fail(jp, "unexpected end of input"));
	switch (*jp->p) {
	case '{':
		return (jp_container(jp, J_OBJ));
	case '[':
		return (jp_container(jp, J_ARR));
	case '"':
		if ((j = jp_node(jp, J_STR)) == NULL)
			return (NULL);
		if ((j->text = jp_string(jp, &j->len)) == NULL) {
			free(j);
			return (NULL);
		}
		return (j);
	case 't':
		return (jp_literal(jp, "true", J_TRUE));
	case 'f':
		return (jp_literal(jp, "false", J_FALSE));
	case 'n':
		return (jp_literal(jp, "null", J_NULL));
	default:
		return (jp_number(jp));
	}
}

/*
 * json_parse(buf, len, err, off):
 * Parse buf as one JSON value with nothing but white space after it.
 * Return the tree, or NULL with the error and its byte offset.
 */
static struct json *
json_parse(const char *buf, size_t len, const char **err, size_t *off)
{
	struct jparse jp;
	struct json *root;

	jp.p = buf;
	jp.end = buf + len;
	jp.depth = 0;
	jp.err = NULL;
	if ((root = jp_value(&jp)) != NULL) {
		jp_ws(&jp);
		if (jp.p != jp.end) {
			jfree(root);
			root = jp_fail(&jp, "data after the value");
		}
	}
	*err = jp.err;
	*off = (size_t)(jp.p - buf);
	return (root);
}

/*
 * load(dir, name):
 * Read and parse the vector file dir/name.  On failure print a FAIL line
 * for it and return NULL: a missing file is a failed check.
 */
static struct json *
load(const char *dir, const char *name)
{
	char path[4096];
	struct json *root = NULL;
	const char *err;
	char *buf = NULL;
	size_t len, off;
	FILE *f;

	if ((size_t)snprintf(path, sizeof(path), "%s/%s", dir, name) >=
	    sizeof(path)) {
		why("path too long");
		goto done;
	}
	if ((f = fopen(path, "r")) == NULL) {
		why("cannot open %s: %s", path, strerror(errno));
		goto done;
	}
	buf = xmalloc(JSON_MAXFILE + 1);
	len = fread(buf, 1, JSON_MAXFILE + 1, f);
	if (ferror(f))
		why("cannot read %s: %s", path, strerror(errno));
	else if (len > JSON_MAXFILE)
		why("%s is larger than %d bytes", path, JSON_MAXFILE);
	else if ((root = json_parse(buf, len, &err, &off)) == NULL)
		why("%s: byte %zu: %s", path, off, err);
	else if (root->type != J_OBJ) {
		why("%s: not a JSON object", path);
		jfree(root);
		root = NULL;
	}
	fclose(f);
done:
	free(buf);
	if (root == NULL)
		report(0, "load %s", name);
	return (root);
}

/* Return the member key of object o, or NULL. */
static const struct json *
jget(const struct json *o, const char *key)
{

	if (o == NULL || o->type != J_OBJ)
		return (NULL);
	return (jfind(o, key, strlen(key)));
}

/* Return the array member key of o, or NULL. */
static const struct json *
jarr(const struct json *o, const char *key)
{
	const struct json *j = jget(o, key);

	return (j != NULL && j->type == J_ARR ? j : NULL);
}

/* Return the first element of the array member key of o, or NULL. */
static const struct json *
jkids(const struct json *o, const char *key)
{
	const struct json *a = jarr(o, key);

	return (a != NULL ? a->kids : NULL);
}

/* Return the string member key of o (without NUL bytes inside), or NULL. */
static const char *
jstr(const struct json *o, const char *key)
{
	const struct json *j = jget(o, key);

	if (j == NULL || j->type != J_STR || strlen(j->text) != j->len)
		return (NULL);
	return (j->text);
}

/* Parse len decimal digits at s, with no sign or leading zero. */
static int
parse_u64(const char *s, size_t len, uint64_t *v)
{
	uint64_t x = 0, d;
	size_t i;

	if (len == 0 || (len > 1 && s[0] == '0'))
		return (0);
	for (i = 0; i < len; i++) {
		if (s[i] < '0' || s[i] > '9')
			return (0);
		d = (uint64_t)(s[i] - '0');
		if (x > (UINT64_MAX - d) / 10)
			return (0);
		x = x * 10 + d;
	}
	*v = x;
	return (1);
}

/* Read member key of o, a number or a decimal string, as a uint64_t. */
static int
ju64(const struct json *o, const char *key, uint64_t *v)
{
	const struct json *j = jget(o, key);

	if (j == NULL || (j->type != J_NUM && j->type != J_STR) ||
	    !parse_u64(j->text, j->len, v))
		return (why("\"%s\" is missing or not an unsigned integer",
		    key));
	return (1);
}

struct blob {
	uint8_t b[BLOBMAX];
	size_t len;
};

/* Decode the hex string j (called name in messages) into b. */
static int
hexval(const struct json *j, const char *name, struct blob *b)
{
	const char *end;

	if (j == NULL || j->type != J_STR)
		return (why("\"%s\" is missing or not a string", name));
	if (j->len % 2 != 0 || j->len / 2 > sizeof(b->b))
		return (why("\"%s\" has an odd length or is too long", name));
	if (sodium_hex2bin(b->b, sizeof(b->b), j->text, j->len, NULL,
	    &b->len, &end) != 0 || end != j->text + j->len)
		return (why("\"%s\" is not hex", name));
	return (1);
}

/* Decode the hex member key of o into b. */
static int
jhex(const struct json *o, const char *key, struct blob *b)
{

	return (hexval(jget(o, key), key, b));
}

/* Decode the hex member key of o, which must be exactly n bytes. */
static int
jhexn(const struct json *o, const char *key, uint8_t *out, size_t n)
{
	struct blob b;

	if (!jhex(o, key, &b))
		return (0);
	if (b.len != n)
		return (why("\"%s\" is %zu bytes, want %zu", key, b.len, n));
	memcpy(out, b.b, n);
	return (1);
}

/* Is flag among the "flags" of Wycheproof test t? */
static int
has_flag(const struct json *t, const char *flag)
{
	const struct json *f;

	for (f = jkids(t, "flags"); f != NULL; f = f->next)
		if (f->type == J_STR && f->len == strlen(flag) &&
		    memcmp(f->text, flag, f->len) == 0)
			return (1);
	return (0);
}

/* The reader must get right what the vector checks rely on. */
static void
test_json(void)
{
	static const char good[] = "{\"a\": [0, -2.5e+3, true, false, null],"
	    " \"s\": \"x\\u00e9\\ud83d\\ude00\\n\\\"\\/\", \"o\": {}, \"n\": 42}";
	static const char want_s[] = "x\xc3\xa9\xf0\x9f\x98\x80\n\"/";
	static const char *const bad[] = {
		"", "{", "{\"a\":1,}", "[1 2]", "{\"a\":1,\"a\":2}", "01",
		"\"\\ud800\"", "\"\\udc00\"", "\"\\x\"", "[1]x", "\"a\nb\"",
		"[nul]", "{1:2}", "-", "1.", "1e", "\"abc", "[\"\\\"]",
	};
	char deep[2 * (JSON_MAXDEPTH + 1)];
	struct json *j;
	const struct json *a;
	const char *err;
	size_t off, i, n;
	uint64_t v;
	int ok = 1;

	if ((j = json_parse(good, strlen(good), &err, &off)) == NULL)
		ok = why("sample refused at byte %zu: %s", off, err);
	else {
		for (n = 0, a = jkids(j, "a"); a != NULL; a = a->next)
			n++;
		if (n != 5)
			ok = why("array has %zu elements, want 5", n);
		else if (jget(j, "s") == NULL ||
		    !same("string", (const uint8_t *)jget(j, "s")->text,
		    jget(j, "s")->len, (const uint8_t *)want_s,
		    strlen(want_s)))
			ok = 0;
		else if (!ju64(j, "n", &v) || v != 42)
			ok = why("number 42 misread");
		else if (jget(j, "missing") != NULL || jarr(j, "o") != NULL)
			ok = why("lookup of a missing or mistyped member");
		jfree(j);
	}
	for (i = 0; ok && i < sizeof(bad) / sizeof(bad[0]); i++) {
		if ((j = json_parse(bad[i], strlen(bad[i]), &err, &off)) !=
		    NULL) {
			jfree(j);
			ok = why("accepted malformed input %zu", i);
		}
	}
	/* One level deeper than allowed must fail; the limit itself not. */
	memset(deep, '[', JSON_MAXDEPTH + 1);
	memset(deep + JSON_MAXDEPTH + 1, ']', JSON_MAXDEPTH + 1);
	if (ok && (j = json_parse(deep, sizeof(deep), &err, &off)) != NULL) {
		jfree(j);
		ok = why("accepted nesting deeper than %d", JSON_MAXDEPTH);
	}
	if (ok && (j = json_parse(deep + 1, sizeof(deep) - 2, &err, &off)) ==
	    NULL)
		ok = why("refused nesting of %d: %s", JSON_MAXDEPTH, err);
	jfree(j);
	report(ok, "json reader: parses a sample, refuses %zu malformed inputs",
	    sizeof(bad) / sizeof(bad[0]) + 1);
}

/* Walking the vector files. */

/*
 * entries(root, key, what):
 * Return the first entry of the array member key of root; if there is
 * none, report the check named what as failed and return NULL.
 */
static const struct json *
entries(const struct json *root, const char *key, const char *what)
{
	const struct json *t = jkids(root, key);

	if (t == NULL)
		report(why("no \"%s\" entries", key), "%s", what);
	return (t);
}

/* Return the "id" of vector entry t, for result lines. */
static const char *
test_id(const struct json *t)
{
	const char *id = jstr(t, "id");

	return (id != NULL ? id : "(no id)");
}

/* The counts of a run through the tests of a file. */
struct tally {
	size_t total;			/* tests run */
	size_t bad;			/* tests and groups that failed */
	char first[sizeof(whybuf) + 64];	/* why the first one failed */
};

/*
 * tally_fail(tl, where):
 * Count a failure at where; keep it, with the recorded reason, if it is
 * the first.
 */
static void
tally_fail(struct tally *tl, const char *where)
{

	if (tl->bad++ == 0)
		snprintf(tl->first, sizeof(tl->first), "%s: %s", where,
		    whybuf);
}

/*
 * tally_verdict(tl, declared):
 * Turn the counts into the result of one check: 1 if some tests ran, as
 * many as the file declared, and none failed; else record why and
 * return 0.
 */
static int
tally_verdict(const struct tally *tl, uint64_t declared)
{

	if (tl->bad > 0)
		return (why("%zu failed; first: %s", tl->bad, tl->first));
	if (tl->total == 0)
		return (why("no tests"));
	if (tl->total != declared)
		return (why("read %zu tests, file says %llu", tl->total,
		    (unsigned long long)declared));
	return (1);
}

/*
 * How a Wycheproof file is checked: each of its "testGroups" must pass
 * group_ok, each of their "tests" test_ok (which may count the results
 * named by counted in *n), and "numberOfTests" must match.
 */
struct wycheproof {
	const char *file;
	const char *label;		/* "x25519 wycheproof" */
	int (*group_ok)(const struct json *);
	int (*test_ok)(const struct json *, size_t *);
	const char *counted;		/* "invalid ones refused" */
};

/* Return the "tcId" of Wycheproof test t, or 0; records no reason. */
static unsigned long long
tcid(const struct json *t)
{
	const struct json *j = jget(t, "tcId");
	uint64_t v;

	if (j == NULL || (j->type != J_NUM && j->type != J_STR) ||
	    !parse_u64(j->text, j->len, &v))
		return (0);
	return ((unsigned long long)v);
}

/*
 * wycheproof_walk(root, w, n, tl):
 * Run w->test_ok on every test of the Wycheproof file root, counting in
 * tl; a group that w->group_ok refuses, or without tests, is a failure.
 * Each failed test goes to stderr with its tcId.
 */
static void
wycheproof_walk(const struct json *root, const struct wycheproof *w,
    size_t *n, struct tally *tl)
{
	const struct json *g, *t;
	char where[32];

	for (g = jkids(root, "testGroups"); g != NULL; g = g->next) {
		if ((t = jkids(g, "tests")) == NULL)
			why("no \"tests\"");
		if (t == NULL || !w->group_ok(g)) {
			tally_fail(tl, "a group");
			continue;
		}
		for (; t != NULL; t = t->next) {
			tl->total++;
			if (w->test_ok(t, n))
				continue;
			snprintf(where, sizeof(where), "tcId %llu", tcid(t));
			fprintf(stderr, "%s %s: %s\n", w->label, where, whybuf);
			tally_fail(tl, where);
		}
	}
}

/*
 * test_wycheproof(dir, w):
 * Check every test of the Wycheproof file w->file; report them as one
 * check, which passes if all the tests the file declares ran and passed.
 */
static void
test_wycheproof(const char *dir, const struct wycheproof *w)
{
	struct json *root;
	struct tally tl;
	uint64_t declared = 0;
	size_t n = 0;
	int ok;

	if ((root = load(dir, w->file)) == NULL)
		return;
	memset(&tl, 0, sizeof(tl));
	wycheproof_walk(root, w, &n, &tl);
	ok = ju64(root, "numberOfTests", &declared) &&
	    tally_verdict(&tl, declared);
	report(ok, "%s: %zu vectors (%zu %s)", w->label, tl.total, n,
	    w->counted);
	jfree(root);
}

/* Small helpers shared by the transport and handshake checks. */

static void
store32_be(uint8_t *p, uint32_t v)
{

	p[0] = (uint8_t)(v >> 24);
	p[1] = (uint8_t)(v >> 16);
	p[2] = (uint8_t)(v >> 8);
	p[3] = (uint8_t)v;
}

static uint32_t
load32_be(const uint8_t *p)
{

	return ((uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 |
	    (uint32_t)p[2] << 8 | (uint32_t)p[3]);
}

/* The Noise AESGCM nonce of counter n: 4 zero bytes, n big-endian. */
static void
noise_nonce(uint8_t nonce[PROTO_NONCEBYTES], uint64_t n)
{
	int i;

	memset(nonce, 0, 4);
	for (i = 0; i < 8; i++)
		nonce[4 + i] = (uint8_t)(n >> (56 - 8 * i));
}

/*
 * Copy len bytes of pt behind the header room of pkt and seal them;
 * return 1, or 0 with why.
 */
static int
seal_copy(struct proto_cipher *c, uint8_t *pkt, const void *pt, size_t len)
{
	int rc;

	memcpy(pkt + PROTO_HDRBYTES, pt, len);
	if ((rc = proto_seal(c, pkt, len)) != 0)
		return (why("proto_seal: %s", proto_strerror(rc)));
	return (1);
}

/*
 * Open the len-byte packet pkt with rx; return 1 if that gives the ptlen
 * bytes of pt, else say why and return 0.
 */
static int
open_same(struct proto_cipher *rx, uint8_t *pkt, size_t len, const void *pt,
    size_t ptlen)
{
	size_t got;
	int rc;

	if ((rc = proto_open(rx, pkt, len, &got)) != 0)
		return (why("proto_open: %s", proto_strerror(rc)));
	return (same("opened", pkt + PROTO_HDRBYTES, got, pt, ptlen));
}

/*
 * Return 1 if the sealed packet pkt holds nonce, the len bytes of
 * ciphertext ct and tag; else say which differs and return 0.
 */
static int
packet_is(const uint8_t *pkt, const uint8_t *nonce, const uint8_t *ct,
    size_t len, const uint8_t *tag)
{

	return (same("nonce", pkt + PROTO_LENBYTES, PROTO_NONCEBYTES, nonce,
	    PROTO_NONCEBYTES) &&
	    same("ciphertext", pkt + PROTO_HDRBYTES, len, ct, len) &&
	    same("tag", pkt + PROTO_LENBYTES + PROTO_NONCEBYTES,
	    PROTO_TAGBYTES, tag, PROTO_TAGBYTES));
}

/* Return a new cipher, or say why not (NULL). */
static struct proto_cipher *
cipher(const uint8_t key[PROTO_KEYBYTES], int classic)
{
	struct proto_cipher *c;

	if ((c = proto_cipher_new(key, classic)) == NULL)
		why("proto_cipher_new: %s", strerror(errno));
	return (c);
}

/*
 * Make *tx and *rx, two ciphers under one fresh random key; return 1, or
 * 0 with why.  Either way the caller frees both.
 */
static int
cipher_pair(int classic, struct proto_cipher **tx, struct proto_cipher **rx)
{
	uint8_t key[32];

	randombytes_buf(key, sizeof(key));
	*rx = NULL;
	return ((*tx = cipher(key, classic)) != NULL &&
	    (*rx = cipher(key, classic)) != NULL);
}

/* X25519. */

static int
x25519_rfc_one(const struct json *t)
{
	uint8_t scalar[32], u[32], want[32], out[32];

	if (!jhexn(t, "scalar", scalar, 32) || !jhexn(t, "u", u, 32) ||
	    !jhexn(t, "output", want, 32))
		return (0);
	if (crypto_scalarmult(out, scalar, u) != 0)
		return (why("crypto_scalarmult refused"));
	return (same("output", out, 32, want, 32));
}

/* Iterate as RFC 7748 5.2 says: (k, u) = (X25519(k, u), k), n times. */
static int
x25519_iterate(const uint8_t start[32], uint64_t n, const uint8_t want[32])
{
	uint8_t k[32], u[32], r[32];
	uint64_t i;

	memcpy(k, start, 32);
	memcpy(u, start, 32);
	for (i = 0; i < n; i++) {
		if (crypto_scalarmult(r, k, u) != 0)
			return (why("crypto_scalarmult refused at iteration "
			    "%llu", (unsigned long long)i + 1));
		memcpy(u, k, 32);
		memcpy(k, r, 32);
	}
	return (same("k", k, 32, want, 32));
}

/*
 * RFC 7748: the single multiplications, and the iterated checkpoints.  The
 * 1,000,000-iteration one is marked slow and takes about 50 s here, so
 * slow checkpoints are left out (not reported).
 */
static void
test_x25519_rfc(const char *dir)
{
	struct json *root;
	const struct json *t, *it, *cp, *slow;
	uint8_t start[32], want[32];
	uint64_t n;
	int ok;

	if ((root = load(dir, "x25519_rfc7748.json")) == NULL)
		return;
	for (t = entries(root, "tests", "x25519 rfc7748 tests"); t != NULL;
	    t = t->next)
		report(x25519_rfc_one(t), "x25519 %s", test_id(t));
	it = jget(root, "iterated");
	if ((cp = jkids(it, "checkpoints")) == NULL)
		why("no \"checkpoints\"");
	if (cp == NULL || !jhexn(it, "start", start, 32)) {
		report(0, "x25519 rfc7748 iterated");
		goto done;
	}
	for (; cp != NULL; cp = cp->next) {
		slow = jget(cp, "slow");
		if (slow != NULL && slow->type == J_TRUE) {
			fprintf(stderr, "note: x25519 iterated checkpoint "
			    "marked slow left out\n");
			continue;
		}
		n = 0;
		ok = ju64(cp, "iterations", &n) && jhexn(cp, "k", want, 32) &&
		    x25519_iterate(start, n, want);
		report(ok, "x25519 rfc7748 iterated %llu",
		    (unsigned long long)n);
	}
done:
	jfree(root);
}

/*
 * Check one Wycheproof X25519 test.  libsodium refuses (-1) exactly when
 * the result would be all zero; that may only happen where the test
 * expects a zero shared secret and is flagged low-order or zero-shared.
 */
static int
x25519_wp_one(const struct json *t, size_t *rejected)
{
	uint8_t priv[32], pub[32], shared[32], out[32];
	const char *result = jstr(t, "result");
	int rc, zero;

	if (!jhexn(t, "private", priv, 32) || !jhexn(t, "public", pub, 32) ||
	    !jhexn(t, "shared", shared, 32))
		return (0);
	if (result == NULL || (strcmp(result, "valid") != 0 &&
	    strcmp(result, "acceptable") != 0 && strcmp(result, "invalid") != 0))
		return (why("unknown \"result\""));
	rc = crypto_scalarmult(out, priv, pub);
	zero = sodium_is_zero(shared, 32);
	if (rc == -1) {
		if (!zero)
			return (why("refused, but the shared secret is not "
			    "zero"));
		if (strcmp(result, "valid") == 0)
			return (why("refused a valid test"));
		if (!has_flag(t, "LowOrderPublic") &&
		    !has_flag(t, "ZeroSharedSecret"))
			return (why("refused a test not flagged low-order"));
		if (nloworder < LOWORDER_MAX)
			memcpy(loworder[nloworder++], pub, 32);
		(*rejected)++;
		return (1);
	}
	if (rc != 0)
		return (why("crypto_scalarmult returned %d", rc));
	if (zero || sodium_is_zero(out, 32))
		return (why("returned 0 for an all-zero shared secret"));
	if (strcmp(result, "invalid") == 0)
		return (why("accepted an invalid test"));
	return (same("shared", out, 32, shared, 32));
}

/* A Wycheproof X25519 group must be of curve25519 tests. */
static int
x25519_wp_group(const struct json *g)
{
	const char *curve = jstr(g, "curve");

	if (curve == NULL || strcmp(curve, "curve25519") != 0)
		return (why("not curve25519 tests"));
	return (1);
}

static const struct wycheproof x25519_wycheproof = {
	"wycheproof_x25519.json", "x25519 wycheproof", x25519_wp_group,
	x25519_wp_one, "rejected as low-order, as flagged"
};

/* HKDF-SHA256 (sodium_shim.c). */

static int
hkdf_one(const struct json *t)
{
	struct blob ikm, salt, info, prk, okm, out;
	uint8_t got[32];
	uint64_t L;
	size_t i;

	if (!jhex(t, "ikm", &ikm) || !jhex(t, "salt", &salt) ||
	    !jhex(t, "info", &info) || !jhex(t, "prk", &prk) ||
	    !jhex(t, "okm", &okm) || !ju64(t, "L", &L))
		return (0);
	if (L != okm.len || L + 64 > sizeof(out.b))
		return (why("L is %llu but okm has %zu bytes",
		    (unsigned long long)L, okm.len));
	if (crypto_kdf_hkdf_sha256_extract(got, salt.b, salt.len, ikm.b,
	    ikm.len) != 0)
		return (why("extract failed"));
	if (!same("prk", got, 32, prk.b, prk.len))
		return (0);
	memset(out.b, 0xa5, sizeof(out.b));
	if (crypto_kdf_hkdf_sha256_expand(out.b, L, (const char *)info.b,
	    info.len, prk.b) != 0)
		return (why("expand failed"));
	if (!same("okm", out.b, L, okm.b, okm.len))
		return (0);
	for (i = L; i < L + 64; i++)
		if (out.b[i] != 0xa5)
			return (why("expand wrote past out_len"));
	if (salt.len == 0) {
		/* RFC 5869 2.2: no salt means HashLen zero bytes. */
		if (crypto_kdf_hkdf_sha256_extract(got, NULL, 0, ikm.b,
		    ikm.len) != 0 || !same("prk, NULL salt", got, 32, prk.b, 32))
			return (0);
		if (crypto_kdf_hkdf_sha256_extract(got, zero32, 32, ikm.b,
		    ikm.len) != 0 || !same("prk, 32 zero bytes of salt", got, 32,
		    prk.b, 32))
			return (0);
	}
	return (1);
}

/*
 * Expand at its limits: BYTES_MAX works and matches T(1) | ... | T(255)
 * computed block by block here; anything longer is refused with -1.
 */
static int
hkdf_limits(void)
{
	const size_t max = crypto_kdf_hkdf_sha256_BYTES_MAX;
	crypto_auth_hmacsha256_state st;
	uint8_t prk[32], t[32];
	uint8_t *out = xmalloc(max + 1);
	unsigned char ctr;
	size_t i;
	int ok = 0;

	randombytes_buf(prk, sizeof(prk));
	if (crypto_kdf_hkdf_sha256_expand(out, max + 1, "ctx", 3, prk) != -1) {
		why("BYTES_MAX + 1 not refused");
		goto done;
	}
	if (crypto_kdf_hkdf_sha256_expand(out, SIZE_MAX, "ctx", 3, prk) != -1) {
		why("SIZE_MAX not refused");
		goto done;
	}
	if (crypto_kdf_hkdf_sha256_expand(out, 0, "ctx", 3, prk) != 0) {
		why("out_len 0 refused");
		goto done;
	}
	if (crypto_kdf_hkdf_sha256_expand(out, max, "ctx", 3, prk) != 0) {
		why("BYTES_MAX refused");
		goto done;
	}
	for (i = 0; i < max / 32; i++) {
		ctr = (unsigned char)(i + 1);
		crypto_auth_hmacsha256_init(&st, prk, sizeof(prk));
		if (i > 0)
			crypto_auth_hmacsha256_update(&st, t, sizeof(t));
		crypto_auth_hmacsha256_update(&st,
		    (const unsigned char *)"ctx", 3);
		crypto_auth_hmacsha256_update(&st, &ctr, 1);
		crypto_auth_hmacsha256_final(&st, t);
		if (memcmp(out + 32 * i, t, 32) != 0) {
			why("block %zu of %zu differs", i + 1, max / 32);
			goto done;
		}
	}
	ok = 1;
done:
	free(out);
	return (ok);
}

static void
test_hkdf(const char *dir)
{
	struct json *root;
	const struct json *t;

	if ((root = load(dir, "hkdf_sha256_rfc5869.json")) == NULL)
		return;
	for (t = entries(root, "tests", "hkdf rfc5869"); t != NULL;
	    t = t->next)
		report(hkdf_one(t), "hkdf %s extract and expand", test_id(t));
	jfree(root);
	report(hkdf_limits(), "hkdf expand: 0 and BYTES_MAX (%u) work, "
	    "BYTES_MAX + 1 and SIZE_MAX give -1",
	    (unsigned)crypto_kdf_hkdf_sha256_BYTES_MAX);
}

/* AES-256-GCM (libsodium, as proto uses it). */

/*
 * Check one AEAD test with a 96-bit IV: encryption gives ct || tag and
 * decryption gives the plaintext back when expect is "valid"; decryption
 * must fail when it is "invalid"; either for "acceptable".
 */
static int
gcm_one(const struct json *t, const char *mkey, const char *expect)
{
	struct blob key, iv, aad, msg, ct, tag, ctt, out;
	unsigned long long outlen;
	int rc;

	if (!jhex(t, "key", &key) || !jhex(t, "iv", &iv) ||
	    !jhex(t, "aad", &aad) || !jhex(t, mkey, &msg) ||
	    !jhex(t, "ct", &ct) || !jhex(t, "tag", &tag))
		return (0);
	if (key.len != 32 || iv.len != 12 || tag.len != 16)
		return (why("key, iv or tag has the wrong size"));
	if (msg.len + 16 > sizeof(out.b) || ct.len + 16 > sizeof(ctt.b))
		return (why("too long"));
	memcpy(ctt.b, ct.b, ct.len);
	memcpy(ctt.b + ct.len, tag.b, 16);
	ctt.len = ct.len + 16;
	rc = crypto_aead_aes256gcm_decrypt(out.b, &outlen, NULL, ctt.b,
	    ctt.len, aad.b, aad.len, iv.b, key.b);
	if (strcmp(expect, "invalid") == 0)
		return (rc == -1 ? 1 : why("decryption accepted it"));
	if (strcmp(expect, "acceptable") == 0 && rc == -1)
		return (1);
	if (rc != 0)
		return (why("decryption failed"));
	if (!same("decrypted", out.b, (size_t)outlen, msg.b, msg.len))
		return (0);
	if (strcmp(expect, "acceptable") == 0)
		return (1);
	crypto_aead_aes256gcm_encrypt(out.b, &outlen, msg.b, msg.len, aad.b,
	    aad.len, NULL, iv.b, key.b);
	if (!same("ct || tag", out.b, (size_t)outlen, ctt.b, ctt.len))
		return (0);
	/* The tag must be checked at all: a flipped bit is refused. */
	ctt.b[ctt.len - 1] ^= 1;
	if (crypto_aead_aes256gcm_decrypt(out.b, &outlen, NULL, ctt.b,
	    ctt.len, aad.b, aad.len, iv.b, key.b) != -1)
		return (why("accepted a flipped tag bit"));
	return (1);
}

/* GCM spec cases: only the 96-bit-IV ones can run with libsodium. */
static void
test_gcm_spec(const char *dir)
{
	struct json *root;
	const struct json *t;
	uint64_t ivbits;
	size_t n = 0;

	if ((root = load(dir, "aes256gcm.json")) == NULL)
		return;
	for (t = jkids(root, "tests"); t != NULL; t = t->next) {
		if (!ju64(t, "ivBits", &ivbits)) {
			report(0, "aes256gcm %s", test_id(t));
			continue;
		}
		if (ivbits != 96)
			continue;
		n++;
		report(gcm_one(t, "pt", "valid"), "aes256gcm %s", test_id(t));
	}
	if (n == 0)
		report(why("no test with a 96-bit IV"), "aes256gcm spec");
	jfree(root);
}

/*
 * A Wycheproof AES-GCM group must be AES-256 with 96-bit IVs and 128-bit
 * tags, all libsodium offers.
 */
static int
gcm_wp_group(const struct json *g)
{
	uint64_t ivs, keys, tags;

	if (!ju64(g, "ivSize", &ivs) || !ju64(g, "keySize", &keys) ||
	    !ju64(g, "tagSize", &tags))
		return (0);
	if (ivs != 96 || keys != 256 || tags != 128)
		return (why("not AES-256, 96-bit IV, 128-bit tag"));
	return (1);
}

/* One Wycheproof AES-GCM test; count the invalid ones in *invalid. */
static int
gcm_wp_one(const struct json *t, size_t *invalid)
{
	const char *result = jstr(t, "result");

	if (result == NULL)
		return (why("no \"result\""));
	if (strcmp(result, "invalid") == 0)
		(*invalid)++;
	return (gcm_one(t, "msg", result));
}

static const struct wycheproof gcm_wycheproof = {
	"wycheproof_aes256gcm_iv96.json", "aes256gcm wycheproof", gcm_wp_group,
	gcm_wp_one, "invalid ones refused"
};

/* Noise known answers through proto_hs_* and the split ciphers. */

/* One side of a Noise vector. */
struct noise_side {
	struct blob prologue;
	uint8_t s[32], spub[32], e[32], psk[32];
};

static int
noise_side_load(const struct json *v, const char *who, int psk,
    struct noise_side *side)
{
	char key[32];
	const struct json *psks;
	struct blob b;

	snprintf(key, sizeof(key), "%s_prologue", who);
	if (!jhex(v, key, &side->prologue))
		return (0);
	snprintf(key, sizeof(key), "%s_static", who);
	if (!jhexn(v, key, side->s, 32))
		return (0);
	crypto_scalarmult_base(side->spub, side->s);
	snprintf(key, sizeof(key), "%s_ephemeral", who);
	if (!jhexn(v, key, side->e, 32))
		return (0);
	snprintf(key, sizeof(key), "%s_psks", who);
	psks = jarr(v, key);
	if (!psk)
		return (psks == NULL || psks->kids == NULL ? 1 :
		    why("\"%s\" given for a pattern without psk", key));
	if (psks == NULL || psks->kids == NULL)
		return (why("no \"%s\"", key));
	/* XXpsk3 has one psk token, so it takes the first PSK. */
	if (!hexval(psks->kids, key, &b))
		return (0);
	if (b.len != 32)
		return (why("\"%s\"[0] is not 32 bytes", key));
	memcpy(side->psk, b.b, 32);
	return (1);
}

/*
 * Have side i % 2 write handshake message i and the other side read it;
 * check the bytes, the payload, and what each side then knows of the
 * other's static key (XX sends the responder's in message 2 and the
 * initiator's in message 3).
 */
static int
noise_hs_msg(struct proto_hs *hs[2], int i, const struct blob *payload,
    const struct blob *ct, const struct noise_side side[2], uint8_t *msg,
    uint8_t *pl)
{
	struct proto_hs *w = hs[i % 2], *r = hs[1 - i % 2];
	const uint8_t *rs;
	size_t msglen, plen;
	int rc;

	if (proto_hs_next(w) != PROTO_HS_WRITE ||
	    proto_hs_next(r) != PROTO_HS_READ)
		return (why("the sides are not ready to write and read"));
	if ((rc = proto_hs_write(w, payload->b, payload->len, msg,
	    &msglen)) != 0)
		return (why("proto_hs_write: %s", proto_strerror(rc)));
	if (!same("ciphertext", msg, msglen, ct->b, ct->len))
		return (0);
	if ((rc = proto_hs_read(r, msg, msglen, pl, &plen)) != 0)
		return (why("proto_hs_read: %s", proto_strerror(rc)));
	if (!same("payload", pl, plen, payload->b, payload->len))
		return (0);
	rs = proto_hs_remote_static(hs[0]);
	if (i >= 1 ? rs == NULL || memcmp(rs, side[1].spub, 32) != 0 :
	    rs != NULL)
		return (why("initiator's remote static key is wrong"));
	rs = proto_hs_remote_static(hs[1]);
	if (i >= 2 ? rs == NULL || memcmp(rs, side[0].spub, 32) != 0 :
	    rs != NULL)
		return (why("responder's remote static key is wrong"));
	return (1);
}

/* Both sides done, same hash (and the vector's, if any); then split. */
static int
noise_finish(struct proto_hs *hs[2], const struct blob *hash,
    struct proto_cipher *tx[2], struct proto_cipher *rx[2])
{
	int i, rc;

	for (i = 0; i < 2; i++)
		if (proto_hs_next(hs[i]) != PROTO_HS_DONE)
			return (why("side %d is not done", i));
	if (memcmp(proto_hs_hash(hs[0]), proto_hs_hash(hs[1]), 32) != 0)
		return (why("the two handshake hashes differ"));
	if (hash != NULL && !same("handshake_hash", proto_hs_hash(hs[0]), 32,
	    hash->b, hash->len))
		return (0);
	for (i = 0; i < 2; i++)
		if ((rc = proto_hs_split(hs[i], &tx[i], &rx[i])) != 0)
			return (why("proto_hs_split: %s", proto_strerror(rc)));
	return (1);
}

/*
 * Seal payload with tx and check the packet against the vector's
 * ciphertext (AES-GCM ciphertext, then tag, under the counter nonce); then
 * open it with rx.
 */
static int
noise_transport_msg(struct proto_cipher *tx, struct proto_cipher *rx,
    const struct blob *payload, const struct blob *ct, uint8_t *pkt)
{
	uint8_t nonce[PROTO_NONCEBYTES];
	size_t len = payload->len;
	uint64_t n = proto_cipher_nonce(tx);

	if (len > PROTO_MAXPLAIN || ct->len != len + PROTO_TAGBYTES)
		return (why("payload too long, or ciphertext not payload + 16 "
		    "bytes"));
	if (!seal_copy(tx, pkt, payload->b, len))
		return (0);
	if (load32_be(pkt) != PROTO_NONCEBYTES + PROTO_TAGBYTES + len)
		return (why("length prefix is %lu",
		    (unsigned long)load32_be(pkt)));
	noise_nonce(nonce, n);
	if (!packet_is(pkt, nonce, ct->b, len, ct->b + len))
		return (0);
	return (open_same(rx, pkt, PROTO_HDRBYTES + len, payload->b, len));
}

/* Run one XX or XXpsk3 vector; count its transport messages in *ntr. */
static int
noise_vector(const struct json *v, int psk, int need_hash, size_t *ntr)
{
	struct noise_side side[2];
	struct proto_hs_params hp;
	struct proto_hs *hs[2] = { NULL, NULL };
	struct proto_cipher *tx[2] = { NULL, NULL }, *rx[2] = { NULL, NULL };
	struct blob payload, ct, hash;
	const struct json *msgs, *m;
	uint8_t *buf = xmalloc(PROTO_MAXPKT);
	uint8_t *pl = xmalloc(PROTO_MAXHSMSG);
	char where[32];
	int i, ok = 0, has_hash;

	if (!noise_side_load(v, "init", psk, &side[0]) ||
	    !noise_side_load(v, "resp", psk, &side[1]))
		goto done;
	has_hash = jget(v, "handshake_hash") != NULL;
	if ((has_hash || need_hash) && !jhexn(v, "handshake_hash", hash.b, 32))
		goto done;
	hash.len = 32;
	for (i = 0; i < 2; i++) {
		memset(&hp, 0, sizeof(hp));
		hp.initiator = (i == 0);
		hp.s = side[i].s;
		hp.e = side[i].e;
		hp.psk = psk ? side[i].psk : NULL;
		hp.prologue = side[i].prologue.b;
		hp.prologuelen = side[i].prologue.len;
		if ((hs[i] = proto_hs_new(&hp)) == NULL) {
			why("proto_hs_new: %s", strerror(errno));
			goto done;
		}
	}
	if ((msgs = jarr(v, "messages")) == NULL) {
		why("no \"messages\"");
		goto done;
	}
	m = msgs->kids;
	for (i = 0; i < 3; i++, m = m->next) {
		if (m == NULL) {
			why("fewer than 3 messages");
			goto done;
		}
		snprintf(where, sizeof(where), "message %d", i + 1);
		if (!jhex(m, "payload", &payload) ||
		    !jhex(m, "ciphertext", &ct) ||
		    !noise_hs_msg(hs, i, &payload, &ct, side, buf, pl)) {
			why_in(where);
			goto done;
		}
	}
	if (!noise_finish(hs, has_hash ? &hash : NULL, tx, rx))
		goto done;
	/* Counting from 0, even messages go from the initiator, odd back. */
	for (; m != NULL; i++, m = m->next) {
		snprintf(where, sizeof(where), "message %d", i + 1);
		if (!jhex(m, "payload", &payload) ||
		    !jhex(m, "ciphertext", &ct) ||
		    !noise_transport_msg(tx[i % 2], rx[1 - i % 2], &payload,
		    &ct, buf)) {
			why_in(where);
			goto done;
		}
		(*ntr)++;
	}
	ok = 1;
done:
	for (i = 0; i < 2; i++) {
		proto_hs_free(hs[i]);
		proto_cipher_free(tx[i]);
		proto_cipher_free(rx[i]);
	}
	free(buf);
	free(pl);
	return (ok);
}

/* Every XX and XXpsk3 entry of a file; NN is not a pattern proto speaks. */
static void
test_noise_file(const char *dir, const char *file, const char *label,
    int need_hash)
{
	struct json *root;
	const struct json *v;
	const char *pn;
	size_t nrun = 0, ntr;
	int psk, ok;

	if ((root = load(dir, file)) == NULL)
		return;
	for (v = jkids(root, "vectors"); v != NULL; v = v->next) {
		if ((pn = jstr(v, "protocol_name")) == NULL) {
			report(why("entry without \"protocol_name\""),
			    "noise %s", label);
			continue;
		}
		if (strcmp(pn, NOISE_XX) == 0)
			psk = 0;
		else if (strcmp(pn, NOISE_XXPSK3) == 0)
			psk = 1;
		else
			continue;
		nrun++;
		ntr = 0;
		ok = noise_vector(v, psk, need_hash, &ntr);
		report(ok, "noise %s %s: 3 handshake and %zu transport messages%s",
		    label, pn, ntr, jget(v, "handshake_hash") != NULL ? "" :
		    " (no handshake_hash given; the sides' hashes agree)");
	}
	if (nrun == 0)
		report(why("no XX or XXpsk3 entry"), "noise %s", label);
	jfree(root);
}

/*
 * One rekey[] entry: the vector follows Noise's REKEY rule (libsodium
 * alone), and proto_cipher_rekey after two packets seals the third under
 * rekeyed_key with nonce 2, so the counter carries on.
 */
static int
rekey_one(const struct json *t, uint8_t *pkt)
{
	static const char pt[] = "after rekey";
	const size_t len = sizeof(pt) - 1;
	uint8_t key[32], newkey[32];
	uint8_t nonce[PROTO_NONCEBYTES], got[48], want[sizeof(pt) + 16];
	unsigned long long clen;
	struct proto_cipher *c;
	struct blob out48;
	int i, rc, ok = 0;

	if (!jhexn(t, "key", key, 32) || !jhexn(t, "rekeyed_key", newkey, 32) ||
	    !jhex(t, "encrypt_output_48", &out48))
		return (0);
	noise_nonce(nonce, UINT64_MAX);
	crypto_aead_aes256gcm_encrypt(got, &clen, zero32, 32, NULL, 0, NULL,
	    nonce, key);
	if (!same("ENCRYPT(k, 2^64-1, 32 zero bytes)", got, (size_t)clen,
	    out48.b, out48.len) ||
	    !same("rekeyed_key", got, 32, newkey, 32))
		return (0);
	if ((c = cipher(key, 0)) == NULL)
		return (0);
	for (i = 0; i < 2; i++)
		if (!seal_copy(c, pkt, "x", 1))
			goto done;
	if ((rc = proto_cipher_rekey(c)) != 0) {
		why("proto_cipher_rekey: %s", proto_strerror(rc));
		goto done;
	}
	if (proto_cipher_nonce(c) != 2) {
		why("counter is %llu after rekey, want 2",
		    (unsigned long long)proto_cipher_nonce(c));
		goto done;
	}
	if (!seal_copy(c, pkt, pt, len))
		goto done;
	noise_nonce(nonce, 2);
	crypto_aead_aes256gcm_encrypt(want, &clen, (const uint8_t *)pt, len,
	    NULL, 0, NULL, nonce, newkey);
	ok = packet_is(pkt, nonce, want, len, want + len);
done:
	proto_cipher_free(c);
	return (ok);
}

/*
 * The rekey[] entries, from first on, chain: rekeying n times reaches
 * entry n's key.
 */
static int
rekey_chain(const struct json *first, size_t *n, uint8_t *pkt)
{
	const struct json *t;
	struct proto_cipher *c = NULL;
	uint8_t key[32], want[32 + 16], nonce[PROTO_NONCEBYTES];
	unsigned long long clen;
	int ok = 0;

	*n = 0;
	for (t = first; t != NULL; t = t->next) {
		if (c == NULL) {
			if (!jhexn(t, "key", key, 32) ||
			    (c = cipher(key, 0)) == NULL)
				return (0);
		}
		if (!jhexn(t, "rekeyed_key", key, 32) ||
		    proto_cipher_rekey(c) != 0)
			goto done;
		(*n)++;
	}
	if (c == NULL)
		return (why("no entries"));
	if (!seal_copy(c, pkt, zero32, 32))
		goto done;
	/* Rekeying leaves the counter alone: nothing was sealed yet. */
	noise_nonce(nonce, 0);
	crypto_aead_aes256gcm_encrypt(want, &clen, zero32, 32, NULL, 0,
	    NULL, nonce, key);
	ok = packet_is(pkt, nonce, want, 32, want + 32);
done:
	proto_cipher_free(c);
	return (ok);
}

/*
 * One encrypt[] entry.  The vector is checked with libsodium under its
 * nonce96, and nonce96 against the layout the other checks here assume.
 * For a small counter proto_seal is driven there by sealing n packets
 * first; its nonce and ciphertext must match the vector (GCM's ciphertext
 * does not depend on the ad) and its tag the one computed here for the
 * empty ad proto uses (the vector's ad is not empty).  *via_proto says
 * whether proto_seal was checked.
 */
static int
nonce_one(const struct json *t, uint8_t *pkt, int *via_proto)
{
	uint8_t key[32], nonce96[PROTO_NONCEBYTES], nonce[PROTO_NONCEBYTES];
	uint8_t tag[PROTO_TAGBYTES];
	struct blob ad, pt, ct, out;
	unsigned long long clen;
	struct proto_cipher *c;
	uint64_t n, i;
	int ok = 0;

	*via_proto = 0;
	if (!ju64(t, "n", &n) || !jhexn(t, "key", key, 32) ||
	    !jhexn(t, "nonce96", nonce96, PROTO_NONCEBYTES) ||
	    !jhex(t, "ad", &ad) || !jhex(t, "plaintext", &pt) ||
	    !jhex(t, "ciphertext", &ct))
		return (0);
	if (pt.len > PROTO_MAXPLAIN || pt.len + 16 > sizeof(out.b))
		return (why("plaintext too long"));
	noise_nonce(nonce, n);
	if (!same("nonce96", nonce, PROTO_NONCEBYTES, nonce96,
	    PROTO_NONCEBYTES))
		return (0);
	crypto_aead_aes256gcm_encrypt(out.b, &clen, pt.b, pt.len, ad.b, ad.len,
	    NULL, nonce96, key);
	if (!same("ciphertext (libsodium, vector's ad)", out.b, (size_t)clen,
	    ct.b, ct.len))
		return (0);
	if (n >= SMALL_N)
		return (1);
	*via_proto = 1;
	if ((c = cipher(key, 0)) == NULL)
		return (0);
	for (i = 0; i < n; i++)
		if (!seal_copy(c, pkt, "x", 1))
			goto done;
	if (!seal_copy(c, pkt, pt.b, pt.len))
		goto done;
	/* The tag for the empty ad proto uses. */
	crypto_aead_aes256gcm_encrypt_detached(out.b, tag, NULL, pt.b, pt.len,
	    NULL, 0, NULL, nonce96, key);
	ok = packet_is(pkt, nonce96, ct.b, pt.len, tag);
done:
	proto_cipher_free(c);
	return (ok);
}

static void
test_noise_local(const char *dir)
{
	struct json *root;
	const struct json *rekeys, *t;
	uint8_t *pkt;
	size_t n;
	int ok, via;

	if ((root = load(dir, "noise_aesgcm_cipher_local.json")) == NULL)
		return;
	pkt = xmalloc(PROTO_MAXPKT);
	rekeys = entries(root, "rekey", "noise rekey");
	for (t = rekeys; t != NULL; t = t->next)
		report(rekey_one(t, pkt), "noise %s: proto_cipher_rekey gives "
		    "rekeyed_key, the counter carries on", test_id(t));
	if (rekeys != NULL) {
		ok = rekey_chain(rekeys, &n, pkt);
		report(ok, "noise rekey chain: %zu proto_cipher_rekey calls in "
		    "a row", n);
	}
	for (t = entries(root, "encrypt", "noise encrypt"); t != NULL;
	    t = t->next) {
		ok = nonce_one(t, pkt, &via);
		if (via)
			report(ok, "noise %s via proto_seal: nonce, ciphertext, "
			    "tag", test_id(t));
		else
			report(ok, "noise %s: nonce layout and vector (libsodium "
			    "only: proto_seal cannot reach this counter)",
			    test_id(t));
	}
	free(pkt);
	jfree(root);
}

/* Transport: proto_seal, proto_open and friends. */

/* Seal a short packet with tx and open it with rx. */
static int
send_one(struct proto_cipher *tx, struct proto_cipher *rx)
{
	static const char msg[] = "\x00hello";
	uint8_t pkt[PROTO_HDRBYTES + sizeof(msg)];

	return (seal_copy(tx, pkt, msg, sizeof(msg)) &&
	    open_same(rx, pkt, sizeof(pkt), msg, sizeof(msg)));
}

/* Seal and open one packet of len random bytes between fresh ciphers. */
static int
roundtrip(int classic, size_t len, uint8_t *pkt, uint8_t *pt)
{
	struct proto_cipher *tx, *rx;
	size_t plen = 0;
	int rc, ok = 0;

	randombytes_buf(pt, len);
	if (!cipher_pair(classic, &tx, &rx) || !seal_copy(tx, pkt, pt, len))
		goto done;
	if (len >= 16 && memcmp(pkt + PROTO_HDRBYTES, pt, len) == 0) {
		why("the plaintext was not encrypted");
		goto done;
	}
	if ((rc = proto_open_len(rx, pkt, &plen)) != 0 ||
	    plen != PROTO_NONCEBYTES + PROTO_TAGBYTES + len) {
		why("proto_open_len: %s, length %zu", proto_strerror(rc), plen);
		goto done;
	}
	if (!open_same(rx, pkt, PROTO_HDRBYTES + len, pt, len))
		goto done;
	if (proto_cipher_nonce(tx) != 1 || proto_cipher_nonce(rx) != 1)
		why("the counters did not advance to 1");
	else
		ok = 1;
done:
	proto_cipher_free(tx);
	proto_cipher_free(rx);
	return (ok);
}

/* A plaintext over PROTO_MAXPLAIN is refused and uses no nonce. */
static int
seal_too_long(int classic, uint8_t *pkt)
{
	uint8_t key[32];
	struct proto_cipher *c;
	int rc, ok = 0;

	randombytes_buf(key, sizeof(key));
	if ((c = cipher(key, classic)) == NULL)
		return (0);
	if ((rc = proto_seal(c, pkt, PROTO_MAXPLAIN + 1)) != PROTO_EBADLEN)
		why("got %s, want EBADLEN", proto_strerror(rc));
	else if (proto_cipher_nonce(c) != 0)
		why("the counter advanced");
	else
		ok = 1;
	proto_cipher_free(c);
	return (ok);
}

/* Default nonces are the Noise nonces of 0, 1, 2; classic ones random. */
static int
nonces(int classic)
{
	uint8_t key[32], want[PROTO_NONCEBYTES], seen[3][PROTO_NONCEBYTES];
	uint8_t pkt[PROTO_HDRBYTES + 4];
	struct proto_cipher *c;
	int i, j, ok = 0;

	randombytes_buf(key, sizeof(key));
	if ((c = cipher(key, classic)) == NULL)
		return (0);
	for (i = 0; i < 3; i++) {
		if (!seal_copy(c, pkt, "same", 4))
			goto done;
		memcpy(seen[i], pkt + PROTO_LENBYTES, PROTO_NONCEBYTES);
		noise_nonce(want, (uint64_t)i);
		if (!classic && !same("nonce", seen[i], PROTO_NONCEBYTES, want,
		    PROTO_NONCEBYTES))
			goto done;
		for (j = 0; classic && j < i; j++)
			if (memcmp(seen[i], seen[j], PROTO_NONCEBYTES) == 0) {
				why("nonce %d repeats nonce %d", i, j);
				goto done;
			}
	}
	ok = 1;
done:
	proto_cipher_free(c);
	return (ok);
}

/*
 * proto_open_len bounds: default packets are 29 to 65564 bytes after the
 * prefix (a type byte is always there), classic ones 28 to 65564.  And
 * proto_open refuses a packet shorter than a prefix, or whose prefix
 * disagrees with its length, before anything else.
 */
static int
open_len_bounds(int classic)
{
	static const uint32_t bad[] = { 0, 27, 28, 65565, 0xffffffff };
	static const uint32_t good[] = { 28, 29, 65564 };
	uint8_t prefix[PROTO_LENBYTES], pkt[PROTO_HDRBYTES + 2];
	struct proto_cipher *tx, *rx;
	size_t i, len, ptlen;
	int rc, ok = 0;

	if (!cipher_pair(classic, &tx, &rx))
		goto done;
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		if (classic && bad[i] == 28)
			continue;
		store32_be(prefix, bad[i]);
		if ((rc = proto_open_len(rx, prefix, &len)) != PROTO_EBADLEN) {
			why("length %lu: got %s, want EBADLEN",
			    (unsigned long)bad[i], proto_strerror(rc));
			goto done;
		}
	}
	for (i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
		if (!classic && good[i] == 28)
			continue;
		store32_be(prefix, good[i]);
		len = 0;
		if ((rc = proto_open_len(rx, prefix, &len)) != 0 ||
		    len != good[i]) {
			why("length %lu: got %s and %zu",
			    (unsigned long)good[i], proto_strerror(rc), len);
			goto done;
		}
	}
	if (!seal_copy(tx, pkt, "ab", 2))
		goto done;
	for (i = 0; i < PROTO_LENBYTES; i++)
		if ((rc = proto_open(rx, pkt, i, &ptlen)) != PROTO_EBADLEN) {
			why("a %zu-byte packet: got %s, want EBADLEN", i,
			    proto_strerror(rc));
			goto done;
		}
	if ((rc = proto_open(rx, pkt, sizeof(pkt) - 1, &ptlen)) !=
	    PROTO_EBADLEN) {
		why("a packet one byte short of its prefix: got %s",
		    proto_strerror(rc));
		goto done;
	}
	if (!(ok = open_same(rx, pkt, sizeof(pkt), "ab", 2)))
		why_in("the whole packet then");
done:
	proto_cipher_free(tx);
	proto_cipher_free(rx);
	return (ok);
}

/*
 * Flip every bit of a sealed 132-byte packet in turn.  proto_open must
 * refuse each with the code for the field hit (length: EBADLEN; nonce:
 * EBADNONCE, or EBADTAG in classic, which checks no nonces; tag and
 * ciphertext: EBADTAG), stay at counter 0, and leave no plaintext: the
 * body is then either the bytes as they came or zeros.
 */
static int
bitflips(int classic, size_t *nflips)
{
	enum { LEN = 100, PKTLEN = PROTO_HDRBYTES + LEN };
	uint8_t pt[LEN], pkt[PKTLEN], work[PKTLEN], sent[PKTLEN];
	struct proto_cipher *tx, *rx;
	size_t i, ptlen;
	int bit, rc, want, ok = 0;

	*nflips = 0;
	randombytes_buf(pt, sizeof(pt));
	if (!cipher_pair(classic, &tx, &rx) || !seal_copy(tx, pkt, pt, LEN))
		goto done;
	for (i = 0; i < PKTLEN; i++) {
		if (i < PROTO_LENBYTES)
			want = PROTO_EBADLEN;
		else if (i < PROTO_LENBYTES + PROTO_NONCEBYTES)
			want = classic ? PROTO_EBADTAG : PROTO_EBADNONCE;
		else
			want = PROTO_EBADTAG;
		for (bit = 0; bit < 8; bit++) {
			memcpy(work, pkt, PKTLEN);
			work[i] ^= (uint8_t)(1 << bit);
			memcpy(sent, work, PKTLEN);
			if ((rc = proto_open(rx, work, PKTLEN, &ptlen)) !=
			    want) {
				why("byte %zu bit %d: got %s, want %s", i, bit,
				    proto_strerror(rc), proto_strerror(want));
				goto done;
			}
			if (proto_cipher_nonce(rx) != 0) {
				why("byte %zu bit %d: the counter advanced", i,
				    bit);
				goto done;
			}
			if (memcmp(work + PROTO_HDRBYTES,
			    sent + PROTO_HDRBYTES, LEN) != 0 &&
			    !sodium_is_zero(work + PROTO_HDRBYTES, LEN)) {
				why("byte %zu bit %d: the body is neither the "
				    "ciphertext nor zeros", i, bit);
				goto done;
			}
			(*nflips)++;
		}
	}
	/* The packet as sealed still opens: the refusals were not luck. */
	if (!(ok = open_same(rx, pkt, PKTLEN, pt, LEN)))
		why_in("the unchanged packet");
done:
	proto_cipher_free(tx);
	proto_cipher_free(rx);
	return (ok);
}

/* Seal n short default packets with a fresh cipher; rx gets the key. */
static int
seal_some(struct proto_cipher **tx, struct proto_cipher **rx,
    uint8_t pkt[][PROTO_HDRBYTES + 6], int n)
{
	int i;

	if (!cipher_pair(0, tx, rx))
		return (0);
	for (i = 0; i < n; i++)
		if (!seal_copy(*tx, pkt[i], "\x00pkt-", 6))
			return (0);
	return (1);
}

/* Open a copy of pkt with rx and compare the code with want. */
static int
open_copy(struct proto_cipher *rx, const uint8_t pkt[PROTO_HDRBYTES + 6],
    int want, const char *what)
{
	uint8_t work[PROTO_HDRBYTES + 6];
	size_t ptlen;
	int rc;

	memcpy(work, pkt, sizeof(work));
	if ((rc = proto_open(rx, work, sizeof(work), &ptlen)) != want)
		return (why("%s: got %s, want %s", what, proto_strerror(rc),
		    proto_strerror(want)));
	return (1);
}

/* An accepted packet replayed: EBADNONCE; the stream goes on. */
static int
replay(void)
{
	uint8_t pkt[2][PROTO_HDRBYTES + 6];
	struct proto_cipher *tx, *rx;
	int ok;

	ok = seal_some(&tx, &rx, pkt, 2) &&
	    open_copy(rx, pkt[0], 0, "packet 0") &&
	    open_copy(rx, pkt[0], PROTO_EBADNONCE, "packet 0 again") &&
	    open_copy(rx, pkt[1], 0, "packet 1") &&
	    open_copy(rx, pkt[1], PROTO_EBADNONCE, "packet 1 again") &&
	    open_copy(rx, pkt[0], PROTO_EBADNONCE, "packet 0 a third time");
	proto_cipher_free(tx);
	proto_cipher_free(rx);
	return (ok);
}

/* Packet 1 before 0, or 2 before 1 (a drop): EBADNONCE, no harm done. */
static int
reorder(void)
{
	uint8_t pkt[3][PROTO_HDRBYTES + 6];
	struct proto_cipher *tx, *rx;
	int ok;

	ok = seal_some(&tx, &rx, pkt, 3) &&
	    open_copy(rx, pkt[1], PROTO_EBADNONCE, "packet 1 first") &&
	    open_copy(rx, pkt[0], 0, "packet 0") &&
	    open_copy(rx, pkt[2], PROTO_EBADNONCE, "packet 2 before 1") &&
	    open_copy(rx, pkt[1], 0, "packet 1") &&
	    open_copy(rx, pkt[2], 0, "packet 2");
	proto_cipher_free(tx);
	proto_cipher_free(rx);
	return (ok);
}

/*
 * Both sides rekey after packet 2: the stream carries on with counter 3,
 * under a key that is no longer the old one.
 */
static int
rekey_both(void)
{
	static const char msg[] = "\x00" "data";
	uint8_t key[32], pkt[PROTO_HDRBYTES + 5], old[PROTO_HDRBYTES + 5];
	uint8_t want[PROTO_NONCEBYTES];
	struct proto_cipher *tx = NULL, *rx = NULL, *stale = NULL;
	int i, rc, ok = 0;

	randombytes_buf(key, sizeof(key));
	if ((tx = cipher(key, 0)) == NULL || (rx = cipher(key, 0)) == NULL ||
	    (stale = cipher(key, 0)) == NULL)
		goto done;
	for (i = 0; i < 3; i++)
		if (!send_one(tx, rx) || !seal_copy(stale, old, msg, 5))
			goto done;
	if ((rc = proto_cipher_rekey(tx)) != 0 ||
	    (rc = proto_cipher_rekey(rx)) != 0) {
		why("proto_cipher_rekey: %s", proto_strerror(rc));
		goto done;
	}
	if (!seal_copy(tx, pkt, msg, 5) || !seal_copy(stale, old, msg, 5))
		goto done;
	noise_nonce(want, 3);
	if (!same("nonce after rekey", pkt + PROTO_LENBYTES, PROTO_NONCEBYTES,
	    want, PROTO_NONCEBYTES))
		goto done;
	if (memcmp(pkt, old, sizeof(pkt)) == 0) {
		why("the packet is the same as under the old key");
		goto done;
	}
	if (!open_same(rx, pkt, sizeof(pkt), msg, 5)) {
		why_in("after rekey");
		goto done;
	}
	ok = send_one(tx, rx) && send_one(tx, rx);
done:
	proto_cipher_free(tx);
	proto_cipher_free(rx);
	proto_cipher_free(stale);
	return (ok);
}

/*
 * Only the sender rekeys: the receiver refuses with EBADTAG and keeps its
 * counter; once it rekeys too, the same packet opens.
 */
static int
rekey_one_side(void)
{
	uint8_t pkt[PROTO_HDRBYTES + 6];
	struct proto_cipher *tx, *rx;
	int ok = 0;

	if (!cipher_pair(0, &tx, &rx) || !send_one(tx, rx))
		goto done;
	if (proto_cipher_rekey(tx) != 0) {
		why("proto_cipher_rekey failed");
		goto done;
	}
	if (!seal_copy(tx, pkt, "\x00pkt-", 6) ||
	    !open_copy(rx, pkt, PROTO_EBADTAG, "receiver not rekeyed"))
		goto done;
	if (proto_cipher_nonce(rx) != 1) {
		why("the receiver's counter moved");
		goto done;
	}
	if (proto_cipher_rekey(rx) != 0) {
		why("proto_cipher_rekey failed");
		goto done;
	}
	ok = open_copy(rx, pkt, 0, "receiver rekeyed too");
done:
	proto_cipher_free(tx);
	proto_cipher_free(rx);
	return (ok);
}

/* Due by time: not right after keying, nor just before PROTO_REKEY_MS. */
static int
rekey_due_time(void)
{
	uint8_t key[32];
	struct proto_cipher *c;
	int64_t now;
	int ok = 0;

	randombytes_buf(key, sizeof(key));
	if ((c = cipher(key, 0)) == NULL)
		return (0);
	now = proto_now_ms();
	if (proto_cipher_rekey_due(c, now))
		why("due right after proto_cipher_new");
	else if (proto_cipher_rekey_due(c, now + PROTO_REKEY_MS - 1000))
		why("due a second before PROTO_REKEY_MS");
	else if (!proto_cipher_rekey_due(c, now + PROTO_REKEY_MS))
		why("not due at PROTO_REKEY_MS");
	else
		ok = 1;
	proto_cipher_free(c);
	return (ok);
}

/*
 * Due by volume: seal PROTO_REKEY_BYTES (16384 full packets, 1 GiB) for
 * real; not due one packet before, due after, and not after a rekey.
 */
static int
rekey_due_bytes(uint8_t *pkt, double *secs)
{
	const uint64_t n = PROTO_REKEY_BYTES / PROTO_MAXPLAIN;
	uint8_t key[32];
	struct proto_cipher *c;
	int64_t t0;
	uint64_t i;
	int rc, ok = 0;

	randombytes_buf(key, sizeof(key));
	memset(pkt, 0, PROTO_MAXPKT);
	/*
	 * Asked at t0, taken before keying, the time rule never holds, so
	 * only the byte count can make it due, however slow the sealing
	 * (under a memory checker it takes minutes).
	 */
	t0 = proto_now_ms();
	if ((c = cipher(key, 0)) == NULL)
		return (0);
	for (i = 0; i < n; i++) {
		if (i == n - 1 && proto_cipher_rekey_due(c, t0)) {
			why("due after %llu bytes", (unsigned long long)
			    (i * PROTO_MAXPLAIN));
			goto done;
		}
		/* Sealing in place re-encrypts the last packet: any bytes do. */
		if ((rc = proto_seal(c, pkt, PROTO_MAXPLAIN)) != 0) {
			why("proto_seal: %s", proto_strerror(rc));
			goto done;
		}
	}
	if (!proto_cipher_rekey_due(c, t0))
		why("not due after PROTO_REKEY_BYTES");
	else if (proto_cipher_rekey(c) != 0 || proto_cipher_rekey_due(c, t0))
		why("still due after a rekey");
	else
		ok = 1;
done:
	*secs = (double)(proto_now_ms() - t0) / 1000;
	proto_cipher_free(c);
	return (ok);
}

static void
test_transport(void)
{
	static const size_t sizes[] = { 0, 1, 100, PROTO_MAXPLAIN };
	const char *mode;
	uint8_t *pkt = xmalloc(PROTO_MAXPKT), *pt = xmalloc(PROTO_MAXPLAIN);
	size_t i, n;
	double secs = 0;
	int classic, ok;

	for (classic = 1; classic >= 0; classic--) {
		mode = classic ? "classic" : "default";
		for (i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
			/* Default packets always hold a type byte. */
			if (!classic && sizes[i] == 0)
				continue;
			report(roundtrip(classic, sizes[i], pkt, pt),
			    "transport %s: round trip of %zu bytes", mode,
			    sizes[i]);
		}
		report(seal_too_long(classic, pkt), "transport %s: sealing %d "
		    "bytes gives EBADLEN", mode, PROTO_MAXPLAIN + 1);
		report(nonces(classic), "transport %s: %s", mode, classic ?
		    "nonces are random (3 differ)" :
		    "nonces are the Noise nonces of 0, 1, 2");
		report(open_len_bounds(classic), "transport %s: proto_open_len "
		    "refuses 0, 27,%s 65565, 0xffffffff; accepts %s65564; "
		    "proto_open refuses lengths that disagree", mode,
		    classic ? "" : " 28,", classic ? "28, 29, " : "29, ");
		ok = bitflips(classic, &n);
		report(ok, "transport %s: all %zu single-bit "
		    "flips refused with the field's code, no plaintext left",
		    mode, n);
	}
	report(replay(), "transport default: a replayed packet gives "
	    "EBADNONCE");
	report(reorder(), "transport default: reordered or dropped packets "
	    "give EBADNONCE");
	report(rekey_both(), "transport default: rekey on both sides keeps "
	    "the stream working");
	report(rekey_one_side(), "transport default: rekey on one side only "
	    "gives EBADTAG");
	report(rekey_due_time(), "transport default: rekey due by time");
	ok = rekey_due_bytes(pkt, &secs);
	report(ok, "transport default: rekey due "
	    "after PROTO_REKEY_BYTES sealed, not before");
	fprintf(stderr, "note: sealing 1 GiB took %.2f s\n", secs);
	free(pkt);
	free(pt);
}

/* Handshakes in memory. */

/* Two handshakes and the message in flight between them. */
struct pair {
	int classic;
	int empty;			/* send empty payloads, not names */
	const uint8_t *psk[2];
	const uint8_t *e[2];
	struct proto_hs *hs[2];		/* [0] connector, [1] listener */
	int step;			/* messages delivered */
	int writer;			/* side that wrote msg */
	uint8_t msg[PROTO_MAXHSMSG];
	size_t msglen;
	uint8_t payload[PROTO_MAXHSMSG];
	size_t plen;
};

static struct pair *
pair_new(int classic, const uint8_t *psk0, const uint8_t *psk1)
{
	struct pair *p = xmalloc(sizeof(*p));

	memset(p, 0, sizeof(*p));
	p->classic = classic;
	p->psk[0] = psk0;
	p->psk[1] = psk1;
	return (p);
}

static void
pair_free(struct pair *p)
{

	if (p == NULL)
		return;
	proto_hs_free(p->hs[0]);
	proto_hs_free(p->hs[1]);
	free(p);
}

/* Create both handshakes with the test static keys. */
static int
pair_start(struct pair *p)
{
	struct proto_hs_params hp;
	int i;

	for (i = 0; i < 2; i++) {
		memset(&hp, 0, sizeof(hp));
		hp.initiator = (i == 0);
		hp.classic = p->classic;
		hp.s = p->classic ? NULL : statics[i];
		hp.psk = p->psk[i];
		hp.e = p->e[i];
		if ((p->hs[i] = proto_hs_new(&hp)) == NULL)
			return (why("proto_hs_new: %s", strerror(errno)));
	}
	return (1);
}

/* The payload of the next message. */
static const char *
pair_payload(const struct pair *p)
{

	return (p->classic || p->empty || p->step > 2 ? "" : names[p->step]);
}

/* The side whose turn it is writes the next message. */
static int
pair_write(struct pair *p)
{
	const char *pl = pair_payload(p);

	if (proto_hs_next(p->hs[0]) == PROTO_HS_WRITE)
		p->writer = 0;
	else if (proto_hs_next(p->hs[1]) == PROTO_HS_WRITE)
		p->writer = 1;
	else
		return (PROTO_ESTATE);
	return (proto_hs_write(p->hs[p->writer], (const uint8_t *)pl,
	    strlen(pl), p->msg, &p->msglen));
}

/* The other side reads the message in flight. */
static int
pair_read(struct pair *p)
{
	int rc;

	rc = proto_hs_read(p->hs[1 - p->writer], p->msg, p->msglen,
	    p->payload, &p->plen);
	if (rc == 0)
		p->step++;
	return (rc);
}

/* Deliver messages unchanged until n have gone, checking payloads. */
static int
pair_run(struct pair *p, int n)
{
	const char *pl;
	int rc;

	while (p->step < n) {
		pl = pair_payload(p);
		if ((rc = pair_write(p)) != 0)
			return (why("message %d: write: %s", p->step + 1,
			    proto_strerror(rc)));
		if ((rc = pair_read(p)) != 0)
			return (why("message %d: read: %s", p->step + 1,
			    proto_strerror(rc)));
		if (!same("payload", p->payload, p->plen,
		    (const uint8_t *)pl, strlen(pl)))
			return (0);
	}
	return (1);
}

/*
 * Start p, deliver the messages before msgno unchanged, and have msgno
 * written: it is then in flight in p->msg, unread.
 */
static int
pair_upto(struct pair *p, int msgno)
{
	int rc;

	if (!pair_start(p) || !pair_run(p, msgno - 1))
		return (0);
	if ((rc = pair_write(p)) != 0)
		return (why("message %d: write: %s", msgno,
		    proto_strerror(rc)));
	return (1);
}

/*
 * A step of side gave rc: return 1 if that is the code want and side is
 * failed after it; else say why and return 0.
 */
static int
hs_failed(const struct pair *p, int side, int rc, int want)
{

	if (rc != want)
		return (why("got %s, want %s", proto_strerror(rc),
		    proto_strerror(want)));
	if (proto_hs_next(p->hs[side]) != PROTO_HS_FAILED)
		return (why("side %d is not failed afterwards", side));
	return (1);
}

/* Does each side i of p know the other's public key, keys[1 - i]? */
static int
pair_knows(const struct pair *p, uint8_t keys[2][PROTO_KEYBYTES])
{
	const uint8_t *rs;
	int i;

	for (i = 0; i < 2; i++) {
		rs = proto_hs_remote_static(p->hs[i]);
		if (rs == NULL || memcmp(rs, keys[1 - i], PROTO_KEYBYTES) != 0)
			return (why("side %d does not know the other's key",
			    i));
	}
	return (1);
}

/*
 * Splitting hs must give ESTATE and set *tx and *rx to NULL, whatever
 * they held (the caller frees what they hold after).
 */
static int
split_refused(struct proto_hs *hs, struct proto_cipher **tx,
    struct proto_cipher **rx, const char *when)
{
	int rc;

	rc = proto_hs_split(hs, tx, rx);
	if (rc != PROTO_ESTATE || *tx != NULL || *rx != NULL)
		return (why("split %s gave %s%s", when, proto_strerror(rc),
		    rc == PROTO_ESTATE ? " but ciphers" : ""));
	return (1);
}

/* Run the whole handshake and split both sides. */
static int
pair_split(struct pair *p, struct proto_cipher *tx[2],
    struct proto_cipher *rx[2])
{
	int i, rc;

	tx[0] = tx[1] = rx[0] = rx[1] = NULL;
	if (!pair_start(p) || !pair_run(p, p->classic ? 2 : 3))
		return (0);
	for (i = 0; i < 2; i++) {
		if (proto_hs_next(p->hs[i]) != PROTO_HS_DONE)
			return (why("side %d is not done", i));
		if ((rc = proto_hs_split(p->hs[i], &tx[i], &rx[i])) != 0)
			return (why("proto_hs_split: %s", proto_strerror(rc)));
	}
	return (1);
}

static void
ciphers_free(struct proto_cipher *tx[2], struct proto_cipher *rx[2])
{
	int i;

	for (i = 0; i < 2; i++) {
		proto_cipher_free(tx[i]);
		proto_cipher_free(rx[i]);
	}
}

/*
 * Classic: the listener speaks first; both end with the X25519 secret of
 * the two ephemeral keys (computed here too), each knows the other's key,
 * and the split ciphers use the one key HKDF-SHA256(secret, no salt,
 * "handshake data") in both directions.
 */
static int
hs_classic(void)
{
	uint8_t e[2][32], epub[2][32], secret[32], prk[32], key[32];
	struct proto_cipher *tx[2], *rx[2], *ref = NULL;
	struct pair *p = pair_new(1, NULL, NULL);
	int i, ok = 0;

	for (i = 0; i < 2; i++) {
		randombytes_buf(e[i], 32);
		crypto_scalarmult_base(epub[i], e[i]);
		p->e[i] = e[i];
	}
	tx[0] = tx[1] = rx[0] = rx[1] = NULL;
	if (!pair_start(p))
		goto done;
	if (proto_hs_next(p->hs[1]) != PROTO_HS_WRITE ||
	    proto_hs_next(p->hs[0]) != PROTO_HS_READ) {
		why("the listener does not write first");
		goto done;
	}
	/* The listener learns the connector's key only from message 2. */
	if (!pair_run(p, 1))
		goto done;
	if (proto_hs_remote_static(p->hs[1]) != NULL) {
		why("the listener has a peer key before message 2");
		goto done;
	}
	if (!pair_run(p, 2) || !pair_knows(p, epub))
		goto done;
	if (crypto_scalarmult(secret, e[0], epub[1]) != 0) {
		why("random keys gave a zero secret");
		goto done;
	}
	for (i = 0; i < 2; i++) {
		if (proto_hs_next(p->hs[i]) != PROTO_HS_DONE ||
		    !same("shared secret", proto_hs_hash(p->hs[i]), 32, secret,
		    32))
			goto done;
		if (proto_hs_split(p->hs[i], &tx[i], &rx[i]) != 0) {
			why("proto_hs_split failed");
			goto done;
		}
	}
	if (crypto_kdf_hkdf_sha256_extract(prk, NULL, 0, secret, 32) != 0 ||
	    crypto_kdf_hkdf_sha256_expand(key, 32, "handshake data", 14,
	    prk) != 0 || (ref = cipher(key, 1)) == NULL)
		goto done;
	ok = send_one(tx[0], rx[1]) && send_one(tx[1], rx[0]) &&
	    send_one(tx[0], ref) && send_one(tx[1], ref);
done:
	ciphers_free(tx, rx);
	proto_cipher_free(ref);
	pair_free(p);
	return (ok);
}

/*
 * A low-order key in place of the public key that opens handshake message
 * msgno must fail its reader with ELOWORDER when it first computes with
 * it: as it reads message 2 (classic: the secret; noise: DH ee), or as it
 * writes message 2 after reading message 1.
 */
static int
hs_loworder(int classic, const uint8_t key[32], int msgno)
{
	struct pair *p = pair_new(classic, NULL, NULL);
	int rc, reader, ok = 0;

	if (!pair_upto(p, msgno))
		goto done;
	memcpy(p->msg, key, 32);
	reader = 1 - p->writer;
	rc = pair_read(p);
	if (msgno == 1) {
		if (rc != 0) {
			why("message 1: read: %s", proto_strerror(rc));
			goto done;
		}
		rc = pair_write(p);
	}
	ok = hs_failed(p, reader, rc, PROTO_ELOWORDER);
done:
	pair_free(p);
	return (ok);
}

/* Every low-order key libsodium refused in Wycheproof, and all zeros. */
static void
test_loworder(void)
{
	static const struct {
		int classic;
		int msgno;		/* the message that carries the key */
		const char *what;
	} kinds[4] = {
		{ 1, 2, "classic: the listener refuses a low-order key" },
		{ 1, 1, "classic: the connector refuses a low-order key" },
		{ 0, 1,
		    "noise: a low-order e in message 1 stops the responder" },
		{ 0, 2,
		    "noise: a low-order e in message 2 stops the initiator" },
	};
	size_t i;
	int kind, ok;

	for (kind = 0; kind < 4; kind++) {
		ok = 1;
		if (nloworder == 0)
			ok = why("no low-order keys were read from Wycheproof");
		for (i = 0; ok && i <= nloworder; i++) {
			const uint8_t *key = i < nloworder ? loworder[i] :
			    zero32;

			ok = hs_loworder(kinds[kind].classic, key,
			    kinds[kind].msgno);
			if (!ok && i < nloworder)
				why_in("a Wycheproof key");
			else if (!ok)
				why_in("the all-zero key");
		}
		report(ok, "handshake %s (%zu Wycheproof low-order keys and "
		    "the all-zero key): ELOWORDER", kinds[kind].what,
		    nloworder);
	}
}

/*
 * Noise XX, or XXpsk3 with psk: both sides done with the same hash and
 * session code, each knows the other's static key, and the split
 * ciphers work both ways.
 */
static int
hs_noise(const uint8_t *psk)
{
	struct pair *p = pair_new(0, psk, psk);
	struct proto_cipher *tx[2], *rx[2];
	char code[2][PROTO_CODELEN + 1];
	int i, ok = 0;

	if (!pair_split(p, tx, rx) || !pair_knows(p, staticpubs))
		goto done;
	for (i = 0; i < 2; i++)
		proto_session_code(code[i], proto_hs_hash(p->hs[i]));
	if (memcmp(proto_hs_hash(p->hs[0]), proto_hs_hash(p->hs[1]), 32) != 0 ||
	    strcmp(code[0], code[1]) != 0) {
		why("the handshake hashes or session codes differ");
		goto done;
	}
	ok = send_one(tx[0], rx[1]) && send_one(tx[1], rx[0]) &&
	    send_one(tx[0], rx[1]);
done:
	ciphers_free(tx, rx);
	pair_free(p);
	return (ok);
}

/*
 * A packet sealed with c1 is refused by the sender's own c2, and back
 * (both counters at 0, so only the key can tell); each packet then opens
 * where it was meant to go.
 */
static int
reflection(void)
{
	uint8_t pkt[2][PROTO_HDRBYTES + 6];
	struct pair *p = pair_new(0, NULL, NULL);
	struct proto_cipher *tx[2], *rx[2];
	int ok = 0;

	if (!pair_split(p, tx, rx) ||
	    !seal_copy(tx[0], pkt[0], "\x00pkt-", 6) ||
	    !seal_copy(tx[1], pkt[1], "\x00pkt-", 6))
		goto done;
	ok = open_copy(rx[0], pkt[0], PROTO_EBADTAG,
	    "side 0 opening its own packet") &&
	    open_copy(rx[1], pkt[1], PROTO_EBADTAG,
	    "side 1 opening its own packet") &&
	    open_copy(rx[1], pkt[0], 0, "side 0's packet at the other side") &&
	    open_copy(rx[0], pkt[1], 0, "side 1's packet at the other side") &&
	    send_one(tx[0], rx[1]) && send_one(tx[1], rx[0]);
done:
	ciphers_free(tx, rx);
	pair_free(p);
	return (ok);
}

/* PSKs that differ: messages 1 and 2 go, the responder refuses 3. */
static int
hs_psk_mismatch(void)
{
	uint8_t a[32], b[32];
	struct pair *p;
	int rc, ok = 0;

	randombytes_buf(a, sizeof(a));
	randombytes_buf(b, sizeof(b));
	p = pair_new(0, a, b);
	if (!pair_upto(p, 3))
		goto done;
	rc = pair_read(p);
	if (!hs_failed(p, 1, rc, PROTO_EBADTAG))
		why_in("message 3");
	else if (p->plen != 0)
		why("the responder kept a payload");
	else
		ok = 1;
done:
	pair_free(p);
	return (ok);
}

/* A PSK on one side only: the handshake fails before both are done. */
static int
hs_psk_one_side(int side, int *code)
{
	uint8_t psk[32];
	struct pair *p;
	int rc = 0, ok = 0;

	randombytes_buf(psk, sizeof(psk));
	p = pair_new(0, side == 0 ? psk : NULL, side == 1 ? psk : NULL);
	*code = 0;
	if (!pair_start(p))
		goto done;
	while (p->step < 3) {
		if ((rc = pair_write(p)) != 0 || (rc = pair_read(p)) != 0)
			break;
	}
	if (p->step == 3)
		why("the handshake completed");
	else if (proto_hs_next(p->hs[0]) != PROTO_HS_FAILED &&
	    proto_hs_next(p->hs[1]) != PROTO_HS_FAILED)
		why("no side is failed");
	else {
		*code = rc;
		ok = 1;
	}
done:
	pair_free(p);
	return (ok);
}

/*
 * Return the length of handshake message msgno between fresh peers with
 * psk on both sides (and empty payloads if empty); 0, with why, if it
 * cannot be written.
 */
static size_t
hs_msglen(int classic, const uint8_t *psk, int empty, int msgno)
{
	struct pair *p = pair_new(classic, psk, psk);
	size_t len = 0;

	p->empty = empty;
	if (pair_upto(p, msgno))
		len = p->msglen;
	pair_free(p);
	return (len);
}

/*
 * Flip bit i % 8 of byte i of handshake message msgno: the reader must
 * refuse it, be failed, keep no payload and refuse to split.  Count its
 * code in codes: [0] EBADTAG, [1] ELOWORDER, [2] any other.
 */
static int
hs_flip(int msgno, const uint8_t *psk, size_t i, size_t codes[3])
{
	struct proto_cipher *tx = NULL, *rx = NULL;
	struct pair *p = pair_new(0, psk, psk);
	char when[48];
	int code, reader, ok = 0;

	if (!pair_upto(p, msgno))
		goto done;
	if (i >= p->msglen) {
		why("byte %zu: message %d is %zu bytes", i, msgno, p->msglen);
		goto done;
	}
	p->msg[i] ^= (uint8_t)(1 << (i % 8));
	reader = 1 - p->writer;
	if ((code = pair_read(p)) == 0) {
		why("byte %zu: accepted", i);
		goto done;
	}
	if (proto_hs_next(p->hs[reader]) != PROTO_HS_FAILED || p->plen != 0) {
		why("byte %zu: the reader is not failed, or kept a payload", i);
		goto done;
	}
	snprintf(when, sizeof(when), "after a flip in byte %zu", i);
	ok = split_refused(p->hs[reader], &tx, &rx, when);
	proto_cipher_free(tx);
	proto_cipher_free(rx);
	if (ok)
		codes[code == PROTO_EBADTAG ? 0 :
		    code == PROTO_ELOWORDER ? 1 : 2]++;
done:
	pair_free(p);
	return (ok);
}

/*
 * Flip one bit in each byte of handshake message msgno (2 or 3) in turn,
 * a different bit position from byte to byte, as hs_flip says.  *nbytes
 * gets the message's length.
 */
static int
hs_flips(int msgno, const uint8_t *psk, size_t *nbytes, size_t codes[3])
{
	size_t i;
	int ok;

	codes[0] = codes[1] = codes[2] = 0;
	*nbytes = hs_msglen(0, psk, 0, msgno);
	ok = *nbytes > 0;
	for (i = 0; ok && i < *nbytes; i++)
		ok = hs_flip(msgno, psk, i, codes);
	return (ok);
}

/*
 * Give the reader handshake message msgno (empty payloads) cut, or padded
 * with zeros, to len bytes: it must refuse it with EBADMSG and be failed.
 */
static int
hs_cut(int classic, int msgno, const uint8_t *psk, size_t len)
{
	struct pair *p = pair_new(classic, psk, psk);
	char where[32];
	int rc, reader, ok = 0;

	p->empty = 1;
	if (!pair_upto(p, msgno))
		goto done;
	if (len > sizeof(p->msg)) {
		why("%zu bytes do not fit", len);
		goto done;
	}
	if (len > p->msglen)
		memset(p->msg + p->msglen, 0, len - p->msglen);
	p->msglen = len;
	reader = 1 - p->writer;
	rc = pair_read(p);
	if (!(ok = hs_failed(p, reader, rc, PROTO_EBADMSG))) {
		snprintf(where, sizeof(where), "%zu bytes", len);
		why_in(where);
	}
done:
	pair_free(p);
	return (ok);
}

/*
 * Cut message msgno to each shorter length in turn, as hs_cut says.
 * *full gets the message's whole length.
 */
static int
hs_truncs(int classic, int msgno, const uint8_t *psk, size_t *full)
{
	size_t len;
	int ok;

	*full = hs_msglen(classic, psk, 1, msgno);
	ok = *full > 0;
	for (len = 0; ok && len < *full; len++)
		ok = hs_cut(classic, msgno, psk, len);
	/* Classic keys are exactly 32 bytes: one more is no better. */
	if (ok && classic)
		ok = hs_cut(classic, msgno, psk, *full + 1);
	return (ok);
}

/* Calls out of turn give ESTATE; so does splitting before the end. */
static int
hs_states(void)
{
	struct proto_cipher *tx = NULL, *rx = NULL;
	struct proto_hs_params hp;
	struct proto_hs *hs;
	struct pair *p;
	int rc, ok = 0;

	/* At the start: the initiator cannot read, the responder write. */
	p = pair_new(0, NULL, NULL);
	if (!pair_start(p))
		goto done;
	if ((rc = proto_hs_read(p->hs[0], p->msg, 32, p->payload,
	    &p->plen)) != PROTO_ESTATE ||
	    (rc = proto_hs_write(p->hs[1], (const uint8_t *)"", 0, p->msg,
	    &p->msglen)) != PROTO_ESTATE) {
		why("a call out of turn gave %s", proto_strerror(rc));
		goto done;
	}
	pair_free(p);

	/* After message 1: neither side can split. */
	p = pair_new(0, NULL, NULL);
	if (!pair_start(p) || !pair_run(p, 1) ||
	    !split_refused(p->hs[0], &tx, &rx, "before the end") ||
	    !split_refused(p->hs[1], &tx, &rx, "before the end"))
		goto done;
	pair_free(p);

	/* Done: one split each; no second one, no more messages. */
	p = pair_new(0, NULL, NULL);
	if (!pair_start(p) || !pair_run(p, 3))
		goto done;
	if ((rc = proto_hs_split(p->hs[0], &tx, &rx)) != 0) {
		why("split: %s", proto_strerror(rc));
		goto done;
	}
	proto_cipher_free(tx);
	proto_cipher_free(rx);
	if (!split_refused(p->hs[0], &tx, &rx, "a second time"))
		goto done;
	if ((rc = proto_hs_write(p->hs[0], (const uint8_t *)"", 0, p->msg,
	    &p->msglen)) != PROTO_ESTATE ||
	    (rc = proto_hs_read(p->hs[1], p->msg, 64, p->payload,
	    &p->plen)) != PROTO_ESTATE) {
		why("after the end: got %s", proto_strerror(rc));
		goto done;
	}
	pair_free(p);

	/* Classic messages carry no payload. */
	p = pair_new(1, NULL, NULL);
	if (!pair_start(p))
		goto done;
	if ((rc = proto_hs_write(p->hs[1], (const uint8_t *)"x", 1, p->msg,
	    &p->msglen)) != PROTO_ESTATE) {
		why("classic write with a payload gave %s", proto_strerror(rc));
		goto done;
	}

	/* Noise needs a static key. */
	memset(&hp, 0, sizeof(hp));
	hp.initiator = 1;
	errno = 0;
	if ((hs = proto_hs_new(&hp)) != NULL || errno != EINVAL) {
		proto_hs_free(hs);
		why("proto_hs_new without a static key did not fail with "
		    "EINVAL");
		goto done;
	}
	ok = 1;
done:
	pair_free(p);
	return (ok);
}

/* The session code is "xxxx-xxxx-xxxx", lowercase hex of 6 bytes. */
static int
session_code(void)
{
	static const uint8_t h1[32] = { 0x01, 0x23, 0x45, 0x67, 0x89, 0xab,
	    0xcd, 0xef };
	static const uint8_t h2[32] = { 0xfe, 0xdc, 0xba, 0x98, 0x76, 0x54,
	    0x32, 0x10 };
	uint8_t h[32], back[6];
	char out[PROTO_CODELEN + 8], hex[13];
	int i;

	memset(out, 'Z', sizeof(out));
	proto_session_code(out, h1);
	if (strcmp(out, "0123-4567-89ab") != 0 || out[PROTO_CODELEN + 1] != 'Z')
		return (why("got \"%.14s\" for 0123456789ab...", out));
	proto_session_code(out, h2);
	if (strcmp(out, "fedc-ba98-7654") != 0)
		return (why("got \"%.14s\" for fedcba987654...", out));
	randombytes_buf(h, sizeof(h));
	proto_session_code(out, h);
	if (strlen(out) != PROTO_CODELEN || out[4] != '-' || out[9] != '-')
		return (why("\"%s\" is not xxxx-xxxx-xxxx", out));
	for (i = 0; i < PROTO_CODELEN; i++)
		if (i != 4 && i != 9 && !((out[i] >= '0' && out[i] <= '9') ||
		    (out[i] >= 'a' && out[i] <= 'f')))
			return (why("\"%s\" is not lowercase hex", out));
	memcpy(hex, out, 4);
	memcpy(hex + 4, out + 5, 4);
	memcpy(hex + 8, out + 10, 4);
	hex[12] = '\0';
	if (sodium_hex2bin(back, sizeof(back), hex, 12, NULL, NULL, NULL) != 0)
		return (why("\"%s\" does not decode", out));
	return (same("session code bytes", back, 6, h, 6));
}

static void
test_handshakes(void)
{
	static const int msgs[] = { 2, 3 };
	uint8_t psk[32];
	size_t n, codes[3], m1 = 0, m1p = 0, m2 = 0, m3 = 0, c1, c2;
	int i, code[2] = { 0, 0 }, ok;

	randombytes_buf(psk, sizeof(psk));
	report(hs_classic(), "handshake classic: listener first, same secret "
	    "as X25519 here, split ciphers interoperate under the HKDF key");
	test_loworder();
	report(hs_noise(NULL), "handshake noise XX: both done, same hash and "
	    "session code, remote static keys, split ciphers both ways");
	report(hs_noise(psk), "handshake noise XXpsk3: both done, same hash "
	    "and session code, remote static keys, split ciphers both ways");
	report(reflection(), "transport default: a reflected packet (c1 "
	    "opened with c2) gives EBADTAG");
	report(hs_psk_mismatch(), "handshake noise: mismatched PSKs, the "
	    "responder refuses message 3 with EBADTAG");
	ok = hs_psk_one_side(0, &code[0]) && hs_psk_one_side(1, &code[1]);
	report(ok, "handshake noise: a PSK on one side only fails (%s; %s)",
	    proto_strerror(code[0]), proto_strerror(code[1]));
	for (i = 0; i < 4; i++) {
		n = 0;
		ok = hs_flips(msgs[i % 2], i < 2 ? NULL : psk, &n, codes);
		report(ok && codes[0] + codes[1] + codes[2] == n && n > 0,
		    "handshake noise %s: a bit flip in each of the %zu bytes of "
		    "message %d is refused, reader failed (%zu EBADTAG, %zu "
		    "ELOWORDER, %zu other)", i < 2 ? "XX" : "XXpsk3", n,
		    msgs[i % 2], codes[0], codes[1], codes[2]);
	}
	ok = hs_truncs(0, 1, NULL, &m1) && hs_truncs(0, 1, psk, &m1p) &&
	    hs_truncs(0, 2, NULL, &m2) && hs_truncs(0, 3, NULL, &m3);
	report(ok, "handshake noise: messages cut short give EBADMSG (every "
	    "length below message 1: %zu, message 1 with PSK: %zu, message "
	    "2: %zu, message 3: %zu)",
	    m1, m1p, m2, m3);
	ok = hs_truncs(1, 1, NULL, &c1) && hs_truncs(1, 2, NULL, &c2);
	report(ok, "handshake classic: a key of 0 to 31 or 33 bytes gives "
	    "EBADMSG");
	report(hs_states(), "handshake: calls out of turn and split before "
	    "the end give ESTATE");
	report(session_code(), "proto_session_code: xxxx-xxxx-xxxx, lowercase "
	    "hex of the first 6 bytes");
}

/* Key text. */

static const char b64chars[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/* Known encodings, then random keys through encode and decode. */
static int
key_roundtrip(void)
{
	static const struct {
		uint8_t fill;		/* every byte, or 0xfe for 0, 1, 2... */
		const char *text;
	} known[] = {
		{ 0x00, "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=" },
		{ 0xff, "//////////////////////////////////////////8=" },
		{ 0xfe, "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=" },
	};
	uint8_t key[32], back[32];
	char text[PROTO_B64LEN + 1];
	size_t i, j;

	for (i = 0; i < sizeof(known) / sizeof(known[0]); i++) {
		for (j = 0; j < 32; j++)
			key[j] = known[i].fill == 0xfe ? (uint8_t)j :
			    known[i].fill;
		proto_key_encode(text, key);
		if (strcmp(text, known[i].text) != 0)
			return (why("encoded \"%s\", want \"%s\"", text,
			    known[i].text));
		if (proto_key_decode(back, known[i].text, PROTO_B64LEN) != 0 ||
		    memcmp(back, key, 32) != 0)
			return (why("\"%s\" did not decode", known[i].text));
	}
	for (i = 0; i < 64; i++) {
		randombytes_buf(key, sizeof(key));
		proto_key_encode(text, key);
		if (strlen(text) != PROTO_B64LEN)
			return (why("encoding is %zu characters", strlen(text)));
		if (proto_key_decode(back, text, PROTO_B64LEN) != 0 ||
		    memcmp(back, key, 32) != 0)
			return (why("\"%s\" did not round trip", text));
	}
	return (1);
}

/*
 * Decode must refuse len bytes of good with "with" written at "at" and,
 * if cut is not 0, a NUL at cut.
 */
static int
refused(const char *good, size_t at, const char *with, size_t cut,
    size_t len, const char *what)
{
	char t[64];
	uint8_t key[32];

	memcpy(t, good, PROTO_B64LEN);
	memcpy(t + at, with, strlen(with));
	if (cut != 0)
		t[cut] = '\0';
	if (proto_key_decode(key, t, len) == 0)
		return (why("accepted %s", what));
	return (1);
}

/*
 * Decode refuses anything but exactly 44 characters of one canonical
 * key: short or long text, characters outside the alphabet, misplaced or
 * missing padding, NUL bytes, and nonzero bits after the last byte.
 */
static int
key_decode_rejects(size_t *nrefused)
{
	static const char bad[] = "-_*. \n\t!=";
	uint8_t key[32], back[32];
	char good[PROTO_B64LEN + 1], t[PROTO_B64LEN + 1], c[2] = { 0, 0 };
	size_t i, accepted = 0;
	int v;

	*nrefused = 0;
	randombytes_buf(key, sizeof(key));
	proto_key_encode(good, key);
	if (!refused(good, 0, "", 0, 43, "43 characters") ||
	    !refused(good, 44, "A", 0, 45, "45 characters") ||
	    !refused(good, 44, "=", 0, 45, "a second '='") ||
	    !refused(good, 0, "", 0, 0, "empty text") ||
	    !refused(good, 43, "A", 0, 44, "no padding") ||
	    !refused(good, 42, "==", 0, 44, "\"==\" padding") ||
	    !refused(good, 20, "", 20, 44, "a NUL inside") ||
	    !refused(good, 43, "", 43, 44, "a NUL for the '='"))
		return (0);
	*nrefused += 8;
	for (i = 0; i < strlen(bad); i++) {
		c[0] = bad[i];
		if (!refused(good, 5, c, 0, 44, "a character outside the "
		    "alphabet"))
			return (0);
		(*nrefused)++;
	}
	/* Every byte above 0x7f, which libsodium 1.0.18 alone reads as '/'. */
	for (i = 0x80; i <= 0xff; i++) {
		c[0] = (char)i;
		if (!refused(good, 5, c, 0, 44, "a byte above 0x7f"))
			return (0);
		(*nrefused)++;
	}
	/*
	 * Character 43 holds the last 4 bits of the key and 2 bits that
	 * must be zero: of the 64, only the 16 with those bits clear may
	 * decode, to the key with that last nibble.
	 */
	memset(t, 'A', PROTO_B64LEN);
	t[PROTO_B64LEN - 1] = '=';
	t[PROTO_B64LEN] = '\0';
	for (v = 0; v < 64; v++) {
		t[42] = b64chars[v];
		if (proto_key_decode(back, t, PROTO_B64LEN) != 0) {
			if ((v & 3) == 0)
				return (why("refused canonical \"%s\"", t));
			(*nrefused)++;
			continue;
		}
		if ((v & 3) != 0)
			return (why("accepted non-canonical \"%s\"", t));
		if (back[31] != (uint8_t)(v >> 2) || !sodium_is_zero(back, 31))
			return (why("\"%s\" decoded wrongly", t));
		accepted++;
	}
	if (accepted != 16)
		return (why("%zu canonical last characters, want 16", accepted));
	return (1);
}

/* A key file is the key and at most one "\n", nothing else. */
static int
keyfile(void)
{
	static const char *const bad[] = { "\n\n", " ", "\r\n", "\t", "\r",
	    "\n ", "x" };
	uint8_t key[32], back[32];
	char good[PROTO_B64LEN + 1], t[PROTO_B64LEN + 4];
	size_t i;

	randombytes_buf(key, sizeof(key));
	proto_key_encode(good, key);
	memcpy(t, good, PROTO_B64LEN);
	t[PROTO_B64LEN] = '\n';
	if (proto_keyfile_parse(back, good, PROTO_B64LEN) != 0 ||
	    memcmp(back, key, 32) != 0)
		return (why("refused the bare key"));
	if (proto_keyfile_parse(back, t, PROTO_B64LEN + 1) != 0 ||
	    memcmp(back, key, 32) != 0)
		return (why("refused key \"\\n\""));
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		memcpy(t + PROTO_B64LEN, bad[i], strlen(bad[i]));
		if (proto_keyfile_parse(back, t, PROTO_B64LEN +
		    strlen(bad[i])) == 0)
			return (why("accepted key followed by bad[%zu]", i));
	}
	/* Before the key, and a short key with a newline. */
	t[0] = '\n';
	memcpy(t + 1, good, PROTO_B64LEN);
	if (proto_keyfile_parse(back, t, PROTO_B64LEN + 1) == 0)
		return (why("accepted \"\\n\" key"));
	memcpy(t, good, PROTO_B64LEN - 1);
	t[PROTO_B64LEN - 1] = '\n';
	if (proto_keyfile_parse(back, t, PROTO_B64LEN) == 0)
		return (why("accepted 43 characters and \"\\n\""));
	return (1);
}

/* Fresh keys are clamped, differ, and pair with their public keys. */
static int
keypair(void)
{
	uint8_t priv[32], pub[32], want[32], prev[32];
	int i;

	for (i = 0; i < 32; i++) {
		proto_keypair_new(priv, pub);
		if ((priv[0] & 7) != 0 || (priv[31] & 0x80) != 0 ||
		    (priv[31] & 0x40) == 0)
			return (why("private key not clamped"));
		crypto_scalarmult_base(want, priv);
		if (!same("public key", pub, 32, want, 32))
			return (0);
		if (i > 0 && memcmp(priv, prev, 32) == 0)
			return (why("the same key twice"));
		memcpy(prev, priv, 32);
	}
	return (1);
}

static void
test_keytext(void)
{
	size_t n = 0;
	int ok;

	report(key_roundtrip(), "key text: known encodings, and 64 random "
	    "keys through encode and decode");
	ok = key_decode_rejects(&n);
	report(ok, "key text: decode refuses %zu bad "
	    "texts (length, alphabet, padding, NUL, non-canonical end)", n);
	report(keyfile(), "key file: key and key \"\\n\" accepted; \"\\n\\n\", "
	    "\" \", \"\\r\\n\" and others refused");
	report(keypair(), "proto_keypair_new: clamped, public key is "
	    "crypto_scalarmult_base");
}

/* proto_read_full and proto_write_full over a socketpair. */

struct feeder {
	int fd;
	const uint8_t *buf;
	size_t len;
	size_t chunk;
	int rc;
};

/* Write buf in chunks with pauses, so the reader sees short reads. */
static void *
feeder_run(void *arg)
{
	struct feeder *f = arg;
	struct timespec ts = { 0, 5 * 1000 * 1000 };
	size_t off, n;

	f->rc = 0;
	for (off = 0; off < f->len && f->rc == 0; off += n) {
		n = f->len - off < f->chunk ? f->len - off : f->chunk;
		f->rc = proto_write_full(f->fd, f->buf + off, n);
		if (off + n < f->len)
			nanosleep(&ts, NULL);
	}
	return (NULL);
}

/*
 * Wait for the feeder thread t; return 1 if it and the reader (whose code
 * was rc) succeeded and in holds what f sent, else say why and return 0.
 */
static int
feed_done(pthread_t t, const struct feeder *f, int rc, const uint8_t *in)
{

	pthread_join(t, NULL);
	if (rc != 0 || f->rc != 0)
		return (why("read: %s, write: %s", proto_strerror(rc),
		    proto_strerror(f->rc)));
	return (same("bytes read", in, f->len, f->buf, f->len));
}

/* Have a thread write len bytes in chunks while this one reads them. */
static int
io_feed(size_t len, size_t chunk)
{
	uint8_t *out = xmalloc(len), *in = xmalloc(len);
	struct feeder f;
	pthread_t t;
	int sv[2], rc, ok = 0;

	randombytes_buf(out, len);
	if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) != 0) {
		why("socketpair: %s", strerror(errno));
		goto done;
	}
	f.fd = sv[1];
	f.buf = out;
	f.len = len;
	f.chunk = chunk;
	if ((rc = pthread_create(&t, NULL, feeder_run, &f)) != 0) {
		why("pthread_create: %s", strerror(rc));
		close(sv[0]);
		close(sv[1]);
		goto done;
	}
	rc = proto_read_full(sv[0], in, len, proto_now_ms() + 5000);
	ok = feed_done(t, &f, rc, in);
	close(sv[0]);
	close(sv[1]);
done:
	free(out);
	free(in);
	return (ok);
}

static void
on_signal(int sig)
{

	(void)sig;
}

/*
 * Interrupt a writer blocked on a full socket again and again: write()
 * then returns short counts or fails with EINTR, and proto_write_full
 * must carry on until all 4 MiB are through.
 */
static int
io_interrupted(void)
{
	const size_t len = 4 << 20, piece = 64 << 10;
	uint8_t *out = xmalloc(len), *in = xmalloc(len);
	struct timespec ts = { 0, 1000 * 1000 };
	struct sigaction sa, old;
	struct feeder f;
	pthread_t t;
	size_t off;
	int sv[2], rc = 0, ok = 0;

	randombytes_buf(out, len);
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_signal;
	sigemptyset(&sa.sa_mask);
	/* No SA_RESTART: an interrupted write returns what it wrote. */
	sa.sa_flags = 0;
	if (sigaction(SIGUSR1, &sa, &old) != 0) {
		why("sigaction: %s", strerror(errno));
		goto done;
	}
	if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) != 0) {
		why("socketpair: %s", strerror(errno));
		goto restore;
	}
	f.fd = sv[1];
	f.buf = out;
	f.len = f.chunk = len;
	if ((rc = pthread_create(&t, NULL, feeder_run, &f)) != 0) {
		why("pthread_create: %s", strerror(rc));
		goto closefds;
	}
	/*
	 * The first signal of each pair cuts a write short; the second
	 * finds the next write blocked before it wrote anything: EINTR.
	 */
	for (off = 0; off < len && rc == 0; off += piece) {
		(void)pthread_kill(t, SIGUSR1);
		nanosleep(&ts, NULL);
		(void)pthread_kill(t, SIGUSR1);
		nanosleep(&ts, NULL);
		rc = proto_read_full(sv[0], in + off, piece,
		    proto_now_ms() + 2000);
	}
	ok = feed_done(t, &f, rc, in);
closefds:
	close(sv[0]);
	close(sv[1]);
restore:
	sigaction(SIGUSR1, &old, NULL);
done:
	free(out);
	free(in);
	return (ok);
}

/* Exactly len bytes each time, no more: 4 then 6 of 10 written. */
static int
io_exact(int sv[2])
{
	uint8_t buf[10];

	if (proto_write_full(sv[1], "0123456789", 10) != 0)
		return (why("write failed"));
	if (proto_read_full(sv[0], buf, 4, 0) != 0 ||
	    memcmp(buf, "0123", 4) != 0 ||
	    proto_read_full(sv[0], buf, 6, proto_now_ms() + 1000) != 0 ||
	    memcmp(buf, "456789", 6) != 0)
		return (why("reads of 4 and 6 bytes went wrong"));
	return (1);
}

/* Nothing sent, then the end: EEOF, with and without a deadline. */
static int
io_eof(int sv[2])
{
	uint8_t buf[4];
	int rc;

	close(sv[1]);
	sv[1] = -1;
	if ((rc = proto_read_full(sv[0], buf, 4, 0)) != PROTO_EEOF ||
	    (rc = proto_read_full(sv[0], buf, 4, proto_now_ms() + 1000)) !=
	    PROTO_EEOF)
		return (why("got %s, want EEOF", proto_strerror(rc)));
	return (1);
}

/* Some bytes, then the end: ETRUNC. */
static int
io_trunc(int sv[2])
{
	uint8_t buf[10];
	int rc;

	if (proto_write_full(sv[1], "abcde", 5) != 0)
		return (why("write failed"));
	close(sv[1]);
	sv[1] = -1;
	if ((rc = proto_read_full(sv[0], buf, 10, proto_now_ms() + 1000)) !=
	    PROTO_ETRUNC)
		return (why("got %s, want ETRUNC", proto_strerror(rc)));
	return (1);
}

/* A silent peer, then one that stops after 3 bytes: ETIMEOUT in time. */
static int
io_timeout(int sv[2], int64_t *took)
{
	uint8_t buf[10];
	int64_t t0;
	int rc;

	t0 = proto_now_ms();
	rc = proto_read_full(sv[0], buf, 1, t0 + 100);
	*took = proto_now_ms() - t0;
	if (rc != PROTO_ETIMEOUT)
		return (why("silent peer: got %s, want ETIMEOUT",
		    proto_strerror(rc)));
	/* The clock has whole milliseconds; poll never wakes early. */
	if (*took < 99 || *took > 1000)
		return (why("gave up after %lld ms, want 100", (long long)*took));
	if (proto_write_full(sv[1], "abc", 3) != 0)
		return (why("write failed"));
	if ((rc = proto_read_full(sv[0], buf, 10, proto_now_ms() + 100)) !=
	    PROTO_ETIMEOUT)
		return (why("3 bytes then silence: got %s, want ETIMEOUT",
		    proto_strerror(rc)));
	return (1);
}

/* A bad descriptor, and a peer that has gone: EERRNO with errno. */
static int
io_errors(int sv[2])
{
	uint8_t buf[1];
	int rc;

	errno = 0;
	if ((rc = proto_read_full(-1, buf, 1, 0)) != PROTO_EERRNO ||
	    errno != EBADF)
		return (why("read from -1: got %s", proto_strerror(rc)));
	errno = 0;
	if ((rc = proto_write_full(-1, "x", 1)) != PROTO_EERRNO ||
	    errno != EBADF)
		return (why("write to -1: got %s", proto_strerror(rc)));
	close(sv[0]);
	sv[0] = -1;
	errno = 0;
	if ((rc = proto_write_full(sv[1], "x", 1)) != PROTO_EERRNO ||
	    errno != EPIPE)
		return (why("write to a closed peer: got %s",
		    proto_strerror(rc)));
	return (1);
}

/* Run one of the checks above on a fresh socketpair. */
static int
io_pair(int (*fn)(int [2]))
{
	int sv[2], ok;

	if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) != 0)
		return (why("socketpair: %s", strerror(errno)));
	ok = fn(sv);
	if (sv[0] != -1)
		close(sv[0]);
	if (sv[1] != -1)
		close(sv[1]);
	return (ok);
}

static int io_timeout_ms;

static int
io_timeout_pair(int sv[2])
{
	int64_t took = 0;
	int ok;

	ok = io_timeout(sv, &took);
	io_timeout_ms = (int)took;
	return (ok);
}

static void
test_io(void)
{
	int ok;

	report(io_pair(io_exact), "io: reads of exactly 4 then 6 bytes");
	report(io_feed(3000, 700), "io: 3000 bytes arriving in pieces read "
	    "whole");
	report(io_feed(1 << 20, 1 << 20), "io: 1 MiB through proto_write_full "
	    "and proto_read_full");
	report(io_interrupted(), "io: a writer interrupted by signals still "
	    "delivers all 4 MiB");
	report(io_pair(io_eof), "io: end of stream before a byte gives EEOF");
	report(io_pair(io_trunc), "io: end of stream after 5 of 10 bytes "
	    "gives ETRUNC");
	ok = io_pair(io_timeout_pair);
	report(ok, "io: a silent peer gives ETIMEOUT after %d ms (deadline "
	    "now + 100 ms), also after a partial read", io_timeout_ms);
	report(io_pair(io_errors), "io: bad descriptor and closed peer give "
	    "EERRNO (EBADF, EPIPE)");
}

/* proto_handshake over a socketpair, one side in a thread. */

struct hsrun {
	int fd;
	struct proto_hs *hs;
	const char *name;
	int refuse;			/* verify says no */
	uint8_t seen[PROTO_KEYBYTES];	/* key verify was shown */
	int nseen;
	uint8_t peername[PROTO_NAMEMAX];
	size_t peernamelen;
	int rc;
	uint8_t hash[PROTO_KEYBYTES];	/* proto_hs_hash() at the end */
};

static int
hsrun_verify(void *arg, const uint8_t rs[PROTO_KEYBYTES])
{
	struct hsrun *r = arg;

	memcpy(r->seen, rs, PROTO_KEYBYTES);
	r->nseen++;
	return (r->refuse ? -1 : 0);
}

static void *
hsrun_main(void *arg)
{
	struct hsrun *r = arg;

	r->rc = proto_handshake(r->fd, r->hs, (const uint8_t *)r->name,
	    strlen(r->name), r->peername, &r->peernamelen,
	    proto_now_ms() + 5000, hsrun_verify, r);
	/* The peer sees the end of the stream instead of waiting. */
	shutdown(r->fd, SHUT_WR);
	return (NULL);
}

/* Run both sides; r[0] connects, r[1] listens.  Frees r[i].hs. */
static int
sock_handshake(int classic, int refuse0, int refuse1, struct hsrun r[2])
{
	struct proto_hs_params hp;
	pthread_t t;
	int sv[2], i, rc, ok = 0;

	memset(r, 0, 2 * sizeof(*r));
	if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) != 0)
		return (why("socketpair: %s", strerror(errno)));
	for (i = 0; i < 2; i++) {
		memset(&hp, 0, sizeof(hp));
		hp.initiator = (i == 0);
		hp.classic = classic;
		hp.s = classic ? NULL : statics[i];
		if ((r[i].hs = proto_hs_new(&hp)) == NULL) {
			why("proto_hs_new: %s", strerror(errno));
			goto done;
		}
		r[i].fd = sv[i];
		r[i].name = names[2 - i];
		r[i].refuse = i == 0 ? refuse0 : refuse1;
	}
	if ((rc = pthread_create(&t, NULL, hsrun_main, &r[1])) != 0) {
		why("pthread_create: %s", strerror(rc));
		goto done;
	}
	hsrun_main(&r[0]);
	pthread_join(t, NULL);
	for (i = 0; i < 2; i++)
		memcpy(r[i].hash, proto_hs_hash(r[i].hs), PROTO_KEYBYTES);
	ok = 1;
done:
	for (i = 0; i < 2; i++) {
		proto_hs_free(r[i].hs);
		r[i].hs = NULL;
	}
	close(sv[0]);
	close(sv[1]);
	return (ok);
}

/* Run a handshake over a socket that both sides must finish. */
static int
sock_done(int classic, struct hsrun r[2])
{
	int i;

	if (!sock_handshake(classic, 0, 0, r))
		return (0);
	for (i = 0; i < 2; i++)
		if (r[i].rc != 0)
			return (why("side %d: %s", i, proto_strerror(r[i].rc)));
	return (1);
}

/* Noise over a socket: names exchanged, keys shown to verify, same h. */
static int
sock_noise(void)
{
	struct hsrun r[2];
	int i;

	if (!sock_done(0, r))
		return (0);
	for (i = 0; i < 2; i++) {
		if (!same("peer name", r[i].peername, r[i].peernamelen,
		    (const uint8_t *)r[1 - i].name, strlen(r[1 - i].name)))
			return (0);
		if (r[i].nseen != 1 || memcmp(r[i].seen, staticpubs[1 - i],
		    PROTO_KEYBYTES) != 0)
			return (why("side %d: verify not shown the peer's key "
			    "once", i));
	}
	return (same("handshake hash", r[0].hash, 32, r[1].hash, 32));
}

/* Classic over a socket: bare keys, no names, the same secret. */
static int
sock_classic(void)
{
	struct hsrun r[2];

	if (!sock_done(1, r))
		return (0);
	if (r[0].peernamelen != 0 || r[1].peernamelen != 0)
		return (why("names of %zu and %zu bytes", r[0].peernamelen,
		    r[1].peernamelen));
	if (sodium_is_zero(r[0].hash, 32))
		return (why("zero secret"));
	return (same("shared secret", r[0].hash, 32, r[1].hash, 32));
}

/*
 * A verify that says no: the connector's stops it before message 3, so
 * the listener cannot finish; the listener's gives EREJECT there.
 */
static int
sock_refuse(int side)
{
	struct hsrun r[2];

	if (!sock_handshake(0, side == 0, side == 1, r))
		return (0);
	if (r[side].rc != PROTO_EREJECT)
		return (why("refusing side: got %s, want EREJECT",
		    proto_strerror(r[side].rc)));
	if (side == 0 && r[1].rc == 0)
		return (why("the listener finished without message 3"));
	return (1);
}

/* The listener with a silent peer, or a message that is too long. */
static int
sock_listener_fails(int silent, int *got)
{
	struct proto_hs_params hp;
	struct proto_hs *hs;
	uint8_t prefix[PROTO_LENBYTES], peer[PROTO_NAMEMAX];
	size_t peerlen;
	int sv[2], want;

	memset(&hp, 0, sizeof(hp));
	hp.s = statics[1];
	if ((hs = proto_hs_new(&hp)) == NULL)
		return (why("proto_hs_new: %s", strerror(errno)));
	if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) != 0) {
		proto_hs_free(hs);
		return (why("socketpair: %s", strerror(errno)));
	}
	/* Message 1 is 32 bytes; a prefix of 256 must not be followed. */
	store32_be(prefix, 256);
	if (!silent)
		(void)proto_write_full(sv[0], prefix, sizeof(prefix));
	*got = proto_handshake(sv[1], hs, (const uint8_t *)"l", 1, peer,
	    &peerlen, proto_now_ms() + 100, NULL, NULL);
	want = silent ? PROTO_ETIMEOUT : PROTO_EBADMSG;
	proto_hs_free(hs);
	close(sv[0]);
	close(sv[1]);
	if (*got != want)
		return (why("got %s, want %s", proto_strerror(*got),
		    proto_strerror(want)));
	return (1);
}

/* A name longer than PROTO_NAMEMAX is refused before anything is sent. */
static int
sock_long_name(void)
{
	struct proto_hs_params hp;
	struct proto_hs *hs;
	uint8_t name[PROTO_NAMEMAX + 1], peer[PROTO_NAMEMAX];
	size_t peerlen;
	int rc;

	memset(&hp, 0, sizeof(hp));
	hp.initiator = 1;
	hp.s = statics[0];
	memset(name, 'n', sizeof(name));
	if ((hs = proto_hs_new(&hp)) == NULL)
		return (why("proto_hs_new: %s", strerror(errno)));
	rc = proto_handshake(-1, hs, name, sizeof(name), peer, &peerlen,
	    proto_now_ms() + 100, NULL, NULL);
	proto_hs_free(hs);
	if (rc != PROTO_EBADLEN)
		return (why("got %s, want EBADLEN", proto_strerror(rc)));
	return (1);
}

static void
test_sock_handshake(void)
{
	int got, ok;

	report(sock_noise(), "proto_handshake noise: names exchanged, verify "
	    "shown each peer's key, same hash");
	report(sock_classic(), "proto_handshake classic: bare keys, same "
	    "secret");
	report(sock_refuse(0), "proto_handshake: the connector's verify "
	    "refusing gives EREJECT");
	report(sock_refuse(1), "proto_handshake: the listener's verify "
	    "refusing gives EREJECT");
	ok = sock_listener_fails(1, &got);
	report(ok, "proto_handshake: a silent connector gives ETIMEOUT "
	    "(deadline now + 100 ms)");
	ok = sock_listener_fails(0, &got);
	report(ok, "proto_handshake: a message 1 of 256 bytes is refused "
	    "unread with EBADMSG");
	report(sock_long_name(), "proto_handshake: a name of %d bytes gives "
	    "EBADLEN", PROTO_NAMEMAX + 1);
}

/* A check that hangs must still end the run, as a failure. */
static void
on_alarm(int sig)
{
	static const char msg[] = "FAIL: watchdog: the run took over 600 s; "
	    "a check hangs\n";
	ssize_t r;

	(void)sig;
	r = write(STDOUT_FILENO, msg, sizeof(msg) - 1);
	(void)r;
	_exit(1);
}

int
main(int argc, char *argv[])
{
	const char *dir;
	int64_t t0 = proto_now_ms();
	int i;

	if (argc != 2) {
		fprintf(stderr, "usage: %s vectordir\n", argv[0]);
		exit(1);
	}
	dir = argv[1];
	/* A peer that has gone must show up as EPIPE, not end the run. */
	signal(SIGPIPE, SIG_IGN);
	/* A normal run takes 2 s, one under a memory checker minutes. */
	signal(SIGALRM, on_alarm);
	alarm(600);
	if (sodium_init() < 0) {
		printf("FAIL: sodium_init: cannot initialise libsodium\n");
		exit(1);
	}
	for (i = 0; i < 2; i++) {
		randombytes_buf(statics[i], PROTO_KEYBYTES);
		crypto_scalarmult_base(staticpubs[i], statics[i]);
	}

	test_json();
	test_x25519_rfc(dir);
	test_wycheproof(dir, &x25519_wycheproof);
	test_hkdf(dir);
	test_keytext();
	test_io();
	if (!crypto_aead_aes256gcm_is_available()) {
		/* libsodium's AES-GCM needs AES-NI and PCLMUL; proto too. */
		report(why("this CPU lacks AES-NI or PCLMUL: AES-GCM, transport "
		    "and handshake checks not run"), "aes256gcm available");
	} else {
		report(1, "aes256gcm available");
		test_gcm_spec(dir);
		test_wycheproof(dir, &gcm_wycheproof);
		test_noise_file(dir, "noise_aesgcm_sha256.json", "cacophony", 1);
		test_noise_file(dir, "noise_aesgcm_sha256_snow.json", "snow", 0);
		test_noise_local(dir);
		test_transport();
		test_handshakes();
		test_sock_handshake();
	}
	fprintf(stderr, "unit: %d passed, %d failed in %.1f s\n", npassed,
	    nfailed, (double)(proto_now_ms() - t0) / 1000);
	return (nfailed == 0 ? 0 : 1);
}
