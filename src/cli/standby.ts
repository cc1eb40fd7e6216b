// `strata standby` (internal): a warm process for the archive host's takeover
// supervisor (src/archive/takeover.ts). It starts with every module of the CLI
// loaded and waits on its IPC channel; told to run a `strata recover
// --foreground --notify-parent ...` command line, it becomes that daemon in
// place, so a takeover does not pay for starting Node and loading strata (two
// processes, with `strata recover` spawning its daemon) after the lease lapsed.
// The recover's readiness ("ready" / "error", with the time to serve) goes to
// the supervisor over the same channel, as it would to `strata recover`.
// Without the supervisor (its channel closes) a standby that runs nothing exits.

/** What the supervisor sends. */
export interface StandbyRun {
  type: 'run';
  argv: string[];
}

/** Why a command line is not one a standby runs, or null. */
export function standbyRefusal(argv: readonly string[]): string | null {
  if (argv[0] !== 'recover') return 'a standby only runs strata recover';
  if (!argv.includes('--foreground') || !argv.includes('--notify-parent')) return 'a standby runs recover --foreground --notify-parent only';
  return null;
}

/** Waits for the supervisor's command line and runs it with `run` (the CLI's parser). */
export function standby(run: (argv: string[]) => Promise<unknown>): Promise<number> {
  if (!process.send) {
    process.stderr.write('strata standby: internal command for the takeover supervisor (needs an IPC channel)\n');
    return Promise.resolve(2);
  }
  return new Promise<number>((resolve) => {
    let started = false;
    process.once('disconnect', () => {
      if (!started) resolve(0);
    });
    process.on('message', (m: StandbyRun) => {
      if (started || m?.type !== 'run' || !Array.isArray(m.argv)) return;
      const refused = standbyRefusal(m.argv);
      if (refused !== null) {
        process.send?.({ type: 'error', message: refused });
        resolve(2);
        return;
      }
      started = true;
      // The recover reports to the supervisor and disconnects; its process lives on as the daemon.
      run(m.argv).catch((err: unknown) => {
        process.send?.({ type: 'error', message: (err as Error).message });
        resolve(1);
      });
    });
    process.send!({ type: 'standby' });
  });
}
