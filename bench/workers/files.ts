// Small-file worker, one process per measured run, so that the timed loop is
// nothing but syscalls (no process spawn per file, no harness state):
//
//   node files.js create ROOT FILES DIRS BYTES   mkdir DIRS directories, then
//        open(O_CREAT|O_EXCL|O_WRONLY) + write(BYTES) + close for FILES files
//   node files.js stat ROOT FILES DIRS           lstat every file once (warm-up pass),
//        then again (the timed pass)
//   node files.js statloop ROOT COUNT 1          lstat one file (ROOT/statloop, made first)
//        COUNT times: on a mount with --attr-timeout 0 every lstat is a round trip
//        to the daemon (GETATTR of the file and of ROOT for the permission check),
//        so it measures the FUSE request floor of the machine
//
// Prints one JSON line on stdout with the timings (seconds, from hrtime).
import { closeSync, lstatSync, mkdirSync, openSync, writeSync } from 'node:fs';
import { join } from 'node:path';

function dirName(d: number): string {
  return `d${String(d).padStart(2, '0')}`;
}

/** The file paths, FILES of them spread evenly over DIRS directories. */
export function filePaths(root: string, files: number, dirs: number): string[] {
  const perDir = Math.ceil(files / dirs);
  const paths: string[] = [];
  for (let i = 0; i < files; i++) paths.push(join(root, dirName(Math.floor(i / perDir)), `f${String(i).padStart(6, '0')}.txt`));
  return paths;
}

function now(): bigint {
  return process.hrtime.bigint();
}

function secondsSince(t0: bigint): number {
  return Number(now() - t0) / 1e9;
}

function create(root: string, files: number, dirs: number, bytes: number): Record<string, number> {
  const paths = filePaths(root, files, dirs);
  const dirPaths = Array.from({ length: dirs }, (_, d) => join(root, dirName(d)));
  const payload = Buffer.alloc(bytes, 'strata bench payload\n');
  const t0 = now();
  for (const d of dirPaths) mkdirSync(d);
  for (const p of paths) {
    const fd = openSync(p, 'wx', 0o644);
    let off = 0;
    while (off < payload.length) off += writeSync(fd, payload, off, payload.length - off);
    closeSync(fd);
  }
  return { seconds: secondsSince(t0), files, dirs, bytes };
}

function stat(root: string, files: number, dirs: number): Record<string, number> {
  const paths = filePaths(root, files, dirs);
  let size = 0;
  const t0 = now();
  for (const p of paths) size += lstatSync(p).size;
  const warm = secondsSince(t0);
  const t1 = now();
  for (const p of paths) size += lstatSync(p).size;
  return { warm_seconds: warm, seconds: secondsSince(t1), files, total_size: size / 2 };
}

function statLoop(root: string, count: number): Record<string, number> {
  const p = join(root, 'statloop');
  closeSync(openSync(p, 'w'));
  for (let i = 0; i < 1000; i++) lstatSync(p);
  const t0 = now();
  for (let i = 0; i < count; i++) lstatSync(p);
  const seconds = secondsSince(t0);
  return { seconds, count, us_per_lstat: (seconds * 1e6) / count };
}

function main(argv: readonly string[]): void {
  const [cmd, root, filesS, dirsS, bytesS] = argv;
  const files = Number(filesS);
  const dirs = Number(dirsS);
  if (!root || !Number.isInteger(files) || !Number.isInteger(dirs) || files < 1 || dirs < 1) {
    throw new Error('usage: files.js create|stat ROOT FILES DIRS [BYTES] | statloop ROOT COUNT 1');
  }
  let out: Record<string, number>;
  if (cmd === 'create') out = create(root, files, dirs, Number(bytesS ?? '100'));
  else if (cmd === 'stat') out = stat(root, files, dirs);
  else if (cmd === 'statloop') out = statLoop(root, files);
  else throw new Error(`unknown command ${cmd ?? ''}`);
  process.stdout.write(`${JSON.stringify(out)}\n`);
}

main(process.argv.slice(2));
