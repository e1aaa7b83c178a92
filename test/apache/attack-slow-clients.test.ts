// No single address holds the server (issue "walls"): prefork gives each connection a worker of its own, and the
// standalone config had no request timeouts and no per-address limit, so 40 connections that sent their headers
// slowly from one address left every other user waiting (20 of 20 timed out). The generated config now caps
// an address's connections (mod_qos QS_SrvMaxConnPerIP, default 20 of 32 workers) and the time a request may
// take to arrive (mod_reqtimeout).
import net from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { seedTwoTenants, startTestFront, waitUntilServed, whoamiWithin, type TestFront } from '../helpers/front.js';
import { waitFor } from '../helpers/wait.js';

const ATTACKER = '127.0.0.2';
let t: TestFront;
const open: net.Socket[] = [];

beforeAll(async () => {
  t = await startTestFront(seedTwoTenants);
  await waitUntilServed(t, 'alice', 'alice-pw');
}, 120_000);

afterAll(async () => {
  for (const socket of open) socket.destroy();
  await t?.close();
});

// A connection from `from` that sends the start of a request and then one header line every `everyMs`.
function slowConnection(from: string, everyMs: number): { socket: net.Socket; closed: Promise<number> } {
  const started = performance.now();
  const socket = net.connect({ host: '127.0.0.1', port: t.front.httpd.port, localAddress: from });
  open.push(socket);
  socket.on('error', () => {});
  socket.on('data', () => {});
  socket.write('GET /app/whoami HTTP/1.1\r\nHost: localhost\r\n');
  const timer = setInterval(() => socket.writable && socket.write('X-Slow: 1\r\n'), everyMs);
  const closed = new Promise<number>((resolve) =>
    socket.on('close', () => {
      clearInterval(timer);
      resolve(performance.now() - started);
    }),
  );
  return { socket, closed };
}

describe('slow clients from one address (real Apache, generated config)', () => {
  it('40 slow connections from one address leave the others served', async () => {
    const attack = Array.from({ length: 40 }, () => slowConnection(ATTACKER, 1_000));
    // Past the limit the attacker's connections are closed at once; 20 stay, holding 20 of 32 workers.
    await waitFor(() => open.filter((s) => s.destroyed || s.closed).length >= 20, 10_000, "the attacker's excess connections to close");
    const times: number[] = [];
    for (let i = 0; i < 20; i++) {
      const start = performance.now();
      const r = await whoamiWithin(t, i % 2 ? 'alice' : 'bob', 5_000);
      times.push(performance.now() - start);
      expect(r.status).toBe(200);
    }
    times.sort((a, b) => a - b);
    console.log(`others while 40 slow connections came from ${ATTACKER}: p50 ${times[10]!.toFixed(0)} ms, max ${times[19]!.toFixed(0)} ms`);
    expect(t.front.httpd.errorLog()).toMatch(/QS_SrvMaxConnPerIP rule: max=20/);
    for (const { socket } of attack) socket.destroy();
  }, 60_000);

  it('a request whose headers trickle in is closed within 20 s (mod_reqtimeout)', async () => {
    const { closed } = slowConnection('127.0.0.3', 2_000);
    const after = await closed;
    console.log(`a trickling request was closed after ${(after / 1000).toFixed(1)} s`);
    expect(after).toBeLessThan(22_000);
  }, 40_000);
});
