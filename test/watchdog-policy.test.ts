// When the watchdog asks Apache for a graceful reload: on a fake clock (the policy takes the time as input).
import { describe, expect, it } from 'vitest';
import { createReloadPolicy } from '../src/watchdog/policy.js';

describe('reload policy', () => {
  it('gives maps a start-up grace, then reloads once a map has been missing for 500 ms', () => {
    const p = createReloadPolicy({ expected: 2 }, 0);
    // Apache starts the maps after its piped loggers: missing during the first 3 s is not a death.
    for (let t = 0; t < 3_000; t += 250) expect(p.observe(t, 0)).toBe(false);
    expect(p.observe(3_000, 0)).toBe(true);
  });

  it('ignores a healthy server and reacts to one missing map', () => {
    const p = createReloadPolicy({ expected: 2 }, 0);
    for (let t = 0; t <= 10_000; t += 250) expect(p.observe(t, 2)).toBe(false);
    expect(p.observe(10_250, 1)).toBe(false);
    expect(p.observe(10_500, 1)).toBe(false);
    expect(p.observe(10_750, 1)).toBe(true);
  });

  it('backs off while maps keep dying (3 s, 6 s, 12 s … 60 s) and forgets after a healthy minute', () => {
    const p = createReloadPolicy({ expected: 1 }, 0);
    for (let t = 0; t <= 1_000; t += 250) p.observe(t, 1);
    const reloads: number[] = [];
    for (let t = 1_250; t <= 200_000; t += 250) if (p.observe(t, 0)) reloads.push(t);
    const gaps = reloads.slice(1).map((t, i) => t - reloads[i]!);
    expect(gaps.slice(0, 5)).toEqual([3_000, 6_000, 12_000, 24_000, 48_000]);
    expect(Math.max(...gaps)).toBe(60_000);
    // A minute of health: the next death is answered after the short grace again.
    for (let t = 200_250; t <= 261_000; t += 250) expect(p.observe(t, 1)).toBe(false);
    expect(p.observe(261_250, 0)).toBe(false);
    expect(p.observe(261_500, 0)).toBe(false);
    expect(p.observe(261_750, 0)).toBe(true);
  });

  it('refuses a nonsensical expectation up front', () => {
    expect(() => createReloadPolicy({ expected: 0 }, 0)).toThrow(RangeError);
  });
});
