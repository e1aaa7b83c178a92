// The SCGI responder's framing (src/scgi/server.ts) against a real socket: what mod_proxy_scgi sends, what breaks.
import net from 'node:net';
import { mkdtempSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { formatResponse, parseScgiHeaders, serveScgi } from '../../src/scgi/server.js';
import { createLogger } from '../../src/log.js';

function request(vars: Array<[string, string]>, body = ''): Buffer {
  const headers = vars.map(([k, v]) => `${k}\0${v}\0`).join('');
  return Buffer.concat([Buffer.from(`${Buffer.byteLength(headers)}:${headers},`), Buffer.from(body)]);
}

const dir = mkdtempSync('/tmp/scgi-');
const path = join(dir, 's.sock');
let server: net.Server;

beforeAll(async () => {
  server = serveScgi(
    async ({ env }) => ({ status: 200, headers: [['X-Seen', env.get('REQUEST_URI') ?? '-']], body: 'ok' }),
    createLogger('test'),
    {
      maxBodyBytes: 1000,
    },
  );
  await new Promise<void>((resolve) => server.listen(path, resolve));
});
afterAll(() => {
  server.close();
  rmSync(dir, { recursive: true, force: true });
});

function exchange(data: Buffer, pieces = 1): Promise<string> {
  return new Promise((resolve) => {
    const socket = net.connect(path);
    let answer = '';
    socket.on('data', (chunk) => (answer += chunk.toString()));
    socket.on('close', () => resolve(answer));
    socket.on('error', () => resolve(answer));
    const size = Math.ceil(data.length / pieces);
    for (let i = 0; i < data.length; i += size) socket.write(data.subarray(i, i + size));
  });
}

describe('SCGI responder', () => {
  it('answers a request, whole or in pieces, with its body read first', async () => {
    const r = request(
      [
        ['CONTENT_LENGTH', '5'],
        ['REQUEST_URI', '/app/x?y=1'],
      ],
      'hello',
    );
    for (const pieces of [1, 7, r.length]) {
      const answer = await exchange(r, pieces);
      expect(answer).toMatch(/^Status: 200 OK\r\nX-Seen: \/app\/x\?y=1\r\nContent-Length: 2\r\n\r\nok$/);
    }
  });

  it('closes the connection on malformed or oversized requests, and keeps serving', async () => {
    expect(await exchange(Buffer.from('xx:nonsense,'))).toBe('');
    expect(await exchange(request([['REQUEST_URI', '/']]))).toBe('');
    expect(await exchange(request([['CONTENT_LENGTH', '5000']], 'x'))).toBe('');
    expect(await exchange(Buffer.from('99999999999:'))).toBe('');
    expect(await exchange(request([['CONTENT_LENGTH', '0']]))).toMatch(/^Status: 200/);
  });

  it('drops a client that does not send its request in time, but never a handler that takes longer', async () => {
    const slowPath = join(dir, 'slow.sock');
    const slow = serveScgi(
      async () => {
        await new Promise((resolve) => setTimeout(resolve, 400));
        return { status: 200, headers: [], body: 'late' };
      },
      createLogger('test'),
      { requestTimeoutMs: 150 },
    );
    await new Promise<void>((resolve) => slow.listen(slowPath, resolve));
    try {
      const ask = (data: Buffer) =>
        new Promise<string>((resolve) => {
          const socket = net.connect(slowPath);
          let answer = '';
          socket.on('data', (chunk) => (answer += chunk.toString()));
          socket.on('close', () => resolve(answer));
          socket.write(data);
        });
      expect(await ask(request([['CONTENT_LENGTH', '0']]))).toMatch(/^Status: 200 OK\r\n.*late$/s);
      // Half a request, never finished: closed after the time limit.
      expect(await ask(Buffer.from('40:CONTENT_LENGTH'))).toBe('');
    } finally {
      slow.close();
    }
  });

  it('parses only complete, well-formed header blocks', () => {
    expect(parseScgiHeaders(Buffer.from('12:CONTENT'), 100)).toBeNull();
    expect(() => parseScgiHeaders(Buffer.from('3:a\0b;'), 100)).toThrow();
    expect(() => parseScgiHeaders(request([['CONTENT_LENGTH', '0']]), 5)).toThrow(/too large/);
  });

  it('refuses to write a header that would split the response', () => {
    expect(() => formatResponse({ status: 200, headers: [['Location', '/a\r\nSet-Cookie: x']] })).toThrow();
  });
});
