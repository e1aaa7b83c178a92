// The prg: RewriteMap framing of the map's blocking loop (serveRewriteMapLoop), fed from in-memory reads: every
// chunking Apache's pipe could hand it, hostile bytes, overlong lines, and the real process's EOF and EPIPE.
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { tmpdir } from 'node:os';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { serveRewriteMapLoop, type MapAnswer, type MapIo, type RewriteMapLoopOptions } from '../../src/protocol/rewrite-map.js';
import { PLEXER_BIN } from '../helpers/plexer.js';

interface Run {
  text: string;
  keys: string[];
  // For each read, how many bytes of answers had been written before it: what the peer could already read.
  writtenBeforeRead: number[];
}

// Hands the loop one chunk per read (split further when the loop's buffer is smaller), then EOF.
function run(chunks: Array<Buffer | string>, answer: (key: string) => MapAnswer, options?: RewriteMapLoopOptions): Run {
  const queue = chunks.map((c) => (typeof c === 'string' ? Buffer.from(c, 'latin1') : c)).filter((c) => c.length > 0);
  const result: Run = { text: '', keys: [], writtenBeforeRead: [] };
  const io: MapIo = {
    read(buffer) {
      result.writtenBeforeRead.push(result.text.length);
      const next = queue.shift();
      if (next === undefined) return 0;
      if (next.length > buffer.length) queue.unshift(next.subarray(buffer.length));
      return next.copy(buffer, 0, 0, Math.min(next.length, buffer.length));
    },
    write(text) {
      result.text += text;
    },
  };
  serveRewriteMapLoop(
    io,
    (key) => {
      result.keys.push(key);
      return answer(key);
    },
    options,
  );
  return result;
}

const lines = (text: string) => (text === '' ? [] : text.replace(/\n$/, '').split('\n'));

// Cuts `body` at the given offsets.
function chop(body: Buffer, rawCuts: number[]): Buffer[] {
  const cuts = [...new Set(rawCuts.map((c) => (body.length === 0 ? 0 : c % body.length)))].sort((a, b) => a - b);
  const pieces: Buffer[] = [];
  let last = 0;
  for (const cut of [...cuts, body.length]) {
    if (cut > last) pieces.push(body.subarray(last, cut));
    last = cut;
  }
  return pieces;
}

// The output's lines as bytes; fails when the output does not end with a newline.
function outputLines(text: string): Buffer[] {
  const out = Buffer.from(text, 'latin1');
  const result: Buffer[] = [];
  for (let start = 0; start < out.length;) {
    const nl = out.indexOf(0x0a, start);
    expect(nl).not.toBe(-1);
    result.push(out.subarray(start, nl));
    start = nl + 1;
  }
  return result;
}

describe('serveRewriteMapLoop', () => {
  it('answers every line of a read in order and writes them before reading again', () => {
    const r = run(['a\nb\nc\n', 'd\n'], (key) => key.toUpperCase());
    expect(r.text).toBe('#a=A\n#b=B\n#c=C\n#d=D\n');
    // Read 1 (nothing written yet), read 2 (a, b, c written), read 3 = EOF (d written).
    expect(r.writtenBeforeRead).toEqual([0, 15, 20]);
  });

  it('answers a line split over reads once it is complete, not before', () => {
    const r = run(['al', 'i', 'ce\nb', 'ob\n'], (key) => `<${key}>`);
    expect(r.keys).toEqual(['alice', 'bob']);
    expect(r.writtenBeforeRead).toEqual([0, 0, 0, 15, 26]);
    expect(r.text).toBe('#alice=<alice>\n#bob=<bob>\n');
  });

  it('answers an overlong line with one NULL and the next line normally, whatever the chunking', () => {
    const stream = Buffer.from('short\n' + 'x'.repeat(17) + '\n' + 'y'.repeat(16) + '\n' + 'z'.repeat(40) + '\nafter\n');
    const cuts = [1, 5, 6, 10, 20, 23, 24, 30, 41, 45, 70, 90];
    for (const pieces of [
      chop(stream, cuts),
      [stream],
      chop(
        stream,
        Array.from({ length: stream.length }, (_, i) => i),
      ),
    ]) {
      const r = run(pieces, (key) => (key === '' ? null : `<${key}>`), { maxLineBytes: 16 });
      expect(lines(r.text)).toEqual(['#short=<short>', 'NULL', `#${'y'.repeat(16)}=<${'y'.repeat(16)}>`, 'NULL', '#after=<after>']);
      // The overlong lines never reach the answer function.
      expect(r.keys).toEqual(['short', 'y'.repeat(16), 'after']);
    }
  });

  it('answers a line that grows past the limit across many small reads with one NULL', () => {
    const r = run([...Array<string>(50).fill('abc'), '\nok\n'], (key) => key, { maxLineBytes: 16 });
    expect(lines(r.text)).toEqual(['NULL', '#ok=ok']);
  });

  it('assembles lines longer than its read buffer, and still answers overlong ones NULL', () => {
    const r = run(['abcdefghij\n', 'x'.repeat(40), '\nk\n'], (key) => key.length.toString(), { readBufferBytes: 3, maxLineBytes: 16 });
    expect(lines(r.text)).toEqual(['#abcdefghij=10', 'NULL', '#k=1']);
  });

  it('answers an overlong line NULL even when the answer function has an answer for ""', () => {
    const r = run(['x'.repeat(40) + '\nok\n\n'], (key) => (key === '' ? 'EMPTY' : key), { maxLineBytes: 16 });
    expect(lines(r.text)).toEqual(['NULL', '#ok=ok', '#=EMPTY']);
  });

  it('passes a trailing \\r (CRLF input) through to the answer function, and echoes it', () => {
    const r = run(['alice\r\nbob\n'], (key) => (key === 'bob' ? 'B' : null));
    expect(r.keys).toEqual(['alice\r', 'bob']);
    expect(r.text).toBe('#alice\r=\n#bob=B\n');
  });

  it('decodes keys as latin1, one character per byte, and echoes them byte for byte', () => {
    const r = run([Buffer.from([0xe9, 0x0a, 0xc3, 0xa9, 0x0a, 0x00, 0xff, 0x0a])], (key) => (key === '\u00e9' ? '\u00e8' : null));
    expect(r.keys).toEqual(['\u00e9', '\u00c3\u00a9', '\u0000\u00ff']);
    expect(Buffer.from(r.text, 'latin1')).toEqual(
      Buffer.from([0x23, 0xe9, 0x3d, 0xe8, 0x0a, 0x23, 0xc3, 0xa9, 0x3d, 0x0a, 0x23, 0x00, 0xff, 0x3d, 0x0a]),
    );
  });

  it('answers an empty line (the answer function sees "")', () => {
    const r = run(['\nok\n'], (key) => key || null);
    expect(r.keys).toEqual(['', 'ok']);
    expect(lines(r.text)).toEqual(['#=', '#ok=ok']);
  });

  it('answers an unterminated last line at EOF, an overlong one with NULL, and nothing more', () => {
    expect(run(['alice\nbo', 'b'], (key) => key).text).toBe('#alice=alice\n#bob=bob\n');
    expect(run(['ok\n', 'x'.repeat(40)], (key) => key, { maxLineBytes: 16 }).text).toBe('#ok=ok\nNULL\n');
    expect(run(['ok\n'], (key) => key).text).toBe('#ok=ok\n');
  });

  it('returns at once on empty input, writing nothing', () => {
    const r = run([], () => 'x');
    expect(r.text).toBe('');
    expect(r.keys).toEqual([]);
  });

  it('answers no value when the answer function throws, and carries on', () => {
    const r = run(['a\nboom\nb\n'], (key) => {
      if (key === 'boom') throw new Error('boom');
      return key;
    });
    expect(lines(r.text)).toEqual(['#a=a', '#boom=', '#b=b']);
  });

  it('answers no value for stored values that would break the framing, or hold the mark', () => {
    const values: Record<string, string> = { a: 'x\ny', b: 'x\r', c: '\u20ac', d: '#', e: 'x#y', f: 'NULL', g: 'plain' };
    const r = run(['a\nb\nc\nd\ne\nf\ng\n'], (key) => values[key] ?? null);
    expect(lines(r.text)).toEqual(['#a=', '#b=', '#c=', '#d=', '#e=', '#f=NULL', '#g=plain']);
  });

  it('answers every line, a former resync key included, exactly once', () => {
    const r = run(['!plexer-resync\nalice\n!plexer-resync\n'], (key) => key.toUpperCase());
    expect(r.keys).toEqual(['!plexer-resync', 'alice', '!plexer-resync']);
    expect(r.text).toBe('#!plexer-resync=!PLEXER-RESYNC\n#alice=ALICE\n#!plexer-resync=!PLEXER-RESYNC\n');
  });

  it('property: one answer line per input line, in order, whatever the bytes, reads and buffer size', () => {
    const byteLine = fc.oneof(
      fc.uint8Array({ maxLength: 12 }).map((a) => Array.from(a).filter((b) => b !== 0x0a)),
      fc.array(fc.constantFrom(0x61, 0x62, 0x7a, 0x00, 0x0d, 0xff, 0x41, 0x20), { maxLength: 10 }),
      fc.stringMatching(/^[a-z]{1,8}$/).map((s) => Array.from(Buffer.from(s, 'latin1'))),
      fc.integer({ min: 17, max: 80 }).map((n) => Array(n).fill(0x61) as number[]),
    );
    fc.assert(
      fc.property(
        fc.array(byteLine, { maxLength: 25 }),
        fc.boolean(),
        fc.array(fc.nat(), { maxLength: 10 }),
        fc.integer({ min: 1, max: 64 }),
        (input, trailingNewline, cuts, readBufferBytes) => {
          const bytes = Buffer.from(input.map((l) => [...l, 0x0a]).flat());
          // Without a trailing newline the last line is answered at EOF, unless it is empty (nothing to answer).
          const body = trailingNewline || input.length === 0 ? bytes : bytes.subarray(0, bytes.length - 1);
          const answered = !trailingNewline && input.length > 0 && input[input.length - 1]!.length === 0 ? input.slice(0, -1) : input;
          const r = run(chop(body, cuts), (key) => (/^[a-z]{1,8}$/.test(key) ? key : null), { maxLineBytes: 16, readBufferBytes });
          const expected = answered.map((l) => {
            const key = Buffer.from(l).toString('latin1');
            if (l.length > 16) return 'NULL\n';
            return `#${key}=${/^[a-z]{1,8}$/.test(key) ? key : ''}\n`;
          });
          expect(r.text).toBe(expected.join(''));
        },
      ),
      { numRuns: 500 },
    );
  });

  it('property: an answer is the mark, exactly its key\'s bytes and "=", whatever bytes the key holds', () => {
    const byte = fc.oneof(
      fc.integer({ min: 0, max: 255 }).filter((b) => b !== 0x0a),
      fc.constantFrom(0x0d, 0x00, 0x3d, 0x7c, 0x80, 0xff, 0x20, 0x21, 0x23),
    );
    const scenario = fc.integer({ min: 1, max: 48 }).chain((maxLineBytes) =>
      fc.record({
        maxLineBytes: fc.constant(maxLineBytes),
        input: fc.array(
          fc.oneof(fc.array(byte, { maxLength: maxLineBytes }), fc.array(byte, { minLength: maxLineBytes, maxLength: maxLineBytes })),
          { maxLength: 20 },
        ),
        values: fc.array(fc.option(fc.oneof(fc.string({ unit: 'binary', maxLength: 8 }), fc.stringMatching(/^[a-z=|#]{0,8}$/))), {
          minLength: 20,
          maxLength: 20,
        }),
        throws: fc.array(fc.boolean(), { minLength: 20, maxLength: 20 }),
        cuts: fc.array(fc.nat(), { maxLength: 12 }),
      }),
    );
    fc.assert(
      fc.property(scenario, ({ maxLineBytes, input, values, throws, cuts }) => {
        let n = 0;
        const r = run(
          chop(Buffer.from(input.map((l) => [...l, 0x0a]).flat()), cuts),
          () => {
            const i = n++;
            if (throws[i]) throw new Error('boom');
            return values[i]!;
          },
          { maxLineBytes },
        );
        const answers = outputLines(r.text);
        expect(answers).toHaveLength(input.length);
        input.forEach((line, i) => {
          const key = Buffer.from(line);
          const answer = answers[i]!;
          // The mark, the key's bytes, then "=": what the rules compare with the key they asked.
          expect(answer[0]).toBe(0x23);
          expect(answer.subarray(1, key.length + 1).equals(key)).toBe(true);
          expect(answer[key.length + 1]).toBe(0x3d);
          const value = values[i]!;
          const ok = !throws[i] && value !== null && /^[^\r\n#\u0100-\uffff]*$/.test(value);
          expect(answer.subarray(key.length + 2).toString('latin1')).toBe(ok ? value : '');
        });
      }),
      { numRuns: 300 },
    );
  });

  // mod_rewrite reads an answer byte by byte, so what a dead worker leaves is a line's tail. The rules treat a
  // line as an answer only when it starts with the mark: this is what keeps a tail from ever being one.
  it('property: every output line starts with the mark, but for "NULL" answering an overlong line; no value holds it', () => {
    const line = fc.oneof(
      { weight: 4, arbitrary: fc.stringMatching(/^[a-z#=]{0,8}$/) },
      { weight: 2, arbitrary: fc.uint8Array({ maxLength: 16 }).map((a) => Buffer.from(a.filter((b) => b !== 0x0a)).toString('latin1')) },
      { weight: 1, arbitrary: fc.integer({ min: 17, max: 40 }).map((n) => 'q'.repeat(n)) },
    );
    const value = fc.option(
      fc.oneof(fc.string({ unit: 'binary', maxLength: 10 }), fc.stringMatching(/^[a-z#=\r\n]{0,10}$/), fc.constant('NULL')),
    );
    fc.assert(
      fc.property(fc.array(fc.tuple(line, value), { maxLength: 30 }), fc.array(fc.nat(), { maxLength: 16 }), (entries, cuts) => {
        const values = new Map(entries);
        const r = run(chop(Buffer.from(entries.map(([key]) => `${key}\n`).join(''), 'latin1'), cuts), (key) => values.get(key) ?? null, {
          maxLineBytes: 16,
        });
        const answers = outputLines(r.text);
        expect(answers).toHaveLength(entries.length);
        answers.forEach((answer, i) => {
          const key = entries[i]![0];
          if (Buffer.byteLength(key, 'latin1') > 16) return expect(answer.toString('latin1')).toBe('NULL');
          expect(answer[0]).toBe(0x23);
          // The line's only mark is its first byte when the key holds none (user and group names never do).
          if (!key.includes('#')) expect(answer.indexOf(0x23, 1)).toBe(-1);
          expect(answer.subarray(Buffer.byteLength(key, 'latin1') + 2).includes(0x23)).toBe(false);
        });
      }),
      { numRuns: 300 },
    );
  });
});

describe('the map process on real pipes (a broken config: answers no value, needs no database)', () => {
  function startBrokenMap() {
    const dir = mkdtempSync(join(tmpdir(), 'plexer-loop-'));
    writeFileSync(join(dir, 'plexer.conf'), 'pg_port = not-a-number\n');
    const child = spawn(process.execPath, [PLEXER_BIN, 'map', 'group', '--config', join(dir, 'plexer.conf')], { env: {}, cwd: '/' });
    let stderr = '';
    child.stderr.on('data', (d) => (stderr += d));
    const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
    return { child, exited, stderr: () => stderr, cleanup: () => rmSync(dir, { recursive: true, force: true }) };
  }

  it('exits 0 when Apache closes its stdout, at the next answer it cannot write', async () => {
    const map = startBrokenMap();
    try {
      const first = new Promise<string>((resolve) => map.child.stdout.once('data', (d: Buffer) => resolve(d.toString('latin1'))));
      map.child.stdin.write('alice\n');
      expect(await first).toBe('#alice=\n');
      map.child.stdout.destroy();
      map.child.stdin.write('bob\n');
      expect(await map.exited).toBe(0);
      expect(map.stderr()).toMatch(/stdout closed by Apache; map exiting/);
    } finally {
      map.child.kill('SIGKILL');
      map.cleanup();
    }
  });

  it('blocks in read while idle (no CPU spent waiting for keys) and exits 2 at EOF', async () => {
    const map = startBrokenMap();
    try {
      const first = new Promise<string>((resolve) => map.child.stdout.once('data', (d: Buffer) => resolve(d.toString('latin1'))));
      map.child.stdin.write('alice\n');
      expect(await first).toBe('#alice=\n');
      // utime + stime of the map's process, in clock ticks (fields 14 and 15 of /proc/PID/stat).
      const ticks = () =>
        readFileSync(`/proc/${map.child.pid}/stat`, 'utf8')
          .split(') ')[1]!
          .split(' ')
          .slice(11, 13)
          .reduce((a, b) => a + Number(b), 0);
      const start = ticks();
      // The 1 s window is what is measured (CPU spent idle in it), not a wait for something to happen.
      await new Promise((r) => setTimeout(r, 1_000));
      expect(ticks() - start).toBeLessThan(5);
      map.child.stdin.end();
      expect(await map.exited).toBe(2);
    } finally {
      map.child.kill('SIGKILL');
      map.cleanup();
    }
  });
});
