// strata's sdNotify (native/src/notify.c): the errors it gives for sockets
// that are not there or not valid names. The datagrams themselves are
// checked against a real receiver in test/integration/systemd.test.ts.
import test from 'ava';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { sdNotify } from '../../src/native/index.js';

test('a socket that does not exist: ENOENT naming it (relative names: EINVAL)', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'strata-notify-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const missing = join(dir, 'nobody.sock');
  const e = await t.throwsAsync(sdNotify(missing, 'READY=1'));
  t.is((e as NodeJS.ErrnoException).code, 'ENOENT');
  t.is((e as NodeJS.ErrnoException).syscall, 'sendto');
  t.is((e as NodeJS.ErrnoException).path, missing);
  const rel = await t.throwsAsync(sdNotify('relative.sock', 'READY=1'));
  t.is((rel as NodeJS.ErrnoException).code, 'EINVAL');
  const long = await t.throwsAsync(sdNotify(`/${'x'.repeat(200)}`, 'READY=1'));
  t.is((long as NodeJS.ErrnoException).code, 'EINVAL');
  // An abstract name nobody bound: refused.
  const abs = await t.throwsAsync(sdNotify(`@strata-nobody-${process.pid}`, 'READY=1'));
  t.is((abs as NodeJS.ErrnoException).code, 'ECONNREFUSED');
  await t.throwsAsync(sdNotify('/tmp/a\0b', 'READY=1'), { instanceOf: TypeError });
});
