// A SnapshotClient over the snapshot worker (snapshot-worker.ts): used by the
// archive server, and in-process by the `file://` tools. A worker that dies
// fails the calls it owed with EARCHIVE; the next call starts a new one
// (which starts any interrupted copy again).
import { Worker } from 'node:worker_threads';
import { ArchiveError } from '../protocol/archive-api.js';
import type {
  RollbackOptions,
  AlertDecision, GcResult, IncomingAlert, RollbackResult, SnapshotChoice, SnapshotClient, SnapshotInfo, TargetInfo,
} from '../protocol/snapshot-api.js';
import type { FromSnapshotWorker, SnapshotMethod, SnapshotWorkerData, ToSnapshotWorker } from './snapshot-worker.js';
import { fromWireError } from '../protocol/wire-checks.js';
import type { EngineLog } from './snapshots.js';

interface Pending {
  resolve(v: unknown): void;
  reject(err: Error): void;
}

export class WorkerSnapshotClient implements SnapshotClient {
  readonly url: string;
  private worker: Worker | null = null;
  private readonly pending = new Map<number, Pending>();
  private nextId = 1;
  private closed = false;

  private constructor(private readonly data: SnapshotWorkerData, private readonly log: EngineLog) {
    this.url = `file://${data.dataDir}`;
  }

  /** Starts the worker and opens the engine (targets registered, rules read): a bad target or rules file fails here. */
  static async open(data: SnapshotWorkerData, log: EngineLog): Promise<WorkerSnapshotClient> {
    const c = new WorkerSnapshotClient(data, log);
    try {
      await c.call('open', []);
    } catch (err) {
      await c.close();
      throw err;
    }
    return c;
  }

  targets(): Promise<TargetInfo[]> { return this.call('targets', []) as Promise<TargetInfo[]>; }
  createSnapshot(volume: string, opts: { reason?: string } = {}): Promise<SnapshotInfo> { return this.call('createSnapshot', [volume, opts]) as Promise<SnapshotInfo>; }
  listSnapshots(filter: { volume?: string; condition?: string } = {}): Promise<SnapshotInfo[]> { return this.call('listSnapshots', [filter]) as Promise<SnapshotInfo[]>; }
  getSnapshot(id: string): Promise<SnapshotInfo> { return this.call('getSnapshot', [id]) as Promise<SnapshotInfo>; }
  deleteSnapshot(id: string): Promise<SnapshotInfo> { return this.call('deleteSnapshot', [id]) as Promise<SnapshotInfo>; }
  verifySnapshot(id: string): Promise<SnapshotInfo> { return this.call('verifySnapshot', [id]) as Promise<SnapshotInfo>; }
  chooseSnapshot(volume: string, opts: { condition: string; before?: string }): Promise<SnapshotChoice> { return this.call('chooseSnapshot', [volume, opts]) as Promise<SnapshotChoice>; }
  rollback(volume: string, snapshotId: string, opts: RollbackOptions = {}): Promise<RollbackResult> { return this.call('rollback', [volume, snapshotId, opts]) as Promise<RollbackResult>; }
  raise(volume: string, alert: IncomingAlert): Promise<AlertDecision> { return this.call('raise', [volume, alert]) as Promise<AlertDecision>; }
  /** The alerts of one webhook body, already checked (alertmanager.ts). */
  receiveAlerts(alerts: IncomingAlert[]): Promise<AlertDecision[]> { return this.call('receiveAlerts', [alerts]) as Promise<AlertDecision[]>; }
  alerts(limit = 100): Promise<AlertDecision[]> { return this.call('alerts', [limit]) as Promise<AlertDecision[]>; }
  gc(): Promise<GcResult> { return this.call('gc', []) as Promise<GcResult>; }
  /** Copies in progress. */
  busy(): Promise<boolean> { return this.call('busy', []) as Promise<boolean>; }

  async close(): Promise<void> {
    this.closed = true;
    const w = this.worker;
    if (!w) return;
    w.ref();
    await new Promise<void>((resolve) => {
      const timer = setTimeout(() => void w.terminate(), 30_000);
      w.once('exit', () => {
        clearTimeout(timer);
        resolve();
      });
      w.postMessage({ type: 'close' } satisfies ToSnapshotWorker);
    });
  }

  private call(method: SnapshotMethod, args: unknown[]): Promise<unknown> {
    if (this.closed) return Promise.reject(new ArchiveError('EARCHIVE', 'snapshot client is closed'));
    const w = this.ensureWorker();
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      w.ref();
      w.postMessage({ type: 'call', id, method, args } satisfies ToSnapshotWorker);
    });
  }

  private ensureWorker(): Worker {
    if (this.worker) return this.worker;
    const execArgv = process.execArgv.filter((a) => !a.startsWith('--input-type'));
    const w = new Worker(new URL('./snapshot-worker.js', import.meta.url), { workerData: this.data, execArgv });
    w.on('message', (msg: FromSnapshotWorker) => {
      if (msg.type === 'log') {
        this.log[msg.level](msg.obj, msg.msg);
        return;
      }
      if (msg.type === 'closed') return;
      const p = this.pending.get(msg.id);
      if (!p) return;
      this.pending.delete(msg.id);
      if (this.pending.size === 0) w.unref();
      if (msg.type === 'error') p.reject(fromWireError(msg.error));
      else p.resolve(msg.result);
    });
    const death = (why: string): void => {
      if (this.worker === w) this.worker = null;
      for (const [id, p] of this.pending) {
        this.pending.delete(id);
        p.reject(new ArchiveError('EARCHIVE', why));
      }
    };
    w.on('error', (err) => death(`snapshot worker failed: ${err.message}`));
    w.on('exit', (code) => death(`snapshot worker exited (code ${code})`));
    w.unref();
    this.worker = w;
    return w;
  }
}
