// A file system that gives no entry types in readdir (DT_UNKNOWN: XFS with
// ftype=0, some network file systems): the local-object layer's readdirIno
// takes each type from lstat, so the background restore and the checkpoints'
// walks still tell files from directories (before 2026-12-05 they took every
// entry for neither: the background restore left stubs unfetched and said it
// was complete). Simulated by an LD_PRELOAD shim (test/helpers/dtype-unknown.c)
// in a child process.
import test from 'ava';
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { DirentType, mknod } from '../../src/native/index.js';
import { buildDtypeUnknownShim } from '../helpers/dtype-shim.js';

const NATIVE = pathToFileURL(fileURLToPath(new URL('../../src/native/index.js', import.meta.url))).href;

test('readdirIno gives each entry\'s type where the file system reports DT_UNKNOWN', async (t) => {
  const base = mkdtempSync(join(tmpdir(), 'strata-dtype-'));
  t.teardown(() => rmSync(base, { recursive: true, force: true }));
  const tree = join(base, 'tree');
  mkdirSync(join(tree, 'dir'), { recursive: true });
  writeFileSync(join(tree, 'file'), 'x');
  symlinkSync('file', join(tree, 'link'));
  await mknod(join(tree, 'fifo'), 0o10644, 0);
  const so = buildDtypeUnknownShim(base);
  const script = `
    import { readFileSync } from 'node:fs';
    const n = await import(${JSON.stringify(NATIVE)});
    const entries = await n.readdirIno(${JSON.stringify(tree)});
    console.log(JSON.stringify({
      shimLoaded: readFileSync('/proc/self/maps', 'utf8').includes(${JSON.stringify(so)}),
      types: Object.fromEntries(entries.map((e) => [e.name, e.type])),
    }));`;
  const r = spawnSync(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8', env: { ...process.env, LD_PRELOAD: so } });
  t.is(r.status, 0, r.stderr);
  const got = JSON.parse(r.stdout) as { shimLoaded: boolean; types: Record<string, number> };
  t.true(got.shimLoaded, 'the shim is in the child');
  t.deepEqual(got.types, { dir: DirentType.DIR, file: DirentType.REG, link: DirentType.LNK, fifo: DirentType.FIFO });
});
