// Binds accounts to slots on demand: the first request of an account without a slot gets a free one (its process
// is fresh: it has served nobody), else the least recently used idle one, emptied first (its processes killed,
// the account it served locked away from it). Two first requests of one account share one binding; a busy slot is
// never taken; when every slot is busy the request waits a bounded time and then gets "busy". In the background it
// keeps `spares` slots free, so that a binding rarely waits for a slot to be emptied. Everything that touches the
// machine is in SlotHost (slot-host.ts), so this policy runs in tests against a host that records what it was asked.
import type { Account } from '../accounts/model.js';
import { coerceError } from '../errors.js';
import type { Logger } from '../log.js';
import { PoolState } from './state.js';

// What a binding needs of the account, asked of the store at each one.
export type AccountInfo = Pick<Account, 'settingsModule' | 'enabled'>;

// What a slot's processes serve: written to its slot file (slot-file.ts), read by apache/wsgi/plexer.wsgi.
export interface SlotAssignment {
  account: string;
  settings: string;
  dataDir: string;
}

export interface SlotHost {
  // Hands the account's data to the slot's OS user and tells the slot's (fresh) process what it serves.
  assign(slot: string, assignment: SlotAssignment): Promise<void>;
  // Takes the slot from `account` (null: from whatever it held): the slot file goes, every process of the slot's
  // user is killed (Apache forks a fresh one), what it left in shared temporary directories is removed, and the
  // account's data is locked away from it.
  empty(slot: string, account: string | null): Promise<void>;
  // Where the account's data lives (made if missing).
  dataDir(account: string): string;
  // Resolves once the slot's fresh process runs (Apache's parent forks it within a second of the old one's end).
  awaitFresh(slot: string): Promise<void>;
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
  // Free slots kept in the background, taken from accounts idle for at least spareIdleMs. Default 0.
  spares?: number;
  // Default 30 000.
  spareIdleMs?: number;
  now?: () => number;
  sleep?: (ms: number) => Promise<void>;
}

export type BindResult =
  | { kind: 'bound'; slot: string }
  // Every slot stayed busy for waitMs: the caller answers 503 with Retry-After.
  | { kind: 'busy' }
  // The account cannot be served (unknown, disabled, no settings): the caller answers 503, with the reason logged.
  | { kind: 'refused'; reason: string };

// A binding waits at most this long for a slot being emptied before it takes an idle one (an emptying that drains a
// long request must not turn into a 503 while idle slots exist).
const MAX_WAIT_FOR_EMPTYING_MS = 2_000;

export class Binder {
  private readonly pending = new Map<string, Promise<BindResult>>();
  // Slots held for a command run as their user (`plexer group exec`): busy, never taken, until let go.
  private readonly holds = new Map<string, number>();
  // Accounts whose old slot is being emptied: until it is, their processes may still write the account's files, and
  // the emptying ends by locking the account's directory to root. A new binding of the account waits for it.
  private readonly leaving = new Map<string, Promise<void>>();
  // Bindings waiting for a slot being emptied rather than taking another account's (never more than such slots).
  private waitingForEmptying = 0;
  // Slots whose emptying failed: out of use until it succeeds.
  private readonly asideSlots = new Set<string>();
  private readonly waitMs: number;
  private readonly minIdleMs: number;
  private readonly pollMs: number;
  private readonly spares: number;
  private readonly spareIdleMs: number;
  private replenishing = false;
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
    this.spares = o.spares ?? 0;
    this.spareIdleMs = o.spareIdleMs ?? 30_000;
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

  // Binds the account and keeps its slot busy until unhold(): a command runs as the slot's user meanwhile, with
  // the account's data, and no binding takes the slot from under it. 'busy' and 'refused' as bind() says.
  async hold(account: string): Promise<BindResult> {
    // A slot bound a moment ago could in principle be taken again before this continuation runs: ask again.
    for (let tries = 0; tries < 3; tries++) {
      const result = await this.bind(account);
      if (result.kind !== 'bound') return result;
      const s = this.state.slotOf(account);
      if (s?.phase === 'bound' && s.name === result.slot) {
        this.holds.set(s.name, (this.holds.get(s.name) ?? 0) + 1);
        return result;
      }
    }
    return { kind: 'busy' };
  }

  unhold(slot: string): void {
    const left = (this.holds.get(slot) ?? 0) - 1;
    if (left > 0) this.holds.set(slot, left);
    else this.holds.delete(slot);
    this.used(slot);
  }

  private readonly busy = (slot: string): number => this.host.inFlight(slot) + (this.holds.get(slot) ?? 0);

  // A request a slot finished (Apache's log line): it is not idle since then.
  used(slot: string): void {
    this.state.used(slot, this.now());
  }

  // The account is gone, disabled or changed (or its slot is wanted as a spare): the slot is emptied.
  async release(account: string): Promise<void> {
    const s = this.state.slotOf(account);
    if (!s || s.phase !== 'bound') return;
    // Unpublished at once; free for another account only once emptied. The account itself may bind again at once,
    // to another slot. A command held there for the account (group exec) dies with the slot's processes: its hold
    // must not keep the slot busy for whichever account gets it next.
    this.state.startEmptying(s.name);
    this.holds.delete(s.name);
    this.host.publish(this.state);
    try {
      await this.leave(account, this.host.empty(s.name, account));
    } catch (error) {
      return this.setAside(s.name, error);
    }
    // Free once its fresh process is up: a binding to it then waits for nothing but the account's settings.
    await this.host
      .awaitFresh(s.name)
      .catch((error) => this.log.warn('slot slow to come back', { slot: s.name, error: coerceError(error).message }));
    this.log.info('slot released', { slot: s.name, account });
    this.state.release(s.name);
    this.host.publish(this.state);
  }

  // A slot that could not be emptied (its user's processes kept coming back) may still hold what the account it
  // served left running: it serves nobody (no account, not free) until an emptying succeeds (retrySetAside).
  private setAside(slot: string, error: unknown): void {
    this.log.error('slot could not be emptied; kept out of use', { slot, error: coerceError(error).message });
    this.state.setAside(slot);
    this.holds.delete(slot);
    this.asideSlots.add(slot);
    this.host.publish(this.state);
  }

  // Called with the spares' timer: each slot set aside is emptied again; once that works it is free.
  async retrySetAside(): Promise<void> {
    for (const slot of this.asideSlots) {
      try {
        await this.host.empty(slot, null);
      } catch (error) {
        this.log.warn('slot still cannot be emptied', { slot, error: coerceError(error).message });
        continue;
      }
      this.asideSlots.delete(slot);
      this.state.release(slot);
      this.host.publish(this.state);
      this.log.info('slot emptied after all', { slot });
    }
  }

  // Keeps `spares` slots free, taken from the accounts idle longest (at least spareIdleMs): a binding then finds a
  // slot whose fresh process is already running. One at a time, in the background.
  async replenish(): Promise<void> {
    if (this.replenishing) return;
    this.replenishing = true;
    try {
      while (this.state.slots.filter((s) => s.phase === 'free').length < this.spares) {
        const choice = this.state.choose(this.now(), this.busy, Math.max(this.minIdleMs, this.spareIdleMs));
        if (!choice || choice.evicts === null) return;
        await this.release(choice.evicts);
      }
    } catch (error) {
      this.log.error('keeping a spare slot failed', { error: coerceError(error).message });
    } finally {
      this.replenishing = false;
    }
  }

  // Tracks the emptying of a slot `account` is leaving; the emptying's own outcome is returned unchanged.
  private leave(account: string, emptied: Promise<void>): Promise<void> {
    const settled: Promise<void> = emptied
      .catch(() => undefined)
      .finally(() => {
        if (this.leaving.get(account) === settled) this.leaving.delete(account);
      });
    this.leaving.set(account, settled);
    return emptied;
  }

  private async bindOnce(account: string): Promise<BindResult> {
    const current = this.state.slotOf(account);
    if (current?.phase === 'bound') return { kind: 'bound', slot: current.name };
    await this.leaving.get(account);
    const info = await this.accounts(account);
    if (!info) return { kind: 'refused', reason: 'no such account' };
    if (!info.enabled) return { kind: 'refused', reason: 'account disabled' };
    if (info.settingsModule === null) return { kind: 'refused', reason: 'account has no settings module' };
    const deadline = this.now() + this.waitMs;
    // Whether this binding counts on a slot being emptied (see below).
    let waitingForOne = false;
    const waitStarted = this.now();
    try {
      for (;;) {
        // Between choosing and claiming there is no await: no other binding can take the same slot.
        const choice = this.state.choose(this.now(), this.busy, this.minIdleMs);
        // A slot being emptied (a spare on its way, or an account's that changed) is free sooner than one emptied
        // now would be: a binding that would take another account's slot waits for it instead — as many bindings
        // as there are such slots, so that simultaneous bindings are not queued behind one.
        if (choice !== null && choice.evicts !== null && !waitingForOne) {
          const emptying = this.state.slots.filter((s) => s.phase === 'emptying' && !this.asideSlots.has(s.name)).length;
          if (this.waitingForEmptying < emptying) {
            waitingForOne = true;
            this.waitingForEmptying++;
          }
        }
        const freeSoon = this.state.slots.some((s) => s.phase === 'emptying' && !this.asideSlots.has(s.name));
        if (choice && (choice.evicts === null || !waitingForOne || !freeSoon || this.now() - waitStarted > MAX_WAIT_FOR_EMPTYING_MS)) {
          if (choice.evicts !== null) this.state.release(choice.slot);
          this.state.begin(choice.slot, account, this.now());
          // The evicted account leaves Apache's map before its processes go: its next request asks for a slot.
          this.host.publish(this.state);
          return this.finishBinding(choice.slot, account, info.settingsModule, choice.evicts);
        }
        if (this.now() >= deadline) return { kind: 'busy' };
        await this.sleep(this.pollMs);
      }
    } finally {
      if (waitingForOne) this.waitingForEmptying--;
    }
  }

  private async finishBinding(slot: string, account: string, settings: string, evicted: string | null): Promise<BindResult> {
    const started = this.now();
    try {
      // A slot taken from another account is emptied first: its processes die before the new account's data is
      // handed to its user, and Apache forks a fresh one, which the request waits for in the slot's socket.
      if (evicted !== null) await this.leave(evicted, this.host.empty(slot, evicted));
      await this.host.assign(slot, { account, settings, dataDir: this.host.dataDir(account) });
    } catch (error) {
      this.log.error('binding failed', { slot, account, error: coerceError(error).message });
      try {
        await this.host.empty(slot, account);
        this.state.release(slot);
        this.host.publish(this.state);
      } catch (cleanup) {
        this.setAside(slot, cleanup);
      }
      return { kind: 'refused', reason: 'binding failed' };
    }
    this.state.finish(slot, this.now());
    this.host.publish(this.state);
    this.log.info('slot bound', { slot, account, evicted: evicted ?? undefined, ms: this.now() - started });
    void this.replenish();
    return { kind: 'bound', slot };
  }
}
