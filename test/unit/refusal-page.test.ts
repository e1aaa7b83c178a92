// The 401 page plexer lockout serves to Apache (src/lockout/refusal-page.ts): it hands over the user name of the
// refused Basic credentials and the client address Apache appended, never the password, and answers every request
// with the page, whatever the request holds.
import { mkdtempSync, rmSync, statSync } from 'node:fs';
import { request, type Server } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createLogger } from '../../src/log.js';
import { basicUser, lastForwardedAddress, serveRefusalPage } from '../../src/lockout/refusal-page.js';

const PAGE = Buffer.from('<p>plexer-error:401</p>\n');
let dir: string;
let server: Server;
const refused: Array<[string, string]> = [];

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'plexer-refusal-'));
  server = await serveRefusalPage({
    socketPath: join(dir, 'refused.sock'),
    page: PAGE,
    onRefused: (user, address) => refused.push([user, address]),
    log: createLogger('test'),
  });
});

afterAll(() => {
  server.close();
  rmSync(dir, { recursive: true, force: true });
});

function ask(headers: Record<string, string>): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const r = request({ socketPath: join(dir, 'refused.sock'), path: '/refused', headers }, (response) => {
      let body = '';
      response.on('data', (chunk) => (body += chunk));
      response.on('end', () => resolve({ status: response.statusCode ?? 0, body }));
    });
    r.on('error', reject);
    r.end();
  });
}

const basic = (credentials: string) => `Basic ${Buffer.from(credentials, 'latin1').toString('base64')}`;

describe('refusal page', () => {
  it('counts the user and the address Apache appended, and answers 401 with the page', async () => {
    refused.length = 0;
    const answer = await ask({ authorization: basic('alice:guess:with:colons'), 'x-forwarded-for': '10.9.9.9, 192.0.2.7' });
    expect(answer).toEqual({ status: 401, body: PAGE.toString() });
    // The client's own X-Forwarded-For entry (10.9.9.9) is not believed: Apache's, last, is.
    expect(refused).toEqual([['alice', '192.0.2.7']]);
  });

  it('answers the page and counts nothing without credentials or without an address', async () => {
    refused.length = 0;
    const requests: Array<Record<string, string>> = [
      {},
      { 'x-forwarded-for': '192.0.2.7' },
      { authorization: basic('alice:x') },
      { authorization: 'Bearer abc', 'x-forwarded-for': '192.0.2.7' },
      { authorization: `Basic\t${Buffer.from('alice:x').toString('base64')}`, 'x-forwarded-for': '192.0.2.7' },
      { authorization: basic('alice:x'), 'x-forwarded-for': '192.0.2.7, not-an-address' },
    ];
    for (const headers of requests) expect(await ask(headers)).toEqual({ status: 401, body: PAGE.toString() });
    expect(refused).toEqual([]);
  });

  it('reads the user name as mod_auth_basic does, whatever follows the credentials', async () => {
    // Apache accepts all of these as alice's credentials (test/apache/attack-refusal-page): so must the count.
    const b64 = Buffer.from('alice:pw').toString('base64');
    for (const authorization of [
      `${basic('alice:pw')} x`,
      `${basic('alice:pw')}\tx`,
      `${basic('alice:pw')}, Basic Zm9vOmJhcg==`,
      `BASIC    ${b64}`,
      `basic \t ${b64}!`,
      `Basic ${b64.replace(/=+$/, '')}`,
    ])
      expect(basicUser(authorization), authorization).toBe('alice');
    // The text ends at a NUL; without a colon all of it is the name; "Basic" alone or with no base64 is "".
    expect(basicUser(basic('vic\0tim:x'))).toBe('vic');
    expect(basicUser(basic('no-colon'))).toBe('no-colon');
    expect(basicUser('Basic')).toBe('');
    expect(basicUser('Basic !!!')).toBe('');
    expect(basicUser('Digest username="alice"')).toBeUndefined();
  });

  it('hands over a hostile user name as it came (the counter refuses it as a name and counts the address)', async () => {
    refused.length = 0;
    await ask({ authorization: basic('alice\r\nx:pw'), 'x-forwarded-for': '192.0.2.8' });
    expect(refused).toEqual([['alice\r\nx', '192.0.2.8']]);
  });

  it('is a socket only its owner can open', () => {
    expect(statSync(join(dir, 'refused.sock')).mode & 0o777).toBe(0o600);
  });

  it('parses only what Apache sends', () => {
    expect(basicUser(basic('bob:pw'))).toBe('bob');
    expect(basicUser(basic(':pw'))).toBe('');
    expect(basicUser(basic('bob:pw:with:colons'))).toBe('bob');
    expect(basicUser(undefined)).toBeUndefined();
    expect(lastForwardedAddress('2001:db8::1')).toBe('2001:db8::1');
    expect(lastForwardedAddress(undefined)).toBeUndefined();
  });
});
