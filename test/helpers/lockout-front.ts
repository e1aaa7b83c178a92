// A front with the generated Basic config and its lockouts (plexer lockout serving the 401 page), for the tests
// that guess passwords: alice and bob (seedTwoTenants) plus `users` in tenant2, each with password NAME-pw.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { cliOk, seedTwoTenants, startTestFront, waitUntilServed, type TestFront } from './front.js';
import { waitFor } from './wait.js';

export interface LockoutFront {
  t: TestFront;
  lockDir: string;
  // The 401 page as plexer lockout serves it.
  refusalPage: string;
}

export async function startLockoutFront(users: string[], maxFailures: number): Promise<LockoutFront> {
  const t = await startTestFront(
    async (cli) => {
      await seedTwoTenants(cli);
      for (const user of users) await cliOk(cli, ['user', 'add', user, '--group', 'tenant2', '--password-stdin'], `${user}-pw\n`);
    },
    {
      configExtra: { lockout_max_failures: maxFailures, lockout_window_seconds: 600, lockout_seconds: 600 },
      // The tests' own connections come from 127.0.0.1: that is the proxy whose X-Forwarded-For is believed.
      front: { extra: { trustedProxies: ['127.0.0.1'] } },
    },
  );
  await waitUntilServed(t, 'alice', 'alice-pw');
  // Apache starts the logger with itself; Node needs a moment before it reads (lines meanwhile wait in the pipe).
  await waitFor(
    () => /lockout info: counting refused logins .*page_socket=/.test(t.front.httpd.errorLog()),
    15_000,
    'plexer lockout to start',
  );
  return { t, lockDir: t.front.lockDir, refusalPage: readFileSync(join(t.front.runtime.errorPagesDir, '401.html'), 'latin1') };
}

// /app/whoami as USER with PASSWORD from the trusted proxy (127.0.0.1) on behalf of the client address `from`, on a
// connection of its own.
export const whoamiFrom = (t: TestFront, user: string, password: string, from: string) =>
  t.get('/app/whoami', { user, password, headers: { 'x-forwarded-for': from }, fresh: true });
