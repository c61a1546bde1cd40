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
 * One Noise handshake between the fixed connector and listener, in memory:
 * message 1 with payload p1, 2 with p2, 3 with p3.
 */
static void
noise(int psk, const char *p1, const char *p2, const char *p3,
    struct buf m[3])
{
	struct proto_hs *init, *resp;

	init = fuzz_hs(1, 0, psk);
	resp = fuzz_hs(0, 0, psk);
	hs_write(init, p1, &m[0]);
	hs_read(resp, &m[0]);
	hs_write(resp, p2, &m[1]);
	hs_read(init, &m[1]);
	hs_write(init, p3, &m[2]);
	hs_read(resp, &m[2]);
	proto_hs_free(init);
	proto_hs_free(resp);
}

static void
seeds_hs(void)
{
	static const char *pskname[2] = { "nopsk", "psk" };
	struct buf m[3], in;
	char name[64];
	uint8_t f;
	int psk;

	for (psk = 0; psk < 2; psk++) {
		f = psk ? FUZZ_PSK : 0;
		/* The messages as the program sends them, names included. */
		noise(psk, NULL, FUZZ_NAME_RESP, FUZZ_NAME_INIT, m);
		snprintf(name, sizeof(name), "%s", pskname[psk]);
		save_flagged("hs_msg1", name, f, &m[0]);
		snprintf(name, sizeof(name), "%s-name", pskname[psk]);
		save_flagged("hs_msg2", name, f, &m[1]);
		save_flagged("hs_msg3", name, f, &m[2]);

		/* handshake_fd: the listener reads 1 and 3, the connector
		 * reads 2; with verify accepting and refusing. */
		in.len = 0;
		put_framed(&in, &m[0]);
		put_framed(&in, &m[2]);
		snprintf(name, sizeof(name), "listen-%s", pskname[psk]);
		save_flagged("handshake_fd", name, f, &in);
		snprintf(name, sizeof(name), "listen-%s-refuse", pskname[psk]);
		save_flagged("handshake_fd", name, f | FUZZ_REFUSE, &in);
		in.len = 0;
		put_framed(&in, &m[1]);
		snprintf(name, sizeof(name), "connect-%s", pskname[psk]);
		save_flagged("handshake_fd", name, f | FUZZ_CONNECT, &in);
		snprintf(name, sizeof(name), "connect-%s-refuse",
		    pskname[psk]);
		save_flagged("handshake_fd", name,
		    f | FUZZ_CONNECT | FUZZ_REFUSE, &in);

		/* Without names. */
		noise(psk, NULL, NULL, NULL, m);
		snprintf(name, sizeof(name), "%s-noname", pskname[psk]);
		save_flagged("hs_msg2", name, f, &m[1]);
		noise(psk, NULL, FUZZ_NAME_RESP, NULL, m);
		save_flagged("hs_msg3", name, f, &m[2]);
		in.len = 0;
		put_framed(&in, &m[0]);
		put_framed(&in, &m[2]);
		snprintf(name, sizeof(name), "listen-%s-noname", pskname[psk]);
		save_flagged("handshake_fd", name, f, &in);
		in.len = 0;
		put_framed(&in, &m[0]);
		snprintf(name, sizeof(name), "listen-%s-cut", pskname[psk]);
		save_flagged("handshake_fd", name, f, &in);

		/* Message 1 with a payload: proto_hs_read() takes it, and
		 * proto_handshake() refuses it. */
		noise(psk, "hello", FUZZ_NAME_RESP, FUZZ_NAME_INIT, m);
		snprintf(name, sizeof(name), "%s-payload", pskname[psk]);
		save_flagged("hs_msg1", name, f, &m[0]);
	}
}

static void
seeds_classic(void)
{
	struct proto_hs *init, *resp;
	struct buf m[2], in;
	int i;

	/* The listener writes its key first. */
	init = fuzz_hs(1, 1, 0);
	resp = fuzz_hs(0, 1, 0);
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

/* Seal body (type byte first, unless classic) as the n-th packet. */
static void
packet(int classic, const char *body, size_t bodylen, int type, int n,
    struct buf *out)
{
	uint8_t key[PROTO_KEYBYTES], pkt[PROTO_HDRBYTES + 256];
	struct proto_cipher *c;
	size_t ptlen = 0;
	int i;

	fuzz_key(key, FUZZ_KEY_TRANSPORT);
	if ((c = proto_cipher_new(key, classic)) == NULL)
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
	put_byte(out, classic ? FUZZ_CLASSIC : 0);
	put(out, pkt, PROTO_HDRBYTES + ptlen);
}

static void
seeds_packets(void)
{
	struct buf b;

	packet(0, "hello\n", 6, PROTO_DATA, 0, &b);
	save("open_packet", "data", &b);
	/* One bit of the tag flipped. */
	b.b[1 + PROTO_LENBYTES + PROTO_NONCEBYTES] ^= 0x01;
	save("open_packet", "data-bad-tag", &b);
	packet(0, "", 0, PROTO_DATA, 0, &b);
	save("open_packet", "data-empty", &b);
	packet(0, "", 0, PROTO_CLOSE, 0, &b);
	save("open_packet", "close", &b);
	packet(0, "", 0, PROTO_REKEY, 0, &b);
	save("open_packet", "rekey", &b);
	/* Authentic, but the second packet of the stream. */
	packet(0, "hello\n", 6, PROTO_DATA, 1, &b);
	save("open_packet", "data-nonce-1", &b);
	packet(1, "hello", 5, 0, 0, &b);
	save("open_packet", "classic-line", &b);
	packet(1, "", 0, 0, 0, &b);
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
	seeds_classic();
	seeds_packets();
	seeds_text();
	return (0);
}
