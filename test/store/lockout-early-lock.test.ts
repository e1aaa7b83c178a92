// plexer lockout makes a lock file as soon as the count it expects reaches a limit, before the store has
// counted. The store is the one count: when its answers, once all are in, do not bear the lock out — a successful
// login reset the count meanwhile (attack review: 16 parallel guessers, the right password among them) — the
// early lock is lifted. Otherwise it would hold for lockout_seconds, unseen by `user list` and untouched by
// `user unlock`, since the store has no lockout to show or remove.
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { chmodSync, existsSync, mkdtempSync, rmSync } from 'node:fs';
import { request } from 'node:http';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freshStore, PLEXER_BIN, REPO_ROOT, type TestStore } from '../helpers/plexer.js';
import { waitFor } from '../helpers/wait.js';

const MAX_FAILURES = 10;
let store: TestStore;
let dir: string;
let lockout: ChildProcessWithoutNullStreams;
let stderr = '';

beforeAll(async () => {
  store = await freshStore({ lockout_max_failures: MAX_FAILURES, lockout_window_seconds: 600, lockout_seconds: 600 });
  dir = mkdtempSync('/dev/shm/plexer-early-');
  chmodSync(dir, 0o711);
  // As Apache starts it: root, stdin the 401 lines, the 401 page on DIR/locks/refused.sock.
  lockout = spawn(
    process.execPath,
    [
      PLEXER_BIN,
      'lockout',
      '--lock-dir',
      join(dir, 'locks'),
      '--refusal-page',
      join(REPO_ROOT, 'apache/errors/401.html'),
      '--config',
      store.configPath,
    ],
    { env: {}, cwd: '/' },
  );
  lockout.stderr.on('data', (chunk) => (stderr += chunk));
  await waitFor(
    () => /counting refused logins .*page_socket=/.test(stderr) && /listening for changes/.test(stderr),
    15_000,
    'plexer lockout to start',
  );
}, 60_000);

afterAll(async () => {
  lockout?.stdin.end();
  await new Promise((resolve) => (lockout?.exitCode !== null ? resolve(undefined) : lockout.once('exit', resolve)));
  rmSync(dir, { recursive: true, force: true });
  await store?.close();
});

// A refused Basic guess as Apache fetches its 401 page: the request's Authorization, the client appended to
// X-Forwarded-For.
function refusal(user: string, address: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const r = request(
      {
        socketPath: join(dir, 'locks', 'refused.sock'),
        path: '/refused',
        headers: { authorization: `Basic ${Buffer.from(`${user}:guess`).toString('base64')}`, 'x-forwarded-for': address },
      },
      (response) => {
        response.resume();
        response.on('end', () => resolve(response.statusCode ?? 0));
      },
    );
    r.on('error', reject);
    r.end();
  });
}

const storeCount = async (subject: string) =>
  (await store.sql.query<{ failures: number }>('SELECT failures FROM login_failures WHERE subject = $1', [subject])).rows[0]?.failures ?? 0;

const lockedInStore = async (subject: string) =>
  (await store.sql.query('SELECT 1 FROM login_failures WHERE subject = $1 AND locked_until > now()', [subject])).rowCount === 1;

describe('an early lock the store does not bear out', () => {
  it('is lifted once the store has answered every failure sent', async () => {
    const lockFile = join(dir, 'locks', 'pair', '10.0.0.1', 'alice');
    for (let i = 0; i < MAX_FAILURES; i++) expect(await refusal('alice', '10.0.0.1')).toBe(401);
    // Made before the limit-th refusal was answered.
    expect(existsSync(lockFile)).toBe(true);
    // Half the log lines reach the store; then alice logs in with her right password (authn clears her count from
    // that address); then the other half.
    lockout.stdin.write('alice 10.0.0.1\n'.repeat(MAX_FAILURES / 2));
    await waitFor(async () => (await storeCount('pair:alice/10.0.0.1')) === MAX_FAILURES / 2, 5_000, 'half the failures in the store');
    await store.sql.query(`SELECT clear_login_failures(ARRAY['pair:alice/10.0.0.1'])`);
    lockout.stdin.write('alice 10.0.0.1\n'.repeat(MAX_FAILURES / 2));
    await waitFor(async () => (await storeCount('pair:alice/10.0.0.1')) === MAX_FAILURES / 2, 5_000, 'the other half in the store');
    await waitFor(() => !existsSync(lockFile), 2_000, 'the early lock file to go');
    expect(await lockedInStore('pair:alice/10.0.0.1')).toBe(false);
  });

  it('stays when the store bears it out', async () => {
    const lockFile = join(dir, 'locks', 'pair', '10.0.0.2', 'alice');
    for (let i = 0; i < MAX_FAILURES; i++) expect(await refusal('alice', '10.0.0.2')).toBe(401);
    expect(existsSync(lockFile)).toBe(true);
    lockout.stdin.write('alice 10.0.0.2\n'.repeat(MAX_FAILURES));
    await waitFor(async () => (await storeCount('pair:alice/10.0.0.2')) === MAX_FAILURES, 5_000, 'every failure in the store');
    expect(await lockedInStore('pair:alice/10.0.0.2')).toBe(true);
    expect(existsSync(lockFile)).toBe(true);
  });
});
