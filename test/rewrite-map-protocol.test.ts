// The prg: RewriteMap framing and mod_authnz_external's pipe input, over in-memory streams.
import { PassThrough } from 'node:stream';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { MAX_PIPE_INPUT_BYTES, PipeInputError, readPipeInput } from '../src/protocol/authnz-external.js';
import { ANSWER_MARK, formatAnswer, serveRewriteMap, type AnswerKey, type RewriteMapStreamOptions } from '../src/protocol/rewrite-map.js';
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
    [null, '#alice=\n'],
    ['', '#alice=\n'],
    // Never a bare NULL line: behind "#alice=" these are ordinary values (Apache compares whole lines).
    ['NULL', '#alice=NULL\n'],
    ['null', '#alice=null\n'],
    ['NuLl', '#alice=NuLl\n'],
    ['a\rb', '#alice=\n'],
    ['a\nb', '#alice=\n'],
    ['tenant1\n', '#alice=\n'],
    ['\r', '#alice=\n'],
    ['tenant1', '#alice=tenant1\n'],
    ['http://127.0.0.1:8001/', '#alice=http://127.0.0.1:8001/\n'],
    ['unix:/run/app.sock|fcgi://localhost/', '#alice=unix:/run/app.sock|fcgi://localhost/\n'],
    ['NULLS', '#alice=NULLS\n'],
    [' ', '#alice= \n'],
    ['a=b', '#alice=a=b\n'],
    // A value holding the mark is no value: a line's only "#" is its first byte.
    ['#', '#alice=\n'],
    ['tenant#1', '#alice=\n'],
    ['#alice=alpha', '#alice=\n'],
    ['\u00e9\u00ff\u0000', '#alice=\u00e9\u00ff\u0000\n'],
    // No latin1 form: written as latin1, U+010A would become "\n" and U+010D "\r".
    ['x\u010ay', '#alice=\n'],
    ['\u010d', '#alice=\n'],
    ['\u20ac', '#alice=\n'],
    ['\ud83d\ude00', '#alice=\n'],
  ])('alice, %j → %j', (answer, expected) => {
    expect(formatAnswer('alice', answer)).toBe(expected);
  });

  it('echoes any key as it is, "=" and "|" and control bytes included', () => {
    expect(formatAnswer('', null)).toBe('#=\n');
    expect(formatAnswer('', 'v')).toBe('#=v\n');
    expect(formatAnswer('a=b|c\r\u0000\u00ff', 'v')).toBe('#a=b|c\r\u0000\u00ff=v\n');
  });

  it('property: written as latin1, one line that starts with the mark, the key\'s bytes and "=", whatever the value', () => {
    const key = fc.uint8Array({ maxLength: 40 }).map((a) => Buffer.from(a.filter((b) => b !== 0x0a)).toString('latin1'));
    const value = fc.option(fc.oneof(fc.string({ unit: 'binary' }), fc.string({ unit: 'binary-ascii' }), fc.string({ unit: 'grapheme' })));
    fc.assert(
      fc.property(key, value, (k, v) => {
        const bytes = Buffer.from(formatAnswer(k, v), 'latin1');
        const keyBytes = Buffer.from(k, 'latin1');
        expect(bytes.indexOf(0x0a)).toBe(bytes.length - 1);
        expect(bytes[0]).toBe(0x23);
        expect(bytes.subarray(1, keyBytes.length + 1).equals(keyBytes)).toBe(true);
        expect(bytes[keyBytes.length + 1]).toBe(0x3d);
        const written = bytes.subarray(keyBytes.length + 2, -1).toString('latin1');
        // The value exactly, or no value when it cannot be one line of latin1 or holds the mark.
        expect(written).toBe(v !== null && /^[^\r\n#\u0100-\uffff]*$/.test(v) ? v : '');
      }),
      { numRuns: 500 },
    );
  });
});

describe('ANSWER_MARK', () => {
  it('is one byte that no user or group name holds, so a tail of an answer never starts with it', () => {
    expect(ANSWER_MARK).toBe('#');
    expect(Buffer.byteLength(ANSWER_MARK, 'latin1')).toBe(1);
    for (const name of ['#alice', 'al#ice', 'alice#']) {
      expect(isUserName(name)).toBe(false);
      expect(isGroupName(name)).toBe(false);
    }
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
    expect(s.text()).toBe('#a=A\n#b=B\n#c=C\n');
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
    expect(s.text()).toBe('#s1=S1\n#t1=T1\n#s2=S2\n#n1=\n#s3=S3\n#t2=T2\n#s4=S4\n');
  });

  it('writes a synchronous answer at once when nothing is waiting before it', async () => {
    const s = serve((key) => key);
    s.input.write('alice\n');
    await sleep(5);
    expect(s.text()).toBe('#alice=alice\n');
    s.input.write('bob\n');
    await sleep(5);
    expect(s.text()).toBe('#alice=alice\n#bob=bob\n');
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
    expect(s.lines()).toEqual(['#short=<short>', 'NULL', `#${'y'.repeat(16)}=<${'y'.repeat(16)}>`, 'NULL', '#after=<after>']);
    // The overlong lines never reach the answer function with their content.
    expect(s.keys.filter((k) => k.length > 16)).toEqual([]);
  });

  it('answers a line that grows past the limit across many small chunks with one NULL', async () => {
    const s = serve((key) => (key === '' ? null : key), { maxLineBytes: 16 });
    for (let i = 0; i < 50; i++) s.input.write('abc');
    s.input.write('\nok\n');
    s.input.end();
    await s.done;
    expect(s.lines()).toEqual(['NULL', '#ok=ok']);
  });

  // Regression test (fixed bug in latent, src/protocol/rewrite-map.ts endLine): an overlong line is answered by calling the answer
  // function with "" rather than by writing NULL, so it gets whatever the answer function says for an empty key.
  // The option's contract is "Longer lines are answered NULL"; plexer's own map lookups happen to answer ""
  // with no value, which hides this.
  it('answers an overlong line NULL even when the answer function has an answer for ""', async () => {
    const s = serve((key) => (key === '' ? 'EMPTY' : key), { maxLineBytes: 16 });
    s.input.end('x'.repeat(40) + '\nok\n\n');
    await s.done;
    expect(s.lines()).toEqual(['NULL', '#ok=ok', '#=EMPTY']);
  });

  it('passes a trailing \\r (CRLF input) through to the answer function', async () => {
    const s = serve((key) => (/^[a-z]+$/.test(key) ? key : null));
    s.input.end('alice\r\nbob\n');
    await s.done;
    expect(s.keys).toEqual(['alice\r', 'bob']);
    expect(s.text()).toBe('#alice\r=\n#bob=bob\n');
  });

  it('decodes keys as latin1, one character per byte, and echoes them byte for byte', async () => {
    const s = serve(() => null);
    const bytes: Buffer[] = [];
    s.output.on('data', (chunk: string) => bytes.push(Buffer.from(chunk, 'latin1')));
    s.input.end(Buffer.from([0x61, 0xc3, 0xa9, 0x0a, 0xff, 0x00, 0x0a]));
    await s.done;
    expect(s.keys).toEqual(['a\u00c3\u00a9', '\u00ff\u0000']);
    expect(s.text()).toBe('#a\u00c3\u00a9=\n#\u00ff\u0000=\n');
    expect(Buffer.concat(bytes)).toEqual(Buffer.from([0x23, 0x61, 0xc3, 0xa9, 0x3d, 0x0a, 0x23, 0xff, 0x00, 0x3d, 0x0a]));
  });

  it('writes latin1 to a stream without an encoding of its own (process.stdout)', async () => {
    const input = new PassThrough();
    const output = new PassThrough();
    const bytes: Buffer[] = [];
    output.on('data', (chunk: Buffer) => bytes.push(chunk));
    const done = serveRewriteMap(input, output, (key) => (key === '\u00e9' ? '\u00e8' : null));
    input.end(Buffer.from([0xe9, 0x0a, 0xc3, 0xa9, 0x0a]));
    await done;
    expect(Buffer.concat(bytes)).toEqual(Buffer.from([0x23, 0xe9, 0x3d, 0xe8, 0x0a, 0x23, 0xc3, 0xa9, 0x3d, 0x0a]));
  });

  it('answers an empty line (the answer function sees "")', async () => {
    const s = serve((key) => (key === '' ? null : key));
    s.input.end('\n\nalice\n');
    await s.done;
    expect(s.keys).toEqual(['', '', 'alice']);
    expect(s.text()).toBe('#=\n#=\n#alice=alice\n');
  });

  it('answers an unterminated last line at EOF', async () => {
    const s = serve((key) => Promise.resolve(key.toUpperCase()));
    s.input.write('alice\nbo');
    await sleep(5);
    expect(s.text()).toBe('#alice=ALICE\n');
    s.input.end('b');
    await s.done;
    expect(s.text()).toBe('#alice=ALICE\n#bob=BOB\n');
  });

  it('answers an unterminated overlong last line at EOF with NULL', async () => {
    const s = serve((key) => (key === '' ? null : key), { maxLineBytes: 16 });
    s.input.end('ok\n' + 'x'.repeat(30));
    await s.done;
    expect(s.text()).toBe('#ok=ok\nNULL\n');
  });

  it('the returned promise settles only after every answer has been written', async () => {
    const s = serve((key) => new Promise((resolve) => setTimeout(() => resolve(key), key === 'slow' ? 60 : 1)));
    let settled = false;
    void s.done.then(() => (settled = true));
    s.input.end('fast\nslow\nfast2\n');
    await sleep(25);
    expect(settled).toBe(false);
    expect(s.text()).toBe('#fast=fast\n');
    await s.done;
    expect(s.text()).toBe('#fast=fast\n#slow=slow\n#fast2=fast2\n');
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
    expect(s.text()).toBe('#a=a\n#throw=\n#b=b\n#reject=\n#c=c\n');
  });

  it('answers no value for stored values that would break the framing', async () => {
    const values: Record<string, string> = { cr: 'x\ry', lf: 'x\ny', word: 'null', ok: 'fine', wide: 'x\u010ay', wide2: '\u010d', mark: 'ce=tenant1#' };
    const s = serve((key) => Promise.resolve(values[key] ?? null));
    s.input.end('cr\nlf\nword\nok\nmissing\nwide\nwide2\nmark\n');
    await s.done;
    expect(s.text()).toBe('#cr=\n#lf=\n#word=null\n#ok=fine\n#missing=\n#wide=\n#wide2=\n#mark=\n');
  });

  it('keeps answering when more answers wait than maxPendingAnswers', async () => {
    const s = serve((key) => new Promise((resolve) => setTimeout(() => resolve(key), 2)), { maxPendingAnswers: 2 });
    const keys = Array.from({ length: 50 }, (_, i) => `k${i}`);
    s.input.end(keys.join('\n') + '\n');
    await s.done;
    expect(s.lines()).toEqual(keys.map((k) => `#${k}=${k}`));
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
    expect(text).toBe('#a=a-answer-long-enough\n#b=b-answer-long-enough\n#c=c-answer-long-enough\n#d=d-answer-long-enough\n');
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
    expect(text).toBe('#a=a-answer-long-enough\n#b=b-answer-long-enough\n#c=c-answer-long-enough\n#d=d-answer-long-enough\n');
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
            return `#${key}=${/^[a-z]{1,8}$/.test(key) ? key : ''}\n`;
          });
          expect(s.text()).toBe(expected.join(''));
        },
      ),
      { numRuns: 300 },
    );
  });
});

describe('serveRewriteMap: every answer marked and naming its key', () => {
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

  // The output's lines as bytes; fails when the output does not end with a newline.
  function outputLines(text: string): Buffer[] {
    const out = Buffer.from(text, 'latin1');
    const lines: Buffer[] = [];
    for (let start = 0; start < out.length; ) {
      const nl = out.indexOf(0x0a, start);
      expect(nl).not.toBe(-1);
      lines.push(out.subarray(start, nl));
      start = nl + 1;
    }
    return lines;
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

  it('answers every line, a former resync key included, exactly once', async () => {
    const s = serve((key) => key.toUpperCase());
    s.input.end('!plexer-resync\nalice\n!plexer-resync\n');
    await s.done;
    expect(s.keys).toEqual(['!plexer-resync', 'alice', '!plexer-resync']);
    expect(s.text()).toBe('#!plexer-resync=!PLEXER-RESYNC\n#alice=ALICE\n#!plexer-resync=!PLEXER-RESYNC\n');
  });

  it('answers "#key=" for a stored value holding the mark, so no line holds a second "#"', async () => {
    const s = serve((key) => ({ a: '#', b: 'x#y', c: 'tenant1#', d: '#alice=alpha', e: 'plain' })[key] ?? null);
    s.input.end('a\nb\nc\nd\ne\n');
    await s.done;
    expect(s.lines()).toEqual(['#a=', '#b=', '#c=', '#d=', '#e=plain']);
  });

  it('property: an answer is the mark, exactly its key\'s bytes and "=", whatever bytes the key holds', async () => {
    const byte = fc.oneof(
      fc.integer({ min: 0, max: 255 }).filter((b) => b !== 0x0a),
      fc.constantFrom(0x0d, 0x00, 0x3d, 0x7c, 0x80, 0xff, 0x20, 0x21, 0x23),
    );
    const scenario = fc.integer({ min: 1, max: 48 }).chain((maxLineBytes) =>
      fc.record({
        maxLineBytes: fc.constant(maxLineBytes),
        lines: fc.array(
          fc.oneof(fc.array(byte, { maxLength: maxLineBytes }), fc.array(byte, { minLength: maxLineBytes, maxLength: maxLineBytes })),
          { maxLength: 20 },
        ),
        values: fc.array(fc.option(fc.oneof(fc.string({ unit: 'binary', maxLength: 8 }), fc.stringMatching(/^[a-z=|#]{0,8}$/))), { minLength: 20, maxLength: 20 }),
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
        const answerLines = outputLines(s.text());
        expect(answerLines).toHaveLength(lines.length);
        lines.forEach((line, i) => {
          const key = Buffer.from(line);
          const answer = answerLines[i]!;
          // The mark, the key's bytes, then "=": what the rules compare with the key they asked.
          expect(answer[0]).toBe(0x23);
          expect(answer.subarray(1, key.length + 1).equals(key)).toBe(true);
          expect(answer[key.length + 1]).toBe(0x3d);
          const value = values[i]!;
          const ok = (modes[i] === 'sync' || modes[i] === 'promise' || modes[i] === 'later') && value !== null && /^[^\r\n#\u0100-\uffff]*$/.test(value);
          expect(answer.subarray(key.length + 2).toString('latin1')).toBe(ok ? value : '');
        });
      }),
      { numRuns: 300 },
    );
  });

  // mod_rewrite reads an answer byte by byte, so what a dead worker leaves is a line's tail. The rules treat a
  // line as an answer only when it starts with the mark: this is what keeps a tail from ever being one.
  it('property: every output line starts with the mark, but for "NULL" answering an overlong line; no value holds it', async () => {
    const line = fc.oneof(
      { weight: 4, arbitrary: fc.stringMatching(/^[a-z#=]{0,8}$/) },
      { weight: 2, arbitrary: fc.uint8Array({ maxLength: 16 }).map((a) => Buffer.from(a.filter((b) => b !== 0x0a)).toString('latin1')) },
      { weight: 1, arbitrary: fc.integer({ min: 17, max: 40 }).map((n) => 'q'.repeat(n)) },
    );
    const value = fc.option(fc.oneof(fc.string({ unit: 'binary', maxLength: 10 }), fc.stringMatching(/^[a-z#=\r\n]{0,10}$/), fc.constant('NULL')));
    await fc.assert(
      fc.asyncProperty(
        fc.array(fc.tuple(line, value, modeArb), { maxLength: 30 }),
        fc.array(fc.nat(), { maxLength: 16 }),
        fc.constantFrom(1, 2, 1024),
        async (entries, cuts, maxPendingAnswers) => {
          const values = new Map(entries.map(([key, v, mode]) => [key, [v, mode] as const]));
          const s = serve((key) => {
            const [v, mode] = values.get(key) ?? [null, 'sync' as Mode];
            return answerWith(mode, v);
          }, { maxLineBytes: 16, maxPendingAnswers });
          await writeChopped(s.input, Buffer.from(entries.map(([key]) => `${key}\n`).join(''), 'latin1'), cuts);
          s.input.end();
          await s.done;
          const answers = outputLines(s.text());
          expect(answers).toHaveLength(entries.length);
          answers.forEach((answer, i) => {
            const key = entries[i]![0];
            if (Buffer.byteLength(key, 'latin1') > 16) return expect(answer.toString('latin1')).toBe('NULL');
            expect(answer[0]).toBe(0x23);
            // The line's only mark is its first byte when the key holds none (user and group names never do).
            if (!key.includes('#')) expect(answer.indexOf(0x23, 1)).toBe(-1);
            expect(answer.subarray(Buffer.byteLength(key, 'latin1') + 2).includes(0x23)).toBe(false);
          });
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

  it('strips a trailing \\r from the password only: "alice\\r" is not alice (the name pattern refuses it)', async () => {
    const input = new PassThrough();
    const read = readPipeInput(input, 1_000);
    input.end('alice\r\nsecret\r\n');
    expect(await read).toEqual({ first: 'alice\r', second: 'secret' });
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
