// The picture of a volume as the archive holds it, read straight from its
// directory images and file data (no restore code involved): what a later
// recovery would show. Same shape as livePicture() (test/helpers/model-tree),
// so the two compare directly; hard-link groups come from shared object ids
// and link counts from the images.
import { createHash } from 'node:crypto';
import { openArchiveClient } from '../../src/archive-client/open-archive.js';
import { ROOT_ID, type Attrs, type ObjectId } from '../../src/protocol/records.js';
import type { ArchiveClient } from '../../src/protocol/archive-api.js';
import { typeOfMode } from '../../src/protocol/records.js';
import { pictured, type ObjectPicture, type Picture } from './model-tree.js';

const CHUNK = 4 * 1024 * 1024;

function ns(t: readonly [number, number]): string {
  return (BigInt(t[0]) * 1_000_000_000n + BigInt(t[1])).toString();
}

function userXattrs(x: { readonly [name: string]: string }): Record<string, string> | undefined {
  const names = Object.keys(x).filter(pictured).sort();
  if (names.length === 0) return undefined;
  const out: Record<string, string> = {};
  for (const n of names) out[n] = x[n]!;
  return out;
}

function base(attrs: Attrs, xattrs: { readonly [name: string]: string }): ObjectPicture {
  const e: ObjectPicture = {
    type: typeOfMode(attrs.mode), mode: (attrs.mode & 0o7777).toString(8), uid: attrs.uid, gid: attrs.gid, mtime: ns(attrs.mtime),
  };
  const x = userXattrs(xattrs);
  if (x) e.xattrs = x;
  return e;
}

async function sha256Of(client: ArchiveClient, volume: string, id: ObjectId, size: number): Promise<string> {
  const h = createHash('sha256');
  for (let off = 0; off < size; off += CHUNK) {
    const b = await client.readRange(volume, id, off, Math.min(CHUNK, size - off));
    if (b.length !== Math.min(CHUNK, size - off)) throw new Error(`archive: file ${id} short read at ${off}: ${b.length} bytes`);
    h.update(b);
  }
  return h.digest('hex');
}

/**
 * The archive's picture of `volume` ('.' is the root). With `nlink`, files
 * carry the link count the archive's images give them (directories: leave out).
 */
export async function archivePicture(url: string, volume: string, tokenFile?: string, opts: { nlink?: boolean } = {}): Promise<Picture> {
  const client = await openArchiveClient(url, tokenFile ? { tokenFile } : {});
  try {
    const out: Picture = {};
    const byId = new Map<ObjectId, string[]>();
    const digests = new Map<ObjectId, string>();
    const root = await client.dirImage(volume, ROOT_ID);
    out['.'] = base(root.attrs, root.xattrs);
    const walk = async (dirId: ObjectId, rel: string): Promise<void> => {
      const img = dirId === ROOT_ID ? root : await client.dirImage(volume, dirId);
      for (const entry of [...img.entries].sort((x, y) => (x.name < y.name ? -1 : x.name > y.name ? 1 : 0))) {
        const path = rel === '.' ? entry.name : `${rel}/${entry.name}`;
        const e = base(entry.attrs, entry.xattrs);
        if (e.type === 'file') {
          e.size = entry.attrs.size;
          let d = digests.get(entry.id);
          if (d === undefined) digests.set(entry.id, (d = await sha256Of(client, volume, entry.id, entry.attrs.size)));
          e.sha256 = d;
          const names = byId.get(entry.id);
          if (names) names.push(path); else byId.set(entry.id, [path]);
          if (opts.nlink) e.nlink = entry.nlink;
        }
        if (e.type === 'symlink') e.target = entry.target ?? '(no target)';
        out[path] = e;
        if (e.type === 'dir') await walk(entry.id, path);
      }
    };
    await walk(ROOT_ID, '.');
    for (const names of byId.values()) {
      if (names.length < 2) continue;
      const first = [...names].sort()[0]!;
      for (const n of names) out[n]!.linkGroup = first;
    }
    return out;
  } finally {
    await client.close();
  }
}

/** Only the files' nlink, and only where the picture has it: for comparing an archive picture (files only) with a live one. */
export function withoutDirNlink(p: Picture): Picture {
  const out: Picture = {};
  for (const [k, v] of Object.entries(p)) {
    const e = { ...v };
    if (e.type !== 'file') delete e.nlink;
    out[k] = e;
  }
  return out;
}
