// Runs one of the built bench scripts (dist-bench/src/NAME.js) as `npm run bench… -- ARGS` would; its stdout and
// stderr together, printed when it fails.
import { spawn } from 'node:child_process';
import { REPO_ROOT } from './plexer.js';

export async function runBenchScript(script: string, args: string[]): Promise<{ code: number | null; output: string }> {
  const child = spawn(process.execPath, [`dist-bench/src/${script}.js`, ...args], { cwd: REPO_ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  child.stdout.on('data', (d) => (output += d));
  child.stderr.on('data', (d) => (output += d));
  const code = await new Promise<number | null>((resolve) => child.on('exit', resolve));
  if (code !== 0) console.log(output.slice(-4000));
  return { code, output };
}
