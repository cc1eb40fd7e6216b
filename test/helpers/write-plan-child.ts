// Carries out a write plan (write-plan.ts) on one file: `node
// write-plan-child.js PLAN.json FILE`. Prints `start` once the file is open,
// `acked I` after the fsync at op I returned (every op before it is then
// acknowledged: I1 says the archive keeps it), and `done` at the end.
import { fsyncSync, ftruncateSync, openSync, readFileSync, writeSync } from 'node:fs';
import { planData, type WritePlan } from './write-plan.js';

const [planPath, file] = process.argv.slice(2);
if (planPath === undefined || file === undefined) throw new Error('usage: write-plan-child PLAN.json FILE');
const plan = JSON.parse(readFileSync(planPath, 'utf8')) as WritePlan;
const fd = openSync(file, 'w', 0o644);
writeSync(1, 'start\n');
for (let i = 0; i < plan.ops.length; i++) {
  const op = plan.ops[i]!;
  if (op.kind === 'write') {
    const data = planData(plan.seed, i, op.len);
    const n = writeSync(fd, data, 0, data.length, op.off);
    // A short write would make two requests of one op: the test's prefix model needs one.
    if (n !== data.length) throw new Error(`short write at op ${i}: ${n} of ${data.length}`);
  } else if (op.kind === 'truncate') {
    ftruncateSync(fd, op.size);
  } else {
    fsyncSync(fd);
    writeSync(1, `acked ${i}\n`);
  }
}
writeSync(1, 'done\n');
