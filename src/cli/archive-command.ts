// `strata archive serve`: the archive server as a foreground process (for
// systemd or a terminal). Prints one JSON line {"listening": "host:port"} on
// stdout once it accepts connections; logs JSON lines on stderr. SIGTERM or
// SIGINT: stop accepting, let requests in flight finish (bounded), close the
// store, exit 0.
import { mkdir, readFile } from 'node:fs/promises';
import { resolve } from 'node:path';
import { ArchiveServer } from '../archive/server.js';
import { loadToken } from '../archive/server-auth.js';
import { createLogger, type Logger } from '../log/logger.js';
import { WorkerSnapshotClient } from '../archive/snapshot-worker-client.js';
import { parseTargetSpec, type TargetSpec } from '../archive/targets.js';
import { loadRules, RulesError } from '../alerts/rules.js';
import { AlertListener } from '../alerts/webhook.js';
import { TakeoverSupervisor } from '../archive/takeover.js';
import { ArchiveMetrics } from '../archive/metrics.js';
import { parseMetricsAddress, serveMetrics, type MetricsListener } from '../metrics-http/listener.js';
import { notifySystemd } from '../daemon/sd-notify.js';
import { ObjectSync, prepareObjects } from '../archive/object-sync-client.js';

export interface ArchiveServeOptions {
  data: string;
  listen: string;
  tokenFile: string;
  tlsCert?: string;
  tlsKey?: string;
  logLevel?: string;
  /** Seconds in-flight requests get to finish at shutdown. */
  shutdownGrace?: number;
  /** `--target NAME=DIR`, repeatable: the storage targets for snapshots. */
  target?: string[];
  /** `--rules FILE`: conditions and schedules (YAML). */
  rules?: string;
  /** `--alerts-listen HOST:PORT`: the Alertmanager webhook endpoint (HTTP/1.1, POST /alerts). */
  alertsListen?: string;
  /** `--snapshot-duty F`: share of the time snapshot copies may run (default 0.5). */
  snapshotDuty?: number;
  /** `--takeover-dir DIR`: recover and serve a volume here when its lease lapses (docs/takeover.md). */
  takeoverDir?: string;
  /** `--takeover-after S` (default 30): how long a lease must have lapsed. */
  takeoverAfter?: number;
  /** `--takeover-depth N` (default 2): `strata recover --depth` of a takeover. */
  takeoverDepth?: number;
  /** `--on-takeover CMD`: run (sh -c) once a takeover mount serves. */
  onTakeover?: string;
  /** `--takeover-lease S` (default 10): the takeover mount's own lease. */
  takeoverLease?: number;
  /** `--metrics HOST:PORT`: Prometheus metrics at http://HOST:PORT/metrics. */
  metrics?: string;
  /** `--objects s3://BUCKET[/PREFIX]`: sealed packs and metadata copies in object storage (docs/object-storage.md). */
  objects?: string;
  s3Endpoint?: string;
  s3Region?: string;
  /** `--metadata-upload-interval S` (default 60). */
  metadataUploadInterval?: number;
  /** `--fetch-timeout S` (default 4): a ranged GET of a pack. */
  fetchTimeout?: number;
}

/** "host:port", "[v6]:port" or ":port" (all interfaces). */
export function parseListen(v: string): { host: string; port: number } {
  const m = /^(?:\[([0-9A-Fa-f:.]+)\]|([^:[\]]*)):(\d{1,5})$/.exec(v.trim());
  const port = m ? Number(m[3]) : NaN;
  if (!m || port > 65535) throw new Error(`--listen ${JSON.stringify(v)}: expected HOST:PORT, [IPv6]:PORT or :PORT`);
  return { host: m[1] ?? (m[2] || '0.0.0.0'), port };
}

function formatAddress(address: string, port: number): string {
  return address.includes(':') ? `[${address}]:${port}` : `${address}:${port}`;
}

export async function archiveServeCommand(o: ArchiveServeOptions): Promise<number> {
  let log: Logger;
  try {
    log = createLogger({ name: 'strata-archive', ...(o.logLevel ? { level: o.logLevel } : {}) });
  } catch (err) {
    process.stderr.write(`strata archive serve: ${(err as Error).message}\n`);
    return 1;
  }
  let server: ArchiveServer;
  let alerts: AlertListener | null = null;
  let takeover: TakeoverSupervisor | null = null;
  let metricsListener: MetricsListener | null = null;
  let objectSync: ObjectSync | null = null;
  let requestStop: (signal: NodeJS.Signals) => void = () => {};
  const stopRequested = new Promise<NodeJS.Signals>((r) => { requestStop = r; });
  const onSignal = (signal: NodeJS.Signals): void => {
    process.off('SIGTERM', onSignal);
    process.off('SIGINT', onSignal);
    requestStop(signal);
  };
  try {
    const { host, port } = parseListen(o.listen);
    const metricsAt = o.metrics !== undefined ? parseMetricsAddress(o.metrics) : null;
    const alertsAt = o.alertsListen !== undefined ? parseListen(o.alertsListen) : null;
    const targets: TargetSpec[] = (o.target ?? []).map(parseTargetSpec);
    let rulesText: string | undefined;
    if (o.rules !== undefined) {
      const file = resolve(o.rules);
      const rules = loadRules(file); // every problem, with its line, before anything starts
      rulesText = (await readFile(file)).toString('utf8');
      log.info({ rules: file, conditions: rules.conditions.map((c) => c.name), schedules: rules.schedules.map((x) => x.name) }, 'rules loaded');
    }
    if ((o.tlsCert === undefined) !== (o.tlsKey === undefined)) throw new Error('--tls-cert and --tls-key go together');
    if (o.takeoverDir === undefined && (o.takeoverAfter !== undefined || o.takeoverDepth !== undefined || o.onTakeover !== undefined || o.takeoverLease !== undefined)) {
      throw new Error('--takeover-after, --takeover-depth, --takeover-lease and --on-takeover need --takeover-dir');
    }
    const takeoverAfter = o.takeoverAfter ?? 30;
    const takeoverLease = o.takeoverLease ?? 10;
    if (!(takeoverAfter >= 1 && takeoverAfter <= 86_400)) throw new Error('--takeover-after must be 1 to 86400 seconds');
    if (!(takeoverLease >= 1 && takeoverLease <= 3600)) throw new Error('--takeover-lease must be 1 to 3600 seconds');
    if (o.takeoverDepth !== undefined && (!Number.isInteger(o.takeoverDepth) || o.takeoverDepth < 0 || o.takeoverDepth > 64)) throw new Error('--takeover-depth must be an integer 0 to 64');
    const auth = await loadToken(resolve(o.tokenFile), (msg) => log.warn(msg));
    const tls = o.tlsCert && o.tlsKey ? { cert: await readFile(o.tlsCert), key: await readFile(o.tlsKey) } : undefined;
    const dataDir = resolve(o.data);
    await mkdir(dataDir, { recursive: true, mode: 0o700 });
    // Object storage: records the bucket in DIR/objects.json (every opener of DIR reads packs from it) and, for an
    // empty DIR, rebuilds the metadata database from the newest copy in the bucket.
    const objects = prepareObjects(dataDir, o, log);
    const snapshots = await WorkerSnapshotClient.open({
      dataDir, targets, tickMs: 30_000,
      // Tests only: slows snapshot copies down so a kill -9 can land in the middle of one.
      ...(process.env.STRATA_SNAPSHOT_STEP_PAUSE_MS ? { stepPauseMs: Number(process.env.STRATA_SNAPSHOT_STEP_PAUSE_MS) } : {}),
      ...(process.env.STRATA_SNAPSHOT_PAGE_ROWS ? { pageRows: Number(process.env.STRATA_SNAPSHOT_PAGE_ROWS) } : {}),
      ...(o.snapshotDuty !== undefined ? { copyDuty: o.snapshotDuty } : {}),
      ...(rulesText !== undefined ? { rulesText, rulesFile: resolve(o.rules!) } : {}),
    }, log);
    const infos = await snapshots.targets();
    for (const t of infos) {
      if (!t.healthy) log.warn({ target: t.name, path: t.path, problem: t.problem }, 'storage target unhealthy');
      if (t.sharesDeviceWith.length > 0) log.warn({ target: t.name, device: t.device, with: t.sharesDeviceWith }, 'storage target shares a device: a failing disk takes both');
    }
    log.info({ targets: infos.map((t) => ({ name: t.name, path: t.path, device: t.device, freeBytes: t.freeBytes, healthy: t.healthy })) }, 'storage targets');
    server = await ArchiveServer.open({ dataDir, auth, log, snapshots, ...(tls ? { tls } : {}) });
    if (metricsAt !== null) {
      // Before the server takes its first batch (the metrics count the records each one applies).
      const metrics = await ArchiveMetrics.open(server, snapshots);
      metricsListener = await serveMetrics(metrics.registry, metricsAt.host, metricsAt.port, (err) => log.warn({ err: err.message }, 'metrics'));
    }
    if (objects !== null) objectSync = await ObjectSync.start(dataDir, objects, (o.metadataUploadInterval ?? 60) * 1000, log.child({ component: 'objects' }));
    const addr = await server.listen(host, port);
    const listening = formatAddress(addr.address, addr.port);
    let alertsListening: string | undefined;
    if (alertsAt !== null) {
      alerts = new AlertListener({ auth, log, receive: (list) => snapshots.receiveAlerts(list) });
      const a = await alerts.listen(alertsAt.host, alertsAt.port);
      alertsListening = formatAddress(a.address, a.port);
    }
    if (o.takeoverDir !== undefined) {
      // The takeover mounts reach this server over loopback, like any primary.
      const url = tls ? `stratas://localhost:${addr.port}` : `strata://127.0.0.1:${addr.port}`;
      const srv = server;
      takeover = new TakeoverSupervisor({
        dir: resolve(o.takeoverDir), afterMs: takeoverAfter * 1000, depth: o.takeoverDepth ?? 2,
        ...(o.onTakeover !== undefined ? { onTakeover: o.onTakeover } : {}),
        archiveUrl: url, tokenFile: resolve(o.tokenFile), cli: resolve(process.argv[1]!), leaseSeconds: takeoverLease,
        ...(tls ? { env: { NODE_EXTRA_CA_CERTS: resolve(o.tlsCert!) } } : {}),
        log: log.child({ component: 'takeover' }), table: server.leases, epochOf: (v) => srv.currentEpoch(v),
      });
      server.setTakeover(takeover);
      takeover.start();
    }
    const metricsAddress = metricsListener?.address;
    log.info({ listening, alerts: alertsListening ?? null, metrics: metricsAddress ?? null, dataDir, tls: tls !== undefined, takeoverDir: o.takeoverDir ?? null }, 'archive server ready');
    process.stdout.write(`${JSON.stringify({ listening, ...(alertsListening !== undefined ? { alerts: alertsListening } : {}), ...(metricsAddress !== undefined ? { metrics: metricsAddress } : {}) })}\n`);
    // The stop signals are taken before READY=1 goes out: a supervisor that
    // stops the unit the moment it is ready must get the orderly shutdown
    // (STOPPING=1, exit 0), not Node's default death by SIGTERM.
    process.on('SIGTERM', onSignal);
    process.on('SIGINT', onSignal);
    // systemd (Type=notify): accepting connections now.
    await notifySystemd({ READY: '1', STATUS: `serving ${dataDir} on ${listening}` })
      .catch((err: unknown) => log.warn({ err: (err as Error).message }, 'could not tell systemd that the archive serves (NOTIFY_SOCKET)'));
  } catch (err) {
    const message = err instanceof RulesError ? err.message : (err as Error).message;
    log.error({ err: message }, 'archive server failed to start');
    process.stderr.write(`strata archive serve: ${message}\n`);
    await alerts?.close();
    await metricsListener?.close();
    await objectSync?.stop();
    process.off('SIGTERM', onSignal);
    process.off('SIGINT', onSignal);
    // The server (and the workers it opened) must not keep this process alive.
    process.exitCode = 1;
    setTimeout(() => process.exit(1), 2000).unref();
    return 1;
  }
  const signal = await stopRequested;
  log.info({ signal }, 'shutting down');
  // Sent from the addon's thread pool: the exit below waits for it (at most 1 s).
  const told = Promise.race([
    notifySystemd({ STOPPING: '1', STATUS: 'shutting down' }).catch(() => false),
    new Promise<void>((r) => setTimeout(r, 1000).unref()),
  ]);
  takeover?.stop();
  void metricsListener?.close();
  void alerts?.close();
  try {
    await server.close((o.shutdownGrace ?? 10) * 1000);
    await objectSync?.stop(); // a last metadata point, after the last batch
  } catch (err) {
    log.error({ err }, 'shutdown failed');
  }
  await told;
  log.info('archive server stopped');
  return 0;
}
