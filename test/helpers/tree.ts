// A comparable picture of a directory tree: names, types, modes, owners, sizes,
// content digests, symlink targets, xattrs, mtimes (ns) and hard-link groups.
import { lstat, readdir, readFile, readlink } from 'node:fs/promises';
import { createHash } from 'node:crypto';
import { join } from 'node:path';
import { listxattr, getxattr } from '../../src/native/index.js';
import { typeOfMode } from '../../src/protocol/records.js';

export interface EntryPicture {
  type: string;
  mode: string;
  uid: number;
  gid: number;
  size?: number;
  sha256?: string;
  target?: string;
  nlink: number;
  mtimeNs?: string;
  /** Index of the first path of this inode in the sorted walk (hard links share it). */
  linkGroup?: string;
  xattrs?: Record<string, string>;
}

export interface PictureOptions {
  /** Include directory mtimes (they change with every entry added). */
  dirMtimes?: boolean;
  /** Include mtimes of files and symlinks. */
  mtimes?: boolean;
  /** Files whose content is not compared (only their existence and type). */
  ignoreContent?: RegExp;
  /** Names to leave out at the top level. */
  ignoreTop?: string[];
}


export async function pictureOf(root: string, opts: PictureOptions = {}): Promise<Record<string, EntryPicture>> {
  const out: Record<string, EntryPicture> = {};
  const inodes = new Map<bigint, string>();
  async function walk(rel: string): Promise<void> {
    const names = (await readdir(join(root, rel))).sort();
    for (const name of names) {
      if (rel === '' && opts.ignoreTop?.includes(name)) continue;
      const r = rel ? `${rel}/${name}` : name;
      const abs = join(root, r);
      const st = await lstat(abs, { bigint: true });
      const type = typeOfMode(st.mode);
      const e: EntryPicture = { type, mode: (Number(st.mode) & 0o7777).toString(8), uid: Number(st.uid), gid: Number(st.gid), nlink: Number(st.nlink) };
      if (type === 'file' && !opts.ignoreContent?.test(r)) {
        e.size = Number(st.size);
        e.sha256 = createHash('sha256').update(await readFile(abs)).digest('hex');
        if (st.nlink > 1n) {
          const first = inodes.get(st.ino);
          if (first === undefined) inodes.set(st.ino, r);
          e.linkGroup = first ?? r;
        }
      }
      if (type === 'symlink') e.target = await readlink(abs);
      if ((type !== 'dir' && opts.mtimes === true) || (type === 'dir' && opts.dirMtimes)) e.mtimeNs = st.mtimeNs.toString();
      if (type !== 'symlink') {
        const names = (await listxattr(abs)).filter((n) => n.startsWith('user.') || n.startsWith('system.posix_acl_')).sort();
        if (names.length) {
          e.xattrs = {};
          for (const n of names) e.xattrs[n] = (await getxattr(abs, n)).toString('base64');
        }
      }
      if (type === 'dir') e.nlink = 0; // directory link counts differ legitimately between file systems? (ext4: 2 + subdirs)
      out[r] = e;
      if (type === 'dir') await walk(r);
    }
  }
  await walk('');
  return out;
}
