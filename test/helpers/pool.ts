// A pool's OS accounts, named by a prefix of the test's own: created by the front (preparePool) and the binder,
// removed afterwards, so tests side by side never share a slot user or an account group.
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { processIdentity, processIds } from '../../src/proc.js';
import { userIds } from '../../src/tenant-users.js';
import { waitFor } from './wait.js';

export function testPoolPrefix(): string {
  return `pt${randomBytes(3).toString('hex')}`;
}

// Once their processes are gone (mod_wsgi's daemons take a moment to exit after Apache's parent has).
export async function removePoolAccounts(prefix: string): Promise<void> {
  const names = (file: string) =>
    readFileSync(file, 'utf8')
      .split('\n')
      .map((line) => line.split(':')[0]!)
      .filter((name) => name.startsWith(`${prefix}-`));
  const uids = new Set(names('/etc/passwd').map((user) => userIds(user)!.uid));
  await waitFor(
    () => !processIds().some((pid) => uids.has(processIdentity(pid)?.uid ?? -1)),
    15_000,
    `the processes of ${prefix}-* to exit`,
  );
  for (const user of names('/etc/passwd')) execFileSync('userdel', [user], { stdio: 'ignore' });
  for (const group of names('/etc/group')) {
    try {
      execFileSync('groupdel', [group], { stdio: 'ignore' });
    } catch {
      // a user's own group went with the user
    }
  }
}

// The groups the kernel gave a process (its supplementary groups).
export function processGroups(pid: number): number[] {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  return (/^Groups:[ \t]*(.*)$/m.exec(status)?.[1] ?? '').split(/\s+/).filter(Boolean).map(Number);
}
