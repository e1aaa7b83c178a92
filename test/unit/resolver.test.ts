// The lookup layer on its own: the resolver (cache, stale answers, deadline, single-flight, in-flight bound,
// eviction) over an in-test source, and the mapping from change notifications to evictions.
import { describe, expect, it, vi } from 'vitest';
import { applyChange } from '../../src/lookup/invalidation.js';
import { createResolver, UNAVAILABLE, type Answer, type Resolver, type ResolverOptions } from '../../src/lookup/resolver.js';
import type { Logger, LogFields } from '../../src/log.js';
import type { MapKind } from '../../src/store/map-queries.js';
import { waitFor } from '../helpers/wait.js';

interface Deferred {
  key: string;
  resolve(value: Answer): void;
  reject(error: Error): void;
}

// A store stand-in: a Map of answers, and a mode that decides how a query behaves.
class Source {
  readonly data = new Map<string, string>();
  readonly calls: string[] = [];
  readonly waiting: Deferred[] = [];
  mode: 'ok' | 'fail' | 'hang' | 'manual' = 'ok';

  fetch = (key: string): Promise<Answer> => {
    this.calls.push(key);
    switch (this.mode) {
      case 'ok':
        return Promise.resolve(this.data.get(key) ?? null);
      case 'fail':
        return Promise.reject(new Error('connection refused'));
      case 'hang':
        return new Promise<Answer>(() => undefined);
      case 'manual':
        return new Promise<Answer>((resolve, reject) => this.waiting.push({ key, resolve, reject }));
    }
  };

  // Settles the oldest waiting query for key.
  release(key: string, value: Answer): void {
    const index = this.waiting.findIndex((d) => d.key === key);
    if (index === -1) throw new Error(`no query waiting for ${key}`);
    this.waiting.splice(index, 1)[0]!.resolve(value);
  }
}

class RecordingLog implements Logger {
  readonly lines: Array<[string, string, LogFields | undefined]> = [];
  debug = (event: string, fields?: LogFields) => void this.lines.push(['debug', event, fields]);
  info = (event: string, fields?: LogFields) => void this.lines.push(['info', event, fields]);
  warn = (event: string, fields?: LogFields) => void this.lines.push(['warn', event, fields]);
  error = (event: string, fields?: LogFields) => void this.lines.push(['error', event, fields]);
  scope = () => this;
}

// The resolver's clock, moved by hand. It starts far from 0: lru-cache treats a start time of 0 as "no TTL".
class Clock {
  t = 1_000_000;
  now = () => this.t;
  advance(ms: number): void {
    this.t += ms;
  }
}

function setup(overrides: Partial<ResolverOptions> = {}) {
  const source = new Source();
  const clock = new Clock();
  const log = new RecordingLog();
  const resolver = createResolver({
    fetch: source.fetch,
    max: 100,
    ttlMs: 1_000,
    deadlineMs: 1_000,
    now: clock.now,
    log,
    ...overrides,
  });
  return { source, clock, log, resolver };
}

const isPromise = (value: unknown): value is Promise<unknown> => value instanceof Promise;

describe('resolver: cache', () => {
  it('serves a fresh hit synchronously, without asking the source again', async () => {
    const { source, resolver } = setup();
    source.data.set('alice', 'tenant1');
    const first = resolver.resolve('alice');
    expect(isPromise(first)).toBe(true);
    expect(await first).toBe('tenant1');
    const second = resolver.resolve('alice');
    expect(isPromise(second)).toBe(false);
    expect(second).toBe('tenant1');
    expect(source.calls).toEqual(['alice']);
    expect(resolver.size).toBe(1);
  });

  it('caches a negative answer and serves it synchronously as null', async () => {
    const { source, resolver } = setup();
    expect(await resolver.resolve('nobody')).toBeNull();
    const again = resolver.resolve('nobody');
    expect(isPromise(again)).toBe(false);
    expect(again).toBeNull();
    expect(source.calls).toEqual(['nobody']);
  });

  it('refetches once the TTL has passed, and not before', async () => {
    const { source, clock, resolver } = setup({ ttlMs: 1_000 });
    source.data.set('alice', 'tenant1');
    expect(await resolver.resolve('alice')).toBe('tenant1');
    source.data.set('alice', 'tenant2');
    clock.advance(999);
    expect(resolver.resolve('alice')).toBe('tenant1');
    expect(source.calls).toEqual(['alice']);
    clock.advance(2);
    const refreshed = resolver.resolve('alice');
    expect(isPromise(refreshed)).toBe(true);
    expect(await refreshed).toBe('tenant2');
    expect(source.calls).toEqual(['alice', 'alice']);
    expect(resolver.resolve('alice')).toBe('tenant2');
  });

  it('also expires cached negative answers', async () => {
    const { source, clock, resolver } = setup({ ttlMs: 1_000 });
    expect(await resolver.resolve('bob')).toBeNull();
    source.data.set('bob', 'tenant3');
    clock.advance(1_001);
    expect(await resolver.resolve('bob')).toBe('tenant3');
    expect(source.calls).toEqual(['bob', 'bob']);
  });

  it('clear() drops every entry, so the next lookups go to the source', async () => {
    const { source, resolver } = setup();
    source.data.set('a', 'x');
    source.data.set('b', 'y');
    await resolver.resolve('a');
    await resolver.resolve('b');
    expect(resolver.size).toBe(2);
    source.data.set('a', 'x2');
    resolver.clear();
    expect(resolver.size).toBe(0);
    const next = resolver.resolve('a');
    expect(isPromise(next)).toBe(true);
    expect(await next).toBe('x2');
    expect(source.calls).toEqual(['a', 'b', 'a']);
  });

  it('evict() drops one entry only', async () => {
    const { source, resolver } = setup();
    source.data.set('a', 'x');
    source.data.set('b', 'y');
    await resolver.resolve('a');
    await resolver.resolve('b');
    resolver.evict('a');
    expect(resolver.size).toBe(1);
    expect(resolver.resolve('b')).toBe('y');
    expect(isPromise(resolver.resolve('a'))).toBe(true);
  });
});

describe('resolver: store trouble', () => {
  it('serves the stale value when the source fails, logging the outage once and the recovery once', async () => {
    const { source, clock, log, resolver } = setup({ ttlMs: 1_000 });
    source.data.set('alice', 'tenant1');
    expect(await resolver.resolve('alice')).toBe('tenant1');
    clock.advance(1_500);
    source.mode = 'fail';
    expect(await resolver.resolve('alice')).toBe('tenant1');
    expect(await resolver.resolve('alice')).toBe('tenant1');
    expect(source.calls).toEqual(['alice', 'alice', 'alice']);
    expect(log.lines).toEqual([
      ['warn', 'store lookup failed; answering from stale cache or unavailable', { error: 'connection refused' }],
    ]);
    source.mode = 'ok';
    source.data.set('alice', 'tenant2');
    expect(await resolver.resolve('alice')).toBe('tenant2');
    expect(log.lines.map((l) => l[1])).toEqual(['store lookup failed; answering from stale cache or unavailable', 'store answering again']);
    expect(resolver.resolve('alice')).toBe('tenant2');
  });

  it('answers unavailable at once when the source fails and nothing is cached (never "no group")', async () => {
    const { source, resolver } = setup({ deadlineMs: 5_000 });
    source.mode = 'fail';
    const start = performance.now();
    expect(await resolver.resolve('alice')).toBe(UNAVAILABLE);
    expect(performance.now() - start).toBeLessThan(1_000);
    expect(resolver.size).toBe(0);
  });

  it('a stale negative answer stays null when the source fails', async () => {
    const { source, clock, resolver } = setup();
    expect(await resolver.resolve('bob')).toBeNull();
    clock.advance(5_000);
    source.mode = 'fail';
    expect(await resolver.resolve('bob')).toBeNull();
  });

  // The deadline runs on fake timers: the answer is pending until exactly deadlineMs has passed, whatever the
  // machine's load.
  async function answerAtDeadline(resolver: ReturnType<typeof setup>['resolver'], key: string, deadlineMs: number): Promise<unknown> {
    vi.useFakeTimers();
    try {
      let answer: unknown = 'pending';
      const settled = Promise.resolve(resolver.resolve(key)).then((value) => (answer = value));
      await vi.advanceTimersByTimeAsync(deadlineMs - 1);
      expect(answer).toBe('pending');
      await vi.advanceTimersByTimeAsync(1);
      await settled;
      return answer;
    } finally {
      vi.useRealTimers();
    }
  }

  it('serves the stale value when the source is slower than deadlineMs', async () => {
    const { source, clock, resolver } = setup({ deadlineMs: 20 });
    source.data.set('alice', 'tenant1');
    expect(await resolver.resolve('alice')).toBe('tenant1');
    clock.advance(2_000);
    source.mode = 'hang';
    expect(await answerAtDeadline(resolver, 'alice', 20)).toBe('tenant1');
  });

  it('answers unavailable after deadlineMs when the source is slow and nothing is cached', async () => {
    const { source, resolver } = setup({ deadlineMs: 20 });
    source.mode = 'hang';
    expect(await answerAtDeadline(resolver, 'alice', 20)).toBe(UNAVAILABLE);
  });

  it('a query that outlives the deadline still fills the cache when it settles', async () => {
    const { source, resolver } = setup({ deadlineMs: 20 });
    source.mode = 'manual';
    expect(await resolver.resolve('alice')).toBe(UNAVAILABLE);
    source.release('alice', 'tenant1');
    await waitFor(() => resolver.size === 1, 1_000, 'the late answer cached');
    expect(resolver.resolve('alice')).toBe('tenant1');
    expect(source.calls).toEqual(['alice']);
  });
});

describe('resolver: concurrency', () => {
  it('single-flight: concurrent lookups of one key make one source call and all get its answer', async () => {
    const { source, resolver } = setup();
    source.mode = 'manual';
    const answers = Array.from({ length: 10 }, () => resolver.resolve('alice'));
    expect(answers.every(isPromise)).toBe(true);
    expect(source.calls).toEqual(['alice']);
    source.release('alice', 'tenant1');
    expect(await Promise.all(answers)).toEqual(Array(10).fill('tenant1'));
    expect(resolver.resolve('alice')).toBe('tenant1');
    expect(source.calls).toEqual(['alice']);
  });

  it('single-flight also holds while the stale value is being refreshed', async () => {
    const { source, clock, resolver } = setup();
    source.data.set('alice', 'tenant1');
    await resolver.resolve('alice');
    clock.advance(2_000);
    source.mode = 'manual';
    const answers = [resolver.resolve('alice'), resolver.resolve('alice'), resolver.resolve('alice')];
    expect(source.calls).toEqual(['alice', 'alice']);
    source.release('alice', 'tenant2');
    expect(await Promise.all(answers)).toEqual(['tenant2', 'tenant2', 'tenant2']);
  });

  it('past maxInFlight, misses are answered at once (stale or unavailable) without a source call', async () => {
    const { source, clock, resolver } = setup({ maxInFlight: 2 });
    source.data.set('c', 'c-old');
    await resolver.resolve('c');
    clock.advance(2_000);
    source.mode = 'manual';
    const a = resolver.resolve('a');
    const b = resolver.resolve('b');
    expect(source.calls).toEqual(['c', 'a', 'b']);
    // A stale entry is served; a key with nothing cached is unavailable; neither waits.
    expect(resolver.resolve('c')).toBe('c-old');
    expect(resolver.resolve('d')).toBe(UNAVAILABLE);
    // A key already being fetched joins its query rather than being refused.
    const a2 = resolver.resolve('a');
    expect(isPromise(a2)).toBe(true);
    expect(source.calls).toEqual(['c', 'a', 'b']);
    source.release('a', 'A');
    expect(await a).toBe('A');
    expect(await a2).toBe('A');
    // One slot is free again.
    const d = resolver.resolve('d');
    expect(isPromise(d)).toBe(true);
    expect(source.calls).toEqual(['c', 'a', 'b', 'd']);
    source.release('b', 'B');
    source.release('d', 'D');
    expect(await b).toBe('B');
    expect(await d).toBe('D');
  });

  // Regression test (fixed bug in src/lookup/resolver.ts, evict()/clear()): they delete the key from `inFlight`, which is also the count
  // that enforces maxInFlight; the dropped queries are still running, so after a clear() (sent for every "g:"
  // notification) the resolver starts up to maxInFlight more queries: repeated clears while the store is slow
  // let queries pile up without bound, contrary to "Queries started and not yet settled, over all keys".
  it('maxInFlight still counts queries whose keys were evicted or cleared while they ran', async () => {
    const { source, resolver } = setup({ maxInFlight: 2 });
    source.mode = 'manual';
    void resolver.resolve('a');
    void resolver.resolve('b');
    resolver.clear();
    // Two queries are still unsettled: a miss must be answered at once with no new query.
    expect(resolver.resolve('c')).toBe(UNAVAILABLE);
    expect(source.calls).toEqual(['a', 'b']);
  });

  it('evict during a fetch: later lookups do not join it, and its older answer is not cached', async () => {
    const { source, resolver } = setup();
    source.mode = 'manual';
    const before = resolver.resolve('alice');
    // The row changes while the query runs; the change notification evicts the key.
    resolver.evict('alice');
    const after = resolver.resolve('alice');
    expect(source.calls).toEqual(['alice', 'alice']);
    source.release('alice', 'old');
    expect(await before).toBe('old');
    expect(resolver.size).toBe(0);
    source.release('alice', 'new');
    expect(await after).toBe('new');
    expect(resolver.resolve('alice')).toBe('new');
  });

  it('evict during a fetch whose answer arrives last: the pre-change answer never lands in the cache', async () => {
    const { source, resolver } = setup();
    source.mode = 'manual';
    const before = resolver.resolve('alice');
    resolver.evict('alice');
    const after = resolver.resolve('alice');
    source.waiting[1]!.resolve('new');
    expect(await after).toBe('new');
    source.waiting[0]!.resolve('old');
    // `before` settles after the query's own cache decision: nothing is left to land.
    expect(await before).toBe('old');
    expect(resolver.resolve('alice')).toBe('new');
  });

  // The map's answering thread keeps a copy of the cache built from these calls: it must see exactly what the
  // resolver caches fresh, and nothing it refuses to cache.
  it('onFresh reports every answer cached fresh, in order, and never one that overlapped an eviction or expireAll', async () => {
    const fresh: Array<[string, Answer]> = [];
    const { source, resolver } = setup({ onFresh: (key, value) => void fresh.push([key, value]) });
    source.data.set('alice', 'tenant1');
    await resolver.resolve('alice');
    await resolver.resolve('nobody');
    expect(fresh).toEqual([
      ['alice', 'tenant1'],
      ['nobody', null],
    ]);
    source.mode = 'manual';
    resolver.evict('alice');
    const evicted = resolver.resolve('alice');
    resolver.evict('alice');
    source.release('alice', 'old');
    expect(await evicted).toBe('old');
    const expired = resolver.resolve('bob');
    resolver.expireAll();
    source.release('bob', 'tenant2');
    expect(await expired).toBe('tenant2');
    source.mode = 'fail';
    expect(await resolver.resolve('carl')).toBe(UNAVAILABLE);
    expect(fresh).toEqual([
      ['alice', 'tenant1'],
      ['nobody', null],
    ]);
  });

  it('evict during a fetch with no later lookup: the next lookup asks again', async () => {
    const { source, resolver } = setup();
    source.mode = 'manual';
    const before = resolver.resolve('alice');
    resolver.evict('alice');
    source.release('alice', 'old');
    expect(await before).toBe('old');
    source.mode = 'ok';
    source.data.set('alice', 'new');
    const next = resolver.resolve('alice');
    expect(isPromise(next)).toBe(true);
    expect(await next).toBe('new');
  });

  it('clear during a fetch: its answer is not cached', async () => {
    const { source, resolver } = setup();
    source.mode = 'manual';
    const before = resolver.resolve('alice');
    resolver.clear();
    source.release('alice', 'old');
    expect(await before).toBe('old');
    expect(resolver.size).toBe(0);
    expect(isPromise(resolver.resolve('alice'))).toBe(true);
  });
});

describe('resolver: options', () => {
  const base = (): ResolverOptions => ({
    fetch: async () => null,
    max: 10,
    ttlMs: 10,
    deadlineMs: 10,
    log: new RecordingLog(),
  });

  for (const name of ['max', 'ttlMs', 'deadlineMs', 'maxInFlight'] as const) {
    for (const bad of [0, -1, 1.5, Number.NaN, Number.POSITIVE_INFINITY]) {
      it(`rejects ${name} = ${bad}`, () => {
        expect(() => createResolver({ ...base(), [name]: bad })).toThrow(RangeError);
        expect(() => createResolver({ ...base(), [name]: bad })).toThrow(
          `resolver option ${name} must be a positive whole number, got ${bad}`,
        );
      });
    }
  }

  it('accepts 1 for every option and leaves maxInFlight optional', () => {
    expect(() => createResolver({ ...base(), max: 1, ttlMs: 1, deadlineMs: 1, maxInFlight: 1 })).not.toThrow();
    expect(() => createResolver(base())).not.toThrow();
  });
});

describe('applyChange', () => {
  class FakeResolver implements Resolver {
    readonly events: string[] = [];
    resolve(): Answer {
      return null;
    }
    evict(key: string) {
      this.events.push(`evict ${key}`);
    }
    evictWhere() {
      this.events.push('evictWhere');
    }
    clear() {
      this.events.push('clear');
    }
    expireAll() {
      this.events.push('expireAll');
    }
    readonly size = 0;
  }

  const cases: Array<[MapKind, string, string[]]> = [
    ['group', 'u:alice', ['evict alice']],
    ['group', 'g:tenant1', ['evictWhere']],
    ['group', 'r:alice', []],
    ['group', '*', ['clear']],
    ['backend', 'u:alice', ['evict alice']],
    ['backend', 'g:tenant1', ['clear']],
    ['backend', 'r:alice', []],
    ['backend', '*', ['clear']],
    ['settings', 'u:alice', []],
    ['settings', 'g:tenant1', ['evict tenant1']],
    ['settings', 'r:alice', []],
    ['settings', '*', ['clear']],
    // A user name may hold '@' or '.', and the key is everything after the first colon.
    ['group', 'u:a.b@example.org', ['evict a.b@example.org']],
    ['settings', 'g:a:b', ['evict a:b']],
  ];
  for (const [kind, payload, expected] of cases) {
    it(`${kind} map, "${payload}" → ${expected.length ? expected.join(', ') : 'nothing'}`, () => {
      const resolver = new FakeResolver();
      applyChange(kind, resolver, payload);
      expect(resolver.events).toEqual(expected);
    });
  }

  it('with a real resolver: "u:alice" makes the group map ask again for alice only', async () => {
    const { source, resolver } = setup();
    source.data.set('alice', 't1');
    source.data.set('bob', 't2');
    await resolver.resolve('alice');
    await resolver.resolve('bob');
    applyChange('group', resolver, 'u:alice');
    expect(resolver.resolve('bob')).toBe('t2');
    expect(isPromise(resolver.resolve('alice'))).toBe(true);
    applyChange('group', resolver, 'g:t2');
    expect(isPromise(resolver.resolve('bob'))).toBe(true);
  });

  it('with a real resolver: "g:t2" drops the answers naming t2 and every "no answer", stale ones too, and no other', async () => {
    for (const kind of ['group', 'route'] as const) {
      const { source, resolver, clock } = setup();
      const answers: Record<string, string> =
        kind === 'group' ? { alice: 't1', bob: 't2', dave: 't22' } : { alice: 't1 s.a', bob: 't2 s.b', dave: 't22 s.c' };
      for (const [user, value] of Object.entries(answers)) source.data.set(user, value);
      for (const user of ['alice', 'bob', 'carol', 'dave']) await resolver.resolve(user);
      // erin's answer is stale (the store fails): still the fallback, unless it names t2.
      source.data.set('erin', answers.bob!);
      await resolver.resolve('erin');
      clock.advance(2_000);
      for (const user of ['alice', 'bob', 'carol', 'dave']) await resolver.resolve(user);
      applyChange(kind, resolver, 'g:t2');
      expect(resolver.resolve('alice'), kind).toBe(answers.alice);
      expect(resolver.resolve('dave'), kind).toBe(answers.dave);
      expect(isPromise(resolver.resolve('bob')), kind).toBe(true);
      expect(isPromise(resolver.resolve('carol')), kind).toBe(true);
      source.mode = 'fail';
      expect(await resolver.resolve('erin'), kind).toBe(UNAVAILABLE);
    }
  });
});

describe('expireAll', () => {
  it('keeps every entry as a stale fallback but refetches before serving it fresh', async () => {
    const { createResolver } = await import('../../src/lookup/resolver.js');
    const { createLogger } = await import('../../src/log.js');
    const clock = new Clock();
    let source = new Map([
      ['a', 'one'],
      ['b', 'two'],
    ]);
    let fail = false;
    const calls: string[] = [];
    const resolver = createResolver({
      fetch: async (key) => {
        calls.push(key);
        if (fail) throw new Error('down');
        return source.get(key) ?? null;
      },
      max: 10,
      ttlMs: 60_000,
      deadlineMs: 50,
      log: createLogger('test'),
      now: clock.now,
    });
    expect(await resolver.resolve('a')).toBe('one');
    expect(await resolver.resolve('b')).toBe('two');
    resolver.expireAll();
    expect(resolver.size).toBe(2);
    clock.advance(2); // past the 1 ms expireAll leaves them
    fail = true;
    expect(await resolver.resolve('a')).toBe('one');
    fail = false;
    source = new Map([
      ['a', 'uno'],
      ['b', 'two'],
    ]);
    expect(await resolver.resolve('a')).toBe('uno');
    expect(resolver.resolve('a')).toBe('uno');
    expect(calls).toEqual(['a', 'b', 'a', 'a']);
  });
});

describe('expireAll during a fetch', () => {
  it('keeps the overlapping answer only as a fallback: served when the store fails, refetched otherwise', async () => {
    const { createResolver } = await import('../../src/lookup/resolver.js');
    const { createLogger } = await import('../../src/log.js');
    const clock = new Clock();
    let release: (value: string) => void = () => undefined;
    let mode: 'manual' | 'fail' | 'ok' = 'manual';
    const resolver = createResolver({
      fetch: (key) => {
        if (mode === 'fail') return Promise.reject(new Error('down'));
        if (mode === 'ok') return Promise.resolve(`${key}-fresh`);
        return new Promise((resolve) => (release = resolve));
      },
      max: 10,
      ttlMs: 60_000,
      deadlineMs: 20,
      log: createLogger('test'),
      now: clock.now,
    });
    const first = resolver.resolve('alice');
    resolver.expireAll();
    release('alice-old');
    expect(await first).toBe('alice-old');
    clock.advance(2); // past the 1 ms the overlapping answer is kept fresh
    mode = 'fail';
    expect(await resolver.resolve('alice')).toBe('alice-old');
    mode = 'ok';
    expect(await resolver.resolve('alice')).toBe('alice-fresh');
    expect(resolver.resolve('alice')).toBe('alice-fresh');
  });
});
