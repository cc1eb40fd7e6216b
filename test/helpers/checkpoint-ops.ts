// Seeded random changes for the checkpoint tests: each step picks an object
// of the live tree under some roots and changes it through `Actions` (the
// filesystem core in unit tests, a real mount in integration tests). Steps
// that fail (a rename into its own subtree, rmdir of a full directory) are
// part of the game: only the trees are compared afterwards.
import * as fsp from 'node:fs/promises';
import { join } from 'node:path';
import { Rng, byteName, randomTime, readdirNames } from './model-tree.js';

export interface Actions {
  write(path: string, offset: number, data: Buffer): Promise<void>;
  truncate(path: string, size: number): Promise<void>;
  create(path: string, data: Buffer): Promise<void>;
  mkdir(path: string): Promise<void>;
  unlink(path: string): Promise<void>;
  rmdir(path: string): Promise<void>;
  rename(from: string, to: string): Promise<void>;
  link(from: string, to: string): Promise<void>;
  symlink(target: string, path: string): Promise<void>;
  chmod(path: string, mode: number): Promise<void>;
  chown(path: string, uid: number, gid: number): Promise<void>;
  utimes(path: string, sec: number, nsec: number): Promise<void>;
  setxattr(path: string, name: string, value: Buffer): Promise<void>;
  removexattr(path: string, name: string): Promise<void>;
}

interface Entry { path: string; kind: 'file' | 'dir' | 'symlink' }

/** Every object under `roots` (namespace paths '/a/b'), read from the tree at `base` (the store root or the mountpoint). */
export async function listTree(base: string, roots: string[]): Promise<Entry[]> {
  const out: Entry[] = [];
  const walk = async (p: string): Promise<void> => {
    let st;
    try {
      st = await fsp.lstat(byteName(join(base, p)));
    } catch {
      return;
    }
    const kind = st.isDirectory() ? 'dir' : st.isSymbolicLink() ? 'symlink' : 'file';
    out.push({ path: p, kind });
    if (kind === 'dir') for (const n of (await readdirNames(join(base, p))).sort()) await walk(`${p}/${n}`);
  };
  for (const r of roots) await walk(r);
  return out;
}

const NAMES = ['a', 'b', 'c', 'dir', 'x.db', 'log', 'z'];

function bytes(rng: Rng, n: number): Buffer {
  const b = Buffer.alloc(n);
  const v = rng.int(0, 256 - 1);
  for (let i = 0; i < n; i++) b[i] = (v + i * 7 + (i >> 9)) & 0xff;
  return b;
}

/** One random step under `roots`; returns a description (for failures) or null when it failed harmlessly. */
export async function randomStep(rng: Rng, base: string, roots: string[], act: Actions): Promise<string | null> {
  const all = await listTree(base, roots);
  const dirs = all.filter((e) => e.kind === 'dir');
  const files = all.filter((e) => e.kind === 'file');
  const any = all.filter((e) => !roots.includes(e.path));
  const newName = (): string => `${rng.pick(dirs).path}/${rng.pick(NAMES)}${rng.int(0, 3 - 1)}`;
  const sizes = [0, 1, 100, 4096, 65535, 65536, 65537, 200_000, 300_000];
  const op = rng.int(0, 16 - 1);
  let desc = '';
  try {
    switch (op) {
      case 0: case 1: case 2: {
        if (files.length === 0) return null;
        const f = rng.pick(files).path;
        const off = rng.pick([0, 10, 4096, 65530, 65536, 131072, 250_000]);
        const len = rng.pick([1, 100, 5000, 65536, 70_000, 140_000]);
        desc = `write ${f} ${off}+${len}`;
        await act.write(f, off, bytes(rng, len));
        break;
      }
      case 3: {
        if (files.length === 0) return null;
        const f = rng.pick(files).path;
        const size = rng.pick(sizes);
        desc = `truncate ${f} ${size}`;
        await act.truncate(f, size);
        break;
      }
      case 4: case 5: {
        const p = newName();
        const size = rng.pick(sizes);
        desc = `create ${p} ${size}`;
        await act.create(p, bytes(rng, size));
        break;
      }
      case 6: {
        const p = newName();
        desc = `mkdir ${p}`;
        await act.mkdir(p);
        break;
      }
      case 7: {
        const e = any.filter((x) => x.kind !== 'dir');
        if (e.length === 0) return null;
        const p = rng.pick(e).path;
        desc = `unlink ${p}`;
        await act.unlink(p);
        break;
      }
      case 8: {
        const e = any.filter((x) => x.kind === 'dir');
        if (e.length === 0) return null;
        const p = rng.pick(e).path;
        desc = `rmdir ${p}`;
        await act.rmdir(p);
        break;
      }
      case 9: case 10: {
        if (any.length === 0) return null;
        const from = rng.pick(any).path;
        const to = rng.int(0, 3 - 1) === 0 && files.length > 0 ? rng.pick(files).path : newName();
        desc = `rename ${from} ${to}`;
        await act.rename(from, to);
        break;
      }
      case 11: {
        if (files.length === 0) return null;
        const from = rng.pick(files).path;
        const to = newName();
        desc = `link ${from} ${to}`;
        await act.link(from, to);
        break;
      }
      case 12: {
        const p = newName();
        desc = `symlink ${p}`;
        await act.symlink(rng.pick(['a', '../b', 'nowhere/x']), p);
        break;
      }
      case 13: {
        const e = any.filter((x) => x.kind !== 'symlink');
        if (e.length === 0) return null;
        const p = rng.pick(e).path;
        if (rng.int(0, 2 - 1) === 0) {
          const mode = rng.pick([0o644, 0o600, 0o755, 0o4755, 0o700]);
          desc = `chmod ${p} ${mode.toString(8)}`;
          await act.chmod(p, mode);
        } else {
          const [u, g] = rng.pick([[0, 0], [1000, 1000], [1234, 5678]] as const);
          desc = `chown ${p} ${u}:${g}`;
          await act.chown(p, u, g);
        }
        break;
      }
      case 14: {
        if (any.length === 0) return null;
        const p = rng.pick(any.filter((x) => x.kind !== 'symlink').concat(dirs)).path;
        const { sec, nsec } = randomTime(rng);
        desc = `utimes ${p} ${sec}.${nsec}`;
        await act.utimes(p, sec, nsec);
        break;
      }
      case 15: {
        const e = all.filter((x) => x.kind !== 'symlink');
        const p = rng.pick(e).path;
        const name = rng.pick(['user.a', 'user.b']);
        const kind = rng.int(0, 6 - 1);
        if (kind === 4) {
          // Its xattr space filled, as a program may fill it (the first ENOSPC of each size ends that size):
          // a rollback must put back exactly the set it had, and ext4 packs them by the order they are set in.
          desc = `fill xattrs of ${p}`;
          await fillXattrs(act, p, rng.int(0, 255));
        } else if (kind === 5) {
          // Room made differently: one 200-byte attribute gone, others of smaller sizes in its place.
          const k = rng.int(0, 20);
          desc = `refill xattrs of ${p} (user.f200_${k})`;
          await act.removexattr(p, `user.f200_${k}`).catch(() => {});
          for (let i = 0; i < 6; i++) await act.setxattr(p, `user.r${k}_${i}`, bytes(rng, rng.pick([1, 10, 30]))).catch(() => {});
        } else if (kind < 2) {
          desc = `removexattr ${p} ${name}`;
          await act.removexattr(p, name);
        } else {
          desc = `setxattr ${p} ${name}`;
          await act.setxattr(p, name, bytes(rng, 1 + rng.int(0, 40 - 1)));
        }
        break;
      }
    }
  } catch {
    return null;
  }
  return desc;
}

/** Sets `user.f<size>_<i>` xattrs of 200, 50, 10 and 1 bytes on `path` until the file system has no room for one more of each size. */
async function fillXattrs(act: Actions, path: string, byte: number): Promise<void> {
  for (const size of [200, 50, 10, 1]) {
    for (let i = 0; i < 40; i++) {
      try {
        await act.setxattr(path, `user.f${size}_${i}`, Buffer.alloc(size, byte));
      } catch {
        break;
      }
    }
  }
}
