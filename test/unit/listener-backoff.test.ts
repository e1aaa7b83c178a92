// LISTEN's reconnection (src/store/listener.ts) against a server that refuses every connection, on a fake clock:
// the waits double up to the cap, and each is drawn between half and all of it, so that front ends that lost
// PostgreSQL together do not come back in lockstep.
import { afterEach, describe, expect, it, vi } from 'vitest';
import type pg from 'pg';
import { listenForChanges } from '../../src/store/listener.js';
import { createLogger } from '../../src/log.js';

afterEach(() => vi.useRealTimers());

function refusingClient(attempts: number[]): pg.Client {
  return {
    on: () => undefined,
    connect: async () => {
      attempts.push(Date.now());
      throw new Error('connection refused');
    },
    end: async () => undefined,
    query: async () => undefined,
  } as unknown as pg.Client;
}

async function waitsWith(random: () => number): Promise<number[]> {
  vi.useFakeTimers({ now: 0 });
  const attempts: number[] = [];
  const listener = listenForChanges({
    connect: () => refusingClient(attempts),
    channel: 'x',
    onChange: () => undefined,
    onListening: () => undefined,
    log: createLogger('test'),
    minBackoffMs: 100,
    maxBackoffMs: 1_000,
    random,
  });
  await vi.advanceTimersByTimeAsync(10_000);
  await listener.close();
  return attempts.slice(1).map((at, i) => at - attempts[i]!);
}

describe('LISTEN reconnection backoff', () => {
  it('doubles up to the cap, at the top of its range', async () => {
    expect((await waitsWith(() => 1)).slice(0, 6)).toEqual([100, 200, 400, 800, 1_000, 1_000]);
  });

  it('draws each wait between half of it and all of it', async () => {
    expect((await waitsWith(() => 0)).slice(0, 6)).toEqual([50, 100, 200, 400, 500, 500]);
    let n = 0;
    const spread = await waitsWith(() => [0.1, 0.9][n++ % 2]!);
    expect(spread.slice(0, 2)).toEqual([55, 190]);
  });
});
