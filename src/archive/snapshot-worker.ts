// The snapshot worker: runs the SnapshotEngine (snapshots.ts) on a thread of
// its own, so a copy, a verify or a GC never stalls the archive server's
// event loop, nor the archive worker that applies the primaries' batches.
// Between messages it copies, one bounded step at a time (a call waits at
// most one step); every `tickMs` it runs the schedules and retention and
// refreshes the targets' health. Messages: {type:'call', id, method, args}
// -> {type:'result', id, result} | {type:'error', id, error}.
import { parentPort, workerData } from 'node:worker_threads';
import { ArchiveError } from '../protocol/archive-api.js';
import { parseRules, EMPTY_RULES } from '../alerts/rules.js';
import { parseAlert } from '../alerts/alertmanager.js';
import { SnapshotEngine, type EngineLog } from './snapshots.js';
import type { TargetSpec } from './targets.js';
import { checkVolume, toWireError } from '../protocol/wire-checks.js';
import { badRollbackOptionsReason, type IncomingAlert, type RollbackOptions } from '../protocol/snapshot-api.js';

export interface SnapshotWorkerData {
  dataDir: string;
  /** Undefined: the targets the catalog knows. */
  targets?: TargetSpec[];
  rulesText?: string;
  rulesFile?: string;
  /** Schedules, retention and health every this many ms (0: never). */
  tickMs: number;
  /** Time between copy steps (ms), added to the duty-cycle pause. */
  stepPauseMs?: number;
  /**
   * Share of the time copies may run (0 < duty <= 1, default 0.5): after a
   * step that took d ms the worker rests d * (1 - duty) / duty ms, so the
   * disks and CPUs that apply the primaries' batches are not taken over.
   */
  copyDuty?: number;
  /** Rows per copy step (default: the engine's). */
  pageRows?: number;
  /**
   * Finish a rollback's rebuild inside the rollback call. Default: when
   * there are no housekeeping ticks (a `file://` tool, gone when it ends).
   * A `file://` caller that leaves it to the background (a swap's handover)
   * relies on the archive worker of whoever ships next (worker.ts).
   */
  rebuildInline?: boolean;
}

export type SnapshotMethod =
  | 'open' | 'targets' | 'createSnapshot' | 'listSnapshots' | 'getSnapshot' | 'deleteSnapshot' | 'verifySnapshot'
  | 'chooseSnapshot' | 'rollback' | 'raise' | 'receiveAlerts' | 'alerts' | 'gc' | 'busy' | 'status';

export type ToSnapshotWorker = { type: 'call'; id: number; method: SnapshotMethod; args: unknown[] } | { type: 'close' };
export type FromSnapshotWorker =
  | { type: 'result'; id: number; result: unknown }
  | { type: 'error'; id: number; error: { code: string; message: string } }
  | { type: 'log'; level: 'info' | 'warn' | 'error'; obj: object; msg: string }
  | { type: 'closed' };

const port = parentPort;
if (!port) throw new Error('snapshot worker must run in a worker thread');
const data = workerData as SnapshotWorkerData;

const log: EngineLog = {
  info: (obj, msg) => port.postMessage({ type: 'log', level: 'info', obj, msg } satisfies FromSnapshotWorker),
  warn: (obj, msg) => port.postMessage({ type: 'log', level: 'warn', obj, msg } satisfies FromSnapshotWorker),
  error: (obj, msg) => port.postMessage({ type: 'log', level: 'error', obj, msg } satisfies FromSnapshotWorker),
};

let engine: SnapshotEngine | null = null;
let closing = false;

function theEngine(): SnapshotEngine {
  engine ??= SnapshotEngine.open(data.dataDir, {
    ...(data.targets !== undefined ? { targets: data.targets } : {}),
    rules: data.rulesText !== undefined ? parseRules(data.rulesText, data.rulesFile ?? 'rules') : EMPTY_RULES,
    log,
    ...(data.pageRows !== undefined ? { pageRows: data.pageRows } : {}),
    // Without housekeeping ticks this is a `file://` tool's engine, gone when the tool ends: a rollback's rebuild finishes inside the call.
    rebuildInline: data.rebuildInline ?? data.tickMs === 0,
  });
  return engine;
}

const str = (v: unknown, what: string): string => {
  if (typeof v !== 'string') throw new ArchiveError('EBADREQ', `${what} must be a string`);
  return v;
};
const opt = (v: unknown, what: string): string | undefined => (v === undefined || v === null ? undefined : str(v, what));

function call(method: SnapshotMethod, args: unknown[]): unknown {
  const e = theEngine();
  switch (method) {
    case 'open': return { archiveId: e.archiveId };
    case 'targets': return e.targets();
    case 'createSnapshot': {
      const reason = opt((args[1] as { reason?: unknown } | undefined)?.reason, 'reason');
      return e.createSnapshot(checkVolume(args[0]), reason !== undefined ? { reason } : {});
    }
    case 'listSnapshots': {
      const f = (args[0] ?? {}) as { volume?: unknown; condition?: unknown };
      const volume = opt(f.volume, 'volume');
      const condition = opt(f.condition, 'condition');
      return e.listSnapshots({ ...(volume !== undefined ? { volume } : {}), ...(condition !== undefined ? { condition } : {}) });
    }
    case 'getSnapshot': return e.getSnapshot(str(args[0], 'snapshot id'));
    case 'deleteSnapshot': return e.deleteSnapshot(str(args[0], 'snapshot id'));
    case 'verifySnapshot': return e.verifySnapshot(str(args[0], 'snapshot id'));
    case 'chooseSnapshot': {
      const o = (args[1] ?? {}) as { condition?: unknown; before?: unknown };
      const before = opt(o.before, 'before');
      return e.chooseSnapshot(checkVolume(args[0]), { condition: str(o.condition, 'condition'), ...(before !== undefined ? { before } : {}) });
    }
    case 'rollback': {
      const why = badRollbackOptionsReason(args[2]);
      if (why !== null) throw new ArchiveError('EBADREQ', why);
      return e.rollback(checkVolume(args[0]), str(args[1], 'snapshot id'), (args[2] ?? {}) as RollbackOptions);
    }
    case 'raise': {
      const alert = parseAlert(args[1], 'alert');
      const volume = checkVolume(args[0]);
      // A primary speaks for its own volume only: the label is set from the route, whatever the body says.
      return e.receiveAlert({ ...alert, labels: { ...alert.labels, volume } }, 'primary');
    }
    case 'receiveAlerts': return (args[0] as IncomingAlert[]).map((a) => e.receiveAlert(a, 'alertmanager'));
    case 'alerts': return e.alerts(typeof args[0] === 'number' ? args[0] : 100);
    case 'gc': return e.gc();
    case 'busy': return e.busy;
    case 'status': return { busy: e.busy };
    default: throw new ArchiveError('EBADREQ', `unknown method ${String(method)}`);
  }
}

// Copy steps run while nothing else is asked; each step is bounded (pageRows, pageBytes).
let working = false;
function work(): void {
  if (working || closing || engine === null || !engine.busy) return;
  working = true;
  const next = (): void => {
    if (closing || engine === null) { working = false; return; }
    let more = false;
    const t0 = Date.now();
    try {
      more = engine.step();
    } catch (err) {
      log.error({ err: (err as Error).message }, 'snapshot copy step failed');
    }
    const duty = Math.min(1, Math.max(0.05, data.copyDuty ?? 0.5));
    if (more) setTimeout(next, (data.stepPauseMs ?? 0) + ((Date.now() - t0) * (1 - duty)) / duty);
    else working = false;
  };
  setImmediate(next);
}

if (data.tickMs > 0) {
  const tick = setInterval(() => {
    if (engine === null || closing) return;
    try {
      engine.targets();
      engine.runSchedules();
      engine.applyRetention();
    } catch (err) {
      log.error({ err: (err as Error).message }, 'snapshot housekeeping failed');
    }
    work();
  }, data.tickMs);
  tick.unref();
}

port.on('message', (msg: ToSnapshotWorker) => {
  if (msg.type === 'close') {
    closing = true;
    try {
      engine?.close();
    } finally {
      engine = null;
      port.postMessage({ type: 'closed' } satisfies FromSnapshotWorker);
      port.close();
    }
    return;
  }
  try {
    const result = call(msg.method, msg.args);
    port.postMessage({ type: 'result', id: msg.id, result } satisfies FromSnapshotWorker);
  } catch (err) {
    port.postMessage({ type: 'error', id: msg.id, error: toWireError(err) } satisfies FromSnapshotWorker);
  }
  work();
});
