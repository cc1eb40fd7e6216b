// File names that are not UTF-8 (src/protocol/names.ts, native names.h): a
// seeded random set of byte strings must round-trip through strata's strings
// both in JavaScript and through the addon against the kernel (a directory
// written with the raw bytes by Node's Buffer paths), and valid UTF-8 names
// must stay the strings they always were.
import test from 'ava';
import { mkdtempSync, rmSync } from 'node:fs';
import fsp from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { displayName, nameByteLength, nameBytes, nameFromBytes } from '../../src/protocol/names.js';
import { StoreDir } from '../../src/store/store-dir.js';
import { Rng } from '../helpers/model-tree.js';

const SEED = Number(process.env.STRATA_NAMES_SEED ?? Date.now() % 1_000_000_007);

/** A name: random bytes (no '/' or NUL), biased towards the interesting ones. */
function randomName(rng: Rng): Buffer {
  const len = rng.int(1, rng.chance(0.1) ? 255 : 12);
  const out: number[] = [];
  while (out.length < len) {
    const pick = rng.int(0, 9);
    if (pick < 3) out.push(rng.int(0x20, 0x7e));
    else if (pick < 5) out.push(rng.int(0x80, 0xff));
    else if (pick < 6) out.push(...Buffer.from(rng.pick(['é', 'ß', '日', '🙂', 'Ω'])));
    else if (pick < 7) out.push(0xef, 0x9e, rng.int(0x80, 0xbf)); // UTF-8 of U+F780-U+F7BF: the escape range
    else if (pick < 8) out.push(0xed, rng.int(0xa0, 0xbf), rng.int(0x80, 0xbf)); // a surrogate's UTF-8: not UTF-8
    else if (pick < 9) out.push(0xc0 | rng.int(0, 1), rng.int(0x80, 0xbf)); // overlong
    else out.push(0xf4, rng.int(0x90, 0xbf), 0x80, 0x80); // beyond U+10FFFF
  }
  const b = Buffer.from(out.slice(0, len).map((c) => (c === 0x2f || c === 0 ? 0x41 : c)));
  return b.equals(Buffer.from('.')) || b.equals(Buffer.from('..')) ? Buffer.from('dot') : b;
}

test(`names: bytes → string → bytes is the identity, and the byte length is counted right (seed ${SEED})`, (t) => {
  const rng = new Rng(SEED);
  for (let i = 0; i < 20_000; i++) {
    const b = randomName(rng);
    const s = nameFromBytes(b);
    t.true(nameBytes(s).equals(b), `${b.toString('hex')} → ${JSON.stringify(s)}`);
    t.is(nameByteLength(s), b.length);
    if (t.passed === false) return;
  }
  // Valid UTF-8 outside the escape range is the string it always was.
  for (const s of ['plain', 'café', '日本語', 'emoji-🙂', 'Ω≈ç√', 'x'.repeat(255)]) {
    t.is(nameFromBytes(Buffer.from(s)), s);
    t.true(nameBytes(s).equals(Buffer.from(s)));
  }
  t.is(nameFromBytes(Buffer.from([0x63, 0x61, 0x66, 0xe9])), 'caf\uf7e9', 'a Latin-1 byte is U+F700 + the byte');
  t.is(nameFromBytes(Buffer.from([0xef, 0x9e, 0x80])), '\uf7ef\uf79e\uf780', 'the UTF-8 of U+F780 is three bytes, not the character');
  t.is(displayName(nameFromBytes(Buffer.from('caf\xe9-\\-é', 'latin1'))), 'caf\\xe9-\\\\-\\xe9', 'for people: \\xNN, a backslash doubled');
  t.is(displayName('café'), 'café');
});

test(`names: the addon gives and takes the same strings for the same bytes, against the kernel (seed ${SEED})`, async (t) => {
  const base = mkdtempSync(join(tmpdir(), 'strata-names-'));
  t.teardown(() => rmSync(base, { recursive: true, force: true }));
  const rng = new Rng(SEED + 1);
  const made = new Map<string, Buffer>();
  for (let i = 0; i < 300; i++) {
    const b = randomName(rng);
    if (made.has(b.toString('hex'))) continue;
    made.set(b.toString('hex'), b);
    const p = Buffer.concat([Buffer.from(`${base}/`), b]);
    if (i % 3 === 0) await fsp.mkdir(p);
    else if (i % 3 === 1) await fsp.writeFile(p, b);
    else await fsp.symlink(b, p); // the target is the name's bytes too
  }
  const dir = await StoreDir.openRoot(base);
  try {
    const listed = (await dir.readdirIno('.')).map((e) => e.name).sort();
    t.deepEqual(listed, [...made.values()].map((b) => nameFromBytes(b)).sort(), 'readdir names');
    t.deepEqual((await dir.scanDir('.', false)).map((e) => e.name).sort(), listed, 'scanDir names');
    for (const b of made.values()) {
      const s = nameFromBytes(b);
      const st = await dir.lstat(s);
      if (st.isSymbolicLink()) t.is(await dir.readlink(s), s, 'readlink target');
      if (st.isFile()) {
        // An xattr name of the name's first 100 bytes (a cut inside a UTF-8 sequence leaves bytes that are not UTF-8: fine).
        const xname = nameFromBytes(Buffer.concat([Buffer.from('user.'), b.subarray(0, 100)]));
        await dir.setxattr(s, xname, Buffer.from('v'), 0);
        const names = await dir.listxattr(s);
        t.true(names.includes(xname), 'listxattr name');
        // The kernel saw the bytes: Node's Buffer path reads the xattr'd file's content.
        t.true((await fsp.readFile(Buffer.concat([Buffer.from(`${base}/`), b]))).equals(b));
      }
    }
    // A name written through the addon lands as the bytes it stands for.
    await dir.mkdir('new-\uf7ff\uf7fe', 0o755);
    t.true((await fsp.readdir(base, { encoding: 'buffer' })).some((n) => n.equals(Buffer.from([0x6e, 0x65, 0x77, 0x2d, 0xff, 0xfe]))));
  } finally {
    dir.close();
  }
});
