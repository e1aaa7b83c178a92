// The prg: RewriteMap framing and mod_authnz_external's pipe input, over in-memory streams.
import { PassThrough } from 'node:stream';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { MAX_PIPE_INPUT_BYTES, PipeInputError, readPipeInput } from '../src/protocol/authnz-external.js';
import { RESYNC_KEY, formatAnswer, serveRewriteMap, type AnswerKey, type RewriteMapStreamOptions } from '../src/protocol/rewrite-map.js';
import { isGroupName, isUserName } from '../src/names.js';

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

interface Served {
  input: PassThrough;
  output: PassThrough;
  keys: string[];
  done: Promise<void>;
  text(): string;
  lines(): string[];
}

function serve(answer: AnswerKey, options?: RewriteMapStreamOptions): Served {
  const input = new PassThrough();
  const output = new PassThrough();
  const keys: string[] = [];
  let text = '';
  output.setEncoding('latin1');
  output.on('data', (chunk: string) => (text += chunk));
  const done = serveRewriteMap(
    input,
    output,
    (key) => {
      keys.push(key);
      return answer(key);
    },
    options,
  );
  return {
    input,
    output,
    keys,
    done,
    text: () => text,
    lines: () => (text === '' ? [] : text.replace(/\n$/, '').split('\n')),
  };
}

async function waitFor(condition: () => boolean, limitMs = 2_000): Promise<void> {
  const start = performance.now();
  while (!condition()) {
    if (performance.now() - start > limitMs) throw new Error('condition not met in time');
    await sleep(2);
  }
}

describe('formatAnswer', () => {
  it.each([
    [null, 'alice=\n'],
    ['', 'alice=\n'],
    // Never a bare NULL line any more: behind "alice=" these are ordinary values (Apache compares whole lines).
    ['NULL', 'alice=NULL\n'],
    ['null', 'alice=null\n'],
    ['NuLl', 'alice=NuLl\n'],
    ['a\rb', 'alice=\n'],
    ['a\nb', 'alice=\n'],
    ['tenant1\n', 'alice=\n'],
    ['\r', 'alice=\n'],
    ['tenant1', 'alice=tenant1\n'],
    ['http://127.0.0.1:8001/', 'alice=http://127.0.0.1:8001/\n'],
    ['unix:/run/app.sock|fcgi://localhost/', 'alice=unix:/run/app.sock|fcgi://localhost/\n'],
    ['NULLS', 'alice=NULLS\n'],
    [' ', 'alice= \n'],
    ['a=b', 'alice=a=b\n'],
    ['\u00e9\u00ff\u0000', 'alice=\u00e9\u00ff\u0000\n'],
    // No latin1 form: written as latin1, U+010A would become "\n" and U+010D "\r".
    ['x\u010ay', 'alice=\n'],
    ['\u010d', 'alice=\n'],
    ['\u20ac', 'alice=\n'],
    ['\ud83d\ude00', 'alice=\n'],
  ])('alice, %j → %j', (answer, expected) => {
    expect(formatAnswer('alice', answer)).toBe(expected);
  });

  it('echoes any key as it is, "=" and "|" and control bytes included', () => {
    expect(formatAnswer('', null)).toBe('=\n');
    expect(formatAnswer('', 'v')).toBe('=v\n');
    expect(formatAnswer('a=b|c\r\u0000\u00ff', 'v')).toBe('a=b|c\r\u0000\u00ff=v\n');
  });

  it('property: written as latin1, one line that starts with the key\'s bytes and "=", whatever the value', () => {
    const key = fc.uint8Array({ maxLength: 40 }).map((a) => Buffer.from(a.filter((b) => b !== 0x0a)).toString('latin1'));
    const value = fc.option(fc.oneof(fc.string({ unit: 'binary' }), fc.string({ unit: 'binary-ascii' }), fc.string({ unit: 'grapheme' })));
    fc.assert(
      fc.property(key, value, (k, v) => {
        const bytes = Buffer.from(formatAnswer(k, v), 'latin1');
        const keyBytes = Buffer.from(k, 'latin1');
        expect(bytes.indexOf(0x0a)).toBe(bytes.length - 1);
        expect(bytes.subarray(0, keyBytes.length).equals(keyBytes)).toBe(true);
        expect(bytes[keyBytes.length]).toBe(0x3d);
        const written = bytes.subarray(keyBytes.length + 1, -1).toString('latin1');
        // The value exactly, or no value when it cannot be one line of latin1.
        expect(written).toBe(v !== null && /^[^\r\n\u0100-\uffff]*$/.test(v) ? v : '');
      }),
      { numRuns: 500 },
    );
  });
});

describe('RESYNC_KEY', () => {
  it('can never be a user or group name, so no real key is swallowed', () => {
    expect(RESYNC_KEY).toBe('!plexer-resync');
    expect(isUserName(RESYNC_KEY)).toBe(false);
    expect(isGroupName(RESYNC_KEY)).toBe(false);
  });
});

describe('serveRewriteMap', () => {
  it('keeps input order when asynchronous answers settle out of order', async () => {
    const resolvers = new Map<string, (v: string | null) => void>();
    const s = serve((key) => new Promise((resolve) => resolvers.set(key, resolve)));
    s.input.write('a\nb\nc\n');
    await waitFor(() => resolvers.size === 3);
    resolvers.get('c')!('C');
    resolvers.get('b')!('B');
    await sleep(5);
    expect(s.text()).toBe('');
    resolvers.get('a')!('A');
    await waitFor(() => s.lines().length === 3);
    expect(s.text()).toBe('a=A\nb=B\nc=C\n');
    s.input.end();
    await s.done;
  });

  it('mixes synchronous and asynchronous answers in order', async () => {
    const s = serve((key) => {
      if (key.startsWith('s')) return key.toUpperCase();
      if (key.startsWith('t')) return new Promise((resolve) => setTimeout(() => resolve(key.toUpperCase()), 10));
      return Promise.resolve(null);
    });
    s.input.end('s1\nt1\ns2\nn1\ns3\nt2\ns4\n');
    await s.done;
    expect(s.text()).toBe('s1=S1\nt1=T1\ns2=S2\nn1=\ns3=S3\nt2=T2\ns4=S4\n');
  });

  it('writes a synchronous answer at once when nothing is waiting before it', async () => {
    const s = serve((key) => key);
    s.input.write('alice\n');
    await sleep(5);
    expect(s.text()).toBe('alice=alice\n');
    s.input.write('bob\n');
    await sleep(5);
    expect(s.text()).toBe('alice=alice\nbob=bob\n');
    s.input.end();
    await s.done;
  });

  it('answers an overlong line with one NULL and the next line normally, whatever the chunking', async () => {
    const s = serve((key) => (key === '' ? null : `<${key}>`), { maxLineBytes: 16 });
    const stream = 'short\n' + 'x'.repeat(17) + '\n' + 'y'.repeat(16) + '\n' + 'z'.repeat(40) + '\nafter\n';
    // Split at awkward places: inside the long lines and right at the newlines.
    const cuts = [1, 5, 6, 10, 20, 23, 24, 30, 41, 45, 70, 90];
    let last = 0;
    for (const cut of [...cuts, stream.length]) {
      s.input.write(stream.slice(last, cut));
      last = cut;
      await sleep(0);
    }
    s.input.end();
    await s.done;
    expect(s.lines()).toEqual(['short=<short>', 'NULL', `${'y'.repeat(16)}=<${'y'.repeat(16)}>`, 'NULL', 'after=<after>']);
    // The overlong lines never reach the answer function with their content.
    expect(s.keys.filter((k) => k.length > 16)).toEqual([]);
  });

  it('answers a line that grows past the limit across many small chunks with one NULL', async () => {
    const s = serve((key) => (key === '' ? null : key), { maxLineBytes: 16 });
    for (let i = 0; i < 50; i++) s.input.write('abc');
    s.input.write('\nok\n');
    s.input.end();
    await s.done;
    expect(s.lines()).toEqual(['NULL', 'ok=ok']);
  });

  // Regression test (fixed bug in latent, src/protocol/rewrite-map.ts endLine): an overlong line is answered by calling the answer
  // function with "" rather than by writing NULL, so it gets whatever the answer function says for an empty key.
  // The option's contract is "Longer lines are answered NULL"; plexer's own map lookups happen to answer ""
  // with no value, which hides this.
  it('answers an overlong line NULL even when the answer function has an answer for ""', async () => {
    const s = serve((key) => (key === '' ? 'EMPTY' : key), { maxLineBytes: 16 });
    s.input.end('x'.repeat(40) + '\nok\n\n');
    await s.done;
    expect(s.lines()).toEqual(['NULL', 'ok=ok', '=EMPTY']);
  });

  it('passes a trailing \\r (CRLF input) through to the answer function', async () => {
    const s = serve((key) => (/^[a-z]+$/.test(key) ? key : null));
    s.input.end('alice\r\nbob\n');
    await s.done;
    expect(s.keys).toEqual(['alice\r', 'bob']);
    expect(s.text()).toBe('alice\r=\nbob=bob\n');
  });

  it('decodes keys as latin1, one character per byte, and echoes them byte for byte', async () => {
    const s = serve(() => null);
    const bytes: Buffer[] = [];
    s.output.on('data', (chunk: string) => bytes.push(Buffer.from(chunk, 'latin1')));
    s.input.end(Buffer.from([0x61, 0xc3, 0xa9, 0x0a, 0xff, 0x00, 0x0a]));
    await s.done;
    expect(s.keys).toEqual(['a\u00c3\u00a9', '\u00ff\u0000']);
    expect(s.text()).toBe('a\u00c3\u00a9=\n\u00ff\u0000=\n');
    expect(Buffer.concat(bytes)).toEqual(Buffer.from([0x61, 0xc3, 0xa9, 0x3d, 0x0a, 0xff, 0x00, 0x3d, 0x0a]));
  });

  it('writes latin1 to a stream without an encoding of its own (process.stdout)', async () => {
    const input = new PassThrough();
    const output = new PassThrough();
    const bytes: Buffer[] = [];
    output.on('data', (chunk: Buffer) => bytes.push(chunk));
    const done = serveRewriteMap(input, output, (key) => (key === '\u00e9' ? '\u00e8' : null));
    input.end(Buffer.from([0xe9, 0x0a, 0xc3, 0xa9, 0x0a]));
    await done;
    expect(Buffer.concat(bytes)).toEqual(Buffer.from([0xe9, 0x3d, 0xe8, 0x0a, 0xc3, 0xa9, 0x3d, 0x0a]));
  });

  it('answers an empty line (the answer function sees "")', async () => {
    const s = serve((key) => (key === '' ? null : key));
    s.input.end('\n\nalice\n');
    await s.done;
    expect(s.keys).toEqual(['', '', 'alice']);
    expect(s.text()).toBe('=\n=\nalice=alice\n');
  });

  it('answers an unterminated last line at EOF', async () => {
    const s = serve((key) => Promise.resolve(key.toUpperCase()));
    s.input.write('alice\nbo');
    await sleep(5);
    expect(s.text()).toBe('alice=ALICE\n');
    s.input.end('b');
    await s.done;
    expect(s.text()).toBe('alice=ALICE\nbob=BOB\n');
  });

  it('answers an unterminated overlong last line at EOF with NULL', async () => {
    const s = serve((key) => (key === '' ? null : key), { maxLineBytes: 16 });
    s.input.end('ok\n' + 'x'.repeat(30));
    await s.done;
    expect(s.text()).toBe('ok=ok\nNULL\n');
  });

  it('the returned promise settles only after every answer has been written', async () => {
    const s = serve((key) => new Promise((resolve) => setTimeout(() => resolve(key), key === 'slow' ? 60 : 1)));
    let settled = false;
    void s.done.then(() => (settled = true));
    s.input.end('fast\nslow\nfast2\n');
    await sleep(25);
    expect(settled).toBe(false);
    expect(s.text()).toBe('fast=fast\n');
    await s.done;
    expect(s.text()).toBe('fast=fast\nslow=slow\nfast2=fast2\n');
  });

  it('settles at once on empty input, writing nothing', async () => {
    const s = serve(() => 'x');
    s.input.end();
    await s.done;
    expect(s.text()).toBe('');
    expect(s.keys).toEqual([]);
  });

  it('answers no value when the answer function throws or its promise rejects, and carries on', async () => {
    const s = serve((key) => {
      if (key === 'throw') throw new Error('boom');
      if (key === 'reject') return Promise.reject(new Error('boom'));
      return key;
    });
    s.input.end('a\nthrow\nb\nreject\nc\n');
    await s.done;
    expect(s.text()).toBe('a=a\nthrow=\nb=b\nreject=\nc=c\n');
  });

  it('answers no value for stored values that would break the framing', async () => {
    const values: Record<string, string> = { cr: 'x\ry', lf: 'x\ny', word: 'null', ok: 'fine', wide: 'x\u010ay', wide2: '\u010d' };
    const s = serve((key) => Promise.resolve(values[key] ?? null));
    s.input.end('cr\nlf\nword\nok\nmissing\nwide\nwide2\n');
    await s.done;
    expect(s.text()).toBe('cr=\nlf=\nword=null\nok=fine\nmissing=\nwide=\nwide2=\n');
  });

  it('keeps answering when more answers wait than maxPendingAnswers', async () => {
    const s = serve((key) => new Promise((resolve) => setTimeout(() => resolve(key), 2)), { maxPendingAnswers: 2 });
    const keys = Array.from({ length: 50 }, (_, i) => `k${i}`);
    s.input.end(keys.join('\n') + '\n');
    await s.done;
    expect(s.lines()).toEqual(keys.map((k) => `${k}=${k}`));
  });

  it('resumes after output backpressure clears', async () => {
    const input = new PassThrough();
    const output = new PassThrough({ highWaterMark: 4 });
    const done = serveRewriteMap(input, output, (key) => `${key}-answer-long-enough`);
    input.write('a\nb\nc\n');
    await sleep(10);
    let text = '';
    output.on('data', (chunk: Buffer) => (text += chunk.toString('latin1')));
    input.end('d\n');
    await done;
    expect(text).toBe('a=a-answer-long-enough\nb=b-answer-long-enough\nc=c-answer-long-enough\nd=d-answer-long-enough\n');
  });

  // Regression test (fixed bug in src/protocol/rewrite-map.ts, flush()/resumeIfRoom()): when input is already paused because
  // maxPendingAnswers answers wait, and the answers then come in while the output is under backpressure, flush()
  // skips `output.once('drain', resumeIfRoom)` (it only registers it when it pauses the input itself) and
  // resumeIfRoom() refuses to resume because output.writableNeedDrain is true. Nothing resumes the input ever
  // again: later keys are never answered and the returned promise never settles (even after the output drains
  // and the input ends).
  it('resumes input paused at maxPendingAnswers once a backpressured output drains', async () => {
    const input = new PassThrough();
    const output = new PassThrough({ highWaterMark: 4 });
    const waiting: Array<() => void> = [];
    const done = serveRewriteMap(
      input,
      output,
      (key) => new Promise((resolve) => waiting.push(() => resolve(`${key}-answer-long-enough`))),
      { maxPendingAnswers: 2 },
    );
    input.write('a\nb\nc\n');
    await waitFor(() => waiting.length === 3);
    // All answers arrive while nobody reads the output.
    for (const release of waiting.splice(0)) release();
    await sleep(10);
    input.write('d\n');
    let text = '';
    output.on('data', (chunk: Buffer) => (text += chunk.toString('latin1')));
    // Apache reads now; 'd' must be answered.
    await waitFor(() => waiting.length === 1, 500);
    waiting[0]!();
    input.end();
    await done;
    expect(text).toBe('a=a-answer-long-enough\nb=b-answer-long-enough\nc=c-answer-long-enough\nd=d-answer-long-enough\n');
  });

  it('property: one answer line per input line, in order, whatever the bytes and chunk boundaries', async () => {
    const byteLine = fc.oneof(
      fc.uint8Array({ maxLength: 12 }).map((a) => Array.from(a).filter((b) => b !== 0x0a)),
      fc.array(fc.constantFrom(0x61, 0x62, 0x7a, 0x00, 0x0d, 0xff, 0x41, 0x20), { maxLength: 10 }),
      fc.stringMatching(/^[a-z]{1,8}$/).map((s) => Array.from(Buffer.from(s, 'latin1'))),
      fc.integer({ min: 17, max: 80 }).map((n) => Array(n).fill(0x61) as number[]),
    );
    await fc.assert(
      fc.asyncProperty(
        fc.array(byteLine, { maxLength: 25 }),
        fc.boolean(),
        fc.array(fc.nat(), { maxLength: 10 }),
        async (lines, trailingNewline, rawCuts) => {
          const bytes = Buffer.from(lines.map((l) => [...l, 0x0a]).flat());
          // Without a trailing newline the last line is answered at EOF, unless it is empty (nothing to answer).
          const body = trailingNewline || lines.length === 0 ? bytes : bytes.subarray(0, bytes.length - 1);
          const answeredLines = !trailingNewline && lines.length > 0 && lines[lines.length - 1]!.length === 0
            ? lines.slice(0, -1)
            : lines;
          let n = 0;
          const answer: AnswerKey = (key) => {
            const value = /^[a-z]{1,8}$/.test(key) ? key : null;
            switch (n++ % 3) {
              case 0:
                return value;
              case 1:
                return Promise.resolve(value);
              default:
                return new Promise((resolve) => setTimeout(() => resolve(value), 0));
            }
          };
          const s = serve(answer, { maxLineBytes: 16 });
          const cuts = [...new Set(rawCuts.map((c) => (body.length === 0 ? 0 : c % body.length)))].sort((a, b) => a - b);
          let last = 0;
          for (const cut of [...cuts, body.length]) {
            if (cut > last) s.input.write(body.subarray(last, cut));
            last = cut;
            if (cut % 2 === 0) await sleep(0);
          }
          s.input.end();
          await s.done;
          const expected = answeredLines.map((l) => {
            const key = Buffer.from(l).toString('latin1');
            if (l.length > 16) return 'NULL\n';
            return `${key}=${/^[a-z]{1,8}$/.test(key) ? key : ''}\n`;
          });
          expect(s.text()).toBe(expected.join(''));
        },
      ),
      { numRuns: 300 },
    );
  });
});

describe('serveRewriteMap: keys echoed, resync lines skipped', () => {
  // Chops `body` at the given offsets and writes the pieces, yielding to the event loop between some of them.
  async function writeChopped(input: PassThrough, body: Buffer, rawCuts: number[]): Promise<void> {
    const cuts = [...new Set(rawCuts.map((c) => (body.length === 0 ? 0 : c % body.length)))].sort((a, b) => a - b);
    let last = 0;
    for (const cut of [...cuts, body.length]) {
      if (cut > last) input.write(body.subarray(last, cut));
      last = cut;
      if (cut % 2 === 0) await sleep(0);
    }
  }

  type Mode = 'sync' | 'promise' | 'later' | 'throw' | 'reject';
  const answerWith = (mode: Mode, value: string | null): ReturnType<AnswerKey> => {
    switch (mode) {
      case 'sync':
        return value;
      case 'promise':
        return Promise.resolve(value);
      case 'later':
        return new Promise((resolve) => setTimeout(() => resolve(value), 0));
      case 'throw':
        throw new Error('boom');
      default:
        return Promise.reject(new Error('boom'));
    }
  };
  const modeArb = fc.constantFrom<Mode>('sync', 'promise', 'later', 'throw', 'reject');

  it(`reads "${RESYNC_KEY}" lines, never answers them, and calls onResync for each`, async () => {
    let resyncs = 0;
    const s = serve((key) => (key.startsWith('s') ? key : Promise.resolve(key)), { onResync: () => resyncs++ });
    s.input.write(`${RESYNC_KEY}\n`);
    await sleep(5);
    expect(s.text()).toBe('');
    expect(resyncs).toBe(1);
    s.input.write(`a\n${RESYNC_KEY}\n${RESYNC_KEY}\nsb\n${RESYNC_KEY.slice(0, 5)}`);
    await sleep(5);
    s.input.write(`${RESYNC_KEY.slice(5)}\n${RESYNC_KEY}\r\n!PLEXER-RESYNC\n${RESYNC_KEY}x\n${RESYNC_KEY}`);
    s.input.end();
    await s.done;
    expect(resyncs).toBe(5);
    expect(s.keys).toEqual(['a', 'sb', `${RESYNC_KEY}\r`, '!PLEXER-RESYNC', `${RESYNC_KEY}x`]);
    expect(s.lines()).toEqual(['a=a', 'sb=sb', `${RESYNC_KEY}\r=`, '!PLEXER-RESYNC=!PLEXER-RESYNC', `${RESYNC_KEY}x=${RESYNC_KEY}x`]);
  });

  it('skips a resync line without the onResync option, and settles on EOF after one', async () => {
    const s = serve((key) => key);
    s.input.end(`${RESYNC_KEY}\nalice\n${RESYNC_KEY}\n`);
    await s.done;
    expect(s.text()).toBe('alice=alice\n');
  });

  it('property: an answer starts with exactly its key\'s bytes and "=", whatever bytes the key holds', async () => {
    const byte = fc.oneof(
      fc.integer({ min: 0, max: 255 }).filter((b) => b !== 0x0a),
      fc.constantFrom(0x0d, 0x00, 0x3d, 0x7c, 0x80, 0xff, 0x20, 0x21),
    );
    const resync = Buffer.from(RESYNC_KEY, 'latin1');
    const scenario = fc.integer({ min: 1, max: 48 }).chain((maxLineBytes) =>
      fc.record({
        maxLineBytes: fc.constant(maxLineBytes),
        lines: fc.array(
          fc.oneof(fc.array(byte, { maxLength: maxLineBytes }), fc.array(byte, { minLength: maxLineBytes, maxLength: maxLineBytes })),
          { maxLength: 20 },
        ).map((lines) => lines.filter((l) => !resync.equals(Buffer.from(l)))),
        values: fc.array(fc.option(fc.oneof(fc.string({ unit: 'binary', maxLength: 8 }), fc.stringMatching(/^[a-z=|]{0,8}$/))), { minLength: 20, maxLength: 20 }),
        modes: fc.array(modeArb, { minLength: 20, maxLength: 20 }),
        cuts: fc.array(fc.nat(), { maxLength: 12 }),
      }),
    );
    await fc.assert(
      fc.asyncProperty(scenario, async ({ maxLineBytes, lines, values, modes, cuts }) => {
        let n = 0;
        const s = serve(() => {
          const i = n++;
          return answerWith(modes[i]!, values[i]!);
        }, { maxLineBytes });
        await writeChopped(s.input, Buffer.from(lines.map((l) => [...l, 0x0a]).flat()), cuts);
        s.input.end();
        await s.done;
        const out = Buffer.from(s.text(), 'latin1');
        const answerLines: Buffer[] = [];
        for (let start = 0; start < out.length; ) {
          const nl = out.indexOf(0x0a, start);
          expect(nl).not.toBe(-1);
          answerLines.push(out.subarray(start, nl));
          start = nl + 1;
        }
        expect(answerLines).toHaveLength(lines.length);
        lines.forEach((line, i) => {
          const key = Buffer.from(line);
          const answer = answerLines[i]!;
          // The key's bytes, then "=": what the rules compare with the key they asked.
          expect(answer.subarray(0, key.length).equals(key)).toBe(true);
          expect(answer[key.length]).toBe(0x3d);
          const value = values[i]!;
          const ok = (modes[i] === 'sync' || modes[i] === 'promise' || modes[i] === 'later') && value !== null && /^[^\r\n\u0100-\uffff]*$/.test(value);
          expect(answer.subarray(key.length + 1).toString('latin1')).toBe(ok ? value : '');
        });
      }),
      { numRuns: 300 },
    );
  });

  it('property: resync lines produce no output and leave the other answers in order, in any chunking', async () => {
    const line = fc.oneof(
      { weight: 3, arbitrary: fc.constant(RESYNC_KEY) },
      { weight: 4, arbitrary: fc.stringMatching(/^[a-z]{1,8}$/) },
      { weight: 1, arbitrary: fc.constantFrom('', `${RESYNC_KEY}\r`, RESYNC_KEY.slice(1), `${RESYNC_KEY}!`, RESYNC_KEY.toUpperCase(), `x${RESYNC_KEY}`) },
      { weight: 1, arbitrary: fc.integer({ min: 17, max: 40 }).map((n) => 'q'.repeat(n)) },
    );
    await fc.assert(
      fc.asyncProperty(
        fc.array(line, { maxLength: 30 }),
        fc.boolean(),
        fc.array(fc.nat(), { maxLength: 16 }),
        fc.array(modeArb.filter((m) => m !== 'throw' && m !== 'reject'), { minLength: 30, maxLength: 30 }),
        fc.constantFrom(1, 2, 1024),
        async (lines, trailingNewline, cuts, modes, maxPendingAnswers) => {
          let resyncs = 0;
          let n = 0;
          const s = serve((key) => answerWith(modes[n++ % modes.length]!, /^[a-z]{1,8}$/.test(key) ? key.toUpperCase() : null), {
            maxLineBytes: 16,
            maxPendingAnswers,
            onResync: () => resyncs++,
          });
          const text = lines.map((l) => `${l}\n`).join('');
          // Without the last newline, a non-empty last line is still a line (read at EOF); an empty one is nothing.
          const body = trailingNewline || lines.length === 0 ? text : text.slice(0, -1);
          const read = !trailingNewline && lines.at(-1) === '' ? lines.slice(0, -1) : lines;
          await writeChopped(s.input, Buffer.from(body, 'latin1'), cuts);
          s.input.end();
          await s.done;
          const answered = read.filter((l) => l !== RESYNC_KEY);
          expect(resyncs).toBe(read.length - answered.length);
          expect(s.keys).toEqual(answered.filter((l) => l.length <= 16));
          expect(s.text()).toBe(answered.map((l) => (l.length > 16 ? 'NULL\n' : `${l}=${/^[a-z]{1,8}$/.test(l) ? l.toUpperCase() : ''}\n`)).join(''));
        },
      ),
      { numRuns: 300 },
    );
  });
});

describe('readPipeInput', () => {
  it('reads the user and password lines', async () => {
    const input = new PassThrough();
    const read = readPipeInput(input, 1_000);
    input.end('alice\nsecret\n');
    expect(await read).toEqual({ first: 'alice', second: 'secret' });
  });

  it('accepts a second line without its newline at EOF', async () => {
    const input = new PassThrough();
    const read = readPipeInput(input, 1_000);
    input.end('alice\nsecret');
    expect(await read).toEqual({ first: 'alice', second: 'secret' });
  });

  it('waits for EOF even after two full lines, then returns them', async () => {
    const input = new PassThrough();
    const read = readPipeInput(input, 2_000);
    let settled = false;
    void read.then(() => (settled = true), () => (settled = true));
    input.write('bob\ngroup1 group2\n');
    await sleep(20);
    expect(settled).toBe(false);
    input.end();
    expect(await read).toEqual({ first: 'bob', second: 'group1 group2' });
  });

  it('refuses a third line (a user name holding a newline must not shift the password line)', async () => {
    const input = new PassThrough();
    const read = readPipeInput(input, 1_000);
    input.end('alice\npw\nreal-password\n');
    await expect(read).rejects.toThrow(/^expected exactly two lines on stdin, got \d+$/);
    const trailing = new PassThrough();
    const read2 = readPipeInput(trailing, 1_000);
    trailing.end('alice\npw\n\n');
    await expect(read2).rejects.toThrow(PipeInputError);
  });

  it('reads "alice\\n" as alice with an empty (unterminated) second line', async () => {
    const input = new PassThrough();
    const read = readPipeInput(input, 1_000);
    input.end('alice\n');
    expect(await read).toEqual({ first: 'alice', second: '' });
  });

  it('accepts an empty second line', async () => {
    const input = new PassThrough();
    const read = readPipeInput(input, 1_000);
    input.end('alice\n\n');
    expect(await read).toEqual({ first: 'alice', second: '' });
  });

  it('strips a trailing \\r from each line (CRLF)', async () => {
    const input = new PassThrough();
    const read = readPipeInput(input, 1_000);
    input.end('alice\r\nsecret\r\n');
    expect(await read).toEqual({ first: 'alice', second: 'secret' });
  });

  it('keeps a \\r inside a line', async () => {
    const input = new PassThrough();
    const read = readPipeInput(input, 1_000);
    input.end('al\rice\nsec\rret\n');
    expect(await read).toEqual({ first: 'al\rice', second: 'sec\rret' });
  });

  it('handles lines split across chunks', async () => {
    const input = new PassThrough();
    const read = readPipeInput(input, 1_000);
    input.write('ali');
    await sleep(2);
    input.write('ce\nsec');
    await sleep(2);
    input.end('ret\n');
    expect(await read).toEqual({ first: 'alice', second: 'secret' });
  });

  it('refuses input with only one line', async () => {
    const input = new PassThrough();
    const read = readPipeInput(input, 1_000);
    input.end('alice');
    await expect(read).rejects.toThrow('expected exactly two lines on stdin, got 1');
    const again = new PassThrough();
    const read2 = readPipeInput(again, 1_000);
    again.end('');
    await expect(read2).rejects.toThrow('expected exactly two lines on stdin, got 1');
  });

  it('refuses more than 8192 bytes', async () => {
    expect(MAX_PIPE_INPUT_BYTES).toBe(8192);
    const input = new PassThrough();
    const read = readPipeInput(input, 1_000);
    input.end('a'.repeat(8193));
    await expect(read).rejects.toThrow('more than 8192 bytes on stdin');
  });

  it('accepts exactly 8192 bytes', async () => {
    const input = new PassThrough();
    const read = readPipeInput(input, 1_000);
    input.end('alice\n' + 'p'.repeat(8192 - 7) + '\n');
    const result = await read;
    expect(result.first).toBe('alice');
    expect(result.second).toBe('p'.repeat(8185));
  });

  it('refuses over 8192 bytes arriving in small chunks', async () => {
    const input = new PassThrough();
    const read = readPipeInput(input, 2_000);
    for (let i = 0; i < 9; i++) input.write('b'.repeat(1_000));
    await expect(read).rejects.toThrow(PipeInputError);
  });

  it('gives up when stdin is not closed within the timeout', async () => {
    const input = new PassThrough();
    const start = performance.now();
    const read = readPipeInput(input, 50);
    input.write('alice\n');
    await expect(read).rejects.toThrow('stdin was not closed within 50 ms');
    const elapsed = performance.now() - start;
    expect(elapsed).toBeGreaterThanOrEqual(45);
    expect(elapsed).toBeLessThan(2_000);
  });

  it('decodes the input as UTF-8', async () => {
    const input = new PassThrough();
    const read = readPipeInput(input, 1_000);
    input.end(Buffer.from('alice\npässwörd\n', 'utf8'));
    expect(await read).toEqual({ first: 'alice', second: 'pässwörd' });
  });
});
