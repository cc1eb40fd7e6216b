// Who goes first at the archive while a restore runs. The archive answers a
// client's requests in order (the file:// worker, and the server's worker,
// handle one at a time), so whatever the background restore has sent is
// ahead of a program's fetch. Hence two lanes:
//
//  - foreground (an op of a program waits for it): sent at once;
//  - background: queued here, in order, and sent only while no program waits
//    for the restore, nor has for the last `quietMs` (a program's ops come in
//    bursts: a path walked down one lookup at a time), at most `requests` at
//    a time and about `bytes` bytes (one larger request alone), so a
//    program's fetch finds at most that much ahead of it at the archive.
//
// The mount's answers wait for the JavaScript thread, which the background
// restore's own work (its fetches' answers, the local steps they start)
// keeps busy: while the background runs, a probe measures how late a timer
// runs, and when it runs more than `maxLagMs` late the background holds for
// about as long (its work in progress drains, the thread answers programs);
// never more than half of the time, so a machine busy with other work slows
// the restore down but never stops it.
//
// A program can end up waiting for background work (a directory the
// background restore is materialising holds that directory's lock until its
// entries are in place): it promotes that work's group, whose queued fetches
// are then sent at once, and so are the group's later ones — except those
// the work can do without (a small file's data: the file is then made a stub
// and fetched later), which are dropped.
//
// Over a slow link, what the background has in flight is what a program's
// fetch waits behind (in the archive's socket and the network's queues, not
// just at the archive): 4 MiB at 0.5 MB/s is 8 s. With a `targetMs`, the
// bytes in flight are a budget steered by how long background fetches take
// (TCP's way, on whole fetches): one that arrives within targetMs adds its
// bytes to the budget (up to `bytes`), a slower one shrinks it to what would
// have arrived in time. It starts at FIRST_BUDGET_BYTES, so a slow link is
// never flooded before the first answer says how slow it is.
//
// Memory: the queue holds the background restore's waiting fetches, which
// its own concurrency bounds (a few directories, a few files at a time).

/** Background work that a program may come to wait for (one directory's materialisation). */
export interface FetchGroup {
  promoted: boolean;
}

interface Job {
  bytes: number;
  group: FetchGroup | null;
  start: () => void;
  cancel: (err: Error) => void;
  /** Set for a fetch its group can do without: resolves it with null instead. */
  drop: (() => void) | null;
}

export interface FetchSchedulerOptions {
  /** Background requests in flight at most (default 8). */
  requests?: number;
  /** The background waits this long after the last program's op ended (default 50 ms). */
  quietMs?: number;
  /** The background holds while the event loop runs more than this late (default 5 ms; 0: never). */
  maxLagMs?: number;
  /** Bytes of background requests in flight at most (default 4 MiB; a larger request goes alone). */
  bytes?: number;
  /** A background fetch should arrive within this (ms): the bytes in flight are steered by it (see above). 0 or absent: always `bytes`. */
  targetMs?: number;
}

/** The budget of bytes in flight before any background fetch arrived, and its floor (one block). */
const FIRST_BUDGET_BYTES = 128 * 1024;
const MIN_BUDGET_BYTES = 64 * 1024;

/** The lag probe's interval, and the longest hold one late run causes (ms). */
const LAG_PROBE_MS = 10;
const MAX_LAG_HOLD_MS = 50;

export class FetchScheduler {
  /** Ops of programs waiting for the restore. */
  private foreground = 0;
  /** No background work before this time (ms): a program's op ended shortly before. */
  private quietUntil = 0;
  private quietTimer: NodeJS.Timeout | null = null;
  private idleWaiters: (() => void)[] = [];
  private readonly quietMs: number;
  private inFlight = 0;
  private inFlightBytes = 0;
  private queue: Job[] = [];
  /** First live element of `queue` (jobs are taken from the front; the array is compacted now and then). */
  private head = 0;
  private readonly maxRequests: number;
  private readonly maxBytes: number;
  private readonly targetMs: number;
  /** Bytes of background fetches in flight at most now (see targetMs). */
  private budget: number;
  private readonly maxLagMs: number;
  private lagProbe: NodeJS.Timeout | null = null;
  private lastProbe = 0;
  /** When background work was last queued or answered (the lag probe stops after a second without). */
  private lastBackground = 0;
  /** Times the background held because the event loop ran late. */
  lagHolds = 0;
  /** No hold for a late event loop before this time (performance.now()): the background runs at least half the time. */
  private lagHoldAllowedAt = 0;
  /** Set once the background restore stopped: its fetches fail at once. */
  private cancelled: Error | null = null;

  constructor(opts: FetchSchedulerOptions = {}) {
    this.maxRequests = Math.max(1, opts.requests ?? 8);
    this.maxBytes = Math.max(1, opts.bytes ?? 4 * 1024 * 1024);
    this.targetMs = Math.max(0, opts.targetMs ?? 0);
    this.budget = this.targetMs > 0 ? Math.min(this.maxBytes, FIRST_BUDGET_BYTES) : this.maxBytes;
    this.quietMs = Math.max(0, opts.quietMs ?? 50);
    this.maxLagMs = Math.max(0, opts.maxLagMs ?? 5);
  }

  /** Runs `f`, an op of a program that waits for the restore: no background fetch is sent meanwhile. */
  async foregroundWork<T>(f: () => Promise<T>): Promise<T> {
    this.foreground++;
    try {
      return await f();
    } finally {
      if (--this.foreground === 0) {
        if (this.quietMs === 0) this.resume();
        else this.hold(this.quietMs);
      }
    }
  }

  /** Resolves when no program waits for the restore, nor has lately (the background's own local work waits for that too). */
  whenIdle(): Promise<void> {
    if (this.idle()) return Promise.resolve();
    return new Promise((resolve) => this.idleWaiters.push(resolve));
  }

  private idle(): boolean {
    return this.foreground === 0 && this.quietTimer === null;
  }

  /** No background work for the next `ms` (a program's op ended, or the event loop ran late). */
  private hold(ms: number): void {
    this.quietUntil = Math.max(this.quietUntil, Date.now() + ms);
    if (this.quietTimer !== null) return;
    const tick = (): void => {
      const left = this.quietUntil - Date.now();
      if (left > 0) {
        this.quietTimer = setTimeout(tick, left);
        return;
      }
      this.quietTimer = null;
      if (this.foreground === 0) this.resume();
    };
    this.quietTimer = setTimeout(tick, ms);
  }

  /** While background work exists: hold it when the event loop runs late. */
  private watchLag(): void {
    this.lastBackground = performance.now();
    if (this.lagProbe !== null || this.maxLagMs === 0) return;
    this.lastProbe = performance.now();
    this.lagProbe = setInterval(() => {
      const now = performance.now();
      const late = now - this.lastProbe - LAG_PROBE_MS;
      this.lastProbe = now;
      if (late > this.maxLagMs && now >= this.lagHoldAllowedAt) {
        const ms = Math.min(MAX_LAG_HOLD_MS, late);
        this.lagHoldAllowedAt = now + 2 * ms;
        this.lagHolds++;
        this.hold(ms);
      }
      if (this.inFlight === 0 && this.queued === 0 && now - this.lastBackground > 1000) {
        clearInterval(this.lagProbe!);
        this.lagProbe = null;
      }
    }, LAG_PROBE_MS);
  }

  private resume(): void {
    this.pump();
    const waiters = this.idleWaiters;
    this.idleWaiters = [];
    for (const w of waiters) w();
  }

  /** Background fetches waiting to be sent. */
  get queued(): number {
    return this.queue.length - this.head;
  }

  /** A new group for background work a program may come to wait for. */
  group(): FetchGroup {
    return { promoted: false };
  }

  /**
   * A background fetch of about `bytes` bytes: `f` is called when it may be
   * sent. A promoted `group`'s fetches are sent at once.
   */
  background<T>(bytes: number, f: () => Promise<T>, group: FetchGroup | null = null): Promise<T> {
    return this.enqueue(bytes, f, group, false) as Promise<T>;
  }

  /**
   * A background fetch that `group`'s work can do without: null, not sent,
   * once a program waits for the group (promoted before it was sent).
   */
  optional<T>(bytes: number, f: () => Promise<T>, group: FetchGroup): Promise<T | null> {
    if (group.promoted) return Promise.resolve(null);
    return this.enqueue(bytes, f, group, true);
  }

  private enqueue<T>(bytes: number, f: () => Promise<T>, group: FetchGroup | null, optional: boolean): Promise<T | null> {
    if (this.cancelled !== null) return Promise.reject(this.cancelled);
    this.watchLag();
    return new Promise<T | null>((resolve, reject) => {
      const job: Job = {
        bytes,
        group,
        drop: optional ? () => resolve(null) : null,
        start: () => {
          this.inFlight++;
          this.inFlightBytes += bytes;
          const started = performance.now();
          let p: Promise<T>;
          try {
            p = f();
          } catch (err) {
            p = Promise.reject(err);
          }
          p.then((v) => {
            this.noteDelivery(bytes, performance.now() - started);
            resolve(v);
          }, reject).finally(() => {
            this.lastBackground = performance.now();
            this.inFlight--;
            this.inFlightBytes -= bytes;
            this.pump();
          });
        },
        cancel: reject,
      };
      if (group?.promoted) job.start();
      else {
        this.queue.push(job);
        this.pump();
      }
    });
  }

  /** Bytes of background fetches allowed in flight now: a single fetch larger than this keeps a program waiting behind it too long. */
  get budgetBytes(): number {
    return this.budget;
  }

  /**
   * A fetch of `bytes` arrived after `ms` (the background's, measured here;
   * a program's, told by the restore: one link, one pace): the budget grows
   * by it, or shrinks to what arrives within targetMs. The restore sizes its
   * read-ahead by the same budget.
   */
  noteDelivery(bytes: number, ms: number): void {
    if (this.targetMs === 0) return;
    if (ms <= this.targetMs) this.budget = Math.min(this.maxBytes, this.budget + bytes);
    else this.budget = Math.max(MIN_BUDGET_BYTES, Math.min(this.budget, Math.floor((bytes * this.targetMs) / ms)));
  }

  /** A program waits for `group`'s work: its fetches go now (or are dropped, if optional). */
  promote(group: FetchGroup): void {
    if (group.promoted) return;
    group.promoted = true;
    const mine: Job[] = [];
    const rest: Job[] = [];
    for (let i = this.head; i < this.queue.length; i++) (this.queue[i]!.group === group ? mine : rest).push(this.queue[i]!);
    if (mine.length === 0) return;
    this.queue = rest;
    this.head = 0;
    for (const j of mine) {
      if (j.drop) j.drop();
      else j.start();
    }
  }

  /** Fails every background fetch not sent yet, and every later one (the restore stops). */
  cancelQueued(err: Error): void {
    this.cancelled = err;
    if (this.lagProbe !== null) clearInterval(this.lagProbe);
    this.lagProbe = null;
    const jobs = this.queue.slice(this.head);
    this.queue = [];
    this.head = 0;
    for (const j of jobs) j.cancel(err);
  }

  private pump(): void {
    while (this.idle() && this.head < this.queue.length && this.inFlight < this.maxRequests) {
      const job = this.queue[this.head]!;
      if (this.inFlight > 0 && this.inFlightBytes + job.bytes > this.budget) return;
      this.queue[this.head++] = undefined as unknown as Job;
      if (this.head > 1024 && this.head * 2 > this.queue.length) {
        this.queue = this.queue.slice(this.head);
        this.head = 0;
      }
      job.start();
    }
  }
}
