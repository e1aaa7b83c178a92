// Binds accounts to slots on demand: the first request of an account without a slot gets a free one, else the
// least recently used idle one, whose processes are replaced by fresh ones that can reach the new account's data
// and nothing else. Two first requests of one account share one binding; a busy slot is never taken; when every
// slot is busy the request waits a bounded time and then gets "busy". Everything that touches the machine is in
// SlotHost (slot-host.ts), so this policy runs in tests against a host that records what it was asked.
import { coerceError } from '../errors.js';
import type { Logger } from '../log.js';
import { PoolState } from './state.js';

export interface AccountInfo {
  settings: string | null;
  enabled: boolean;
}

// What a slot's processes serve: written to its slot file (slot-file.ts), read by apache/wsgi/plexer.wsgi.
export interface SlotAssignment {
  account: string;
  settings: string;
  // The account's OS group: a process serves the account only when it holds it.
  gid: number;
  dataDir: string;
}

export interface SlotHost {
  // Everything a slot bound to `account` needs (its OS group, its data directory); what the slot is told.
  prepare(account: string, settings: string): Promise<SlotAssignment>;
  // Gives the slot's OS user the account's group alone (or none) and writes what its next processes serve.
  assign(slot: string, assignment: SlotAssignment | null): Promise<void>;
  // Replaces the slot's processes; resolves once a fresh one runs with exactly that group (null: none).
  restart(slot: string, gid: number | null): Promise<void>;
  // Requests the slot is serving right now.
  inFlight(slot: string): number;
  // Apache's bindings map and the status file, rewritten whole.
  publish(state: PoolState): void;
}

export interface BinderOptions {
  // How long a request waits for a slot when every one is busy (ms). Default 10 000.
  waitMs?: number;
  // A bound slot is taken only after this long without a request (ms), against thrashing. Default 0.
  minIdleMs?: number;
  // How often a waiting request looks again (ms). Default 100.
  pollMs?: number;
  now?: () => number;
  sleep?: (ms: number) => Promise<void>;
}

export type BindResult =
  | { kind: 'bound'; slot: string }
  // Every slot stayed busy for waitMs: the caller answers 503 with Retry-After.
  | { kind: 'busy' }
  // The account cannot be served (unknown, disabled, no settings): the caller answers 503, with the reason logged.
  | { kind: 'refused'; reason: string };

export class Binder {
  private readonly pending = new Map<string, Promise<BindResult>>();
  private readonly waitMs: number;
  private readonly minIdleMs: number;
  private readonly pollMs: number;
  private readonly now: () => number;
  private readonly sleep: (ms: number) => Promise<void>;

  constructor(
    readonly state: PoolState,
    private readonly host: SlotHost,
    private readonly accounts: (name: string) => Promise<AccountInfo | null>,
    private readonly log: Logger,
    o: BinderOptions = {},
  ) {
    this.waitMs = o.waitMs ?? 10_000;
    this.minIdleMs = o.minIdleMs ?? 0;
    this.pollMs = o.pollMs ?? 100;
    this.now = o.now ?? Date.now;
    this.sleep = o.sleep ?? ((ms) => new Promise((resolve) => setTimeout(resolve, ms)));
  }

  // Single flight per account: a second first request waits for the same binding.
  bind(account: string): Promise<BindResult> {
    const running = this.pending.get(account);
    if (running) return running;
    const started = this.bindOnce(account).finally(() => this.pending.delete(account));
    this.pending.set(account, started);
    return started;
  }

  // A request a slot finished (Apache's log line): it is not idle since then.
  used(slot: string): void {
    this.state.used(slot, this.now());
  }

  // The account is gone, disabled or changed: its slot is emptied and its processes replaced by idle ones.
  async release(account: string): Promise<void> {
    const s = this.state.slotOf(account);
    if (!s || s.phase !== 'bound') return;
    this.state.release(s.name);
    this.host.publish(this.state);
    this.log.info('slot released', { slot: s.name, account });
    await this.host.assign(s.name, null);
    await this.host.restart(s.name, null);
  }

  private async bindOnce(account: string): Promise<BindResult> {
    const current = this.state.slotOf(account);
    if (current?.phase === 'bound') return { kind: 'bound', slot: current.name };
    const info = await this.accounts(account);
    if (!info) return { kind: 'refused', reason: 'no such account' };
    if (!info.enabled) return { kind: 'refused', reason: 'account disabled' };
    if (info.settings === null) return { kind: 'refused', reason: 'account has no settings module' };
    const deadline = this.now() + this.waitMs;
    for (;;) {
      // Between choosing and claiming there is no await: no other binding can take the same slot.
      const choice = this.state.choose(this.now(), (slot) => this.host.inFlight(slot), this.minIdleMs);
      if (choice) {
        if (choice.evicts !== null) this.state.release(choice.slot);
        this.state.begin(choice.slot, account, this.now());
        // The evicted account leaves Apache's map before its processes go: its next request asks for a slot.
        this.host.publish(this.state);
        return this.finishBinding(choice.slot, account, info.settings, choice.evicts);
      }
      if (this.now() >= deadline) return { kind: 'busy' };
      await this.sleep(this.pollMs);
    }
  }

  private async finishBinding(slot: string, account: string, settings: string, evicted: string | null): Promise<BindResult> {
    const started = this.now();
    try {
      const assignment = await this.host.prepare(account, settings);
      await this.host.assign(slot, assignment);
      await this.host.restart(slot, assignment.gid);
    } catch (error) {
      this.state.release(slot);
      this.host.publish(this.state);
      this.log.error('binding failed', { slot, account, error: coerceError(error).message });
      try {
        await this.host.assign(slot, null);
      } catch (cleanup) {
        this.log.error('emptying the slot failed', { slot, error: coerceError(cleanup).message });
      }
      return { kind: 'refused', reason: 'binding failed' };
    }
    this.state.finish(slot, this.now());
    this.host.publish(this.state);
    this.log.info('slot bound', { slot, account, evicted: evicted ?? undefined, ms: this.now() - started });
    return { kind: 'bound', slot };
  }
}
