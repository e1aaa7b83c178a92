import net from 'node:net';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  decodeBeginRequest,
  decodeEndRequest,
  decodeNameValuePairs,
  NameValueIndex,
  encodeBeginRequest,
  encodeAnswer,
  encodeEndRequest,
  encodeNameValuePairs,
  encodeRecord,
  encodeStream,
  FastCgiProtocolError,
  FCGI_KEEP_CONN,
  ProtocolStatus,
  RecordDecoder,
  RecordType,
  Role,
  type FastCgiRecord,
} from '../../src/fastcgi/protocol.js';
import { authorizerRequest, encodeAuthorizerRequest, parseAuthorizerAnswer } from '../../src/fastcgi/client.js';
import { createFastCgiServer, type FastCgiHandler } from '../../src/fastcgi/server.js';
import { waitFor } from '../helpers/wait.js';
import type { Logger, LogFields } from '../../src/log.js';

function captureLogger(lines: string[] = []): Logger & { lines: string[] } {
  const emit =
    (level: string) =>
    (event: string, fields: LogFields = {}) => {
      lines.push(`${level}: ${event} ${JSON.stringify(fields)}`);
    };
  const logger = { debug: () => undefined, info: emit('info'), warn: emit('warn'), error: emit('error'), scope: () => logger, lines };
  return logger;
}

describe('FastCGI codec', () => {
  it('round-trips records, padded to 8 bytes', () => {
    const content = Buffer.from('hello fastcgi');
    const wire = encodeRecord(RecordType.Stdout, 513, content);
    expect(wire.length % 8).toBe(0);
    expect([...wire.subarray(0, 8)]).toEqual([1, 6, 2, 1, 0, 13, 3, 0]);
    const records = new RecordDecoder().push(wire);
    expect(records).toEqual([{ type: RecordType.Stdout, requestId: 513, content }]);
  });

  it('round-trips BEGIN_REQUEST and END_REQUEST bodies', () => {
    const [begin] = new RecordDecoder().push(encodeBeginRequest(7, Role.Authorizer, FCGI_KEEP_CONN));
    expect(decodeBeginRequest(begin!.content)).toEqual({ role: 2, flags: 1 });
    const [end] = new RecordDecoder().push(encodeEndRequest(7, 0xfffffffe, ProtocolStatus.UnknownRole));
    expect(decodeEndRequest(end!.content)).toEqual({ appStatus: 0xfffffffe, protocolStatus: 3 });
    expect(() => decodeBeginRequest(Buffer.alloc(7))).toThrow(FastCgiProtocolError);
  });

  it('encodes name-value lengths in 1 byte below 128 and in 4 bytes from 128', () => {
    const short = encodeNameValuePairs([['A', 'x'.repeat(127)]]);
    expect([...short.subarray(0, 2)]).toEqual([1, 127]);
    const long = encodeNameValuePairs([['B', 'y'.repeat(128)]]);
    expect([...long.subarray(0, 5)]).toEqual([1, 0x80, 0, 0, 128]);
    const big = 'z'.repeat(200_000);
    const pairs = decodeNameValuePairs(
      encodeNameValuePairs([
        ['REMOTE_USER', 'alice'],
        ['EMPTY', ''],
        ['BIG', big],
        ['N'.repeat(300), 'v'],
      ]),
    );
    expect(pairs.get('REMOTE_USER')).toBe('alice');
    expect(pairs.get('EMPTY')).toBe('');
    expect(pairs.get('BIG')).toBe(big);
    expect(pairs.get('N'.repeat(300))).toBe('v');
  });

  it('keeps every byte of a name or value (latin1 out, UTF-8 in)', () => {
    const pairs = decodeNameValuePairs(encodeNameValuePairs([['REMOTE_PASSWD', Buffer.from([0xc3, 0xa9, 0xff, 0x00])]]));
    expect(Buffer.from(pairs.get('REMOTE_PASSWD')!, 'latin1')).toEqual(Buffer.from([0xc3, 0xa9, 0xff, 0x00]));
  });

  it('encodes a whole answer as the STDOUT records and END_REQUEST one by one would', () => {
    for (const length of [0, 1, 7, 8, 13, 65535, 65536, 140_000]) {
      const stdout = Buffer.alloc(length, 0x61);
      expect(encodeAnswer(7, stdout, 3, ProtocolStatus.Overloaded), `${length} bytes`).toEqual(
        Buffer.concat([...encodeStream(RecordType.Stdout, 7, stdout), encodeEndRequest(7, 3, ProtocolStatus.Overloaded)]),
      );
    }
  });

  it("reads a request's parameters lazily with the answers of the decoded Map", () => {
    const data = encodeNameValuePairs([
      ['REMOTE_USER', 'alice'],
      ['REMOTE_PASSWD', Buffer.from([0xc3, 0xa9, 0xff, 0x00])],
      ['EMPTY', ''],
      ['REMOTE_USER', 'bob'],
      ['N'.repeat(300), 'v'],
    ]);
    const index = new NameValueIndex(data);
    for (const [name, value] of decodeNameValuePairs(data)) expect(index.get(name), name).toBe(value);
    expect(index.get('REMOTE_USER')).toBe('bob');
    expect(index.get('REMOTE_USE')).toBeUndefined();
    expect(index.get('REMOTE_USERS')).toBeUndefined();
    expect(index.get('remote_user')).toBeUndefined();
    expect(index.get('\u0152MPTY')).toBeUndefined();
    expect(() => new NameValueIndex(Buffer.from([5, 1, 65]))).toThrow(/past the end/);
    expect(() => new NameValueIndex(data, { maxPairs: 4 })).toThrow(/more than 4/);
  });

  it('refuses name-value pairs that run past the end, or too many of them', () => {
    expect(() => decodeNameValuePairs(Buffer.from([5, 1, 65]))).toThrow(/past the end/);
    expect(() => decodeNameValuePairs(Buffer.from([0x80, 0, 0]))).toThrow(/truncated/);
    expect(() => decodeNameValuePairs(Buffer.from([0xff, 0xff, 0xff, 0xff, 0x7f]))).toThrow(FastCgiProtocolError);
    expect(() =>
      decodeNameValuePairs(
        encodeNameValuePairs([
          ['a', '1'],
          ['b', '2'],
          ['c', '3'],
        ]),
        { maxPairs: 2 },
      ),
    ).toThrow(/more than 2/);
  });

  it('splits records identically however the bytes are chunked (property)', () => {
    const record = fc.record({
      type: fc.integer({ min: 1, max: 11 }),
      requestId: fc.integer({ min: 0, max: 0xffff }),
      content: fc.uint8Array({ maxLength: 300 }).map((a) => Buffer.from(a)),
    });
    fc.assert(
      fc.property(
        fc.array(record, { maxLength: 8 }),
        fc.array(fc.integer({ min: 1, max: 64 }), { minLength: 1, maxLength: 50 }),
        (records, cuts) => {
          const wire = Buffer.concat(records.map((r) => encodeRecord(r.type, r.requestId, r.content)));
          const decoder = new RecordDecoder();
          const out: FastCgiRecord[] = [];
          let offset = 0;
          let i = 0;
          while (offset < wire.length) {
            const size = cuts[i++ % cuts.length]!;
            out.push(...decoder.push(wire.subarray(offset, offset + size)));
            offset += size;
          }
          expect(out).toEqual(records);
          expect(decoder.buffered).toBe(0);
        },
      ),
      { numRuns: 300 },
    );
  });

  it('decodes a maximal record fed one byte at a time in linear time', () => {
    const content = Buffer.alloc(0xffff, 7);
    const wire = encodeRecord(RecordType.Params, 1, content);
    const decoder = new RecordDecoder();
    const start = performance.now();
    let records: FastCgiRecord[] = [];
    for (let i = 0; i < wire.length; i++) records = records.concat(decoder.push(wire.subarray(i, i + 1)));
    expect(records).toHaveLength(1);
    expect(records[0]!.content.equals(content)).toBe(true);
    expect(performance.now() - start).toBeLessThan(2_000);
  });

  it('refuses another protocol version and stays failed', () => {
    const decoder = new RecordDecoder();
    const bad = encodeRecord(RecordType.Params, 1, Buffer.from('x'));
    bad[0] = 2;
    expect(() => decoder.push(bad)).toThrow(/version 2/);
    expect(() => decoder.push(encodeRecord(RecordType.Params, 1))).toThrow(FastCgiProtocolError);
  });

  it('splits a long stream into records of at most 65535 bytes and ends it with an empty record', () => {
    const records = new RecordDecoder().push(Buffer.concat(encodeStream(RecordType.Stdout, 1, Buffer.alloc(70_000, 1))));
    expect(records.map((r) => r.content.length)).toEqual([65_535, 4_465, 0]);
  });
});

// A raw connection: write bytes, collect records, see when the server closes.
class RawConnection {
  readonly socket: net.Socket;
  readonly records: FastCgiRecord[] = [];
  closed = false;
  private readonly decoder = new RecordDecoder();
  private waiters: Array<() => void> = [];

  constructor(port: number) {
    this.socket = net.connect({ host: '127.0.0.1', port });
    this.socket.on('data', (chunk) => {
      this.records.push(...this.decoder.push(chunk));
      this.wake();
    });
    this.socket.on('error', () => undefined);
    this.socket.on('close', () => {
      this.closed = true;
      this.wake();
    });
  }

  private wake() {
    for (const waiter of this.waiters.splice(0)) waiter();
  }

  write(data: Buffer) {
    this.socket.write(data);
  }

  async until(predicate: () => boolean, timeoutMs = 3_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!predicate()) {
      if (Date.now() > deadline)
        throw new Error(
          `condition not met; records: ${JSON.stringify(this.records.map((r) => [r.type, r.requestId]))} closed=${this.closed}`,
        );
      await new Promise<void>((resolve) => {
        this.waiters.push(resolve);
        setTimeout(resolve, 50);
      });
    }
  }

  ends(): FastCgiRecord[] {
    return this.records.filter((r) => r.type === RecordType.EndRequest);
  }

  answer(requestId: number) {
    const stdout = Buffer.concat(
      this.records.filter((r) => r.type === RecordType.Stdout && r.requestId === requestId).map((r) => r.content),
    );
    const end = this.records.find((r) => r.type === RecordType.EndRequest && r.requestId === requestId)!;
    return parseAuthorizerAnswer(stdout, end);
  }
}

describe('FastCGI server', () => {
  const log = captureLogger();
  let server: net.Server;
  let port: number;
  let handlersDone = 0;
  const handler: FastCgiHandler = async ({ params, signal }) => {
    const delay = Number(params.get('DELAY_MS') ?? 0);
    if (delay) await new Promise((r) => setTimeout(r, delay));
    handlersDone++;
    if (params.get('THROW')) throw new Error('handler bug');
    void signal;
    return { status: params.get('REMOTE_PASSWD') === 'right' ? 200 : 401, headers: [['Variable-ECHO', params.get('REMOTE_USER') ?? '']] };
  };

  beforeAll(async () => {
    server = createFastCgiServer({ handler, log, limits: { maxParamsBytes: 4096, maxRequestsPerConnection: 4 } });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    port = (server.address() as net.AddressInfo).port;
  });
  afterAll(() => new Promise<void>((resolve) => server.close(() => resolve())));

  it('answers an AUTHORIZER request the way mod_authnz_fcgi reads it, then closes (no KEEP_CONN)', async () => {
    const ok = await authorizerRequest({ host: '127.0.0.1', port }, { REMOTE_USER: 'alice', REMOTE_PASSWD: 'right' });
    expect(ok.status).toBe(200);
    expect(ok.headers.get('variable-echo')).toBe('alice');
    expect(ok.protocolStatus).toBe(ProtocolStatus.RequestComplete);
    const no = await authorizerRequest({ host: '127.0.0.1', port }, { REMOTE_USER: 'alice', REMOTE_PASSWD: 'wrong' });
    expect(no.status).toBe(401);

    const conn = new RawConnection(port);
    conn.write(encodeAuthorizerRequest(1, { REMOTE_PASSWD: 'right' }, false));
    await conn.until(() => conn.closed);
    expect(conn.ends()).toHaveLength(1);
  });

  it('serves several requests in sequence and interleaved on one KEEP_CONN connection', async () => {
    const conn = new RawConnection(port);
    conn.write(encodeAuthorizerRequest(1, { REMOTE_USER: 'a', REMOTE_PASSWD: 'right' }, true));
    await conn.until(() => conn.ends().length === 1);
    conn.write(encodeAuthorizerRequest(1, { REMOTE_USER: 'b', REMOTE_PASSWD: 'wrong' }, true));
    await conn.until(() => conn.ends().length === 2);
    // Request 2 is slow, request 3 fast: answers come back in completion order, each under its own id.
    conn.write(
      Buffer.concat([
        encodeAuthorizerRequest(2, { REMOTE_USER: 'slow', REMOTE_PASSWD: 'right', DELAY_MS: '150' }, true),
        encodeAuthorizerRequest(3, { REMOTE_USER: 'fast', REMOTE_PASSWD: 'wrong' }, true),
      ]),
    );
    await conn.until(() => conn.ends().length === 4);
    expect(conn.ends().map((r) => r.requestId)).toEqual([1, 1, 3, 2]);
    expect(conn.answer(2).status).toBe(200);
    expect(conn.answer(3).status).toBe(401);
    expect(conn.closed).toBe(false);
    conn.socket.destroy();
  });

  it('answers GET_VALUES, UNKNOWN_TYPE for unknown management records, and UNKNOWN_ROLE for a responder', async () => {
    const conn = new RawConnection(port);
    conn.write(
      encodeRecord(
        RecordType.GetValues,
        0,
        encodeNameValuePairs([
          ['FCGI_MPXS_CONNS', ''],
          ['FCGI_MAX_REQS', ''],
          ['OTHER', ''],
        ]),
      ),
    );
    conn.write(encodeRecord(42, 0, Buffer.alloc(0)));
    conn.write(encodeBeginRequest(5, Role.Responder, FCGI_KEEP_CONN));
    await conn.until(() => conn.records.length >= 3);
    const values = conn.records.find((r) => r.type === RecordType.GetValuesResult)!;
    expect(Object.fromEntries(decodeNameValuePairs(values.content))).toEqual({ FCGI_MPXS_CONNS: '1', FCGI_MAX_REQS: String(1024 * 4) });
    expect(conn.records.find((r) => r.type === RecordType.UnknownType)!.content[0]).toBe(42);
    expect(decodeEndRequest(conn.ends()[0]!.content).protocolStatus).toBe(ProtocolStatus.UnknownRole);
    conn.socket.destroy();
  });

  it('answers ABORT_REQUEST with END_REQUEST and drops the late answer', async () => {
    const conn = new RawConnection(port);
    const done = handlersDone;
    conn.write(encodeAuthorizerRequest(9, { REMOTE_PASSWD: 'right', DELAY_MS: '100' }, true));
    conn.write(encodeRecord(RecordType.AbortRequest, 9));
    await conn.until(() => conn.ends().length === 1);
    // The aborted handler runs to its end; a late answer would be written before the next request's.
    await waitFor(() => handlersDone > done, 3_000, 'the aborted handler to finish');
    conn.write(encodeAuthorizerRequest(10, { REMOTE_PASSWD: 'right' }, true));
    await conn.until(() => conn.ends().length === 2);
    expect(conn.records.filter((r) => r.type === RecordType.Stdout && r.requestId === 9)).toHaveLength(0);
    expect(conn.ends().map((r) => r.requestId)).toEqual([9, 10]);
    conn.socket.destroy();
  });

  it('refuses more requests in flight than allowed with OVERLOADED', async () => {
    const conn = new RawConnection(port);
    for (let id = 1; id <= 5; id++) conn.write(encodeAuthorizerRequest(id, { DELAY_MS: '100' }, true));
    await conn.until(() => conn.ends().length === 5);
    const overloaded = conn.ends().filter((r) => decodeEndRequest(r.content).protocolStatus === ProtocolStatus.Overloaded);
    expect(overloaded.map((r) => r.requestId)).toEqual([5]);
    conn.socket.destroy();
  });

  it('answers 500 when the handler throws, and keeps serving', async () => {
    expect((await authorizerRequest({ host: '127.0.0.1', port }, { THROW: '1' })).status).toBe(500);
    expect((await authorizerRequest({ host: '127.0.0.1', port }, { REMOTE_PASSWD: 'right' })).status).toBe(200);
  });

  const malformed: Array<[string, () => Buffer]> = [
    [
      'a record of version 2',
      () => {
        const b = encodeRecord(RecordType.Params, 1);
        b[0] = 2;
        return b;
      },
    ],
    ['garbage', () => Buffer.from('GET / HTTP/1.1\r\nHost: x\r\n\r\n')],
    ['a BEGIN_REQUEST body of 3 bytes', () => encodeRecord(RecordType.BeginRequest, 1, Buffer.alloc(3))],
    ['a BEGIN_REQUEST with request id 0', () => encodeBeginRequest(0, Role.Authorizer, 0)],
    [
      'a second BEGIN_REQUEST for an active id',
      () => Buffer.concat([encodeBeginRequest(1, Role.Authorizer, 1), encodeBeginRequest(1, Role.Authorizer, 1)]),
    ],
    [
      'a name-value pair longer than its stream',
      () =>
        Buffer.concat([
          encodeBeginRequest(1, Role.Authorizer, 0),
          encodeRecord(RecordType.Params, 1, Buffer.from([0x7f, 0x7f, 65])),
          encodeRecord(RecordType.Params, 1),
        ]),
    ],
    [
      'PARAMS over the size limit',
      () =>
        Buffer.concat([
          encodeBeginRequest(1, Role.Authorizer, 0),
          ...encodeStream(RecordType.Params, 1, encodeNameValuePairs([['X', 'x'.repeat(5000)]])),
        ]),
    ],
    ['a STDOUT record from the client', () => encodeRecord(RecordType.Stdout, 1, Buffer.from('x'))],
  ];

  it.each(malformed)('closes the connection on %s with one log line, and keeps serving others', async (_name, bytes) => {
    const before = log.lines.length;
    const conn = new RawConnection(port);
    conn.write(bytes());
    await conn.until(() => conn.closed);
    expect(conn.records.filter((r) => r.type === RecordType.Stdout)).toHaveLength(0);
    const added = log.lines.slice(before);
    expect(added).toHaveLength(1);
    expect(added[0]).toMatch(/^warn: malformed FastCGI input; closing the connection/);
    expect((await authorizerRequest({ host: '127.0.0.1', port }, { REMOTE_PASSWD: 'right' })).status).toBe(200);
  });

  it('survives random bytes on many connections (fuzz)', async () => {
    const samples = fc.sample(fc.uint8Array({ minLength: 1, maxLength: 400 }), 60);
    await Promise.all(
      samples.map(async (bytes) => {
        const conn = new RawConnection(port);
        conn.write(Buffer.from(bytes));
        // Our end closed after the bytes: the server has read them all once it closes too.
        conn.socket.end();
        await conn.until(() => conn.closed);
      }),
    );
    expect((await authorizerRequest({ host: '127.0.0.1', port }, { REMOTE_PASSWD: 'right' })).status).toBe(200);
  });
});

// What a caller that connects and then sends slowly, or never finishes, can hold (issue "walls": 1,030
// connections that sent BEGIN_REQUEST and never ended PARAMS filled authd's 1,024 connections, and 16 x 32
// unfinished 1 MB requests took it from 84 to 691 MB, before any caller check).
describe('FastCGI server: time and memory one caller can hold', () => {
  const log = captureLogger();
  const servers: net.Server[] = [];
  const handler: FastCgiHandler = async () => ({ status: 200 });
  afterAll(() => Promise.all(servers.map((s) => new Promise<void>((resolve) => s.close(() => resolve())))));

  async function start(options: Partial<Parameters<typeof createFastCgiServer>[0]>): Promise<number> {
    const server = createFastCgiServer({ handler, log, ...options });
    servers.push(server);
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    return (server.address() as net.AddressInfo).port;
  }
  const unfinished = (bytes: number) =>
    Buffer.concat([
      encodeBeginRequest(1, Role.Authorizer, 0),
      encodeRecord(RecordType.Params, 1, encodeNameValuePairs([['HTTP_X', 'x'.repeat(bytes)]])),
    ]);

  it('closes a connection whose request does not arrive in time, or that sends nothing', async () => {
    const port = await start({ limits: { requestTimeoutMs: 300 } });
    const started = performance.now();
    const partial = new RawConnection(port);
    partial.write(unfinished(100));
    const silent = new RawConnection(port);
    await partial.until(() => partial.closed && silent.closed, 3_000);
    expect(performance.now() - started).toBeLessThan(2_000);
    expect(log.lines.some((l) => l.includes('FastCGI request not complete in time'))).toBe(true);
    // A request that arrives in time is answered, also one after another on a kept connection.
    expect((await authorizerRequest({ host: '127.0.0.1', port }, { REMOTE_USER: 'a' })).status).toBe(200);
  });

  it('holds at most maxBufferedBytes of unfinished PARAMS for all connections together', async () => {
    const port = await start({ limits: { maxBufferedBytes: 64 * 1024, maxParamsBytes: 60 * 1024, requestTimeoutMs: 30_000 } });
    const first = new RawConnection(port);
    first.write(unfinished(40 * 1024));
    await new Promise((r) => setTimeout(r, 100));
    const second = new RawConnection(port);
    second.write(unfinished(40 * 1024));
    await second.until(() => second.closed);
    expect(first.closed).toBe(false);
    expect(log.lines.some((l) => l.includes('PARAMS held for all connections would exceed 65536 bytes'))).toBe(true);
    // Closing the first gives its bytes back: a new request of the same size fits.
    first.socket.destroy();
    await first.until(() => first.closed);
    await waitFor(
      async () => (await authorizerRequest({ host: '127.0.0.1', port }, { HTTP_X: 'x'.repeat(40 * 1024) })).status === 200,
      3_000,
      'room again',
    );
  });

  it('reads nothing from a connection before it is admitted, and closes a refused one unanswered', async () => {
    let handled = 0;
    let admitNext: (ok: boolean) => void = () => undefined;
    const port = await start({
      handler: async () => (handled++, { status: 200 }),
      admit: () => new Promise<boolean>((resolve) => (admitNext = resolve)),
    });
    const refused = authorizerRequest({ host: '127.0.0.1', port }, { REMOTE_USER: 'a' }).then(
      () => 'answered',
      () => 'closed',
    );
    // A negative check: while admission is pending, the request (sent at once) must not reach the handler.
    await new Promise((r) => setTimeout(r, 200));
    expect(handled).toBe(0);
    admitNext(false);
    expect(await refused).toBe('closed');
    expect(handled).toBe(0);
    const admitted = authorizerRequest({ host: '127.0.0.1', port }, { REMOTE_USER: 'a' });
    await new Promise((r) => setTimeout(r, 100));
    admitNext(true);
    expect((await admitted).status).toBe(200);
    expect(handled).toBe(1);
  });
});
