// `strata checkpoint create|list|delete|diff` and `strata rollback`: requests
// to the daemon serving the mountpoint (its control socket). Paths are the
// user's (absolute, or relative to the working directory) and must lie under
// the mountpoint; the daemon gets them as paths inside the mount ('/a/b').
import { resolve } from 'node:path';
import { callControl } from '../daemon/control.js';
import type { CheckpointListing } from '../checkpoint-service/manager.js';
import type { DiffReport } from '../checkpoint/diff.js';
import type { Area, RollbackReport } from '../checkpoint-service/rollback.js';
import { exactArg } from './exact-argv.js';
import { flushMount } from './flush-mount.js';
import { nameBytes } from '../protocol/names.js';

/** Text naming paths, written with the names' own bytes (strata's form of a byte that is not UTF-8 back to that byte). */
function writeNames(text: string): void {
  process.stdout.write(nameBytes(text));
}

/** Long operations (diff and rollback of big trees) may take this long. */
const LONG_MS = 24 * 3600 * 1000;

/** The path inside the mount for a user's path (its bytes as given: exactArg); throws for one outside it. */
export function mountPath(mnt: string, p: string): string {
  const abs = resolve(exactArg(p));
  if (abs === mnt) return '/';
  if (abs.startsWith(`${mnt}/`)) return abs.slice(mnt.length);
  throw new Error(`${p} is outside the mount ${mnt}`);
}

/** AREA: a path, or FILE:OFFSET+LENGTH (bytes). */
export function parseArea(mnt: string, given: string): Area {
  const a = exactArg(given);
  const m = /^(.*):(\d+)\+(\d+)$/.exec(a);
  if (m) return { path: mountPath(mnt, m[1]!), range: { offset: Number(m[2]), length: Number(m[3]) } };
  return { path: mountPath(mnt, a) };
}

async function call(mnt: string, req: Parameters<typeof callControl>[1], what: string, timeoutMs = 60_000): Promise<unknown> {
  try {
    return await callControl(mnt, req, timeoutMs);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ECONNREFUSED') throw Object.assign(new Error(`${mnt} is not served by a strata daemon`), { exit: 2 });
    throw new Error(`${what}: ${(err as Error).message}`);
  }
}

async function run(cmd: string, f: () => Promise<void>): Promise<number> {
  try {
    await f();
    return 0;
  } catch (err) {
    process.stderr.write(`strata ${cmd}: ${(err as Error).message}\n`);
    return (err as { exit?: number }).exit ?? 1;
  }
}

export function checkpointCreateCommand(mountpoint: string, opts: { name?: string; copyStore?: string; waitWriters?: number; json?: boolean }): Promise<number> {
  return run('checkpoint create', async () => {
    const mnt = resolve(mountpoint);
    // The checkpoint holds what programs wrote through shared mappings too.
    await flushMount(mnt, 'checkpoint create');
    const r = (await call(mnt, { cmd: 'checkpoint', op: 'create', ...(opts.name ? { name: opts.name } : {}), ...(opts.copyStore ? { copyStore: resolve(opts.copyStore) } : {}), ...(opts.waitWriters !== undefined ? { waitWritersMs: opts.waitWriters * 1000 } : {}) }, 'create')) as CheckpointListing & { createMs: number };
    process.stdout.write(opts.json ? JSON.stringify(r) + '\n' : `checkpoint ${r.name} of ${mnt} taken in ${r.createMs.toFixed(1)} ms (copy store ${r.dir})\n`);
  });
}

export function checkpointListCommand(mountpoint: string, opts: { json?: boolean }): Promise<number> {
  return run('checkpoint list', async () => {
    const mnt = resolve(mountpoint);
    const r = (await call(mnt, { cmd: 'checkpoint', op: 'list' }, 'list')) as { checkpoints: CheckpointListing[] };
    if (opts.json) {
      process.stdout.write(JSON.stringify(r) + '\n');
      return;
    }
    if (r.checkpoints.length === 0) process.stdout.write(`${mnt}: no checkpoints\n`);
    for (const c of r.checkpoints) {
      const state = c.status === 'valid' ? 'valid' : `INVALID: ${c.reason ?? ''}`;
      process.stdout.write(`${c.name}  ${c.createdAt}  ${state}  ${c.objects} objects changed, ${c.blocks} blocks saved, ${(c.logBytes / 1048576).toFixed(1)} MiB in ${c.dir}\n`);
    }
  });
}

export function checkpointDeleteCommand(mountpoint: string, name: string): Promise<number> {
  return run('checkpoint delete', async () => {
    const mnt = resolve(mountpoint);
    await call(mnt, { cmd: 'checkpoint', op: 'delete', name }, 'delete');
    process.stdout.write(`checkpoint ${name} of ${mnt} deleted\n`);
  });
}

export function checkpointDiffCommand(mountpoint: string, name: string, paths: string[], opts: { json?: boolean }): Promise<number> {
  return run('checkpoint diff', async () => {
    const mnt = resolve(mountpoint);
    const r = (await call(mnt, { cmd: 'checkpoint', op: 'diff', name, paths: paths.map((p) => mountPath(mnt, p)) }, 'diff', LONG_MS)) as DiffReport;
    if (opts.json) {
      process.stdout.write(JSON.stringify(r) + '\n');
      return;
    }
    const lines: string[] = [];
    for (const p of r.created) lines.push(`+ ${p}`);
    for (const p of r.removed) lines.push(`- ${p}`);
    for (const x of r.renamed) lines.push(`R ${x.from} -> ${x.to}`);
    for (const x of r.linked) lines.push(`L ${x.path} (another name of ${x.to})`);
    for (const x of r.attrs) lines.push(`M ${x.path} (${x.fields.join(', ')})`);
    for (const x of r.data) {
      const ranges = x.ranges.map(([o, l]) => `${o}+${l}`).join(' ');
      lines.push(`D ${x.path} ${ranges}${x.size !== x.t0Size ? ` (size ${x.t0Size} -> ${x.size})` : ''}`);
    }
    writeNames(lines.length === 0 ? `no changes since checkpoint ${name}\n` : lines.join('\n') + '\n');
  });
}

export function rollbackCommand(mountpoint: string, areas: string[], opts: { to: string; dryRun?: boolean; json?: boolean }): Promise<number> {
  return run('rollback', async () => {
    const mnt = resolve(mountpoint);
    const parsed = areas.map((a) => parseArea(mnt, a));
    const r = (await call(mnt, { cmd: 'checkpoint', op: 'rollback', name: opts.to, areas: parsed, dryRun: opts.dryRun ?? false }, 'rollback', LONG_MS)) as RollbackReport;
    if (opts.json) {
      process.stdout.write(JSON.stringify(r) + '\n');
      return;
    }
    const verb = r.dryRun ? 'would ' : '';
    for (const c of r.changed) {
      writeNames(`${verb}${c.action} ${c.path}${c.from ? ` (from ${c.from})` : ''}${c.bytes !== undefined && c.action !== 'size' ? ` ${c.bytes} bytes` : ''}${c.action === 'size' ? ` to ${c.bytes}` : ''}\n`);
    }
    writeNames(`${r.dryRun ? 'dry run: ' : ''}${r.changed.length} changes, ${r.bytesCopied} bytes ${r.dryRun ? 'to copy' : 'copied'} from checkpoint ${r.checkpoint} (${r.areas.join(' ')})\n`);
  });
}
