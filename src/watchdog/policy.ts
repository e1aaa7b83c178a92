// When to ask Apache for a graceful reload, given how many of its prg: maps are alive. Pure and clock-driven so
// it can be tested with a fake clock; src/cli/watchdog.ts feeds it from /proc.

export interface ReloadPolicyOptions {
  /** How many maps Apache's config starts. */
  expected: number;
  /** How long a map may be missing before a reload: Apache starts maps after the logs, so at start-up they
   *  appear a moment after the watchdog. Default 500 ms; the first check waits `startupGraceMs` instead. */
  missingGraceMs?: number;
  /** Default 3000 ms. */
  startupGraceMs?: number;
  /** The wait after a reload before the next one; doubles while maps keep dying. Default 3000 ms. */
  firstBackoffMs?: number;
  /** Default 60000 ms. */
  maxBackoffMs?: number;
}

export interface ReloadPolicy {
  /** Returns true when a reload should be sent now. */
  observe(nowMs: number, alive: number): boolean;
}

export function createReloadPolicy(options: ReloadPolicyOptions, startedAtMs: number): ReloadPolicy {
  const expected = options.expected;
  if (!Number.isInteger(expected) || expected < 1) throw new RangeError(`expected must be a positive integer: ${expected}`);
  const missingGraceMs = options.missingGraceMs ?? 500;
  const firstBackoffMs = options.firstBackoffMs ?? 3_000;
  const maxBackoffMs = options.maxBackoffMs ?? 60_000;
  let missingSince: number | undefined = startedAtMs - missingGraceMs + (options.startupGraceMs ?? 3_000);
  let backoffMs = firstBackoffMs;
  let nextReloadAt = -Infinity;
  let healthySince: number | undefined;
  return {
    observe(now, alive) {
      if (alive >= expected) {
        missingSince = undefined;
        healthySince ??= now;
        // A minute of health forgets earlier trouble: the next death is answered at once again.
        if (now - healthySince >= maxBackoffMs) backoffMs = firstBackoffMs;
        return false;
      }
      healthySince = undefined;
      missingSince ??= now;
      if (now - missingSince < missingGraceMs || now < nextReloadAt) return false;
      nextReloadAt = now + backoffMs;
      backoffMs = Math.min(backoffMs * 2, maxBackoffMs);
      missingSince = undefined;
      return true;
    },
  };
}
