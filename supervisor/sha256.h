/*
 * sha256: the SHA-256 hash (FIPS 180-4), incremental.
 *
 * Owns the arithmetic only: no I/O, no allocation, so the `sha256` task can
 * feed it file blocks between checkpoints.
 */
#ifndef HKX_SHA256_H
#define HKX_SHA256_H

#include <stddef.h>
#include <stdint.h>

#define SHA256_DIGEST_LEN 32
#define SHA256_HEX_LEN (2 * SHA256_DIGEST_LEN)

struct sha256 {
	uint32_t state[8];
	uint64_t length;        /* bytes hashed so far */
	uint8_t block[64];
	size_t used;            /* bytes waiting in block */
};

void sha256_init(struct sha256 *h);
void sha256_update(struct sha256 *h, const void *data, size_t len);
void sha256_final(struct sha256 *h, uint8_t digest[SHA256_DIGEST_LEN]);
/* Lowercase hex digest, NUL-terminated. */
void sha256_hex(const uint8_t digest[SHA256_DIGEST_LEN], char hex[SHA256_HEX_LEN + 1]);

#endif
