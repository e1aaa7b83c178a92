// Guessing around the cache, and throttling that protects users, against a real Apache with the generated
// config (mod_authn_socache in front of plexer authn, `plexer lockout` as a piped logger) and a real store.
import { existsSync } from 'node:fs';
import http from 'node:http';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cliOk, type TestFront } from '../helpers/front.js';
import { startLockoutFront } from '../helpers/lockout-front.js';

const MAX_FAILURES = 10;
let t: TestFront;
let lockDir: string;
let refusalPage: string;

// One keep-alive connection, as a guesser would use; `forwardedFor` sets X-Forwarded-For.
const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
function get(user: string, password: string, forwardedFor?: string, localAddress?: string): Promise<number> {
  return answer(user, password, forwardedFor, localAddress).then((r) => r.status);
}

interface Answer {
  status: number;
  body: string;
  authenticate: string | undefined;
}
function answer(user: string, password: string, forwardedFor?: string, localAddress?: string, path = '/app/whoami'): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const headers: Record<string, string> = { authorization: `Basic ${Buffer.from(`${user}:${password}`).toString('base64')}` };
    if (forwardedFor !== undefined) headers['x-forwarded-for'] = forwardedFor;
    // From another local address (not the trusted proxy): a connection of its own.
    const via = localAddress === undefined ? { agent } : { localAddress, agent: false as const };
    const request = http.get({ host: '127.0.0.1', port: t.front.httpd.port, path, headers, ...via }, (response) => {
      let body = '';
      response.on('data', (chunk) => (body += chunk));
      response.on('end', () =>
        resolve({ status: response.statusCode ?? 0, body, authenticate: response.headers['www-authenticate'] as string | undefined }),
      );
    });
    request.on('error', reject);
    request.setTimeout(10_000, () => request.destroy(new Error('request timed out')));
  });
}

// Polls until `user` with `password` gets `status`; returns how long that took.
async function waitForStatus(user: string, password: string, status: number, forwardedFor?: string, limitMs = 1_000): Promise<number> {
  const start = performance.now();
  for (;;) {
    const got = await get(user, password, forwardedFor);
    const elapsed = performance.now() - start;
    if (got === status) return elapsed;
    if (elapsed > limitMs) throw new Error(`${user} still gets ${got} after ${limitMs} ms (wanted ${status})\n${errorsBut('AH01617')}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

// The error log without the lines every refused guess adds.
const errorsBut = (code: string) =>
  t.front.httpd
    .errorLog()
    .split('\n')
    .filter((line) => !line.includes(code))
    .slice(-30)
    .join('\n');

beforeAll(async () => {
  ({ t, lockDir, refusalPage } = await startLockoutFront(['carol', 'dave'], MAX_FAILURES));
}, 120_000);

afterAll(async () => {
  agent.destroy();
  await t?.close();
});

describe('guesses the cache refuses itself', () => {
  it('count: a cached user is locked from the guessing address after lockout_max_failures, and unlock restores her', async () => {
    expect(await get('alice', 'alice-pw', '10.20.0.1')).toBe(200);
    expect(await get('alice', 'alice-pw', '10.20.0.1')).toBe(200); // from the cache now
    const lockFile = join(lockDir, 'pair', '10.20.0.1', 'alice');
    // Guesses that were answered while her right password still got in: "plain wrong password" answers.
    let answeredUnlocked = 0;
    for (let i = 0; i < 60; i++) {
      const refused = await answer('alice', `guess-${i}`, '10.20.0.1');
      expect(refused.status).toBe(401);
      // The page plexer lockout served after counting this guess, with Apache's own challenge.
      expect(refused.body).toBe(refusalPage);
      expect(refused.authenticate).toMatch(/^Basic realm=/);
      if (!existsSync(lockFile)) answeredUnlocked++;
    }
    const refusedAfter = await waitForStatus('alice', 'alice-pw', 401, '10.20.0.1');
    console.log(
      `60 guesses: ${answeredUnlocked} answered before the lockout showed; right password refused ${refusedAfter.toFixed(0)} ms after the last`,
    );
    // The 401 page is served by plexer lockout after it has counted the guess: the limit-th guess's lock file
    // exists before its answer arrives, however busy the machine. So exactly limit - 1 guesses were answered
    // while the right password would still have passed.
    expect(answeredUnlocked, errorsBut('AH01617')).toBe(MAX_FAILURES - 1);
    // The store counts behind the lock file (one failure at a time), and stops at the lockout.
    await waitForCount('pair:alice/10.20.0.1', (n) => n >= MAX_FAILURES && n <= answeredUnlocked + 2);
    // The guesser's lock is his own: alice from her own address is served.
    expect(await get('alice', 'alice-pw', '10.20.0.2')).toBe(200);

    await cliOk(t.cli, ['user', 'unlock', 'alice']);
    const restoredAfter = await waitForStatus('alice', 'alice-pw', 200, '10.20.0.1');
    console.log(`user unlock: alice served again after ${restoredAfter.toFixed(0)} ms`);
    expect(existsSync(lockFile)).toBe(false);
  });

  it('serves the refusal page only as an error document: asked for directly, 403 and nothing counted', async () => {
    const direct = await answer('carol', 'whatever', '10.60.0.1', undefined, '/_plexer/refused');
    expect(direct.status).toBe(403);
    const { rowCount } = await t.store.sql.query(`SELECT 1 FROM login_failures WHERE subject LIKE '%10.60.0.1'`);
    expect(rowCount).toBe(0);
  });

  it('10 failures for a user from 10 other addresses do not stop her from her own address', async () => {
    for (let i = 1; i <= 10; i++) expect(await get('bob', `wrong-${i}`, `10.30.0.${i}`)).toBe(401);
    expect(await get('bob', 'bob-pw', '10.30.1.1')).toBe(200);
    // authn (bob was not cached yet) saw the forwarded address too, as IP.
    expect(t.front.httpd.errorLog()).toMatch(/authn warn: login refused reason=wrong-password user=bob ip=10\.30\.0\.1\b/);
  });

  it('10 failures from one address do not stop other users behind the trusted proxy', async () => {
    for (let i = 1; i <= 10; i++) expect(await get(i % 2 === 0 ? 'carol' : 'nobody', `wrong-${i}`, '10.40.0.1')).toBe(401);
    expect(await get('dave', 'dave-pw', '10.40.0.2')).toBe(200);
    expect(await get('carol', 'carol-pw', '10.40.0.3')).toBe(200);
  });

  it('believes X-Forwarded-For only from the trusted proxy', async () => {
    // From 127.0.0.1 (the trusted proxy) the header is believed: the forwarded address is the one counted.
    expect(await get('dave', 'wrong', '10.50.0.1')).toBe(401);
    await waitForCount('pair:dave/10.50.0.1', 1);
    // From 127.0.0.2 the same header is ignored: the failure counts against the connection's own address.
    expect(await get('dave', 'wrong', '10.50.0.9', '127.0.0.2')).toBe(401);
    await waitForCount('pair:dave/127.0.0.2', 1);
    const { rowCount } = await t.store.sql.query(`SELECT 1 FROM login_failures WHERE subject LIKE '%10.50.0.9'`);
    expect(rowCount).toBe(0);
  });
});

async function waitForCount(subject: string, failures: number | ((n: number) => boolean), limitMs = 2_000): Promise<void> {
  const until = Date.now() + limitMs;
  const wanted = typeof failures === 'number' ? (n: number) => n === failures : failures;
  for (;;) {
    const { rows } = await t.store.sql.query('SELECT failures FROM login_failures WHERE subject = $1', [subject]);
    if (rows[0] !== undefined && wanted(rows[0].failures)) return;
    if (Date.now() > until) throw new Error(`${subject} has ${JSON.stringify(rows)} failures, wanted ${failures}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}
