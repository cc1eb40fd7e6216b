// The archive server's Prometheus metrics (`strata archive serve --metrics
// HOST:PORT`). Per volume: records and bytes applied (counted from the ship
// batches this server applies), the apply rate over the last 10 s, the applied
// record, the epoch and the lease (read at scrape time from the figures
// `strata archive status` shows); snapshots by volume and state and the
// storage targets (from the snapshot engine). Names and meanings:
// docs/operations.md. Imports nothing of the primary.
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import type { ArchiveServer } from './server.js';
import type { WorkerSnapshotClient } from './snapshot-worker-client.js';
import type { VolumeLease, VolumeLeaseState } from '../protocol/leases.js';
import type { SnapshotState } from '../protocol/snapshot-api.js';

const LEASE_STATES: VolumeLeaseState[] = ['none', 'active', 'lapsed', 'taken over', 'released', 'fenced'];
const SNAPSHOT_STATES: SnapshotState[] = ['copying', 'complete', 'failed', 'lost'];
const APPLY_BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30];
/** The apply rate's window, ms. */
const RATE_WINDOW_MS = 10_000;

export class ArchiveMetrics {
  readonly registry = new Registry();
  /** Each volume's applied record as this server last saw it (the records a batch applied are the difference). */
  private readonly lastApplied = new Map<string, number>();
  /** (time, records) of the batches applied in the last RATE_WINDOW_MS, per volume. */
  private readonly recent = new Map<string, [number, number][]>();
  private readonly startedAt = Date.now();
  /** One read of the volumes per scrape (the collect callbacks of one scrape start in one tick and share it). */
  private cached: Promise<VolumeLease[]> | null = null;

  private constructor(private readonly server: ArchiveServer, private readonly snapshots: WorkerSnapshotClient | null) {
    const registers = [this.registry];
    collectDefaultMetrics({ register: this.registry });
    const applied = new Counter({ name: 'strata_archive_records_applied_total', help: 'Journal records this server applied, per volume (since it started)', labelNames: ['volume'], registers });
    const appliedBytes = new Counter({ name: 'strata_archive_applied_bytes_total', help: 'Bytes of ship batches this server applied, per volume', labelNames: ['volume'], registers });
    const batches = new Histogram({ name: 'strata_archive_apply_duration_seconds', help: 'Seconds to apply one ship batch (read, verified, committed to the database and the block packs)', buckets: APPLY_BUCKETS, registers });
    server.onApplied = (volume, appliedSeq, bytes, seconds) => {
      const prev = this.lastApplied.get(volume) ?? 0;
      const n = Math.max(0, appliedSeq - prev);
      this.lastApplied.set(volume, appliedSeq);
      applied.inc({ volume }, n);
      appliedBytes.inc({ volume }, bytes);
      batches.observe(seconds);
      const list = this.recent.get(volume) ?? [];
      list.push([Date.now(), n]);
      this.recent.set(volume, list);
    };
    const self = this;
    new Gauge({
      name: 'strata_archive_apply_rate_records_per_second', help: 'Records applied per second over the last 10 s, per volume', labelNames: ['volume'], registers,
      collect() {
        this.reset();
        const now = Date.now();
        const window = Math.min(RATE_WINDOW_MS, Math.max(1, now - self.startedAt)) / 1000;
        for (const [volume, list] of self.recent) {
          while (list.length > 0 && list[0]![0] <= now - RATE_WINDOW_MS) list.shift();
          this.set({ volume }, list.reduce((a, [, n]) => a + n, 0) / window);
        }
      },
    });
    const perVolume = (name: string, help: string, f: (v: VolumeLease) => number | null): void => {
      new Gauge({
        name, help, labelNames: ['volume'], registers,
        async collect() {
          this.reset();
          for (const v of await self.leases()) {
            const x = f(v);
            if (x !== null) this.set({ volume: v.volume }, x);
          }
        },
      });
    };
    perVolume('strata_archive_volume_applied_seq', 'The last record applied to the volume', (v) => v.appliedSeq);
    perVolume('strata_archive_volume_epoch', 'The volume\'s epoch (raised by every fence: a recovery, a takeover)', (v) => v.epoch);
    perVolume('strata_archive_volume_lease_age_seconds', 'Seconds since the holder\'s last renewal (absent without a holder)', (v) => v.leaseAgeSeconds);
    perVolume('strata_archive_volume_lease_seconds', 'The holder\'s lease length (absent without a holder)', (v) => v.leaseSeconds);
    perVolume('strata_archive_volume_lag_records', 'Records the holder has that the archive has not applied, as of its last renewal', (v) => v.lagRecords);
    new Gauge({
      name: 'strata_archive_volume_lease_state', help: 'Each volume\'s lease: 1 for its current state (none, active, lapsed, taken over, released, fenced)', labelNames: ['volume', 'state'], registers,
      async collect() {
        this.reset();
        for (const v of await self.leases()) for (const s of LEASE_STATES) this.set({ volume: v.volume, state: s }, v.state === s ? 1 : 0);
      },
    });
    new Gauge({
      name: 'strata_archive_snapshots', help: 'Snapshots in the catalog, per volume and state (copying, complete, failed, lost)', labelNames: ['volume', 'state'], registers,
      async collect() {
        this.reset();
        if (self.snapshots === null) return;
        const counts = new Map<string, Map<string, number>>();
        for (const v of await self.leases()) counts.set(v.volume, new Map(SNAPSHOT_STATES.map((s) => [s, 0])));
        for (const s of await self.snapshots.listSnapshots()) {
          const m = counts.get(s.volume) ?? new Map(SNAPSHOT_STATES.map((x) => [x, 0]));
          m.set(s.state, (m.get(s.state) ?? 0) + 1);
          counts.set(s.volume, m);
        }
        for (const [volume, m] of counts) for (const [state, n] of m) this.set({ volume, state }, n);
      },
    });
    const targetGauge = (name: string, help: string, f: (t: Awaited<ReturnType<WorkerSnapshotClient['targets']>>[number]) => number | null): void => {
      new Gauge({
        name, help, labelNames: ['target'], registers,
        async collect() {
          this.reset();
          if (self.snapshots === null) return;
          for (const t of await self.snapshots.targets()) {
            const x = f(t);
            if (x !== null) this.set({ target: t.name }, x);
          }
        },
      });
    };
    targetGauge('strata_archive_target_healthy', '1 when the storage target is readable and writable, 0 when not', (t) => (t.healthy ? 1 : 0));
    targetGauge('strata_archive_target_free_bytes', 'Free bytes on the storage target\'s file system', (t) => t.freeBytes);
    targetGauge('strata_archive_target_size_bytes', 'Size of the storage target\'s file system', (t) => t.totalBytes);
  }

  /** Metrics for `server`; reads the volumes' applied records first, so that the first batch of each counts only its own records. */
  static async open(server: ArchiveServer, snapshots: WorkerSnapshotClient | null): Promise<ArchiveMetrics> {
    const m = new ArchiveMetrics(server, snapshots);
    for (const v of await server.volumeLeases()) m.lastApplied.set(v.volume, v.appliedSeq);
    return m;
  }

  private leases(): Promise<VolumeLease[]> {
    if (this.cached === null) {
      this.cached = this.server.volumeLeases();
      this.cached.catch(() => {});
      setImmediate(() => { this.cached = null; });
    }
    return this.cached;
  }
}
