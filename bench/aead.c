/*
 * How fast libsodium's AES-256-GCM seals and opens full packets (64 KiB of
 * plaintext) on one core of this machine.
 * Prints "seal MB/s open MB/s".  The bulk CPU time of x25519chat cannot
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

/* MB/s of sealing (open == 0) or opening (open == 1) one packet again and
 * again for SECONDS; -1 if a packet does not open. */
static double
rate(const crypto_aead_aes256gcm_state *st, int open)
{
	static unsigned char pkt[PLAIN], sealed[PLAIN];
	unsigned char nonce[crypto_aead_aes256gcm_NPUBBYTES] = { 0 };
	unsigned char tag[crypto_aead_aes256gcm_ABYTES];
	unsigned long long n = 0;
	double start, took;

	memset(pkt, 'x', sizeof(pkt));
	crypto_aead_aes256gcm_encrypt_detached_afternm(sealed, tag, NULL, pkt,
	    sizeof(pkt), NULL, 0, NULL, nonce, st);
	/* One nonce again and again: harmless for a key thrown away after. */
	start = now();
	do {
		if (!open)
			crypto_aead_aes256gcm_encrypt_detached_afternm(pkt, tag,
			    NULL, pkt, sizeof(pkt), NULL, 0, NULL, nonce, st);
		else if (crypto_aead_aes256gcm_decrypt_detached_afternm(pkt,
		    NULL, sealed, sizeof(sealed), tag, NULL, 0, nonce,
		    st) != 0)
			/* Out of place: the sealed packet stays sealed. */
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
	double seal, open;

	if (sodium_init() < 0 || !crypto_aead_aes256gcm_is_available()) {
		fprintf(stderr, "aead: AES-256-GCM is not available here\n");
		return (1);
	}
	randombytes_buf(key, sizeof(key));
	crypto_aead_aes256gcm_beforenm(&st, key);
	seal = rate(&st, 0);
	if ((open = rate(&st, 1)) < 0) {
		fprintf(stderr, "aead: a sealed packet did not open\n");
		return (1);
	}
	printf("%.0f %.0f\n", seal, open);
	return (0);
}
