// File names (and symlink targets, xattr names, paths) as bytes on disk and as
// strings in strata, losslessly: the JavaScript twin of the native mapping in
// native/fuse-native/src/names.h, which the FUSE bridge and the addon apply
// at every boundary where a name crosses between bytes and a string.
//
// A Linux name is any bytes but '/' and NUL, not necessarily UTF-8. Valid
// UTF-8 is the string it encodes; a byte B (0x80-0xFF) that is not part of
// valid UTF-8 is the character U+F700 + B (U+F780-U+F7FF, Private Use), and
// the UTF-8 encodings of U+F780-U+F7FF themselves count as such bytes, so
// the mapping is a bijection. The strings are valid Unicode: JSON, SQLite and
// Buffer keep them as they are. Only where strata itself turns a name into
// bytes (a byte length, a listxattr reply) must it use nameBytes, not Buffer.
const ESC_FIRST = 0xf780;
const ESC_LAST = 0xf7ff;

function isEscape(code: number): boolean {
  return code >= ESC_FIRST && code <= ESC_LAST;
}

/** The bytes of a name as strata holds it (the inverse of nameFromBytes). */
export function nameBytes(name: string): Buffer {
  let plain = true;
  for (let i = 0; i < name.length; i++) {
    if (isEscape(name.charCodeAt(i))) { plain = false; break; }
  }
  if (plain) return Buffer.from(name, 'utf8');
  const parts: Buffer[] = [];
  let run = '';
  for (const ch of name) {
    const code = ch.codePointAt(0)!;
    if (isEscape(code)) {
      if (run !== '') { parts.push(Buffer.from(run, 'utf8')); run = ''; }
      parts.push(Buffer.of(code - 0xf700));
    } else {
      run += ch;
    }
  }
  if (run !== '') parts.push(Buffer.from(run, 'utf8'));
  return Buffer.concat(parts);
}

/** How many bytes the name has on disk (what NAME_MAX and PATH_MAX count). */
export function nameByteLength(name: string): number {
  let n = Buffer.byteLength(name, 'utf8');
  // An escape character is 3 bytes of UTF-8 but stands for 1 byte.
  for (let i = 0; i < name.length; i++) if (isEscape(name.charCodeAt(i))) n -= 2;
  return n;
}

/** The string strata holds for a name's bytes (as the native side makes it). */
export function nameFromBytes(b: Uint8Array): string {
  let out = '';
  let i = 0;
  const len = b.length;
  const cont = (k: number): boolean => k < len && (b[k]! & 0xc0) === 0x80;
  while (i < len) {
    const c = b[i]!;
    let cp = -1;
    let k = 0;
    if (c < 0x80) {
      cp = c; k = 1;
    } else if (c >= 0xc2 && c <= 0xdf) {
      if (cont(i + 1)) { cp = ((c & 0x1f) << 6) | (b[i + 1]! & 0x3f); k = 2; }
    } else if (c >= 0xe0 && c <= 0xef) {
      if (cont(i + 1) && cont(i + 2)) {
        const v = ((c & 0x0f) << 12) | ((b[i + 1]! & 0x3f) << 6) | (b[i + 2]! & 0x3f);
        if (v >= 0x800 && !(v >= 0xd800 && v <= 0xdfff) && !isEscape(v)) { cp = v; k = 3; }
      }
    } else if (c >= 0xf0 && c <= 0xf4) {
      if (cont(i + 1) && cont(i + 2) && cont(i + 3)) {
        const v = ((c & 0x07) << 18) | ((b[i + 1]! & 0x3f) << 12) | ((b[i + 2]! & 0x3f) << 6) | (b[i + 3]! & 0x3f);
        if (v >= 0x10000 && v <= 0x10ffff) { cp = v; k = 4; }
      }
    }
    if (k === 0) {
      out += String.fromCharCode(0xf700 + c);
      i++;
    } else {
      out += String.fromCodePoint(cp);
      i += k;
    }
  }
  return out;
}

/**
 * A name for people to read (strata verify's text output): the bytes that are
 * not UTF-8 as \xNN, a backslash doubled (so the form is unambiguous),
 * everything else as it is.
 */
export function displayName(name: string): string {
  let out = '';
  for (const ch of name) {
    const code = ch.codePointAt(0)!;
    if (isEscape(code)) out += `\\x${(code - 0xf700).toString(16)}`;
    else if (ch === '\\') out += '\\\\';
    else out += ch;
  }
  return out;
}
