// The pool's policy alone (src/pool/state.ts, binder.ts), against a host that records what it is asked and a
// fake clock: free slot first, then the least recently used idle one, never a busy one, one binding per account,
// a bounded wait; verify() after every step.
import { describe, expect, it } from 'vitest';
import { Binder, type SlotAssignment, type SlotHost } from '../../src/pool/binder.js';
import { PoolInvariantError, PoolState } from '../../src/pool/state.js';
import { createLogger } from '../../src/log.js';

class RecordingHost implements SlotHost {
  readonly events: string[] = [];
  readonly busy = new Map<string, number>();
  published: Array<{ account: string; slot: string }> = [];
  emptyGate: Promise<void> = Promise.resolve();
  assignGate: Promise<void> = Promise.resolve();
  failAssign = false;
  failEmpty = false;
  dataDir(account: string): string {
    return `/data/${account}`;
  }
  async awaitFresh(slot: string): Promise<void> {
    this.events.push(`fresh ${slot}`);
  }
  async assign(slot: string, a: SlotAssignment): Promise<void> {
    this.events.push(`assign ${slot} ${a.account}`);
    await this.assignGate;
    if (this.failAssign) throw new Error('cannot hand the data over');
  }
  async empty(slot: string, account: string | null): Promise<void> {
    this.events.push(`empty ${slot} ${account ?? '-'}`);
    await this.emptyGate;
    if (this.failEmpty) throw new Error('processes of the slot user keep coming back');
  }
  inFlight(slot: string): number {
    return this.busy.get(slot) ?? 0;
  }
  publish(state: PoolState): void {
    state.verify();
    this.published = state.published();
  }
}

function setup(
  slots: number,
  o: {
    waitMs?: number;
    minIdleMs?: number;
    spares?: number;
    accounts?: Record<string, { settingsModule: string | null; enabled: boolean }>;
  } = {},
) {
  let now = 1_000;
  const clock = { now: () => now, advance: (ms: number) => (now += ms) };
  const state = new PoolState(Array.from({ length: slots }, (_, i) => `slot-${i + 1}`));
  const host = new RecordingHost();
  const known = o.accounts ?? {};
  const binder = new Binder(
    state,
    host,
    async (name) => known[name] ?? (name.startsWith('acct') ? { settingsModule: 'tenants.settings_generic', enabled: true } : null),
    createLogger('test'),
    {
      waitMs: o.waitMs ?? 1_000,
      minIdleMs: o.minIdleMs ?? 0,
      spares: o.spares ?? 0,
      spareIdleMs: 5_000,
      pollMs: 100,
      now: clock.now,
      // The fake clock moves by the time slept: a waiting binding sees time pass without waiting for it.
      sleep: async (ms) => {
        clock.advance(ms);
        await Promise.resolve();
      },
    },
  );
  return { state, host, binder, clock };
}

describe('binding accounts to slots', () => {
  it('never takes a slot held for a command until it is let go, and then counts it as just used', async () => {
    const { state, binder, clock } = setup(2, { waitMs: 300 });
    expect(await binder.hold('acct1')).toEqual({ kind: 'bound', slot: 'slot-1' });
    clock.advance(10);
    expect(await binder.bind('acct2')).toEqual({ kind: 'bound', slot: 'slot-2' });
    clock.advance(1_000);
    // slot-1 has gone longest without a request, but it is held: acct3 waits for slot-2 instead.
    expect(await binder.bind('acct3')).toEqual({ kind: 'bound', slot: 'slot-2' });
    clock.advance(10);
    // Both taken now (slot-2 busy with a request, slot-1 held): busy after the bounded wait.
    expect(await binder.hold('acct3')).toEqual({ kind: 'bound', slot: 'slot-2' });
    expect(await binder.bind('acct4')).toEqual({ kind: 'busy' });
    binder.unhold('slot-2');
    clock.advance(10);
    binder.unhold('slot-1');
    expect(state.slot('slot-1').lastUsed).toBe(clock.now());
    clock.advance(10);
    // slot-2 was let go first, slot-1 after: slot-2 goes.
    expect(await binder.bind('acct4')).toEqual({ kind: 'bound', slot: 'slot-2' });
    expect(await binder.hold('nosuch')).toEqual({ kind: 'refused', reason: 'no such account' });
    state.verify();
  });

  it('takes free slots first, then the least recently used idle one', async () => {
    const { state, host, binder, clock } = setup(2);
    expect(await binder.bind('acct1')).toEqual({ kind: 'bound', slot: 'slot-1' });
    clock.advance(10);
    expect(await binder.bind('acct2')).toEqual({ kind: 'bound', slot: 'slot-2' });
    clock.advance(10);
    binder.used('slot-1');
    // slot-2 was used less recently than slot-1: it goes.
    expect(await binder.bind('acct3')).toEqual({ kind: 'bound', slot: 'slot-2' });
    expect(host.published).toEqual([
      { account: 'acct1', slot: 'slot-1' },
      { account: 'acct3', slot: 'slot-2' },
    ]);
    // A free slot is given at once; a taken one is emptied of its account first.
    expect(host.events).toEqual(['assign slot-1 acct1', 'assign slot-2 acct2', 'empty slot-2 acct2', 'assign slot-2 acct3']);
    state.verify();
  });

  it('answers a bound account at once, without touching the machine', async () => {
    const { host, binder } = setup(1);
    await binder.bind('acct1');
    const before = host.events.length;
    expect(await binder.bind('acct1')).toEqual({ kind: 'bound', slot: 'slot-1' });
    expect(host.events.length).toBe(before);
  });

  it('never takes a busy slot, and says busy after the bounded wait', async () => {
    const { host, binder, clock } = setup(1, { waitMs: 500 });
    await binder.bind('acct1');
    host.busy.set('slot-1', 1);
    const started = clock.now();
    expect(await binder.bind('acct2')).toEqual({ kind: 'busy' });
    expect(clock.now() - started).toBeGreaterThanOrEqual(500);
    expect(host.published).toEqual([{ account: 'acct1', slot: 'slot-1' }]);
  });

  it('takes the slot once it is idle again within the wait', async () => {
    const { host, binder } = setup(1, { waitMs: 5_000 });
    await binder.bind('acct1');
    host.busy.set('slot-1', 2);
    const waiting = binder.bind('acct2');
    await Promise.resolve();
    host.busy.set('slot-1', 0);
    expect(await waiting).toEqual({ kind: 'bound', slot: 'slot-1' });
  });

  it('keeps a slot for minIdleMs after its last request', async () => {
    const { binder, clock } = setup(1, { waitMs: 10_000, minIdleMs: 2_000 });
    await binder.bind('acct1');
    binder.used('slot-1');
    const started = clock.now();
    expect(await binder.bind('acct2')).toEqual({ kind: 'bound', slot: 'slot-1' });
    expect(clock.now() - started).toBeGreaterThanOrEqual(2_000);
  });

  it('binds once for simultaneous first requests of one account', async () => {
    const { host, binder } = setup(2);
    let open!: () => void;
    host.assignGate = new Promise((resolve) => (open = resolve));
    const all = Array.from({ length: 5 }, () => binder.bind('acct1'));
    open();
    expect(new Set((await Promise.all(all)).map((r) => JSON.stringify(r)))).toEqual(
      new Set([JSON.stringify({ kind: 'bound', slot: 'slot-1' })]),
    );
    expect(host.events.filter((e) => e.startsWith('assign'))).toHaveLength(1);
  });

  it('never publishes a slot while it is being bound: the evicted account leaves first', async () => {
    const { host, binder } = setup(1);
    await binder.bind('acct1');
    let open!: () => void;
    host.emptyGate = new Promise((resolve) => (open = resolve));
    const second = binder.bind('acct2');
    await new Promise((resolve) => setImmediate(resolve));
    expect(host.published).toEqual([]);
    open();
    await second;
    expect(host.published).toEqual([{ account: 'acct2', slot: 'slot-1' }]);
  });

  it('refuses unknown, disabled and settings-less accounts without taking a slot', async () => {
    const { host, binder } = setup(1, {
      accounts: { off: { settingsModule: 'x.y', enabled: false }, bare: { settingsModule: null, enabled: true } },
    });
    expect(await binder.bind('nobody')).toEqual({ kind: 'refused', reason: 'no such account' });
    expect(await binder.bind('off')).toEqual({ kind: 'refused', reason: 'account disabled' });
    expect(await binder.bind('bare')).toEqual({ kind: 'refused', reason: 'account has no settings module' });
    expect(host.events).toEqual([]);
  });

  it('empties a slot whose binding failed, and serves nobody from it', async () => {
    const { state, host, binder } = setup(1);
    host.failAssign = true;
    expect(await binder.bind('acct1')).toEqual({ kind: 'refused', reason: 'binding failed' });
    expect(state.slot('slot-1').phase).toBe('free');
    expect(host.published).toEqual([]);
    expect(host.events.at(-1)).toBe('empty slot-1 acct1');
  });

  it('releases a bound account: unpublished at once, free only once emptied', async () => {
    const { state, host, binder } = setup(1);
    await binder.bind('acct1');
    let open!: () => void;
    host.emptyGate = new Promise((resolve) => (open = resolve));
    const releasing = binder.release('acct1');
    await Promise.resolve();
    expect(host.published).toEqual([]);
    expect(state.slot('slot-1').phase).toBe('emptying');
    open();
    await releasing;
    expect(state.slot('slot-1').phase).toBe('free');
    expect(host.events.slice(-2)).toEqual(['empty slot-1 acct1', 'fresh slot-1']);
  });

  it('keeps spare slots free, taken from accounts idle long enough', async () => {
    const { state, host, binder, clock } = setup(3, { spares: 1 });
    await binder.bind('acct1');
    await binder.bind('acct2');
    clock.advance(1_000);
    binder.used('slot-2');
    await binder.bind('acct3');
    // Every slot is bound and none idle 5 s: no spare yet.
    await binder.replenish();
    expect(state.slots.filter((s) => s.phase === 'free')).toHaveLength(0);
    clock.advance(4_500);
    binder.used('slot-2');
    binder.used('slot-3');
    await binder.replenish();
    // acct1 (slot-1) had been idle 5.5 s: emptied as the spare.
    expect(state.slot('slot-1').phase).toBe('free');
    expect(host.events.slice(-2)).toEqual(['empty slot-1 acct1', 'fresh slot-1']);
  });
});

describe('a binding while a slot is being emptied', () => {
  it("waits for that slot rather than take another account's", async () => {
    const { state, host, binder } = setup(2, { waitMs: 5_000 });
    await binder.bind('acct1');
    await binder.bind('acct2');
    let open!: () => void;
    host.emptyGate = new Promise((resolve) => (open = resolve));
    const releasing = binder.release('acct1');
    await Promise.resolve();
    const binding = binder.bind('acct3');
    for (let i = 0; i < 5; i++) await Promise.resolve();
    // acct2's slot is idle and least recently used, yet it keeps serving acct2.
    expect(state.slot('slot-2').account).toBe('acct2');
    open();
    await releasing;
    expect(await binding).toEqual({ kind: 'bound', slot: 'slot-1' });
    expect(state.slot('slot-2').account).toBe('acct2');
    state.verify();
  });
});

describe('simultaneous bindings while one slot is being emptied', () => {
  it('one waits for that slot, the other takes the least recently used idle one at once', async () => {
    const { state, host, binder, clock } = setup(3, { waitMs: 5_000 });
    for (const a of ['acct1', 'acct2', 'acct3']) {
      await binder.bind(a);
      clock.advance(10);
    }
    let open!: () => void;
    host.emptyGate = new Promise((resolve) => (open = resolve));
    const releasing = binder.release('acct1');
    await Promise.resolve();
    host.emptyGate = Promise.resolve();
    const four = binder.bind('acct4');
    const five = binder.bind('acct5');
    for (let i = 0; i < 10; i++) await Promise.resolve();
    // One of them did not wait: acct2's slot (least recently used of the bound ones) is taken.
    expect(state.slot('slot-2').account === 'acct4' || state.slot('slot-2').account === 'acct5').toBe(true);
    open();
    await releasing;
    const results = await Promise.all([four, five]);
    expect(results.map((r) => r.kind)).toEqual(['bound', 'bound']);
    expect(state.slot('slot-3').account).toBe('acct3');
    state.verify();
  });
});

describe('a slot that cannot be emptied', () => {
  it('serves nobody, is never given to another account, and is freed once an emptying works', async () => {
    const { state, host, binder, clock } = setup(2, { waitMs: 300 });
    await binder.bind('acct1');
    clock.advance(10);
    await binder.bind('acct2');
    host.failEmpty = true;
    await binder.release('acct1');
    expect(state.slot('slot-1')).toMatchObject({ phase: 'emptying', account: null });
    expect(host.published.map((p) => p.slot)).toEqual(['slot-2']);
    await binder.retrySetAside();
    expect(state.slot('slot-1').phase).toBe('emptying');
    host.failEmpty = false;
    await binder.retrySetAside();
    expect(state.slot('slot-1').phase).toBe('free');
    expect(await binder.bind('acct3')).toEqual({ kind: 'bound', slot: 'slot-1' });
    state.verify();
  });
});

describe('an account released while its slot empties', () => {
  it('binds again as soon as its old slot is empty', async () => {
    const { state, host, binder } = setup(2);
    await binder.bind('acct1');
    let open!: () => void;
    host.emptyGate = new Promise((resolve) => (open = resolve));
    const releasing = binder.release('acct1');
    await Promise.resolve();
    // Another slot, but only once the old one is empty: until then its processes may still write acct1's files, and
    // the emptying ends by locking acct1's directory to root.
    const binding = binder.bind('acct1');
    for (let i = 0; i < 5; i++) await Promise.resolve();
    expect(host.events).not.toContain('assign slot-2 acct1');
    open();
    expect((await binding).kind).toBe('bound');
    const assigned = host.events.map((e, i) => (/^assign \S+ acct1$/.test(e) ? i : -1)).filter((i) => i >= 0);
    expect(host.events.indexOf('empty slot-1 acct1')).toBeLessThan(assigned.at(-1)!);
    await releasing;
    expect(state.slotOf('acct1')?.phase).toBe('bound');
    state.verify();
  });

  it('binds an evicted account elsewhere only once the slot it lost is empty', async () => {
    const { host, binder, clock } = setup(2);
    await binder.bind('acct1');
    clock.advance(10);
    await binder.bind('acct2');
    clock.advance(10);
    let open!: () => void;
    host.emptyGate = new Promise((resolve) => (open = resolve));
    // acct3 takes acct1's slot (least recently used); acct1 comes straight back and takes acct2's.
    const third = binder.bind('acct3');
    for (let i = 0; i < 5; i++) await Promise.resolve();
    host.emptyGate = Promise.resolve(); // acct2's slot empties at once
    const back = binder.bind('acct1');
    for (let i = 0; i < 5; i++) await Promise.resolve();
    expect(host.events.filter((e) => e.startsWith('assign') && e.endsWith('acct1'))).toEqual(['assign slot-1 acct1']);
    open();
    await third;
    await back;
    const emptiedOfAcct1 = host.events.indexOf('empty slot-1 acct1');
    expect(emptiedOfAcct1).toBeGreaterThan(-1);
    expect(emptiedOfAcct1).toBeLessThan(host.events.lastIndexOf('assign slot-2 acct1'));
  });
});

describe('the pool state guards its invariants', () => {
  it('refuses an account in two slots and a slot bound twice', () => {
    const state = new PoolState(['slot-1', 'slot-2']);
    state.begin('slot-1', 'a', 1);
    expect(() => state.begin('slot-2', 'a', 1)).toThrow(PoolInvariantError);
    expect(() => state.begin('slot-1', 'b', 1)).toThrow(PoolInvariantError);
    state.slots[1]!.account = 'a';
    expect(() => state.verify()).toThrow(PoolInvariantError);
  });
});
