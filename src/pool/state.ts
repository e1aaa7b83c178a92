// Which account each slot serves, and the rules for taking one: the binder's whole policy, with no I/O, so that
// every step can be checked by verify() (tests call it after each one, as Passenger checks its pool).
import { bindingConflict } from '../accounts/model.js';

export type SlotPhase =
  // No account: its processes (if any) serve nothing.
  | 'free'
  // Taken from its account (deleted, disabled, changed, or wanted as a spare) and being emptied: no account, not
  // yet free.
  | 'emptying'
  // Being given to `account`: its old processes are being replaced. Not published, so no request reaches it.
  | 'binding'
  // Serving `account`: published in Apache's bindings map.
  | 'bound';

export interface SlotRecord {
  readonly name: string;
  phase: SlotPhase;
  // null exactly when phase is 'free' or 'emptying'.
  account: string | null;
  // When the current binding began (ms); 0 while free.
  boundAt: number;
  // When a request it served last ended (ms), never before boundAt while bound.
  lastUsed: number;
}

export type Choice =
  | { slot: string; evicts: null }
  // The least recently used idle slot, given away from the account it served.
  | { slot: string; evicts: string };

export class PoolInvariantError extends Error {
  override name = 'PoolInvariantError';
}

export class PoolState {
  readonly slots: SlotRecord[];

  constructor(names: string[]) {
    if (names.length === 0) throw new PoolInvariantError('a pool needs at least one slot');
    this.slots = names.map((name) => ({ name, phase: 'free', account: null, boundAt: 0, lastUsed: 0 }));
    this.verify();
  }

  slot(name: string): SlotRecord {
    const found = this.slots.find((s) => s.name === name);
    if (!found) throw new PoolInvariantError(`no slot ${name}`);
    return found;
  }

  // The slot serving or being given to `account`.
  slotOf(account: string): SlotRecord | undefined {
    return this.slots.find((s) => s.account === account);
  }

  // Where `account` can go now: a free slot, else the bound slot that has gone longest without a request among
  // those with none in flight and idle for at least minIdleMs. null: every slot is busy (or being bound).
  choose(now: number, inFlight: (slot: string) => number, minIdleMs: number): Choice | null {
    const free = this.slots.find((s) => s.phase === 'free');
    if (free) return { slot: free.name, evicts: null };
    let best: SlotRecord | undefined;
    for (const s of this.slots) {
      if (s.phase !== 'bound' || now - s.lastUsed < minIdleMs || inFlight(s.name) > 0) continue;
      if (!best || s.lastUsed < best.lastUsed) best = s;
    }
    return best ? { slot: best.name, evicts: best.account! } : null;
  }

  begin(slot: string, account: string, now: number): void {
    if (this.slotOf(account)) throw new PoolInvariantError(`account ${account} already has a slot`);
    const s = this.slot(slot);
    if (s.phase === 'binding') throw new PoolInvariantError(`slot ${slot} is already being bound`);
    Object.assign(s, { phase: 'binding', account, boundAt: now, lastUsed: now });
    this.verify();
  }

  finish(slot: string, now: number): void {
    const s = this.slot(slot);
    if (s.phase !== 'binding') throw new PoolInvariantError(`slot ${slot} is not being bound`);
    Object.assign(s, { phase: 'bound', lastUsed: now });
    this.verify();
  }

  // Adopted as it was found (the binder's restart): bound without a restart.
  adopt(slot: string, account: string, now: number): void {
    this.begin(slot, account, now);
    this.finish(slot, now);
  }

  // Taken from its account now; free once release() says it is empty.
  startEmptying(slot: string): void {
    const s = this.slot(slot);
    if (s.phase !== 'bound') throw new PoolInvariantError(`slot ${slot} is not bound`);
    Object.assign(s, { phase: 'emptying', account: null, boundAt: 0, lastUsed: 0 });
    this.verify();
  }

  // Taken out of use whatever it was doing (its emptying failed): no account, not free.
  setAside(slot: string): void {
    Object.assign(this.slot(slot), { phase: 'emptying', account: null, boundAt: 0, lastUsed: 0 });
    this.verify();
  }

  release(slot: string): void {
    Object.assign(this.slot(slot), { phase: 'free', account: null, boundAt: 0, lastUsed: 0 });
    this.verify();
  }

  used(slot: string, now: number): void {
    const s = this.slots.find((x) => x.name === slot);
    if (s && s.phase === 'bound') s.lastUsed = Math.max(s.lastUsed, now);
  }

  // What Apache may route to: bound slots only.
  published(): Array<{ account: string; slot: string }> {
    return this.slots.filter((s) => s.phase === 'bound').map((s) => ({ account: s.account!, slot: s.name }));
  }

  verify(): void {
    const names = new Set<string>();
    for (const s of this.slots) {
      if (names.has(s.name)) throw new PoolInvariantError(`slot ${s.name} twice`);
      names.add(s.name);
      if ((s.phase === 'free' || s.phase === 'emptying') !== (s.account === null))
        throw new PoolInvariantError(`slot ${s.name}: ${s.phase} with account ${s.account}`);
      if (s.account !== null && s.lastUsed < s.boundAt) throw new PoolInvariantError(`slot ${s.name} used before it was bound`);
    }
    // A slot being bound counts: its account is on its way in.
    const conflict = bindingConflict(this.slots.flatMap((s) => (s.account === null ? [] : [{ account: s.account, slot: s.name }])));
    if (conflict !== null) throw new PoolInvariantError(conflict);
  }
}
