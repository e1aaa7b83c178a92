import { execFileSync } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { PACKAGE_ROOT, runtimeAt, type Runtime } from '../apache/install-paths.js';

export function readableBy(user: string, path: string): boolean {
  try {
    execFileSync('runuser', ['-u', user, '--', 'test', '-r', path], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

// Apache's workers, maps and WSGI daemons run as www-data and must read plexer's code. A checkout under a
// private directory (/root, a 0700 home) is not readable to them, so the demo and the tests run Apache from a
// copy in their state directory instead of loosening permissions on someone's home.
export function prepareRuntime(stateDir: string, runUser = 'www-data'): Runtime {
  const files = ['bin', 'dist', 'node_modules', 'apache', 'package.json', 'src/store/migrations'];
  if (files.every((file) => readableBy(runUser, join(PACKAGE_ROOT, file)))) return runtimeAt(PACKAGE_ROOT);
  const root = join(stateDir, 'runtime');
  rmSync(root, { recursive: true, force: true });
  mkdirSync(join(root, 'src/store'), { recursive: true });
  for (const file of files) {
    if (existsSync(join(PACKAGE_ROOT, file))) cpSync(join(PACKAGE_ROOT, file), join(root, file), { recursive: true });
  }
  execFileSync('chmod', ['-R', 'a+rX', root]);
  return runtimeAt(root);
}
