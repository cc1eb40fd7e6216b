// kill -9 at every place of src/restore that writes a block map, a
// link-registry name, or a file's or directory's times (the crash points of
// src/restore/crash-points.ts), and what must hold afterwards:
//
//  - right after the rerun (`strata recover` again, on demand only, so that
//    nothing hydrates the crash's leftovers away first): what a program sees
//    of the objects the crash was working on (lstat: type, mode, owner, size,
//    mtime in ns) is the archive's at the recovery point;
//  - after `strata sync`: the ARCHIVE, read straight from its directory images
//    and file data (test/helpers/archive-tree), equals the primary's tree
//    before the disk was lost — mtimes in ns, contents (sha256), modes,
//    owners, xattrs, symlink targets, hard-link groups and link counts.
//    `strata verify` alone cannot see a wrong value that both sides agree on
//    (a crash-time mtime re-convergence shipped, say);
//  - after the restore completed: the mount equals that tree too (link counts
//    exact), `strata verify` finds 0 differences and nothing pending, and the
//    archive still equals it.
//
// Where the crash interrupts a program's own change (a write, a truncate),
// the file may be as before or as after the change, never anything else (no
// NUL bytes, no crash-time mtime on the old content).
//
// Serial: the helpers block the test process (spawnSync).
import test, { type ExecutionContext } from 'ava';
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { readdirSync, rmSync } from 'node:fs';
import * as fsp from 'node:fs/promises';
import { join } from 'node:path';
import { strata } from '../helpers/mount.js';
import { mount, readFromArchive, syncMount } from '../helpers/mirror.js';
import {
  buildVolume, daemonPid, newRecoveryTarget, recover, runRecover, verifySummary, waitRestored, type Recovered, type Volume,
} from '../helpers/recover.js';
import { diffPictures, livePicture, type ObjectPicture, type Picture } from '../helpers/model-tree.js';
import { archivePicture, withoutDirNlink } from '../helpers/archive-tree.js';
import { statView } from '../helpers/model-ops.js';
import type { CrashPoint } from '../../src/restore/crash-points.js';

/**
 * Tiers: a b c (1); a/f1..f5, a/x (2); a/x/g1..g5, a/x/y, a/x/sparse (3); a/x/y/large (4); a/x/y/z/h (5).
 * Hard links: a/f1 + b/x/link-to-a-f1 (tiers 2 and 3); a/f2 + b/f2-link + c/x/y/f2-deep (tiers 2, 2 and 4).
 * b/x and a/f2 have xattrs that fill ext4's space (the restore's marks on them are side marks).
 * Every object gets its own explicit time (ns), so a time a crash leaves behind cannot pass for it.
 */
const TREE = [
  'for d in a b c; do mkdir -p $d/x/y/z; for i in 1 2 3 4 5; do echo "$d $i" > $d/f$i; head -c 100000 /dev/urandom > $d/x/g$i; done; echo deep > $d/x/y/z/h; done',
  'head -c 3000000 /dev/urandom > a/x/y/large',
  'truncate -s 5M a/x/sparse && printf data | dd of=a/x/sparse bs=1 seek=200000 conv=notrunc status=none && printf more | dd of=a/x/sparse bs=1 seek=4000000 conv=notrunc status=none',
  'ln a/f1 b/x/link-to-a-f1 && ln a/f2 b/f2-link && ln a/f2 c/x/y/f2-deep',
  'ln -s ../f2 c/x/sym && setfattr -n user.k -v v b/x && setfattr -n user.f -v w a/x/g1 && chmod 640 a/f3 && chmod 2775 c/x',
  // Filled xattr spaces (a directory at tier 2, the hard-linked file of three names): the restore's marks become side marks.
  'fill() { for s in 200 50 10 1; do v=$(head -c $s /dev/zero | tr "\\0" a); i=0; while [ $i -lt 100 ] && setfattr -n user.fill${s}_$i -v "$v" "$1" 2>/dev/null; do i=$((i+1)); done; done; }; fill b/x && fill a/f2 && [ "$(getfattr -d b/x | grep -c fill)" -gt 10 ]',
  'i=0; find . -depth -print0 | while IFS= read -r -d "" p; do i=$((i+1)); touch -h -d "@$((1000000000 + i * 1000)).$(printf %09d $((i * 7919)))" "$p"; done',
];

/** What makes the daemon reach the crash point. */
type Trigger =
  /** `strata recover` itself (the top tiers): it dies before serving. */
  | { kind: 'recover' }
  /** A program on the mount, which gets an error when the daemon dies under it. */
  | { kind: 'program'; script: string }
  /** The background restore, soon after serving. */
  | { kind: 'background' };

interface Case {
  point: CrashPoint;
  n: number;
  depth: number;
  trigger: Trigger;
  what: string;
  /** Paths whose lstat right after the rerun must be the archive's. */
  probes: string[];
  /** A file the interrupted program was changing, and the content it would have had. */
  changing?: { path: string; after: (before: Buffer) => Buffer };
  /** Before the rerun (the daemon dead): an outside change to the store, e.g. a lost map. */
  prepare?: (r: Recovered) => Promise<void>;
}

const CASES: Case[] = [
  // The top tiers (materialise.ts through recover.ts).
  { point: 'materialise-object', n: 3, depth: 2, trigger: { kind: 'recover' }, what: 'an object of the top tiers is built under its temporary name', probes: ['.', 'a', 'b'] },
  { point: 'materialise-dir', n: 2, depth: 2, trigger: { kind: 'recover' }, what: 'a top-tier directory has its entries, its pending mark is still set', probes: ['.', 'a', 'b', 'c'] },
  { point: 'map-created', n: 2, depth: 2, trigger: { kind: 'recover' }, what: 'a stub has its block map, nothing else yet', probes: ['a', 'a/f1', 'a/f2'] },
  { point: 'registry-created', n: 1, depth: 2, trigger: { kind: 'recover' }, what: 'the first name of a hard-linked file got its registry name', probes: ['a', 'a/f1', 'a/f2'] },
  // Every name of a hard-linked file is a link of its registry name, the first too (a/f1, a/f2, then b/f2-link).
  { point: 'registry-linked', n: 1, depth: 2, trigger: { kind: 'recover' }, what: 'the first name of a hard-linked file was linked from its registry name', probes: ['a', 'a/f1', 'a/f2'] },
  { point: 'registry-linked', n: 3, depth: 2, trigger: { kind: 'recover' }, what: 'a second top-tier name of a hard-linked file was linked from the registry', probes: ['a/f2', 'b', 'b/f2-link'] },
  { point: 'attrs-before-times', n: 1, depth: 2, trigger: { kind: 'recover' }, what: 'the first top-tier object has xattrs, owner and mode, not its times', probes: ['.', 'a', 'b', 'c'] },
  { point: 'attrs-before-times', n: 4, depth: 2, trigger: { kind: 'recover' }, what: 'the root has its entries, xattrs, owner and mode, not its times', probes: ['.', 'a', 'b', 'c'] },
  // On demand (on-demand.ts, materialise.ts).
  { point: 'registry-linked', n: 4, depth: 2, trigger: { kind: 'program', script: 'ls b/x' }, what: 'a pending directory\'s name of a hard-linked file was linked from the registry', probes: ['a/f1', 'b/x', 'b/x/link-to-a-f1'] },
  { point: 'registry-dropped', n: 1, depth: 2, trigger: { kind: 'background' }, what: 'the restore is complete and the registry name of a hard-linked file was removed (the registry stays until then)', probes: ['a/f1', 'b/x', 'b/x/link-to-a-f1'] },
  { point: 'dir-before-times', n: 1, depth: 1, trigger: { kind: 'program', script: 'ls a' }, what: 'a pending directory\'s entries were all created (readdir), its times not put back', probes: ['a', 'a/x'] },
  { point: 'dir-before-times', n: 1, depth: 1, trigger: { kind: 'program', script: 'stat a/f3' }, what: 'one entry of a pending directory was created (lookup), its times not put back', probes: ['a', 'a/f3'] },
  { point: 'fetch-before-times', n: 1, depth: 2, trigger: { kind: 'program', script: 'head -c 100 a/x/y/large' }, what: 'fetched bytes of a stub are written (a read), its times not put back', probes: ['a/x/y/large', 'a/x/y'] },
  { point: 'fetch-written', n: 1, depth: 2, trigger: { kind: 'program', script: 'head -c 100 a/x/g1' }, what: 'fetched bytes are durable, the map does not say so', probes: ['a/x/g1'] },
  {
    point: 'write-before-map', n: 1, depth: 2, trigger: { kind: 'program', script: 'printf XXXX | dd of=a/x/g2 bs=4 seek=17500 conv=notrunc status=none' },
    what: 'a program\'s write into a stub is done, the map does not say so', probes: ['a/x'],
    changing: { path: 'a/x/g2', after: (b) => { const c = Buffer.from(b); c.write('XXXX', 70000); return c; } },
  },
  {
    point: 'discard-map', n: 1, depth: 2, trigger: { kind: 'program', script: 'truncate -s 0 a/x/g3' },
    what: 'a stub\'s map was removed for a truncation to 0', probes: ['a/x'],
    changing: { path: 'a/x/g3', after: () => Buffer.alloc(0) },
  },
  // The same in a restored directory (depth 3: a/x restored, its files stubs; depth 4: a/x/y too).
  {
    point: 'discard-map', n: 1, depth: 3, trigger: { kind: 'program', script: 'truncate -s 0 a/x/g3' },
    // The cut reached the store before the kill (the map goes only after it), so g3's times are the cut's: not probed.
    what: 'the map of a stub in a restored directory was removed for a truncation to 0', probes: ['a/x'],
    changing: { path: 'a/x/g3', after: () => Buffer.alloc(0) },
  },
  {
    point: 'write-before-map', n: 1, depth: 3, trigger: { kind: 'program', script: 'printf XXXX | dd of=a/x/g2 bs=4 seek=17500 conv=notrunc status=none' },
    what: 'a program\'s write into a stub of a restored directory is done, the map does not say so', probes: ['a/x'],
    changing: { path: 'a/x/g2', after: (b) => { const c = Buffer.from(b); c.write('XXXX', 70000); return c; } },
  },
  { point: 'fetch-before-times', n: 1, depth: 4, trigger: { kind: 'program', script: 'head -c 100 a/x/y/large' }, what: 'fetched bytes of a stub in a restored directory are written, its times not put back', probes: ['a/x/y/large', 'a/x/y'] },
  // The background restore (background.ts, on-demand.ts).
  { point: 'fetch-before-times', n: 1, depth: 1, trigger: { kind: 'background' }, what: 'the background restore wrote fetched bytes, the file\'s times are not put back', probes: [] },
  { point: 'holes-before-map', n: 1, depth: 1, trigger: { kind: 'background' }, what: 'the holes of a sparse stub are known, the map does not say so', probes: [] },
  { point: 'background-before-map', n: 1, depth: 1, trigger: { kind: 'background' }, what: 'a file\'s bytes are written and durable, its map does not say so', probes: [] },
  { point: 'background-file', n: 2, depth: 1, trigger: { kind: 'background' }, what: 'the background restore made a second file local', probes: [] },
  { point: 'finish-before-state', n: 1, depth: 1, trigger: { kind: 'background' }, what: 'leftover maps and registry names are gone, restore.json does not say complete', probes: [] },
  {
    // A stub whose map was lost (the documented case: a rerun recreates it for a
    // single-link file of a still-pending directory that has no data).
    point: 'map-recreated', n: 1, depth: 1, trigger: { kind: 'program', script: 'ls a' },
    what: 'a lost map of a stub in place was written again', probes: ['a', 'a/f4'],
    prepare: async (r) => {
      // (The first run's daemon materialised a/f4 by a lookup and was killed; its map goes.)
      const id = spawnSync('getfattr', ['--only-values', '-n', 'trusted.strata.id', join(r.store, 'a/f4')], { encoding: 'utf8' }).stdout.trim();
      rmSync(join(r.store, '.strata/restore/maps', id), { force: true });
    },
  },
];

async function waitGone(pid: number): Promise<void> {
  for (let i = 0; i < 300; i++) {
    if (spawnSync('kill', ['-0', String(pid)]).status !== 0) return;
    await new Promise((res) => setTimeout(res, 100));
  }
  throw new Error(`daemon ${pid} still runs`);
}

async function waitStale(mnt: string): Promise<void> {
  for (let i = 0; i < 300; i++) {
    if (/stale/.test(strata(['status', mnt]).stdout)) return;
    await new Promise((res) => setTimeout(res, 100));
  }
  throw new Error(`the daemon at ${mnt} did not die`);
}

function sha256(b: Buffer): string {
  return createHash('sha256').update(b).digest('hex');
}

/** Differences, where `changing` may be as before or as after its change (with a time of "now"). */
function differences(want: Picture, got: Picture, changing: { path: string; after: ObjectPicture } | null, since: bigint, name: string): string[] {
  if (changing !== null) {
    const g = got[changing.path];
    const asAfter = g !== undefined && g.sha256 === changing.after.sha256 && g.size === changing.after.size && BigInt(g.mtime) >= since &&
      diffPictures({ x: { ...changing.after, mtime: '' } }, { x: { ...g, mtime: '' } }).length === 0;
    if (asAfter) {
      want = { ...want, [changing.path]: g };
    }
  }
  return diffPictures(want, got, 'before the loss', name);
}

async function crashCase(t: ExecutionContext, c: Case): Promise<void> {
  const v: Volume = await buildVolume(t, TREE, { picture: true });
  const want = v.picture!;
  let changing: { path: string; after: ObjectPicture } | null = null;
  if (c.changing) {
    const before = (await readFromArchive(v.server.url, v.volume, c.changing.path, v.server.tokenFile))!;
    const after = c.changing.after(before);
    changing = { path: c.changing.path, after: { ...want[c.changing.path]!, size: after.length, sha256: sha256(after) } };
  }
  const since = BigInt(Date.now()) * 1_000_000n;
  const r = newRecoveryTarget(t, v);
  const args = ['--depth', String(c.depth), ...(c.trigger.kind === 'background' ? [] : ['--no-background-restore'])];
  if (c.prepare) {
    // The first run materialises by a lookup, then dies at a sync point (kill -9).
    runRecover(r, args);
    t.is(spawnSync('stat', [join(r.mnt, 'a/f4')]).status, 0);
    syncMount(r);
    const pid = daemonPid(r.mnt);
    process.kill(pid, 'SIGKILL');
    await waitGone(pid);
    t.is(strata(['unmount', r.mnt]).status, 0, 'the stale mount is cleared');
    await c.prepare(r);
  }
  const env = { STRATA_CRASH_AT: `${c.point}:${c.n}` };
  const first = runRecover(r, args, env, false);
  if (c.trigger.kind === 'recover') {
    t.not(first.status, 0, `strata recover died at ${c.point}:${c.n} before serving`);
  } else {
    t.is(first.status, 0, first.out);
    if (c.trigger.kind === 'program') {
      const pid = daemonPid(r.mnt);
      const run = spawnSync('bash', ['-c', c.trigger.script], { cwd: r.mnt, timeout: 30_000, encoding: 'utf8' });
      t.not(run.status, 0, `the daemon died under "${c.trigger.script}"`);
      await waitGone(pid);
    } else {
      await waitStale(r.mnt);
    }
    t.is(strata(['unmount', r.mnt]).status, 0, 'the stale mount is cleared');
  }
  // The rerun, on demand only: nothing is hydrated before the probes look.
  // Every check below is collected, so that one run lists all that is wrong.
  const problems: string[] = [];
  runRecover(r, ['--no-background-restore']);
  for (const p of c.probes) {
    const st = statView(await fsp.lstat(p === '.' ? r.mnt : join(r.mnt, p), { bigint: true }));
    const w = want[p]!;
    const sized = w.type === 'file' && changing?.path !== p;
    // A file's link count too: a crash between linking a name and lowering the count of names still in the archive must not show one link too many.
    const counted = w.type === 'file' && w.nlink !== undefined;
    const got = { type: st.type, mode: st.mode, uid: st.uid, gid: st.gid, mtime: st.mtime, ...(sized ? { size: st.size } : {}), ...(counted ? { nlink: st.nlink } : {}) };
    const exp = { type: w.type, mode: w.mode, uid: w.uid, gid: w.gid, mtime: w.mtime, ...(sized ? { size: w.size } : {}), ...(counted ? { nlink: w.nlink } : {}) };
    if (JSON.stringify(got) !== JSON.stringify(exp)) problems.push(`right after the rerun, lstat of ${p}: ${JSON.stringify(got)}, the archive's: ${JSON.stringify(exp)}`);
  }
  syncMount(r);
  const archive1 = await archivePicture(v.server.url, v.volume, v.server.tokenFile, { nlink: true });
  for (const d of differences(withoutDirNlink(want), archive1, changing, since, 'archive')) problems.push(`after the rerun and strata sync: ${d}`);
  // The restore finishes; the mount, verify and the archive.
  t.is(strata(['unmount', r.mnt]).status, 0);
  mount(r);
  await waitRestored(r.mnt);
  syncMount(r);
  const local = await livePicture(r.mnt, { nlink: true });
  for (const d of differences(want, local, changing, since, 'mount')) problems.push(`after the restore completed: ${d}`);
  const vr = verifySummary(r);
  if (vr.status !== 0 || vr.summary.differences !== 0 || vr.summary.pendingDirs + vr.summary.remoteFiles !== 0) problems.push(`strata verify after the restore: ${vr.out.slice(0, 2000)}`);
  const archive2 = await archivePicture(v.server.url, v.volume, v.server.tokenFile, { nlink: true });
  for (const d of differences(withoutDirNlink(want), archive2, changing, since, 'archive')) problems.push(`after the restore completed: ${d}`);
  // What changed must be the same change on both sides (the one file, as before or as after).
  if (changing !== null && local[changing.path]?.sha256 !== archive2[changing.path]?.sha256) problems.push(`${changing.path}: the mount and the archive hold different contents`);
  const left = readdirSync(join(r.store, '.strata', 'restore')).filter((n) => n !== 'maps' && n !== 'links');
  if (left.length > 0) problems.push(`left in .strata/restore: ${left.join(' ')}`);
  t.deepEqual(problems, [], `${c.point}:${c.n}: the tree before the loss, on the mount and on the archive`);
}

for (const c of CASES) {
  test.serial(`kill -9 at ${c.point}:${c.n} (${c.what}): times and contents stay the archive's, on the mount and on the archive`, async (t) => {
    await crashCase(t, c);
  });
}

test.serial('a pending directory\'s mtime seen while the background restore materialises it is its archive mtime (also when cached by the kernel)', async (t) => {
  // Materialisation creates the entries (moving the directory's mtime) and only
  // then puts its times back; getattr in between answers the moved time, and the
  // kernel keeps it for the attribute timeout.
  const v = await buildVolume(t, [
    'for d in $(seq 1 40); do mkdir -p top/d$d; for i in $(seq 1 40); do echo $i > top/d$d/f$i; done; touch -d "2001-01-01 00:00:00.123456789" top/d$d; done',
  ]);
  const r = recover(t, v, ['--depth', '2']);
  const WANT = 978307200123456789n;
  const seen: string[] = [];
  for (let k = 0; k < 50 && seen.length === 0; k++) {
    for (let d = 1; d <= 40; d++) {
      const st = await fsp.lstat(join(r.mnt, 'top', `d${d}`), { bigint: true });
      if (st.mtimeNs !== WANT) seen.push(`top/d${d}: ${st.mtimeNs}`);
    }
    await fsp.writeFile('/proc/sys/vm/drop_caches', '2');
  }
  await waitRestored(r.mnt);
  const after: string[] = [];
  for (let d = 1; d <= 40; d++) {
    const st = await fsp.lstat(join(r.mnt, 'top', `d${d}`), { bigint: true });
    if (st.mtimeNs !== WANT) after.push(`top/d${d}: ${st.mtimeNs}`);
  }
  t.deepEqual(seen, [], 'while the background restore runs');
  t.deepEqual(after, [], 'once the restore is complete');
});
