/*
 * digest.h - sha256 of consecutive blocks of one buffer (plain C, no N-API),
 * with the OpenSSL that Node itself carries (its symbols are the process's).
 *
 *   sn_sha256_blocks  the digests of data[0..lens[0]), the next lens[1]
 *                     bytes, ...: n digests of 32 bytes each into out
 */
#ifndef STRATA_DIGEST_H
#define STRATA_DIGEST_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* 0 on success, -1 when OpenSSL failed (out is then undefined). */
int sn_sha256_blocks(const uint8_t *data, const size_t *lens, size_t n,
                     uint8_t *out);

#ifdef __cplusplus
}
#endif

#endif
