// names.h - file names (and symlink targets, xattr names, paths) as bytes in C
// and as strings in JavaScript, losslessly (header-only: the FUSE bridge and
// the block-copy addon both include it, so the two native parts and the
// TypeScript code agree on one mapping; src/protocol/names.ts is its
// JavaScript twin).
//
// A Linux name is any bytes but '/' and NUL; it need not be UTF-8. Node's own
// conversions (napi_create_string_utf8, Buffer.toString) turn every byte that
// is not part of valid UTF-8 into U+FFFD, so "\xff" and "\xfe" became one
// name: a listing lost one of them, and the archive kept one file for two.
//
// The mapping: valid UTF-8 decodes to the characters it encodes, as before; a
// byte B (0x80-0xFF) that is not part of valid UTF-8 becomes the character
// U+F700 + B (U+F780-U+F7FF, in the Private Use Area). So that this is a
// bijection, the UTF-8 encodings of U+F780-U+F7FF themselves are taken as
// three such bytes (never as the character). Encoding reverses it: U+F780-
// U+F7FF becomes the single byte, everything else its UTF-8. Private Use
// characters (not lone surrogates, as Python's surrogateescape uses) because
// the strings travel through JSON, SQLite and Buffer, which keep valid
// Unicode as it is and would replace a lone surrogate. Names that are valid
// UTF-8 and use no U+F780-U+F7FF are the same strings as before.
#ifndef STRATA_NAMES_H
#define STRATA_NAMES_H

#include <stddef.h>
#include <stdint.h>

#define SN_NAME_ESC_FIRST 0xF780u
#define SN_NAME_ESC_LAST 0xF7FFu

static inline int sn_name_cont (unsigned char c) {
  return (c & 0xC0) == 0x80;
}

// Decodes `len` bytes into UTF-16 `out` (room for `len` units: no byte gives
// more than one unit, a 4-byte sequence two). Returns the units written.
static inline size_t sn_name_decode (const unsigned char *s, size_t len, uint16_t *out) {
  size_t i = 0, n = 0;
  while (i < len) {
    unsigned char c = s[i];
    uint32_t cp = 0;
    size_t k = 0;
    if (c < 0x80) {
      cp = c;
      k = 1;
    } else if (c >= 0xC2 && c <= 0xDF) {
      if (i + 1 < len && sn_name_cont(s[i + 1])) { cp = ((uint32_t) (c & 0x1F) << 6) | (s[i + 1] & 0x3F); k = 2; }
    } else if (c >= 0xE0 && c <= 0xEF) {
      if (i + 2 < len && sn_name_cont(s[i + 1]) && sn_name_cont(s[i + 2])) {
        cp = ((uint32_t) (c & 0x0F) << 12) | ((uint32_t) (s[i + 1] & 0x3F) << 6) | (s[i + 2] & 0x3F);
        // Overlong forms and surrogates are not UTF-8; nor, here, the escape range.
        if (cp >= 0x800 && !(cp >= 0xD800 && cp <= 0xDFFF) && !(cp >= SN_NAME_ESC_FIRST && cp <= SN_NAME_ESC_LAST)) k = 3;
      }
    } else if (c >= 0xF0 && c <= 0xF4) {
      if (i + 3 < len && sn_name_cont(s[i + 1]) && sn_name_cont(s[i + 2]) && sn_name_cont(s[i + 3])) {
        cp = ((uint32_t) (c & 0x07) << 18) | ((uint32_t) (s[i + 1] & 0x3F) << 12) | ((uint32_t) (s[i + 2] & 0x3F) << 6) | (s[i + 3] & 0x3F);
        if (cp >= 0x10000 && cp <= 0x10FFFF) k = 4;
      }
    }
    if (k == 0) {
      out[n++] = (uint16_t) (0xF700u + c);
      i++;
    } else if (cp >= 0x10000) {
      cp -= 0x10000;
      out[n++] = (uint16_t) (0xD800u + (cp >> 10));
      out[n++] = (uint16_t) (0xDC00u + (cp & 0x3FF));
      i += k;
    } else {
      out[n++] = (uint16_t) cp;
      i += k;
    }
  }
  return n;
}

// Encodes `n` UTF-16 units into `out` (room for 3 * n bytes). Returns the bytes
// written. A lone surrogate (no decoded name has one) becomes U+FFFD, as Node's
// own encoder makes it.
static inline size_t sn_name_encode (const uint16_t *u, size_t n, unsigned char *out) {
  size_t i = 0, o = 0;
  while (i < n) {
    uint32_t c = u[i++];
    if (c >= SN_NAME_ESC_FIRST && c <= SN_NAME_ESC_LAST) {
      out[o++] = (unsigned char) (c - 0xF700u);
      continue;
    }
    if (c >= 0xD800 && c <= 0xDBFF && i < n && u[i] >= 0xDC00 && u[i] <= 0xDFFF) {
      c = 0x10000 + ((c - 0xD800) << 10) + (u[i++] - 0xDC00);
    } else if (c >= 0xD800 && c <= 0xDFFF) {
      c = 0xFFFD;
    }
    if (c < 0x80) {
      out[o++] = (unsigned char) c;
    } else if (c < 0x800) {
      out[o++] = (unsigned char) (0xC0 | (c >> 6));
      out[o++] = (unsigned char) (0x80 | (c & 0x3F));
    } else if (c < 0x10000) {
      out[o++] = (unsigned char) (0xE0 | (c >> 12));
      out[o++] = (unsigned char) (0x80 | ((c >> 6) & 0x3F));
      out[o++] = (unsigned char) (0x80 | (c & 0x3F));
    } else {
      out[o++] = (unsigned char) (0xF0 | (c >> 18));
      out[o++] = (unsigned char) (0x80 | ((c >> 12) & 0x3F));
      out[o++] = (unsigned char) (0x80 | ((c >> 6) & 0x3F));
      out[o++] = (unsigned char) (0x80 | (c & 0x3F));
    }
  }
  return o;
}

#ifdef NAPI_VERSION
#include <stdlib.h>
#include <string.h>

// The JavaScript string of a name of `len` bytes (ASCII takes the short way).
static inline napi_status sn_js_name (napi_env env, const char *s, size_t len, napi_value *out) {
  size_t i = 0;
  while (i < len && (unsigned char) s[i] < 0x80) i++;
  if (i == len) return napi_create_string_latin1(env, s, len, out);
  uint16_t stackbuf[512];
  uint16_t *u = len <= 512 ? stackbuf : (uint16_t *) malloc(len * sizeof(uint16_t));
  if (u == NULL) return napi_generic_failure;
  size_t n = sn_name_decode((const unsigned char *) s, len, u);
  napi_status st = napi_create_string_utf16(env, (const char16_t *) u, n, out);
  if (u != stackbuf) free(u);
  return st;
}

// The bytes of the name in JavaScript string `v`, NUL-terminated, in a malloc'd
// buffer (*out; free() it) of *len bytes. napi_string_expected for a non-string.
static inline napi_status sn_js_name_bytes (napi_env env, napi_value v, char **out, size_t *len) {
  size_t n = 0;
  napi_status st = napi_get_value_string_utf16(env, v, NULL, 0, &n);
  if (st != napi_ok) return st;
  uint16_t *u = (uint16_t *) malloc((n + 1) * sizeof(uint16_t));
  char *b = (char *) malloc(3 * n + 1);
  if (u == NULL || b == NULL) { free(u); free(b); return napi_generic_failure; }
  st = napi_get_value_string_utf16(env, v, (char16_t *) u, n + 1, &n);
  if (st != napi_ok) { free(u); free(b); return st; }
  size_t o = sn_name_encode(u, n, (unsigned char *) b);
  free(u);
  b[o] = '\0';
  *out = b;
  *len = o;
  return napi_ok;
}
#endif

#endif
