// Whatever reaches the authenticator's stdin (missing lines, no newline, NUL, invalid UTF-8, huge input), it
// exits promptly with a refusal code and never accepts.
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freshStore, runPlexer, type TestStore } from '../helpers/plexer.js';

let store: TestStore;

beforeAll(async () => {
  store = await freshStore({ lockout_max_failures: 0 });
  await runPlexer(['group', 'add', 'tenant1'], { configPath: store.configPath });
  await runPlexer(['user', 'add', 'alice', '--group', 'tenant1', '--password-stdin'], { configPath: store.configPath, input: 'right\n' });
});
afterAll(() => store.close());

const refusals = [10, 11, 12];

describe('plexer authn with hostile stdin', () => {
  it('refuses any byte string that is not exactly the right user and password', async () => {
    const line = fc.uint8Array({ maxLength: 300 }).map((bytes) => Buffer.from(bytes));
    const input = fc.oneof(
      fc.array(line, { maxLength: 4 }).map((lines) => Buffer.concat(lines.flatMap((l) => [l, Buffer.from('\n')]))),
      fc
        .tuple(fc.constantFrom('alice', 'alice\0', 'alice\r', 'ali\u00e9ce', ''), line)
        .map(([user, pw]) => Buffer.concat([Buffer.from(user + '\n'), pw])),
      fc.integer({ min: 8193, max: 200_000 }).map((n) => Buffer.concat([Buffer.from('alice\n'), Buffer.alloc(n, 0x61)])),
    );
    await fc.assert(
      fc.asyncProperty(input, async (bytes) => {
        if (bytes.equals(Buffer.from('alice\nright\n')) || bytes.equals(Buffer.from('alice\nright'))) return;
        const result = await runPlexer(['authn'], { configPath: store.configPath, input: bytes });
        expect(refusals).toContain(result.code);
        expect(result.stdout).toBe('');
      }),
      { numRuns: 25 },
    );
    expect((await runPlexer(['authn'], { configPath: store.configPath, input: 'alice\nright\n' })).code).toBe(0);
  }, 120_000);
});
