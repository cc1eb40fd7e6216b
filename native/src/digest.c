/* digest.c - see digest.h. */
#include "digest.h"

#include <openssl/evp.h>

int sn_sha256_blocks(const uint8_t *data, const size_t *lens, size_t n,
                     uint8_t *out) {
  EVP_MD_CTX *ctx = EVP_MD_CTX_new();
  if (ctx == NULL) return -1;
  const EVP_MD *md = EVP_sha256();
  int rc = 0;
  size_t at = 0;
  for (size_t i = 0; i < n && rc == 0; i++) {
    unsigned int len = 0;
    if (EVP_DigestInit_ex(ctx, md, NULL) != 1 ||
        EVP_DigestUpdate(ctx, data + at, lens[i]) != 1 ||
        EVP_DigestFinal_ex(ctx, out + 32 * i, &len) != 1 || len != 32)
      rc = -1;
    at += lens[i];
  }
  EVP_MD_CTX_free(ctx);
  return rc;
}
