// When to ask Apache for a graceful reload: when fewer of its prg: maps are alive than it starts, or some
// time after a request found a map's pipe behind (a desync: the rules still route correctly, at one more line
// per lost answer, until fresh pipes). Pure and clock-driven, tested on a fake clock; its state survives the
// watchdog itself (a reload restarts every piped logger) through src/cli/watchdog.ts's state file.

export interface ReloadPolicyOptions {
  /** How many maps Apache's config starts. */
  expected: number;
  /** How long a map may be missing before a reload. Default 500 ms. */
  missingGraceMs?: number;
  /** Apache starts maps after its piped loggers, so at first a missing map is not a death. Default 3000 ms. */
  startupGraceMs?: number;
  /** The wait after a desync report before reloading: a burst of them costs one reload, and requests are routed
   *  correctly meanwhile (one more lookup per lost answer). Default 10000 ms. */
  desyncDelayMs?: number;
  /** The wait after a reload before the next one; doubles while reloads keep being needed. Default 1000 ms. */
  firstBackoffMs?: number;
  /** Default 60000 ms. */
  maxBackoffMs?: number;
}

/** What must outlive one watchdog process for the backoff to hold across reloads. */
export interface ReloadState {
  nextReloadAt: number;
  backoffMs: number;
  lastReloadAt: number;
}

export interface ReloadPolicy {
  /** Returns true when a reload should be sent now. */
  observe(nowMs: number, alive: number): boolean;
  /** A request found a map's pipe behind. */
  desync(nowMs: number): void;
  state(): ReloadState;
}

export function createReloadPolicy(options: ReloadPolicyOptions, startedAtMs: number, saved?: ReloadState): ReloadPolicy {
  const expected = options.expected;
  if (!Number.isInteger(expected) || expected < 1) throw new RangeError(`expected must be a positive integer: ${expected}`);
  const missingGraceMs = options.missingGraceMs ?? 500;
  const desyncDelayMs = options.desyncDelayMs ?? 10_000;
  const firstBackoffMs = options.firstBackoffMs ?? 1_000;
  const maxBackoffMs = options.maxBackoffMs ?? 60_000;
  let missingSince: number | undefined = startedAtMs - missingGraceMs + (options.startupGraceMs ?? 3_000);
  let desyncAt: number | undefined;
  let { nextReloadAt, backoffMs, lastReloadAt } = saved ?? {
    nextReloadAt: Number.MIN_SAFE_INTEGER,
    backoffMs: firstBackoffMs,
    lastReloadAt: Number.MIN_SAFE_INTEGER,
  };
  const reload = (now: number) => {
    lastReloadAt = now;
    nextReloadAt = now + backoffMs;
    backoffMs = Math.min(backoffMs * 2, maxBackoffMs);
    missingSince = undefined;
    desyncAt = undefined;
    return true;
  };
  return {
    observe(now, alive) {
      // A quiet minute since the last reload forgets earlier trouble: the next one is answered at once again.
      if (now - lastReloadAt >= maxBackoffMs) backoffMs = firstBackoffMs;
      if (alive < expected) {
        missingSince ??= now;
        if (now - missingSince >= missingGraceMs && now >= nextReloadAt) return reload(now);
        return false;
      }
      missingSince = undefined;
      if (desyncAt !== undefined && now >= desyncAt && now >= nextReloadAt) return reload(now);
      return false;
    },
    desync(now) {
      desyncAt ??= now + desyncDelayMs;
    },
    state: () => ({ nextReloadAt, backoffMs, lastReloadAt }),
  };
}
