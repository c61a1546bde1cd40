/*
 * Write the seed corpora of the fuzz targets into DIR/<target>/, one small
 * file each: real handshake messages and packets made with the fixed keys
 * of fuzz.h, so that the fuzzer starts from inputs that get all the way
 * through, and a few near misses next to them.  Randomness (the classic
 * packets' nonces) comes from a fixed stream, so the output is the same
 * every time.  "sh fuzz/run.sh --seeds" builds this and rewrites
 * fuzz/corpus/; nothing else runs it.
 */

#include <errno.h>
#include <sys/stat.h>

#include "fuzz.h"

static const char *outdir;

/* A fixed stream instead of the system's randomness (xorshift64). */
static uint64_t rng_state = 0x243f6a8885a308d3ULL;

static const char *
rng_name(void)
{

	return ("fixed");
}

static uint32_t
rng_random(void)
{

	rng_state ^= rng_state << 13;
	rng_state ^= rng_state >> 7;
	rng_state ^= rng_state << 17;
	return ((uint32_t)(rng_state >> 32));
}

static void
rng_buf(void *buf, size_t len)
{
	uint8_t *p = buf;
	size_t i;

	for (i = 0; i < len; i++)
		p[i] = (uint8_t)rng_random();
}

static struct randombytes_implementation rng = {
	.implementation_name = rng_name,
	.random = rng_random,
	.buf = rng_buf,
};

static void
die(const char *what)
{

	fprintf(stderr, "mkseeds: %s: %s\n", what, strerror(errno));
	exit(1);
}

/* A growing byte string. */
struct buf {
	uint8_t b[4096];
	size_t len;
};

static void
put(struct buf *b, const void *p, size_t len)
{

	if (len > sizeof(b->b) - b->len) {
		errno = EOVERFLOW;
		die("seed too large");
	}
	memcpy(b->b + b->len, p, len);
	b->len += len;
}

static void
put_byte(struct buf *b, uint8_t c)
{

	put(b, &c, 1);
}

static void
put_str(struct buf *b, const char *s)
{

	put(b, s, strlen(s));
}

/* A handshake message as proto_handshake() frames it: u32 BE length. */
static void
put_framed(struct buf *b, const struct buf *msg)
{
	uint8_t prefix[4];

	prefix[0] = (uint8_t)(msg->len >> 24);
	prefix[1] = (uint8_t)(msg->len >> 16);
	prefix[2] = (uint8_t)(msg->len >> 8);
	prefix[3] = (uint8_t)msg->len;
	put(b, prefix, sizeof(prefix));
	put(b, msg->b, msg->len);
}

static void
put_key(struct buf *b, int which, int pub)
{
	uint8_t k[PROTO_KEYBYTES], p[PROTO_KEYBYTES];
	char text[PROTO_B64LEN + 1];

	fuzz_key(k, which);
	if (pub)
		(void)crypto_scalarmult_base(p, k);
	proto_key_encode(text, pub ? p : k);
	put_str(b, text);
}

static void
save(const char *target, const char *name, const struct buf *b)
{
	char path[512];
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s", outdir, target);
	if (mkdir(path, 0777) == -1 && errno != EEXIST)
		die(path);
	snprintf(path, sizeof(path), "%s/%s/%s", outdir, target, name);
	if ((f = fopen(path, "wb")) == NULL)
		die(path);
	if (fwrite(b->b, 1, b->len, f) != b->len || fclose(f) != 0)
		die(path);
}

/* Save the string s as a seed. */
static void
save_str(const char *target, const char *name, const char *s)
{
	struct buf b = { .len = 0 };

	put_str(&b, s);
	save(target, name, &b);
}

/* Save flag byte | body. */
static void
save_flagged(const char *target, const char *name, uint8_t flags,
    const struct buf *body)
{
	struct buf b = { .len = 0 };

	put_byte(&b, flags);
	put(&b, body->b, body->len);
	save(target, name, &b);
}

static void
hs_write(struct proto_hs *hs, const char *payload, struct buf *msg)
{

	if (proto_hs_write(hs, (const uint8_t *)payload,
	    payload != NULL ? strlen(payload) : 0, msg->b, &msg->len) != 0) {
		errno = EPROTO;
		die("proto_hs_write");
	}
}

static void
hs_read(struct proto_hs *hs, const struct buf *msg)
{
	uint8_t payload[sizeof(msg->b)];
	size_t plen;

	if (proto_hs_read(hs, msg->b, msg->len, payload, &plen) != 0) {
		errno = EPROTO;
		die("proto_hs_read");
	}
}

/*
 * One Noise handshake between the fixed connector and listener after the
 * hello of the flags (FUZZ_PSK, FUZZ_CHACHA), in memory: message 1 with
 * payload p1, 2 with p2, 3 with p3.
 */
static void
noise(int flags, const char *p1, const char *p2, const char *p3,
    struct buf m[3])
{
	struct proto_hs *init, *resp;

	init = fuzz_hs(1, flags);
	resp = fuzz_hs(0, flags);
	hs_write(init, p1, &m[0]);
	hs_read(resp, &m[0]);
	hs_write(resp, p2, &m[1]);
	hs_read(init, &m[1]);
	hs_write(init, p3, &m[2]);
	hs_read(resp, &m[2]);
	proto_hs_free(init);
	proto_hs_free(resp);
}

/* The hello frames of the flags, as struct bufs. */
static void
hello_frames(int flags, struct buf *f1, struct buf *f2)
{
	struct proto_hello h;

	fuzz_hello(&h, flags & FUZZ_CHACHA ? PROTO_CHACHAPOLY : PROTO_AESGCM,
	    (flags & FUZZ_PSK) != 0);
	f1->len = f2->len = 0;
	put(f1, h.f1, h.f1len);
	put(f2, h.f2, h.f2len);
}

static void
seeds_hs(void)
{
	static const char *kind[4] = { "nopsk", "psk", "chacha-nopsk",
	    "chacha-psk" };
	struct buf m[3], in, f1, f2;
	char name[64];
	uint8_t f;
	int i;

	for (i = 0; i < 4; i++) {
		f = (i & 1 ? FUZZ_PSK : 0) | (i & 2 ? FUZZ_CHACHA : 0);
		hello_frames(f, &f1, &f2);
		/* The messages as the program sends them, names included. */
		noise(f, NULL, FUZZ_NAME_RESP, FUZZ_NAME_INIT, m);
		snprintf(name, sizeof(name), "%s", kind[i]);
		save_flagged("hs_msg1", name, f, &m[0]);
		snprintf(name, sizeof(name), "%s-name", kind[i]);
		save_flagged("hs_msg2", name, f, &m[1]);
		save_flagged("hs_msg3", name, f, &m[2]);

		/* handshake_fd: the listener reads frame 1, messages 1 and
		 * 3, the connector frame 2 and message 2; with verify
		 * accepting and refusing. */
		in.len = 0;
		put_framed(&in, &f1);
		put_framed(&in, &m[0]);
		put_framed(&in, &m[2]);
		snprintf(name, sizeof(name), "listen-%s", kind[i]);
		save_flagged("handshake_fd", name, f, &in);
		snprintf(name, sizeof(name), "listen-%s-refuse", kind[i]);
		save_flagged("handshake_fd", name, f | FUZZ_REFUSE, &in);
		in.len = 0;
		put_framed(&in, &f2);
		put_framed(&in, &m[1]);
		snprintf(name, sizeof(name), "connect-%s", kind[i]);
		save_flagged("handshake_fd", name, f | FUZZ_CONNECT, &in);
		snprintf(name, sizeof(name), "connect-%s-refuse", kind[i]);
		save_flagged("handshake_fd", name,
		    f | FUZZ_CONNECT | FUZZ_REFUSE, &in);

		/* Without names. */
		noise(f, NULL, NULL, NULL, m);
		snprintf(name, sizeof(name), "%s-noname", kind[i]);
		save_flagged("hs_msg2", name, f, &m[1]);
		noise(f, NULL, FUZZ_NAME_RESP, NULL, m);
		save_flagged("hs_msg3", name, f, &m[2]);
		in.len = 0;
		put_framed(&in, &f1);
		put_framed(&in, &m[0]);
		put_framed(&in, &m[2]);
		snprintf(name, sizeof(name), "listen-%s-noname", kind[i]);
		save_flagged("handshake_fd", name, f, &in);
		in.len = 0;
		put_framed(&in, &f1);
		put_framed(&in, &m[0]);
		snprintf(name, sizeof(name), "listen-%s-cut", kind[i]);
		save_flagged("handshake_fd", name, f, &in);

		/* Message 1 with a payload: proto_hs_read() takes it, and
		 * proto_handshake() refuses it. */
		noise(f, "hello", FUZZ_NAME_RESP, FUZZ_NAME_INIT, m);
		snprintf(name, sizeof(name), "%s-payload", kind[i]);
		save_flagged("hs_msg1", name, f, &m[0]);
	}
}

/* Save flag byte | a hello frame body of len bytes. */
static void
save_hello(const char *target, const char *name, uint8_t flags,
    const uint8_t *body, size_t len)
{
	struct buf b = { .len = 0 };

	put(&b, body, len);
	save_flagged(target, name, flags, &b);
}

static void
seeds_hello(void)
{
	static const uint8_t xx[3] = { 2, 3, 0 }, psk[3] = { 2, 3, 1 };
	static const uint8_t chacha[3] = { 2, 2, 0 }, v1[3] = { 1, 3, 0 };
	static const uint8_t code[3] = { 2, 3, 2 }, xx4[4] = { 2, 3, 0, 0 };
	static const uint8_t aes[1] = { 1 }, cc[1] = { 2 }, busy[2] = { 0, 5 };
	static const uint8_t badreason[2] = { 0, 10 };

	/* Frame 1 at a listener with both suites, then with ChaChaPoly
	 * alone, with a PSK, busy. */
	save_hello("hello1", "xx", 3, xx, 3);
	save_hello("hello1", "xx-chacha-listener", 2, xx, 3);
	save_hello("hello1", "chacha-only", 3, chacha, 3);
	save_hello("hello1", "psk", 3 | FUZZ_HELLO_PSK, psk, 3);
	save_hello("hello1", "needs-psk", 3 | FUZZ_HELLO_PSK, xx, 3);
	save_hello("hello1", "busy", 3 | FUZZ_HELLO_BUSY, xx, 3);
	save_hello("hello1", "version-1", 3, v1, 3);
	save_hello("hello1", "mode-code", 3, code, 3);
	save_hello("hello1", "too-long", 3, xx4, 4);
	/* Frame 2 at a connector that offered both, or ChaChaPoly alone. */
	save_hello("hello2", "aesgcm", 3, aes, 1);
	save_hello("hello2", "chacha", 3, cc, 1);
	save_hello("hello2", "aesgcm-not-offered", 2, aes, 1);
	save_hello("hello2", "busy", 3, busy, 2);
	save_hello("hello2", "bad-reason", 3, badreason, 2);
}

static void
seeds_classic(void)
{
	struct proto_hs *init, *resp;
	struct buf m[2], in;
	int i;

	/* The listener writes its key first. */
	init = fuzz_hs(1, FUZZ_CLASSIC);
	resp = fuzz_hs(0, FUZZ_CLASSIC);
	hs_write(resp, NULL, &m[0]);
	hs_read(init, &m[0]);
	hs_write(init, NULL, &m[1]);
	hs_read(resp, &m[1]);
	proto_hs_free(init);
	proto_hs_free(resp);

	save_flagged("classic_hs", "listen", 0, &m[1]);
	save_flagged("classic_hs", "connect", FUZZ_CONNECT, &m[0]);
	save_flagged("handshake_fd", "listen-classic", FUZZ_CLASSIC,
	    &m[1]);
	save_flagged("handshake_fd", "connect-classic",
	    FUZZ_CLASSIC | FUZZ_CONNECT, &m[0]);

	/* Near misses: a key one byte short, and the zero (low-order)
	 * key. */
	in = m[1];
	in.len--;
	save_flagged("classic_hs", "listen-short", 0, &in);
	in.len = 0;
	for (i = 0; i < PROTO_KEYBYTES; i++)
		put_byte(&in, 0);
	save_flagged("classic_hs", "connect-zero-key", FUZZ_CONNECT, &in);
}

/*
 * Seal body (type byte first, unless classic) as the n-th packet of suite;
 * the seed's first byte is flags and what picks the suite.
 */
static void
packet(int suite, uint8_t flags, const char *body, size_t bodylen, int type,
    int n, struct buf *out)
{
	uint8_t key[PROTO_KEYBYTES], pkt[PROTO_HDRBYTES + 256];
	struct proto_cipher *c;
	size_t ptlen = 0;
	int i, classic = suite == PROTO_CLASSIC;

	fuzz_key(key, FUZZ_KEY_TRANSPORT);
	if ((c = proto_cipher_new(key, suite)) == NULL)
		die("proto_cipher_new");
	for (i = 0; i <= n; i++) {
		ptlen = 0;
		if (!classic)
			pkt[PROTO_HDRBYTES + ptlen++] = (uint8_t)type;
		memcpy(pkt + PROTO_HDRBYTES + ptlen, body, bodylen);
		ptlen += bodylen;
		if (proto_seal(c, pkt, ptlen) != 0) {
			errno = EPROTO;
			die("proto_seal");
		}
	}
	proto_cipher_free(c);
	out->len = 0;
	put_byte(out, flags | (classic ? FUZZ_CLASSIC :
	    suite == PROTO_CHACHAPOLY ? FUZZ_CHACHA : 0));
	put(out, pkt, PROTO_HDRBYTES + ptlen);
}

static void
seeds_packets(void)
{
	static const char *pre[2] = { "", "chacha-" };
	static const int suites[2] = { PROTO_AESGCM, PROTO_CHACHAPOLY };
	static const struct {
		const char *name;
		int type;
		const char *body;
		uint8_t flags;
	} kinds[] = {
		{ "data", PROTO_DATA, "hello\n", FUZZ_ENDS_GOT_ANY },
		{ "data-empty", PROTO_DATA, "", 0 },
		{ "first-data-empty", PROTO_DATA, "", FUZZ_CONNECT },
		{ "first-data", PROTO_DATA, "hi", FUZZ_CONNECT },
		{ "data-after-close", PROTO_DATA, "x", FUZZ_ENDS_GOT_CLOSE },
		{ "close", PROTO_CLOSE, "", FUZZ_ENDS_GOT_ANY },
		{ "close-again", PROTO_CLOSE, "", FUZZ_ENDS_GOT_CLOSE },
		{ "close-body", PROTO_CLOSE, "x", 0 },
		{ "rekey", PROTO_REKEY, "", 0 },
		{ "ack", PROTO_ACK, "", FUZZ_ENDS_SENT_CLOSE },
		{ "ack-early", PROTO_ACK, "", 0 },
		{ "error", PROTO_ERROR, "write to stdout: No space left",
		    FUZZ_CONNECT },
		{ "error-empty", PROTO_ERROR, "", 0 },
		{ "ping", PROTO_PING, "", FUZZ_ENDS_GOT_CLOSE },
		{ "type-6", 6, "", 0 },
	};
	struct buf b;
	char name[64];
	size_t i;
	int j;

	for (j = 0; j < 2; j++) {
		for (i = 0; i < sizeof(kinds) / sizeof(kinds[0]); i++) {
			packet(suites[j], kinds[i].flags, kinds[i].body,
			    strlen(kinds[i].body), kinds[i].type, 0, &b);
			snprintf(name, sizeof(name), "%s%s", pre[j],
			    kinds[i].name);
			save("open_packet", name, &b);
		}
		packet(suites[j], 0, "hello\n", 6, PROTO_DATA, 0, &b);
		/* One bit of the tag flipped. */
		b.b[1 + PROTO_LENBYTES + PROTO_NONCEBYTES] ^= 0x01;
		snprintf(name, sizeof(name), "%sdata-bad-tag", pre[j]);
		save("open_packet", name, &b);
		/* Authentic, but the second packet of the stream. */
		packet(suites[j], 0, "hello\n", 6, PROTO_DATA, 1, &b);
		snprintf(name, sizeof(name), "%sdata-nonce-1", pre[j]);
		save("open_packet", name, &b);
	}
	packet(PROTO_CLASSIC, 0, "hello", 5, 0, 0, &b);
	save("open_packet", "classic-line", &b);
	packet(PROTO_CLASSIC, 0, "", 0, 0, 0, &b);
	save("open_packet", "classic-empty", &b);
}

static void
seeds_text(void)
{
	struct buf b;
	int i;

	/* Key files. */
	b.len = 0;
	put_key(&b, FUZZ_KEY_INIT_S, 0);
	save("keyfile", "no-newline", &b);
	put_str(&b, "\n");
	save("keyfile", "identity", &b);
	put_key(&b, FUZZ_KEY_PSK, 0);
	put_str(&b, "\n");
	save("keyfile", "two-keys", &b);
	b.len = PROTO_B64LEN;
	put_str(&b, "\r\n");
	save("keyfile", "crlf", &b);
	/* The last base64 digit carries 2 bits that must be zero. */
	b.len = PROTO_B64LEN;
	b.b[PROTO_B64LEN - 2] = 'B';
	save("keyfile", "nonzero-pad-bits", &b);
	b.len = PROTO_B64LEN - 1;
	save("keyfile", "short", &b);
	b.len = 0;
	save("keyfile", "empty", &b);

	/* Key lists: --allow files and known_peers files. */
	b.len = 0;
	put_str(&b, "# friends\n");
	put_key(&b, FUZZ_KEY_INIT_S, 1);
	put_str(&b, " alice\n\t");
	put_key(&b, FUZZ_KEY_RESP_S, 1);
	put_str(&b, "\t bob  \n\n");
	save("keylists", "allow", &b);
	b.len = 0;
	put_str(&b, "other.example:22 ");
	put_key(&b, FUZZ_KEY_INIT_S, 1);
	put_str(&b, "\n" FUZZ_HOSTPORT " ");
	put_key(&b, FUZZ_KEY_RESP_S, 1);
	put_str(&b, "\n[::1]:5000 ");
	put_key(&b, FUZZ_KEY_RESP_S, 1);
	put_str(&b, "\n" FUZZ_HOSTPORT "\t");
	put_key(&b, FUZZ_KEY_INIT_S, 1);
	save("keylists", "known", &b);
	b.len = 0;
	put_str(&b, FUZZ_HOSTPORT " ");
	put_key(&b, FUZZ_KEY_RESP_S, 1);
	put_str(&b, " extra\n");
	save("keylists", "known-extra-word", &b);
	b.len = 0;
	put_str(&b, "# a comment that goes on too long:");
	for (i = 0; i < 1000; i++)
		put_byte(&b, 'x');
	put_str(&b, "\n");
	save("keylists", "long-line", &b);

	/* -l and -c arguments. */
	save_str("hostport", "ipv4", "127.0.0.1:5000");
	save_str("hostport", "ipv6", "[::1]:5000");
	save_str("hostport", "port-only", "5000");
	save_str("hostport", "any-port", "example.org:0");
	save_str("hostport", "port-too-big", "example.org:65536");
	save_str("hostport", "ipv6-bare", "::1:5000");
	save_str("hostport", "zone", "[fe80::1%eth0]:00022");
}

int
main(int argc, char **argv)
{

	if (argc != 2) {
		fprintf(stderr, "usage: mkseeds DIR\n");
		return (2);
	}
	outdir = argv[1];
	if (mkdir(outdir, 0777) == -1 && errno != EEXIST)
		die(outdir);
	if (randombytes_set_implementation(&rng) != 0)
		die("randombytes_set_implementation");
	fuzz_init();
	seeds_hs();
	seeds_hello();
	seeds_classic();
	seeds_packets();
	seeds_text();
	return (0);
}
