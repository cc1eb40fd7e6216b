// `strata demo` / `npm run demo`: the main job on one machine. It mounts a
// fresh store mirrored to an embedded file:// archive, runs real programs on
// the mount, shows that the files are plain files in the store, waits until
// the archive holds every change, verifies the archive against the store, and
// unmounts. (Disk loss and recovery join it when `strata recover` lands.)
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const cli = fileURLToPath(new URL('../../../bin/strata.js', import.meta.url));

function step(title: string): void {
  process.stdout.write(`\n== ${title}\n`);
}

function sh(cmd: string, cwd: string): string {
  process.stdout.write(`$ ${cmd}\n`);
  const res = spawnSync('bash', ['-c', cmd], { cwd, encoding: 'utf8' });
  const out = (res.stdout ?? '') + (res.stderr ?? '');
  process.stdout.write(out.split('\n').slice(0, 12).map((l) => (l ? `  ${l}` : l)).join('\n').trimEnd() + '\n');
  if (res.status !== 0) throw new Error(`command failed (exit ${res.status}): ${cmd}`);
  return out;
}

function has(program: string): boolean {
  return spawnSync('bash', ['-c', `command -v ${program}`]).status === 0;
}

export async function demoCommand(opts: { keep?: boolean }): Promise<number> {
  const base = mkdtempSync(join(tmpdir(), 'strata-demo-'));
  const store = join(base, 'store');
  const mnt = join(base, 'mnt');
  const archive = `file://${join(base, 'archive')}`;
  mkdirSync(mnt);
  let mounted = false;
  try {
    step(`mount a fresh store (${store}) at ${mnt}, mirrored to ${archive} (volume demo)`);
    const t0 = process.hrtime.bigint();
    execFileSync(process.execPath, [cli, 'mount', '--store', store, '--archive', archive, '--volume', 'demo', mnt], { stdio: 'inherit' });
    mounted = true;
    process.stdout.write(`  serving after ${Number((process.hrtime.bigint() - t0) / 1_000_000n)} ms\n`);

    step('real programs on the mount');
    sh('git init -q repo && cd repo && git config user.email demo@strata && git config user.name demo && ' +
      'for i in 1 2 3; do echo "line $i" >> notes.txt; git add notes.txt; git commit -qm "commit $i"; done && git log --oneline && git fsck --no-progress', mnt);
    if (has('sqlite3')) {
      sh("sqlite3 app.db 'create table t(k integer primary key, v text); begin; " +
        "insert into t(v) select hex(randomblob(16)) from (with recursive c(x) as (select 1 union all select x+1 from c where x<1000) select x from c); commit; " +
        "select count(*) from t; pragma integrity_check;'", mnt);
    } else {
      process.stdout.write('  (sqlite3 not installed: skipped)\n');
    }
    writeFileSync(join(base, 'payload.txt'), 'hello from strata\n'.repeat(1000));
    sh(`mkdir -p src/a/b && cp ${join(base, 'payload.txt')} src/a/b/ && ln -s a/b/payload.txt src/link && ln src/a/b/payload.txt src/hard && mkfifo src/fifo && ` +
      'tar -cf tree.tar src && mkdir unpacked && tar -xf tree.tar -C unpacked && ls -la unpacked/src && stat -c "%n ino=%i links=%h" src/a/b/payload.txt src/hard', mnt);
    sh('touch -m -d "2001-02-03 04:05:06.123456789" src/a/b/payload.txt && stat -c "%n mtime=%y" src/a/b/payload.txt', mnt);

    step('the store holds plain files');
    sh(`ls -la ${store} && diff -r ${join(mnt, 'repo')} ${join(store, 'repo')} && echo identical`, base);

    step('the archive catches up (strata sync), then holds exactly the store (strata verify)');
    sh(`node ${cli} sync ${mnt}`, base);
    sh(`node ${cli} verify --store ${store} --archive ${archive} --volume demo`, base);

    step('daemon status');
    sh(`node ${cli} status ${mnt}`, base);

    step('unmount');
    sh(`node ${cli} unmount ${mnt}`, base);
    mounted = false;
    process.stdout.write('\ndemo finished: all steps passed\n');
    return 0;
  } catch (err) {
    process.stderr.write(`demo failed: ${(err as Error).message}\n`);
    return 1;
  } finally {
    if (mounted) spawnSync(process.execPath, [cli, 'unmount', '--lazy', mnt], { stdio: 'inherit' });
    if (!opts.keep) rmSync(base, { recursive: true, force: true });
    else process.stdout.write(`kept ${base}\n`);
  }
}
