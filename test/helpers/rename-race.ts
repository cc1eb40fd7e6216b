// A program working inside a directory while another renames it back and
// forth (rename-race-child.ts): on a native directory it never sees an error.
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const CHILD = fileURLToPath(new URL('./rename-race-child.js', import.meta.url));

export async function renameRace(root: string, ms: number): Promise<{ iterations: number; errors: string[] }> {
  const renamer = spawn(process.execPath, [CHILD, 'renamer', root], { stdio: 'ignore' });
  const renamerGone = new Promise((resolve) => renamer.on('exit', resolve));
  try {
    const worker = spawn(process.execPath, [CHILD, 'worker', root, String(ms)], { stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    worker.stdout.on('data', (d: Buffer) => { out += d.toString(); });
    const code = await new Promise<number | null>((resolve) => worker.on('exit', resolve));
    if (code !== 0) throw new Error(`rename-race worker exited ${code}: ${out}`);
    return JSON.parse(out) as { iterations: number; errors: string[] };
  } finally {
    renamer.kill('SIGKILL');
    await renamerGone;
  }
}
