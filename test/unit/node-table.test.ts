// The core's node table: one node per object, names, lookup counts, and
// nodes the FUSE bridge made itself (adopt).
import test from 'ava';
import { InodeTable, ROOT_NODEID } from '../../src/core/node-table.js';

function counter(start: number): () => number {
  let next = start;
  return () => next++;
}

test('a node the bridge made is found by its name and its inode number; a later lookup is the same node', (t) => {
  const ids = counter(2);
  const table = new InodeTable(100n, ids);
  const dir = table.remember(table.root, 'd', 200n);
  t.is(dir.nodeid, 2);
  // The bridge took id 3 from the shared counter.
  const made = table.adopt(dir, 'f', 300n, ids());
  t.is(made.nodeid, 3);
  t.is(table.pathOf(made), '/d/f');
  t.is(table.get(3), made);
  t.is(made.nlookup, 1);
  const again = table.remember(dir, 'f', 300n);
  t.is(again, made);
  t.is(made.nlookup, 2);
  // A new node after that takes the next id.
  t.is(table.remember(dir, 'g', 301n).nodeid, 4);
  table.forget(3, 2);
  t.is(table.find(3), undefined);
  t.is(table.find(ROOT_NODEID), table.root);
});

test('adopt replaces what the name stood for; the replaced node keeps its id until forgotten', (t) => {
  const table = new InodeTable(1n);
  const old = table.remember(table.root, 'x', 10n);
  const made = table.adopt(table.root, 'x', 11n, 50);
  t.is(table.pathOf(made), '/x');
  t.is(table.pathOf(old), null);
  t.is(table.get(old.nodeid), old);
  // The reused inode number of an unrelated new object maps to the new node.
  const reuse = table.adopt(table.root, 'y', 10n, 51);
  t.is(table.remember(table.root, 'y', 10n), reuse);
});

test('a swap (detachAll): known nodes keep their ids but no name (ESTALE), new lookups get new nodes, the root is the new store\'s', (t) => {
  const table = new InodeTable(100n, counter(2));
  const dir = table.remember(table.root, 'd', 200n);
  const file = table.remember(dir, 'f', 300n);
  file.handles.add(7);
  const forgotten = table.remember(table.root, 'gone', 400n);
  table.detachAll(900n);
  t.is(table.root.ino, 900n);
  t.is(table.pathOf(table.root), '/');
  t.is(table.get(dir.nodeid), dir, 'a node the kernel still holds keeps its id');
  t.is(table.pathOf(dir), null);
  t.throws(() => table.requirePath(file), { code: 'ESTALE' });
  t.throws(() => table.childPath(dir, 'x'), { code: 'ESTALE' });
  t.true(forgotten.stale);
  table.forget(forgotten.nodeid, 1);
  t.is(table.find(forgotten.nodeid), undefined, 'a stale node goes once the kernel forgets it');
  t.is(table.root.children.get('gone'), undefined);
  // The same names (and even the same backing inode numbers) in the new store are new nodes.
  const dir2 = table.remember(table.root, 'd', 200n);
  t.not(dir2.nodeid, dir.nodeid);
  t.false(dir2.stale);
  t.is(table.pathOf(table.remember(dir2, 'f', 300n)), '/d/f');
  table.forget(file.nodeid, 1);
  t.is(table.find(file.nodeid), file, 'an open handle keeps it');
});
