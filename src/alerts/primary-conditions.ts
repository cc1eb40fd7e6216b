// Conditions a strata primary raises itself (docs/snapshots.md), sent to its
// archive as alerts with the volume's labels, where the archive's rules
// decide whether they take a snapshot:
//
//   StrataStoreFull         the store's filesystem is nearly full (or a write failed with ENOSPC)
//   StrataStoreIOError      the local disk answered a request with EIO
//   StrataMirrorLag         the archive is behind by more than lagSeconds
//   StrataJournalNearLimit  the journal's unacknowledged bytes passed nearLimit of --journal-max
//
// Labels: alertname, volume, severity (critical for the store, warning for
// the mirror), source=strata-primary; annotations: summary, and the
// measured value. A condition is sent when it starts, again every
// `repeatMs` while it lasts (the archive's min-interval keeps that to one
// snapshot), and once as `resolved` when it ends. Sending never blocks or
// fails the daemon: an archive that does not answer costs a log line.
//
// Only a served archive (strata:// or stratas://) evaluates rules; with a
// file:// archive the conditions are logged here and nothing else happens.
import { statfs } from 'node:fs/promises';
import type { SnapshotClient } from '../protocol/snapshot-api.js';

export type PrimaryCondition = 'StrataStoreFull' | 'StrataStoreIOError' | 'StrataMirrorLag' | 'StrataJournalNearLimit';

export interface ConditionLog {
  info(obj: object, msg: string): void;
  warn(obj: object, msg: string): void;
}

export interface MirrorFigures {
  lag: { seconds: number; bytes: number };
  journal: { limitBytes: number };
  connection: string;
}

export interface ConditionWatcherOptions {
  volume: string;
  /** The store root (its filesystem is watched). */
  storeDir: string;
  /** The archive's snapshot API; null for a file:// archive (log only). */
  client: SnapshotClient | null;
  /** The mirror's current figures (null: not mirrored). */
  mirror: () => MirrorFigures | null;
  log: ConditionLog;
  /** Store nearly full below this fraction free (default 0.02), or below minFreeBytes (default 64 MiB, at most 5% of the filesystem), whichever is larger. */
  minFreeFraction?: number;
  minFreeBytes?: number;
  /** Mirror lag that raises StrataMirrorLag (default 300 s). */
  lagSeconds?: number;
  /** Fraction of the journal limit that raises StrataJournalNearLimit (default 0.9). */
  nearLimit?: number;
  /** How often to look (default 5 s). */
  intervalMs?: number;
  /** Re-send a lasting condition this often (default 60 s). */
  repeatMs?: number;
  /** An EIO answered this recently keeps StrataStoreIOError firing (default 60 s; an ENOSPC keeps StrataStoreFull firing at most 10 s once space is back). */
  ioErrorHoldMs?: number;
}

const SEVERITY: { [K in PrimaryCondition]: 'critical' | 'warning' } = {
  StrataStoreFull: 'critical', StrataStoreIOError: 'critical', StrataMirrorLag: 'warning', StrataJournalNearLimit: 'warning',
};

export class ConditionWatcher {
  private timer: NodeJS.Timeout | null = null;
  private readonly firing = new Map<PrimaryCondition, { since: number; sentAt: number }>();
  private lastEio = 0;
  private lastEnospc = 0;
  private busy = false;
  /** Alerts sent (firing and resolved), for status and tests. */
  sent = 0;

  constructor(private readonly o: ConditionWatcherOptions) {}

  start(): void {
    if (this.timer !== null) return;
    this.timer = setInterval(() => void this.check(), this.o.intervalMs ?? 5000);
    this.timer.unref();
    void this.check();
  }

  stop(): void {
    if (this.timer !== null) clearInterval(this.timer);
    this.timer = null;
  }

  /** A request the local store answered with this error code (the daemon's error path calls it). */
  noteError(code: 'EIO' | 'ENOSPC'): void {
    if (code === 'EIO') this.lastEio = Date.now();
    else this.lastEnospc = Date.now();
    void this.check();
  }

  /** Which conditions hold now. */
  firingNow(): PrimaryCondition[] {
    return [...this.firing.keys()];
  }

  async check(): Promise<void> {
    if (this.busy) return;
    this.busy = true;
    try {
      const now = Date.now();
      const hold = this.o.ioErrorHoldMs ?? 60_000;
      const found = new Map<PrimaryCondition, { summary: string; value: string }>();
      try {
        const s = await statfs(this.o.storeDir);
        const free = s.bavail * s.bsize;
        const total = s.blocks * s.bsize;
        const min = Math.max((this.o.minFreeFraction ?? 0.02) * total, Math.min(this.o.minFreeBytes ?? 64 * 1024 * 1024, 0.05 * total));
        if (free < min || now - this.lastEnospc < Math.min(hold, 10_000)) {
          found.set('StrataStoreFull', { summary: `store ${this.o.storeDir} of volume ${this.o.volume} has ${free} bytes free of ${total}`, value: String(free) });
        }
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === 'EIO') this.lastEio = now;
      }
      if (now - this.lastEio < hold) found.set('StrataStoreIOError', { summary: `the local disk under ${this.o.storeDir} answered EIO`, value: new Date(this.lastEio).toISOString() });
      const m = this.o.mirror();
      if (m !== null) {
        if (m.lag.seconds > (this.o.lagSeconds ?? 300)) found.set('StrataMirrorLag', { summary: `volume ${this.o.volume}: the archive is ${m.lag.seconds} s behind (${m.connection})`, value: String(m.lag.seconds) });
        if (m.lag.bytes > (this.o.nearLimit ?? 0.9) * m.journal.limitBytes) {
          found.set('StrataJournalNearLimit', { summary: `volume ${this.o.volume}: ${m.lag.bytes} journal bytes not acked (limit ${m.journal.limitBytes})`, value: String(m.lag.bytes) });
        }
      }
      for (const [name, f] of found) {
        const cur = this.firing.get(name);
        if (cur === undefined || now - cur.sentAt >= (this.o.repeatMs ?? 60_000)) {
          if (cur === undefined) this.o.log.warn({ condition: name, volume: this.o.volume, summary: f.summary }, 'condition raised');
          this.firing.set(name, { since: cur?.since ?? now, sentAt: now });
          await this.send(name, 'firing', f.summary, f.value);
        }
      }
      for (const name of [...this.firing.keys()]) {
        if (found.has(name)) continue;
        this.firing.delete(name);
        this.o.log.info({ condition: name, volume: this.o.volume }, 'condition resolved');
        await this.send(name, 'resolved', `${name} no longer holds`, '');
      }
    } finally {
      this.busy = false;
    }
  }

  private async send(name: PrimaryCondition, status: 'firing' | 'resolved', summary: string, value: string): Promise<void> {
    if (this.o.client === null) return;
    try {
      const d = await this.o.client.raise(this.o.volume, {
        status,
        labels: { alertname: name, volume: this.o.volume, severity: SEVERITY[name], source: 'strata-primary' },
        annotations: { summary, ...(value !== '' ? { value } : {}) },
      });
      this.sent++;
      this.o.log.info({ condition: name, status, decision: d.decision, snapshot: d.snapshot, detail: d.detail }, 'condition sent to the archive');
    } catch (err) {
      this.o.log.warn({ condition: name, status, err: (err as Error).message }, 'condition not delivered to the archive (retried while it lasts)');
      const cur = this.firing.get(name);
      if (cur !== undefined) cur.sentAt = 0; // retry at the next look
    }
  }
}

interface WarnLogger {
  warn: (...args: never[]) => void;
}

/**
 * Lets `watcher` see the errors a logger reports for requests (the FUSE
 * adapter logs every failed request with its `errno`): EIO and ENOSPC
 * answered to a program raise StrataStoreIOError / StrataStoreFull. Returns
 * the same logger, its `warn` wrapped.
 */
export function tapRequestErrors<L extends WarnLogger>(logger: L, watcher: ConditionWatcher): L {
  const warn = logger.warn.bind(logger) as (...args: unknown[]) => void;
  const tapped = (...args: unknown[]): void => {
    const o = args[0] as { errno?: unknown; archive?: unknown } | null | undefined;
    if (o !== null && typeof o === 'object') {
      // An EIO because the archive did not deliver a restore's data is not the local disk's.
      if (o.errno === -5 && o.archive !== true) watcher.noteError('EIO');
      else if (o.errno === -28) watcher.noteError('ENOSPC');
    }
    warn(...args);
  };
  (logger as unknown as { warn: (...args: unknown[]) => void }).warn = tapped;
  return logger;
}
