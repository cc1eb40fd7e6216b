// The `strata` command line.
import { Command, InvalidArgumentError } from 'commander';
import { mountCommand } from './mount-command.js';
import { unmountCommand, statusCommand } from './operator-commands.js';
import { demoCommand } from './demo.js';

function seconds(v: string): number {
  const n = Number(v);
  if (!Number.isFinite(n) || n < 0) throw new InvalidArgumentError('not a number of seconds');
  return n;
}

const program = new Command();
program.name('strata').description('A FUSE filesystem that is back in seconds after it loses its disk').showHelpAfterError();

program
  .command('mount')
  .description('serve the tree under --store at MOUNTPOINT')
  .argument('<mountpoint>')
  .requiredOption('--store <dir>', 'local store directory (created if missing)')
  .option('--foreground', 'stay attached (for systemd); logs go to stderr unless --log-file')
  .option('--log-file <file>', 'append JSON log lines here (background default: STORE/.strata/daemon.log)')
  .option('--log-level <level>', 'trace, debug, info, warn, error', 'info')
  .option('--allow-other', 'let other users use the mount (always with default_permissions)')
  .option('--attr-timeout <s>', 'seconds the kernel caches attributes', seconds)
  .option('--entry-timeout <s>', 'seconds the kernel caches names', seconds)
  .option('--negative-timeout <s>', 'seconds the kernel caches "no such name"', seconds)
  .option('--no-direct-io', 'route every read and write through the JavaScript core')
  .option('--debug-fuse', 'libfuse debug output on stderr')
  .option('--notify-parent', '(internal) report readiness over IPC')
  .action(async (mountpoint: string, opts) => { process.exitCode = await mountCommand(mountpoint, opts); });

program
  .command('unmount')
  .alias('umount')
  .description('flush and unmount; the daemon exits. Clears a stale mount left by a dead daemon')
  .argument('<mountpoint>')
  .option('--lazy', 'detach even while programs still use the mount')
  .action(async (mountpoint: string, opts: { lazy?: boolean }) => { process.exitCode = await unmountCommand(mountpoint, opts); });

program
  .command('status')
  .description("report a daemon's state")
  .argument('<mountpoint>')
  .option('--json', 'machine-readable output')
  .action(async (mountpoint: string, opts: { json?: boolean }) => { process.exitCode = await statusCommand(mountpoint, opts); });

program
  .command('demo')
  .description('mount a store, run real programs on it, show the results, unmount')
  .option('--keep', 'keep the demo directory')
  .action(async (opts: { keep?: boolean }) => { process.exitCode = await demoCommand(opts); });

await program.parseAsync(process.argv);
