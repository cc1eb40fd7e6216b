// `mount -t fuse.strata` and /etc/fstab: mount(8) runs /sbin/mount.fuse.strata
// (written by `strata install-mount-helper`) as
//     mount.fuse.strata SOURCE MOUNTPOINT [-o OPTIONS] [-n] [-s] [-f] [-v]
// which runs `strata mount-helper` with those arguments. Each OPTION is a
// `strata mount` option without its dashes (`store=/srv/store`,
// `archive=strata://archive:7070`, `volume=web1`, `token-file=/etc/strata/token`,
// `allow_other`, `no-direct-io`, ...): every option `strata mount` has, taken
// from its definition, so none is missing. SOURCE is the store when no
// `store=` is given. mount(8)'s and systemd's own options (`defaults`, `rw`,
// `_netdev`, `nofail`, `x-systemd.*`, `noauto`, ...) are theirs and skipped.
// The mount returns once it serves, as `strata mount` does; `umount` unmounts
// it and the daemon exits.
import { chmodSync, mkdirSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import type { Option } from 'commander';

/** Options of mount(8), fuse and systemd that are not strata's: accepted and left alone. */
const FOREIGN = new Set([
  'defaults', 'rw', 'auto', 'noauto', 'user', 'nouser', 'users', 'owner', 'group', '_netdev', 'nofail',
  'dev', 'nodev', 'suid', 'nosuid', 'exec', 'noexec', 'atime', 'noatime', 'relatime', 'norelatime', 'strictatime',
  'diratime', 'nodiratime', 'lazytime', 'nolazytime', 'async', 'loud', 'silent', 'nosymfollow',
]);
const FOREIGN_PREFIXES = ['x-', 'comment=', 'fsname=', 'subtype=', 'helper='];

/** The `strata mount` arguments for mount(8)'s SOURCE, MOUNTPOINT and -o list; throws on what strata cannot honour. */
export function mountArgs(source: string, mountpoint: string, optionList: string, mountOptions: readonly Option[]): string[] {
  const byName = new Map<string, Option>();
  for (const o of mountOptions) if (o.long) byName.set(o.long.replace(/^--/, ''), o);
  const args: string[] = [];
  let store: string | null = null;
  for (const raw of optionList.split(',').map((s) => s.trim()).filter((s) => s.length > 0)) {
    const eq = raw.indexOf('=');
    const key = (eq < 0 ? raw : raw.slice(0, eq)).replace(/_/g, '-');
    const value = eq < 0 ? null : raw.slice(eq + 1);
    if (FOREIGN.has(raw) || FOREIGN.has(key) || FOREIGN_PREFIXES.some((p) => raw.startsWith(p))) continue;
    if (key === 'ro') throw new Error('strata mounts are read-write: remove "ro"');
    if (key === 'foreground' || key === 'notify-parent') throw new Error(`"${key}" is not a mount option (mount(8) expects the command to return once the mount serves)`);
    const opt = byName.get(key);
    if (opt === undefined) throw new Error(`unknown option "${raw}" (strata mount options without their dashes, e.g. store=/srv/store,archive=URL,volume=NAME)`);
    const takesValue = opt.required || opt.optional;
    if (takesValue && value === null) throw new Error(`option "${key}" needs a value (${key}=...)`);
    if (!takesValue && value !== null) throw new Error(`option "${key}" takes no value`);
    if (key === 'store') store = value;
    else args.push(`--${key}`, ...(value === null ? [] : [value]));
  }
  return ['mount', '--store', resolve(store ?? source), ...args, resolve(mountpoint)];
}

/** Parses mount(8)'s call of a helper: SOURCE MOUNTPOINT, then -o LIST and flags in any order. */
export function parseHelperArgv(argv: readonly string[]): { source: string; mountpoint: string; options: string } {
  const positional: string[] = [];
  const options: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === '-o') {
      const v = argv[++i];
      if (v === undefined) throw new Error('-o needs a list of options');
      options.push(v);
    } else if (a.startsWith('-o')) {
      options.push(a.slice(2));
    } else if (a === '-t') {
      i++; // the type (fuse.strata): ours
    } else if (/^-[nsfvw]+$/.test(a)) {
      // -n (no mtab), -s (sloppy), -f (fake), -v (verbose), -w (rw): nothing for strata to do
    } else if (a.startsWith('-')) {
      throw new Error(`unknown flag ${a}`);
    } else {
      positional.push(a);
    }
  }
  if (positional.length !== 2) throw new Error('usage: mount.fuse.strata SOURCE MOUNTPOINT [-o OPTIONS]');
  return { source: positional[0]!, mountpoint: positional[1]!, options: options.join(',') };
}

/** Writes DIR/mount.fuse.strata, which mount(8) runs for `-t fuse.strata`; returns its path. */
export function installMountHelper(dir: string, nodePath: string, cliPath: string): string {
  mkdirSync(dir, { recursive: true });
  const path = join(dir, 'mount.fuse.strata');
  const q = (s: string): string => `'${s.replace(/'/g, "'\\''")}'`;
  writeFileSync(path, [
    '#!/bin/sh',
    '# mount(8) helper for `mount -t fuse.strata` and /etc/fstab; written by `strata install-mount-helper`.',
    `exec ${q(nodePath)} ${q(cliPath)} mount-helper "$@"`,
    '',
  ].join('\n'));
  chmodSync(path, 0o755);
  return path;
}
