// Which request errors raise the primary's alerts (src/alerts/primary-conditions.ts):
// an EIO the local store answered raises StrataStoreIOError; an EIO because a
// restore's archive did not deliver (logged with `archive: true` by the FUSE
// adapter for an ArchiveDataError) is not the local disk's and raises nothing.
import test from 'ava';
import { tapRequestErrors, type ConditionWatcher } from '../../src/alerts/primary-conditions.js';
import { ArchiveDataError, FsError } from '../../src/errors/errno.js';

function watcherSpy(): { watcher: ConditionWatcher; noted: string[] } {
  const noted: string[] = [];
  return { watcher: { noteError: (code: string) => noted.push(code) } as unknown as ConditionWatcher, noted };
}

test('an EIO of the local store raises StrataStoreIOError; one the archive caused does not', (t) => {
  const { watcher, noted } = watcherSpy();
  const logged: unknown[] = [];
  const log = tapRequestErrors({ warn: (...args: unknown[]) => { logged.push(args[0]); } } as { warn: (...args: never[]) => void }, watcher);
  const warn = log.warn as unknown as (o: object, msg: string) => void;
  warn({ op: 'read', errno: -5, err: new FsError('EIO', 'disk') }, 'request failed');
  t.deepEqual(noted, ['EIO']);
  warn({ op: 'read', errno: -5, err: new ArchiveDataError('the archive did not answer'), archive: true }, 'request failed');
  warn({ op: 'write', errno: -28 }, 'request failed');
  t.deepEqual(noted, ['EIO', 'ENOSPC']);
  t.is(logged.length, 3, 'every one is still logged');
  t.true(new ArchiveDataError('x') instanceof FsError);
  t.is(new ArchiveDataError('x').errno, -5);
});
