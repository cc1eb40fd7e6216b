// The daemon's Prometheus metrics (`strata mount|recover --metrics HOST:PORT`).
// Most figures are the ones `strata status` shows, read at scrape time from
// MountDaemon.status() and figures() (collect callbacks): nothing is counted
// twice. Only what status has no figure for is measured here, through the
// daemon's observers: request latencies, ack waits, ship round trips, fetch
// latencies. The names and their meaning are in docs/operations.md.
//
// The scrape reads nothing but memory: it never touches the mountpoint or
// the store.
import { constants as osConstants } from 'node:os';
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import type { DaemonFigures, DaemonObservers, DaemonStatus, MountDaemon } from './mount-daemon.js';

/** Request latency buckets, seconds: from a cached answer (~50 µs) to the fetch timeout. */
const REQUEST_BUCKETS = [0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];
/** Round trips to the archive, seconds. */
const ARCHIVE_BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30];

const DAEMON_STATES: DaemonStatus['state'][] = ['starting', 'recovering', 'syncing', 'serving', 'unmounting'];
const CONNECTION_STATES = ['connecting', 'connected', 'disconnected', 'unresponsive', 'fenced', 'failed', 'stopped'];
const LEASE_STATES = ['acquiring', 'held', 'expired', 'fenced', 'released', 'local'];

export class DaemonMetrics {
  readonly registry = new Registry();
  /** Pass these in MountConfig.observers. */
  readonly observers: DaemonObservers;
  private daemon: MountDaemon | null = null;
  /** One status() per scrape (the collect callbacks of one scrape run in one tick and share it). */
  private cached: { st: DaemonStatus; fig: DaemonFigures } | null = null;
  /** The mirrored volume: a label of every mirror and restore figure (absent families on an unmirrored mount). */
  private readonly volume: string | null;

  /** `labels.mountpoint` labels every sample; `labels.volume` (mirrored mounts) the mirror's and the restore's. */
  constructor(labels: { mountpoint: string; volume?: string }) {
    this.volume = labels.volume ?? null;
    this.registry.setDefaultLabels({ mountpoint: labels.mountpoint });
    const volume = this.volume ?? '';
    const registers = [this.registry];
    collectDefaultMetrics({ register: this.registry });
    const requestSeconds = new Histogram({
      name: 'strata_fuse_request_duration_seconds',
      help: 'Requests answered by the JavaScript thread: seconds from their arrival there to the answer, per op (the FUSE thread\'s own answers are not timed)',
      labelNames: ['op'], buckets: REQUEST_BUCKETS, registers,
    });
    const requestErrors = new Counter({
      name: 'strata_fuse_request_errors_total',
      help: 'Requests answered with an error by the core, per op and errno name (expected answers such as ENOENT of a lookup are negative entries, not errors)',
      labelNames: ['op', 'errno'], registers,
    });
    const ackWait = new Histogram({
      name: 'strata_mirror_ack_wait_seconds',
      help: 'How long an op that needs the archive\'s ack (fsync in async mode, every change in sync mode) waited for it; result acked or failed (EIO)',
      labelNames: ['volume', 'result'], buckets: ARCHIVE_BUCKETS, registers,
    });
    const shipSeconds = new Histogram({
      name: 'strata_mirror_ship_duration_seconds',
      help: 'Seconds from sending a batch of journal records to the archive to its ack',
      labelNames: ['volume'], buckets: ARCHIVE_BUCKETS, registers,
    });
    const fetchSeconds = new Histogram({
      name: 'strata_restore_fetch_duration_seconds',
      help: 'Seconds until the archive answered a restore\'s request (a directory image, a file\'s block list, a range of data); result ok or error',
      labelNames: ['volume', 'result'], buckets: ARCHIVE_BUCKETS, registers,
    });
    this.observers = {
      request: (op, seconds, errno) => {
        requestSeconds.observe({ op }, seconds);
        if (errno !== 0) requestErrors.inc({ op, errno: errnoName(errno) });
      },
      ackWait: (seconds, acked) => ackWait.observe({ volume, result: acked ? 'acked' : 'failed' }, seconds),
      ship: (_records, _bytes, seconds) => shipSeconds.observe({ volume }, seconds),
      fetch: (seconds, ok) => fetchSeconds.observe({ volume, result: ok ? 'ok' : 'error' }, seconds),
    };
    this.defineFromStatus();
  }

  /** The daemon whose status the collect callbacks read (before or after its start()). */
  attach(daemon: MountDaemon): void {
    this.daemon = daemon;
  }

  private read(): { st: DaemonStatus; fig: DaemonFigures } | null {
    if (this.daemon === null) return null;
    if (this.cached === null) {
      this.cached = { st: this.daemon.status(), fig: this.daemon.figures() };
      setImmediate(() => { this.cached = null; });
    }
    return this.cached;
  }

  private defineFromStatus(): void {
    const registers = [this.registry];
    const self = this;
    /** A gauge set from the status at each scrape. */
    const gauge = (name: string, help: string, f: (st: DaemonStatus, fig: DaemonFigures) => number): void => {
      new Gauge({
        name, help, registers,
        collect() {
          const r = self.read();
          if (r !== null) this.set(f(r.st, r.fig));
        },
      });
    };
    /** A gauge of the mirror or the restore, labelled with the volume (`f` returns null: no sample, the family is empty). */
    const vgauge = (name: string, help: string, f: (st: DaemonStatus, fig: DaemonFigures) => number | null): void => {
      new Gauge({
        name, help, labelNames: ['volume'], registers,
        collect() {
          this.reset();
          const r = self.read();
          const v = r === null || self.volume === null ? null : f(r.st, r.fig);
          if (v !== null) this.set({ volume: self.volume! }, v);
        },
      });
    };
    /**
     * A counter whose value status keeps (set at each scrape; it only grows
     * while the daemon lives). `labelNames` including 'volume': a figure of
     * the mirror or the restore (f gets the volume's label added; absent on
     * an unmirrored mount).
     */
    const counter = (name: string, help: string, labelNames: string[], f: (st: DaemonStatus, fig: DaemonFigures) => [Record<string, string>, number][] | null): void => {
      const perVolume = labelNames.includes('volume');
      new Counter({
        name, help, labelNames, registers,
        collect() {
          this.reset();
          const r = self.read();
          if (r === null || (perVolume && self.volume === null)) return;
          for (const [labels, v] of f(r.st, r.fig) ?? []) this.inc(perVolume ? { ...labels, volume: self.volume! } : labels, v);
        },
      });
    };
    /** A gauge of one state among `states`: 1 for the current one, 0 for the others (`volume`: labelled with it, absent on an unmirrored mount). */
    const stateGauge = (name: string, help: string, states: string[], f: (st: DaemonStatus) => string | null, volume = false): void => {
      new Gauge({
        name, help, labelNames: volume ? ['volume', 'state'] : ['state'], registers,
        collect() {
          this.reset();
          const r = self.read();
          const cur = r === null || (volume && self.volume === null) ? null : f(r.st);
          if (cur === null) return;
          for (const s of states.includes(cur) ? states : [...states, cur]) this.set({ ...(volume ? { volume: self.volume! } : {}), state: s }, s === cur ? 1 : 0);
        },
      });
    };

    // The daemon and its requests.
    stateGauge('strata_daemon_state', 'The daemon\'s state: 1 for the current one (starting, recovering, syncing, serving, unmounting)', DAEMON_STATES, (st) => st.state);
    counter('strata_fuse_requests_total', 'Requests answered, per op and by which thread: fuse (the FUSE thread answered from a descriptor of the store) or js (the JavaScript core)', ['op', 'thread'], (st) => {
      const out: [Record<string, string>, number][] = [];
      for (const [op, n] of Object.entries(st.requests)) {
        const fast = st.requestsOnFuseThread[op] ?? 0;
        out.push([{ op, thread: 'fuse' }, fast], [{ op, thread: 'js' }, n - fast]);
      }
      return out;
    });
    counter('strata_fuse_read_bytes_total', 'Bytes read through the mount (reads the FUSE thread answers count the size the kernel asked for: at the end of a file, a little more than was sent)', [], (_st, fig) => [[{}, fig.bytes.read]]);
    counter('strata_fuse_written_bytes_total', 'Bytes written through the mount', [], (_st, fig) => [[{}, fig.bytes.written]]);
    gauge('strata_open_handles', 'Open file and directory handles', (st) => st.openHandles);
    gauge('strata_known_inodes', 'Objects the kernel knows a node id of', (st) => st.knownInodes);
    gauge('strata_read_only', '1 while every change is refused with EROFS (fenced, released)', (st) => (st.readOnly !== null ? 1 : 0));
    new Gauge({
      name: 'strata_time_to_serve_seconds', help: 'Seconds from the daemon\'s start to the mount serving (after a recovery: the fence and the top tiers included); absent until it serves', labelNames: ['state'], registers,
      collect() {
        this.reset();
        const ms = self.daemon?.timeToServeMs ?? null;
        if (ms !== null) this.set({ state: 'serving' }, ms / 1000);
      },
    });
    new Gauge({
      name: 'strata_event_loop_lateness_seconds',
      help: 'How late the JavaScript thread ran what was due over the last complete 10-s window (p50, p99, max) and the largest since the start (max_since_start); requests the FUSE thread does not answer wait this long first',
      labelNames: ['window'], registers,
      collect() {
        this.reset();
        const r = self.read();
        if (r === null) return;
        const d = r.st.eventLoopDelayMs;
        this.set({ window: 'p50' }, d.p50 / 1000);
        this.set({ window: 'p99' }, d.p99 / 1000);
        this.set({ window: 'max' }, d.max / 1000);
        this.set({ window: 'max_since_start' }, d.maxSinceStart / 1000);
      },
    });

    // Mirroring (absent on an unmirrored mount).
    vgauge('strata_mirror_lag_records', 'Journal records not yet acked by the archive', (st) => st.mirror?.lag.records ?? null);
    vgauge('strata_mirror_lag_bytes', 'Journal bytes not yet acked by the archive (what --journal-max bounds)', (st) => st.mirror?.lag.bytes ?? null);
    vgauge('strata_mirror_lag_seconds', 'Age of the oldest record not yet acked by the archive, seconds (0 when none)', (st) => st.mirror?.lag.seconds ?? null);
    vgauge('strata_mirror_acked_seq', 'The last journal record the archive acked', (st) => st.mirror?.ackedSeq ?? null);
    vgauge('strata_mirror_last_seq', 'The last journal record written', (st) => st.mirror?.lastSeq ?? null);
    vgauge('strata_mirror_epoch', 'The volume\'s epoch this primary ships under', (st) => st.mirror?.epoch ?? null);
    vgauge('strata_mirror_last_ack_timestamp_seconds', 'Unix time of the last ack from the archive', (st) => (st.mirror?.lastAckAt ? Date.parse(st.mirror.lastAckAt) / 1000 : null));
    vgauge('strata_journal_bytes', 'Bytes of the journal\'s segments on disk (acked records are trimmed)', (st) => st.mirror?.journal.bytes ?? null);
    vgauge('strata_journal_limit_bytes', 'The journal bound (--journal-max): un-acked bytes past it block writers or fail them with ENOSPC', (st) => st.mirror?.journal.limitBytes ?? null);
    vgauge('strata_journal_writers_blocked', 'Writers waiting for the archive: for room in the journal (--journal-full block), or on a full disk for its records to go', (st) => st.mirror?.journal.writersBlocked ?? null);
    vgauge('strata_journal_room_short', 'Whether the store\'s disk has too little room for what the journal keeps allocated ahead of its records (1: changes that need room fail with ENOSPC; removals, renames and attributes are still taken and durable)', (st) => (st.mirror ? (st.mirror.journal.roomShort === null ? 0 : 1) : null));
    vgauge('strata_journal_no_room_records', 'Journal records waiting in memory because the store\'s disk has no room for them (0: it has room); meanwhile changes that need room fail with ENOSPC', (st) => (st.mirror ? st.mirror.journal.noRoom?.records ?? 0 : null));
    counter('strata_mirror_shipped_records_total', 'Journal records the archive acked from this daemon', ['volume'], (st, fig) => (st.mirror ? [[{}, fig.shipped.records]] : null));
    counter('strata_mirror_shipped_bytes_total', 'Bytes of journal records the archive acked from this daemon', ['volume'], (st, fig) => (st.mirror ? [[{}, fig.shipped.bytes]] : null));
    stateGauge('strata_mirror_connection', 'The shipper\'s connection to the archive: 1 for the current state', CONNECTION_STATES, (st) => st.mirror?.connection ?? null, true);
    stateGauge('strata_lease_state', 'This primary\'s lease on its volume: 1 for the current state (held: durability promised; expired: fsync fails with EIO; fenced: read-only)', LEASE_STATES, (st) => st.mirror?.lease.state ?? null, true);
    vgauge('strata_lease_age_seconds', 'Seconds since the last lease renewal was sent', (st) => st.mirror?.lease.ageSeconds ?? null);
    vgauge('strata_lease_seconds', 'The lease\'s length (--lease)', (st) => st.mirror?.lease.leaseSeconds ?? null);

    // The restore after a recovery (absent when the store was never recovered).
    vgauge('strata_restore_complete', '1 once the whole volume is local (but for unreadable objects), 0 while the restore runs', (st) => (st.restore === null ? null : st.restore.phase === 'complete' ? 1 : 0));
    vgauge('strata_restore_entries_done', 'Entries restored (saved every second; never goes back, also across restarts)', (st) => st.restore?.entries.done ?? null);
    vgauge('strata_restore_volume_entries', 'Entries of the volume at the recovery point', (st) => st.restore?.entries.total ?? null);
    vgauge('strata_restore_bytes_done', 'Bytes of file data made local', (st) => st.restore?.bytes.done ?? null);
    vgauge('strata_restore_volume_bytes', 'Bytes of file data of the volume at the recovery point', (st) => st.restore?.bytes.total ?? null);
    vgauge('strata_restore_rate_bytes_per_second', 'Bytes made local per second over the last 10 s', (st) => st.restore?.rate ?? null);
    vgauge('strata_restore_eta_seconds', 'Seconds left at that rate (absent while unknown)', (st) => st.restore?.etaSeconds ?? null);
    vgauge('strata_restore_directories_queued', 'Directories the background restore found and has not visited yet (each may still be pending: its entries only in the archive)', (st, fig) => (st.restore === null ? null : fig.restoreWalk.queued));
    vgauge('strata_restore_directories_visiting', 'Directories the background restore is materialising or listing now', (st, fig) => (st.restore === null ? null : fig.restoreWalk.visiting));
    vgauge('strata_restore_unreadable_objects', 'Files with blocks the archive could not deliver (corrupt or missing there): reads of those blocks fail with EIO', (st) => st.restore?.unreadable.length ?? null);
    vgauge('strata_restore_held_xattr_objects', 'Objects restored without extended attributes this store\'s file system cannot hold; the archive keeps them (docs/recovery.md)', (st) => st.restore?.heldXattrObjects ?? null);
    counter('strata_restore_fetches_total', 'Requests to the archive for the restore: kind directory (a directory image) or range (file data)', ['volume', 'kind'], (st) => (st.restore ? [[{ kind: 'directory' }, st.restore.fetch.dirFetches], [{ kind: 'range' }, st.restore.fetch.rangeFetches]] : null));
    counter('strata_restore_fetch_failures_total', 'Restore requests that failed (timeouts, archive errors)', ['volume'], (st) => (st.restore ? [[{}, st.restore.fetch.failures]] : null));
    counter('strata_restore_fetched_bytes_total', 'Bytes of file data received from the archive by this daemon', ['volume'], (st) => (st.restore ? [[{}, st.restore.fetch.bytesFetched]] : null));
    counter('strata_restore_fetched_blocks_total', 'Blocks made local by fetching, by this daemon', ['volume'], (st) => (st.restore ? [[{}, st.restore.fetch.blocksFetched]] : null));
    counter('strata_restore_entries_materialised_total', 'Objects created from directory images by this daemon', ['volume'], (st) => (st.restore ? [[{}, st.restore.fetch.entriesMaterialised]] : null));
    counter('strata_restore_unreadable_blocks_total', 'Blocks the archive could not deliver, met by this daemon', ['volume'], (st) => (st.restore ? [[{}, st.restore.fetch.unreadableBlocks]] : null));
    counter('strata_restore_reads_through_total', 'Reads answered straight from the archive because the store had no room for their blocks (ENOSPC), by this daemon', ['volume'], (st) => (st.restore ? [[{}, st.restore.fetch.readsThrough]] : null));
  }
}

const ERRNO_NAMES = new Map<number, string>(Object.entries(osConstants.errno).map(([k, v]) => [v, k]));
function errnoName(errno: number): string {
  return ERRNO_NAMES.get(Math.abs(errno)) ?? `errno${Math.abs(errno)}`;
}
