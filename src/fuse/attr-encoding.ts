// Attribute arrays for the low-level bridge (layout: ATTR_* in lowlevel.c).
import type { BigIntStats } from 'node:fs';
import type { StatfsResult, DirEntryInfo } from '../core/filesystem.js';

const NS_PER_S = 1_000_000_000n;
const MASK32 = 0xffffffffn;

function setTime(out: Float64Array, i: number, ns: bigint): void {
  let sec = ns / NS_PER_S;
  let nsec = ns % NS_PER_S;
  if (nsec < 0n) { sec -= 1n; nsec += NS_PER_S; }
  out[i] = Number(sec);
  out[i + 1] = Number(nsec);
}

export function encodeAttr(st: BigIntStats): Float64Array {
  const a = new Float64Array(16);
  a[0] = Number(st.ino & MASK32);
  a[1] = Number(st.ino >> 32n);
  a[2] = Number(st.mode);
  a[3] = Number(st.nlink);
  a[4] = Number(st.uid);
  a[5] = Number(st.gid);
  a[6] = Number(st.rdev);
  a[7] = Number(st.size);
  a[8] = Number(st.blksize);
  a[9] = Number(st.blocks);
  setTime(a, 10, st.atimeNs);
  setTime(a, 12, st.mtimeNs);
  setTime(a, 14, st.ctimeNs);
  return a;
}

export function encodeDirEntries(entries: readonly DirEntryInfo[]): { names: string[]; packed: Float64Array } {
  const packed = new Float64Array(entries.length * 3);
  const names: string[] = new Array<string>(entries.length);
  entries.forEach((e, i) => {
    names[i] = e.name;
    packed[3 * i] = Number(e.ino & MASK32);
    packed[3 * i + 1] = Number(e.ino >> 32n);
    packed[3 * i + 2] = e.mode;
  });
  return { names, packed };
}

export function encodeStatfs(s: StatfsResult): Float64Array {
  return Float64Array.of(s.bsize, s.frsize, s.blocks, s.bfree, s.bavail, s.files, s.ffree, s.favail, s.namemax);
}
