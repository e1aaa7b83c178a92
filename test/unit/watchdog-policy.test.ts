// When the watchdog asks Apache for a graceful reload: on a fake clock (the policy takes the time as input).
import { describe, expect, it } from 'vitest';
import { createReloadPolicy } from '../../src/watchdog/policy.js';

const HOUR = 3_600_000;

describe('reload policy', () => {
  it('gives maps a start-up grace, then reloads once a map has been missing for 500 ms', () => {
    const p = createReloadPolicy({ expected: 2 }, HOUR);
    // Apache starts the maps after its piped loggers: missing during the first 3 s is not a death.
    for (let t = HOUR; t < HOUR + 3_000; t += 250) expect(p.observe(t, 0)).toBe(false);
    expect(p.observe(HOUR + 3_000, 0)).toBe(true);
  });

  it('ignores a healthy server and reacts to one missing map', () => {
    const p = createReloadPolicy({ expected: 2 }, HOUR);
    for (let t = HOUR; t <= HOUR + 10_000; t += 250) expect(p.observe(t, 2)).toBe(false);
    expect(p.observe(HOUR + 10_250, 1)).toBe(false);
    expect(p.observe(HOUR + 10_500, 1)).toBe(false);
    expect(p.observe(HOUR + 10_750, 1)).toBe(true);
  });

  it('backs off while maps keep dying (1 s, 2 s, 4 s … 60 s) and forgets after a quiet minute', () => {
    const p = createReloadPolicy({ expected: 1 }, HOUR);
    for (let t = HOUR; t <= HOUR + 1_000; t += 250) p.observe(t, 1);
    const reloads: number[] = [];
    for (let t = HOUR + 1_250; t <= HOUR + 200_000; t += 250) if (p.observe(t, 0)) reloads.push(t);
    const gaps = reloads.slice(1).map((t, i) => t - reloads[i]!);
    expect(gaps.slice(0, 7)).toEqual([1_000, 2_000, 4_000, 8_000, 16_000, 32_000, 60_000]);
    expect(Math.max(...gaps)).toBe(60_000);
    // A minute without a reload: the next death is answered after the short grace again.
    const last = reloads.at(-1)!;
    for (let t = HOUR + 200_250; t <= last + 61_000; t += 250) expect(p.observe(t, 1)).toBe(false);
    const t0 = last + 61_250;
    expect(p.observe(t0, 0)).toBe(false);
    expect(p.observe(t0 + 250, 0)).toBe(false);
    expect(p.observe(t0 + 500, 0)).toBe(true);
    expect(p.state().backoffMs).toBe(2_000);
  });

  it('reloads 10 s after a desync report, once for a burst of them', () => {
    const p = createReloadPolicy({ expected: 1 }, HOUR);
    for (let t = HOUR; t <= HOUR + 5_000; t += 250) p.observe(t, 1);
    for (let i = 0; i < 50; i++) p.desync(HOUR + 5_000 + i * 10);
    const reloads: number[] = [];
    for (let t = HOUR + 5_250; t <= HOUR + 30_000; t += 250) if (p.observe(t, 1)) reloads.push(t);
    expect(reloads).toEqual([HOUR + 15_000]);
  });

  it('keeps its backoff across watchdog restarts through the saved state', () => {
    const first = createReloadPolicy({ expected: 1 }, HOUR);
    for (let t = HOUR; t <= HOUR + 4_000; t += 250) first.observe(t, 0);
    const saved = first.state();
    // Every reload restarts the piped logger: the next watchdog starts from the saved state, so a crash loop
    // cannot reload faster than the backoff.
    const second = createReloadPolicy({ expected: 1 }, HOUR + 4_100, saved);
    const reloads: number[] = [];
    for (let t = HOUR + 4_100; t <= HOUR + 20_000; t += 250) if (second.observe(t, 0)) reloads.push(t);
    expect(reloads[0]! - saved.lastReloadAt).toBeGreaterThanOrEqual(1_000);
    expect(reloads[1]! - reloads[0]!).toBeGreaterThanOrEqual(2_000);
    expect(reloads[2]! - reloads[1]!).toBeGreaterThanOrEqual(4_000);
  });

  it('refuses a nonsensical expectation up front', () => {
    expect(() => createReloadPolicy({ expected: 0 }, 0)).toThrow(RangeError);
  });
});
