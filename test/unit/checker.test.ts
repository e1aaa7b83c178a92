// plexer checker's side of the socket on its own (src/checker/server.ts, wire.ts), with a stand-in for authd's
// service: the exit status authn ends with, for every answer and for input it must refuse.
import net from 'node:net';
import { mkdtempSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { accept, failure, refuse, type Outcome } from '../../src/auth/outcome.js';
import { serveChecks } from '../../src/checker/server.js';
import { decodeRequest, encodeRequest } from '../../src/checker/wire.js';
import { AuthExit } from '../../src/cli/auth-exit.js';
import { createLogger } from '../../src/log.js';

const dir = mkdtempSync('/tmp/pxck-');
const path = join(dir, 'checker.sock');
const asked: Array<[string, string, string | undefined, boolean]> = [];
let server: net.Server;

beforeAll(async () => {
  const answers: Record<string, Outcome | 'hang'> = {
    good: accept('verified'),
    warm: accept('cached'),
    wrong: refuse('wrong-password'),
    locked: refuse('locked-out'),
    broken: failure('store-error'),
    slow: 'hang',
  };
  server = serveChecks(
    {
      authenticate: (user, password, ip, count) => {
        asked.push([user, password, ip, count ?? true]);
        const answer = answers[user] ?? refuse('no-such-user');
        return answer === 'hang' ? new Promise<Outcome>(() => undefined) : answer;
      },
    },
    createLogger('test'),
    300,
  );
  await new Promise<void>((resolve) => server.listen(path, resolve));
});
afterAll(() => {
  server.close();
  rmSync(dir, { recursive: true, force: true });
});

function ask(data: string): Promise<string> {
  return new Promise((resolve) => {
    const socket = net.connect(path);
    let answer = '';
    socket.on('data', (chunk) => (answer += chunk.toString()));
    socket.on('close', () => resolve(answer));
    socket.on('error', () => resolve(answer));
    socket.write(data);
  });
}

describe('plexer checker', () => {
  it("answers authn's exit status for each outcome, passing what authn read", async () => {
    const cases: Array<[string, number]> = [
      ['good', AuthExit.Accepted],
      ['warm', AuthExit.Accepted],
      ['wrong', AuthExit.WrongPassword],
      ['locked', AuthExit.LockedOut],
      ['nobody', AuthExit.NoSuchUser],
      ['broken', AuthExit.StoreError],
    ];
    for (const [user, code] of cases)
      expect(await ask(encodeRequest({ user, password: 'p w\u00e9', ip: '10.0.0.1', count: false }))).toBe(`${code}\n`);
    expect(asked[0]).toEqual(['good', 'p w\u00e9', '10.0.0.1', false]);
  });

  it('answers "timed out" when a check does not settle in time', async () => {
    expect(await ask(encodeRequest({ user: 'slow', password: 'x', count: true }))).toBe(`${AuthExit.TimedOut}\n`);
  });

  it('answers "bad input" to anything but one well-formed request, and never asks the service', async () => {
    const before = asked.length;
    for (const bad of ['nonsense\n', '{"user":"a","password":1,"count":true}\n', '{"user":"a","password":"b"}\n', `${'x'.repeat(9000)}`])
      expect(await ask(bad)).toBe(`${AuthExit.BadInput}\n`);
    expect(asked.length).toBe(before);
    expect(decodeRequest('{"user":"a","password":"b","count":true,"ip":7}')).toBeNull();
  });
});
