// The prg: RewriteMap answer format and mod_authnz_external's pipe input, over in-memory streams (the map's
// read loop: test/store/rewrite-map-loop.test.ts).
import { PassThrough } from 'node:stream';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { MAX_PIPE_INPUT_BYTES, PipeInputError, readPipeInput } from '../../src/protocol/authnz-external.js';
import { ANSWER_MARK, formatAnswer } from '../../src/protocol/rewrite-map.js';
import { isAccountName, isUserName } from '../../src/names.js';
import { waitFor } from '../helpers/wait.js';

// Until the reader has taken everything written so far: the next write arrives as a chunk of its own.
const taken = (input: PassThrough) =>
  waitFor(() => input.writableLength === 0 && input.readableLength === 0, 1_000, 'the reader to take the chunk');

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
      expect(isAccountName(name)).toBe(false);
    }
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
    void read.then(
      () => (settled = true),
      () => (settled = true),
    );
    input.write('bob\ngroup1 group2\n');
    await taken(input);
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
    await taken(input);
    input.write('ce\nsec');
    await taken(input);
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
