// Attribute arrays for the FUSE bridge (layouts: constants.attr, .dirent and
// .statfs, exported by native/fuse-native/src/module.c).
import type { BigIntStats } from 'node:fs';
import type { StatfsResult, DirEntryInfo } from '../core/filesystem.js';
import { FC } from './bridge.js';

const NS_PER_S = 1_000_000_000n;
const MASK32 = 0xffffffffn;
const A = FC.attr;
const D = FC.dirent;
const S = FC.statfs;

function setTime(out: Float64Array, sec: number, nsecAt: number, ns: bigint): void {
  let s = ns / NS_PER_S;
  let n = ns % NS_PER_S;
  if (n < 0n) { s -= 1n; n += NS_PER_S; }
  out[sec] = Number(s);
  out[nsecAt] = Number(n);
}

export function encodeAttr(st: BigIntStats): Float64Array {
  const a = new Float64Array(A.LEN);
  a[A.INO_LO] = Number(st.ino & MASK32);
  a[A.INO_HI] = Number(st.ino >> 32n);
  a[A.MODE] = Number(st.mode);
  a[A.NLINK] = Number(st.nlink);
  a[A.UID] = Number(st.uid);
  a[A.GID] = Number(st.gid);
  a[A.RDEV] = Number(st.rdev);
  a[A.SIZE] = Number(st.size);
  a[A.BLKSIZE] = Number(st.blksize);
  a[A.BLOCKS] = Number(st.blocks);
  setTime(a, A.ATIME_S, A.ATIME_NS, st.atimeNs);
  setTime(a, A.MTIME_S, A.MTIME_NS, st.mtimeNs);
  setTime(a, A.CTIME_S, A.CTIME_NS, st.ctimeNs);
  return a;
}

/** What a setattr record needs of an attribute array (attrsFromStat's argument). */
export function statOfAttrs(a: Float64Array): { mode: bigint; uid: bigint; gid: bigint; size: bigint; rdev: bigint; atimeNs: bigint; mtimeNs: bigint } {
  const n = (i: number): bigint => BigInt(a[i] ?? 0);
  return {
    mode: n(A.MODE), uid: n(A.UID), gid: n(A.GID), size: n(A.SIZE), rdev: n(A.RDEV),
    atimeNs: n(A.ATIME_S) * NS_PER_S + n(A.ATIME_NS), mtimeNs: n(A.MTIME_S) * NS_PER_S + n(A.MTIME_NS),
  };
}

/** The backing inode number in an attribute array. */
export function inoOfAttrs(attrs: Float64Array): bigint {
  return BigInt(attrs[A.INO_LO] ?? 0) | (BigInt(attrs[A.INO_HI] ?? 0) << 32n);
}

export function encodeDirEntries(entries: readonly DirEntryInfo[]): { names: string[]; packed: Float64Array } {
  const packed = new Float64Array(entries.length * D.LEN);
  const names: string[] = new Array<string>(entries.length);
  entries.forEach((e, i) => {
    const at = i * D.LEN;
    names[i] = e.name;
    packed[at + D.INO_LO] = Number(e.ino & MASK32);
    packed[at + D.INO_HI] = Number(e.ino >> 32n);
    packed[at + D.MODE] = e.mode;
  });
  return { names, packed };
}

export function encodeStatfs(s: StatfsResult): Float64Array {
  const a = new Float64Array(S.LEN);
  a[S.BSIZE] = s.bsize;
  a[S.FRSIZE] = s.frsize;
  a[S.BLOCKS] = s.blocks;
  a[S.BFREE] = s.bfree;
  a[S.BAVAIL] = s.bavail;
  a[S.FILES] = s.files;
  a[S.FFREE] = s.ffree;
  a[S.FAVAIL] = s.favail;
  a[S.NAMEMAX] = s.namemax;
  return a;
}
