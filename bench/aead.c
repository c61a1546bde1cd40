/*
 * How fast libsodium's two AEADs seal and open full packets (64 KiB of
 * plaintext) on one core of this machine: AES-256-GCM (with its key
 * expanded once, as the transport does) and the IETF ChaCha20-Poly1305.
 * Prints "aes-seal aes-open chacha-seal chacha-open" in MB/s, AES as 0 0
 * on a CPU without hardware AES.  The bulk CPU time of x25519chat cannot
 * fall below what these rates imply; bench.py prints that floor.
 */
#include <stdio.h>
#include <string.h>
#include <time.h>

#include <sodium.h>

#define PLAIN		65536
#define SECONDS		0.5

static double
now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ((double)ts.tv_sec + (double)ts.tv_nsec / 1e9);
}

/* One AEAD: seal in place, or open out of place; 0, or -1 on a bad tag. */
static int
step(int chacha, const crypto_aead_aes256gcm_state *st,
    const unsigned char *key, int open, unsigned char *pkt,
    const unsigned char *sealed, unsigned char *tag)
{
	unsigned char nonce[crypto_aead_aes256gcm_NPUBBYTES] = { 0 };

	/* One nonce again and again: harmless for a key thrown away after. */
	if (!open && chacha)
		return (crypto_aead_chacha20poly1305_ietf_encrypt_detached(pkt,
		    tag, NULL, pkt, PLAIN, NULL, 0, NULL, nonce, key));
	if (!open)
		return (crypto_aead_aes256gcm_encrypt_detached_afternm(pkt, tag,
		    NULL, pkt, PLAIN, NULL, 0, NULL, nonce, st));
	if (chacha)
		return (crypto_aead_chacha20poly1305_ietf_decrypt_detached(pkt,
		    NULL, sealed, PLAIN, tag, NULL, 0, nonce, key));
	return (crypto_aead_aes256gcm_decrypt_detached_afternm(pkt, NULL,
	    sealed, PLAIN, tag, NULL, 0, nonce, st));
}

/* MB/s of sealing (open == 0) or opening (open == 1) one packet again and
 * again for SECONDS; -1 if a packet does not open. */
static double
rate(int chacha, const crypto_aead_aes256gcm_state *st,
    const unsigned char *key, int open)
{
	static unsigned char pkt[PLAIN], sealed[PLAIN];
	unsigned char tag[crypto_aead_aes256gcm_ABYTES];
	unsigned long long n = 0;
	double start, took;

	memset(pkt, 'x', sizeof(pkt));
	memcpy(sealed, pkt, sizeof(sealed));
	if (step(chacha, st, key, 0, sealed, NULL, tag) != 0)
		return (-1);
	start = now();
	do {
		/* Out of place: the sealed packet stays sealed. */
		if (step(chacha, st, key, open, pkt, sealed, tag) != 0)
			return (-1);
		n++;
	} while ((took = now() - start) < SECONDS);
	return ((double)n * sizeof(pkt) / took / 1e6);
}

int
main(void)
{
	crypto_aead_aes256gcm_state st;
	unsigned char key[crypto_aead_aes256gcm_KEYBYTES];
	double r[4] = { 0, 0, 0, 0 };
	int i;

	if (sodium_init() < 0) {
		fprintf(stderr, "aead: cannot initialise libsodium\n");
		return (1);
	}
	randombytes_buf(key, sizeof(key));
	for (i = 0; i < 4; i++) {
		/* libsodium's AES-256-GCM would fault without hardware AES. */
		if (i < 2 && !crypto_aead_aes256gcm_is_available())
			continue;
		if (i < 2)
			crypto_aead_aes256gcm_beforenm(&st, key);
		if ((r[i] = rate(i >= 2, &st, key, i % 2)) < 0) {
			fprintf(stderr, "aead: a sealed packet did not open\n");
			return (1);
		}
	}
	printf("%.0f %.0f %.0f %.0f\n", r[0], r[1], r[2], r[3]);
	return (0);
}
