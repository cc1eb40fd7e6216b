// A child process of rename-race.ts:
//   node rename-race-child.js renamer ROOT      renames ROOT/p/d <-> ROOT/p/e until killed
//   node rename-race-child.js worker ROOT MS    works inside ROOT/p/d (its working directory,
//        so it follows the directory through the renames) for MS ms: create, write, chmod,
//        stat, rename, unlink, mkdir, rmdir; prints {"iterations", "errors"} as JSON
import { chmodSync, closeSync, mkdirSync, openSync, renameSync, rmdirSync, statSync, unlinkSync, writeSync } from 'node:fs';

const [role, root, msS] = process.argv.slice(2);
if (role === 'renamer') {
  let a = `${root}/p/d`;
  let b = `${root}/p/e`;
  for (;;) {
    renameSync(a, b);
    [a, b] = [b, a];
  }
} else {
  // The renamer runs already: the directory is at one name or the other.
  for (let i = 0; ; i++) {
    try {
      process.chdir(`${root}/p/${i % 2 === 0 ? 'd' : 'e'}`);
      break;
    } catch (err) {
      if (i > 10_000) throw err;
    }
  }
  const errors: string[] = [];
  let iterations = 0;
  const until = Date.now() + Number(msS);
  while (Date.now() < until) {
    const f = `f${iterations % 10}`;
    iterations++;
    try {
      const fd = openSync(f, 'w', 0o644);
      writeSync(fd, 'x');
      closeSync(fd);
      chmodSync(f, 0o600);
      statSync('.');
      renameSync(f, `${f}.renamed`);
      mkdirSync(`sub${iterations % 10}`);
      rmdirSync(`sub${iterations % 10}`);
      unlinkSync(`${f}.renamed`);
    } catch (err) {
      if (errors.length < 5) errors.push(`${(err as Error).message}`);
    }
  }
  process.stdout.write(`${JSON.stringify({ iterations, errors })}\n`);
}
