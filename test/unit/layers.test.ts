// The layers of docs/architecture.md, checked on the source: every relative
// import between two folders of src/ must be one the table below allows.
// Dependencies point down only (CLI → FUSE adapter → core → {store, journal,
// restore, mirror, checkpoint} → archive client → protocol); the archive node
// (src/archive) never imports the primary's code. A new folder must be given a
// row here, so the decision is made where it is visible.
import test from 'ava';
import { readdir, readFile } from 'node:fs/promises';
import { dirname, join, normalize, relative, sep } from 'node:path';
import { fileURLToPath } from 'node:url';

// Folders anyone may import: they import nothing of strata's (checked below too).
const BASE = ['errors', 'log', 'native', 'protocol', 'metrics-http', 'util'];

/** For each folder of src/, the other folders its files may import (besides BASE). */
const ALLOWED: Readonly<Record<string, readonly string[]>> = {
  // the bottom: plain utilities and the wire format
  errors: [],
  log: [],
  native: [],
  protocol: [],
  'metrics-http': [],
  util: [],
  alerts: [],
  // what the core calls through, implemented by the layers below it
  ports: [],
  store: [],
  journal: [],
  'archive-client': ['archive'], // file:// runs the archive's own store in a worker
  restore: ['ports', 'store'],
  checkpoint: ['ports', 'store'],
  mirror: ['ports', 'store', 'journal', 'archive-client'],
  core: ['ports', 'store'],
  // above the core
  fuse: ['core', 'ports'],
  'checkpoint-service': ['core', 'checkpoint', 'store'],
  swap: ['fuse', 'core', 'checkpoint-service', 'checkpoint', 'store', 'restore', 'mirror', 'journal', 'archive-client'],
  daemon: ['swap', 'fuse', 'core', 'checkpoint-service', 'checkpoint', 'store', 'restore', 'mirror', 'journal', 'archive-client', 'alerts'],
  cli: ['daemon', 'swap', 'fuse', 'core', 'checkpoint-service', 'checkpoint', 'store', 'restore', 'mirror', 'journal', 'archive-client', 'archive', 'alerts'],
  // the archive node: its store, server, snapshots; never the primary's code
  archive: ['alerts'],
};

const here = dirname(fileURLToPath(import.meta.url));
// dist/test/unit → the checkout's src/ (the TypeScript sources, not dist)
const srcRoot = join(here, '..', '..', '..', 'src');

async function sourceFiles(dir: string): Promise<string[]> {
  const out: string[] = [];
  for (const e of await readdir(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    if (e.isDirectory()) out.push(...(await sourceFiles(p)));
    else if (e.name.endsWith('.ts')) out.push(p);
  }
  return out;
}

/** The relative module specifiers of one file's imports and re-exports (static and dynamic). */
export function importSpecifiers(text: string): string[] {
  const specs: string[] = [];
  const re = /(?:\bfrom\s*|\bimport\s*\(\s*|^\s*import\s+)(['"])(\.{1,2}\/[^'"]+)\1/gm;
  for (let m = re.exec(text); m !== null; m = re.exec(text)) specs.push(m[2]!);
  return specs;
}

function folderOf(file: string): string {
  return relative(srcRoot, file).split(sep)[0]!;
}

test('the import scanner finds static, type-only, side-effect and dynamic imports', (t) => {
  const text = [
    "import { a } from '../core/filesystem.js';",
    "import type { B } from '../ports/change-sink.js';",
    "import '../log/logger.js';",
    "export { c } from './x.js';",
    "const m = await import('../mirror/mirror.js');",
    "import { d } from 'node:fs';",
  ].join('\n');
  t.deepEqual(importSpecifiers(text), ['../core/filesystem.js', '../ports/change-sink.js', '../log/logger.js', './x.js', '../mirror/mirror.js']);
});

test('every import between folders of src/ points down the layers of docs/architecture.md', async (t) => {
  const files = await sourceFiles(srcRoot);
  t.true(files.length > 50, `found only ${files.length} source files under ${srcRoot}`);
  const folders = new Set(files.map(folderOf));
  const unknown = [...folders].filter((f) => !(f in ALLOWED));
  t.deepEqual(unknown, [], 'every folder of src/ needs a row in ALLOWED');
  const wrong: string[] = [];
  for (const file of files) {
    const from = folderOf(file);
    const text = await readFile(file, 'utf8');
    for (const spec of importSpecifiers(text)) {
      const target = normalize(join(dirname(file), spec));
      const rel = relative(srcRoot, target);
      if (rel.startsWith('..')) {
        wrong.push(`${relative(srcRoot, file)} imports ${spec}, outside src/`);
        continue;
      }
      const to = rel.split(sep)[0]!;
      if (to === from) continue;
      const fromBase = BASE.includes(from);
      const allowed = (ALLOWED[from] ?? []).includes(to) || (!fromBase && BASE.includes(to));
      if (!allowed) wrong.push(`${relative(srcRoot, file)} imports ${spec} (${from} → ${to})`);
    }
  }
  t.deepEqual(wrong, []);
});
