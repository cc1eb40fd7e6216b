// The `strata` command line. Every command's module is loaded when that
// command runs, not before: `strata recover` (and the daemon it spawns) must
// not pay for loading the archive server, snapshots, YAML rules or SQLite
// (docs/recovery.md, "Time to serve").
import { Command, InvalidArgumentError } from 'commander';
import { resolve as resolvePath } from 'node:path';
import { spawnSync } from 'node:child_process';
import { installMountHelper, mountArgs, parseHelperArgv } from './mount-helper.js';
import { standby } from './standby.js';
import type { ArchiveLeaseOptions } from './lease-commands.js';
import type { ArchiveServeOptions } from './archive-command.js';
import type { VerifyOptions } from './verify-command.js';
import type { CommitOptions, PrepareOptions } from './swap-command.js';
import type { ArchiveCliOptions, CreateOptions } from './snapshot-command.js';
import type { MountCliOptions } from './mount-command.js';

function collect(v: string, prev: string[] = []): string[] {
  return [...prev, v];
}

function seconds(v: string): number {
  const n = Number(v);
  if (!Number.isFinite(n) || n < 0) throw new InvalidArgumentError('not a number of seconds');
  return n;
}

function bytes(v: string): number {
  const m = /^(\d+)([kmgt]i?b?)?$/i.exec(v.trim());
  if (!m) throw new InvalidArgumentError('not a size (e.g. 1048576, 512M, 2G)');
  const unit = (m[2] ?? '').charAt(0).toLowerCase();
  const mult = unit === 'k' ? 1024 : unit === 'm' ? 1024 ** 2 : unit === 'g' ? 1024 ** 3 : unit === 't' ? 1024 ** 4 : 1;
  return Number(m[1]) * mult;
}

const program = new Command();
program.name('strata').description('A FUSE filesystem that is back in seconds after it loses its disk').showHelpAfterError();

/** Options every serving daemon takes (strata mount, strata recover). */
function daemonOptions(cmd: Command): void {
  cmd
    .option('--log-file <file>', 'append JSON log lines here (background default: STORE/.strata/daemon.log)')
    .option('--log-level <level>', 'trace, debug, info, warn, error', 'info')
    .option('--allow-other', 'let other users use the mount (always with default_permissions)')
    .option('--writeback-cache', 'let the kernel cache writes and send them in batches (faster small writes; not with --mirror sync; docs/fuse-bridge.md)')
    .option('--no-passthrough', 'do not ask the kernel for FUSE passthrough (reads of local files served by the kernel from the store; docs/fuse-bridge.md)')
    .option('--passthrough-writes', 'let writable opens pass through too on a mount nothing mirrors, tracks or restores (the kernel writes the store\'s file; a checkpoint waits for such files to close; docs/fuse-bridge.md)')
    .option('--no-direct-journal', 'on a mirrored mount, send every write to the core instead of letting the FUSE thread apply it and hand the core its journal record (docs/mirroring.md)')
    .option('--no-killpriv-v2', 'do not ask the kernel for handle_killpriv_v2 (strata drops set-ID bits on write and truncate itself; docs/fuse-bridge.md)')
    .option('--no-parallel-dirops', 'do not ask the kernel for parallel directory operations (lookups and readdirs of one directory one at a time; docs/fuse-bridge.md)')
    .option('--no-posix-acl', 'do not ask the kernel to enforce POSIX ACLs (they are still kept and mirrored; the kernel checks mode bits only; docs/SEMANTICS.md)')
    .option('--mirror <mode>', 'async (default: fsync waits for the archive) or sync (every change waits)')
    .option('--token-file <file>', 'token of a remote archive')
    .option('--journal-max <bytes>', 'journal bytes not yet acked by the archive before --journal-full applies (default 1 GiB)', bytes)
    .option('--journal-full <policy>', 'when the journal is full: block writers (default), or fail them with enospc')
    .option('--ack-timeout <s>', 'ops waiting for the archive (sync mode, fsync) fail with EIO after this long (default: wait)', seconds)
    .option('--archive-wait <s>', 'how long to wait for the archive when the store must re-converge before serving (default 60)', seconds)
    .option('--fetch-timeout <s>', 'while a recovered store is not fully local: an op waiting for the archive fails with EIO after this long (default 5)', seconds)
    .option('--no-background-restore', 'while a recovered store is not fully local: fetch only what programs touch')
    .option('--lease <s>', 'the lease on the volume at a strata:// archive: without a renewal for this long, fsync and sync-mode writes fail with EIO (default 10)', seconds)
    .option('--metrics <host:port>', 'serve Prometheus metrics at http://HOST:PORT/metrics (docs/operations.md)')
    .option('--notify-parent', '(internal) report readiness over IPC')
    .action(async (mountpoint: string, opts) => { process.exitCode = await (await import('./mount-command.js')).mountCommand(mountpoint, opts as MountCliOptions); });
}

const mount = program
  .command('mount')
  .description('serve the tree under --store at MOUNTPOINT')
  .argument('<mountpoint>')
  .requiredOption('--store <dir>', 'local store directory (created if missing)')
  .option('--foreground', 'stay attached (for systemd); logs go to stderr unless --log-file')
  .option('--attr-timeout <s>', 'seconds the kernel caches attributes', seconds)
  .option('--entry-timeout <s>', 'seconds the kernel caches names', seconds)
  .option('--negative-timeout <s>', 'seconds the kernel caches "no such name"', seconds)
  .option('--no-direct-io', 'answer every request in the JavaScript core (no reads, writes, getattr, lookup, setattr, create or open on the FUSE thread)')
  .option('--debug-fuse', 'libfuse debug output on stderr')
  .option('--archive <url>', 'mirror every change to this archive: file:///DIR, strata://HOST:PORT or stratas://HOST:PORT')
  .option('--volume <name>', 'the archive volume of this store');
daemonOptions(mount);

const recover = program
  .command('recover')
  .description('after losing the store: fence the volume, restore its top tiers, serve at MOUNTPOINT; the rest comes on demand and in the background')
  .argument('<mountpoint>')
  .requiredOption('--archive <url>', 'file:///DIR, strata://HOST:PORT or stratas://HOST:PORT')
  .requiredOption('--volume <name>', 'the archive volume to recover')
  .requiredOption('--store <dir>', 'local store directory: empty, or partly restored by an earlier run')
  .option('--depth <n>', 'directories at this tier stay pending (root = tier 0)', (v: string) => {
    const n = Number(v);
    if (!Number.isInteger(n) || n < 0) throw new InvalidArgumentError('not a tier number');
    return n;
  }, 2)
  .option('--foreground', 'stay attached and show the background restore\'s progress')
  .option('--snapshot <id>', 'recover from this snapshot: the volume\'s head becomes its tree (the head is kept as a snapshot first)')
  .option('--condition <name>', 'recover from the newest complete snapshot taken for this condition, on a readable target')
  .option('--before <time>', 'with --condition: the newest taken before this time (ISO 8601)')
  .option('--force', 'fence the volume even though another primary holds a live lease on it (that primary turns read-only)');
daemonOptions(recover);

program
  .command('unmount')
  .alias('umount')
  .description('flush and unmount; the daemon exits. Clears a stale mount left by a dead daemon')
  .argument('<mountpoint>')
  .option('--lazy', 'detach even while programs still use the mount')
  .action(async (mountpoint: string, opts: { lazy?: boolean }) => { process.exitCode = await (await import('./operator-commands.js')).unmountCommand(mountpoint, opts); });

program
  .command('status')
  .description("report a daemon's state")
  .argument('<mountpoint>')
  .option('--json', 'machine-readable output')
  .action(async (mountpoint: string, opts: { json?: boolean }) => { process.exitCode = await (await import('./operator-commands.js')).statusCommand(mountpoint, opts); });

program
  .command('sync')
  .description('wait until the archive holds every change made so far on a mirrored mount')
  .argument('<mountpoint>')
  .option('--timeout <s>', 'give up after this long (default 60)', seconds)
  .option('--json', 'machine-readable output')
  .action(async (mountpoint: string, opts: { timeout?: number; json?: boolean }) => { process.exitCode = await (await import('./operator-commands.js')).syncCommand(mountpoint, opts); });

program
  .command('release')
  .description('a planned move: stop accepting writes, drain the journal to the archive, give the lease up, unmount')
  .argument('<mountpoint>')
  .option('--timeout <s>', 'how long the drain may take; when it does not finish, the mount serves on with its lease (default 60)', seconds)
  .option('--lazy', 'detach even while programs still use the mount')
  .option('--json', 'machine-readable output')
  .action(async (mountpoint: string, opts: { timeout?: number; lazy?: boolean; json?: boolean }) => { process.exitCode = await (await import('./lease-commands.js')).releaseCommand(mountpoint, opts); });

program
  .command('verify')
  .description('compare a store with its archive volume; exit 0 when equal, 1 when different, 2 on error. With MOUNTPOINT: the mount\'s store, archive and volume, after `strata sync` of it')
  .argument('[mountpoint]', 'a mirrored mount (instead of --store, --archive, --volume, --token-file)')
  .option('--store <dir>', 'the local store')
  .option('--archive <url>', 'file:///DIR, strata://HOST:PORT or stratas://HOST:PORT')
  .option('--volume <name>', 'the archive volume of this store')
  .option('--token-file <file>', 'token of a remote archive')
  .option('--timeout <s>', 'with MOUNTPOINT: how long `strata sync` may wait (default 60)', parseFloat)
  .option('--json', 'one JSON object per difference, then a summary object')
  .option('--no-content', 'skip the block-by-block comparison of file contents')
  .action(async (mountpoint: string | undefined, opts: Partial<VerifyOptions> & { timeout?: number }) => {
    const verify = await import('./verify-command.js');
    process.exitCode = mountpoint !== undefined ? await verify.verifyMountCommand(mountpoint, opts) : await verify.verifyStoreCommand(opts);
  });

const swap = program.command('swap').description('restore a point-in-time tree into a spare store while the mount serves, then exchange the stores in one step (docs/swap.md)');
swap
  .command('prepare')
  .description('write the tree of SOURCE into the empty spare directory in the background (a rerun resumes)')
  .argument('<mountpoint>')
  .requiredOption('--spare <dir>', 'an empty directory (on a file system with room for the tree)')
  .requiredOption('--from <source>', 'snapshot:ID, archive:RECORD, archive:TIME (ISO 8601) or checkpoint:NAME')
  .option('--archive <url>', 'the archive to read (default: the mirrored mount\'s)')
  .option('--volume <name>', 'its volume (with --archive)')
  .option('--token-file <file>', 'token of a remote archive')
  .option('--no-wait', 'return once started (progress in strata status)')
  .option('--json', 'machine-readable output')
  .action(async (mountpoint: string, opts: PrepareOptions) => { process.exitCode = await (await import('./swap-command.js')).swapPrepareCommand(mountpoint, opts); });
for (const direction of ['commit', 'back'] as const) {
  swap
    .command(direction)
    .description(direction === 'commit'
      ? 'hold requests, exchange the live store with the prepared spare in one durable step, drop the kernel\'s caches, release'
      : 'the same exchange with the spare that holds the tree from before the last swap')
    .argument('<mountpoint>')
    .option('--hold-timeout <s>', 'roll back when the exchange is not decided within this long (default 5)', seconds)
    .option('--busy <mode>', 'during the hold, requests wait (default) or get EBUSY (ebusy)')
    .option('--json', 'machine-readable output')
    .action(async (mountpoint: string, opts: CommitOptions) => { process.exitCode = await (await import('./swap-command.js')).swapExchangeCommand(direction, mountpoint, opts); });
}
swap
  .command('discard')
  .description('empty the spare (a prepared tree, or the tree from before the last swap)')
  .argument('<mountpoint>')
  .option('--json', 'machine-readable output')
  .action(async (mountpoint: string, opts: { json?: boolean }) => { process.exitCode = await (await import('./swap-command.js')).swapDiscardCommand(mountpoint, opts); });

program
  .command('demo')
  .description('mirror a store to an embedded archive, build a real tree, lose the disk, recover it and verify')
  .option('--keep', 'keep the demo directory')
  .action(async (opts: { keep?: boolean }) => { process.exitCode = await (await import('./demo.js')).demoCommand(opts); });

const archive = program.command('archive').description('the archive node: volumes mirrored from primaries');
archive
  .command('serve')
  .description('serve the archive under --data over HTTP/2 (strata:// or, with --tls-cert/--tls-key, stratas://)')
  .requiredOption('--data <dir>', 'archive data directory (created if missing)')
  .requiredOption('--listen <host:port>', 'address to listen on (port 0: any free port)')
  .requiredOption('--token-file <file>', 'file holding the shared token clients must present (chmod 600)')
  .option('--tls-cert <file>', 'TLS certificate (PEM); with --tls-key, serve stratas://')
  .option('--tls-key <file>', 'TLS private key (PEM)')
  .option('--log-level <level>', 'trace, debug, info, warn, error', 'info')
  .option('--target <name=dir>', 'a storage target for snapshots (repeat; each on its own disk)', collect)
  .option('--rules <file>', 'conditions and schedules that take snapshots (YAML, docs/snapshots.md)')
  .option('--alerts-listen <host:port>', 'accept Alertmanager webhooks at http://HOST:PORT/alerts (Bearer token)')
  .option('--snapshot-duty <fraction>', 'share of the time snapshot copies may run, 0.05-1 (default 0.5: mirroring keeps most of the disks)', (v: string) => {
    const n = Number(v);
    if (!(n >= 0.05 && n <= 1)) throw new InvalidArgumentError('a fraction from 0.05 to 1');
    return n;
  })
  .option('--takeover-dir <dir>', 'automatic takeover: when a volume\'s lease lapses, recover it into DIR/VOLUME/store and serve it at DIR/VOLUME/mnt')
  .option('--takeover-after <s>', 'with --takeover-dir: seconds a lease must have lapsed (default 30; never less than the holder\'s lease + 1 s)', seconds)
  .option('--takeover-depth <n>', 'with --takeover-dir: strata recover --depth of a takeover (default 2)', (v: string) => Number(v))
  .option('--takeover-lease <s>', 'with --takeover-dir: the takeover mount\'s own lease (default 10)', seconds)
  .option('--metrics <host:port>', 'serve Prometheus metrics at http://HOST:PORT/metrics (docs/operations.md)')
  .option('--on-takeover <cmd>', 'with --takeover-dir: run this (sh -c) once a takeover mount serves; env STRATA_VOLUME, STRATA_MOUNTPOINT, STRATA_EPOCH')
  .option('--objects <url>', 'keep block packs in S3-compatible object storage, s3://BUCKET[/PREFIX]; the metadata database stays in --data and its copies go to the bucket (docs/object-storage.md); credentials from the AWS environment')
  .option('--s3-endpoint <url>', 'with --objects: the S3 endpoint (Ceph radosgw, MinIO, ...; default AWS)')
  .option('--s3-region <region>', 'with --objects: the region (default AWS_REGION, else us-east-1)')
  .option('--metadata-upload-interval <s>', 'with --objects: upload a metadata copy this often (default 60; also after every volume snapshot)', seconds)
  .option('--fetch-timeout <s>', 'with --objects: a read of a pack in the bucket fails (EIO at the primary) after this long (default 4)', seconds)
  .action(async (opts: ArchiveServeOptions) => { process.exitCode = await (await import('./archive-command.js')).archiveServeCommand(opts); });

program
  .command('standby', { hidden: true })
  .description('(run by the takeover supervisor) wait, warm, for a strata recover command line and become its daemon')
  .action(async () => {
    // Warm: everything a recover's daemon runs is loaded before the supervisor hears "standby".
    await Promise.all([import('./mount-command.js'), import('./mount-foreground.js'), import('../daemon/metrics.js')]);
    process.exitCode = await standby((argv) => program.parseAsync(argv, { from: 'user' }));
  });

program
  .command('install-mount-helper')
  .description('make `mount -t fuse.strata` and /etc/fstab lines work: writes DIR/mount.fuse.strata (mount(8) looks in /sbin)')
  .option('--dir <dir>', 'where mount(8) looks for helpers', '/sbin')
  .action((opts: { dir: string }) => {
    const path = installMountHelper(opts.dir, process.execPath, resolvePath(process.argv[1]!));
    process.stdout.write(`${path}: mount -t fuse.strata SOURCE MOUNTPOINT -o store=...,archive=...,volume=... now runs strata mount\n`);
  });

program
  .command('mount-helper', { hidden: true })
  .description('(run by mount.fuse.strata) mount(8)\'s SOURCE MOUNTPOINT -o OPTIONS as `strata mount`')
  .allowUnknownOption()
  .helpOption(false)
  .argument('[args...]')
  .action((args: string[]) => {
    let argv: string[];
    try {
      const h = parseHelperArgv(args);
      argv = mountArgs(h.source, h.mountpoint, h.options, mount.options);
    } catch (err) {
      process.stderr.write(`mount.fuse.strata: ${(err as Error).message}\n`);
      process.exitCode = 1;
      return;
    }
    const r = spawnSync(process.execPath, [process.argv[1]!, ...argv], { stdio: 'inherit' });
    process.exitCode = r.status ?? 1;
  });

/** --archive/--token-file/--json, which every archive-side command takes. */
function archiveOpts(cmd: Command): Command {
  return cmd
    .option('--archive <url>', 'file:///DIR, strata://HOST:PORT or stratas://HOST:PORT')
    .option('--token-file <file>', 'token of a remote archive')
    .option('--json', 'machine-readable output');
}

archiveOpts(archive.command('targets').description('the storage targets: device, free space, health (for file:// archives, --target sets them)'))
  .option('--target <name=dir>', 'file:// archives: the storage targets (repeat; replaces the set)', collect)
  .action(async (opts: ArchiveCliOptions & { target?: string[] }) => { process.exitCode = await (await import('./snapshot-command.js')).targetsCommand(opts); });
archiveOpts(archive.command('alerts').description('the alerts the archive received and what it decided'))
  .option('--limit <n>', 'newest N (default 50)', (v: string) => Number(v))
  .action(async (opts: ArchiveCliOptions & { limit?: number }) => { process.exitCode = await (await import('./snapshot-command.js')).alertsCommand(opts); });
archiveOpts(archive.command('status').description('every volume: its lease holder, epoch, lease age, state (active, lapsed, taken over, released, fenced), applied record, lag, takeover'))
  .option('--volume <name>', 'only this volume')
  .action(async (opts: ArchiveLeaseOptions & { volume?: string }) => { process.exitCode = await (await import('./lease-commands.js')).archiveStatusCommand(opts); });
archiveOpts(archive.command('release').description('release a volume: its takeover mount is drained and unmounted; a lapsed holder\'s lease is cleared (a live one is refused)').argument('<volume>'))
  .action(async (volume: string, opts: ArchiveLeaseOptions) => { process.exitCode = await (await import('./lease-commands.js')).archiveReleaseCommand(volume, opts); });
archiveOpts(archive.command('gc').description('reclaim blocks no volume head or snapshot references (data directory and targets)'))
  .action(async (opts: ArchiveCliOptions) => { process.exitCode = await (await import('./snapshot-command.js')).gcCommand(opts); });

const checkpoint = program.command('checkpoint').description('local point-in-time copies of a mounted store, with changed-block tracking (docs/checkpoints.md)');
checkpoint.command('create').description('take a checkpoint of the mounted tree (O(1): blocks are copied on their first change)')
  .argument('<mountpoint>')
  .option('--name <name>', 'its name (default ck-DATE-TIME)')
  .option('--copy-store <dir>', 'where the old blocks go (default STORE/.strata/checkpoints; may be another disk)')
  .option('--wait-writers <s>', 'on a --passthrough-writes mount: seconds to wait for files open for writing in passthrough to close (default 10)', parseFloat)
  .option('--json', 'machine-readable output')
  .action(async (mountpoint: string, opts: { name?: string; copyStore?: string; waitWriters?: number; json?: boolean }) => { process.exitCode = await (await import('./checkpoint-command.js')).checkpointCreateCommand(mountpoint, opts); });
checkpoint.command('list').description('the checkpoints of a mount: state, changes tracked, copy store use').argument('<mountpoint>')
  .option('--json', 'machine-readable output')
  .action(async (mountpoint: string, opts: { json?: boolean }) => { process.exitCode = await (await import('./checkpoint-command.js')).checkpointListCommand(mountpoint, opts); });
checkpoint.command('delete').description('delete a checkpoint and its copy').argument('<mountpoint>').argument('<name>')
  .action(async (mountpoint: string, name: string) => { process.exitCode = await (await import('./checkpoint-command.js')).checkpointDeleteCommand(mountpoint, name); });
checkpoint.command('diff').description('what changed since the checkpoint: created, removed, renamed, attribute changes, changed byte ranges')
  .argument('<mountpoint>').argument('<name>').argument('[paths...]', 'only under these paths')
  .option('--json', 'one JSON object')
  .action(async (mountpoint: string, name: string, paths: string[], opts: { json?: boolean }) => { process.exitCode = await (await import('./checkpoint-command.js')).checkpointDiffCommand(mountpoint, name, paths, opts); });

program
  .command('rollback')
  .description('put back the checkpoint\'s state inside the areas (paths, subtrees, FILE:OFFSET+LENGTH), on the live mount; no area: the whole tree')
  .argument('<mountpoint>')
  .argument('[areas...]')
  .requiredOption('--to <name>', 'the checkpoint')
  .option('--dry-run', 'print what would change and how many bytes would be copied')
  .option('--json', 'one JSON object: bytesCopied and the changes')
  .action(async (mountpoint: string, areas: string[], opts: { to: string; dryRun?: boolean; json?: boolean }) => { process.exitCode = await (await import('./checkpoint-command.js')).rollbackCommand(mountpoint, areas, opts); });

const snapshot = program.command('snapshot').description('point-in-time copies of a volume on the archive\'s storage targets (docs/snapshots.md)');
archiveOpts(snapshot.command('create').description('snapshot a volume now (from MOUNTPOINT: after the archive holds every change made so far)'))
  .argument('[mountpoint]')
  .option('--volume <name>', 'the volume (with --archive)')
  .option('--reason <text>', 'why, kept in the catalog')
  .option('--wait', 'return once the copy is complete (file:// archives always wait)')
  .option('--timeout <s>', 'from a mountpoint: how long to wait for the archive to hold every change (default 60)', seconds)
  .action(async (mountpoint: string | undefined, opts: CreateOptions) => { process.exitCode = await (await import('./snapshot-command.js')).snapshotCreateCommand(mountpoint, opts); });
archiveOpts(snapshot.command('list').description('the catalog: snapshots, their state, target, trigger and condition'))
  .option('--volume <name>', 'only this volume')
  .option('--condition <name>', 'only snapshots taken for this condition')
  .action(async (opts: ArchiveCliOptions & { volume?: string; condition?: string }) => { process.exitCode = await (await import('./snapshot-command.js')).snapshotListCommand(opts); });
archiveOpts(snapshot.command('show').description('one snapshot\'s catalog row').argument('<id>'))
  .action(async (id: string, opts: ArchiveCliOptions) => { process.exitCode = await (await import('./snapshot-command.js')).snapshotShowCommand(id, opts); });
archiveOpts(snapshot.command('delete').description('delete a snapshot (its blocks are reclaimed from its target)').argument('<id>'))
  .action(async (id: string, opts: ArchiveCliOptions) => { process.exitCode = await (await import('./snapshot-command.js')).snapshotDeleteCommand(id, opts); });
archiveOpts(snapshot.command('verify').description('re-hash every block of a snapshot on its target; exit 1 when any is damaged').argument('<id>'))
  .action(async (id: string, opts: ArchiveCliOptions) => { process.exitCode = await (await import('./snapshot-command.js')).snapshotVerifyCommand(id, opts); });

await program.parseAsync(process.argv);
